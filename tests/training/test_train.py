"""End-to-end fine-tuning on a tiny random BERT: single sentences, pairs, regression; the
pieces of the recipe alone (training_step, the optimizer), regularisers plugged into the loss,
trackers, and the settings' command line."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import quick_config
from torch import nn

from isobn.training.model import load_checkpoint
from isobn.training.train import TrainConfig, train


def run_config(tmp_path, model, files, **overrides) -> TrainConfig:
    return quick_config(tmp_path / "run", model, files, **overrides)


def read_log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def train_until_interrupted(cfg, step: int) -> None:
    """Train cfg and interrupt it (KeyboardInterrupt) once the resume point at `step` is saved."""
    import isobn.training.run_dir

    original = isobn.training.run_dir.save_training_state

    def stop_at_step(out, model, optimizer, scheduler, state, rng):
        original(out, model, optimizer, scheduler, state, rng)
        if state["global_step"] >= step:
            raise KeyboardInterrupt

    isobn.training.run_dir.save_training_state = stop_at_step
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    finally:
        isobn.training.run_dir.save_training_state = original


def test_single_sentence_run_writes_everything(trained_run):
    out = trained_run
    saved = json.loads((out / "metrics.json").read_text())
    for key in (
        "task",
        "model",
        "method",
        "seed",
        "main_metric",
        "dev",
        "test",
        "best_epoch",
        "train_seconds",
        "train_samples_per_second",
    ):
        assert key in saved
    assert saved["main_metric"] in saved["dev"] and saved["method"] == "isobn"
    assert 0.0 <= saved["dev"]["accuracy"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "isobn" and "norm" not in config  # flat, one vocabulary
    fingerprints = config.pop("fingerprints")  # of the inputs, beside the settings
    assert set(fingerprints) == {"train_file", "dev_file", "test_file", "model"}
    assert TrainConfig.from_dict(config) == TrainConfig(**config)
    log = read_log(out)
    evaluations = [e for e in log if "dev" in e]
    assert len(evaluations) == 2 and any("loss" in e for e in log)
    assert not any("losses" in e for e in log)  # no regulariser: the log as before
    iso = evaluations[-1]["isotropy"]
    assert set(iso) == {"before_norm", "after_norm"} and "isoscore" in iso["before_norm"]
    model, tokenizer = load_checkpoint(out / "best")
    assert model.norm.num_batches_tracked.item() > 0  # IsoBN buffers travel with the weights
    batch = tokenizer(["the movie was good"], return_tensors="pt")
    with torch.inference_mode():
        logits = model(batch["input_ids"], batch["attention_mask"]).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()


def test_the_signal_is_learned(tmp_path, tiny_bert, sentiment_files):
    cfg = run_config(tmp_path, tiny_bert, sentiment_files, method="none", epochs=8, pooling="mean")
    result = train(cfg)
    assert result["dev"]["accuracy"] >= 0.75


def test_sentence_pairs(tmp_path, tiny_bert, pair_files):
    cfg = run_config(
        tmp_path,
        tiny_bert,
        pair_files,
        text_column="premise",
        text_pair_column="hypothesis",
        method="isobn:bias_correction=false",
        pooling="pooler",
    )
    result = train(cfg)
    assert "test" not in result and result["method"] == "isobn:bias_correction=false"
    assert np.isfinite(result["dev"]["accuracy"])


def test_regression(tmp_path, tiny_bert, regression_files):
    cfg = run_config(
        tmp_path,
        tiny_bert,
        regression_files,
        label_column="score",
        regression=True,
        method="isobn",
        epochs=3,
        pooling="mean",
    )
    result = train(cfg)
    assert result["main_metric"] in result["dev"]
    assert {"pearson", "spearman"} <= set(result["dev"])
    model, _ = load_checkpoint(tmp_path / "run" / "best")
    assert model.classifier.out_features == 1


@pytest.mark.parametrize("method", ["batchnorm", "layernorm"])
def test_other_norms(tmp_path, tiny_bert, sentiment_files, method):
    result = train(run_config(tmp_path, tiny_bert, sentiment_files, method=method, epochs=1))
    assert result["method"] == method and np.isfinite(result["dev"]["accuracy"])


def test_early_stopping_and_eval_every_steps(tmp_path, tiny_bert, sentiment_files):
    cfg = run_config(
        tmp_path,
        tiny_bert,
        sentiment_files,
        epochs=5,
        eval_every_steps=2,
        patience=1,
        learning_rate=1e-7,
    )
    result = train(cfg)
    assert result["stopped_early"]
    assert len([e for e in read_log(tmp_path / "run") if "dev" in e]) < 5 * 3


def test_interrupted_run_is_protected_and_resume_checks_settings(
    tmp_path, tiny_bert, sentiment_files, trained_run
):
    from isobn.errors import UserError

    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    finished = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").unlink()  # as if killed after the last checkpoint
    settings = dict(epochs=1, eval_every_steps=3)
    with pytest.raises(UserError, match="interrupted run"):
        train(run_config(tmp_path, tiny_bert, sentiment_files, **settings))
    with pytest.raises(UserError, match="learning_rate 0.001 -> 0.01"):
        train(
            run_config(
                tmp_path, tiny_bert, sentiment_files, **settings, resume=True, learning_rate=1e-2
            )
        )
    with pytest.raises(UserError, match="method 'isobn' -> 'none'"):
        train(
            run_config(tmp_path, tiny_bert, sentiment_files, **settings, resume=True, method="none")
        )
    resumed = train(run_config(tmp_path, tiny_bert, sentiment_files, **settings, resume=True))
    assert resumed["dev"] == finished["dev"] and resumed["test"] == finished["test"]


def test_two_precisions_in_one_process(tmp_path, tiny_bert, sentiment_files):
    for precision in ("bf16", "fp32"):
        result = train(
            quick_config(
                tmp_path / precision, tiny_bert, sentiment_files, epochs=1, precision=precision
            )
        )
        assert np.isfinite(result["dev"]["accuracy"])


# --------------------------------------------------------------------------------------------
# The pieces of the recipe


def tiny_classifier(tiny_bert, method="none"):
    from isobn.training.model import ModelConfig, build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(encoder=tiny_bert, num_labels=2, pooling="cls", method=method))


def tiny_batch(tiny_bert) -> dict:
    from isobn.training.pretrained import load_tokenizer

    tokenizer = load_tokenizer(tiny_bert)
    batch = dict(tokenizer(["the movie was good", "bad plot", "a dull film"], padding=True))
    batch = {k: torch.as_tensor(v) for k, v in batch.items()}
    batch["labels"] = torch.tensor([1, 0, 0])
    return batch


def test_training_step_alone(tiny_bert):
    """What the benchmarks call: one step without accelerate; accumulation steps at the end."""
    from isobn.training.optim import Optimisation, adamw
    from isobn.training.train import training_step

    model = tiny_classifier(tiny_bert).train()
    opt = Optimisation(adamw(model, 1e-3, 0.01), grad_accum=2)
    before = model.classifier.weight.detach().clone()
    losses = training_step(model, tiny_batch(tiny_bert), opt, boundary=False)
    assert set(losses) == {"loss"} and losses["loss"].item() > 0
    assert torch.equal(model.classifier.weight, before)  # gradients accumulate, no step
    assert model.classifier.weight.grad is not None
    training_step(model, tiny_batch(tiny_bert), opt, boundary=True)
    assert not torch.equal(model.classifier.weight, before)
    assert model.classifier.weight.grad is None  # zeroed after the step


@pytest.mark.parametrize("max_grad_norm", [0.0, 1e-3])
def test_max_grad_norm_zero_does_not_clip(tiny_bert, max_grad_norm):
    """One SGD step of lr 1 moves the weights by minus the gradient: unclipped with 0 (as the
    released IsoBN code), scaled to total norm 1e-3 otherwise."""
    from isobn.training.optim import Optimisation
    from isobn.training.train import training_step

    model = tiny_classifier(tiny_bert).train()
    grads = {}

    def keep(weight):
        grads["w"] = weight.grad.clone()

    model.classifier.weight.register_post_accumulate_grad_hook(keep)
    before = model.classifier.weight.detach().clone()
    opt = Optimisation(torch.optim.SGD(model.parameters(), lr=1.0), max_grad_norm=max_grad_norm)
    training_step(model, tiny_batch(tiny_bert), opt, boundary=True)
    moved = before - model.classifier.weight.detach()
    if max_grad_norm == 0:
        torch.testing.assert_close(moved, grads["w"])
    else:
        assert moved.norm() < 1e-3 < grads["w"].norm()


def test_fused_adamw_by_version_and_device():
    from isobn.training.optim import fused_adamw_supported

    cpu, cuda, mps = (torch.device(d) for d in ("cpu", "cuda", "mps"))
    assert fused_adamw_supported(cuda, "2.1.0")
    assert not fused_adamw_supported(cpu, "2.3.1") and fused_adamw_supported(cpu, "2.4.0")
    assert fused_adamw_supported(cpu, "2.13.0+cpu") and not fused_adamw_supported(mps, "2.13.0")


# --------------------------------------------------------------------------------------------
# Regularisers: a loss term on the pooled embedding plugs in without touching the loop


class ToyRegulariser(nn.Module):
    """weight * mean((pooled - reference mean)^2); the reference is a buffer (it must travel
    with the checkpoint) set before every epoch."""

    seen: list[tuple[int, ...]] = []  # shapes given to set_reference, by every instance

    def __init__(self, num_features: int, weight: float = 0.5) -> None:
        super().__init__()
        self.weight = weight
        self.register_buffer("reference_mean", torch.zeros(num_features))
        self.register_buffer("references", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def set_reference(self, pooled: torch.Tensor) -> None:
        assert not torch.is_inference(pooled) and pooled.dtype == torch.float32
        self.reference_mean.copy_(pooled.mean(0))
        self.references += 1
        ToyRegulariser.seen.append(tuple(pooled.shape))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.weight * (pooled.float() - self.reference_mean).square().mean()


@pytest.fixture
def toy_method(monkeypatch):
    from isobn.methods import METHODS
    from isobn.methods.spec import MethodDef, Param

    definition = MethodDef(
        "toyreg", "regulariser", "a test regulariser", {"weight": Param(float)}, ToyRegulariser
    )
    monkeypatch.setitem(METHODS, "toyreg", definition)
    monkeypatch.setattr(ToyRegulariser, "seen", [])
    return "isobn+toyreg"


class Recorder:
    """An accelerate tracker that keeps what it is given (--report-to through TRACKERS)."""

    def __new__(cls):
        from accelerate.tracking import GeneralTracker

        class _Recorder(GeneralTracker):
            name = "recorder"
            requires_logging_directory = False

            def __init__(self) -> None:
                super().__init__()
                self.config, self.logs, self.finished = None, [], False

            @property
            def tracker(self):
                return self

            def store_init_configuration(self, values: dict) -> None:
                self.config = values

            def log(self, values: dict, step: int | None = None, **kwargs) -> None:
                self.logs.append((step, values))

            def finish(self) -> None:
                self.finished = True

        return _Recorder()


def test_regulariser_loss_log_reference_and_tracker(
    tmp_path, tiny_bert, sentiment_files, toy_method, monkeypatch
):
    import isobn.training.build

    recorder = Recorder()
    monkeypatch.setitem(isobn.training.build.TRACKERS, "tensorboard", recorder)
    cfg = run_config(
        tmp_path, tiny_bert, sentiment_files, method=toy_method, isotropy_examples=40,
        report_to="tensorboard", keep_last=True,
    )  # fmt: skip
    result = train(cfg)
    assert result["method"] == "isobn+toyreg"
    log = read_log(tmp_path / "run")
    lines = [e for e in log if "loss" in e]
    assert len(lines) == 12 and all(set(e["losses"]) == {"task", "toyreg"} for e in lines)
    for entry in lines:  # the optimised loss is the task loss plus the (weighted) term
        assert entry["loss"] == pytest.approx(entry["losses"]["task"] + entry["losses"]["toyreg"])
        assert entry["losses"]["toyreg"] > 0
    # before each of the 2 epochs, the first 40 training rows, pooled (H = 32)
    model, _ = load_checkpoint(tmp_path / "run" / "best")
    (regulariser,) = model.regularisers
    assert isinstance(regulariser, ToyRegulariser) and model.regulariser_names == ["toyreg"]
    assert regulariser.references.item() >= 1 and regulariser.reference_mean.abs().sum() > 0
    assert ToyRegulariser.seen == [(40, 32), (40, 32)]
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    assert state["regularisers.0.references"].item() == 2
    # the tracker saw the settings, training lines, dev metrics and isotropy
    assert recorder.config["method"] == "isobn+toyreg" and recorder.finished
    keys = set().union(*(values for _, values in recorder.logs))
    assert {"train/loss", "train/lr", "train/losses/toyreg", "dev/accuracy"} <= keys
    assert "isotropy/before_norm/isoscore" in keys


def test_regulariser_state_resumes_exactly(tmp_path, tiny_bert, sentiment_files, toy_method):
    """Killed in the second epoch (after its reference was set), resumed: the same end."""
    from safetensors.torch import load_file

    settings = dict(method=toy_method, isotropy_examples=40, save_every_steps=1)
    reference = tmp_path / "reference"
    train(quick_config(reference, tiny_bert, sentiment_files, **settings))

    out = tmp_path / "killed"
    train_until_interrupted(quick_config(out, tiny_bert, sentiment_files, **settings), 9)
    train(quick_config(out, tiny_bert, sentiment_files, **settings, resume=True))
    assert (out / "log.jsonl").read_text() == (reference / "log.jsonl").read_text()
    got, expected = (load_file(str(d / "best" / "model.safetensors")) for d in (out, reference))
    assert got.keys() == expected.keys() and "regularisers.0.reference_mean" in got
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


# --------------------------------------------------------------------------------------------
# Settings: the command line, the earlier spellings of the method, old config.json files


def parsed_config(*argv: str) -> TrainConfig:
    from isobn.cli.main import build_parser
    from isobn.cli.options import config_from_args

    args = build_parser().parse_args(["train", "--out", "x", *argv])
    return config_from_args(TrainConfig, args)


@pytest.mark.parametrize(
    ("argv", "method"),
    [
        ((), "isobn"),
        (("--method", "isobn:beta=0.25"), "isobn:beta=0.25"),
        (("--method", "isobn:beta=0.5"), "isobn"),  # the default is no parameter
    ],
)  # fmt: skip
def test_method_option_is_the_canonical_spec(argv, method):
    assert parsed_config(*argv).method == method


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["--norm", "none"], "did you mean --method?"),
        (["--isobn-beta", "0.25"], "did you mean --method isobn:beta=X?"),
        (["--isobn-momentum", "0.1"], "did you mean --method isobn:momentum=X?"),
        (["--isobn-no-corr"], "did you mean --method isobn:use_correlation=false?"),
        (["--method", "isobn-legacy"], "unknown method 'isobn-legacy'"),
    ],
)
def test_spellings_before_1_0_are_refused_with_todays_name(argv, hint, capsys):
    """One name per setting: the earlier spellings are refused, naming today's."""
    from isobn.cli.main import main

    try:
        code = main(["train", "--out", "x", *argv])
    except SystemExit as error:  # argparse's
        code = error.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert hint in err and "\n" not in err


