"""A Ray cluster that is not there: `isobn study --backend ray --address A` gives up within
--connect-timeout with one line naming A and what to check, and every Ray option is checked
before Ray starts or is reached."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
from test_study import write_study

from isobn.cli.main import main
from isobn.errors import UserError
from isobn.study.ray_backend import RayOptions
from isobn.study.ray_connect import connect_to_cluster, split_address

ray = pytest.importorskip("ray")

# `isobn ARGV` in a fresh Python, with the source tree on PYTHONPATH
RUN_MAIN = "import sys; from isobn.cli.main import main; sys.exit(main(sys.argv[1:]))"
SRC = str(Path(__file__).parents[2] / "src")


@contextmanager
def silent_port() -> Iterator[str]:
    """HOST:PORT of a socket that accepts connections and never answers: no Ray there."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        yield f"127.0.0.1:{silent.getsockname()[1]}"


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


@pytest.fixture(autouse=True)
def no_ray_address(monkeypatch):
    """RAY_ADDRESS names the cluster of --backend ray without --address: none unless a test
    sets it."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


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
    ["foo", "foo:", ":6379", "host:http", "ray:/host:1", "a b:1", " auto", "AUTO"],
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
def test_an_address_with_nothing_listening_fails_at_once(
    study_argv, capsys, monkeypatch, port, scheme
):
    if scheme:  # Ray Client's grpc, which `pip install ray` leaves out: checked before this
        monkeypatch.setitem(sys.modules, "grpc", sys.modules.get("grpc") or ModuleType("grpc"))
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
    with silent_port() as address:
        started = time.monotonic()
        argv = [*study_argv, "--address", address, "--connect-timeout", "3"]
        result = run_isobn(argv, timeout=240)
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


# --------------------------------------------------------------------------------------------
# Other instances of a cluster that is not there: more forms of --address, RAY_ADDRESS, a
# host that never answers, Ray Client without its packages, a Ray that cannot be imported,
# a cluster of another Ray version, Ctrl-C while connecting or starting.


class FakeRay:
    """The part of the ray module that connect and connect_to_cluster call; `init` runs
    `on_init` (which may sleep, or raise what ray.init raises)."""

    def __init__(self, on_init=lambda: None) -> None:
        self.on_init = on_init
        self.shut_down = False

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        self.on_init()

    def shutdown(self) -> None:
        self.shut_down = True


@pytest.fixture
def keep_sigterm():
    """connect_to_cluster sets ray.init's SIGTERM handler in the main thread: restored."""
    import signal

    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def run_isobn(argv: list[str], pythonpath: tuple[str, ...] = (), timeout: float = 120, **env: str):
    """`isobn ARGV` in a fresh process, `pythonpath` before the source tree."""
    path = os.pathsep.join([*pythonpath, SRC])
    return subprocess.run(
        [sys.executable, "-c", RUN_MAIN, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": path, **env},
    )


@pytest.mark.parametrize(
    "address, message",
    [
        (
            "http://127.0.0.1:8265",
            "--address 'http://127.0.0.1:8265' is a URL of the Ray dashboard (what `ray job "
            "submit` takes), which runs no driver: use 127.0.0.1:6379 (the GCS port `ray start "
            "--head` prints) or ray://127.0.0.1:10001 (Ray Client)",
        ),
        ("https://head/", "--address 'https://head/' is a URL of the Ray dashboard"),
        ("HTTP://head:8265/#/jobs", "use head:6379 (the GCS port"),
        ("localhost:0", "--address 'localhost:0': port 0 is not a TCP port (1 to 65535); the"),
        ("127.0.0.1:99999", "--address '127.0.0.1:99999': port 99999 is not a TCP port"),
        ("ray://h:65536", "--address 'ray://h:65536': port 65536 is not a TCP port"),
        ("local", "--address 'local': leave out --address for a local Ray; a cluster is auto"),
    ],
)
def test_a_common_wrong_address_is_named_with_its_fix(study_argv, capsys, address, message):
    """The dashboard's URL (what RAY_ADDRESS holds for `ray job submit`), a port out of range,
    ray.init's `local`: each its own line, before anything is read or started."""
    assert exit_code([*study_argv, "--address", address]) == 2
    line = error_line(capsys)
    assert message in line
    assert not ray.is_initialized() and not Path(study_argv[3]).exists()


def test_an_ipv6_host_is_named_in_brackets(study_argv, capsys):
    assert main([*study_argv, "--address", "[::1]:1", "--connect-timeout", "2"]) == 2
    line = error_line(capsys)
    assert "no Ray cluster reached (nothing listens at [::1]:1: " in line, line
    assert "runs on ::1, that 1 is the GCS port" in line


def test_without_address_ray_address_names_the_cluster(study_argv, capsys, monkeypatch):
    """As for ray.init() (and in a Ray job's entrypoint, where Ray sets it): a dead one was
    ignored, and a local Ray started and ran the study."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    started = time.monotonic()
    assert main([*study_argv, "--connect-timeout", "2"]) == 2
    assert time.monotonic() - started < 2 + 30
    line = error_line(capsys)
    assert line.startswith(
        "isobn study: error: RAY_ADDRESS=127.0.0.1:1: no Ray cluster reached (nothing listens "
        "at 127.0.0.1:1: "
    )
    assert line.endswith("no firewall blocks it; or unset RAY_ADDRESS for a local Ray")
    assert not ray.is_initialized() and not Path(study_argv[3]).exists()


@pytest.mark.parametrize(
    "value, extra, message",
    [
        (
            "foo",
            [],
            "RAY_ADDRESS='foo' (used by --backend ray without --address; unset it for a local "
            "Ray) is not a Ray address: use auto",
        ),
        ("http://127.0.0.1:8265", [], "RAY_ADDRESS='http://127.0.0.1:8265' (used by --backend"),
        ("h:0", [], "RAY_ADDRESS='h:0' (used by --backend ray without --address; unset it"),
        ("foo", ["--address", "auto"], "--address auto uses RAY_ADDRESS='foo', which is not"),
        # an --address given wins over RAY_ADDRESS (as in ray.init); the fix names both
        (
            "foo",
            ["--address", "127.0.0.1:1", "--connect-timeout", "2"],
            "--address 127.0.0.1:1: no Ray cluster reached (nothing listens at 127.0.0.1:1",
        ),
        ("foo", ["--address", "127.0.0.1:1"], "or leave out --address and unset RAY_ADDRESS"),
    ],
)
def test_a_bad_ray_address_is_one_line(study_argv, capsys, monkeypatch, value, extra, message):
    monkeypatch.setenv("RAY_ADDRESS", value)
    assert exit_code([*study_argv, *extra]) == 2
    assert message in error_line(capsys)
    assert not ray.is_initialized() and not Path(study_argv[3]).exists()


@pytest.mark.parametrize(
    "env, extra, message",
    [
        (
            None,
            ["--address", "auto"],
            "--address auto: no Ray cluster was started on this machine (`ray start --head`) "
            "and RAY_ADDRESS is not set; start one, pass its HOST:PORT, or leave out --address "
            "for a local Ray",
        ),
        (  # was `no Ray cluster there (Could not find any running Ray instance. ...)`
            "auto",
            ["--address", "auto"],
            "--address auto: no Ray cluster was started on this machine (`ray start --head`); "
            "start one, pass its HOST:PORT, or leave out --address and unset RAY_ADDRESS for a "
            "local Ray",
        ),
        (  # was a local Ray, started and run
            "auto",
            [],
            "RAY_ADDRESS=auto: no Ray cluster was started on this machine (`ray start --head`); "
            "start one, pass its HOST:PORT, or unset RAY_ADDRESS for a local Ray",
        ),
    ],
)
def test_auto_without_a_cluster_is_one_line(study_argv, capsys, monkeypatch, env, extra, message):
    def no_cluster(address, temp_dir=None):
        raise ConnectionError("Could not find any running Ray instance.")

    # hermetic: a `ray start --head` elsewhere on this machine is not found
    monkeypatch.setattr("ray._private.services.canonicalize_bootstrap_address", no_cluster)
    if env is not None:
        monkeypatch.setenv("RAY_ADDRESS", env)
    assert exit_code([*study_argv, *extra, "--connect-timeout", "2"]) == 2
    assert error_line(capsys) == f"isobn study: error: {message}"
    assert not ray.is_initialized() and not Path(study_argv[3]).exists()


def test_the_local_backend_ignores_ray_address(study_argv, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    local = [a for a in study_argv if a not in ("--backend", "ray")]
    assert main([*local, "--blocks", "main", "--max-cells", "1"]) == 0
    assert "1 cells finished" in capsys.readouterr().err
    assert not ray.is_initialized()


@pytest.mark.parametrize("lookup", ["getaddrinfo", "create_connection"])
def test_a_host_that_never_answers_is_given_up_within_the_timeout(monkeypatch, lookup):
    """A name server or a host that drops packets (a black hole such as 10.255.255.1): the
    socket time-out bounded the connection but not the name look-up, and applied once per
    address the name has."""

    def never(*args, **kwargs):
        time.sleep(30)
        raise TimeoutError

    monkeypatch.setattr(socket, lookup, never)
    fake = FakeRay()
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        connect_to_cluster(fake, "head.example.org:6379", timeout=1)
    assert time.monotonic() - started < 3
    assert str(error.value).startswith(
        "--address head.example.org:6379: no Ray cluster reached (nothing answered at "
        "head.example.org:6379 within 1 s); check that `ray start --head` runs on "
        "head.example.org"
    )


@pytest.mark.parametrize(
    "address, hint",
    [
        ("127.0.0.1:8265", "(8265 is the Ray dashboard's port by default, for `ray job submit`)"),
        ("127.0.0.1:10001", "(10001 is Ray Client's port by default: write ray://HOST:10001)"),
        ("127.0.0.1:6380", "(--connect-timeout); check that"),
    ],
)
def test_a_port_of_another_ray_service_is_named(monkeypatch, keep_sigterm, address, hint):
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: open(os.devnull))
    fake = FakeRay(lambda: time.sleep(10))  # something answers, no GCS: ray.init waits
    with pytest.raises(UserError) as error:
        connect_to_cluster(fake, address, timeout=1)
    assert str(error.value).startswith(
        f"--address {address}: the port answers, but no Ray cluster did within 1 s "
        "(--connect-timeout)"
    )
    assert hint in str(error.value)


def test_a_cluster_of_another_ray_version_is_one_line(monkeypatch, keep_sigterm):
    """ray.init raised Ray's multi-line RuntimeError, a traceback."""

    def mismatch():
        raise RuntimeError(
            "Version mismatch: The cluster was started with:\n    Ray: 2.59.0\n    Python: "
            "3.10.12\nThis process on node 10.0.0.2 was started with:\n    Ray: 2.60.0\n"
            "    Python: 3.11.7\n"
        )

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: open(os.devnull))
    with pytest.raises(UserError) as error:
        connect_to_cluster(FakeRay(mismatch), "10.0.0.1:6379", timeout=5)
    assert str(error.value) == (
        "--address 10.0.0.1:6379: the cluster runs Ray 2.59.0 on Python 3.10.12, this process "
        "Ray 2.60.0 on Python 3.11.7; a driver needs the cluster's Ray and Python versions: "
        "install the same isobn[ray] and Python here as on the cluster's nodes"
    )


