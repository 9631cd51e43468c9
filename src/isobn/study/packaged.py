"""The study files that ship with isobn (`isobn/study/files/NAME.toml`).

`isobn study --list` lists them and `isobn study NAME` runs one by name; the repository's
`studies/` folder links to the same files."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import tomllib

from isobn.errors import UserError


def packaged_studies() -> dict[str, Path]:
    """Name -> path of every study file in the package, sorted by name."""
    folder = Path(str(files("isobn.study") / "files"))
    return {path.stem: path for path in sorted(folder.glob("*.toml"), key=lambda p: p.stem)}


def describe(path: Path) -> str:
    """The study's `description` (or its name) on one line."""
    head = tomllib.loads(path.read_text(encoding="utf-8")).get("study", {})
    return " ".join(str(head.get("description") or head.get("name") or path.stem).split())


def resolve_study(study: str) -> Path:
    """The path of a study argument: an existing path as it is, else a packaged study's name.

    A path-like argument (a folder part or a suffix) that does not exist is returned as it is,
    so that the loader names it in its own message."""
    path = Path(study)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    packaged = packaged_studies()
    if study in packaged:
        return packaged[study]
    raise UserError(
        f"study file not found: {study}; pass a .toml file, or the name of one of isobn's "
        f"studies ({', '.join(packaged)}; see `isobn study --list`)"
    )
