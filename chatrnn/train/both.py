"""``chatrnn train`` with no subcommand: both models on one corpus within one time budget."""

from __future__ import annotations

from chatrnn.checkpoint import checkpoints_root
from chatrnn.train.progress import Reporter

CHARLM_SHARE = 0.35  # the chat model needs more of the budget to learn to answer


def train_both(corpus: list[str], lang: str = "english", max_time: float = 300.0, device: str | None = None,
               seed: int = 1337, reporter: Reporter | None = None):
    """Char LM on the corpus's text, then the chatbot on its dialogs; returns both results.

    A corpus given here must be readable both ways: a dialog file (CSV, JSONL, YAML, Cornell,
    transcript) whose turns the char LM reads as flattened text.
    """
    from chatrnn.train.charlm import CharLMOptions
    from chatrnn.train.chat import ChatOptions, train_chat
    from chatrnn.train.charlm import train_charlm
    from chatrnn.train.launch import summarize
    from chatrnn.train.trainer import TrainConfig

    reporter = reporter or Reporter()
    root = checkpoints_root()
    char_opts = CharLMOptions(out=root / "charlm", corpus=[], lang=lang,
                              train=TrainConfig(max_time=max_time * CHARLM_SHARE, seed=seed), device=device)
    if corpus:
        char_opts.corpus_text = corpus  # type: ignore[attr-defined]
    reporter.message(f"[1/2] char LM ({max_time * CHARLM_SHARE:.0f}s)")
    r1 = train_charlm(char_opts, reporter=reporter)
    summarize("charlm", r1, reporter)
    reporter.message(f"[2/2] chat model ({max_time * (1 - CHARLM_SHARE):.0f}s)")
    chat_opts = ChatOptions(out=root / "chat", corpus=list(corpus), lang=lang,
                            train=TrainConfig(max_time=max_time * (1 - CHARLM_SHARE), seed=seed), device=device)
    r2 = train_chat(chat_opts, reporter=reporter)
    summarize("chat", r2, reporter)
    reporter.message('try: chatrnn generate --seed "Hello"   |   chatrnn reply "Hello"   |   chatrnn chat')
    return r1, r2
