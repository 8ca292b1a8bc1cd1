"""Bar: on the 10-minute Tiny Shakespeare model, dynamic evaluation (``chatrnn eval --adapt``, default
settings) scores the validation text (the corpus' last 10%) at least 0.05 nats/char below the static
model, and the whole adapted eval (gradient statistics included) takes under 60 s on this CPU.

Runs the same library call as ``chatrnn eval --file VAL --adapt``; prints static, adapted, the
difference, the wall and CPU time of the call, and the machine's load (other processes share it).

    python benchmarks/charlm_adapt.py --checkpoint checkpoints/shakespeare10m [--adapt-lr 1e-3 ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import corpus

from chatrnn.adapt import AdaptSettings
from chatrnn.evaluate import evaluate_charlm_file


def main() -> None:
    d = AdaptSettings()
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", "-c", default="checkpoints/shakespeare10m")
    ap.add_argument("--adapt-lr", type=float, default=d.lr)
    ap.add_argument("--adapt-decay", type=float, default=d.decay)
    ap.add_argument("--adapt-seq", type=int, default=d.seq)
    ap.add_argument("--adapt-rule", default=d.rule)
    args = ap.parse_args()
    text = corpus("tinyshakespeare.txt").read_text("utf-8")
    val = text[len(text) - int(len(text) * 0.1) :]  # the training run's validation split
    path = Path(tempfile.mkdtemp(prefix="chatrnn-adapt-")) / "val.txt"
    path.write_text(val, "utf-8")
    s = AdaptSettings(lr=args.adapt_lr, decay=args.adapt_decay, seq=args.adapt_seq, rule=args.adapt_rule)
    load0 = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    m = evaluate_charlm_file(args.checkpoint, path, device="cpu", adapt=s)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load1 = os.getloadavg()
    diff = m["loss"] - m["loss_static"]
    print(f"checkpoint {m['checkpoint']}, {len(val):,} validation chars ({m['chars']:,} scored)")
    print(f"settings: rule {s.rule}, lr {s.lr:g}, decay {s.decay:g}, seq {s.seq}; statistics: {m['adapt']['stats']}")
    print(f"  static   {m['loss_static']:.4f} nats/char  {m['bpc_static']:.4f} bits/char")
    print(f"  adapted  {m['loss']:.4f} nats/char  {m['bpc']:.4f} bits/char")
    print(f"  change   {diff:+.4f} nats/char  {m['bpc'] - m['bpc_static']:+.4f} bits/char")
    print(
        f"time: {wall:.1f}s wall for the whole call ({m['adapt']['seconds']:.1f}s the adaptive pass), "
        f"{cpu:.1f}s CPU of this process; load average {load0[0]:.2f} before, {load1[0]:.2f} after "
        f"({os.cpu_count()} cores)"
    )
    print(
        f"bar: change <= -0.05: {'PASS' if diff <= -0.05 else 'FAIL'}; wall < 60 s: {'PASS' if wall < 60 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
