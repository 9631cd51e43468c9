"""Inputs identified by content: a run is reused or resumed only on the data it trained on.

A run's config.json (and a study cell's record) holds ``fingerprints``: for each input file
of the run (``train_file``, ``dev_file``, ``test_file`` and the model's weights, ``model``)
the BLAKE2b-128 digest of its bytes, ``blake2b:HEX``. Before a finished result is reused or
an interrupted run resumed, the files are hashed again and compared (``fingerprint_changes``):
a file changed since is a one-line refusal naming it. A file is hashed once per process for
as long as its size, modification time and inode stay the same.

A GLUE task read from --data-dir is fingerprinted too, as ``data_dir``: the digests of the
TSV files it reads (train, then each dev split), joined. Not fingerprinted: a model given by
hub name (no local file), and the data of a task that comes with isobn (its version) or from
the datasets hub.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from isobn.errors import UserError

ALGORITHM = "blake2b"
_CHUNK = 1 << 20
_FILE_FIELDS = {"train_file": "--train", "dev_file": "--dev", "test_file": "--test"}
_FLAGS = {**_FILE_FIELDS, "data_dir": "--data-dir"}
_CACHE: dict[tuple, str] = {}  # (path, size, mtime_ns, inode, device) -> fingerprint


def file_fingerprint(path: str | Path) -> str:
    """`blake2b:HEX`, the 128-bit BLAKE2b digest of the file's bytes (read in 1 MiB chunks)."""
    path = os.path.realpath(path)
    status = os.stat(path)
    key = (path, status.st_size, status.st_mtime_ns, status.st_ino, status.st_dev)
    if key not in _CACHE:
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _CACHE[key] = f"{ALGORITHM}:{digest.hexdigest()}"
    return _CACHE[key]


def model_weight_files(model: str) -> list[Path]:
    """The weights files of a local model (`minilm`, a directory): model.safetensors, the
    shards its index names, or pytorch_model.bin; [] for a hub name, or a model that is not
    there or not readable (loading it says why, where it is needed)."""
    from isobn.training import checkpoint as ckpt
    from isobn.training.pretrained import resolve_model_path

    try:
        directory = Path(resolve_model_path(model))
    except UserError:
        return []
    if not directory.is_dir():
        return []
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = ckpt.read_json(index).get("weight_map")
        except ckpt.DamagedFileError:
            return []
        names = set(weight_map.values()) if isinstance(weight_map, dict) else set()
        return [
            directory / str(name) for name in sorted(names) if (directory / str(name)).is_file()
        ]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return [directory / name]
    return []


def input_fingerprints(cfg) -> dict[str, str]:
    """Fingerprints of a TrainConfig's input files: its data files by field name and, for a
    local model, "model" (the weights files' digests, joined when sharded)."""
    prints = {
        name: file_fingerprint(getattr(cfg, name))
        for name in _FILE_FIELDS
        if getattr(cfg, name, None) and os.path.isfile(getattr(cfg, name))
    }
    data = data_dir_files(cfg)
    if data:
        prints["data_dir"] = "+".join(file_fingerprint(path) for path in data)
    weights = model_weight_files(cfg.model)
    if weights:
        prints["model"] = "+".join(file_fingerprint(path) for path in weights)
    return prints


def data_dir_files(cfg) -> list[Path]:
    """The files a named GLUE task reads from the TrainConfig's data_dir ([] for any other
    data: files are fingerprinted by field, other tasks ignore data_dir)."""
    if getattr(cfg, "data_dir", None) is None or getattr(cfg, "train_file", None):
        return []
    from isobn.tasks import GLUE_TASKS, task_key
    from isobn.tasks.glue import glue_files

    try:
        key = task_key(cfg.task or "")
    except UserError:
        return []
    return glue_files(key, cfg.data_dir) if key in GLUE_TASKS else []


def fingerprint_changes(saved: dict | None, cfg) -> list[str]:
    """`FLAG PATH` for each input whose fingerprint in `saved` (a config.json's or cell
    record's "fingerprints") differs from the file's today; [] when `saved` is None (a run of
    an earlier version: its inputs are unknown) or every recorded file is unchanged. A file
    that is gone is not judged here (reading it fails where it is needed)."""
    if not isinstance(saved, dict):
        return []
    current = input_fingerprints(cfg)
    changed = []
    for name, fingerprint in saved.items():
        if current.get(name, fingerprint) == fingerprint:
            continue
        if name == "model":
            changed.append(f"the weights of --model {cfg.model}")
        else:
            changed.append(f"{_FLAGS.get(name, name)} {getattr(cfg, name, '')}")
    return changed


def check_same_inputs(saved: dict | None, cfg, where: str, fix: str) -> None:
    """A one-line UserError when an input file changed since `where` was trained on it."""
    changed = fingerprint_changes(saved, cfg)
    if changed:
        raise UserError(
            f"{where} was trained on other data: {', '.join(changed)} changed since (its "
            f"content differs); {fix}"
        )


__all__ = [
    "check_same_inputs",
    "data_dir_files",
    "file_fingerprint",
    "fingerprint_changes",
    "input_fingerprints",
    "model_weight_files",
]
