"""Helpers shared by the benchmarks: where the shared corpora are, and a quiet temp environment."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CHATRNN_SHARED", ROOT.parent / "shared")) / "corpora"


def corpus(name: str) -> Path:
    """A shared corpus, or exit 0 with a message: benchmarks must not fail on a fresh clone."""
    p = SHARED / name
    if not p.exists():
        print(f"skipped: {p} not found (the shared corpora live beside the checkout)")
        sys.exit(0)
    return p


def temp_home() -> Path:
    """Checkpoints and the corpus cache in a temp folder, so benchmarks never touch the user's."""
    d = Path(tempfile.mkdtemp(prefix="chatrnn-bench-"))
    os.environ.setdefault("CHATRNN_CHECKPOINTS", str(d / "checkpoints"))
    os.environ.setdefault("CHATRNN_CACHE", str(d / "cache"))
    return d
