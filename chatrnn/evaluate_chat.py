"""Scoring a chat checkpoint on a file of dialog pairs: the figures ``chatrnn eval`` prints for it."""

from __future__ import annotations

from pathlib import Path

from chatrnn.corpus.dialogs import Pair, load_pairs
from chatrnn.decoding import ReplySettings
from chatrnn.device import pick_device
from chatrnn.errors import ChatrnnError
from chatrnn.infer_chat import Responder
from chatrnn.train.chat_task import Example, score_examples

DECODE_LIMIT = 2000  # greedy replies decoded for distinct-n (the first N pairs): ~20 ms each


def pair_examples(responder: Responder, pairs: list[Pair]) -> list[Example]:
    """Pairs as the model sees them: context + prompt cut from the left to the encoder's length;
    the reply kept whole (the decoder has no length limit when scoring)."""
    tok, max_src = responder.tok, responder.model.cfg.max_src_len
    out = []
    for p in pairs:
        src = tok.encode_context([*p.context, p.prompt], max_src) or [tok.SEP]
        tgt = tok.encode(p.reply)
        if tgt:
            out.append(Example(src, tgt, len(tok.normalize(p.reply)) + 1))
    return out


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over whitespace-separated words of all ``texts`` (Li et al., 2016)."""
    total, seen = 0, set()
    for t in texts:
        words = t.split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def evaluate_chat_file(
    checkpoint: str | Path | None,
    file: str | Path,
    fmt: str | None = None,
    encoding: str | None = None,
    device: str | None = None,
    settings: ReplySettings | None = None,
    decode_limit: int = DECODE_LIMIT,
) -> dict:
    """Loss (nats/token), perplexity and bits per character of the reference replies (teacher
    forced), and distinct-1/distinct-2 of the model's greedy replies (no-repeat-ngram 3)."""
    dev = pick_device(device)
    responder = Responder.load(checkpoint, device=dev)
    if encoding in ("", "utf-8"):
        encoding = None  # the dialog readers' default (UTF-8, BOM tolerated)
    pairs, report = load_pairs([Path(file)], fmt=fmt, encoding=encoding, context_turns=responder.context_turns)
    examples = pair_examples(responder, pairs)
    if not examples:
        raise ChatrnnError(f"{file} has no pairs with a reply to score")
    m = score_examples(responder.model, examples, dev)
    settings = settings or ReplySettings()
    replies = [responder.reply(p.prompt, history=p.context, settings=settings).text for p in pairs[:decode_limit]]
    m.update(
        {
            "pairs": len(examples),
            "distinct_1": distinct_n(replies, 1),
            "distinct_2": distinct_n(replies, 2),
            "decoded": len(replies),
            "checkpoint": str(responder.folder),
            "read": report.read,
            "dropped": sum(report.dropped.values()),
        }
    )
    return m
