"""Compare char LM settings on Tiny Shakespeare under one wall-clock budget: how the CPU presets
were chosen. Each argument is one run, a JSON object of overrides on ``--preset``:
model keys (cell, layers, hidden, embed, dropout, skip, tie_weights), batch_size, seq_len, lr,
and any TrainConfig field (weight_decay, grad_clip, min_lr_ratio, ...).

    python benchmarks/charlm_sweep.py --max-time 110s '{}' '{"layers": 4, "hidden": 112, "skip": true}'

Runs go one after another (each uses every core), evaluate once at the end (``--evals``), and
print one JSON line each: the final val loss, steps and the machine's load average. Compare runs
made back to back on a quiet machine; load changes the steps a budget buys.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _common import corpus, temp_home

from chatrnn.settings import TRAIN_KEYS
from chatrnn.train.charlm import MODEL_KEYS, CharLMOptions, train_charlm
from chatrnn.train.progress import Reporter
from chatrnn.units import parse_duration


def run(overrides: dict, seconds: float, preset: str, evals: int, path: str, home) -> dict:
    unknown = set(overrides) - set(MODEL_KEYS) - set(TRAIN_KEYS) - {"batch_size", "seq_len"}
    if unknown:
        raise SystemExit(f"unknown setting(s): {', '.join(sorted(unknown))}")
    train = {"max_time": seconds, "evals": evals, **{k: v for k, v in overrides.items() if k in TRAIN_KEYS}}
    opts = CharLMOptions(
        out=home / f"run{time.monotonic_ns()}",
        corpus=[path],
        preset=preset,
        device="cpu",
        model={k: v for k, v in overrides.items() if k in MODEL_KEYS},
        **{k: overrides[k] for k in ("batch_size", "seq_len") if k in overrides},
        train=train,
    )
    r = train_charlm(opts, reporter=Reporter(quiet=True))
    return {
        "settings": overrides,
        "preset": preset,
        "val": round(r.last_metrics["loss"], 4),
        "steps": r.steps,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="JSON objects of overrides, one per run")
    ap.add_argument("--max-time", default="110s")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--evals", type=int, default=1)
    args = ap.parse_args()
    path = str(corpus("tinyshakespeare.txt"))
    home = temp_home()
    for spec in args.runs:
        print(
            json.dumps(run(json.loads(spec), parse_duration(args.max_time), args.preset, args.evals, path, home)),
            flush=True,
        )


if __name__ == "__main__":
    main()
