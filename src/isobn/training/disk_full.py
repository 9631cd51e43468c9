"""A full disk (ENOSPC) or a used-up quota (EDQUOT) as one line naming the device and the file.

Every writer of isobn reaches the disk through isobn.training.safe_files (whose atomic writers
remove their temporary files on any error and call ``writing``), and the CLI turns any other
error caused by a full disk (a library's own writer: safetensors, PIL, ``save_pretrained``)
into the same line with ``disk_full_problem``:

    no space left on /scratch (/dev/sdb1) writing runs/a/best: free space or choose another --out
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from isobn.errors import UserError

NO_SPACE = {errno.ENOSPC: "", errno.EDQUOT: "disk quota exceeded"}
# how a library that hides the OSError words it: safetensors' "... (os error 28)"
_WORDED = re.compile(r"\(os error (\d+)\)|no space left on device|disk quota exceeded", re.I)


class DiskFullError(UserError):
    """`no space left on DEVICE writing PATH: free space or choose another --out` (`option`:
    the option that chose the output, --out unless the command calls it otherwise; None for a
    command that writes beside its input, which can only free space)."""

    def __init__(
        self,
        path: str | Path,
        code: int = errno.ENOSPC,
        option: str | None = "--out",
        file_system: tuple[str, str] | None = None,
    ) -> None:
        self.path, self.code, self.option = path, code, option
        point, source = file_system or file_system_of(path)
        notes = ", ".join(n for n in (source, NO_SPACE.get(code, "")) if n)
        self.device = f"{point} ({notes})" if notes else point
        super().__init__(self._message())

    def _message(self) -> str:
        fix = f"free space or choose another {self.option}" if self.option else "free space"
        return f"no space left on {self.device} writing {self.path}: {fix}"

    def moved(self, folder: str | Path, target: str | Path) -> DiskFullError:
        """This error naming the file as it would be in `target` when it names one inside
        `folder` (a temporary folder renamed to `target` once written)."""
        path = Path(self.path)
        if path.is_relative_to(folder):
            self.path = Path(target, path.relative_to(folder))
            self.args = (self._message(),)
        return self

    def for_option(self, option: str | None) -> DiskFullError:
        """This error telling to choose another `option` (e.g. predict's --output)."""
        self.option = option
        self.args = (self._message(),)
        return self


STDOUT = "standard output"


def stdout_full_error(code: int, option: str | None) -> DiskFullError:
    """The DiskFullError of standard output redirected to a file on a full disk."""
    try:
        device = os.fstat(1).st_dev
    except OSError:
        return DiskFullError(STDOUT, code, option, (STDOUT, ""))
    mounted = _mount_of(Path("/"), device, anywhere=True)
    return DiskFullError(STDOUT, code, option, mounted or (f"device {device}", ""))


def no_space_code(error: BaseException | None) -> int | None:
    """ENOSPC or EDQUOT when `error`, or an exception it was raised from or while handling,
    says the disk is full (an OSError, or a library's error wording one); None otherwise."""
    found = _no_space(error)
    return None if found is None else found[0]


def _no_space(error: BaseException | None) -> tuple[int, str | None] | None:
    """(ENOSPC or EDQUOT, the file named) of the first exception of `error`'s chain that
    says the disk is full; None when none does."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DiskFullError):
            return error.code, os.fspath(error.path)
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            named = error.filename
            ok = isinstance(named, str | bytes | os.PathLike) and named
            return error.errno, os.fsdecode(named) if ok else None
        if not isinstance(error, OSError):
            code = _worded_code(str(error))
            if code is not None:
                return code, None
        error = error.__cause__ or error.__context__
    return None


def _worded_code(text: str) -> int | None:
    for match in _WORDED.finditer(text):
        if match.group(1) is not None:
            number = int(match.group(1))
            if number in NO_SPACE:
                return number
        elif "quota" in match.group(0).lower():
            return errno.EDQUOT
        else:
            return errno.ENOSPC
    return None


def disk_full_problem(error: BaseException, path: str | Path | None) -> DiskFullError | None:
    """The DiskFullError of `error` (the file it names, else `path`); None when `error` is
    not caused by a full disk. A DiskFullError is returned as it is."""
    if isinstance(error, DiskFullError):
        return error
    found = _no_space(error)
    if found is None:
        return None
    code, named = found
    if named:
        return DiskFullError(named, code)
    if path is None or _stdout_is_full():  # a file unnamed: standard output's, most likely
        return stdout_full_error(code, "--out")
    return DiskFullError(os.fsdecode(path), code)


def _stdout_is_full() -> bool:
    """Whether standard output is a file on a file system with no block left."""
    import stat

    try:
        return stat.S_ISREG(os.fstat(1).st_mode) and os.fstatvfs(1).f_bavail == 0
    except OSError:
        return False


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Raise a DiskFullError naming `path` for any error in the block caused by a full disk
    (the caller removes what it wrote; the other errors pass unchanged)."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:
        code = no_space_code(error)
        if code is None:
            raise
        raise DiskFullError(path, code) from None


def file_system_of(path: str | Path) -> tuple[str, str]:
    """(mount point, device) of the file system holding `path` (its nearest existing folder),
    e.g. ("/scratch", "/dev/sdb1") or ("/tmp", "tmpfs"); the device "" where unknown."""
    existing = Path(os.path.abspath(path))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        device = os.stat(existing).st_dev
    except OSError:
        return str(existing), ""
    mounted = _mount_of(existing, device)
    if mounted is not None:
        point, source = mounted
        return point, source if source != point else ""
    return _mount_point(existing, device), ""


def _mount_of(path: Path, device: int, anywhere: bool = False) -> tuple[str, str] | None:
    """(mount point, source) of `device` from /proc/self/mountinfo (Linux): of the mounts of
    that device, the deepest mount point above `path` (`anywhere`: the first one of the
    device); None where unknown."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(device)}:{os.minor(device)}"
    real = os.path.realpath(path)
    best: tuple[str, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 5 or fields[2] != wanted or "-" not in fields:
            continue
        point = _unescape(fields[4])
        after = fields[fields.index("-") + 1 :]
        source = _unescape(after[1]) if len(after) > 1 else ""
        if source in ("none", ""):
            source = after[0] if after else ""
        if anywhere:
            return point, source
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(best[0])):
            best = (point, source)
    return best


def _unescape(text: str) -> str:
    """mountinfo's octal escapes (\\040 for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _mount_point(path: Path, device: int) -> str:
    """The top folder above `path` on the same device (where mountinfo is not there)."""
    path = Path(os.path.realpath(path))
    while path != path.parent:
        try:
            if os.stat(path.parent).st_dev != device:
                break
        except OSError:
            break
        path = path.parent
    return str(path)
