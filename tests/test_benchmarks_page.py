"""BENCHMARKS.md is the current benchmark page: every script it names exists, every benchmark
script is on it, each numbered section names its script, date and command, and it reads as
today's figures rather than a history."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "BENCHMARKS.md").read_text()
HELPERS = {"common.py", "machine.py", "models.py", "timing.py"}  # imported, not run


def _sections() -> dict[str, str]:
    parts = re.split(r"^## ", PAGE, flags=re.MULTILINE)[1:]
    return {part.splitlines()[0]: part for part in parts}


def test_every_script_named_exists_and_every_script_is_named():
    named = set(re.findall(r"\b([a-z_]+\.py)\b", PAGE))
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")}
    assert named & scripts, "no benchmark script named"
    assert not {n for n in named if n.startswith(("bench_", "profile_"))} - scripts
    assert not scripts - HELPERS - named, "scripts missing from BENCHMARKS.md"


def test_each_numbered_section_names_its_script_date_and_command():
    numbered = {title: text for title, text in _sections().items() if re.match(r"\d+\.", title)}
    assert len(numbered) >= 8
    for title, text in numbered.items():
        assert re.search(r"`[a-z_]+\.py`", title), f"section {title!r} names no script"
        if "deterministic" in title:
            continue
        assert re.search(r"20\d\d-\d\d-\d\d", text), f"section {title!r} has no date"
        assert "benchmarks/" in text, f"section {title!r} has no command"


def test_the_page_states_todays_figures_not_a_history():
    for word in ("superseded", "the lead", "another engineer", "issue #", "issue 1"):
        assert word not in PAGE.lower(), word
    # the headline: today's IsoBN layer at MiniLM's width
    assert "**0.176%**" in PAGE and "**0.116%**" in PAGE


def test_run_all_benchmarks_are_the_ones_the_page_lists():
    source = (ROOT / "benchmarks" / "run_all.py").read_text()
    benches = re.search(r"BENCHES = \(([^)]*)\)", source).group(1)
    names = re.findall(r'"(\w+)"', benches)
    listed = re.search(r"`--only ([a-z ]+)`", PAGE).group(1).split()
    assert listed == names


def test_the_readme_states_no_duration_or_count_that_goes_stale():
    """`make test` and `make demo` durations and the number of tests change with every commit
    and machine: the README describes them; a measured figure carries its date."""
    readme = (ROOT / "README.md").read_text()
    assert not re.search(r"\b\d[\d,]* tests\b", readme)
    assert not re.search(r"\b(about|took|takes) \d+(\.\d+)? ?(min|minutes|s|h)\b", readme)
    for size in re.findall(r"[^.]*\bruns/demo\b[^.]*MiB[^.]*", readme):
        assert re.search(r"20\d\d-\d\d-\d\d", size), size
