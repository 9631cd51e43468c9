"""Writing only regular files that isobn created, where it was asked to.

A file is never written through a symbolic link: a whole file is written to a new temporary
file beside it (created with O_EXCL, so never an existing file or link) and swapped in with
os.replace, which replaces a link planted at the name instead of following it; an append
opens with O_NOFOLLOW. Names that become paths (study, task, block and run names) are
identifiers (``check_name``), so they cannot leave the directory they name a part of.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from isobn.errors import UserError
from isobn.training.disk_full import writing

# letters, digits and _ . + -, starting with a letter, digit or _: never empty, `.`, `..`,
# a path separator, an option (-x), or a character that breaks a Markdown table or a line
NAME = re.compile(r"\w[\w.+-]*")
NAME_RULE = "letters, digits and _ . + - (starting with a letter, digit or _)"


def is_name(text: object) -> bool:
    """Whether `text` is an identifier that may name a file or directory (NAME)."""
    return isinstance(text, str) and NAME.fullmatch(text) is not None


def check_name(text: object, what: str) -> str:
    """`text` when it is an identifier, else a one-line UserError: `WHAT must be ... got X`."""
    if not is_name(text):
        raise UserError(f"{what} must be {NAME_RULE}, as it names a directory; got {text!r}")
    return text


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary file beside `path`; on success it replaces `path` (a link at
    `path` is replaced, never followed), fsynced; on failure it is removed and `path` keeps
    its old contents (a full disk: a DiskFullError naming `path`). Inside ``all_or_none`` the
    replacement waits for the end of that block."""
    path = Path(path)
    with writing(path):
        descriptor, name = tempfile.mkstemp(
            prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent
        )
        os.fchmod(descriptor, 0o666 & ~_umask())  # as open() would create it (mkstemp: 0o600)
        os.close(descriptor)
        tmp = Path(name)
        try:
            yield tmp
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            pending = _PENDING.get()
            if pending is None:
                os.replace(tmp, path)
            else:
                pending.append((tmp, path))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


# the (temporary file, path) pairs of the innermost all_or_none block; None outside one
_PENDING: ContextVar[list[tuple[Path, Path]] | None] = ContextVar("isobn_pending", default=None)


