"""The site check (.ci/check_site.py, `make docs-browser-check`) finds what a reader opening the
site from disk would hit. The browser is stood in for by what Chromium shows for each kind of
address (a page, a folder listing, an error page); the make target runs the real one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_site", ROOT / ".ci" / "check_site.py")
check_site = importlib.util.module_from_spec(_spec)
sys.modules["check_site"] = check_site  # dataclasses look their module up
_spec.loader.exec_module(check_site)

LISTING = '<html><script>function addRow(name, url) {}</script><table><tbody id="tbody">'
ERROR = "<html><title>file:///x</title><body>ERR_FILE_NOT_FOUND</body></html>"


def _page(body: str, head: str = "") -> str:
    return (
        '<html><head><meta name="generator" content="mkdocs-1.6.1, mkdocs-material-9.8.2">'
        f"{head}</head><body>{body}</body></html>"
    )


def _browser(url: str) -> str:
    """What Chromium shows at a file:// address: the file, a folder listing, or an error."""
    path = Path(unquote(urlparse(url).path))
    if path.is_dir():
        return LISTING
    return path.read_text() if path.is_file() else ERROR


def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    site = tmp_path / "site"
    for name, text in pages.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    return site


def test_a_site_of_html_pages_passes(tmp_path):
    site = _site(
        tmp_path,
        {
            "index.html": _page(
                '<a href="guides/layer.html#scale">layer</a><a href="https://x.org">out</a>',
                '<link rel="stylesheet" href="assets/site.css">',
            ),
            "guides/layer.html": _page(
                '<h2 id="scale">Scale</h2><a href="../index.html">home</a><img src="f.png">'
            ),
            "guides/f.png": "png",
            "assets/site.css": "",
            "404.html": _page(""),
        },
    )
    pages, problems = check_site.crawl(site, _browser)
    assert problems == []
    assert len(pages) == 2


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("guides/layer/", "guides/layer/ (linked from index.html) opens as a folder listing"),
        ("guides/gone.html", "guides/gone.html (linked from index.html) opens as an error page"),
        ("guides/layer.html#nowhere", "index.html links to a missing anchor"),
        ("../README.md", "index.html links out of the site"),
    ],
)
def test_what_a_reader_would_hit_is_a_problem(tmp_path, link, expected):
    site = _site(
        tmp_path,
        {
            "index.html": _page(f'<a href="guides/layer.html">ok</a><a href="{link}">x</a>'),
            "guides/layer.html": _page("<h1>Layer</h1>"),
            "guides/layer/index.html": _page("<h1>Layer</h1>"),
        },
    )
    (tmp_path / "README.md").write_text("")
    _, problems = check_site.crawl(site, _browser)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_missing_images_and_pages_no_link_reaches_are_problems(tmp_path):
    site = _site(
        tmp_path,
        {"index.html": _page('<img src="figures/gone.png">'), "orphan.html": _page("")},
    )
    _, problems = check_site.crawl(site, _browser)
    assert any("loads a missing file" in problem for problem in problems)
    assert "orphan.html is not reached from index.html by links" in problems


def test_without_a_browser_the_check_says_it_skipped(tmp_path, monkeypatch, capsys):
    site = _site(tmp_path, {"index.html": _page("")})
    monkeypatch.setattr(check_site.shutil, "which", lambda name: None)
    assert check_site.main([str(site)]) == 0
    assert "skipped: no Chromium" in capsys.readouterr().out
    assert check_site.main([str(site), "--require-browser"]) == 1