def test_every_default_is_the_dataclass_default():
    from dataclasses import fields

    parsed, default = parsed_config(), TrainConfig(out="x")
    assert parsed == default
    assert {f.name for f in fields(TrainConfig)} >= {"method", "report_to", "learning_rate"}


def test_old_config_json_migrates():
    old = {
        "out": "o", "task": "mr", "data_dir": None, "train_file": "t.csv", "dev_file": "d.csv",
        "norm": "isobn-legacy", "isobn_beta": 0.5, "isobn_momentum": 0.1,
        "isobn_correlation": True, "learning_rate": 1e-3,
    }  # fmt: skip
    cfg = TrainConfig.from_dict(old)
    assert cfg.method == "isobn:bias_correction=false,momentum=0.1"
    assert cfg.task is None  # a run on files ignored its task
    new = TrainConfig(
        out="o", train_file="t.csv", dev_file="d.csv", learning_rate=1e-3,
        method="isobn:momentum=0.1,bias_correction=false",
    )  # fmt: skip
    assert cfg.resume_changes(new) == [] and cfg == new


def test_old_method_keys_are_read_only_from_saved_files():
    from isobn.training.config import method_of, saved_settings

    # study cell records of versions before 1.0: "method" null beside the old keys
    record = {"method": None, "norm": "none", "isobn_beta": 0.5, "isobn_momentum": 0.05}
    assert method_of(record) == "none" and saved_settings(record)["method"] == "none"
    assert "norm" not in saved_settings(record)
    with pytest.raises(TypeError):
        TrainConfig(out="x", norm="isobn")  # no keyword of the old spelling


