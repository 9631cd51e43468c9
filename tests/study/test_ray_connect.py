"""A Ray cluster that is not there: `isobn study --backend ray --address A` gives up within
--connect-timeout with one line naming A and what to check, and every Ray option is checked
before Ray starts or is reached."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_study import write_study

from isobn.cli.main import main
from isobn.errors import UserError
from isobn.study.ray_backend import RayOptions
from isobn.study.ray_connect import split_address

ray = pytest.importorskip("ray")


def free_port() -> int:
    """A TCP port on which nothing listens (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def exit_code(argv: list[str]) -> int:
    """`isobn ARGV`'s exit code in this process (argparse's own refusals exit)."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def error_line(capsys) -> str:
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error" in x]
    return line


@pytest.fixture
def study_argv(tmp_path, tiny_bert, sentiment_files) -> list[str]:
    path = write_study(tmp_path / "s.toml", tiny_bert, sentiment_files, seeds=(1,))
    return ["study", str(path), "--out", str(tmp_path / "out"), "--backend", "ray"]


@pytest.mark.parametrize(
    "address, parts",
    [
        ("auto", None),
        ("127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("head-node.example.org:6380", ("head-node.example.org", 6380)),
        ("ray://10.0.0.5:10001", ("10.0.0.5", 10001)),
        ("[::1]:6379", ("::1", 6379)),
    ],
)
def test_addresses_of_the_three_forms_are_split(address, parts):
    assert split_address(address) == parts


@pytest.mark.parametrize(
    "address",
    ["foo", "foo:", ":6379", "host:0", "host:65536", "host:http", "http://host:6379", "a b:1"],
)
def test_an_address_of_no_form_is_one_line(address):
    with pytest.raises(UserError) as error:
        split_address(address)
    assert str(error.value).startswith(f"--address {address!r} is not a Ray address: use auto")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("address", ["::1:6379", "h:1:2", "ray://fe80::1:10001"])
def test_an_ipv6_host_without_brackets_is_refused_as_ray_refuses_it(address):
    """Ray reads HOST:PORT with an IPv6 host only in brackets; without them the port is a
    guess (and ray.init raised `ValueError: Invalid address format` after the port check)."""
    with pytest.raises(UserError) as error:
        split_address(address)
    assert str(error.value) == (
        f"--address {address!r}: write an IPv6 host in brackets, e.g. [::1]:6379, as Ray does"
    )
    assert split_address("[fe80::1]:10001") == ("fe80::1", 10001)


@pytest.mark.parametrize("port", [1, None])  # None: a free port, as a stopped cluster leaves
@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_with_nothing_listening_fails_at_once(study_argv, capsys, port, scheme):
    address = f"{scheme}127.0.0.1:{port or free_port()}"
    started = time.monotonic()
    assert main([*study_argv, "--address", address, "--connect-timeout", "5"]) == 2
    assert time.monotonic() - started < 5 + 30  # the bound, and the study's checks before it
    line = error_line(capsys)
    assert line.startswith(f"isobn study: error: --address {address}: no Ray cluster reached")
    assert "check that `ray start --head` runs on 127.0.0.1" in line
    assert "no firewall blocks it" in line
    assert not ray.is_initialized()
    assert not Path(study_argv[3]).exists()  # --out is bound only once the cluster answered


@pytest.mark.parametrize("host", ["a..b", "x" * 64, "cluster." + "y" * 300])
def test_a_host_no_resolver_can_encode_is_one_line(study_argv, capsys, host):
    """An empty or over-long label fails in Python's IDNA codec (UnicodeError), before any
    name server is asked."""
    assert main([*study_argv, "--address", f"{host}:6379", "--connect-timeout", "5"]) == 2
    line = error_line(capsys)
    assert f"no Ray cluster reached ({host} is not a host name); check that" in line
    assert not ray.is_initialized() and not Path(study_argv[3]).exists()


@pytest.mark.slow
def test_a_port_that_answers_but_is_no_ray_is_given_up_within_the_timeout(study_argv, tmp_path):
    """ray.init would retry such a port for about 14 minutes; a fresh process, since the
    abandoned ray.init goes on retrying in it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        code = "import sys; from isobn.cli.main import main; sys.exit(main(sys.argv[1:]))"
        argv = [*study_argv, "--address", address, "--connect-timeout", "3"]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", code, *argv],
            capture_output=True,
            text=True,
            timeout=240,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
        )
    assert result.returncode == 2, result.stderr[-2000:]
    assert time.monotonic() - started < 180  # not Ray's 14 minutes: startup, checks, 3 s
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("isobn study: error:")]
    assert line.startswith(
        f"isobn study: error: --address {address}: the port answers, but no Ray cluster did "
        "within 3 s (--connect-timeout); check that `ray start --head` runs on 127.0.0.1"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--address", "foo"], "--address 'foo' is not a Ray address: use auto"),
        (["--gpus-per-cell", "nan"], "--gpus-per-cell must be a number from 0 to 1024"),
        (["--gpus-per-cell", "inf"], "--gpus-per-cell must be a number from 0 to 1024"),
        (["--gpus-per-cell", "-1"], "--gpus-per-cell must be a number from 0 to 1024"),
        (["--gpus-per-cell", "1e300"], "--gpus-per-cell must be a number from 0 to 1024"),
        (["--cpus-per-cell", "0"], "--cpus-per-cell must be a positive integer, got 0"),
        (["--cpus-per-cell", "99999999999"], "--cpus-per-cell must be a whole number from 1"),
        (["--max-retries", "-1"], "--max-retries must be a whole number from 0 to 1024"),
        (["--max-retries", "99999999999999999999"], "--max-retries must be a whole number"),
        (["--address", "auto", "--connect-timeout", "nan"], "--connect-timeout must be"),
        (["--address", "auto", "--connect-timeout", "0"], "--connect-timeout must be"),
        (["--address", "auto", "--connect-timeout", "1e309"], "--connect-timeout must be"),
        (["--address", "auto", "--connect-timeout", "-1"], "--connect-timeout must be"),
        (["--address", "auto", "--connect-timeout", "inf"], "--connect-timeout must be"),
        (["--address", "auto", "--connect-timeout", "1e-9"], "seconds from 1 to 86400, got 1e-09"),
        (["--address", "auto", "--connect-timeout", "text"], "invalid float value: 'text'"),
        (["--address", "::1:6379"], "write an IPv6 host in brackets"),
        (["--address", ""], "--address '' is not a Ray address"),
        (["--address", "host:"], "--address 'host:' is not a Ray address"),
        (["--address", ":1"], "--address ':1' is not a Ray address"),
        (["--gpus-per-cell", "text"], "argument --gpus-per-cell: invalid float value"),
        (["--cpus-per-cell", "nan"], "argument --cpus-per-cell: invalid int value"),
        (["--cpus-per-cell", "inf"], "argument --cpus-per-cell: invalid int value"),
        (["--max-retries", "nan"], "argument --max-retries: invalid int value"),
        (["--max-cells", "-1"], "--max-cells must be a positive integer, got -1"),
        (["--connect-timeout", "5"], "--connect-timeout is for a cluster given with --address"),
        (["--cpus-per-cell", "1000"], "--cpus-per-cell 1000 exceeds the Ray cluster's"),
        (["--gpus-per-cell", "1000"], "--gpus-per-cell 1000 but the Ray cluster has"),
    ],
)
def test_every_ray_option_is_checked_before_ray_starts(study_argv, capsys, extra, message):
    out = Path(study_argv[3])
    assert exit_code([*study_argv, *extra]) == 2
    assert message in error_line(capsys)
    assert not ray.is_initialized()
    assert not out.exists()  # refused before the study directory is bound


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--threads", "99999999999999999999"], "--threads must be a whole number from 1 to 1024"),
        (["--jobs", "5000", "--threads", "1"], "--jobs must be a whole number from 1 to 1024"),
        (["--jobs", "999"], "--jobs 999 exceeds the"),
    ],
)
def test_the_local_runner_counts_are_checked_before_out_is_bound(
    study_argv, capsys, extra, message
):
    """A huge --threads reached torch.set_num_threads (OverflowError); --jobs beyond the
    cores was refused only after --out was bound (study.toml and a lock left behind)."""
    out = Path(study_argv[3])
    assert main([*study_argv[:4], *extra]) == 2
    assert message in error_line(capsys)
    assert not out.exists()


def test_the_options_are_checked_for_the_python_api_too():
    with pytest.raises(UserError, match="--gpus-per-cell must be a number"):
        RayOptions(gpus_per_cell=float("nan"))
    with pytest.raises(UserError, match="--address 'x' is not a Ray address"):
        RayOptions(address="x")
    assert RayOptions(address="ray://h:10001", connect_timeout=5).connect_timeout == 5
