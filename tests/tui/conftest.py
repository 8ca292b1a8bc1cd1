"""Fixtures for the TUI tests: tiny real models trained once per session, scripted slow models,
and an app factory wired to an in-memory (or temp-file) conversation store."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chatrnn.tui.loading import CHAT, ModelLoader

DIALOG = [
    ("hello", "hi there"),
    ("how are you", "i am fine thanks"),
    ("what is your name", "my name is bot"),
    ("do you like music", "yes i love music"),
    ("good morning", "good morning to you"),
    ("what time is it", "time to chat"),
    ("tell me a joke", "why did the chicken cross the road"),
    ("bye", "goodbye see you soon"),
    ("thank you", "you are welcome"),
    ("where are you from", "i live in a computer"),
    ("안녕하세요", "안녕하세요 반가워요"),
    ("what do you eat", "i eat bytes"),
    ("are you happy", "yes very happy"),
    ("who made you", "a python program"),
    ("can you help me", "sure what do you need"),
]


def _corpus_text() -> str:
    lines = []
    for _ in range(40):
        for q, a in DIALOG:
            lines.append(f"{q}\n{a}\n")
    return "".join(lines)


@pytest.fixture(scope="session")
def tui_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tui")


@pytest.fixture(scope="session")
def checkpoints(tui_tmp) -> Path:
    """A checkpoints root holding a tiny char LM (``charlm``) and, when the chat trainer is
    available, a tiny chat model (``chat``); trained once per session in a few seconds."""
    root = tui_tmp / "checkpoints"
    root.mkdir()
    old = {k: os.environ.get(k) for k in ("CHATRNN_CACHE", "CHATRNN_CHECKPOINTS")}
    os.environ["CHATRNN_CACHE"] = str(tui_tmp / "cache")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core CPU: threads only contend
    try:
        from chatrnn.train.charlm import CharLMOptions, train_charlm

        text = tui_tmp / "corpus.txt"
        text.write_text(_corpus_text(), "utf-8")
        train_charlm(
            CharLMOptions(
                out=root / "charlm",
                corpus=[str(text)],
                preset="tiny",
                train=dict(max_steps=30, evals=1),
                device="cpu",
            )
        )
        try:
            from chatrnn.train.chat import ChatOptions, train_chat
        except ImportError:
            pass
        else:
            tsv = tui_tmp / "pairs.tsv"
            tsv.write_text("question\tanswer\n" + "".join(f"{q}\t{a}\n" for _ in range(8) for q, a in DIALOG), "utf-8")
            train_chat(
                ChatOptions(
                    out=root / "chat",
                    corpus=[str(tsv)],
                    preset="tiny",
                    context_turns=1,
                    train=dict(max_steps=40, evals=1),
                    device="cpu",
                )
            )
    finally:
        torch.set_num_threads(threads)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return root


@pytest.fixture
def in_checkpoints(checkpoints, monkeypatch) -> Iterator[Path]:
    """The session's checkpoints as the app's ``checkpoints/``; caches a test leaves beside the
    weights (the Neurons view's ranking) are removed after it, so no other test sees them."""
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(checkpoints))
    yield checkpoints
    for cache in checkpoints.glob("*/neurons.json"):
        cache.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def has_chat_model(checkpoints) -> bool:
    return (checkpoints / "chat" / "config.json").is_file()


# ---------------------------------------------------------------------------------------------
# scripted models


@dataclass
class Tok:
    text: str
    piece: str = ""
    attention: list = field(default_factory=list)


@dataclass
class GenTok:
    text: str
    candidates: list = field(default_factory=list)


