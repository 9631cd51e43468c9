"""A disk that fills up, for tests that CI can run anywhere (no mount, no root).

``fills_after(where, budget)`` lets the code under test write `budget` bytes in all into files
below `where`, then fails each further write as a full disk does: the bytes that still fit are
written and OSError(ENOSPC) is raised. It covers every way isobn and its libraries write
files: ``open`` (json, csv, PIL/matplotlib, transformers' save_pretrained), ``os.open`` /
``os.write`` (appends, mkstemp) and safetensors' ``save_file`` (native code, replaced by
``safetensors.torch.save`` written through ``open``, wherever it was imported by name:
isobn's modules, transformers' ``save_pretrained``). Tokenizers' native writer
(tokenizer.json) is not counted.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sys
from contextlib import contextmanager
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_PATCHED_SAVE_FILES: list = []  # every fills_after block's save_file (see _is_save_file)


class Disk:
    """The bytes left below `where`; `written` counts what was written there."""

    def __init__(self, where: Path, budget: float, code: int = errno.ENOSPC) -> None:
        self.where, self.code = os.path.abspath(where), code
        self.left, self.written, self.failures = budget, 0, 0
        self.fds: set[int] = set()

    def holds(self, path) -> bool:
        if isinstance(path, int):
            return path in self.fds
        try:
            name = os.path.abspath(os.fsdecode(path))
        except TypeError:
            return False
        return name == self.where or name.startswith(self.where + os.sep)

    def take(self, size: int) -> int:
        """How many of `size` bytes fit (the rest raises ENOSPC once these are written)."""
        fit = int(min(size, max(self.left, 0)))
        self.left -= fit
        self.written += fit
        return fit

    def full(self) -> OSError:
        self.failures += 1
        return OSError(self.code, os.strerror(self.code))


class FillingFile:
    """A file object whose writes draw on a Disk."""

    def __init__(self, handle, disk: Disk) -> None:
        self._handle, self._disk = handle, disk

    def write(self, data):
        fit = self._disk.take(len(data))
        if fit < len(data):
            self._handle.write(data[:fit])
            raise self._disk.full()
        return self._handle.write(data)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __iter__(self):
        return iter(self._handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


def _is_write_mode(mode: str) -> bool:
    return any(flag in mode for flag in "wax+")


@contextmanager
def fills_after(where: Path, budget: float, code: int = errno.ENOSPC):
    """Yield the Disk of `where` while its writers are patched (see the module's text); each
    write past the budget fails with `code` (errno.EDQUOT: a quota used up)."""
    import safetensors.torch
    import transformers.modeling_utils  # noqa: F401  (its safe_save_file is patched below)
    from safetensors import SafetensorError

    disk = Disk(where, budget, code)
    real_open, real_os_open, real_write = builtins.open, os.open, os.write
    real_save_file = safetensors.torch.save_file

    def open_(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(file, int):
            return handle
        if _is_write_mode(mode) and disk.holds(file):
            disk.fds.add(handle.fileno())
            return FillingFile(handle, disk)
        disk.fds.discard(handle.fileno())  # a number that an earlier, closed file had
        return handle

    def os_open(path, flags, *args, **kwargs):
        descriptor = real_os_open(path, flags, *args, **kwargs)
        if flags & WRITE_FLAGS and disk.holds(path):
            disk.fds.add(descriptor)
        else:
            disk.fds.discard(descriptor)
        return descriptor

    def os_write(descriptor, data):
        if descriptor in disk.fds:
            fit = disk.take(len(data))
            if fit < len(data):
                if fit:
                    real_write(descriptor, bytes(data)[:fit])
                raise disk.full()
        return real_write(descriptor, data)

    def save_file(tensors, filename, metadata=None):
        data = safetensors.torch.save(tensors, metadata=metadata)
        if not disk.holds(filename):
            return real_save_file(tensors, filename, metadata=metadata)
        try:
            with open_(filename, "wb") as handle:
                handle.write(data)
        except OSError as error:  # as safetensors words it, and removes its file
            os.unlink(filename)
            raise SafetensorError(
                f"Error while serializing: I/O error: {error.strerror} (os error {error.errno})"
            ) from None

    _PATCHED_SAVE_FILES.append(save_file)
    patches = [(builtins, "open", open_), (io, "open", open_), (os, "open", os_open)]
    patches += [(os, "write", os_write), (safetensors.torch, "save_file", save_file)]
    # every module that imported it by name (isobn's, transformers' safe_save_file), or an
    # earlier patch imported inside that block; read from the module's own names, as a lazy
    # module's getattr (transformers') would import submodules that may not import
    patches += [
        (module, attribute, save_file)
        for module in list(sys.modules.values())
        for attribute in ("save_file", "safe_save_file")
        if _is_save_file(getattr(module, "__dict__", {}).get(attribute), real_save_file)
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, value in patches:
            setattr(owner, name, value)
        yield disk
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def _is_save_file(value, real) -> bool:
    """Whether `value` is safetensors' save_file, or a patch of it left in a module that
    imported it while an earlier fills_after block ran (a stale patch would count that
    module's writes against the earlier disk)."""
    return value is real or any(value is patch for patch in _PATCHED_SAVE_FILES)


def leftovers(where: Path) -> list[Path]:
    """Temporary files and folders that a failed write left below `where` (x.tmp,
    .x.123.tmp, best.tmp/, a .write-test. probe)."""
    return [
        path
        for path in Path(where).rglob("*")
        if path.name.endswith(".tmp") or ".write-test." in path.name
    ]