# --------------------------------------------------------------------------------------------
# Adam epsilon and drop_last (the released IsoBN train.py's 1e-6 and drop_last), and run
# directories written before these settings existed


def test_adam_epsilon_reaches_adamw():
    from isobn.training.optim import adamw

    model = nn.Linear(4, 2)
    assert {g["eps"] for g in adamw(model, 1e-3, 0.0).param_groups} == {1e-8}  # torch's
    assert {g["eps"] for g in adamw(model, 1e-3, 0.0, 1e-6).param_groups} == {1e-6}


def test_drop_last_keeps_only_full_batches():
    from isobn.training.data import length_grouped_batches

    lengths = np.arange(100) % 7 + 1
    kept = length_grouped_batches(lengths, 16, 3, 0)
    full = length_grouped_batches(lengths, 16, 3, 0, drop_last=True)
    assert len(kept) == 7 and sorted(map(len, kept)) == [4] + [16] * 6  # ceil(100 / 16)
    assert len(full) == 6 and {len(b) for b in full} == {16}  # floor(100 / 16)
    seen = set(np.concatenate(full).tolist())
    assert len(seen) == 96  # 4 examples left out, each once at most
    again = length_grouped_batches(lengths, 16, 3, 1, drop_last=True)
    assert set(np.concatenate(again).tolist()) != seen  # other ones the next epoch
    # a multiple of the batch size loses nothing, in the same order
    even = lengths[:96]
    for a, b in zip(
        length_grouped_batches(even, 16, 3, 0),
        length_grouped_batches(even, 16, 3, 0, drop_last=True),
        strict=True,
    ):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(("drop_last", "per_epoch"), [(False, 7), (True, 6)])
