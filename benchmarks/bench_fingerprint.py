"""The cost of identifying inputs by content (isobn.training.fingerprint) on a 100 MB file.

Arms, side by side in interleaved rounds, each over the same file in the page cache (as a
data file just read, or about to be, by the loader):

* read: the file read in 1 MiB chunks, nothing computed (the floor of any fingerprint);
* isobn fingerprint: file_fingerprint, BLAKE2b-128 (its per-process cache cleared first);
* sha256: hashlib's SHA-256 over the same chunks (for scale);
* xxhash xxh3_128, when the package is installed (not a dependency of isobn).

Prints the median seconds and MB/s of each arm and its ratio to the read; run it on a quiet
machine (timings of a shared machine say little).

    .venv/bin/python benchmarks/bench_fingerprint.py [--megabytes 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from isobn.training import fingerprint

CHUNK = 1 << 20


def read_only(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(CHUNK):
            pass


def hashed(path: Path, digest) -> str:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def isobn_fingerprint(path: Path) -> str:
    fingerprint._CACHE.clear()  # measure the hash, not the cache
    return fingerprint.file_fingerprint(path)


def arms() -> dict:
    found = {
        "read": read_only,
        "isobn fingerprint (blake2b-128)": isobn_fingerprint,
        "sha256": lambda path: hashed(path, hashlib.sha256()),
    }
    try:
        import xxhash

        found["xxhash xxh3_128"] = lambda path: hashed(path, xxhash.xxh3_128())
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="isobn-bench-") as tmp:
        path = Path(tmp) / "data.bin"
        path.write_bytes(os.urandom(args.megabytes * 10**6))
        read_only(path)  # into the page cache
        samples: dict[str, list[float]] = {name: [] for name in arms()}
        for _ in range(args.rounds):
            for name, run in arms().items():
                started = time.perf_counter()
                run(path)
                samples[name].append(time.perf_counter() - started)
    floor = statistics.median(samples["read"])
    print(f"{args.megabytes} MB file, median of {args.rounds} interleaved rounds\n")
    print("| arm | seconds | MB/s | x read |")
    print("|---|---|---|---|")
    for name, values in samples.items():
        seconds = statistics.median(values)
        print(
            f"| {name} | {seconds:.3f} | {args.megabytes / seconds:.0f} | {seconds / floor:.1f} |"
        )


if __name__ == "__main__":
    main()
