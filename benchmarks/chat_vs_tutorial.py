"""chatrnn's chat model side by side with the PyTorch chatbot tutorial, on Tiny Shakespeare speaker turns.

    python benchmarks/chat_vs_tutorial.py --tutorial ~/chatbot_tutorial.py            # 10 min each
    python benchmarks/chat_vs_tutorial.py --tutorial ~/chatbot_tutorial.py --max-time 2m
    python benchmarks/chat_vs_tutorial.py                                              # chatrnn side only

The tutorial is ``beginner_source/chatbot_tutorial.py`` of https://github.com/pytorch/tutorials (the
chatbot tutorial by Matthew Inkawhich; BSD-3-Clause). Its code is never part of this repository:
fetch the file yourself (e.g. ``curl -LO https://raw.githubusercontent.com/pytorch/tutorials/main/
beginner_source/chatbot_tutorial.py``) and pass its path. The benchmark reads that file with ``ast``
and executes only its definitions (imports, functions, classes, and module-level assignments of
plain constants such as ``hidden_size = 500``), in a namespace of its own, with ``device`` set to
the CPU. Everything else at its top level (reading the Cornell corpus, building the vocabulary,
the training call) is skipped: that is "its data loading replaced". What runs is its own code,
unmodified: ``normalizeString``, ``Voc`` + ``trimRareWords(MIN_COUNT)``, ``filterPairs``
(``MAX_LENGTH``), ``batch2TrainData``, ``EncoderRNN``, ``LuongAttnDecoderRNN`` with its
``attn_model``, ``hidden_size``, layers and dropout, and its ``train`` step (Adam at its
``learning_rate`` and ``decoder_learning_ratio``, ``clip``, ``teacher_forcing_ratio``), driven like its
``trainIters`` (batches of ``random.choice(pairs)``) until the wall-clock budget is spent.

Data: Tiny Shakespeare's speeches (a ``NAME:`` line, then the speech, blocks separated by a blank
line), each speech paired with the next one: (speech, next speech). Every 10th pair (index % 10 == 9)
is validation, the rest training, the same split for both. Speeches are long (the tutorial's
``MAX_LENGTH`` of 10 words would keep a few hundred pairs), so only pairs whose two speeches have at
most ``--max-words`` (20) words are used, by both sides, and the tutorial's ``MAX_LENGTH`` is set to
that + 1 (the one constant of its own changed, so its ``filterPair`` keeps the same pairs). The
tutorial then drops training pairs with a word seen fewer than ``MIN_COUNT`` times (its
``trimRareWords``); chatrnn keeps them all (``--max-len`` 64 tokens: nothing dropped). Both are scored
on the same validation pairs: those the tutorial can score at all (every word in its vocabulary: it
has no unknown-word token); chatrnn also on every validation pair.

Figures, for each side, on the common validation pairs:

* bits per character of the replies: the total reply NLL (its end token included) in bits over the
  reply's characters + 1 (chatrnn's normalised text, + 1 for the end, as ``score_examples`` counts);
  comparable across word and subword vocabularies. The tutorial's words are lowercased ASCII with
  punctuation other than ``.!?`` removed, so its target is easier than the exact text chatrnn
  predicts: its figure is, if anything, flattering to it;
* the shuffled-prompt ratio: reply NLL with each prompt swapped for another validation prompt (one
  fixed permutation) over the NLL with the true prompts (how much the model uses the prompt);
* steps, pairs/s, and five greedy replies.

Bars (issue 14): chatrnn's bpc <= 0.85x the tutorial's, and chatrnn's ratio above the tutorial's.
``--threads`` (default 1) sets torch's threads for both. Skips (exit 0) when the corpus is absent.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED  # noqa: E402

LN2 = math.log(2)
TUTORIAL_NAMES = (  # what the benchmark uses from the tutorial's namespace
    "Voc",
    "normalizeString",
    "filterPairs",
    "trimRareWords",
    "batch2TrainData",
    "EncoderRNN",
    "LuongAttnDecoderRNN",
    "train",
)


# ----- data ------------------------------------------------------------------------------------
def speeches(text: str) -> list[str]:
    """Tiny Shakespeare's speeches in order: blocks after a ``NAME:`` line, lines joined by spaces."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [x.strip() for x in block.strip().split("\n")]
        if len(lines) >= 2 and lines[0].endswith(":"):
            speech = " ".join(x for x in lines[1:] if x)
            if speech:
                out.append(speech)
    return out


