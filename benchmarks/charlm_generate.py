"""Bar: batch-1 generation from a 2 x 512 LSTM on CPU streams >= 1,200 characters/s.

Prints, in one process (best of --repeats, since the machine is shared): the ceiling (the step's
three matrix-vector products alone), ``nn.LSTM`` called once per character, ``nn.LSTMCell``, the
lean stepper, and ``Generator.stream`` end to end (sampling included), with ratios to the ceiling.

    python benchmarks/charlm_generate.py [--chars 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from chatrnn.charvocab import CharVocab
from chatrnn.infer import Generator
from chatrnn.models.charlm import CharLM, CharLMConfig
from chatrnn.models.fast import LeanStepper


def rate(fn, n: int, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        fn(n)
        best = max(best, n / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chars", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=512)
    args = ap.parse_args()
    torch.manual_seed(0)
    V, H = 65, args.hidden
    model = CharLM(CharLMConfig(vocab_size=V, layers=2, hidden=H, embed=64)).eval()
    vocab = CharVocab([chr(32 + i) for i in range(V)])
    torch.set_num_threads(1)

    w1, w2, w3 = torch.randn(4 * H, H), torch.randn(4 * H, 2 * H), torch.randn(V, H)
    v1, v2 = torch.randn(H), torch.randn(2 * H)

    def ceiling(n):
        for _ in range(n):
            torch.mv(w1, v1)
            torch.mv(w2, v2)
            torch.mv(w3, v1)

    def lstm_per_char(n):
        st = None
        with torch.inference_mode():
            x = torch.zeros(1, 1, dtype=torch.long)
            for _ in range(n):
                _, _, st = model(x, st)

    cells = [torch.nn.LSTMCell(64 if i == 0 else H, H) for i in range(2)]

    def lstmcell(n):
        hs = [(torch.zeros(1, H), torch.zeros(1, H)) for _ in cells]
        with torch.inference_mode():
            for _ in range(n):
                x = model.embedding.weight[:1]
                for i, c in enumerate(cells):
                    hs[i] = c(x, hs[i])
                    x = hs[i][0]
                model.head(x)

    lean = LeanStepper(model)

    def lean_steps(n):
        for i in range(n):
            lean.step(i % V)

    gen = Generator(model, vocab)

    def stream(n):
        for _ in gen.stream("hello", length=n, temperature=0.8, rng_seed=0):
            pass

    def stream_topp(n):
        for _ in gen.stream("hello", length=n, temperature=0.8, top_k=20, top_p=0.9, rng_seed=0):
            pass

    results = {}
    for name, fn in [
        ("ceiling (3 matvecs)", ceiling),
        ("nn.LSTM per char", lstm_per_char),
        ("nn.LSTMCell", lstmcell),
        ("LeanStepper.step", lean_steps),
        ("Generator.stream", stream),
        ("stream top-k/top-p", stream_topp),
    ]:
        results[name] = rate(fn, args.chars, args.repeats)
    ceil = results["ceiling (3 matvecs)"]
    print(f"2 x {H} LSTM, vocab {V}, batch 1, CPU, {args.chars} chars, best of {args.repeats}")
    for name, r in results.items():
        print(f"  {name:<22} {r:8,.0f} chars/s   {r / ceil:5.2f}x ceiling")
    ok = results["Generator.stream"] >= 1200
    print(f"bar: Generator.stream >= 1,200 chars/s: {'PASS' if ok else 'FAIL'} ({results['Generator.stream']:,.0f})")


if __name__ == "__main__":
    main()
