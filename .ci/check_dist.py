"""Check what the wheel and sdist in DIST carry: the license, the dependencies, the type
marker and the study files (twine checks the rest of the metadata)."""

import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

dist = Path(sys.argv[1])
(wheel,) = dist.glob("isobn-*.whl")
(sdist,) = dist.glob("isobn-*.tar.gz")
with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    meta = Parser().parsestr(archive.read(metadata).decode())
problems = []
if meta["License-Expression"] != "MIT":
    problems.append(f"License-Expression is {meta['License-Expression']!r}, not 'MIT'")
if "LICENSE" not in (meta.get_all("License-File") or []):
    problems.append("no License-File: LICENSE")
requires = " ".join(meta.get_all("Requires-Dist") or [])
for package in ("torch", "transformers", "accelerate", "safetensors", "scikit-learn"):
    if package not in requires:
        problems.append(f"Requires-Dist lacks {package}")
wanted = [
    "isobn/py.typed",
    "isobn/study/files/offline.toml",
    "isobn/study/files/glue.toml",
    "isobn/study/files/offline-regularisers.toml",
]
for name in wanted:
    if name not in names:
        problems.append(f"the wheel lacks {name}")
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
    problems.append("the wheel lacks its LICENSE file")
with tarfile.open(sdist) as archive:
    members = {m.split("/", 1)[1] for m in archive.getnames() if "/" in m}
for name in ["LICENSE", "README.md", "pyproject.toml"] + [f"src/{n}" for n in wanted]:
    if name not in members:
        problems.append(f"the sdist lacks {name}")
if problems:
    sys.exit("check_dist: " + "; ".join(problems))
print(f"check_dist: {wheel.name} and {sdist.name} carry the license, dependencies and data")
