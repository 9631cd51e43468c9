"""Reaching the Ray cluster of `isobn study --address`, or giving up within a bounded time.

ray.init does not give up on a cluster that is not there: with nothing listening at
HOST:PORT it retries the GCS 20 times, about 40 s each, logging a time-out each time. So the
address is first checked for its form, then its TCP port is tried (socket time-out), and
ray.init runs in a thread that is abandoned when the time is up; each failure is one line
naming the address and what to check.
"""

from __future__ import annotations

import logging
import math
import os
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


def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of an --address of the forms FORMS; None for auto; a one-line UserError
    for anything else (`foo`, `host:`, `http://host:1`, a port above 65535)."""
    if address == "auto":
        return None
    text = address.removeprefix("ray://")
    host, colon, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host  # [::1]:6379
    good = (
        colon
        and host
        and port.isascii()
        and port.isdigit()
        and 0 < int(port) < 65536
        and not any(c.isspace() or c in "/?#@[]" for c in host)
    )
    if good and ":" in host and not bracketed:  # ::1:6379, h:1:2: which part is the port?
        raise UserError(
            f"--address {address!r}: write an IPv6 host in brackets, e.g. [::1]:6379, as Ray does"
        )
    if not good:
        raise UserError(f"--address {address!r} is not a Ray address: use {FORMS}")
    return host, int(port)


def check_timeout(seconds: float) -> float:
    """`seconds` when it is a usable --connect-timeout, else a one-line UserError (below
    MIN_TIMEOUT no cluster can answer: the error would blame a cluster that is there)."""
    if not (math.isfinite(seconds) and MIN_TIMEOUT <= seconds <= MAX_TIMEOUT):
        raise UserError(
            f"--connect-timeout must be a number of seconds from {MIN_TIMEOUT:g} to "
            f"{MAX_TIMEOUT:g}, got {seconds:g}"
        )
    return seconds


def connect_to_cluster(ray, address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """ray.init(address=`address`) within `timeout` seconds, or a one-line UserError that
    names the address and what to check."""
    deadline = time.monotonic() + timeout
    target = split_address(address)
    if target is None:
        target = _auto_target(address)
    if target is not None:
        _check_listening(address, target, timeout)
    _init_within(ray, address, target, max(deadline - time.monotonic(), 1.0), timeout)


def _what_to_check(address: str, target: tuple[str, int] | None) -> str:
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
        "firewall blocks it; or leave out --address for a local Ray"
    )


def _auto_target(address: str) -> tuple[str, int] | None:
    """The HOST:PORT that `auto` stands for (RAY_ADDRESS, else the cluster `ray start`
    recorded on this machine); a UserError when there is none; None when Ray cannot say."""
    env = os.environ.get("RAY_ADDRESS")
    if env:
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
        raise UserError(
            "--address auto: no Ray cluster was started on this machine (`ray start --head`) "
            "and RAY_ADDRESS is not set; start one, pass its HOST:PORT, or leave out --address "
            "for a local Ray"
        ) from None
    except Exception:  # a private function of Ray's: when it changes, ray.init decides
        return None
    return split_address(found) if found else None


def _check_listening(address: str, target: tuple[str, int], timeout: float) -> None:
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.gaierror:
        why = f"no host is called {host}"
    except UnicodeError:  # the IDNA codec: an empty label (a..b) or one over 63 characters
        why = f"{host} is not a host name"
    except TimeoutError:
        why = f"nothing answered at {host}:{port} within {timeout:g} s"
    except OSError as error:
        why = f"nothing listens at {host}:{port}: {error.strerror or error}".rstrip(": ")
    raise UserError(
        f"--address {address}: no Ray cluster reached ({why}); {_what_to_check(address, target)}"
    )


def _init_within(
    ray, address: str, target: tuple[str, int] | None, seconds: float, timeout: float
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
    if thread.is_alive():
        raise UserError(
            f"--address {address}: the port answers, but no Ray cluster did within "
            f"{timeout:g} s (--connect-timeout); {_what_to_check(address, target)}"
        )
    error = outcome.get("error")
    if isinstance(error, ConnectionError | TimeoutError):
        first = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        raise UserError(
            f"--address {address}: no Ray cluster there ({first}); "
            f"{_what_to_check(address, target)}; a cluster with token authentication (Ray "
            "2.60's default) also needs its token here (RAY_AUTH_TOKEN, or ~/.ray/auth_token "
            "as on the head node)"
        ) from None
    if error is not None:
        raise error


class _DropSigtermNote(logging.Filter):
    """ray.init in a thread notes that it did not set its SIGTERM handler: set above."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()
