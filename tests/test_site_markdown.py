"""The pages of the documentation site render as their authors meant under mkdocs'
Python-Markdown, which differs from GitHub's CommonMark: a list needs a blank line before it
(without one, mkdocs runs its items into the paragraph above, GitHub shows a list)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the pages mkdocs renders: README's twin docs/index.md, the guides, and the studies' RESULTS.md
# (docs/hooks.py), whose verdict is written by hand
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted(ROOT.glob("results/*/RESULTS.md")),
]
ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s+\S")
NOT_PROSE = ("|", "#", "<", ">")  # table rows, headings, HTML, quotes


def lists_without_a_blank_line(text: str) -> list[str]:
    """`line N: ...` for each list whose first item follows a line of prose directly."""
    found, fenced, previous, in_list = [], False, "", False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced, previous, in_list = not fenced, "", False
            continue
        if fenced or not line.strip():
            previous = "" if not fenced else previous
            continue
        if ITEM.match(line):
            if previous and not in_list and not previous.lstrip().startswith(NOT_PROSE):
                found.append(f"line {number}: {line.strip()[:60]}")
            in_list = True
        else:
            in_list = in_list and line.startswith(" ")  # an item's indented continuation
        previous = line
    return found


def test_the_check_finds_a_list_run_into_its_paragraph():
    assert lists_without_a_blank_line("Two methods fail:\n- one\n- two\n") == ["line 2: - one"]
    assert lists_without_a_blank_line("Two methods fail:\n\n- one\n  more\n- two\n") == []
    assert lists_without_a_blank_line("```text\nx\n- y\n```\n| a |\n- b\n") == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_list_starts_after_a_blank_line(page):
    assert lists_without_a_blank_line(page.read_text()) == []


def test_docstrings_cross_reference_in_mkdocstrings_syntax():
    """The API reference renders docstrings as Markdown: a Sphinx role (:func:`x`) shows raw;
    `[x][isobn.module.x]` is a link."""
    role = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "src").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if role.search(line)
    ]
    assert found == []
