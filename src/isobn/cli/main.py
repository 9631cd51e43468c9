"""Entry point of the `isobn` command: dispatch to a sub-command, turn bad input into exit 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from isobn.errors import UserError

# name -> module under isobn.cli; each has register(subparsers) and run(args) -> int | None
COMMANDS = ["train", "predict", "experiment", "study", "report", "analyze", "demo"]


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument on one line (and exit code 2, as argparse does)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


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
    return parser


def _version() -> str:
    from isobn import __version__

    return f"isobn {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    # under torchrun / accelerate launch only rank 0 speaks
    is_main_process = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(
        level=logging.INFO if is_main_process else logging.WARNING, format="%(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except UserError as error:
        print(f"isobn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"isobn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
