"""Every code block of the README and of the documentation site runs as written.

A page's blocks run in order in one fresh folder, as a reader would run them: `python`
blocks in one namespace, `bash` blocks in bash (with `.venv/bin/activate` standing for this
test's environment), `toml` study files are validated and planned. A block that must not run
(a hub download, a GPU, hours of training) carries a marker on the line before its fence:

    <!-- not run: REASON -->       skipped; there are few of them, each with its reason
    <!-- parse only: REASON -->    each `isobn ...` command is parsed by isobn's own parser
                                    (options and choices checked), not run
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(
    r"(?:<!-- (?P<marker>not run|parse only): (?P<reason>[^>]*?) -->\n)?"
    r"^```(?P<lang>[^\n`]*)\n(?P<body>.*?)^```$",
    flags=re.S | re.M,
)
LANGUAGES = {"python", "bash", "toml", "text", "yaml", "json"}  # text/yaml/json: shown only
MAX_NOT_RUN = 6


@dataclass
class Block:
    page: str
    index: int
    lang: str
    body: str
    marker: str | None
    reason: str | None


def blocks(page: Path) -> list[Block]:
    name = str(page.relative_to(ROOT))
    return [
        Block(name, i, m["lang"].strip(), m["body"], m["marker"], m["reason"])
        for i, m in enumerate(FENCE.finditer(page.read_text()))
    ]


ALL = [block for page in PAGES for block in blocks(page)]


def test_the_pages_have_examples():
    assert (ROOT / "docs").is_dir() and len(PAGES) >= 10
    assert sum(b.lang == "python" for b in ALL) >= 8
    assert sum(b.lang == "bash" and b.marker is None for b in ALL) >= 3


def test_every_block_names_its_language():
    unnamed = [f"{b.page} block {b.index}" for b in ALL if b.lang not in LANGUAGES]
    assert not unnamed, f"fences without a known language: {unnamed}"


def test_blocks_that_do_not_run_are_few_and_say_why():
    skipped = [b for b in ALL if b.marker == "not run"]
    assert len(skipped) <= MAX_NOT_RUN, [f"{b.page} block {b.index}" for b in skipped]
    assert all(len(b.reason.split()) >= 2 for b in skipped)
    assert all(b.lang in {"bash", "python"} for b in ALL if b.marker)


def _activate_shim(folder: Path) -> None:
    """`source .venv/bin/activate` in a page puts this test's interpreter first on PATH."""
    (folder / ".venv" / "bin").mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    (folder / ".venv" / "bin" / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')


def _environment() -> dict[str, str]:
    """The reader's shell after `source .venv/bin/activate`, which holds for the whole page."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


def _commands(body: str) -> list[list[str]]:
    """The `isobn ...` commands of a shell block, continuation lines joined."""
    joined = body.replace("\\\n", " ")
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("isobn ")]


def _parse(block: Block) -> None:
    from isobn.cli.main import build_parser

    commands = _commands(block.body)
    assert commands, f"{block.page} block {block.index}: parse-only block without isobn commands"
    for argv in commands:
        parser = build_parser()
        try:
            args, unknown = parser.parse_known_args(argv)
        except SystemExit as error:
            pytest.fail(f"{block.page} block {block.index}: isobn {shlex.join(argv)}: {error}")
        assert not unknown, f"{block.page} block {block.index}: unknown options {unknown}"


def _study_file(block: Block, folder: Path) -> None:
    from isobn.study.spec import check_task_files, load_study

    for name in re.findall(r'_file = "(.*?)"', block.body):  # the files it names, stand-ins
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("body,queue\nhello,a\nbye,b\n")
    path = folder / f"study{block.index}.toml"
    path.write_text(block.body)
    study = load_study(path)
    assert study.cells(), f"{block.page} block {block.index}: a study without cells"
    check_task_files(study)  # found from the folder the study runs in, as the guide says


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_runs_top_to_bottom(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _activate_shim(tmp_path)
    namespace: dict = {}
    for block in blocks(page):
        where = f"{block.page} block {block.index}"
        if block.marker == "not run" or block.lang in {"text", "yaml", "json"}:
            continue
        if block.marker == "parse only":
            _parse(block)
        elif block.lang == "python":
            exec(compile(block.body, where, "exec"), namespace)
        elif block.lang == "toml":
            _study_file(block, tmp_path)
        elif block.lang == "bash":
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.body],
                cwd=tmp_path,
                env=_environment(),
                capture_output=True,
                text=True,
                timeout=1800,  # minutes on a quiet machine; much longer on a loaded one
            )
            assert done.returncode == 0, f"{where} failed:\n{done.stdout[-3000:]}{done.stderr}"
            # an example shows statistics of the model, not of too small a sample
            assert "the covariance has rank at most" not in done.stderr, f"{where}: {done.stderr}"


def test_the_readme_links_point_at_files():
    """The README is read on the forge, outside the site: its relative links name files."""
    links = re.findall(r"\]\(([^)#]+)\)", (ROOT / "README.md").read_text())
    relative = [link for link in links if "://" not in link]
    assert len(relative) >= 10
    assert [link for link in relative if not (ROOT / link).is_file()] == []


def test_the_api_reference_names_every_module():
    """A new module gets its page section: `::: isobn.x.y` in docs/reference (the CLI's
    modules, and __main__ that runs them, are documented by `isobn COMMAND --help`)."""
    reference = "\n".join(p.read_text() for p in (ROOT / "docs" / "reference").glob("*.md"))
    modules = [
        ".".join(path.relative_to(ROOT / "src").with_suffix("").parts)
        for path in (ROOT / "src" / "isobn").rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py") and "cli" not in path.parts
    ]
    assert [m for m in modules if f"::: {m}\n" not in reference] == []