@pytest.mark.parametrize(
    "address, env, needs",
    [
        ("10.0.0.1:6379", {}, "also needs RAY_AUTH_MODE=token here and its token (RAY_AUTH_TOKEN"),
        ("10.0.0.1:6379", {"RAY_AUTH_MODE": "token"}, "also needs its token here (RAY_AUTH_TOKEN"),
        ("auto", {}, "also needs its token here (RAY_AUTH_TOKEN, or ~/.ray/auth_token as on"),
    ],
)
def test_a_cluster_that_refuses_the_driver_names_what_its_token_needs(
    monkeypatch, keep_sigterm, address, env, needs
):
    """ray.init sends ~/.ray/auth_token by itself only for auto; for an address given it needs
    RAY_AUTH_MODE=token too (checked by hand against `ray start --head`: HOST:PORT failed with
    InvalidAuthToken, and ran a cell with RAY_AUTH_MODE=token)."""

    def refused():
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379.")

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: open(os.devnull))
    monkeypatch.setattr(
        "ray._private.services.canonicalize_bootstrap_address", lambda a, t=None: "10.0.0.1:6379"
    )
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError) as error:
        connect_to_cluster(FakeRay(refused), address, timeout=5)
    assert str(error.value).startswith(
        f"--address {address}: no Ray cluster there (Failed to connect to Ray cluster at "
        "10.0.0.1:6379.); check that `ray start --head` runs on 10.0.0.1"
    )
    assert needs in str(error.value)


