"""A study file (TOML) and the cells it plans.

    [study]               name, model, description
    [train]               training settings for every cell (TrainConfig fields)
    [tasks.NAME]          per-task settings (TrainConfig fields); a file task sets train_file,
                          dev_file (and test_file, columns) and is named by its table key
    [[block]]             name, tasks, sizes (ints or "full"), methods, seeds
    [block.grid]          optional: training settings to tune, each a list of values, e.g.
                          learning_rate = [2e-5, 5e-5, 1e-4]; every method runs every point

Study, task and block names are identifiers (letters, digits and _ . + -), as they name
directories and table rows. A task is looked up case-insensitively and by its aliases
(`MR` is the file's [tasks.mr], `SST-2` is sst2), and a method by its canonical spec, so two
spellings of one thing are one cell (within a block, they are refused).

A cell is one (task, size, method, grid point, seed) training run; a block without a grid has
one, empty, grid point. Cells are the same whichever block names them (a block's `none`/`isobn`
seeds 1-5 are the main block's), so they run once. A grid point is part of the cell's identity
even where it repeats a [train] setting: a grid cell at the study's own learning rate is another
cell than the block-without-grid cell.
Every size draws one fixed stratified subsample of the training set (seed 0 of the task
loader), the same for every seed and method: seeds vary only initialisation, dropout and
data order.
"""

from __future__ import annotations

import itertools
import os
import re
import typing
from dataclasses import InitVar, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from isobn.errors import UserError
from isobn.methods import canonical
from isobn.study.grid import GRID_AXES, GridPoint, grid_points, point_text, value_text
from isobn.training.safe_files import check_name, is_name
from isobn.training.train import TrainConfig

# TrainConfig fields a study may not set: the study decides them per cell
_CELL_FIELDS = {
    "out",
    "task",
    "max_train",
    "seed",
    "resume",
    "keep_last",
    "method",
}
_FILE_FIELDS = ("train_file", "dev_file", "test_file")


@dataclass(frozen=True)
class Cell:
    """One training run of a study."""

    task: str
    size: int | None  # training examples; None: the full training set
    method: str  # canonical method spec
    seed: int
    grid: GridPoint = ()  # the block's grid point; () without a grid
    blocks: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """File-name-safe identity, e.g. 'mr/n500/isobn_beta=0.25/seed3', with a grid point
        'mr/n500/isobn/learning_rate=2e-05/seed3'."""
        size = "full" if self.size is None else f"n{self.size}"
        method = re.sub(r"[^A-Za-z0-9_.=+-]", "_", self.method)
        point = re.sub(r"[^A-Za-z0-9_.=+,-]", "_", point_text(self.grid))
        return "/".join([self.task, size, method, *([point] if point else []), f"seed{self.seed}"])


@dataclass
class Block:
    name: str
    tasks: list[str]
    sizes: list[int | None]
    methods: list[str]
    seeds: list[int]
    grid: dict[str, list] = field(default_factory=dict)  # setting -> values; {} without grid

    @property
    def points(self) -> list[GridPoint]:
        return grid_points(self.grid)


@dataclass
class Study:
    """A parsed study file."""

    name: str
    model: str
    train: dict[str, Any]  # settings for every cell
    tasks: dict[str, dict[str, Any]]  # per-task settings
    blocks: list[Block]
    description: str = ""
    source: str = ""  # the file's text
    path: str = ""

    def cells(self, blocks: tuple[str, ...] | None = None) -> list[Cell]:
        """Every distinct cell, in running order: block by block, then size, seed, task,
        method, grid point, so that finished cells always hold complete seed-paired
        comparisons (tuned ones too). With `blocks` (names), only the cells that one of them
        names."""
        order: dict[tuple, list[str]] = {}
        for block in self.blocks:
            for size, seed, task, method, point in itertools.product(
                block.sizes, block.seeds, block.tasks, block.methods, block.points
            ):
                order.setdefault((task, size, method, seed, point), []).append(block.name)
        cells = [Cell(*key, blocks=tuple(names)) for key, names in order.items()]
        return cells if blocks is None else [c for c in cells if set(c.blocks) & set(blocks)]

    def block_names(self, text: str | None) -> tuple[str, ...] | None:
        """The block names of a comma-separated --blocks value (None: every block); an
        unknown name is a one-line UserError listing the study's blocks."""
        if text is None:
            return None
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        known = [block.name for block in self.blocks]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise UserError(
                f"--blocks {text!r}: {'unknown block ' + repr(unknown[0]) if unknown else 'empty'}"
                f"; {self.path} has {', '.join(known)}"
            )
        return names

    def config(self, cell: Cell, out: str) -> TrainConfig:
        """The TrainConfig of one cell, written to `out`."""
        values = {
            "model": self.model,
            **self.train,
            **self.tasks.get(cell.task, {}),
            **dict(cell.grid),
        }
        if not any(values.get(name) for name in _FILE_FIELDS):
            values["task"] = cell.task
        values.update(out=out, max_train=cell.size, seed=cell.seed, resume=True)
        values.update(method_settings(cell.method))
        return TrainConfig(**values)


