"""The sweep behind ``chatrnn.adapt.AdaptSettings``' defaults: dynamic evaluation's lr, decay and
segment length, scored on a held-out slice of the *training* text, never the validation text.

The checkpoint's training split is cut from its end: the last ``--stats-chars`` characters give the
gradient statistics MS_g (as ``chatrnn eval --adapt`` takes them), the ``--chars`` before those are
what each setting is scored on. The model was trained on that text too, so the gains here
understate those on unseen text; only the ranking of the settings is used.

    python benchmarks/adapt_sweep.py --checkpoint checkpoints/shakespeare10m [--chars 30000]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time

import numpy as np
import torch

from chatrnn.adapt import AdaptSettings, adapt, gradient_stats, training_slice
from chatrnn.infer import Generator
from chatrnn.train.charlm_task import evaluate_stream


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", "-c", default="checkpoints/shakespeare10m")
    ap.add_argument("--chars", type=int, default=30_000, help="held-out training characters scored per setting")
    ap.add_argument("--stats-chars", type=int, default=AdaptSettings().stats_chars)
    ap.add_argument("--lrs", default="3e-4,1e-3,3e-3,1e-2")
    ap.add_argument("--decays", default="0,0.01,0.1")
    ap.add_argument("--seqs", default="50,100,200")
    ap.add_argument("--sgd-lrs", default="0.1,0.3,1")
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = Generator.load(args.checkpoint)
    stats_text, stats_src = training_slice(gen.config, gen.folder, gen.vocab, args.stats_chars + 1)
    held, held_src = training_slice(gen.config, gen.folder, gen.vocab, args.chars + 1, offset=args.stats_chars)
    static = evaluate_stream(gen.model, held, torch.device("cpu"), rows=1, seq_len=256)["loss"]
    print(f"checkpoint {gen.folder}; statistics on {stats_src}; scored on {held_src}")
    print(f"static loss on the held-out slice: {static:.4f} nats/char\n")
    print("| rule | lr | decay | seq | adapted | change | s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    stats_by_seq: dict[int, list[torch.Tensor]] = {}
    grid = [
        ("rms", float(lr), float(d), int(q))
        for lr, d, q in itertools.product(args.lrs.split(","), args.decays.split(","), args.seqs.split(","))
    ]
    grid += [
        ("sgd", float(lr), float(d), 100)
        for lr, d in itertools.product(filter(None, args.sgd_lrs.split(",")), ("0", "0.01"))
    ]
    for rule, lr, decay, seq in grid:
        s = AdaptSettings(lr=lr, decay=decay, seq=seq, rule=rule, stats_chars=args.stats_chars)
        stats = None
        if rule == "rms":
            if seq not in stats_by_seq:
                stats_by_seq[seq] = gradient_stats(gen.model, stats_text, seq)
            stats = stats_by_seq[seq]
        t0 = time.perf_counter()
        r = adapt(copy.deepcopy(gen.model), held, s, stats)
        dt = time.perf_counter() - t0
        ok = np.isfinite(r.loss)
        rows.append((r.loss if ok else float("inf"), s))
        print(f"| {rule} | {lr:g} | {decay:g} | {seq} | {r.loss:.4f} | {r.loss - static:+.4f} | {dt:.1f} |", flush=True)
    best = min(rows, key=lambda t: t[0])
    print(
        f"\nbest: {best[1].rule} lr={best[1].lr:g} decay={best[1].decay:g} seq={best[1].seq}: "
        f"{best[0]:.4f} ({best[0] - static:+.4f} nats/char)"
    )


if __name__ == "__main__":
    main()