@contextmanager
def all_or_none() -> Iterator[None]:
    """Write a set of files together (a report and its tables and figures): every file that
    ``replaced_atomically`` (and so ``write_atomically``) writes in the block is swapped in
    only when the whole block succeeds; on any error (a full disk) every new file is removed
    and the old ones stay as they were. A block inside another joins the outer one."""
    if _PENDING.get() is not None:
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _PENDING.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _PENDING.reset(token)
    for number, (tmp, path) in enumerate(pending):
        try:
            os.replace(tmp, path)
        except BaseException:
            for left, _ in pending[number:]:
                left.unlink(missing_ok=True)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to `path` through a new temporary file (see above)."""
    with replaced_atomically(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_json_atomically(path: str | Path, payload, indent: int | None = 2) -> None:
    """`payload` as strict JSON (isobn.json_text: no bare NaN) to `path`, atomically."""
    from isobn import json_text

    write_atomically(path, json_text.dumps(payload, indent=indent))


def append_line(path: str | Path, line: str) -> None:
    """Append `line` and a newline to `path` (created when missing), never through a link: a
    link at `path` is a one-line UserError naming it. A failed append (a full disk) is cut off
    again, so the file never ends in a part of a line."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
    with writing(path):
        try:
            descriptor = os.open(path, flags, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise not_a_regular_file(path) from None
            raise
        try:
            size = os.fstat(descriptor).st_size
            data = (line + "\n").encode("utf-8")
            try:
                while data:
                    data = data[os.write(descriptor, data) :]
            except BaseException:
                os.ftruncate(descriptor, size)
                raise
        finally:
            os.close(descriptor)


@contextmanager
def open_for_update(path: str | Path) -> Iterator:
    """Open `path` for reading and writing (created when missing), never through a link."""
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise not_a_regular_file(path) from None
        raise
    with os.fdopen(descriptor, "r+", encoding="utf-8") as handle:
        yield handle


def make_folder(root: str | Path, relative: str | Path) -> Path:
    """ROOT/RELATIVE, each folder created as needed; a symbolic link on the way below ROOT
    is a one-line UserError (a link planted inside the output would take writes elsewhere).
    ROOT itself is the user's to choose, a link or not."""
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    for part in Path(relative).parts:
        path = path / part
        if path.is_symlink():
            raise not_a_regular_file(path, "folder")
        path.mkdir(exist_ok=True)
    return path


def check_folder(root: str | Path, relative: str | Path) -> Path:
    """ROOT/RELATIVE as `make_folder` would make it, but creating nothing: a symbolic link on
    the existing part of the way below ROOT is the same one-line UserError. For a folder that
    its user (e.g. `train`) creates only once its inputs are known to be good."""
    path = Path(root)
    for part in Path(relative).parts:
        path = path / part
        if path.is_symlink():
            raise not_a_regular_file(path, "folder")
        if not path.exists():
            break
    return Path(root, relative)


def not_a_regular_file(path: Path, kind: str = "file") -> UserError:
    return UserError(
        f"{path} is a symbolic link, not a {kind} isobn wrote: isobn never writes through a "
        "link; remove it, or choose another output directory"
    )


NAME_MAX = 255  # bytes of one path component (Linux, macOS)
PATH_MAX = 4096  # bytes of a whole path (Linux)


def path_problem(path: str | Path, what: str) -> UserError | None:
    """The one-line UserError of a path no file system call can use: a component over
    NAME_MAX bytes, a path over PATH_MAX bytes, or a symbolic link loop; None otherwise
    (a missing file is for the caller to judge)."""
    text = os.fsencode(os.fspath(path))
    long_parts = [part for part in text.split(b"/") if len(part) > NAME_MAX]
    if long_parts:
        part = os.fsdecode(long_parts[0])
        return UserError(
            f"{what}: the path component {part[:24]!r}... is {len(long_parts[0])} bytes long, "
            f"over the file system's limit of {NAME_MAX}; use a shorter name"
        )
    if len(text) >= PATH_MAX:
        return UserError(
            f"{what}: the path is {len(text)} bytes long, over the file system's limit of "
            f"{PATH_MAX - 1}; use a shorter path"
        )
    try:
        os.stat(path)
    except OSError as error:
        return os_error_problem(error, what)
    return None


def os_error_problem(error: OSError, what: str = "") -> UserError | None:
    """The one-line UserError of an OSError caused by a path rather than by isobn (a name
    too long, a symbolic link loop, permission denied); None for any other error."""
    name = error.filename if error.filename is not None else what
    where = f"{what} {name}" if what and name != what else str(name)
    if len(where) > 200:
        where = where[:120] + "..." + where[-40:]
    if error.errno == errno.ELOOP:
        return UserError(
            f"{where}: a symbolic link loop (a link that leads back to itself); remove the "
            "link or choose another path"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return UserError(
            f"{where}: permission denied; check its permissions (and its folders'), or "
            "choose another path"
        )
    if error.errno == errno.ENAMETOOLONG:
        return UserError(
            f"{where}: file name too long for the file system (at most {NAME_MAX} bytes a "
            "name); use a shorter name"
        )
    return None


def check_path(path: str | Path, what: str) -> None:
    """path_problem raised."""
    problem = path_problem(path, what)
    if problem is not None:
        raise problem


__all__ = [
    "all_or_none",
    "check_path",
    "os_error_problem",
    "path_problem",
    "NAME_RULE",
    "append_line",
    "check_folder",
    "check_name",
    "is_name",
    "make_folder",
    "open_for_update",
    "replaced_atomically",
    "write_atomically",
    "write_json_atomically",
]
