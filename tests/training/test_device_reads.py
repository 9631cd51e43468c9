"""The training loop reads the device only at log lines, evaluations and checkpoint writes
(a read is a sync on a GPU; on the CPU it is the aten op `_local_scalar_dense`), and a
non-finite loss still stops the run with its one-line error before any NaN weights are saved."""

import json
import math

import pytest
import torch
from conftest import quick_config, sentiment_rows, write_splits
from op_counts import HOST_READ, OpCounter
from safetensors.torch import load_file

import isobn.training.train as train_module
from isobn.training.running_losses import RunningLosses
from isobn.training.train import NonFiniteLossError, train


class LoopReads(OpCounter):
    """Host reads of the whole run; those inside the encoder's forward are also counted apart.
    Given a 2D mask, transformers reads there once per call (`padding_mask.all()`, to skip the
    mask of unpadded batches under SDPA); the classifier gives it the prepared 4D mask
    (isobn.training.attention_masks), so it reads nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.in_encoder = 0
        self.encoder_calls = 0
        self.encoder_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.in_encoder and str(func.overloadpacket) == HOST_READ:
            self.encoder_reads += 1
        return super().__torch_dispatch__(func, types, args, kwargs)

    def watch(self, monkeypatch) -> None:
        """Hook the encoder of every classifier `train` builds."""
        build = train_module.build_classifier

        def enter(*_):
            self.in_encoder += 1
            self.encoder_calls += 1

        def leave(*_):
            self.in_encoder -= 1

        def build_watched(*args, **kwargs):
            model = build(*args, **kwargs)
            model.encoder.register_forward_pre_hook(enter)
            model.encoder.register_forward_hook(leave)
            return model

        monkeypatch.setattr(train_module, "build_classifier", build_watched)


def new_dir(path):
    path.mkdir()
    return path


@pytest.mark.parametrize("method", ["isobn", "istar"])
def test_reads_do_not_grow_with_the_number_of_steps(
    tmp_path, tiny_bert, monkeypatch, method, sentiment_files
):
    """Two runs of 6 and 12 steps with the same log lines (none), evaluations (the epoch's
    end) and dev set read the device equally often, the encoder's forward included: no read
    per step."""
    reads = {}
    for rows in (96, 192):
        files = write_splits(new_dir(tmp_path / f"data{rows}"), "csv", sentiment_rows, train=rows)
        files["dev"] = sentiment_files["dev"]
        # I-STAR adds two loss terms: two more reads per step before
        settings = dict(epochs=1, log_every_steps=1000, method=method)
        cfg = quick_config(tmp_path / f"run{rows}", tiny_bert, files, **settings)
        counter = LoopReads()
        counter.watch(monkeypatch)
        with counter:
            train(cfg)
        reads[rows] = counter.host_reads
        assert counter.encoder_calls > 0 and counter.encoder_reads == 0
    assert reads[96] == reads[192] > 0


def test_a_log_line_is_one_read_of_all_its_losses(tmp_path, tiny_bert, monkeypatch):
    """Log lines read the losses in one copy to the host (`tolist()` of one packed tensor: one
    sync on a GPU, not an aten op on the CPU), not an `.item()` per term: logging every step
    adds no `_local_scalar_dense`, and one packed read per log line."""
    files = write_splits(new_dir(tmp_path / "data"), "csv", sentiment_rows, train=96, dev=16)
    real_read, reads, packed = RunningLosses.read, {}, {}

    def counted_read(self, world_size=1):
        packed[every] += self.count > 0
        return real_read(self, world_size)

    monkeypatch.setattr(RunningLosses, "read", counted_read)
    for every in (1, 1000):
        packed[every] = 0
        settings = dict(epochs=1, log_every_steps=every, method="istar")
        cfg = quick_config(tmp_path / f"run{every}", tiny_bert, files, **settings)
        counter = LoopReads()
        counter.watch(monkeypatch)
        with counter:
            train(cfg)
        reads[every] = counter.host_reads
    assert reads[1] == reads[1000]
    assert packed == {1: 6, 1000: 1}  # 6 log lines; else the epoch's end before evaluating


def nan_loss_at(monkeypatch, call: int) -> None:
    """The task loss of the `call`-th micro-batch (from 1) times NaN: its gradients, and so
    the weights after its optimizer step, are NaN."""
    compute_loss = train_module.compute_loss
    calls = []

    def poisoned(logits, labels, regression):
        calls.append(1)
        loss = compute_loss(logits, labels, regression)
        return loss * math.nan if len(calls) == call else loss

    monkeypatch.setattr(train_module, "compute_loss", poisoned)


def assert_saved_weights_finite_from_step(out, step: int) -> None:
    for name in ("best", "last"):
        weights = load_file(str(out / name / "model.safetensors"))
        assert all(torch.isfinite(w).all() for w in weights.values()), name
    state = json.loads((out / "last" / "trainer_state.json").read_text())
    assert state["global_step"] == step


def test_nan_between_log_lines_stops_before_any_nan_weights_are_saved(
    tmp_path, tiny_bert, sentiment_files, monkeypatch
):
    """Evaluations (best/, last/) at steps 2 and 4 of 6, a log line every 5 steps; the loss of
    the 4th micro-batch (3 optimizer steps done) is NaN, and so are the weights from its step
    on. The run stops at the read before the evaluation at step 4, naming the step of the NaN;
    best/ and last/ hold the finite weights of step 2."""
    nan_loss_at(monkeypatch, 4)
    settings = dict(epochs=1, eval_every_steps=2, log_every_steps=5)
    cfg = quick_config(tmp_path / "run", tiny_bert, sentiment_files, **settings)
    with pytest.raises(NonFiniteLossError) as error:
        train(cfg)
    assert str(error.value) == (
        "non-finite loss nan at epoch 0 step 3: lower --lr or use --precision fp32"
    )
    assert_saved_weights_finite_from_step(tmp_path / "run", 2)


def test_non_finite_weights_are_not_saved(tmp_path, tiny_bert, sentiment_files, monkeypatch):
    """A finite loss whose step still leaves NaN weights (here: the step itself puts one in
    after the 4th optimizer step) is caught by the weights' check before step 4's evaluation."""
    from isobn.training.optim import Optimisation

    real_step, steps = Optimisation.step, []

    def step_then_nan(self, model):
        real_step(self, model)
        steps.append(1)
        if len(steps) == 4:
            with torch.no_grad():
                self.inner_optimizer().param_groups[0]["params"][0][0, 0] = math.nan

    monkeypatch.setattr(Optimisation, "step", step_then_nan)
    cfg = quick_config(tmp_path / "run", tiny_bert, sentiment_files, epochs=1, eval_every_steps=2)
    with pytest.raises(NonFiniteLossError, match="non-finite weights at epoch 0 step 4: lower"):
        train(cfg)
    assert_saved_weights_finite_from_step(tmp_path / "run", 2)


@pytest.mark.parametrize("method", ["none", "istar"])
def test_training_step_reads_nothing_even_when_the_loss_is_nan(tiny_bert, method):
    """The step returns its losses on the device; a NaN one is the caller's to find."""
    from test_train import tiny_batch, tiny_classifier

    from isobn.training.optim import Optimisation, adamw
    from isobn.training.train import training_step

    model = tiny_classifier(tiny_bert, method).train()
    opt = Optimisation(adamw(model, 1e-3, 0.0))
    counter = LoopReads()
    model.encoder.register_forward_pre_hook(lambda *_: setattr(counter, "in_encoder", 1))
    model.encoder.register_forward_hook(lambda *_: setattr(counter, "in_encoder", 0))
    with counter:
        training_step(model, tiny_batch(tiny_bert), opt)
        with torch.no_grad():
            model.classifier.weight.fill_(math.nan)
        losses = training_step(model, tiny_batch(tiny_bert), opt)
    assert counter.host_reads == 0
    assert math.isnan(losses["loss"].item())


