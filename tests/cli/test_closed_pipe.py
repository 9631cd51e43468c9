"""`isobn ... | head`: a reader that leaves before the output ends stops the command quietly
(exit 141, as a pipe's writer killed by SIGPIPE; no traceback), and a broken pipe that is not
stdout's is still a fault."""

import os
import subprocess
import sys

import pytest

from isobn.cli import main as cli_main


@pytest.mark.parametrize(
    "argv, code",
    [
        (["study", "--list"], 141),
        (["--help"], 0),  # argparse ignores its own write errors, then exits 0
        (["study", "--help"], 0),
    ],
)
def test_a_closed_stdout_ends_the_command_quietly(argv, code):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has left before the first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "isobn.cli.main", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (code, "")


def test_another_broken_pipe_is_not_taken_for_a_closed_stdout(monkeypatch, capsys):
    def run(_args):
        raise BrokenPipeError("a worker's pipe")

    monkeypatch.setattr(cli_main, "run_command", run)
    with pytest.raises(BrokenPipeError):
        cli_main.main(["study", "--list"])
