"""Bar: training on a 200 MB text file peaks within +300 MB RSS of training on a 1 MB file.

Each run is a fresh ``chatrnn train charlm`` subprocess (encoding the corpus into the cache, then a
few training steps and an evaluation); its peak RSS is read from the kernel's accounting of the
child. Both files are made here from Tiny Shakespeare (or a synthetic text if it is absent).

    python benchmarks/charlm_memory.py [--big-mb 200] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import SHARED


def make_file(path: Path, size: int) -> None:
    src = SHARED / "tinyshakespeare.txt"
    base = src.read_bytes() if src.exists() else (b"the quick brown fox jumps over the lazy dog\n" * 25000)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            piece = base[: size - written]
            f.write(piece)
            written += len(piece)


def peak_rss_mb(corpus: Path, home: Path, steps: int) -> float:
    code = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
        "sys.exit(r.returncode)\n"
    )
    env = dict(os.environ, CHATRNN_CACHE=str(home / "cache"), CHATRNN_CHECKPOINTS=str(home / "ck"))
    cmd = [
        sys.executable,
        "-c",
        code,
        sys.executable,
        "-m",
        "chatrnn",
        "train",
        "charlm",
        "--corpus",
        str(corpus),
        "--max-steps",
        str(steps),
        "--evals",
        "1",
        "--quiet",
        "--overwrite",  # the cached-corpus run trains again into the same folder
        "--out",
        str(home / "ck" / corpus.stem),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mb", type=int, default=200)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatrnn-mem-") as d:
        home = Path(d)
        small, big = home / "small.txt", home / "big.txt"
        make_file(small, 1 << 20)
        make_file(big, args.big_mb << 20)
        rss_small = peak_rss_mb(small, home, args.steps)
        rss_big = peak_rss_mb(big, home, args.steps)
        rss_big_cached = peak_rss_mb(big, home, args.steps)
    print(f"peak RSS, 1 MB corpus:            {rss_small:8.0f} MB")
    print(f"peak RSS, {args.big_mb} MB corpus (encode):  {rss_big:8.0f} MB   (+{rss_big - rss_small:.0f} MB)")
    print(
        f"peak RSS, {args.big_mb} MB corpus (cached):  "
        f"{rss_big_cached:8.0f} MB   (+{rss_big_cached - rss_small:.0f} MB)"
    )
    ok = rss_big - rss_small <= 300 and rss_big_cached - rss_small <= 300
    print(f"bar: +300 MB at most: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
