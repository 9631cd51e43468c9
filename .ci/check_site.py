"""Open the built documentation site from disk in a real browser, as the README tells a reader
to (`site/index.html`), and follow every link.

Starting at SITE/index.html, each page is loaded over file:// in headless Chromium
(`--dump-dom`: the document after its scripts ran) and every link of the rendered page to
another file of the site is followed: the navigation, the table of contents and the links in
the text. A page fails when the browser shows a folder listing (a link to `guides/layer/`, as
`use_directory_urls: true` writes) or an error page (a missing file), when a link leads out of
the site folder, when a `#fragment` names no element of its page, or when an image, stylesheet
or script the page loads is missing. Every page mkdocs wrote must be reached this way.

    python .ci/check_site.py [SITE] [--require-browser]

Exit 0 when every page passed, or (without --require-browser) when Chromium is not installed,
with a line saying the check was skipped; exit 1 with one line per problem otherwise.
Chromium: Debian's package `chromium` (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# as root, headless, with no network of its own (these machines refuse its connections)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PAGE_SECONDS = 90
MKDOCS_PAGE = 'name="generator" content="mkdocs-'  # mkdocs writes it into every page
_ARTICLE = {"folder listing": "a ", "error page": "an ", "no answer": ""}


@dataclass
class Page:
    """What the browser rendered at one file:// address."""

    url: str
    kind: str  # "page", "folder listing", "error page" or "no answer"
    links: list[str] = field(default_factory=list)  # a href, resolved
    loads: list[str] = field(default_factory=list)  # img/script src, stylesheet href, resolved
    ids: set[str] = field(default_factory=set)


class _Links(HTMLParser):
    def __init__(self, base: str):
        super().__init__()
        self.base, self.links, self.loads, self.ids = base, [], [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("id", "name"):
            if attrs.get(name) and (name == "id" or tag == "a"):
                self.ids.add(attrs[name])
        if tag == "a" and attrs.get("href"):
            self.links.append(urljoin(self.base, attrs["href"]))
        elif tag in ("img", "script") and attrs.get("src"):
            self.loads.append(urljoin(self.base, attrs["src"]))
        elif tag == "link" and "stylesheet" in (attrs.get("rel") or "") and attrs.get("href"):
            self.loads.append(urljoin(self.base, attrs["href"]))


def page_kind(dom: str) -> str:
    """How the browser showed an address: a site page, its folder listing, or an error page."""
    if MKDOCS_PAGE in dom:
        return "page"
    if 'id="tbody"' in dom and "addRow(" in dom:  # Chromium's file:// directory listing
        return "folder listing"
    return "error page" if dom.strip() else "no answer"


def parse_page(url: str, dom: str) -> Page:
    """The kind, links, loaded files and element ids of the DOM Chromium rendered at `url`."""
    page = Page(url, page_kind(dom))
    if page.kind == "page":
        parser = _Links(url)
        parser.feed(dom)
        page.links, page.loads, page.ids = parser.links, parser.loads, parser.ids
    return page


def file_path(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def render(browser: str, url: str) -> str:
    """The DOM of `url` after load, from a fresh headless Chromium profile ("" if none)."""
    with tempfile.TemporaryDirectory(prefix="isobn-site-check-") as profile:
        try:
            done = subprocess.run(
                [browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                capture_output=True,
                text=True,
                timeout=PAGE_SECONDS,
            )
        except subprocess.TimeoutExpired:
            return ""
    return done.stdout


def crawl(site: Path, load) -> tuple[dict[str, Page], list[str]]:
    """Every page reached from SITE/index.html by its links, loaded with `load(url) -> DOM`
    (several at once); returns the pages by address and the problems found."""
    site = site.resolve()
    start = site.joinpath("index.html").as_uri()
    pages: dict[str, Page] = {}
    problems: list[str] = []
    referrers: dict[str, str] = {start: "the README"}
    todo = [start]
    with ThreadPoolExecutor(max_workers=3) as pool:
        while todo:
            for page in pool.map(lambda url: parse_page(url, load(url)), todo):
                pages[page.url] = page
            todo = []
            for page in (pages[url] for url in sorted(pages) if pages[url].kind == "page"):
                for link in page.links:
                    target, _ = urldefrag(link)
                    if urlparse(target).scheme != "file" or target in referrers:
                        continue
                    referrers[target] = page.url
                    if not file_path(target).is_relative_to(site):
                        problems.append(f"{_name(page.url, site)} links out of the site: {link}")
                        continue
                    todo.append(target)
    for url, page in sorted(pages.items()):
        if page.kind != "page":
            problems.append(
                f"{_name(url, site)} (linked from {_name(referrers[url], site)}) opens as "
                f"{_ARTICLE[page.kind]}{page.kind}, not a page"
            )
    problems += _fragments_and_files(pages, site)
    reached = {file_path(url) for url, page in pages.items() if page.kind == "page"}
    for path in sorted(site.rglob("*.html")):
        if path not in reached and path.name != "404.html":
            problems.append(f"{path.relative_to(site)} is not reached from index.html by links")
    return pages, problems


def _fragments_and_files(pages: dict[str, Page], site: Path) -> list[str]:
    problems = []
    for url, page in sorted(pages.items()):
        for link in page.links:
            target, fragment = urldefrag(link)
            linked = pages.get(target)
            if fragment and linked is not None and linked.kind == "page":
                if unquote(fragment) not in linked.ids:
                    problems.append(f"{_name(url, site)} links to a missing anchor: {link}")
        for load in page.loads:
            target = urldefrag(load)[0]
            if urlparse(target).scheme == "file" and not file_path(target).is_file():
                problems.append(f"{_name(url, site)} loads a missing file: {target}")
    return problems


def _name(url: str, site: Path) -> str:
    """`url` relative to the site folder, as its link spelled it (`guides/layer/`)."""
    root = site.as_uri() + "/"
    return unquote(url[len(root) :]) or "." if url.startswith(root) else url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="site", help="the built site (default: site)")
    parser.add_argument(
        "--require-browser",
        action="store_true",
        help="fail, rather than skip, when Chromium is not installed (CI)",
    )
    args = parser.parse_args(argv)
    site = Path(args.site)
    if not (site / "index.html").is_file():
        print(f"check_site: no {site}/index.html: build the site first (make docs)")
        return 1
    browser = next(filter(None, map(shutil.which, BROWSERS)), None)
    if browser is None:
        print(
            "check_site: skipped: no Chromium on PATH (install Debian's package: "
            "apt-get install chromium)"
        )
        return 1 if args.require_browser else 0
    pages, problems = crawl(site, lambda url: render(browser, url))
    for problem in problems:
        print(f"check_site: {problem}")
    links = sum(len(page.links) for page in pages.values())
    verdict = f"{len(problems)} problem(s)" if problems else "every page opened as a page"
    print(f"check_site: {len(pages)} addresses, {links} links, opened from disk: {verdict}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
