"""Benchmark 5: evaluation throughput over mr dev, and peak memory of evaluation.

Arms, one sample each per round (samples/s = dev sentences / wall time of the call):

* isobn predict, norm isobn: isobn.training.embeddings.predict (the one inference loop:
  inference_mode,
  batches sorted by length, padded per batch, eval batch 128 = TrainConfig's default) on a
  classifier whose IsoBN holds running statistics, so that its scale is really computed.
* isobn predict, norm none: the same without IsoBN (IsoBN's cost at inference).
* Trainer.predict, run_glue defaults: BertForSequenceClassification + isobn.attach (with
  statistics), inputs padded to 128 at tokenisation, per_device_eval_batch_size 8.

Peak memory of one predict call over dev: on the CPU in a fresh process (what `isobn predict`
would hold, not this benchmark's other models): the resident high-water mark after loading
(imports, data, model), then the mark is reset (/proc/self/clear_refs) and read again after
predict. The mark is VmHWM, the address space's own ru_maxrss: a child's ru_maxrss would
include the parent's size at fork. On CUDA, torch.cuda.max_memory_allocated around the call.

    .venv/bin/python benchmarks/bench_eval.py [--quick] [--gpu] [--eval-size N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import common
import machine
import models
import timing
import torch

EVAL_BATCH = 128  # TrainConfig.eval_batch_size
HF_EVAL_BATCH = 8  # run_glue's per_device_eval_batch_size
MAX_LENGTH = 128


def with_statistics(model):
    """Give every IsoBN inside `model` running statistics (a few random batches): before its
    first update IsoBN is the identity and would skip computing its scale."""
    from isobn import IsoBN

    for module in model.modules():
        if isinstance(module, IsoBN):
            was_training = module.training
            module.train()
            generator = torch.Generator().manual_seed(0)
            for _ in range(4):
                x = torch.randn(64, module.num_features, generator=generator)  # (B, D)
                module(x.to(module.running_std.device))
            module.train(was_training)
    return model


def dev_split(settings: common.Settings):
    from isobn.training.data import encode
    from isobn.training.pretrained import load_tokenizer

    task = models.load_mr(None, settings.eval_size)
    tokenizer = load_tokenizer(settings.model_dir())
    encoded = encode(task.splits["dev"], tokenizer, MAX_LENGTH, False)
    return task, tokenizer, encoded


def predict_arm(settings: common.Settings, encoded, pad_id: int, norm: str, accelerator):
    from isobn.training.embeddings import predict

    model = with_statistics(models.classifier(settings, norm=norm)).eval()

    def arm() -> float:
        seconds = timing.time_call(
            lambda: predict(model, encoded, EVAL_BATCH, pad_id, accelerator), settings.device
        )
        return len(encoded) / seconds

    return arm


def trainer_arm(settings: common.Settings, task, tokenizer):
    from transformers import (
        AutoModelForSequenceClassification,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    import isobn

    examples = task.splits["dev"]
    encoded = tokenizer(
        [e.text for e in examples], padding="max_length", max_length=MAX_LENGTH, truncation=True
    )
    rows = [
        {**{k: v[i] for k, v in encoded.items()}, "labels": int(e.label)}
        for i, e in enumerate(examples)
    ]
    model = AutoModelForSequenceClassification.from_pretrained(settings.model_dir(), num_labels=2)
    with_statistics(isobn.attach(model))
    args = TrainingArguments(
        output_dir=str(settings.tmp / "trainer-eval"),
        per_device_eval_batch_size=HF_EVAL_BATCH,
        report_to="none",
        use_cpu=not settings.cuda,
        disable_tqdm=True,
    )
    trainer = common.silent_trainer(
        Trainer(model=model, args=args, data_collator=default_data_collator)
    )

    def arm() -> float:
        seconds = timing.time_call(lambda: trainer.predict(rows), settings.device)
        return len(rows) / seconds

    return arm


def memory_probe(settings: common.Settings) -> dict:
    """Load the model, run predict over dev once; report memory (this process's figures)."""
    from accelerate import Accelerator

    from isobn.training.embeddings import predict

    _, tokenizer, encoded = dev_split(settings)
    pad_id = tokenizer.pad_token_id or 0
    accelerator = Accelerator(cpu=not settings.cuda)
    model = with_statistics(models.classifier(settings, norm="isobn")).eval()
    device = settings.device
    loading_peak = machine.peak_memory_mb(device, address_space=True)
    resident = machine.current_memory_mb(device)
    reset = machine.reset_peak_memory(device)
    predict(model, encoded, EVAL_BATCH, pad_id, accelerator)
    return {
        "loading_peak_mb": loading_peak,
        "before_predict_mb": resident,
        "predict_peak_mb": machine.peak_memory_mb(device, address_space=True),
        "peak_was_reset": reset,
    }


def measure_memory(settings: common.Settings) -> dict:
    if settings.cuda:
        return memory_probe(settings)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-probe",
        "--device",
        "cpu",
        "--model",
        settings.model,
        "--eval-size",
        str(settings.eval_size),
    ]
    if settings.model != "minilm":  # the random model directory lives in this run's tmp
        command += ["--model-dir", settings.model_dir()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(settings: common.Settings) -> dict:
    common.header("5. Evaluation throughput and peak memory")
    from accelerate import Accelerator

    task, tokenizer, encoded = dev_split(settings)
    pad_id = tokenizer.pad_token_id or 0
    accelerator = Accelerator(cpu=not settings.cuda)
    arms = {
        "isobn": predict_arm(settings, encoded, pad_id, "isobn", accelerator),
        "none": predict_arm(settings, encoded, pad_id, "none", accelerator),
        "trainer": trainer_arm(settings, task, tokenizer),
    }
    for arm in arms.values():
        arm()  # warm-up
    samples = timing.interleaved(arms, settings.repeats)
    labels = {
        "isobn": f"isobn predict, norm isobn (sorted, batch {EVAL_BATCH})",
        "none": f"isobn predict, norm none (sorted, batch {EVAL_BATCH})",
        "trainer": f"Trainer.predict + IsoBN, run_glue defaults (pad 128, batch {HF_EVAL_BATCH})",
    }
    rows = [
        [labels[k], f"{timing.median(v):.1f}", " ".join(f"{s:.1f}" for s in v)]
        for k, v in samples.items()
    ]
    common.table(rows, ["arm", "samples/s", "rounds"])
    ratios = {
        "vs_trainer": timing.ratio(samples["isobn"], samples["trainer"]),
        "none_vs_isobn": timing.ratio(samples["none"], samples["isobn"]),
    }
    print(f"  {len(encoded)} mr dev sentences, median of {settings.repeats} interleaved rounds")
    vs_trainer = timing.format_ratio(ratios["vs_trainer"])
    print(f"  isobn predict / Trainer.predict defaults: {vs_trainer}")
    overhead = tuple(100 * (v - 1) for v in ratios["none_vs_isobn"])
    print(f"  IsoBN cost at inference (none / isobn - 1): {timing.format_ratio(overhead, '%')}")
    memory = measure_memory(settings)
    if "error" in memory:
        print(f"  peak memory: probe failed: {memory['error']}")
    else:
        where = "max_memory_allocated" if settings.cuda else "VmHWM, fresh process"
        scope = "" if memory["peak_was_reset"] else " (not resettable: includes loading)"
        print(
            f"  peak memory during predict ({where}){scope}: {memory['predict_peak_mb']:.0f} MiB; "
            f"before predict {memory['before_predict_mb']:.0f} MiB; "
            f"peak while loading data and model {memory['loading_peak_mb']:.0f} MiB"
        )
    return {
        "dev_sentences": len(encoded),
        "samples_per_s": {k: timing.median(v) for k, v in samples.items()},
        "samples": samples,
        "ratios": ratios,
        "memory": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_flags(parser)
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = common.settings_from_args(args)
    if args.model_dir:
        settings._model_dir = args.model_dir
    common.quiet()
    try:
        if args.memory_probe:
            print(json.dumps(memory_probe(settings)))
        else:
            run(settings)
    finally:
        settings.cleanup()


if __name__ == "__main__":
    main()
