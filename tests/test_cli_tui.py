"""`chatrnn chat` without a terminal: plain mode through a pipe, flags, env vars, errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from chatrnn.cli import cli
from chatrnn.cli.chat import one_line, run_plain
from chatrnn.errors import ChatrnnError

PAIRS = [
    ("hello", "hi there"),
    ("how are you", "fine thanks"),
    ("what is your name", "bot"),
    ("good night", "sleep well"),
    ("thank you", "you are welcome"),
    ("안녕", "안녕하세요"),
]


@pytest.fixture(scope="module")
def chat_root(tmp_path_factory) -> Path:
    """A checkpoints root with a tiny chat model (a few seconds of training)."""
    try:
        from chatrnn.train.chat import ChatOptions, train_chat
    except ImportError:
        pytest.skip("the chat trainer is not available")

    tmp = tmp_path_factory.mktemp("plain")
    tsv = tmp / "pairs.tsv"
    tsv.write_text("question\tanswer\n" + "".join(f"{q}\t{a}\n" for _ in range(10) for q, a in PAIRS), "utf-8")
    import torch

    old, threads = os.environ.get("CHATRNN_CACHE"), torch.get_num_threads()
    os.environ["CHATRNN_CACHE"] = str(tmp / "cache")
    torch.set_num_threads(1)  # a tiny model on a shared 2-core CPU: threads only contend
    try:
        train_chat(
            ChatOptions(
                out=tmp / "checkpoints" / "chat",
                corpus=[str(tsv)],
                preset="tiny",
                context_turns=1,
                train=dict(max_steps=20, evals=1),
                device="cpu",
            )
        )
    finally:
        torch.set_num_threads(threads)
        if old is None:
            os.environ.pop("CHATRNN_CACHE", None)
        else:
            os.environ["CHATRNN_CACHE"] = old
    return tmp / "checkpoints"


def run_chat(args, stdin: bytes, env_extra: dict, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATRNN_")}
    env.update(env_extra)
    env["CHATRNN_DB"] = ":memory:"
    return subprocess.run(
        [sys.executable, "-m", "chatrnn", "chat", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=timeout,
        cwd=str(Path(__file__).resolve().parents[1]),
    )


# ---------------------------------------------------------------------------------------------
# through a real pipe


def test_plain_mode_through_a_pipe_answers_one_line_per_message(chat_root):
    lines = ["hello", "", "how are you", "   ", "안녕 😀", "x" * 100_000, "ctrl \x01\x1b[2J\x7f", "last"]
    stdin = ("\n".join(lines) + "\n").encode("utf-8") + b"bad utf-8 \xff\xfe\n"
    r = run_chat([], stdin, {"CHATRNN_CHECKPOINTS": str(chat_root)})
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode("utf-8").split("\n")
    assert out[-1] == ""  # ends with a newline
    # blank lines are skipped: 7 messages, 7 replies, each on exactly one line
    assert len(out) - 1 == 7, out
    assert "Traceback" not in r.stderr.decode()


def test_plain_mode_missing_checkpoint_is_one_line_and_exit_1(tmp_path):
    r = run_chat([], b"hello\n", {"CHATRNN_CHECKPOINTS": str(tmp_path / "none")})
    assert r.returncode == 1
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "chatrnn train chat" in err[0]
    r = run_chat(["--plain", "--checkpoint", str(tmp_path / "nowhere")], b"hello\n", {})
    assert r.returncode == 1 and len(r.stderr.decode().strip().splitlines()) == 1


def test_flags_and_env_vars_reach_the_model(chat_root):
    env = {"CHATRNN_CHECKPOINTS": str(chat_root), "CHATRNN_BEAM": "3"}
    r = run_chat(["--plain", "--max-len", "5", "-t", "0"], b"hello\nhow are you\n", env)
    assert r.returncode == 0, r.stderr.decode()
    assert len(r.stdout.decode().splitlines()) == 2
    r = run_chat(["--plain", "--beam", "0"], b"hello\n", env)  # out of range: a usage error, as for `reply`
    assert r.returncode == 2 and "beam" in r.stderr.decode() and "Traceback" not in r.stderr.decode()
    r = run_chat(["--plain"], b"hello\n", {**env, "CHATRNN_TEMPERATURE": "-3"})
    assert r.returncode == 2 and "temperature" in r.stderr.decode() and "Traceback" not in r.stderr.decode()


# ---------------------------------------------------------------------------------------------
# in process


@dataclass
class FakeReply:
    text: str


class Echo:
    """Replies with how many turns of history it saw, or fails on request."""

    def __init__(self):
        self.calls = []

    def reply(self, message, history=None, settings=None, cancel=None):
        self.calls.append((message, list(history or []), settings))
        if message == "fail":
            raise ChatrnnError("the model cannot answer that")
        if message == "crash":
            raise RuntimeError("boom")
        return FakeReply(f"reply {len(history or [])}\nsecond line\r\n\x1b[0m")


def test_run_plain_keeps_history_skips_blanks_and_survives_failures():
    model = Echo()
    stdin = io.StringIO("one\n\n  \ntwo\r\nfail\ncrash\nthree")
    out, err = io.StringIO(), io.StringIO()
    assert run_plain(model, "settings", stdin, out, err) == 0
    lines = out.getvalue().split("\n")
    assert lines == ["reply 0 second line [0m", "reply 2 second line [0m", "", "", "reply 8 second line [0m", ""]
    assert [c[0] for c in model.calls] == ["one", "two", "fail", "crash", "three"]
    assert model.calls[1][1] == ["one", "reply 0 second line [0m"]
    assert model.calls[-1][1][-2:] == ["crash", ""]  # a failed reply still takes its turn
    assert "cannot answer" in err.getvalue() and "RuntimeError: boom" in err.getvalue()
    assert all(c[2] == "settings" for c in model.calls)


def test_one_line():
    assert one_line("a\nb\r\nc\u2028d\x00e\x1b") == "a b c de"
    assert one_line("  \n ") == ""


def test_chat_takes_the_decoding_options_of_reply():
    """One option block: the same flags, defaults, environment variables and range checks."""

    def decoding_params(command: str) -> dict:
        return {
            p.name: (p.opts, p.default, p.envvar, repr(p.type))
            for p in cli.commands[command].params
            if p.envvar and p.name not in ("checkpoint", "device", "lm", "db", "plain")
        }

    assert decoding_params("chat") == decoding_params("reply")
    assert {"temperature", "top_k", "top_p", "beam", "nbest", "max_len", "rng_seed"} <= decoding_params("chat").keys()


def test_decoding_options_read_the_environment_and_flags_beat_it(monkeypatch):
    import click

    from chatrnn.cli.options import decoding_options, reply_settings

    seen = []

    @click.command()
    @decoding_options
    def probe(**kw):
        seen.append(reply_settings(kw))

    monkeypatch.setenv("CHATRNN_TEMPERATURE", "0.5")
    monkeypatch.setenv("CHATRNN_NBEST", "2")
    assert CliRunner().invoke(probe, ["--beam", "4"]).exit_code == 0
    assert (seen[-1].temperature, seen[-1].nbest, seen[-1].beam) == (0.5, 2, 4)
    assert CliRunner().invoke(probe, ["-t", "0.9"]).exit_code == 0
    assert seen[-1].temperature == 0.9  # a flag beats the environment
    r = CliRunner().invoke(probe, ["--top-p", "2"])
    assert r.exit_code == 2 and "top-p" in r.output


def test_chat_command_is_registered_and_imports_nothing_heavy():
    code = (
        "import sys; from chatrnn.cli import cli; import chatrnn.tui.app; "
        "assert 'chat' in cli.commands; print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
    code = "import sys; from chatrnn.cli import cli; print('textual' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False"


def test_chat_help_lists_the_flags():
    r = CliRunner().invoke(cli, ["chat", "--help"])
    assert r.exit_code == 0
    for flag in (
        "--checkpoint",
        "--lm",
        "--db",
        "--plain",
        "--device",
        "--temperature",
        "--top-k",
        "--top-p",
        "--beam",
        "--max-len",
    ):
        assert flag in r.output