def test_drop_last_sets_the_schedule_length(drop_last, per_epoch):
    """100 examples in batches of 16, 2 epochs: 7 (ceil) or 6 (floor) steps an epoch; the
    linear schedule warms up for half of them and reaches 0 at the last one."""
    from types import SimpleNamespace

    from isobn.training.build import build_optimisation

    cfg = TrainConfig(
        out="x", batch_size=16, epochs=2, warmup_ratio=0.5, drop_last=drop_last, adam_epsilon=1e-6
    )
    data = SimpleNamespace(encoded={"train": SimpleNamespace(lengths=np.full(100, 5))})
    accelerator = SimpleNamespace(num_processes=1, device=torch.device("cpu"))
    opt, micro_per_rank = build_optimisation(cfg, nn.Linear(4, 2), data, accelerator)
    assert micro_per_rank == per_epoch
    total, warmup = 2 * per_epoch, per_epoch  # int(0.5 * total)
    factor = opt.scheduler.lr_lambdas[0]
    assert factor(warmup - 1) < 1 and factor(warmup) == 1
    assert factor(total - 1) > 0 and factor(total) == 0
    assert {g["eps"] for g in opt.optimizer.param_groups} == {1e-6}


def test_new_settings_on_the_command_line():
    assert (parsed_config().adam_epsilon, parsed_config().drop_last) == (1e-8, False)
    cfg = parsed_config("--adam-epsilon", "1e-6", "--drop-last")
    assert (cfg.adam_epsilon, cfg.drop_last) == (1e-6, True)


