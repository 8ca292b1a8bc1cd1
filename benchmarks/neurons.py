"""Bar (issue 11): on a Tiny Shakespeare model, at least one unit has AUC >= 0.85 for "speaker line"
or "position in line"; the probe costs < 2x on streamed generation; a 100k-character file scores in seconds.

Prints, in one process:

* the best unit per feature (by single-unit AUC, over every unit of h and c in every layer) on
  the validation slice of tinyshakespeare (its last 10%, as training splits it), with its score;
* streamed generation at batch 1 with and without the probe (``Generator.stream(probe=True)``),
  best of --repeats, interleaved so both see the same machine load, and their ratio;
* the time to trace, compute the features of and score a 100,000-character piece of that text.

    python benchmarks/neurons.py --checkpoint checkpoints/shakespeare10m [--html report.html]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import corpus  # noqa: E402

from chatrnn.infer import Generator  # noqa: E402
from chatrnn.neurons import score_units, text_features  # noqa: E402

BAR_FEATURES, BAR_AUC, BAR_RATIO = ("speaker line", "position in line"), 0.85, 2.0


def stream_rate(gen: Generator, n: int, probe: bool) -> float:
    t = time.perf_counter()
    k = sum(1 for _ in gen.stream("ROMEO:", length=n, temperature=0.8, rng_seed=0, probe=probe))
    return k / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="checkpoints/shakespeare10m")
    ap.add_argument("--chars", type=int, default=2000, help="characters per generation run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--score-chars", type=int, default=100_000)
    ap.add_argument("--html", default=None, help="also write the HTML report of the validation slice here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    text = corpus("tinyshakespeare.txt").read_text("utf-8")
    val = text[int(len(text) * 0.9) :]
    gen = Generator.load(args.checkpoint)
    cfg = gen.model.cfg
    print(f"checkpoint {args.checkpoint}: {cfg.cell} {cfg.layers} x {cfg.hidden}, skip={cfg.skip}")

    # 1. the units, on the whole validation slice
    t0 = time.perf_counter()
    trace = gen.trace(val, keep_gates=False)
    t1 = time.perf_counter()
    scores = score_units(trace, text_features(trace.text))
    t2 = time.perf_counter()
    print(f"\nvalidation slice: {len(trace):,} chars (trace {t1 - t0:.1f}s, features + scores {t2 - t1:.1f}s)")
    print(f"{'feature':<18} {'layer:unit':>10} {'state':>5} {'score':>7} {'auc':>6}  positives")
    best_bar = 0.0
    for fs in scores.features:
        if fs.skipped:
            print(f"{fs.feature.name:<18} {'-':>10} {'':>5} {'':>7} {'':>6}  {fs.skipped}")
            continue
        u = scores.top(fs, 1, by="auc")[0]
        print(
            f"{fs.feature.name:<18} {f'{u.layer}:{u.unit}':>10} {u.state:>5} {u.score:+7.3f} {u.auc:6.3f}"
            f"  {fs.positives:,}"
        )
        if fs.feature.name in BAR_FEATURES:
            best_bar = max(best_bar, u.auc)
    if args.html:
        from chatrnn import neurons_html

        neurons_html.write(args.html, trace, scores, title=f"chatrnn neurons: {Path(args.checkpoint).name}, validation")
        print(f"wrote {args.html}")
    del trace

    # 2. the probe's overhead on streamed generation
    plain, probed = 0.0, 0.0
    stream_rate(gen, 200, False), stream_rate(gen, 200, True)  # warm-up
    for _ in range(args.repeats):
        plain = max(plain, stream_rate(gen, args.chars, False))
        probed = max(probed, stream_rate(gen, args.chars, True))
    ratio = plain / probed
    print(f"\nstreamed generation: plain {plain:,.0f} chars/s, probed {probed:,.0f} chars/s, ratio {ratio:.2f}x")

    # 3. a 100k-character file, end to end (trace + features + scores), against the plain forward
    # pass over the same text (what ``chatrnn eval`` costs); CPU seconds too, as the machine is shared
    piece = (val * (1 + args.score_chars // max(1, len(val))))[: args.score_chars]
    ids = torch.tensor([gen.vocab.split_known(piece)[0]])
    c0 = time.process_time()
    with torch.inference_mode():
        gen.model(ids)
    w1, c1 = time.perf_counter(), time.process_time()
    tr = gen.trace(piece, keep_gates=False)
    w2, c2 = time.perf_counter(), time.process_time()
    score_units(tr, text_features(tr.text))
    w3, c3 = time.perf_counter(), time.process_time()
    print(
        f"{len(tr):,} chars: scored in {w3 - w1:.1f}s wall / {c3 - c1:.1f}s CPU "
        f"(trace {w2 - w1:.1f}s / {c2 - c1:.1f}s CPU, {(c2 - c1) / (c1 - c0):.1f}x the plain forward pass's "
        f"{c1 - c0:.1f}s CPU; features + scores {w3 - w2:.1f}s / {c3 - c2:.1f}s CPU)"
    )

    ok = best_bar >= BAR_AUC and ratio < BAR_RATIO
    print(
        f"\nbar: best AUC for {' / '.join(BAR_FEATURES)} {best_bar:.3f} (>= {BAR_AUC}),"
        f" overhead {ratio:.2f}x (< {BAR_RATIO})"
    )
    print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
