"""Reaching the Ray cluster of `isobn study --address`, or giving up within a bounded time.

ray.init does not give up on a cluster that is not there: with nothing listening at
HOST:PORT it retries the GCS 20 times, about 40 s each, logging a time-out each time. So the
address is first checked for its form, then its TCP port is tried (name look-up and
connection in a thread, bounded by the time-out), and ray.init runs in a thread that is
abandoned when the time is up; each failure is one line naming the address and what to check.

Without --address, RAY_ADDRESS names the cluster when it is set, as it does for ray.init()
(a Ray job's entrypoint runs with it set): checked and reached the same way, and named as
RAY_ADDRESS in the messages.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time

from isobn.errors import UserError

DEFAULT_TIMEOUT = 60.0  # seconds to reach a cluster (--connect-timeout)
MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 86400.0
FORMS = (
    "auto (the cluster `ray start` started on this machine), HOST:PORT (the address "
    "`ray start --head` prints, port 6379 by default) or ray://HOST:PORT (Ray Client, port "
    "10001 by default)"
)


def split_address(address: str, name: str | None = None) -> tuple[str, int] | None:
    """(host, port) of an --address of the forms FORMS; None for auto; a one-line UserError
    for anything else (`foo`, `host:`, `http://host:8265`, a port above 65535). `name`: how
    the message names the address, `--address 'ADDRESS'` unless given."""
    name = f"--address {address!r}" if name is None else name
    if address == "auto":
        return None
    if address == "local":  # ray.init's word for a new local Ray
        raise UserError(f"{name}: {_local(False)} for a local Ray; a cluster is {FORMS}")
    scheme, sep, rest = address.partition("://")
    if sep and scheme.lower() in ("http", "https"):  # the dashboard's URL (ray job submit's)
        host = rest.split("/")[0].rpartition(":")[0] or rest.split("/")[0] or "HOST"
        raise UserError(
            f"{name} is a URL of the Ray dashboard (what `ray job submit` takes), which runs "
            f"no driver: use {host}:6379 (the GCS port `ray start --head` prints) or "
            f"ray://{host}:10001 (Ray Client)"
        )
    text = address.removeprefix("ray://")
    host, colon, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host  # [::1]:6379
    good = (
        colon
        and host
        and port.isascii()
        and port.isdigit()
        and not any(c.isspace() or c in "/?#@[]" for c in host)
    )
    if good and ":" in host and not bracketed:  # ::1:6379, h:1:2: which part is the port?
        raise UserError(f"{name}: write an IPv6 host in brackets, e.g. [::1]:6379, as Ray does")
    if good and not 0 < int(port) < 65536:
        raise UserError(
            f"{name}: port {int(port)} is not a TCP port (1 to 65535); the GCS port "
            "`ray start --head` prints is 6379 by default, Ray Client's 10001"
        )
    if not good:
        raise UserError(f"{name} is not a Ray address: use {FORMS}")
    return host, int(port)


def cluster_address(address: str | None) -> tuple[str | None, bool]:
    """The cluster to reach, and whether RAY_ADDRESS named it: `address` when given, else
    RAY_ADDRESS when set (as ray.init() reads it), else None (a new local Ray)."""
    if address is not None:
        return address, False
    env = os.environ.get("RAY_ADDRESS", "")
    return (env, True) if env else (None, False)


def check_address(address: str | None) -> None:
    """A one-line UserError for an --address, or (without one) a RAY_ADDRESS, of no form."""
    address, from_env = cluster_address(address)
    if address is None:
        return
    if from_env:
        split_address(
            address,
            f"RAY_ADDRESS={address!r} (used by --backend ray without --address; unset it for "
            "a local Ray)",
        )
    else:
        split_address(address)


def check_client(address: str | None) -> None:
    """Ray Client (ray://) needs grpc, which `pip install ray` leaves out (ray.init raised a
    ValueError): a one-line UserError before anything starts."""
    address, from_env = cluster_address(address)
    label = _label(address or "", from_env)
    if address == "auto" and os.environ.get("RAY_ADDRESS", "auto") != "auto":
        address = os.environ["RAY_ADDRESS"]
        label = f"--address auto (RAY_ADDRESS={address})"
    if not (address or "").startswith("ray://"):
        return
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise UserError(
            f"{label}: Ray Client (ray://) needs packages this Ray lacks: pip install "
            "'isobn[ray]' (or 'ray[client]')"
        ) from None


def check_timeout(seconds: float) -> float:
    """`seconds` when it is a usable --connect-timeout, else a one-line UserError (below
    MIN_TIMEOUT no cluster can answer: the error would blame a cluster that is there)."""
    if not (math.isfinite(seconds) and MIN_TIMEOUT <= seconds <= MAX_TIMEOUT):
        raise UserError(
            f"--connect-timeout must be a number of seconds from {MIN_TIMEOUT:g} to "
            f"{MAX_TIMEOUT:g}, got {seconds:g}"
        )
    return seconds


def connect_to_cluster(
    ray, address: str, timeout: float = DEFAULT_TIMEOUT, from_env: bool = False
) -> None:
    """ray.init(address=`address`) within `timeout` seconds, or a one-line UserError that
    names the address (as RAY_ADDRESS when `from_env`) and what to check."""
    deadline = time.monotonic() + timeout
    target = split_address(address, f"RAY_ADDRESS={address!r}" if from_env else None)
    if target is None:
        target = _auto_target(address, from_env)
    if target is not None:
        _check_listening(address, target, timeout, from_env)
    _init_within(ray, address, target, max(deadline - time.monotonic(), 1.0), timeout, from_env)


def _label(address: str, from_env: bool) -> str:
    """How messages name the address: `--address A`, or `RAY_ADDRESS=A` when it came from
    the environment."""
    return f"RAY_ADDRESS={address}" if from_env else f"--address {address}"


def _local(from_env: bool) -> str:
    """The way to a local Ray instead: without --address, RAY_ADDRESS would name a cluster."""
    if from_env:
        return "unset RAY_ADDRESS"
    if os.environ.get("RAY_ADDRESS"):
        return "leave out --address and unset RAY_ADDRESS"
    return "leave out --address"


def _host_port(host: str, port) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _what_to_check(address: str, target: tuple[str, int] | None, from_env: bool = False) -> str:
    """What to check about `address` (reached at `target`, when known), on one line."""
    host, port = target if target is not None else ("its host", "its port")
    if address.startswith("ray://"):
        kind = (
            "its Ray Client port (10001 by default; the GCS port, 6379 by default, is "
            "given as HOST:PORT without ray://)"
        )
    else:
        kind = (
            "the GCS port it printed (6379 by default; Ray Client's port is given as "
            "ray://HOST:10001)"
        )
    return (
        f"check that `ray start --head` runs on {host}, that {port} is {kind}, and that no "
        f"firewall blocks it; or {_local(from_env)} for a local Ray"
    )


def _port_hint(address: str, target: tuple[str, int] | None) -> str:
    """A port that answers but is no Ray (GCS) port: the other well-known ports of Ray."""
    port = target[1] if target is not None else None
    client = address.startswith("ray://")
    if port == 8265:
        return " (8265 is the Ray dashboard's port by default, for `ray job submit`)"
    if port == 10001 and not client:
        return " (10001 is Ray Client's port by default: write ray://HOST:10001)"
    if port == 6379 and client:
        return " (6379 is the GCS port by default: write HOST:6379 without ray://)"
    return ""


def _auto_target(address: str, from_env: bool = False) -> tuple[str, int] | None:
    """The HOST:PORT that `auto` stands for (RAY_ADDRESS, else the cluster `ray start`
    recorded on this machine); a UserError when there is none; None when Ray cannot say."""
    env = os.environ.get("RAY_ADDRESS")
    if env and env != "auto":
        try:
            return split_address(env)
        except UserError:
            raise UserError(
                f"--address auto uses RAY_ADDRESS={env!r}, which is not a Ray address: use {FORMS}"
            ) from None
    try:
        from ray._private.services import canonicalize_bootstrap_address

        found = canonicalize_bootstrap_address(address)
    except ConnectionError:
        unset = "" if env else " and RAY_ADDRESS is not set"
        raise UserError(
            f"{_label(address, from_env)}: no Ray cluster was started on this machine "
            f"(`ray start --head`){unset}; start one, pass its HOST:PORT, or "
            f"{_local(from_env)} for a local Ray"
        ) from None
    except Exception:  # a private function of Ray's: when it changes, ray.init decides
        return None
    return split_address(found) if found else None


def _check_listening(
    address: str, target: tuple[str, int], timeout: float, from_env: bool = False
) -> None:
    """A one-line UserError unless something accepts a TCP connection at `target` within
    `timeout` seconds: the name look-up and every address it gives (localhost: ::1, then
    127.0.0.1) in a daemon thread, abandoned when the time is up (a resolver or a host that
    never answers)."""
    host, port = target
    outcome: dict[str, BaseException] = {}

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except BaseException as error:  # handed to the waiting thread
            outcome["error"] = error

    thread = threading.Thread(target=probe, name="isobn-ray-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    where = _host_port(host, port)
    error = outcome.get("error")
    if thread.is_alive() or isinstance(error, TimeoutError):
        why = f"nothing answered at {where} within {timeout:g} s"
    elif error is None:
        return
    elif isinstance(error, socket.gaierror):
        why = f"no host is called {host}"
    elif isinstance(error, UnicodeError):  # the IDNA codec: an empty or over-long label
        why = f"{host} is not a host name"
    elif isinstance(error, OSError):
        why = f"nothing listens at {where}: {error.strerror or error}".rstrip(": ")
    else:
        raise error
    raise UserError(
        f"{_label(address, from_env)}: no Ray cluster reached ({why}); "
        f"{_what_to_check(address, target, from_env)}"
    )


def _init_within(
    ray,
    address: str,
    target: tuple[str, int] | None,
    seconds: float,
    timeout: float,
    from_env: bool = False,
) -> None:
    """ray.init in a daemon thread, waited for `seconds`; abandoned (the process goes on
    without Ray) when it has not returned by then."""
    outcome: dict[str, BaseException] = {}

    def init() -> None:
        try:
            ray.init(address=address)
        except BaseException as error:  # handed to the waiting thread
            outcome["error"] = error

    if threading.current_thread() is threading.main_thread():  # what ray.init would set
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
    quiet = _DropSigtermNote()
    ray_logger = logging.getLogger("ray._private.worker")
    ray_logger.addFilter(quiet)
    try:
        thread = threading.Thread(target=init, name="isobn-ray-connect", daemon=True)
        thread.start()
        thread.join(seconds)
    finally:
        ray_logger.removeFilter(quiet)
    label, check = _label(address, from_env), _what_to_check(address, target, from_env)
    if thread.is_alive():  # a refused token too, when the time-out is below Ray's ~20 s
        raise UserError(
            f"{label}: the port answers, but no Ray cluster did within {timeout:g} s "
            f"(--connect-timeout){_port_hint(address, target)}; {check}; {_token_note(address)}"
        )
    error = outcome.get("error")
    if isinstance(error, ConnectionError | TimeoutError):
        first = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        raise UserError(
            f"{label}: no Ray cluster there ({first}); {check}; {_token_note(address)}"
        ) from None
    if isinstance(error, RuntimeError) and str(error).startswith("Version mismatch"):
        raise UserError(f"{label}: {_version_mismatch(str(error))}") from None
    if error is not None:
        raise error


def _token_note(address: str) -> str:
    """What a cluster with token authentication needs of this driver. ray.init sends the
    token of ~/.ray/auth_token by itself only for `auto` (a cluster found on this machine);
    for an address given (argument or RAY_ADDRESS), only with RAY_AUTH_MODE=token."""
    env = os.environ.get("RAY_ADDRESS", "")
    found_here = address == "auto" and env in ("", "auto")
    if found_here or os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        needs = "its token here"
    else:
        needs = "RAY_AUTH_MODE=token here and its token"
    return (
        f"a cluster with token authentication (Ray 2.60's default) also needs {needs} "
        "(RAY_AUTH_TOKEN, or ~/.ray/auth_token as on the head node)"
    )


def _version_mismatch(message: str) -> str:
    """Ray's multi-line `Version mismatch: The cluster was started with: Ray: A Python: B
    This process on ... was started with: Ray: C Python: D` on one line, with the fix."""
    versions = re.findall(r"Ray: (\S+)\s+Python: (\S+)", message)
    if len(versions) == 2:
        (ray_there, python_there), (ray_here, python_here) = versions
        found = (
            f"the cluster runs Ray {ray_there} on Python {python_there}, this process Ray "
            f"{ray_here} on Python {python_here}"
        )
    else:
        found = " ".join(message.split())
    return (
        f"{found}; a driver needs the cluster's Ray and Python versions: install the same "
        "isobn[ray] and Python here as on the cluster's nodes"
    )


class _DropSigtermNote(logging.Filter):
    """ray.init in a thread notes that it did not set its SIGTERM handler: set above."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()