@pytest.mark.parametrize("env, extra", [(None, ["--address", "ray://X"]), ("ray://X", [])])
def test_ray_client_without_its_packages_is_one_line(study_argv, capsys, monkeypatch, env, extra):
    """`pip install ray` has no grpc: ray.init("ray://...") raised a ValueError (a traceback)
    once the port answered."""
    with silent_port() as host_port:
        address = f"ray://{host_port}"
        extra = [a.replace("ray://X", address) for a in extra]
        if env is not None:
            monkeypatch.setenv("RAY_ADDRESS", address)
        monkeypatch.setitem(sys.modules, "grpc", None)  # `import grpc` raises ImportError
        assert exit_code([*study_argv, *extra]) == 2
    named = f"--address {address}" if env is None else f"RAY_ADDRESS={address}"
    assert error_line(capsys) == (
        f"isobn study: error: {named}: Ray Client (ray://) needs packages this Ray lacks: pip "
        "install 'isobn[ray]' (or 'ray[client]')"
    )
    assert not ray.is_initialized() and not Path(study_argv[3]).exists()


def test_a_gpu_share_below_rays_precision_is_refused():
    """Ray refuses num_gpus below 0.0001 with a ValueError when the first task is submitted
    (on a cluster with GPUs, after --out was bound)."""
    with pytest.raises(UserError) as error:
        RayOptions(gpus_per_cell=1e-5)
    assert str(error.value) == (
        "--gpus-per-cell 1e-05 is below Ray's smallest share of a GPU, 0.0001: use 0 for none, "
        "or e.g. 0.25"
    )
    assert RayOptions(gpus_per_cell=0.0001).gpus_per_cell == 0.0001