def test_running_losses_sum_like_the_host_and_keep_the_first_non_finite():
    losses = RunningLosses(torch.device("cpu"))
    assert losses.read().count == 0  # nothing added: nothing read
    values = [(0.5, 0.25), (0.75, 0.5), (1.25, 1.0)]
    for step, (loss, task) in enumerate(values):
        losses.add({"loss": torch.tensor(loss), "task": torch.tensor(task)}, step)
    read = losses.read()
    assert read.count == 3 and read.nonfinite_step is None
    assert read.sums == {"loss": 2.5, "task": 1.75}
    for step, loss in enumerate([1.0, math.inf, math.nan, 2.0]):
        losses.add({"loss": torch.tensor(loss)}, 10 + step)
    read = losses.read()
    assert (read.nonfinite_step, read.nonfinite_loss, read.count) == (11, math.inf, 4)
    losses.add({"loss": torch.tensor(3.0)}, 14)
    read = losses.read()  # the reads start afresh
    assert read.nonfinite_step is None and read.sums == {"loss": 3.0}


def test_fp16_loss_scale_reads_nothing_through_accelerate(tiny_bert):
    """GradScaler given accelerate's optimizer wrapper reads its overflow flag every step;
    given the fused AdamW itself it does not. An overflowing step is still skipped."""
    from accelerate import Accelerator

    from isobn.training.optim import Optimisation, Precision, adamw

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 2)
    model, optimizer = accelerator.prepare(model, adamw(model, 1e-3, 0.0))
    opt = Optimisation(optimizer, precision=Precision("fp16", "cpu"), accelerator=accelerator)
    for scale in (1.0, math.inf):
        before = model.weight.detach().clone()
        loss = model(torch.ones(3, 4)).square().mean() * scale
        with OpCounter() as counter:
            opt.backward(loss)
            opt.step(model)
        assert counter.host_reads == 0
        assert torch.equal(model.weight, before) == (scale == math.inf)
