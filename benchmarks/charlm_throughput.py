"""Bar: chatrnn's training loop within 10% of a bare ``nn.LSTM`` forward/backward/step loop.

Both run in this process on the same shapes (default preset on Tiny Shakespeare), alternating
``--rounds`` times; the best round of each is compared, since the machine is shared and noisy.
Two comparisons: both on one thread (the loop's own overhead: batching, clipping, bookkeeping),
and both as they run by default on all cores (chatrnn shards the batch over per-core threads; the
bare loop leaves it to PyTorch's intra-op threads).

    python benchmarks/charlm_throughput.py [--steps 30] [--rounds 3] [--preset cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import corpus, temp_home

from chatrnn.config import CHARLM_PRESETS
from chatrnn.train.charlm import CharLMOptions, train_charlm


def ours(path: str, preset: str, steps: int, warm: int, home) -> float:
    marks: dict[int, float] = {}

    def stop_check(step: int) -> bool:
        marks[step] = time.perf_counter()
        return step >= warm + steps

    out = home / f"ours-{time.monotonic_ns()}"
    train_charlm(
        CharLMOptions(out=out, corpus=[path], preset=preset, device="cpu", train=dict(max_steps=10**9, evals=1)),
        stop_check=stop_check,
    )
    p = CHARLM_PRESETS[preset]
    return steps * p["batch_size"] * p["seq_len"] / (marks[warm + steps] - marks[warm])


def bare(data: torch.Tensor, preset: str, steps: int, warm: int, vocab: int) -> float:
    p = CHARLM_PRESETS[preset]
    B, T = p["batch_size"], p["seq_len"]
    torch.manual_seed(0)
    H, L, skip = p["hidden"], p["layers"], p.get("skip", False)
    emb = torch.nn.Embedding(vocab, p["embed"])
    # The same network, written the plain way, built as CharLM builds it: one single-layer nn.LSTM
    # per layer; with skip connections, a head over their concatenated outputs.
    lstms = [torch.nn.LSTM(p["embed"] if i == 0 else H, H, batch_first=True) for i in range(L)]
    head = torch.nn.Linear(H * L if skip else H, vocab)
    params = [*emb.parameters(), *head.parameters(), *(q for m in lstms for q in m.parameters())]
    opt = torch.optim.AdamW(params, lr=1e-3)
    states = [None] * len(lstms)
    t0 = 0.0
    for i in range(warm + steps):
        if i == warm:
            t0 = time.perf_counter()
        idx = torch.randint(0, len(data) - T - 1, (B,))
        w = torch.stack([data[j : j + T + 1] for j in idx.tolist()]).long()
        x, outs = emb(w[:, :-1]), []
        for k, lstm in enumerate(lstms):
            x, st = lstm(x, states[k])
            states[k] = tuple(s.detach() for s in st)
            outs.append(x)
        out = torch.cat(outs, dim=-1) if skip else x
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, vocab), w[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        float(loss.detach())
    return steps * B * T / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--preset", default="cpu")
    args = ap.parse_args()
    path = corpus("tinyshakespeare.txt")
    home = temp_home()
    text = path.read_text("utf-8")
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text[:200_000]], dtype=torch.uint8)
    import os

    p = CHARLM_PRESETS[args.preset]
    cores = torch.get_num_threads()
    print(
        f"preset {args.preset}: {p['layers']}x{p['hidden']} "
        f"LSTM{' with skip connections' if p.get('skip') else ''}, batch {p['batch_size']} x {p['seq_len']}, "
        f"{args.steps} steps x {args.rounds} rounds"
    )
    ratios = {}
    for label, threads in (("1 thread each", 1), (f"default, {cores} cores", cores)):
        r_ours, r_bare = [], []
        for _ in range(args.rounds):
            os.environ["CHATRNN_THREADS"] = str(threads)
            torch.set_num_threads(threads)
            r_ours.append(ours(str(path), args.preset, args.steps, args.warmup, home))
            torch.set_num_threads(threads)
            r_bare.append(bare(data, args.preset, args.steps, args.warmup, len(chars)))
        best_ours, best_bare = max(r_ours), max(r_bare)
        ratios[label] = best_ours / best_bare
        print(f"{label}:")
        print(f"  bare nn.LSTM loop  {best_bare:10,.0f} chars/s  (rounds: {', '.join(f'{r:,.0f}' for r in r_bare)})")
        print(f"  chatrnn trainer    {best_ours:10,.0f} chars/s  (rounds: {', '.join(f'{r:,.0f}' for r in r_ours)})")
        print(f"  ratio chatrnn / bare = {ratios[label]:.3f}")
    worst = min(ratios.values())
    print(
        f"bar: within 10% of the bare loop (ratio >= 0.90) in both: {'PASS' if worst >= 0.9 else 'FAIL'} ({worst:.3f})"
    )


if __name__ == "__main__":
    main()
