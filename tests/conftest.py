"""Shared fixtures: every test runs with its own checkpoints/cache/database folders, and a tiny
char LM trained once per session (a real model, trained for real, in about a second)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora"

SAMPLE_TEXT = (
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n\n"
    "안녕하세요, 반가워요! 오늘 날씨가 좋네요. 🙂\n\n"
) * 60


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(home / "checkpoints"))
    monkeypatch.setenv("CHATRNN_CACHE", str(home / "cache"))
    monkeypatch.setenv("CHATRNN_DB", str(home / "chatrnn.sqlite3"))
    import torch

    torch.set_num_threads(1)  # tiny models: threads only add noise and contention


@pytest.fixture(scope="session")
def sample_text_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("corpus") / "sample.txt"
    p.write_text(SAMPLE_TEXT, "utf-8")
    return p


@pytest.fixture(scope="session")
def tiny_charlm(tmp_path_factory, sample_text_file) -> Path:
    """A real tiny LSTM char model checkpoint (session-wide, trained once)."""
    from chatrnn.train.charlm import CharLMOptions, train_charlm

    home = tmp_path_factory.mktemp("tiny_charlm")
    old = os.environ.get("CHATRNN_CACHE")
    os.environ["CHATRNN_CACHE"] = str(home / "cache")
    try:
        train_charlm(
            CharLMOptions(
                out=home / "charlm",
                corpus=[str(sample_text_file)],
                preset="tiny",
                train=dict(max_steps=60, evals=2),
                device="cpu",
            )
        )
    finally:
        if old is None:
            os.environ.pop("CHATRNN_CACHE", None)
        else:
            os.environ["CHATRNN_CACHE"] = old
    return home / "charlm"


def shared_corpus(name: str) -> Path:
    p = SHARED / name
    if not p.exists():
        pytest.skip(f"{p} not present (shared corpora live beside the checkout)")
    return p
