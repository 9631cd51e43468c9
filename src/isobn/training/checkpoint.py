"""Atomic checkpoint directories and pickle-free training state (safetensors + JSON)."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from isobn import json_text
from isobn.errors import first_line

OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_GROUPS = "optimizer.json"
RNG_FILE = "rng.safetensors"


def ensure_writable_directory(out: Path) -> None:
    """Create `out` and prove it writable before any work starts; one-line UserError if not."""
    import tempfile

    from isobn.errors import UserError

    try:
        out.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)  # a new file
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        from isobn.training.disk_full import disk_full_problem

        full = disk_full_problem(error, out)
        if full is not None:
            raise full from None
        raise UserError(
            f"cannot write to output directory {out}: {error.strerror or error}; "
            "choose a writable --out"
        ) from None


def check_writable_directory(out: Path) -> None:
    """Refuse an `out` that could not be created or written, without creating it (it is
    created once the inputs are known to be good, so a failed command leaves no empty folder
    behind): its nearest existing ancestor must be a writable directory."""
    from isobn.errors import UserError

    existing = Path(out)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # a/b -> a -> .
    if not existing.is_dir():
        raise UserError(
            f"cannot write to output directory {out}: {existing} is not a directory; "
            "choose a writable --out"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write to output directory {out}: permission denied; choose a writable --out"
        )


def write_directory_atomically(target: str | Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a fresh temporary directory, then swap it in for `target`.

    The old directory is renamed to `target.old` before the new one is renamed into place and
    only then removed, so a kill at any moment leaves `target` or `target.old` complete
    (see resolve_directory). A write that fails (a full disk: a DiskFullError naming `target`)
    removes the temporary directory and leaves `target` as it was.
    """
    from isobn.training.disk_full import DiskFullError, writing

    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    _remove(tmp)
    try:
        with writing(target):
            tmp.mkdir(parents=True)
            write(tmp)
            _fsync_tree(tmp)
    except DiskFullError as error:  # named by a writer inside: best.tmp/x is best/x
        _remove(tmp)
        raise error.moved(tmp, target) from None
    except BaseException:
        _remove(tmp)
        raise
    if target.is_symlink():
        target.unlink()  # never a link: isobn writes only what it created
    if target.exists():
        _remove(old)
        os.replace(target, old)
    os.replace(tmp, target)
    _remove(old)


def _remove(path: Path) -> None:
    """Remove a directory tree, or a link (never what it points to)."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


class DamagedFileError(Exception):
    """A checkpoint file that is missing, truncated or not what its name says."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path, self.problem = path, problem