def test_drop_last_run_counts_steps_and_resumes_exactly(tmp_path, tiny_bert, sentiment_files):
    """96 rows in batches of 20: 4 steps an epoch (not 5), 80 rows seen; killed in the second
    epoch and resumed, the same log and weights as the run that was not interrupted."""
    from safetensors.torch import load_file

    settings = dict(batch_size=20, drop_last=True, save_every_steps=1, isotropy_examples=0)
    reference = tmp_path / "reference"
    train(quick_config(reference, tiny_bert, sentiment_files, **settings))
    log = read_log(reference)
    assert [e["step"] for e in log if "dev" in e] == [4, 8]
    assert [e["epoch"] for e in log if "loss" in e] == [0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2]
    config = json.loads((reference / "config.json").read_text())
    assert (config["drop_last"], config["adam_epsilon"]) == (True, 1e-8)

    out = tmp_path / "killed"
    train_until_interrupted(quick_config(out, tiny_bert, sentiment_files, **settings), 6)
    state = json.loads((out / "last" / "trainer_state.json").read_text())
    assert (state["epoch"], state["micro_step"], state["samples"]) == (1, 2, 120)
    train(quick_config(out, tiny_bert, sentiment_files, **settings, resume=True))
    assert (out / "log.jsonl").read_text() == (reference / "log.jsonl").read_text()
    got, expected = (load_file(str(d / "best" / "model.safetensors")) for d in (out, reference))
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


