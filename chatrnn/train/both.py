"""``chatrnn train`` with no subcommand: both models on one corpus within one time budget."""

from __future__ import annotations

import time
from pathlib import Path

from chatrnn.checkpoint import checkpoints_root
from chatrnn.train.progress import Reporter

CHARLM_SHARE = 0.35  # the chat model needs more of the budget to learn to answer
SETUP_RESERVE = 0.05  # of the budget, for reading the corpus, training the tokenizer, final saves


def dialog_text_sources(corpus: list[str], lang: str):
    """The dialog corpus flattened to text (one turn a line, a blank line between conversations),
    so the char LM learns from exactly the dialogs the chatbot trains on."""
    from chatrnn.corpus.dialogs import bundled_conversations, conversations_to_text, read_conversations
    from chatrnn.corpus.text import TextSource

    if not corpus:
        return [TextSource(f"chatterbot-corpus:{lang}", text=conversations_to_text(bundled_conversations(lang)))]
    convs = [c for p in corpus for c in read_conversations(Path(p))]
    return [TextSource("dialogs:" + ", ".join(corpus), text=conversations_to_text(convs))]


def train_both(
    corpus: list[str],
    lang: str = "english",
    max_time: float = 300.0,
    device: str | None = None,
    seed: int = 1337,
    reporter: Reporter | None = None,
    dist=None,
    dry_run: bool = False,
    overwrite: bool = False,
):
    """Char LM on the corpus's text, then the chatbot on its dialogs; returns both results (the
    chat model's None when a signal stopped the char LM: the command then ends there).

    A corpus given here must be a dialog file or folder (CSV, TSV, JSONL, YAML, Cornell,
    transcript): the chatbot reads its pairs, the char LM its turns as flattened text. The chat
    model gets whatever the char LM left of the budget, minus a small reserve for its setup, so the
    whole command ends within ``max_time``. Existing checkpoints are replaced only with
    ``overwrite``; both folders are checked before either model trains.
    """
    from chatrnn.train.charlm import CharLMOptions, train_charlm
    from chatrnn.train.chat import ChatOptions, train_chat
    from chatrnn.train.summary import summarize

    t0 = time.monotonic()
    reporter = reporter or Reporter()
    root = checkpoints_root()
    usable = max_time * (1 - SETUP_RESERVE)
    if not dry_run:  # before the char LM spends its budget: the chat model's folder too
        from chatrnn.train.output import check_output, on_main

        def check() -> None:
            for kind in ("charlm", "chat"):
                check_output(root / kind, resume=False, overwrite=overwrite, hint="add --overwrite to replace it")

        on_main(dist, check)
    char_opts = CharLMOptions(
        out=root / "charlm",
        corpus=list(corpus),
        lang=lang,
        train={"max_time": usable * CHARLM_SHARE, "seed": seed},
        device=device,
        sources=dialog_text_sources(list(corpus), lang),
        overwrite=overwrite,
    )
    if dry_run:  # both plans, the chat model with the share it would get
        from chatrnn.train.plan import print_plan

        reporter.message(f"[1/2] char LM ({usable * CHARLM_SHARE:.0f}s)")
        print_plan("charlm", char_opts, dist, reporter)
        reporter.message(f"[2/2] chat model (~{usable * (1 - CHARLM_SHARE):.0f}s)")
        print_plan(
            "chat",
            ChatOptions(
                out=root / "chat",
                corpus=list(corpus),
                lang=lang,
                device=device,
                train={"max_time": usable * (1 - CHARLM_SHARE), "seed": seed},
            ),
            dist,
            reporter,
        )
        return None
    reporter.message(f"[1/2] char LM ({usable * CHARLM_SHARE:.0f}s)")
    r1 = train_charlm(char_opts, reporter=reporter, dist=dist)
    summarize(r1, reporter)
    if r1.interrupted:
        return r1, None
    spent = time.monotonic() - t0
    if dist is not None:  # every rank must give the chat model the same budget
        spent = dist.max_float(spent)
    left = max(10.0, usable - spent)
    reporter.message(f"[2/2] chat model ({left:.0f}s)")
    # One evaluation, at the end, so the checkpoint keeps the final weights: on a corpus this small
    # validation loss rises as soon as the model starts memorising answers (held-out questions
    # have unrelated replies), and "best by validation loss" would keep a model that cannot even
    # answer "Hello".
    chat_opts = ChatOptions(
        out=root / "chat",
        corpus=list(corpus),
        lang=lang,
        train={"max_time": left, "seed": seed, "evals": 1},
        device=device,
        overwrite=overwrite,
    )
    r2 = train_chat(chat_opts, reporter=reporter, dist=dist)
    summarize(r2, reporter)
    reporter.message('try: chatrnn generate --seed "Hello"   |   chatrnn reply "Hello"   |   chatrnn chat')
    return r1, r2
