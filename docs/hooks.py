"""mkdocs hook: the study results (results/NAME/RESULTS.md and its figures) join the site at
the same paths as in the repository, so their relative links work in both places."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ["offline", "offline-regularisers"]


def on_files(files, config):
    for study in STUDIES:
        folder = ROOT / "results" / study
        for path in [folder / "RESULTS.md", *sorted((folder / "figures").glob("*.png"))]:
            if path.is_file():
                uri = path.relative_to(ROOT).as_posix()
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