def with_data_dir(study: Study, data_dir: str) -> Study:
    """`study` with `data_dir` (GLUE in the original TSV layout) for every GLUE task it runs,
    in place of its files' data_dir or the hub (`isobn study --data-dir`); a one-line
    UserError when it runs no GLUE task."""
    from isobn.tasks import GLUE_TASKS

    tasks = {cell.task for cell in study.cells()}
    glue = sorted(t for t in tasks if study.config(Cell(t, None, "none", 0), "").task in GLUE_TASKS)
    if not glue:
        raise UserError(
            f"--data-dir is for GLUE tasks, and {study.path} runs none ({', '.join(sorted(tasks))}"
            "): drop --data-dir"
        )
    path = os.path.normpath(data_dir)  # ./glue_data and glue_data are one setting
    settings = {t: {**study.tasks.get(t, {}), "data_dir": path} for t in glue}
    return replace(study, tasks={**study.tasks, **settings})


def method_settings(method: str) -> dict[str, Any]:
    """TrainConfig fields of a method spec: the canonical `method` (the harness trains every
    method of isobn.methods, regularisers included)."""
    return {"method": canonical(method, "methods")}


def load_study(path: str | Path) -> Study:
    """Parse and check a study file; every problem is a one-line UserError."""
    from isobn.paths import not_a_file

    path = Path(path)
    problem = not_a_file(path)
    if problem is not None and problem.endswith(" does not exist") and not path.is_symlink():
        raise UserError(f"study file not found: {path}; check the path")
    if problem is not None and problem.endswith(" does not exist"):
        raise UserError(f"{problem}; fix the link, or pass the study file itself")
    if problem is not None:
        raise UserError(f"{problem}, not a study file; pass a .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path} is not valid UTF-8 (byte 0x{error.object[error.start]:02x} at offset "
            f"{error.start}); re-encode it as UTF-8"
        ) from None
    except OSError as error:
        raise UserError(
            f"cannot read {path} ({error.strerror or error}); check its permissions"
        ) from None
    return parse_study(text, path)


