"""What stands at a path, in words: the one-line messages of a path option that names the
wrong kind of thing (a directory for a file, a file for a directory, a named pipe, a broken
symbolic link, something this user cannot read).

Nothing here opens a path that is not a regular file or a directory: opening a named pipe
(FIFO) waits for a writer, which may never come.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["check_directory", "not_a_directory", "not_a_file", "odd_kind", "unreadable"]


def odd_kind(mode: int) -> str | None:
    """The words for a file type that is neither a regular file nor a directory (from
    `os.stat`'s mode); None for those two."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return None


def _broken_link(path: Path) -> str | None:
    """`PATH is a symbolic link to TARGET, which does not exist` for a link whose target is
    missing; None otherwise."""
    if path.is_symlink() and not path.exists():
        return f"{path} is a symbolic link to {os.readlink(path)}, which does not exist"
    return None


def _mode(path: Path) -> tuple[int | None, str | None]:
    """(os.stat's mode, None) of `path`; (None, why) for a broken symbolic link or a path that
    does not exist; (None, None) where stat fails otherwise (a loop, a name too long, no
    permission: the caller's read says so)."""
    broken = _broken_link(path)
    if broken is not None:
        return None, broken
    try:
        return path.stat().st_mode, None
    except FileNotFoundError:
        return None, f"{path} does not exist"
    except OSError:
        return None, None


def not_a_file(path: str | Path) -> str | None:
    """Why `path` is no regular file to read, in words (`PATH does not exist`, `PATH is a
    directory`, `PATH is a named pipe (FIFO)`, `PATH is a symbolic link to T, which does not
    exist`); None for a regular file (or a link to one)."""
    path = Path(path)
    mode, problem = _mode(path)
    if mode is None:
        return problem
    if stat.S_ISDIR(mode):
        return f"{path} is a directory"
    kind = odd_kind(mode)
    return f"{path} is {kind}" if kind else None


def not_a_directory(path: str | Path) -> str | None:
    """Why `path` is no directory, in words (`PATH does not exist`, `PATH is a file`, ...);
    None for a directory (or a link to one)."""
    path = Path(path)
    mode, problem = _mode(path)
    if mode is None or stat.S_ISDIR(mode):
        return problem
    return f"{path} is {odd_kind(mode) or 'a file'}"


def unreadable(path: str | Path) -> bool:
    """Whether this process is refused (permission denied) when it lists the directory or
    opens the regular file at `path`; never opens anything else."""
    path = Path(path)
    try:
        if path.is_dir():
            os.listdir(path)
        elif path.is_file():
            with open(path, "rb"):
                pass
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def check_directory(path: str | Path, what: str, fix: str) -> None:
    """A one-line UserError `WHAT PATH does not exist: FIX` (or `is a file`, `is a named
    pipe (FIFO)`, `is a symbolic link to T, which does not exist`; `cannot be read
    (permission denied); check its permissions`) unless `path` is a directory this process
    can list."""
    from isobn.errors import UserError

    problem = not_a_directory(path)
    if problem is None and unreadable(path):
        raise UserError(f"{what} {path} cannot be read (permission denied); check its permissions")
    if problem is not None:
        raise UserError(f"{what} {problem}: {fix}")