def _check_readable(path: Path) -> None:
    """A one-line UserError for a file this process may not open: not damaged, unreadable
    (safetensors reports it as a missing file)."""
    from isobn.errors import UserError
    from isobn.paths import unreadable

    if unreadable(path):
        raise UserError(f"cannot read {path} (permission denied); check its permissions")


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """load_file with a DamagedFileError naming the file when it is missing or damaged."""
    from safetensors import SafetensorError

    path = Path(path)
    if not path.is_file():
        raise DamagedFileError(path, "is missing")
    _check_readable(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise DamagedFileError(path, f"is damaged ({first_line(error)})") from None


def check_tensors_header(path: str | Path) -> None:
    """The header of a safetensors file, checked without reading its tensors: a missing,
    truncated or foreign file raises DamagedFileError naming it (cheap for any size)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise DamagedFileError(path, "is missing")
    _check_readable(path)
    try:
        with safe_open(str(path), "pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as error:
        raise DamagedFileError(path, f"is damaged ({first_line(error)})") from None


def read_json(path: str | Path, kind: type = dict):
    """A JSON file holding a `kind` (dict or list), or a DamagedFileError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DamagedFileError(path, "is missing")
    _check_readable(path)
    try:
        value = json_text.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        raise DamagedFileError(path, f"is damaged (not JSON: {first_line(error)})") from None
    if not isinstance(value, kind):
        raise DamagedFileError(
            path,
            f"is damaged (holds {type(value).__name__}, not a "
            f"JSON {'object' if kind is dict else 'array'})",
        )
    return value


# the files of a training-state directory (last/) and how each is read
TRAINING_STATE_FILES = {
    "model.safetensors": read_tensors,
    OPTIMIZER_TENSORS: read_tensors,
    OPTIMIZER_GROUPS: lambda path: read_json(path, list),
    "scheduler.json": read_json,
    "trainer_state.json": read_json,
    RNG_FILE: read_tensors,
}


def check_training_state(directory: Path) -> None:
    """Read every file of a training-state directory; DamagedFileError for the first bad one."""
    for name, read in TRAINING_STATE_FILES.items():
        read(directory / name)


def resolve_training_state(target: str | Path) -> tuple[Path | None, str | None]:
    """(directory to resume from, a note) for `target` (last/): the intact one of `target` and
    `target.old`; (None, None) when neither exists. When only a damaged copy exists the
    DamagedFileError of its first bad file is raised; a damaged `target` with an intact
    `.old` returns `.old` and a note saying so."""
    target = Path(target)
    old = target.with_name(target.name + ".old")
    candidates = [d for d in (target, old) if d.is_dir()]
    if not candidates:
        return None, None
    first_error = None
    for directory in candidates:
        try:
            check_training_state(directory)
        except DamagedFileError as error:
            first_error = first_error or error
            continue
        note = None
        if directory == old and first_error is not None:
            note = f"{first_error}; resuming from the intact copy {old}"
        return directory, note
    raise first_error


def resolve_directory(target: str | Path) -> Path | None:
    """The complete checkpoint at `target`, or its `.old` copy after an interrupted swap."""
    target = Path(target)
    if target.is_dir():
        return target
    old = target.with_name(target.name + ".old")
    return old if old.is_dir() else None


def _fsync_tree(directory: Path) -> None:
    for file in directory.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def save_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Optimizer state: per-parameter tensors in safetensors, param groups in JSON."""
    state = optimizer.state_dict()
    tensors = {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{index}.{key}"] = tensor.detach().cpu().contiguous()
    save_file(tensors, str(directory / OPTIMIZER_TENSORS))
    (directory / OPTIMIZER_GROUPS).write_text(json_text.dumps(state["param_groups"]))


def load_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    tensors = read_tensors(directory / OPTIMIZER_TENSORS)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    groups = read_json(directory / OPTIMIZER_GROUPS, list)
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> dict[str, torch.Tensor]:
    """This process's torch CPU (and CUDA), numpy and python generator states (all that
    accelerate's set_seed seeds); data order needs none (a pure function of seed and epoch)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    assert kind == "MT19937", kind
    version, python_state, python_gauss = random.getstate()
    states = {
        "cpu": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),  # (624,) uint32 values
        "numpy_pos": torch.tensor([position, has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([gauss], dtype=torch.float64),
        "python": torch.tensor(python_state, dtype=torch.int64),  # (625,) uint32 values
        "python_meta": torch.tensor(
            [version, python_gauss is not None, python_gauss or 0.0], dtype=torch.float64
        ),
    }
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{i}"] = state
    return states


def save_rng(directory: Path, per_rank: list[dict[str, torch.Tensor]]) -> None:
    """Generator states of every rank, as `rank{r}.{name}` tensors."""
    tensors = {f"rank{r}.{k}": v for r, states in enumerate(per_rank) for k, v in states.items()}
    save_file(tensors, str(directory / RNG_FILE))


def load_rng(directory: Path, rank: int) -> None:
    """Restore this rank's generators (skipped for a rank the checkpoint did not have)."""
    tensors = read_tensors(directory / RNG_FILE)
    prefix = f"rank{rank}."
    mine = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if "cpu" in mine:
        torch.set_rng_state(mine["cpu"])
    if "numpy_keys" in mine:  # absent in checkpoints of older versions
        position, has_gauss = (int(v) for v in mine["numpy_pos"])
        keys = mine["numpy_keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, position, has_gauss, float(mine["numpy_gauss"][0])))
    if "python" in mine:
        version, has_gauss, gauss = mine["python_meta"].tolist()
        python_state = tuple(int(v) for v in mine["python"])
        random.setstate((int(version), python_state, gauss if has_gauss else None))
    cuda = [mine[k] for k in sorted(mine) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
