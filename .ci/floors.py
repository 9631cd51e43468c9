"""The lowest versions pyproject.toml declares for the packages whose floors CI tests, as pip
requirements, and a constraints file for everything else (the tested versions of
constraints.txt, less the packages the floors may pull at other versions).

    python .ci/floors.py requirements        -> torch==2.13.0 transformers==4.46.0 ... pytest ...
    python .ci/floors.py constraints OUT     -> OUT: constraints.txt without those packages

Read from pyproject.toml, so the versions CI tests cannot drift from the declared ones:
``NAME>=X`` in [project] dependencies gives ``NAME==X``; ``NAME==X`` in an optional extra gives
itself. torch is the CPU build of constraints.txt (the floors are about the Hugging Face stack).
The other dependencies and the test tools come as declared (isobn itself runs from src/).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORED = ("transformers", "accelerate")  # [project] dependencies: their >= floor
PINNED_EXTRAS = {"peft": "peft"}  # package -> the optional extra that pins it
# Not constrained: the floors' own requirements choose them (transformers 4.x wants
# huggingface-hub < 1.0 and its own tokenizers range).
FLOATING = (*FLOORED, *PINNED_EXTRAS, "tokenizers", "huggingface-hub", "hf-xet", "safetensors")
UNUSED_TEST_TOOLS = ("ray", "ruff")  # the core, hf and training tests need neither


def _version(requirements: list[str], name: str, operator: str) -> str:
    for requirement in requirements:
        match = re.fullmatch(rf"{re.escape(name)}\s*{re.escape(operator)}\s*([\w.]+)", requirement)
        if match:
            return match.group(1)
    raise SystemExit(f"pyproject.toml declares no {name}{operator}VERSION")


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [f"{name}=={_version(project['dependencies'], name, '>=')}" for name in FLOORED]
    extras = project["optional-dependencies"]
    pins += [f"{name}=={_version(extras[x], name, '==')}" for name, x in PINNED_EXTRAS.items()]
    torch = _version((ROOT / "constraints.txt").read_text().splitlines(), "torch", "==")
    named = {*FLOORED, *PINNED_EXTRAS, "torch", *UNUSED_TEST_TOOLS}
    rest = [r for r in project["dependencies"] + extras["test"] if _name(r) not in named]
    return [f"torch=={torch}", *pins, *rest]


def _name(requirement: str) -> str:
    return re.match(r"[\w.-]+", requirement).group(0).lower()


def constraints() -> str:
    lines = (ROOT / "constraints.txt").read_text().splitlines(keepends=True)
    return "".join(line for line in lines if line.split("==")[0].strip() not in FLOATING)


if __name__ == "__main__":
    if sys.argv[1:] == ["requirements"]:
        print(" ".join(requirements()))
    elif len(sys.argv) == 3 and sys.argv[1] == "constraints":
        Path(sys.argv[2]).write_text(constraints())
    else:
        raise SystemExit(__doc__)