def shim(where: Path, body: str) -> str:
    """A directory whose `ray` package runs `body` when imported (before the real Ray on
    sys.path)."""
    (where / "ray").mkdir(parents=True)
    (where / "ray" / "__init__.py").write_text(body)
    return str(where)


@pytest.mark.parametrize(
    "body, message",
    [
        ("raise ImportError('No module named ray')", "--backend ray needs Ray: pip install"),
        (  # protobuf of another version: was a traceback
            "raise TypeError('Descriptors cannot be created directly.\\nMore lines')",
            "--backend ray: importing Ray failed (TypeError: Descriptors cannot be created "
            "directly.); reinstall it: pip install --force-reinstall 'isobn[ray]'",
        ),
    ],
)
def test_a_ray_that_cannot_be_imported_is_one_line(study_argv, tmp_path, body, message):
    result = run_isobn(study_argv, (shim(tmp_path / "shim", body),))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("isobn study: error:")]
    assert message in line
    assert not Path(study_argv[3]).exists()


@pytest.mark.parametrize("mode", ["--plan", pytest.param("--report-only", marks=pytest.mark.slow)])
def test_plan_and_report_only_never_import_ray(study_argv, tmp_path, mode):
    """Nor start nor reach it: a study's --plan beside a cluster that is not there."""
    marker = tmp_path / "imported"
    body = f"open({str(marker)!r}, 'w').close()\nraise ImportError('shim')"
    argv = [*study_argv, "--address", "10.255.255.1:6379", mode]
    result = run_isobn(argv, (shim(tmp_path / "shim", body),), RAY_ADDRESS="127.0.0.1:1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not marker.exists()


def test_ctrl_c_while_connecting_is_one_line(study_argv):
    """SIGINT while ray.init waits for a port that answers but is no Ray: exit code 130, the
    line every command prints when interrupted."""
    import signal

    with silent_port() as address:
        argv = [*study_argv, "--address", address, "--connect-timeout", "60"]
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_MAIN, *argv],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": SRC},
        )
        seen = []
        for line in process.stderr:  # isobn's checks done; the connect begins
            seen.append(line)
            if "task file:" in line or "Connecting to existing Ray cluster" in line:
                break
        time.sleep(1.5)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=30)[1]
    stderr = "".join(seen) + rest
    assert process.returncode == 130, stderr[-2000:]
    assert time.monotonic() - started < 10
    assert stderr.rstrip().splitlines()[-1] == "isobn study: interrupted"
    assert "Traceback" not in stderr


def test_ctrl_c_while_a_local_ray_starts_shuts_it_down():
    """Interrupted half-way, ray.init left the local Ray's agents running (a minute or two,
    children of PID 1): the start is waited for, then shut down, and the interrupt goes on."""
    import signal

    from isobn.study.ray_backend import connect

    steps = []

    def interrupted_start():
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C half-way
        time.sleep(0.2)
        steps.append("started")

    fake = FakeRay(interrupted_start)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        connect(fake, None)
    assert steps == ["started"] and fake.shut_down
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_failed_local_start_is_shut_down():
    from isobn.study.ray_backend import connect

    def fails():
        raise RuntimeError("raylet died")

    fake = FakeRay(fails)
    with pytest.raises(RuntimeError):
        connect(fake, None)
    assert fake.shut_down