def parse_study(text: str, path: Path) -> Study:
    """Parse and check the text of the study file `path`; one-line UserErrors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path} is not valid TOML ({error}); fix the file") from None
    unknown = set(data) - {"study", "train", "tasks", "block"}
    if unknown:
        raise UserError(
            f"{path}: unknown table(s) {sorted(unknown)}; use study, train, tasks, block"
        )
    head = _table(data, "study", path)
    train = _settings(_table(data, "train", path), f"{path} [train]")
    tasks = _task_tables(_table(data, "tasks", path), path)
    raw_blocks = data.get("block")
    if not isinstance(raw_blocks, list) or not raw_blocks:
        raise UserError(f"{path} declares no [[block]]: add one with tasks, sizes, methods, seeds")
    blocks = [_block(raw, i, path, tasks) for i, raw in enumerate(raw_blocks, 1)]
    names = [b.name for b in blocks]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: two blocks share a name; give each [[block]] its own name")
    name = head.get("name")
    if name is not None:
        check_name(name, f"{path} [study] name")
    study = Study(
        name=name or (path.stem if is_name(path.stem) else "study"),
        model=str(head.get("model", "minilm")),
        description=str(head.get("description", "")),
        train=train,
        tasks=tasks,
        blocks=blocks,
        source=text,
        path=str(path),
    )
    for cell in {(c.task, c.size, c.grid): c for c in study.cells()}.values():
        cfg = study.config(cell, out="unused")
        try:
            cfg.validate()  # every setting before hours of compute
        except UserError as error:
            if not cell.grid:
                raise
            raise UserError(f"{path} grid point {point_text(cell.grid)}: {error}") from None
        if cfg.task is not None:
            _check_task_name(cfg.task, path)
    return study


def check_task_files(study: Study) -> None:
    """Every data file the study names is a regular file this process can read, as `isobn
    train` wants it (before any cell runs; a report needs none): not missing, no directory,
    no named pipe, no broken link (isobn.tasks.files.data_file_problem)."""
    from isobn.tasks.files import data_file_problem
    from isobn.training.safe_files import check_path

    for name, values in study.tasks.items():
        for setting in _FILE_FIELDS:
            file = values.get(setting)
            if file is None:
                continue
            where = f"{study.path} [tasks.{name}] {setting}"
            check_path(file, where)
            problem = data_file_problem(file, split=setting.removesuffix("_file"))
            if problem is not None and problem.startswith("file not found"):
                problem = (
                    f"file not found: {file} (a relative path is read from the directory "
                    "isobn study runs in); check the path"
                )
            if problem is not None:
                raise UserError(f"{where}: {problem}")


def task_name(name: str) -> str:
    """The canonical name of a task: a task isobn ships by its registered name (`SST-2` ->
    `sst2`, `MR` -> `mr`), any other name as written."""
    from isobn.tasks import task_key

    try:
        return task_key(name)
    except UserError:
        return name


def _task_tables(tables: dict, path: Path) -> dict[str, dict[str, Any]]:
    """[tasks.NAME] tables by canonical task name; NAME must be an identifier, and two tables
    of one task (`[tasks.mr]` and `[tasks.MR]`) are refused."""
    tasks: dict[str, dict[str, Any]] = {}
    spelled: dict[str, str] = {}
    for name, values in tables.items():
        check_name(name, f"{path}: the task name of [tasks.{name!r}]")
        key = task_name(name)
        if key.lower() in spelled:
            raise UserError(
                f"{path}: [tasks.{spelled[key.lower()]}] and [tasks.{name}] are one task "
                "(names are not case-sensitive); keep one table"
            )
        spelled[key.lower()] = name
        tasks[key] = _settings(values, f"{path} [tasks.{name}]")
    return tasks


def _block_tasks(names: list[str], tables: dict[str, Any], where: str) -> list[str]:
    """A block's tasks by canonical name: a [tasks.NAME] table's name when one matches
    without regard to case (or through a shipped task's alias), else task_name. Two
    spellings of one task are refused."""
    by_lower = {key.lower(): key for key in tables}
    resolved: dict[str, str] = {}
    for name in names:
        check_name(name, f"{where} tasks: the task name")
        key = by_lower.get(name.lower()) or by_lower.get(task_name(name).lower(), task_name(name))
        if key in resolved:
            raise UserError(
                f"{where} tasks names one task twice: {resolved[key]!r} and {name!r} are both "
                f"{key!r}; keep one"
            )
        resolved[key] = name
    return list(resolved)


def _check_task_name(name: str, path: Path) -> None:
    """A block's task without files of its own must be one isobn ships (or GLUE)."""
    from isobn.tasks import TASK_NAMES, task_key

    try:
        task_key(name)
    except UserError:
        raise UserError(
            f"{path}: unknown task {name!r}: choose one of {', '.join(TASK_NAMES)}, or add a "
            f"[tasks.{name}] table with train_file and dev_file"
        ) from None


def _table(data: dict, name: str, path: Path) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise UserError(f"{path}: [{name}] must be a table")
    return value


def _settings(values: Any, where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise UserError(f"{where} must be a table of settings")
    known = {f.name for f in fields(TrainConfig)} - _CELL_FIELDS
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(
            f"{where}: unknown setting(s) {unknown}; allowed: {', '.join(sorted(known))}"
        )
    return {name: _typed(name, value, where) for name, value in values.items()}


def _typed(name: str, value: Any, where: str) -> Any:
    """A TOML value checked against its TrainConfig field's type (a quoted "false" would
    otherwise be a true boolean, a quoted "3" a traceback); an integer given for a float
    field becomes a float."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if isinstance(hint, InitVar):
        hint = hint.type
    kinds = [k for k in (typing.get_args(hint) or (hint,)) if k is not type(None)]
    for kind in kinds:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
    expected = " or ".join(_TOML_KIND[k] for k in kinds if k in _TOML_KIND) or "another value"
    raise UserError(
        f"{where}: {name} must be {expected}, got {value!r}; write e.g. "
        f"{name} = {_TOML_EXAMPLE[kinds[0]] if kinds[0] in _TOML_EXAMPLE else '...'}"
    )


_TOML_KIND = {
    bool: "true or false (unquoted)",
    int: "an integer",
    float: "a number",
    str: "a string",
}
_TOML_EXAMPLE = {bool: "true", int: "3", float: "0.1", str: '"text"'}


def _block(raw: Any, number: int, path: Path, tables: dict[str, Any]) -> Block:
    where = f"{path} [[block]] {number}"
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a table")
    missing = [key for key in ("tasks", "sizes", "methods", "seeds") if key not in raw]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}")
    unknown = set(raw) - {"name", "tasks", "sizes", "methods", "seeds", "grid"}
    if unknown:
        raise UserError(
            f"{where}: unknown key(s) {sorted(unknown)}; use name, tasks, sizes, "
            "methods, seeds, grid"
        )
    name = raw.get("name", f"block{number}")
    check_name(name, f"{where} name")
    return Block(
        name=name,
        tasks=_block_tasks(_list(raw["tasks"], str, f"{where} tasks"), tables, where),
        sizes=[_size(s, where) for s in _list(raw["sizes"], (int, str), f"{where} sizes")],
        methods=_methods(_list(raw["methods"], str, f"{where} methods"), f"{where} methods"),
        seeds=[_seed(s, where) for s in _list(raw["seeds"], int, f"{where} seeds")],
        grid=_grid(raw.get("grid", {}), f"{where} grid"),
    )


def _grid(raw: Any, where: str) -> dict[str, list]:
    """A block's grid: each axis a tunable TrainConfig setting with a non-empty list of
    distinct values of its type ([block.grid] learning_rate = [2e-5, 5e-5])."""
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a table, e.g. [block.grid] learning_rate = [2e-5, 5e-5]")
    grid = {}
    for name, values in raw.items():
        if name not in GRID_AXES:
            why = (
                "method parameters go in the method spec, e.g. isobn:beta=0.25"
                if name == "method"
                else f"a grid may tune {', '.join(sorted(GRID_AXES))}"
            )
            raise UserError(f"{where}: {name!r} cannot be a grid axis; {why}")
        if not isinstance(values, list) or not values:
            raise UserError(f"{where} {name} must be a non-empty list, e.g. {name} = [...]")
        typed = [_typed(name, value, f"{where} {name}") for value in values]
        if len(set(map(value_text, typed))) != len(typed):
            raise UserError(f"{where} {name} lists a value twice: {values!r}")
        grid[name] = typed
    return grid


def _methods(specs: list[str], where: str) -> list[str]:
    """The canonical method specs; two spellings of one method (``isobn`` and
    ``isobn:beta=0.5``) would be one cell under two names, so they are refused."""
    seen: dict[str, str] = {}
    for spec in specs:
        method = canonical(spec, where)
        if method in seen:
            raise UserError(
                f"{where} names one method twice: {seen[method]!r} and {spec!r} are both "
                f"{method!r}; keep one"
            )
        seen[method] = spec
    return list(seen)


def _list(value: Any, kind, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise UserError(f"{where} must be a non-empty list")
    if any(isinstance(v, bool) or not isinstance(v, kind) for v in value):
        raise UserError(f"{where}: every item must be {_kind_name(kind)}, got {value!r}")
    if len(set(value)) != len(value):
        raise UserError(f"{where} lists an item twice: {value!r}")
    return list(value)


def _kind_name(kind) -> str:
    return {str: "a string", int: "an integer"}.get(kind, 'an integer or "full"')


def _size(value: int | str, where: str) -> int | None:
    if value == "full":
        return None
    if isinstance(value, str) or value < 2:
        raise UserError(f'{where} sizes: {value!r} must be an integer >= 2 or "full"')
    return value


def _seed(value: int, where: str) -> int:
    if not 0 <= value < 2**32:
        raise UserError(f"{where} seeds: {value} must be in [0, 2**32 - 1]")
    return value


__all__ = [
    "GRID_AXES",
    "Block",
    "Cell",
    "GridPoint",
    "Study",
    "grid_points",
    "load_study",
    "method_settings",
    "parse_study",
    "point_text",
    "task_name",
    "with_data_dir",
]