def split_pairs(turns: list[str], max_words: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    pairs = [(q, a) for q, a in zip(turns, turns[1:]) if len(q.split()) <= max_words and len(a.split()) <= max_words]
    return [p for i, p in enumerate(pairs) if i % 10 != 9], [p for i, p in enumerate(pairs) if i % 10 == 9]


def write_csv(path: Path, pairs: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Q", "A"])
        w.writerows(pairs)
    return path


# ----- the tutorial's code, loaded from the user's copy ------------------------------------------
def load_tutorial(path: Path, device) -> dict:
    """Execute the definitions of the tutorial file (see the module docstring) and return its namespace."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    keep = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            keep.append(node)
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            try:
                ast.literal_eval(node.value)
            except ValueError:
                continue  # computed at top level (paths, the corpus, models): the part replaced
            keep.append(node)
    ns: dict = {"__name__": "chatbot_tutorial"}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), ns)  # noqa: S102
    ns["device"] = device
    missing = [n for n in TUTORIAL_NAMES if n not in ns]
    if missing:
        raise SystemExit(f"{path} does not define {', '.join(missing)}: is it beginner_source/chatbot_tutorial.py?")
    return ns


class Tutorial:
    """The tutorial's model, vocabulary and training step on our pairs."""

    def __init__(self, ns: dict, train_pairs: list[tuple[str, str]], seed: int):
        import torch

        self.ns, self.torch = ns, torch
        random.seed(seed)
        torch.manual_seed(seed)
        norm = ns["normalizeString"]
        pairs = ns["filterPairs"]([[norm(q), norm(a)] for q, a in train_pairs])
        self.voc = ns["Voc"]("tinyshakespeare")
        for q, a in pairs:
            self.voc.addSentence(q)
            self.voc.addSentence(a)
        self.pairs = ns["trimRareWords"](self.voc, pairs, ns.get("MIN_COUNT", 3))
        h = ns.get("hidden_size", 500)
        self.embedding = torch.nn.Embedding(self.voc.num_words, h)
        self.encoder = ns["EncoderRNN"](h, self.embedding, ns.get("encoder_n_layers", 2), ns.get("dropout", 0.1))
        self.decoder = ns["LuongAttnDecoderRNN"](
            ns.get("attn_model", "dot"),
            self.embedding,
            h,
            self.voc.num_words,
            ns.get("decoder_n_layers", 2),
            ns.get("dropout", 0.1),
        )
        lr = ns.get("learning_rate", 1e-4)
        self.enc_opt = torch.optim.Adam(self.encoder.parameters(), lr=lr)
        self.dec_opt = torch.optim.Adam(self.decoder.parameters(), lr=lr * ns.get("decoder_learning_ratio", 5.0))
        self.batch_size = ns.get("batch_size", 64)
        ns.setdefault("teacher_forcing_ratio", 1.0)

    def usable(self, q: str, a: str) -> tuple[str, str] | None:
        """The pair as the tutorial sees it, or None when its filter would drop it (too long, unknown words)."""
        norm = self.ns["normalizeString"]
        q, a = norm(q), norm(a)
        if not q or not a or not self.ns["filterPairs"]([[q, a]]):
            return None
        if any(w not in self.voc.word2index for w in (q + " " + a).split(" ")):
            return None
        return q, a

    def fit(self, budget_s: float, max_steps: int | None) -> tuple[int, float]:
        self.encoder.train()
        self.decoder.train()
        steps, t0 = 0, time.perf_counter()
        while (max_steps is None or steps < max_steps) and time.perf_counter() - t0 < budget_s:
            batch = self.ns["batch2TrainData"](
                self.voc, [list(random.choice(self.pairs)) for _ in range(self.batch_size)]
            )
            inp, lengths, target, mask, max_target_len = batch
            self.ns["train"](
                inp,
                lengths,
                target,
                mask,
                max_target_len,
                self.encoder,
                self.decoder,
                self.embedding,
                self.enc_opt,
                self.dec_opt,
                self.batch_size,
                self.ns.get("clip", 50.0),
            )
            steps += 1
        return steps, time.perf_counter() - t0

    def nll(self, pairs: list[tuple[str, str]], batch: int = 128) -> tuple[float, int]:
        """Total teacher-forced NLL (nats) of the replies, end token included, and the tokens scored."""
        torch = self.torch
        self.encoder.eval()
        self.decoder.eval()
        total, tokens = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(pairs), batch):
                inp, lengths, target, mask, T = self.ns["batch2TrainData"](
                    self.voc, [list(p) for p in pairs[i : i + batch]]
                )
                enc_out, enc_hidden = self.encoder(inp, lengths)
                hidden = enc_hidden[: self.decoder.n_layers]
                step = torch.full((1, inp.size(1)), self.ns["SOS_token"], dtype=torch.long)
                for t in range(T):
                    probs, hidden = self.decoder(step, hidden, enc_out)
                    p = probs.gather(1, target[t].view(-1, 1)).squeeze(1)
                    total += float(-torch.log(p.clamp_min(1e-30)).masked_select(mask[t]).sum())
                    tokens += int(mask[t].sum())
                    step = target[t].view(1, -1)
        return total, tokens

    def greedy(self, q: str, max_len: int = 20) -> str:
        torch = self.torch
        ids = [self.voc.word2index[w] for w in q.split(" ")] + [self.ns["EOS_token"]]
        with torch.no_grad():
            enc_out, enc_hidden = self.encoder(torch.tensor([ids]).t(), torch.tensor([len(ids)]))
            hidden = enc_hidden[: self.decoder.n_layers]
            step, words = torch.full((1, 1), self.ns["SOS_token"], dtype=torch.long), []
            for _ in range(max_len):
                probs, hidden = self.decoder(step, hidden, enc_out)
                nxt = int(probs.argmax(1))
                if nxt == self.ns["EOS_token"]:
                    break
                words.append(self.voc.index2word[nxt])
                step = torch.full((1, 1), nxt, dtype=torch.long)
        return " ".join(words)


# ----- the benchmark -----------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tutorial", type=Path, default=None, help="your copy of beginner_source/chatbot_tutorial.py")
    ap.add_argument("--corpus", type=Path, default=SHARED / "tinyshakespeare.txt")
    ap.add_argument("--max-time", default="10m", help="training budget of each side")
    ap.add_argument("--max-steps", type=int, default=None, help="also stop each side after this many steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--max-words", type=int, default=20, help="keep pairs whose two speeches have at most this many words"
    )
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a chatrnn setting, e.g. --set vocab_size=4000"
    )
    ap.add_argument("--work", type=Path, default=None, help="folder for the splits and the checkpoint")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if not args.corpus.is_file():
        print(f"skipped: {args.corpus} not found (the shared corpora sit beside the checkout)")
        return 0
    if args.tutorial is not None and not args.tutorial.is_file():
        raise SystemExit(f"--tutorial {args.tutorial}: no such file")

    import os

    import torch

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="chatrnn-vs-tutorial-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CHATRNN_CACHE", str(work / "cache"))

    from chatrnn.corpus.dialogs import Pair
    from chatrnn.decoding import ReplySettings
    from chatrnn.evaluate_chat import pair_examples
    from chatrnn.infer_chat import Responder
    from chatrnn.train.chat import ChatOptions, train_chat
    from chatrnn.train.chat_task import score_examples
    from chatrnn.train.progress import Reporter
    from chatrnn.units import parse_duration

    budget = parse_duration(args.max_time)
    train_pairs, val_pairs = split_pairs(speeches(args.corpus.read_text("utf-8")), args.max_words)
    print(f"{args.corpus}: {len(train_pairs)} train / {len(val_pairs)} val (speech, next speech) pairs")
    print(f"budget {budget:.0f}s per side{f', at most {args.max_steps} steps' if args.max_steps else ''}")

    tutorial = None
    if args.tutorial is not None:
        ns = load_tutorial(args.tutorial, torch.device("cpu"))
        ns["MAX_LENGTH"] = args.max_words + 1  # its filterPair keeps < MAX_LENGTH words: the same pairs as ours
        tutorial = Tutorial(ns, train_pairs, args.seed)
        print(f"tutorial: {len(tutorial.pairs)} training pairs after its filters, {tutorial.voc.num_words} words")
    common = [i for i, (q, a) in enumerate(val_pairs) if tutorial is None or tutorial.usable(q, a)]
    print(f"validation pairs scored by both: {len(common)} of {len(val_pairs)}")
    perm = torch.randperm(len(common), generator=torch.Generator().manual_seed(0)).tolist()

    # ---- chatrnn ----------------------------------------------------------------------------------
    chat_dir = work / "chat"
    from chat_chatbotdata import settings_from

    chosen = settings_from(args.set)
    train = dict(max_time=budget, seed=args.seed, threads=args.threads, **chosen["train"])
    if args.max_steps:
        train["max_steps"] = args.max_steps
    opts = ChatOptions(
        out=chat_dir,
        corpus=[str(write_csv(work / "train.csv", train_pairs))],
        val_file=str(write_csv(work / "val.csv", val_pairs)),
        device="cpu",
        train=train,
        overwrite=True,
        model=chosen["model"],
        **{"max_len": 64, **chosen["options"]},
    )
    r = train_chat(opts, reporter=Reporter(every_s=60))
    resp = Responder.load(chat_dir)
    dev = torch.device("cpu")
    cfg = json.loads((chat_dir / "config.json").read_text("utf-8"))
    figures: dict = {"chatrnn": {"steps": r.steps, "train_s": r.elapsed, "model": cfg["model"]}}
    for name, idx in (("common", common), ("all", list(range(len(val_pairs))))):
        pairs = [Pair([], val_pairs[i][0], val_pairs[i][1]) for i in idx]
        ex = pair_examples(resp, pairs)
        true = score_examples(resp.model, ex, dev)
        order = torch.randperm(len(ex), generator=torch.Generator().manual_seed(0)).tolist()  # = perm on "common"
        shuffled = score_examples(resp.model, ex, dev, prompts=[ex[j].src for j in order])
        figures["chatrnn"][name] = {"bpc": true["bpc"], "ratio": shuffled["loss"] / true["loss"], "pairs": len(ex)}
    samples = [val_pairs[i] for i in common[:5]]
    figures["chatrnn"]["replies"] = [resp.reply(q, settings=ReplySettings()).text for q, _ in samples]
    chars = [len(resp.tok.normalize(val_pairs[i][1])) + 1 for i in common]

    # ---- the tutorial -------------------------------------------------------------------------------
    if tutorial is not None:
        steps, elapsed = tutorial.fit(budget, args.max_steps)
        seen = [tutorial.usable(*val_pairs[i]) for i in common]
        true_nll, n = tutorial.nll(seen)
        shuf_nll, n2 = tutorial.nll([(seen[j][0], seen[k][1]) for k, j in enumerate(perm)])
        figures["tutorial"] = {
            "steps": steps,
            "train_s": elapsed,
            "bpc": true_nll / LN2 / sum(chars),
            "ratio": (shuf_nll / n2) / (true_nll / n),
            "pairs": len(seen),
            "replies": [tutorial.greedy(tutorial.usable(q, a)[0]) for q, a in samples],
        }

    # ---- report -------------------------------------------------------------------------------------
    c = figures["chatrnn"]
    print()
    print(f"{'':28}{'chatrnn':>12}{'tutorial':>12}")
    t = figures.get("tutorial")
    rows = (
        ("steps", str(c["steps"]), str(t["steps"]) if t else "-"),
        ("train seconds", f"{c['train_s']:.0f}", f"{t['train_s']:.0f}" if t else "-"),
        ("reply bits/char (common)", f"{c['common']['bpc']:.4f}", f"{t['bpc']:.4f}" if t else "-"),
        ("shuffled-prompt ratio", f"{c['common']['ratio']:.3f}", f"{t['ratio']:.3f}" if t else "-"),
    )
    for label, ours, theirs in rows:
        print(f"{label:28}{ours:>12}{theirs:>12}")
    print(f"chatrnn on all {c['all']['pairs']} val pairs: bpc {c['all']['bpc']:.4f}, ratio {c['all']['ratio']:.3f}")
    if t:
        rel = c["common"]["bpc"] / t["bpc"]
        print(f"bpc chatrnn / tutorial: {rel:.3f}   bar <= 0.85: {'PASS' if rel <= 0.85 else 'FAIL'}")
        better = c["common"]["ratio"] > t["ratio"]
        print(f"ratio chatrnn > tutorial: {'PASS' if better else 'FAIL'}")
    else:
        print("tutorial side skipped: pass --tutorial PATH (see this file's docstring)")
    print("greedy replies to held-out prompts:")
    for k, (q, a) in enumerate(samples):
        print(f"  {q[:70]}\n    chatrnn:  {c['replies'][k][:90]}")
        if t:
            print(f"    tutorial: {t['replies'][k][:90]}")
        print(f"    (ref:     {a[:90]})")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1, default=str), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