class ScriptedResponder:
    """The Responder interface, replying with ``words`` one per ``delay`` seconds."""

    def __init__(self, words=("alpha", "beta", "gamma", "delta"), delay=0.0, folder=None):
        self.words = list(words)
        self.delay = delay
        self.config = {"kind": "chat"}
        self.folder = folder or Path("scripted-chat")
        self.context_turns = 1
        self.calls: list[tuple[str, list]] = []
        self.stopped = threading.Event()
        self.yielded = 0

    def prompt_pieces(self, message, history=None, settings=None):
        return ["▁" + w for w in (message.split() or [""])][:50]

    def stream(self, message, history=None, settings=None, cancel=None):
        self.calls.append((message, list(history or [])))
        n = len(self.prompt_pieces(message, history, settings))
        finished = False
        try:
            for i, w in enumerate(self.words):
                if cancel is not None and cancel.is_set():
                    return
                if self.delay:
                    time.sleep(self.delay)
                self.yielded += 1
                att = [0.0] * n
                att[i % n] = 1.0
                yield Tok(("" if i == 0 else " ") + w, "▁" + w, att)
            finished = True
        finally:  # cancelled, or closed by a consumer that stopped asking
            if not finished:
                self.stopped.set()


class ScriptedGenerator:
    """The Generator interface: cycles through ``text``, ``delay`` seconds per character."""

    def __init__(self, text="the quick brown fox ", delay=0.0):
        self.text = text
        self.delay = delay
        self.config = {"kind": "charlm"}
        self.folder = Path("scripted-lm")
        self.calls = []

    def prepare_seed(self, seed):
        return [ord(c) for c in seed if c.isascii()], [c for c in seed if not c.isascii()]

    def stream(
        self,
        seed="",
        length=500,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        rng_seed=None,
        candidates=0,
        cancel=None,
        probe=False,  # the real Generator's probe values; the scripted one has none to give
    ):
        self.calls.append(dict(seed=seed, length=length, temperature=temperature, top_k=top_k, top_p=top_p))
        for i in range(length):
            if cancel is not None and cancel.is_set():
                return
            if self.delay:
                time.sleep(self.delay)
            yield self.token(i, self.text[i % len(self.text)], temperature, candidates, probe)

    def token(self, i: int, c: str, temperature: float, candidates: int, probe: bool):
        """The ``i``-th token, character ``c`` of the text: what a subclass scripts differently
        (candidates that follow the temperature, probe values)."""
        return GenTok(c, [(c, 0.6), ("x", 0.3), ("y", 0.1)][:candidates])


class FakeLoader(ModelLoader):
    """The real ModelLoader, handing out given objects (or raising given errors) instead of reading
    checkpoints. Its warm-up is the real one only with ``warm=True``: the scripted models count
    their calls, and most tests want to see only the user's."""

    def __init__(self, chat=None, lm=None, chat_error=None, lm_error=None, warm=False):
        super().__init__("cpu")
        self.chat, self.lm, self.chat_error, self.lm_error, self.warm_up = chat, lm, chat_error, lm_error, warm

    def load(self, kind, name=None):
        error, model = (self.chat_error, self.chat) if kind == CHAT else (self.lm_error, self.lm)
        if error:
            raise error
        return model

    def warm(self, kind, model):
        if self.warm_up:
            super().warm(kind, model)


@pytest.fixture
def make_app(tmp_path):
    """``make_app(**kw)`` -> a ChatrnnApp with an in-memory store unless ``db_path`` is given."""
    from chatrnn.tui.app import ChatrnnApp
    from chatrnn.tui.store import Store

    def make(**kw):
        if "db_path" not in kw and "store" not in kw:
            kw["store"] = Store(":memory:")
        return ChatrnnApp(**kw)

    return make


async def wait_for(pilot, cond, timeout=10.0, step=0.02):
    """Let the app run until ``cond()`` holds (or fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(step)


def send_key(app, key: str, char: str | None = None) -> None:
    """Post one key press the way the terminal driver does, without the pilot's wait-for-idle
    (which, while a model streams, waits up to a second for the process to go quiet)."""
    from textual import events

    event = events.Key(key, char if char is not None else (key if len(key) == 1 else None))
    event.set_sender(app)
    app._driver.send_message(event)


@pytest.fixture
def fakes():
    """The scripted models and helpers (test modules cannot import conftest under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        Responder=ScriptedResponder,
        Generator=ScriptedGenerator,
        Loader=FakeLoader,
        wait_for=wait_for,
        Tok=Tok,
        send_key=send_key,
    )
