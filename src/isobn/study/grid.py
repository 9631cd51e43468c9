"""Grid points of a study block (`[block.grid]`): the settings a grid may tune, and how a
point is written in cell keys and tables."""

from __future__ import annotations

import itertools
from dataclasses import fields
from typing import Any

from isobn.training.train import TrainConfig

# A grid point: (setting, value) pairs sorted by setting, e.g. (("learning_rate", 2e-05),)
GridPoint = tuple[tuple[str, Any], ...]


def _grid_axes() -> frozenset[str]:
    """TrainConfig fields a [block.grid] may tune: what changes a run's training (the model's
    pooling and dropout, the optimiser, the schedule, the length, PEFT), not its data, its
    model, its method (method parameters stay in method specs), its seed or how it is run."""
    not_per_cell = {"model", "trust_remote_code", "method", "seed", "isotropy_examples"}
    return frozenset(
        f.name
        for f in fields(TrainConfig)
        if f.metadata.get("group") in ("model", "method", "training")
        and not f.metadata.get("resume_free")
        and f.name not in not_per_cell
    )


GRID_AXES = _grid_axes()


def value_text(value: Any) -> str:
    """A grid value as it is written in keys and tables: floats by repr (shortest text that
    reads back as the same float: 2e-05, 0.0001), booleans as TOML writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def point_text(point: GridPoint) -> str:
    """'learning_rate=2e-05,batch_size=16'; '' for the empty point of a block without grid."""
    return ",".join(f"{name}={value_text(value)}" for name, value in point)


def grid_points(grid: dict[str, list]) -> list[GridPoint]:
    """Every point of a grid, in order: the product of the axes sorted by name, each axis's
    values as listed ([()] for no grid)."""
    names = sorted(grid)
    return [tuple(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


__all__ = ["GRID_AXES", "GridPoint", "grid_points", "point_text", "value_text"]
