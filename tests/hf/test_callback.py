"""IsotropyCallback under an unchanged HF Trainer on a tiny BERT: the values it logs (read back
from state.log_history) are isobn.isotropy's on the vector entering the head, before and after
IsoBN; it measures only at evaluations (or every N steps), reads nothing per training step, and
leaves IsoBN's statistics and the modules' modes as they were."""

import numpy as np
import pytest
import torch
from op_counts import OpCounter
from test_hf import TinyDataset as Examples
from tiny_encoders import sequence_classifier
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import isobn
from isobn import isotropy
from isobn.hf import IsotropyCallback, find_isobn

VOCAB, LABELS = 100, 3
METRICS = ("isoscore", "mean_abs_corr", "std_cv", "effective_rank")


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=LABELS,
    )
    return BertForSequenceClassification(config)


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter(Examples(4, 0))


def trainer_for(model, tmp_path, eval_dataset=None, max_steps=4, **settings) -> Trainer:
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        max_steps=max_steps,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        **settings,
    )
    return Trainer(model=model, args=args, train_dataset=Examples(32, 3), eval_dataset=eval_dataset)


def logged(trainer: Trainer, key: str) -> dict[int, float]:
    """step -> value of `key` in the trainer's log history."""
    return {entry["step"]: entry[key] for entry in trainer.state.log_history if key in entry}


def pooled(model, dataset) -> torch.Tensor:
    """BERT's pooler output (N, D) over `dataset`: the vector entering IsoBN's site."""
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    model.eval()
    with torch.no_grad():
        return model.bert(batch["input_ids"], batch["attention_mask"]).pooler_output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """4 steps of IsoBN training with an evaluation every 2 steps, and the callback on a dev
    set of 40 examples sampled down to 30."""
    model = isobn.attach(tiny_bert(), momentum=0.1)
    dev = Examples(40, 4)
    trainer = trainer_for(
        model, tmp_path_factory.mktemp("trainer"), dev, eval_strategy="steps", eval_steps=2
    )
    callback = IsotropyCallback(dev, max_examples=30, trainer=trainer)
    trainer.add_callback(callback)
    trainer.train()
    return trainer, callback, dev


def test_each_evaluation_logs_isotropy_before_and_after_isobn_and_the_scale(trained):
    trainer, _, _ = trained
    for key in [f"eval_isotropy/{m}" for m in METRICS] + [
        *(f"eval_isotropy/after_isobn/{m}" for m in METRICS),
        "eval_isotropy/examples",
        "eval_isobn/scale_min",
        "eval_isobn/scale_median",
        "eval_isobn/scale_max",
    ]:
        assert sorted(logged(trainer, key)) == [2, 4], key
    assert set(logged(trainer, "eval_isotropy/examples").values()) == {30.0}
    last = {key: values[4] for key, values in _all_logged(trainer).items()}
    assert 0.0 <= last["eval_isotropy/isoscore"] <= 1.0
    assert 1.0 <= last["eval_isotropy/effective_rank"] <= 32.0
    assert last["eval_isobn/scale_min"] <= last["eval_isobn/scale_median"]
    assert last["eval_isobn/scale_median"] <= last["eval_isobn/scale_max"]
    # IsoBN makes the per-dimension std more even: that is what it is for
    assert last["eval_isotropy/after_isobn/std_cv"] < last["eval_isotropy/std_cv"]


def _all_logged(trainer: Trainer) -> dict[str, dict[int, float]]:
    keys = {
        k for entry in trainer.state.log_history for k in entry if "isotropy" in k or "isobn" in k
    }
    return {key: logged(trainer, key) for key in keys}


def test_the_values_are_isotropy_reports_of_the_sample(trained):
    """The last measurement equals isobn.isotropy on the pooler output of the sampled
    examples and on IsoBN's output for them; IsoBN's statistics do not change."""
    trainer, callback, dev = trained
    model = trainer.model
    norm = find_isobn(model)
    state = {k: v.clone() for k, v in norm.state_dict().items()}
    model.train()
    values = callback.measure()
    assert model.training and norm.training  # modes restored
    for key, value in state.items():
        assert torch.equal(norm.state_dict()[key], value), key
    sample = callback.sample
    assert isinstance(sample, torch.utils.data.Subset) and len(sample) == 30
    assert sample.indices == sorted(set(sample.indices))
    x = pooled(model, sample)
    before, after = isotropy.report(x.numpy()), isotropy.report((x * norm.scale()).numpy())
    for metric in METRICS:
        assert values[f"eval_isotropy/{metric}"] == pytest.approx(before[metric], rel=1e-5)
        assert values[f"eval_isotropy/after_isobn/{metric}"] == pytest.approx(
            after[metric], rel=1e-5
        )
    scale = norm.scale().double().numpy()
    assert values["eval_isobn/scale_median"] == pytest.approx(np.median(scale))
    # the last logged measurement is this one (no step since)
    assert logged(trainer, "eval_isotropy/isoscore")[4] == values["eval_isotropy/isoscore"]


