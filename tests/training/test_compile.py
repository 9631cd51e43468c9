"""`isobn train --compile`: one graph for the length buckets, a bounded number of recompiles,
the same run as eager within float tolerance, and a one-line error when the backend fails."""

import json

import pytest
import torch
from conftest import quick_config, sentiment_rows, write_splits
from test_train import parsed_config

import isobn.training.compiled as compiled
import isobn.training.train as train_module
from isobn.errors import UserError
from isobn.training.train import train


class CountingBackend:
    """aot_eager (dynamo's graph capture and AOTAutograd's joint forward/backward, no C++
    compiler), counting the calls it is given (AOTAutograd may retry a graph: one more)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, graph_module, example_inputs):
        from torch._dynamo.backends.debugging import aot_eager

        self.calls += 1
        return aot_eager(graph_module, example_inputs)


def compiled_graphs() -> tuple[int, int]:
    """(frames dynamo compiled, distinct graphs it built) since `counters.clear()`."""
    from torch._dynamo.utils import counters

    return counters["frames"]["total"], counters["stats"]["unique_graphs"]


def log_losses(out) -> list[float]:
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from nothing: code compiled by an earlier test (another backend)
    would be reused while its guards hold."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def varied_lengths(n: int, seed: int) -> list[dict]:
    """Sentiment rows of 1 to 12 words: batches of many lengths."""
    rows = sentiment_rows(n, seed)
    for i, row in enumerate(rows):
        words = row["text"].split()
        row["text"] = " ".join((words * 3)[: 1 + (i * 7) % 12])
    return rows


@pytest.mark.slow  # compiling the tiny BERT's forward and backward: ~20 s, minutes when loaded
def test_compiled_run_equals_eager_with_one_graph_for_every_length(
    tmp_path, tiny_bert, monkeypatch
):
    """aot_eager runs the eager kernels on AOTAutograd's graphs: equal to eager up to the
    order of float operations (1e-5 relative). One frame compiled once: no recompile for the
    length buckets or the last, smaller batch."""
    from torch._dynamo.utils import counters

    (tmp_path / "data").mkdir()
    files = write_splits(tmp_path / "data", "csv", varied_lengths, train=88, dev=32, test=32)
    backend = CountingBackend()
    monkeypatch.setattr(compiled, "BACKEND", backend)
    widths = set()
    collate = train_module.collate

    def seen(split, indices, pad_id):
        batch = collate(split, indices, pad_id)
        widths.add(batch["input_ids"].shape)
        return batch

    monkeypatch.setattr(train_module, "collate", seen)
    counters.clear()
    results, losses = {}, {}
    for compile in (False, True):
        out = tmp_path / f"compile{compile}"
        cfg = quick_config(out, tiny_bert, files, epochs=1, compile=compile)
        results[compile] = train(cfg)
        losses[compile] = log_losses(out)
    assert len(widths) >= 4  # batches of several lengths, and a last one of 8 rows
    assert compiled_graphs() == (1, 1) and backend.calls >= 1
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-6)
    for split in ("dev", "test"):
        for name, value in results[False][split].items():
            assert results[True][split][name] == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_recompiles_are_bounded_during_the_run_only():
    limit = torch._dynamo.config.recompile_limit
    with compiled.compile_limits():
        assert torch._dynamo.config.recompile_limit == compiled.RECOMPILE_LIMIT
    with compiled.compile_limits(enabled=False):
        assert torch._dynamo.config.recompile_limit == limit
    assert torch._dynamo.config.recompile_limit == limit


def test_a_static_shape_per_call_stops_compiling_at_the_limit():
    """What the limit guards against: a graph per shape. Past the limit torch runs eagerly."""
    from torch._dynamo.utils import counters

    counters.clear()

    def double(x):
        return x * 2

    fn = torch.compile(double, dynamic=False, backend="eager")
    with compiled.compile_limits():
        for n in range(2, 12):
            assert torch.equal(fn(torch.ones(n)), torch.full((n,), 2.0))
    assert compiled_graphs()[1] == compiled.RECOMPILE_LIMIT


def test_a_failing_backend_is_one_line(tmp_path, tiny_bert, sentiment_files, monkeypatch):
    def broken(graph_module, example_inputs):
        raise RuntimeError("no compiler here\nmore detail")

    monkeypatch.setattr(compiled, "BACKEND", broken)
    cfg = quick_config(tmp_path / "run", tiny_bert, sentiment_files, epochs=1, compile=True)
    with pytest.raises(
        UserError,
        match=r"^--compile failed \(broken backend: no compiler here\); run without --compile$",
    ):
        train(cfg)


def test_compile_on_the_command_line():
    assert not parsed_config().compile and parsed_config("--compile").compile
