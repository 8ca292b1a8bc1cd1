"""Benchmark of the seq2seq chatbot on ChatbotData (Korean Q/A pairs): every figure of issue 3's bars.

    python benchmarks/chat_chatbotdata.py                  # 10 minutes of chat training + 10 of char LM
    python benchmarks/chat_chatbotdata.py --max-time 2m    # a quick look

Split: rows in file order, every 10th row (index % 10 == 9) is validation. Both models train for the
same wall-clock budget with their default (cpu) presets; figures printed:

* prompt use: validation reply NLL with each prompt swapped for another validation prompt (a fixed
  random permutation) over the NLL with the true prompts (bar: >= 1.3);
* bits per character of the validation replies, chat model vs a char LM trained on the training
  replies alone (one reply a line; both count one end-of-reply character per reply; bar: chat lower);
* training throughput (reply tokens/s) and reply latency, greedy and beam 5, median over 100
  validation prompts (bar: greedy < 30 ms);
* distinct-1/2 of greedy validation replies with no-repeat-ngram 3 (bar: distinct-2 >= 0.3).

The CPU may be shared: timings are noisy. ``--threads`` (default 1) sets torch's intra-op threads;
on a busy 2-core machine one thread per process is faster than two fighting for the cores.
Skips (exit 0) with a message when the corpus is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora" / "ChatbotData.csv"


def split_rows(corpus: Path, folder: Path) -> tuple[Path, Path]:
    with open(corpus, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    paths = []
    for name, keep in (("train", lambda i: i % 10 != 9), ("val", lambda i: i % 10 == 9)):
        p = folder / f"{name}.csv"
        with open(p, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(r for i, r in enumerate(rows) if keep(i))
        paths.append(p)
    return paths[0], paths[1]


def median_ms(fn, prompts) -> float:
    fn(prompts[0])  # warm up
    times = []
    for p in prompts:
        t = time.perf_counter()
        fn(p)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def settings_from(pairs: list[str]) -> dict[str, dict]:
    """``--set KEY=VALUE`` pairs sorted into ChatOptions' model / top-level / train layers (values as JSON
    when they parse, else strings)."""
    from dataclasses import fields

    from chatrnn.train.chat import MODEL_KEYS, ChatOptions

    top = {f.name for f in fields(ChatOptions)} - {"model", "train", "out"}
    out: dict[str, dict] = {"model": {}, "options": {}, "train": {}}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out["model" if key in MODEL_KEYS else "options" if key in top else "train"][key] = value
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--max-time", default="10m", help="training budget of each model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="folder for splits and checkpoints (default: a temp dir)")
    ap.add_argument("--chat-checkpoint", type=Path, default=None, help="skip chat training, measure this checkpoint")
    ap.add_argument(
        "--charlm-checkpoint", type=Path, default=None, help="skip char LM training, measure this checkpoint"
    )
    ap.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="train the chat model for exactly this many steps (one shard per thread: the figures do not "
        "depend on the machine's load, only the wall time does); --max-time is then ignored",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a chat training setting (model, chat or TrainConfig field, e.g. word_dropout=0.25), repeatable",
    )
    ap.add_argument("--skip-charlm", action="store_true", help="chat figures only")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if not args.corpus.is_file():
        print(f"skipped: {args.corpus} not found (the shared corpora sit beside the checkout)")
        return 0

    import os

    import torch

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="chatrnn-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CHATRNN_CACHE", str(work / "cache"))

    from chatrnn.corpus.dialogs import load_pairs, normalize_text
    from chatrnn.corpus.text import TextSource
    from chatrnn.decoding import ReplySettings
    from chatrnn.evaluate import evaluate_charlm_file
    from chatrnn.evaluate_chat import distinct_n, pair_examples
    from chatrnn.infer_chat import Responder
    from chatrnn.train.charlm import CharLMOptions, train_charlm
    from chatrnn.train.chat import ChatOptions, train_chat
    from chatrnn.train.chat_task import score_examples
    from chatrnn.train.progress import Reporter
    from chatrnn.units import parse_duration

    budget = parse_duration(args.max_time)
    train_csv, val_csv = split_rows(args.corpus, work)
    print(f"corpus {args.corpus}; work folder {work}; budget {budget:.0f}s per model; torch threads {args.threads}")

    # ---- chat model ------------------------------------------------------------------------
    chat_dir = args.chat_checkpoint or work / "chat"
    if args.chat_checkpoint is None:
        extra = settings_from(args.set)
        train = (
            dict(max_time=budget) if args.max_steps is None else dict(max_steps=args.max_steps, threads=args.threads)
        )
        opts = ChatOptions(
            out=chat_dir,
            corpus=[str(train_csv)],
            val_file=str(val_csv),
            device="cpu",
            model=extra["model"],
            train={**train, **extra["train"]},
            overwrite=True,  # a rerun with the same --work folder trains a new model
            **extra["options"],
        )
        r = train_chat(opts, reporter=Reporter(every_s=60))
        print(f"chat: {r.steps} steps in {r.elapsed:.0f}s, best val loss {r.best_val_loss:.4f}")
    cfg = json.loads((chat_dir / "config.json").read_text("utf-8"))
    t = cfg["training"]
    tokens_per_s = t["tokens"] / max(t["train_time_s"], 1e-9)

    # ---- char LM on the training replies alone ---------------------------------------------
    train_pairs, _ = load_pairs([train_csv])
    val_pairs, _ = load_pairs([val_csv])
    train_text = "".join(normalize_text(p.reply) + "\n" for p in train_pairs)
    val_file = work / "val_replies.txt"
    val_file.write_text("".join(normalize_text(p.reply) + "\n" for p in val_pairs), "utf-8")
    char_dir = args.charlm_checkpoint or work / "charlm"
    if args.charlm_checkpoint is None and not args.skip_charlm:
        copts = CharLMOptions(
            out=char_dir,
            sources=[TextSource("ChatbotData training replies", text=train_text)],
            val_file=str(val_file),
            device="cpu",
            train=dict(max_time=budget),
            overwrite=True,
        )
        cr = train_charlm(copts, reporter=Reporter(every_s=60))
        print(f"char LM: {cr.steps} steps in {cr.elapsed:.0f}s")
    char_m = {"bpc": float("nan")} if args.skip_charlm else evaluate_charlm_file(char_dir, val_file, device="cpu")

    # ---- chat figures ----------------------------------------------------------------------
    resp = Responder.load(chat_dir)
    dev = torch.device("cpu")
    examples = pair_examples(resp, val_pairs)
    true = score_examples(resp.model, examples, dev)
    perm = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0)).tolist()
    shuffled = score_examples(resp.model, examples, dev, prompts=[examples[j].src for j in perm])
    ratio = shuffled["loss"] / true["loss"]

    greedy = ReplySettings()  # no-repeat-ngram 3 by default
    replies = [resp.reply(p.prompt, settings=greedy).text for p in val_pairs]
    d1, d2 = distinct_n(replies, 1), distinct_n(replies, 2)
    prompts = [p.prompt for p in val_pairs[:100]]
    greedy_ms = median_ms(lambda q: resp.reply(q, settings=greedy), prompts)
    beam_ms = median_ms(
        lambda q: resp.reply(q, settings=ReplySettings(beam=5)), prompts[: 20 if args.skip_charlm else 100]
    )

    print()
    print(
        f"chat model: {cfg['training']['steps']} steps, {cfg['training']['epochs']} epochs, "
        f"{cfg['model']['layers']}x{cfg['model']['hidden']} GRU, vocab {cfg['model']['vocab_size']}"
    )
    print(f"validation pairs scored: {len(examples)}")
    print(f"val reply NLL, true prompts:     {true['loss']:.4f} nats/token")
    print(f"val reply NLL, shuffled prompts: {shuffled['loss']:.4f} nats/token")
    print(f"prompt-use ratio (shuffled/true): {ratio:.3f}   bar >= 1.3: {'PASS' if ratio >= 1.3 else 'FAIL'}")
    # the ratio falls when the model learns replies better (it divides by the true-prompt loss); the
    # difference is what the prompt is worth, in nats per reply token (docs/presets.md)
    print(f"prompt-use gap (shuffled - true): {shuffled['loss'] - true['loss']:.4f} nats/token")
    print(f"val reply bits/char, chat model: {true['bpc']:.4f}")
    print(
        f"val reply bits/char, char LM:    {char_m['bpc']:.4f} ({char_m.get('unknown_chars', 0)} unknown chars dropped)"
        f"   bar chat < char LM: {'PASS' if true['bpc'] < char_m['bpc'] else 'FAIL'}"
    )
    print(
        f"training throughput: {tokens_per_s:,.0f} reply tokens/s "
        f"({t['tokens']:,} tokens in {t['train_time_s']:.0f}s, evals included)"
    )
    print(
        f"reply latency, median of 100: greedy {greedy_ms:.1f} ms, beam 5 {beam_ms:.1f} ms   "
        f"bar greedy < 30 ms: {'PASS' if greedy_ms < 30 else 'FAIL'}"
    )
    print(
        f"distinct-1 {d1:.3f}, distinct-2 {d2:.3f} of {len(replies)} greedy val replies (no-repeat-ngram 3)   "
        f"bar distinct-2 >= 0.3: {'PASS' if d2 >= 0.3 else 'FAIL'}"
    )
    print("sample replies:")
    for p, rep in list(zip(val_pairs, replies))[:8]:
        print(f"  {p.prompt} -> {rep}   (ref: {p.reply})")
    if args.json is not None:
        figures = {
            "settings": args.set,
            "steps": t["steps"],
            "train_time_s": t["train_time_s"],
            "tokens_per_s": tokens_per_s,
            "val_loss": true["loss"],
            "shuffled_loss": shuffled["loss"],
            "ratio": ratio,
            "gap": shuffled["loss"] - true["loss"],
            "bpc": true["bpc"],
            "distinct_1": d1,
            "distinct_2": d2,
            "greedy_ms": greedy_ms,
            "replies": [[p.prompt, rep, p.reply] for p, rep in zip(val_pairs, replies)][:40],
        }
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=1), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
