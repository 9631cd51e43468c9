"""What every benchmark shares: settings, interleaved timing, models, FLOP counts, machine facts.

Timing protocol: every benchmark times its arms in rounds, one sample of each arm per round
(A, B, C, then C, A, B backwards, ...: see interleaved()), and reports the median of the
samples of each arm. Ratios are ratios of medians; the
spread printed next to a ratio is the range of its per-round (paired) ratios, which shows how
much the shared machine's load moved the figure.
"""

from __future__ import annotations

import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Before torch / transformers / tqdm are imported by anyone: quiet, offline, no progress bars.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

SEQ_LEN = 64  # the length of the fixed-shape encoder steps (issue: "length 64")
# The implementation src/isobn/train.py asks AdamW for (fused since commit 8a9a662; before it,
# fused=False: PREVIOUS_ADAMW, which the training and fast-path benchmarks keep as an arm).
TRAIN_ADAMW = {"fused": True}
PREVIOUS_ADAMW = {"fused": False}
RANDOM_BERT = "bert-base-random"  # BertConfig() defaults, random weights: GPU speed runs
TINY_BERT = "tiny-random"  # 2 layers, hidden 128, random weights: --quick smoke runs
MODELS = ("minilm", RANDOM_BERT, TINY_BERT)


@dataclass
class Settings:
    """Settings shared by every benchmark (run_all.py builds them from its flags)."""

    device: torch.device
    model: str = "minilm"  # one of MODELS
    repeats: int = 3  # interleaved rounds; medians of this many samples
    target_repeats: int = 5  # rounds of benchmarks 1, 2/3 and 4, which decide the targets
    quick: bool = False  # smoke sizes: every code path, figures not meaningful
    train_size: int = 128  # mr training sentences of the throughput benchmark (4 batches)
    eval_size: int = 256  # mr dev sentences of the evaluation benchmark
    compile: bool = True  # torch.compile arm of the fast-path benchmark
    _tmp: Path | None = None
    _model_dir: str | None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def tmp(self) -> Path:
        """Scratch directory (training outputs, a random model), made on first use."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="isobn-bench-"))
        return self._tmp

    def cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def model_dir(self) -> str:
        """A Hugging Face directory (config, weights, tokenizer) of the benchmarked encoder."""
        if self._model_dir is None:
            self._model_dir = prepare_model_dir(self.model, self.tmp)
        return self._model_dir


def quiet() -> None:
    """Silence library chatter (weight-load reports, compile graph-break notes, warnings,
    isobn train's progress bar, which passes `disable` itself and so ignores TQDM_DISABLE)."""
    import tqdm.auto
    import transformers

    class SilentTqdm(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    tqdm.auto.tqdm = SilentTqdm

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch._logging.set_logs(dynamo=logging.ERROR, inductor=logging.ERROR)
    for name in ("accelerate", "isobn", "torch._dynamo", "torch._inductor"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def prepare_model_dir(model: str, tmp: Path) -> str:
    """The packaged MiniLM, or a randomly initialised BERT written (weights + MiniLM's
    tokenizer, the same uncased 30522-word vocabulary) under `tmp`, so that every code path
    (isobn train, Trainer, predict) loads a directory the same way."""
    from isobn.model import load_tokenizer, packaged_minilm_path

    if model == "minilm":
        return packaged_minilm_path()
    from transformers import AutoModel, BertConfig

    if model == RANDOM_BERT:
        config = BertConfig()  # BERT-base: hidden 768, 12 layers, 12 heads
    elif model == TINY_BERT:
        config = BertConfig(
            hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512
        )
    else:
        raise ValueError(f"unknown model {model!r}: one of {', '.join(MODELS)}")
    path = tmp / model
    if not (path / "config.json").is_file():
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(path)
        load_tokenizer("minilm").save_pretrained(path)
    return str(path)


# --- timing -------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, iters: int = 1) -> float:
    """Seconds per call of `fn`, averaged over `iters` back-to-back calls."""
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def calibrate(fn: Callable[[], object], device: torch.device, target_s: float) -> int:
    """Iterations of `fn` that take about `target_s` (at least 1): for microsecond layers."""
    fn()  # warm-up: allocation, kernel selection
    once = time_call(fn, device, 3)
    return max(1, min(100_000, round(target_s / max(once, 1e-7))))


def interleaved(arms: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """One sample of every arm per round, `repeats` rounds. The order rotates by one arm each
    round and runs backwards every other round, so that no arm always goes first and none
    always follows the same arm (what an arm leaves behind, such as freed memory that the next
    one must fault in again, then does not bias one arm).

    Each arm returns its own measurement (seconds, or samples/s): the caller knows which.
    """
    names = list(arms)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        for name in reversed(order) if r % 2 else order:
            samples[name].append(float(arms[name]()))
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """(median(num) / median(den), min and max of the per-round ratios)."""
    paired = [a / b for a, b in zip(numerator, denominator)]
    return median(numerator) / median(denominator), min(paired), max(paired)


def paired_median(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-round ratios: steadier than the ratio of medians when the machine's
    load changes between rounds but not within one."""
    return median([a / b for a, b in zip(numerator, denominator)])


def format_ratio(value: tuple[float, float, float], suffix: str = "x") -> str:
    mid, low, high = value
    return f"{mid:.3f}{suffix} (rounds {low:.3f}-{high:.3f})"


# --- models, steps, FLOPs -------------------------------------------------------------------


def classifier(settings: Settings, norm: str, seed: int = 0):
    """isobn's SequenceClassifier (pooler -> norm -> dropout -> linear), on the device, training."""
    from isobn.model import ModelConfig, build_model

    torch.manual_seed(seed)
    config = ModelConfig(encoder=settings.model_dir(), num_labels=2, norm=norm)
    return build_model(config).to(settings.device).train()


def optimizer_like_train(model, **adamw_options):
    """AdamW exactly as isobn.train builds it (decay on matrices only, TRAIN_ADAMW) unless
    `adamw_options` override the implementation (fused=..., foreach=...)."""
    from isobn.train import parameter_groups

    options = {**TRAIN_ADAMW, **adamw_options}
    return torch.optim.AdamW(parameter_groups(model, 0.01), lr=2e-5, **options)


def random_batch(settings: Settings, batch: int, length: int, seed: int = 0) -> dict:
    """Token ids without padding (B, T), mask of ones, binary labels (B,)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 29000, (batch, length), generator=generator)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    labels = torch.randint(0, 2, (batch,), generator=generator)
    device = settings.device
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "labels": labels.to(device),
    }


def train_step(model, optimizer, batch: dict, autocast=None) -> None:
    """One step of isobn.train's loop without accelerate: forward, cross-entropy, backward,
    gradient clipping at 1.0, AdamW step, zero_grad."""
    from contextlib import nullcontext

    from isobn.train import compute_loss

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with autocast if autocast is not None else nullcontext():
        logits = model(**inputs).logits
    loss = compute_loss(logits, batch["labels"], False)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def non_embedding_parameters(model) -> int:
    """N of the FLOP estimate: every parameter but the embedding tables (lookups, no matmul)."""
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings." not in name)


def encoder_shape(model) -> tuple[int, int]:
    """(layers, hidden) of the encoder inside an isobn or HF classifier."""
    config = model.encoder.config if hasattr(model, "encoder") else model.config
    return config.num_hidden_layers, config.hidden_size


def train_flops_per_token(n_params: int, layers: int, hidden: int, seq: int) -> float:
    """PaLM (Chowdhery et al. 2022, appendix B) training FLOPs per token: 6 N + 12 L H T.

    6 N: forward (2 N) and backward (4 N) multiply-adds of the non-embedding weights;
    12 L H T: attention scores and weighted values (QK^T and AV), forward and backward,
    per layer, for a sequence of T positions. Padding positions count as computed tokens.
    """
    return 6.0 * n_params + 12.0 * layers * hidden * seq


def forward_flops_per_token(n_params: int, layers: int, hidden: int, seq: int) -> float:
    """The forward third of the PaLM estimate: 2 N + 4 L H T."""
    return train_flops_per_token(n_params, layers, hidden, seq) / 3.0


def batch_flops(lengths_per_batch: list[tuple[int, int]], per_token: Callable[[int], float]):
    """Total FLOPs of batches given as (rows, padded length) pairs."""
    return sum(rows * width * per_token(width) for rows, width in lengths_per_batch)


# --- memory and machine -------------------------------------------------------------------


def peak_memory_mb(device: torch.device, address_space: bool = False) -> float:
    """CUDA: torch.cuda.max_memory_allocated since the last reset. CPU: the process's
    ru_maxrss (resident high-water mark since it started), or with address_space the VmHWM of
    /proc/self/status, the same mark kept by the address space alone: reset_peak_memory
    restarts it, and it starts afresh at exec, while ru_maxrss also keeps the marks of exited
    threads and, in a child process, the parent's size when it forked."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if address_space:
        return _proc_status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _proc_status_mb(key: str) -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return float("nan")


def current_memory_mb(device: torch.device) -> float:
    """CPU: resident set size now (VmRSS); CUDA: torch.cuda.memory_allocated."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _proc_status_mb("VmRSS")


def reset_peak_memory(device: torch.device) -> bool:
    """Restart the peak: torch.cuda.reset_peak_memory_stats, or on Linux "5" written to
    /proc/self/clear_refs, which resets VmHWM to the current resident size.
    False where that is not possible (the CPU peak then covers the whole process)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def machine() -> dict:
    """What produced the figures: CPU model, cores, threads, versions, GPU, load."""
    import transformers

    info = {
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in lscpu.splitlines())
        )
        info["cpu"] = fields.get("Model name", info["cpu"])
        cores = int(fields.get("Core(s) per socket", 0)) * int(fields.get("Socket(s)", 1))
        info["physical_cores"] = cores or None
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["load_average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def header(title: str) -> None:
    """A section title with the load average: other processes' load skews every figure."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n== {title} ==  (load average {load})", flush=True)


def table(rows: list[list[str]], headings: list[str]) -> None:
    """A plain text table, columns padded to their widest cell."""
    cells = [headings, *rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headings))]
    for k, row in enumerate(cells):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * width for width in widths))
    sys.stdout.flush()


def silent_trainer(trainer):
    """Drop the callback that prints the Trainer's log dicts (disable_tqdm=True installs it)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that `finally` blocks remove the scratch directory."""
    import signal

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def settings_from_args(args) -> Settings:
    """Settings from the shared flags (see add_common_flags)."""
    device = torch.device("cuda" if args.gpu else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--gpu / --device cuda: no CUDA device is visible to torch")
    exit_on_sigterm()
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    model = args.model or (RANDOM_BERT if device.type == "cuda" else "minilm")
    if quick and not args.model:
        model = TINY_BERT
    return Settings(
        device=device,
        model=model,
        repeats=args.repeats,
        target_repeats=args.target_repeats or (args.repeats if quick else max(5, args.repeats)),
        quick=quick,
        train_size=args.train_size or (64 if quick else 128),
        eval_size=args.eval_size or (64 if quick else 256),
        compile=not args.no_compile and not quick,
    )


def add_common_flags(parser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run (~1 minute): model {TINY_BERT} unless --model, small sizes, no compile",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument(
        "--gpu", action="store_true", help=f"same as --device cuda; model {RANDOM_BERT}"
    )
    parser.add_argument(
        "--model",
        choices=MODELS,
        help=f"default: minilm on the CPU, {RANDOM_BERT} (BertConfig(), random weights) on GPU",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds of benchmark 5 and the fast path (default 3)"
    )
    parser.add_argument(
        "--target-repeats", type=int, help="interleaved rounds of benchmarks 1-4 (default 5)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (default: torch's, one per core)"
    )
    parser.add_argument("--train-size", type=int, help="mr training sentences (128; quick 64)")
    parser.add_argument("--eval-size", type=int, help="mr dev sentences (256; quick 64)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile arm")


# --- data -----------------------------------------------------------------------------------

_TASKS: dict = {}


def load_mr(max_train: int | None, max_eval: int | None):
    """isobn.tasks.load_task("mr", ...) parsed once per size (parsing the package takes ~5 s).

    isobn.train.train() looks tasks up through isobn.tasks.load_task; cache_task_loading()
    routes those look-ups here so that repeated training runs reuse the parsed task. Only
    untimed set-up is skipped: train_samples_per_second never includes task loading.
    """
    key = (max_train, max_eval)
    if key not in _TASKS:
        cache_task_loading()
        _TASKS[key] = _ORIGINAL_LOAD_TASK["fn"]("mr", max_train=max_train, max_eval=max_eval)
    return _TASKS[key]


_ORIGINAL_LOAD_TASK: dict = {}


def cache_task_loading() -> None:
    from isobn import tasks

    if "fn" in _ORIGINAL_LOAD_TASK:
        return
    _ORIGINAL_LOAD_TASK["fn"] = tasks.load_task

    def cached(name, *, data_dir=None, max_train=None, max_eval=None, seed=0):
        if name == "mr" and data_dir is None and seed == 0:
            return load_mr(max_train, max_eval)
        return _ORIGINAL_LOAD_TASK["fn"](
            name, data_dir=data_dir, max_train=max_train, max_eval=max_eval, seed=seed
        )

    tasks.load_task = cached


def model_dims(settings: Settings) -> tuple[int, int, int]:
    """(N non-embedding parameters of the 2-class classifier, layers, hidden), from the config
    alone (meta device: no weights)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(settings.model_dir())
    with torch.device("meta"):
        encoder = AutoModel.from_config(config)
    head = config.hidden_size * 2 + 2  # the linear classifier, 2 classes
    return non_embedding_parameters(encoder) + head, config.num_hidden_layers, config.hidden_size


def run_standalone(run: Callable[[Settings], object], doc: str | None) -> None:
    """Entry point of one benchmark file run alone: common flags, then run(settings)."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    add_common_flags(parser)
    settings = settings_from_args(parser.parse_args())
    quiet()
    try:
        run(settings)
    finally:
        settings.cleanup()
