"""The terminal is an attack surface: model output and checkpoint strings never reach it as
control sequences (CSI ``ESC[31m``, OSC ``ESC]0;title BEL``, the one-character C1 CSI U+009B),
unless ``--raw`` asks for the exact bytes.

Real models: a tiny char LM and a tiny chat model trained here on text where such sequences are
frequent, so ``generate`` and ``reply`` really emit them.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatrnn.cli.chat import run_plain
from chatrnn.errors import ChatrnnError
from chatrnn.terminal import CONTROL_CHARS, is_visible, shown_path, visible, visible_json

CSI, OSC, C1_CSI = "\x1b[31m", "\x1b]0;pwned\x07", "\u009b"
WORDS = "red green blue text plain hello world title".split()


def controls(text: str) -> set[str]:
    """The terminal control characters in ``text`` (newline and tab are fine)."""
    return {c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F}


def chatrnn(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    """The real command line, stdout a pipe (not a terminal): the case click leaves OSC in."""
    return subprocess.run([sys.executable, "-m", "chatrnn", *args], capture_output=True, timeout=timeout)


def out_text(r: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    return r.stdout.decode("utf-8"), r.stderr.decode("utf-8")


# ---------------------------------------------------------------------------------------------
# visible()


@given(st.text())
def test_visible_never_lets_a_control_character_through(text: str) -> None:
    shown = visible(text)
    assert not controls(shown) and is_visible(shown)
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in shown)  # always encodable as UTF-8
    shown.encode("utf-8")
    assert visible(shown) == shown  # idempotent: showing twice changes nothing more
    assert shown.count("\n") == text.count("\n") and shown.count("\t") == text.count("\t")


@given(st.text(alphabet=st.characters(blacklist_characters=sorted(CONTROL_CHARS))))
def test_visible_leaves_printable_text_alone(text: str) -> None:
    assert visible(text) == text


def test_visible_shows_csi_osc_and_c1() -> None:
    assert visible(f"a{CSI}b{OSC}c{C1_CSI}2Jd\r\x7f\n\te") == "a␛[31mb␛]0;pwned␇c\\x9b2Jd␍␡\n\te"
    assert visible("안녕 🙂 naïve") == "안녕 🙂 naïve"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
        max_leaves=12,
    )
)
def test_visible_json_is_the_same_data_and_safe_to_print(value: object) -> None:
    text = visible_json(value)
    assert not controls(text) and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    assert json.loads(text) == value


def test_shown_path_of_a_non_utf8_name() -> None:
    name = os.fsdecode(b"corpus-\xff\xfe.txt")
    assert shown_path(name) == "corpus-\\xff\\xfe.txt"
    assert shown_path("\ud800x") == "\\ud800x"


# ---------------------------------------------------------------------------------------------
# real models that emit escape sequences


def _escape_text(n: int = 400) -> str:
    rng = random.Random(0)
    parts = []
    for i in range(n):
        w = rng.choice(WORDS)
        parts.append(rng.choice([f"{CSI}{w}\x1b[0m ", f"\x1b]0;{w}\x07 ", f"{C1_CSI}1m{w} ", f"{w} "]))
        if i % 8 == 7:
            parts.append("\n")
    return "".join(parts)


@pytest.fixture(scope="module")
def escape_models(tmp_path_factory) -> Path:
    """``lm`` (char LM, 300 steps) and ``chat`` (seq2seq, 80 steps) trained on escape-heavy text."""
    home = tmp_path_factory.mktemp("escapes")
    (home / "esc.txt").write_text(_escape_text(), "utf-8")
    rng = random.Random(1)
    rows = ["q,a"]
    for _ in range(60):
        w = rng.choice(WORDS)
        rows.append(f'{w} please,"{CSI}{w}\x1b[0m \x1b]0;{w}\x07 {C1_CSI}ok"')
    (home / "esc.csv").write_text("\n".join(rows) + "\n", "utf-8")
    env = {**os.environ, "CHATRNN_CACHE": str(home / "cache")}
    common = ["--preset", "tiny", "--seed", "1", "-q"]
    for cmd in (
        ["charlm", "--corpus", str(home / "esc.txt"), "--max-steps", "300", "--out", str(home / "lm")],
        ["chat", "--corpus", str(home / "esc.csv"), "--max-steps", "80", "--out", str(home / "chat")],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "chatrnn", "train", *cmd, *common], capture_output=True, env=env, timeout=600
        )
        assert r.returncode == 0, r.stderr.decode()
    return home


def test_generate_shows_the_sequences_a_model_emits(escape_models: Path) -> None:
    args = ["generate", "-c", str(escape_models / "lm"), "--seed", "x", "-n", "120", "-t", "0.5", "--rng-seed", "3"]
    raw = chatrnn(*args, "--raw")
    assert raw.returncode == 0, raw.stderr.decode()
    emitted = controls(raw.stdout.decode("utf-8"))
    assert "\x1b" in emitted  # the model really emits escape sequences: --raw passes them on exactly
    shown = chatrnn(*args)
    out, err = out_text(shown)
    assert shown.returncode == 0 and not controls(out) and not controls(err)
    assert "␛" in out and out == visible(raw.stdout.decode("utf-8"))  # the same text, shown


def test_generate_shows_a_seed_with_escapes(escape_models: Path) -> None:
    r = chatrnn("generate", "-c", str(escape_models / "lm"), "--seed", f"{CSI}{OSC}{C1_CSI}", "-n", "20", "-t", "0")
    out, err = out_text(r)
    assert r.returncode == 0 and not controls(out + err)
    assert out.startswith("␛[31m␛]0;pwned␇\\x9b")


def test_reply_shows_the_sequences_a_model_emits(escape_models: Path) -> None:
    args = ["reply", "red please", "-c", str(escape_models / "chat"), "-t", "0"]
    raw = chatrnn(*args, "--raw")
    assert raw.returncode == 0, raw.stderr.decode()
    text = raw.stdout.decode("utf-8")
    assert "\x1b[" in text  # CSI kept exactly, though piped (click would strip it)
    shown = chatrnn(*args)
    out, err = out_text(shown)
    assert shown.returncode == 0 and not controls(out + err)
    assert out == visible(text) and "␛[" in out
    nbest = chatrnn(*args, "--beam", "3", "--nbest", "2")
    out, _ = out_text(nbest)
    assert nbest.returncode == 0 and not controls(out) and len(out.splitlines()) == 2


def test_info_and_errors_show_checkpoint_strings_as_text(escape_models: Path, tmp_path: Path) -> None:
    ck = tmp_path / "evil"
    shutil.copytree(escape_models / "lm", ck)
    config = json.loads((ck / "config.json").read_text("utf-8"))
    payload = f"{CSI}x{OSC}y{C1_CSI}2J"
    config["corpus"] = {**(config.get("corpus") or {}), "files": [payload]}
    if isinstance(config.get("training"), dict):
        config["training"]["device"] = payload
    (ck / "config.json").write_text(json.dumps(config, ensure_ascii=False), "utf-8")
    for args in (["info", str(ck)], ["info", str(ck), "--json"]):
        r = chatrnn(*args)
        out, err = out_text(r)
        assert "Traceback" not in err and not controls(out + err), (out, err)
        if r.returncode == 0:  # (a stricter config check may refuse it: then in one safe line)
            assert "␛[31mx" in out or "\\u001b[31mx" in out
            if "--json" in args:
                assert json.loads(out)["corpus"]["files"] == [payload]  # the data itself unchanged
        else:
            assert r.returncode == 1 and len(err.strip().splitlines()) == 1
    # an error message that quotes a hostile name
    r = chatrnn("generate", "-c", str(tmp_path / f"missing{OSC}{C1_CSI}2J"))
    out, err = out_text(r)
    assert r.returncode == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not controls(out + err) and "␛]0;pwned␇" in err


# ---------------------------------------------------------------------------------------------
# plain-mode chat


@dataclass
class _Reply:
    text: str


class _Scripted:
    """Replies with escape sequences, or fails: the plain-mode loop is what is under test here
    (the real model path is covered by test_reply_shows_the_sequences_a_model_emits)."""

    def reply(self, message, history=None, settings=None, cancel=None):
        if message.startswith("fail"):
            raise ChatrnnError(f"cannot answer {OSC}{C1_CSI}2J")
        return _Reply(f"{CSI}red\x1b[0m {OSC} {C1_CSI}2J done")


def test_plain_chat_output_and_errors_have_no_control_characters() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_plain(_Scripted(), None, io.StringIO("hi\nfail\n"), out, err) == 0
    assert not controls(out.getvalue()) and not controls(err.getvalue())
    assert out.getvalue().splitlines()[0] == "[31mred[0m ]0;pwned 2J done"
    assert "]0;pwned" in err.getvalue()


def test_plain_chat_exits_non_zero_when_every_reply_failed() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_plain(_Scripted(), None, io.StringIO("fail 1\n\nfail 2\n"), out, err) == 1
    assert out.getvalue() == "\n\n"  # still one (empty) line per message
    assert err.getvalue().splitlines()[-1] == "error: all 2 replies failed"
    assert run_plain(_Scripted(), None, io.StringIO(""), io.StringIO(), io.StringIO()) == 0  # no input: fine


def test_plain_chat_exit_status_of_the_real_command(escape_models: Path) -> None:
    ck = str(escape_models / "chat")
    r = subprocess.run(
        [sys.executable, "-m", "chatrnn", "chat", "--plain", "-c", ck, "-t", "0"],
        input=b"red please\n",
        capture_output=True,
        timeout=300,
    )
    out, err = out_text(r)
    assert r.returncode == 0, err
    assert len(out.splitlines()) == 1 and not controls(out + err)


# ---------------------------------------------------------------------------------------------
# the TUI: Textual draws text through Rich, which passes ESC and C1 on to the terminal


async def test_tui_shows_model_text_and_notifications_as_text() -> None:
    from chatrnn.tui.app import ChatrnnApp
    from chatrnn.tui.store import Store
    from chatrnn.tui.widgets import MessageView, StreamView

    hostile = f"{CSI}red {OSC} {C1_CSI}2J [@click=app.quit]x[/] [bold]b"
    app = ChatrnnApp(store=Store(":memory:"), load_models=False)
    async with app.run_test() as pilot:
        view = app.gen.query_one(StreamView)
        view.append(hostile)
        bubble = MessageView("bot", hostile)
        await app.chat.mount(bubble)
        bubble.finish(note=f"error: {hostile}")
        app.notify(hostile, title=f"t{OSC}")
        app.chat.notify(hostile)  # a pane's notification goes through the app's
        await pilot.pause()
        assert not controls(view.plain) and "␛[31mred" in view.plain and "\\x9b2J" in view.plain
        body = bubble.render()
        assert not controls(str(body)) and "[@click=app.quit]x[/]" in str(body)
        notes = list(app._notifications)
        assert len(notes) >= 2
        for n in notes:
            assert not n.markup and not controls(n.message) and not controls(n.title)
        assert any("[@click=app.quit]x[/] [bold]b" in n.message for n in notes)  # shown, not parsed
        assert app.is_running  # the click action in the text did nothing
