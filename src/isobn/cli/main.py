"""Entry point of the `isobn` command: dispatch to a sub-command, turn bad input into exit 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from isobn.errors import UserError

# name -> module under isobn.cli; each has register(subparsers) and run(args) -> int | None
COMMANDS = [
    "train",
    "predict",
    "export",
    "experiment",
    "study",
    "report",
    "analyze",
    "demo",
    "assets",
]
# argument dest -> its option: paths, checked before any command runs (check_path_arguments)
PATH_OPTIONS = {
    "out": "--out",
    "output": "--output",
    "input": "--input",
    "checkpoint": "--checkpoint",
    "run_directory": "RUN",
    "train_file": "--train",
    "dev_file": "--dev",
    "test_file": "--test",
    "data_dir": "--data-dir",
    "model": "--model",
    "study": "the study file",
    "directory": "the directory",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument on one line (and exit code 2, as argparse does).

    Options are never abbreviated: a prefix would silently stand for whichever option it
    happens to start (`isobn experiment --task trec` for --tasks); an unknown option is an
    error that names the closest one."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)  # for error()'s hint
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        self.exit(
            2, f"{self.prog}: error: {message}{self._closest(message)} (see `{self.prog} --help`)\n"
        )

    def _closest(self, message: str) -> str:
        """`; did you mean --lr?` for an unrecognized option: a Hugging Face name, an earlier
        spelling, or one close to ours (isobn.cli.hints). A required option reported missing
        may have been given under such a name (`--output_dir` for --out), so the arguments
        are searched then too."""
        from isobn.cli.hints import hint

        if message.startswith("unrecognized arguments:"):
            tokens = message.split(":", 1)[1].split()
        elif message.startswith("the following arguments are required"):
            tokens = [
                t
                for t in getattr(self, "_given", [])
                if t.split("=", 1)[0] not in self._option_string_actions
            ]
        else:
            return ""
        ours = [o for o in self._option_string_actions if o.startswith("--")]
        text = hint(tokens, ours)
        return f"; {text}" if text else ""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="isobn",
        description="Fine-tune pre-trained encoders with Isotropic Batch Normalization.",
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser
    )
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"isobn.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"isobn.cli.{name}":
                continue  # a command not in this build
            raise
        module.register(subparsers)
    parser.commands = subparsers.choices  # name -> the command's parser
    return parser


def _version() -> str:
    from isobn import __version__

    return f"isobn {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run `isobn ARGV`; the exit code: 0, 2 for bad input, 130 when interrupted, 141 when
    stdout's reader left early (`isobn study --list | head`: quiet, as a pipe's end)."""
    try:
        try:
            return run_command(argv)
        finally:
            sys.stdout.flush()  # output still buffered meets a reader that left here, not at exit
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise  # some other pipe: a fault, not the end of a pipeline
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # exit's flush is quiet
        return 141
    except OSError as error:  # stdout's last flush into a file on a full disk
        from isobn.training.disk_full import no_space_code, stdout_full_error

        code = no_space_code(error)
        if code is None:
            raise
        print(f"isobn: error: {stdout_full_error(code, None)}", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # exit's flush is quiet
        return 2


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, ValueError, OSError):  # no file descriptor behind stdout
        return False


def run_command(argv: list[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command's own parser, which knows the command's options
        command = parser.commands.get(args.command, parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 0
    # under torchrun / accelerate launch only rank 0 speaks
    is_main_process = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(
        level=logging.INFO if is_main_process else logging.WARNING, format="%(message)s"
    )
    try:
        check_path_arguments(args)
        return int(args.run(args) or 0)
    except UserError as error:
        print(f"isobn {args.command}: error: {_for_command(error, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"isobn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a path no call can use, or a full disk, met past the checks
        problem = _problem(error, args)
        if problem is None:
            raise
        print(f"isobn {args.command}: error: {problem}", file=sys.stderr)
        return 2


# the arguments that name where a command writes (a full disk names the first one given)
OUTPUT_ARGUMENTS = ("out", "output", "directory")


def _problem(error: Exception, args: argparse.Namespace) -> UserError | None:
    """The one-line UserError of an error that bad input or a full disk caused (a library's
    writer hitting ENOSPC/EDQUOT: safetensors, PIL, save_pretrained), None for a fault."""
    from isobn.training.disk_full import disk_full_problem
    from isobn.training.safe_files import os_error_problem

    given = [getattr(args, name, None) for name in OUTPUT_ARGUMENTS]
    full = disk_full_problem(error, next((v for v in given if isinstance(v, str) and v), None))
    if full is not None:
        return _for_command(full, args)
    return os_error_problem(error) if isinstance(error, OSError) else None


def _for_command(error: UserError, args: argparse.Namespace) -> UserError:
    """A full disk's message names the option that chose the output: --out, predict's
    --output, none for report (which writes into the directory it reads)."""
    from isobn.training.disk_full import DiskFullError

    if not isinstance(error, DiskFullError) or getattr(args, "out", None) is not None:
        return error
    if hasattr(args, "output"):
        return error.for_option("--output")
    return error.for_option(None) if getattr(args, "directory", None) else error


def check_path_arguments(args: argparse.Namespace) -> None:
    """A one-line UserError for a path argument that no file system call can use (a name
    over 255 bytes, a symbolic link loop), before the command does any work."""
    from isobn.training.safe_files import check_path

    for dest, option in PATH_OPTIONS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and value:
            check_path(value, option)
    for item in getattr(args, "compare", None) or []:  # analyze --compare [LABEL=]MODEL
        check_path(item.split("=", 1)[-1], "--compare")


if __name__ == "__main__":
    sys.exit(main())