def test_run_directory_without_the_new_settings_resumes(
    tmp_path, tiny_bert, sentiment_files, trained_run
):
    """A config.json written before adam_epsilon and drop_last existed: they are at their
    defaults (the behaviour of that version), so the run resumes and its result is reused;
    asking for other values is refused."""
    from isobn.errors import UserError
    from isobn.training.config import saved_settings

    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    config = json.loads((out / "config.json").read_text())
    for key in ("adam_epsilon", "drop_last"):
        del config[key]
    (out / "config.json").write_text(json.dumps(config))
    saved = TrainConfig.from_dict(config)
    assert (saved.adam_epsilon, saved.drop_last) == (1e-8, False)
    assert saved_settings(config)["adam_epsilon"] == 1e-8
    settings = dict(epochs=1, eval_every_steps=3, resume=True)
    finished = json.loads((out / "metrics.json").read_text())
    assert train(run_config(tmp_path, tiny_bert, sentiment_files, **settings)) == finished
    (out / "metrics.json").unlink()  # as if killed after the last checkpoint
    for changed, message in [
        (dict(drop_last=True), "drop_last False -> True"),
        (dict(adam_epsilon=1e-6), "adam_epsilon 1e-08 -> 1e-06"),
    ]:
        with pytest.raises(UserError, match=message):
            train(run_config(tmp_path, tiny_bert, sentiment_files, **settings, **changed))
    resumed = train(run_config(tmp_path, tiny_bert, sentiment_files, **settings))
    assert resumed["dev"] == finished["dev"] and resumed["test"] == finished["test"]