def test_evaluate_returns_the_values_with_its_metrics(trained):
    trainer, _, _ = trained
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and 0.0 <= metrics["eval_isotropy/isoscore"] <= 1.0


def test_every_n_steps_measures_at_those_steps_only(tmp_path):
    trainer = trainer_for(tiny_bert(), tmp_path, max_steps=5)
    trainer.add_callback(IsotropyCallback(Examples(20, 4), every=2, trainer=trainer))
    trainer.train()
    assert sorted(logged(trainer, "eval_isotropy/isoscore")) == [2, 4]
    assert not logged(trainer, "eval_isobn/scale_max")  # no IsoBN attached: no scale
    assert not logged(trainer, "eval_isotropy/after_isobn/isoscore")


def test_a_first_token_head_is_measured_on_token_0(tmp_path):
    """RoBERTa's head reads the first token of the sequence: the callback takes that vector."""
    model = sequence_classifier("roberta")
    dev = Examples(12, 5, vocab=model.config.vocab_size)
    trainer = trainer_for(model, tmp_path, max_steps=1)
    callback = IsotropyCallback(dev, trainer=trainer)
    values = callback.measure()
    batch = torch.utils.data.default_collate([dev[i] for i in range(len(dev))])
    model.eval()
    with torch.no_grad():
        first = model.roberta(batch["input_ids"], batch["attention_mask"])[0][:, 0]
    expected = isotropy.report(first.numpy())
    assert values["eval_isotropy/isoscore"] == pytest.approx(expected["isoscore"], rel=1e-5)
    assert values["eval_isotropy/examples"] == 12


def test_no_device_read_per_training_step(tmp_path):
    """Between measurements the callback does nothing: a Trainer run with it (every="eval",
    no evaluation; every=1000) reads the host exactly as often as without it, and its step
    event runs no op at all."""
    reads = {}
    for arm in ("without", "eval", "steps"):
        trainer = trainer_for(tiny_bert(), tmp_path / arm, max_steps=6)
        if arm != "without":
            every = "eval" if arm == "eval" else 1000
            trainer.add_callback(IsotropyCallback(Examples(20, 4), every=every, trainer=trainer))
        with OpCounter() as counter:
            trainer.train()
        reads[arm] = counter.host_reads
    assert reads["eval"] == reads["steps"] == reads["without"]
    trainer = trainer_for(tiny_bert(), tmp_path / "events", max_steps=6)
    callback = IsotropyCallback(Examples(20, 4), every=5, trainer=trainer)
    with OpCounter() as counter:
        for step in range(1, 5):
            trainer.state.global_step = step
            callback.on_step_end(trainer.args, trainer.state, trainer.control)
    assert counter.total == 0


def test_a_dict_of_eval_sets_is_measured_once_per_evaluation(tmp_path):
    dev = Examples(12, 4)
    trainer = trainer_for(tiny_bert(), tmp_path, {"a": dev, "b": Examples(12, 6)}, max_steps=2)
    trainer.add_callback(IsotropyCallback(dev, trainer=trainer))
    metrics = trainer.evaluate()
    assert "eval_a_loss" in metrics and "eval_b_loss" in metrics
    entries = [e for e in trainer.state.log_history if "eval_isotropy/isoscore" in e]
    assert len(entries) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(every="epoch"), "every must be \"eval\" or a number of steps >= 1, got 'epoch'"),
        (dict(every=0), 'every must be "eval" or a number of steps >= 1, got 0'),
        (dict(every=True), 'every must be "eval" or a number of steps >= 1, got True'),
        (dict(max_examples=1), "max_examples must be an integer >= 2, got 1"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError) as error:
        IsotropyCallback(Examples(4, 0), **kwargs)
    assert str(error.value) == f"IsotropyCallback: {message}"


def test_bad_datasets_and_a_missing_trainer_are_refused(tmp_path):
    with pytest.raises(ValueError, match="needs at least 2 eval examples, got 1"):
        IsotropyCallback(Examples(1, 0))
    with pytest.raises(ValueError, match="with a length .* got Stream"):
        IsotropyCallback(Stream())
    trainer = trainer_for(tiny_bert(), tmp_path, max_steps=1)
    trainer.add_callback(IsotropyCallback(Examples(4, 0)))
    with pytest.raises(ValueError, match=r"no trainer to log to: create it with IsotropyCallback"):
        trainer.train()


def test_a_peft_model_is_measured_at_its_base_models_head(tmp_path):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"])
    model = isobn.attach(get_peft_model(tiny_bert(), lora))
    trainer = trainer_for(model, tmp_path, max_steps=2)
    trainer.train()
    values = IsotropyCallback(Examples(12, 5), trainer=trainer).measure()
    base = model.get_base_model()
    x = pooled(base, Examples(12, 5))
    expected = isotropy.report((x * find_isobn(model).scale()).numpy())
    assert values["eval_isotropy/after_isobn/isoscore"] == pytest.approx(
        expected["isoscore"], rel=1e-5
    )
    assert values["eval_isobn/scale_max"] >= values["eval_isobn/scale_min"] > 0
