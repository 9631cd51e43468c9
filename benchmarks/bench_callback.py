"""IsotropyCallback's cost: an evaluation with and without it, side by side.

Arms, one sample each per round (seconds of one call, interleaved rounds, medians):

* evaluate: ``Trainer.evaluate()`` over mr dev (``--eval-size`` sentences, dynamic padding,
  eval batch 32) of BertForSequenceClassification + ``isobn.attach`` with running statistics;
* evaluate + callback: the same with ``IsotropyCallback(dev, max_examples=len(dev))``, which
  measures at the evaluation (one more forward pass over the same sentences, the isotropy
  measures before and after IsoBN on the host, IsoBN's scale);
* callback alone: ``callback.measure()``.

Prints the ratios (evaluate + callback) / evaluate and (callback alone) / evaluate.

    .venv/bin/python benchmarks/bench_callback.py [--quick] [--gpu] [--eval-size N]
"""

from __future__ import annotations

import common
import models
import timing

EVAL_BATCH = 32
MAX_LENGTH = 128


def dev_rows(settings: common.Settings, tokenizer) -> list[dict]:
    """mr dev sentences, tokenized (no padding: the collator pads each batch), with labels."""
    examples = models.load_mr(None, settings.eval_size).splits["dev"]
    encoded = tokenizer([e.text for e in examples], max_length=MAX_LENGTH, truncation=True)
    return [
        {**{k: v[i] for k, v in encoded.items()}, "labels": int(e.label)}
        for i, e in enumerate(examples)
    ]


def trainers(settings: common.Settings):
    """(plain trainer, trainer with the callback, the callback), sharing one model."""
    from bench_eval import with_statistics
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    import isobn
    from isobn.hf import IsotropyCallback
    from isobn.training.pretrained import load_tokenizer

    tokenizer = load_tokenizer(settings.model_dir())
    rows = dev_rows(settings, tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(settings.model_dir(), num_labels=2)
    model = with_statistics(isobn.attach(model)).to(settings.device)
    args = TrainingArguments(
        output_dir=str(settings.tmp / "trainer-eval"),
        per_device_eval_batch_size=EVAL_BATCH,
        report_to="none",
        use_cpu=not settings.cuda,
        disable_tqdm=True,
    )

    def trainer():
        return common.silent_trainer(
            Trainer(
                model=model,
                args=args,
                eval_dataset=rows,
                data_collator=DataCollatorWithPadding(tokenizer),
            )
        )

    plain, watched = trainer(), trainer()
    callback = IsotropyCallback(rows, max_examples=len(rows), trainer=watched)
    watched.add_callback(callback)
    return plain, watched, callback


def run(settings: common.Settings) -> dict:
    common.header(
        f"IsotropyCallback: evaluation of {settings.eval_size} mr dev sentences, "
        f"{settings.model} on {settings.device}"
    )
    plain, watched, callback = trainers(settings)
    device = settings.device
    arms = {
        "evaluate": timing.warmed_arm(plain.evaluate, device),
        "evaluate + callback": timing.warmed_arm(watched.evaluate, device),
        "callback alone": timing.warmed_arm(callback.measure, device),
    }
    samples = timing.interleaved(arms, settings.repeats)
    with_callback = timing.ratio(samples["evaluate + callback"], samples["evaluate"])
    alone = timing.ratio(samples["callback alone"], samples["evaluate"])
    rows = [[name, f"{timing.median(s):.3f}"] for name, s in samples.items()]
    common.table(rows, ["arm", "seconds (median)"])
    print(f"evaluate + callback / evaluate: {timing.format_ratio(with_callback)}")
    print(f"callback alone / evaluate:      {timing.format_ratio(alone)}")
    return {
        "seconds": {name: timing.median(s) for name, s in samples.items()},
        "with_callback_ratio": with_callback[0],
        "callback_alone_ratio": alone[0],
    }


if __name__ == "__main__":
    common.run_standalone(run, __doc__)
