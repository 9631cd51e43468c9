"""One progress view of a study for every runner: cells finished / running / to do, and an ETA.

The view is a log line at every cell start and finish (readable in a terminal and in a log
file alike). When more than one cell runs at once, each cell's training bars go to its own
file, DIR/runs/KEY/progress.log, instead of interleaving in one stream.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

logger = logging.getLogger(__name__)

PROGRESS_LOG = "progress.log"  # a cell's training bars, under DIR/runs/KEY/


class StudyProgress:
    """Counts of a study session's cells and an ETA from the finished cells' times.

    ETA = mean wall time of the cells finished in this session x (to do + running) / slots,
    with slots the cells that run at once (jobs, or the Ray cluster's capacity); none until a
    cell has finished. A cell that another process holds leaves this session's count, unless
    one of this session's jobs holds it (a job skips the cells its siblings run)."""

    def __init__(self, total: int, finished: int, slots: int) -> None:
        self.total, self.finished, self.slots = total, finished, max(1, slots)
        self.running: set[str] = set()
        self.elsewhere: set[str] = set()  # run by another process on the same directory
        self.seconds: list[float] = []
        self.done_here: set[str] = set()  # finished in this session

    @property
    def to_do(self) -> int:
        return max(0, self.total - self.finished - len(self.running) - len(self.elsewhere))

    def eta_seconds(self) -> float | None:
        if not self.seconds:
            return None
        mean = sum(self.seconds) / len(self.seconds)
        return mean * (self.to_do + len(self.running)) / self.slots

    def line(self) -> str:
        eta = self.eta_seconds()
        text = (
            f"study: {self.finished} of {self.total} cells finished, {len(self.running)} "
            f"running, {self.to_do} to do"
        )
        if self.elsewhere:
            text += f", {len(self.elsewhere)} run by another process"
        return text + (f"; ETA {timedelta(seconds=round(eta))}" if eta is not None else "")

    def started(self, key: str) -> None:
        self.elsewhere.discard(key)  # a sibling job's skip arrived before its start
        self.running.add(key)
        logger.info("%s started; %s", key, self.line())

    def done(self, key: str, seconds: float) -> None:
        self.running.discard(key)
        self.elsewhere.discard(key)
        self.done_here.add(key)
        self.finished += 1
        self.seconds.append(seconds)
        logger.info("%s finished in %.0f s; %s", key, seconds, self.line())

    def skipped(self, key: str) -> None:
        """The cell is held or was finished by another process (ignored when one of this
        session's jobs runs or ran it)."""
        if key not in self.running and key not in self.done_here:
            self.elsewhere.add(key)

    def stopped(self, key: str) -> None:
        """The cell stopped unfinished (an error, an interrupt): it is to do again."""
        self.running.discard(key)

    def event(self, kind: str, key: str, seconds: float = 0.0) -> None:
        """Apply an event sent by a job process: started, done, skipped or stopped."""
        if kind == "started":
            self.started(key)
        elif kind == "done":
            self.done(key, seconds)
        elif kind == "skipped":
            self.skipped(key)
        else:
            self.stopped(key)


@contextlib.contextmanager
def cell_bars_to_file(run_dir: Path, enabled: bool) -> Iterator[None]:
    """Send this process's stderr (the cell's tqdm bars, its warnings) and isobn's log lines
    (resuming, evaluations) to run_dir/progress.log while the block runs, when `enabled`; the
    log lines still reach the study's own handlers too."""
    if not enabled:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    package = logging.getLogger("isobn")
    with open(run_dir / PROGRESS_LOG, "a", encoding="utf-8") as log:
        previous, level = sys.stderr, package.level
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        package.addHandler(handler)
        if package.getEffectiveLevel() > logging.INFO:
            package.setLevel(logging.INFO)
        sys.stderr = log
        try:
            yield
        finally:
            sys.stderr = previous
            package.removeHandler(handler)
            package.setLevel(level)
