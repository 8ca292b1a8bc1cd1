"""The `chat` CLI command (TUI and plain mode); registered by importing this module.

Nothing heavy at import time: Textual is imported only when the TUI starts, torch only when a
model loads (in the TUI, inside a worker thread).

Plain mode (stdin or stdout not a terminal, or ``--plain``): one message per input line, one reply
per output line, the conversation kept as context, so ``chatrnn chat`` can be scripted
(``printf 'hi\\nhow are you\\n' | chatrnn chat``). Blank lines are skipped (no output); a reply that
fails prints an empty line (so replies stay aligned with messages) and the reason on stderr.
"""

from __future__ import annotations

import io
import re
import sys

import click

from chatrnn.cli import CONTEXT, cli
from chatrnn.errors import ChatrnnError

_NEWLINES = re.compile(r"[\r\n\u2028\u2029\x85]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def reply_settings(temperature=None, top_k=None, top_p=None, beam=None, max_len=None):
    """ReplySettings from ``CHATRNN_*`` variables, then the flags that were given (range-checked)."""
    from chatrnn.decoding import ReplySettings, from_env, set_value

    s = from_env(ReplySettings())
    for name, value in (
        ("temperature", temperature),
        ("top_k", top_k),
        ("top_p", top_p),
        ("beam", beam),
        ("max_len", max_len),
    ):
        if value is not None:
            s = set_value(s, name, value)
    return s


def one_line(text: str) -> str:
    """A reply as exactly one output line: line breaks become spaces, control characters go."""
    return _CONTROL.sub("", _NEWLINES.sub(" ", text)).strip()


def run_plain(responder, settings, stdin=None, stdout=None, stderr=None) -> int:
    """Answer each line of ``stdin`` on ``stdout``; returns the exit status."""
    stdin = stdin or io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline=None)
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    history: list[str] = []
    failures = 0
    while True:
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            return 130
        if not line:
            return 0
        message = line.rstrip("\r\n")
        if not message.strip():
            continue
        try:
            reply = responder.reply(message, list(history), settings)
            text = one_line(reply.text)
        except KeyboardInterrupt:
            return 130
        except ChatrnnError as e:
            text, failures = "", failures + 1
            print(f"error: {e}", file=stderr, flush=True)
        except Exception as e:  # never die on one odd message; say what happened
            text, failures = "", failures + 1
            print(f"error: {e.__class__.__name__}: {e}", file=stderr, flush=True)
        stdout.write(text + "\n")
        stdout.flush()
        history += [message, text]


@cli.command("chat", context_settings=CONTEXT)
@click.option(
    "--checkpoint",
    "-c",
    default=None,
    envvar="CHATRNN_CHECKPOINT",
    help="Chat model: a name under checkpoints/ or a path. Default: checkpoints/chat (or the newest chat checkpoint).",
)
@click.option(
    "--lm",
    default=None,
    envvar="CHATRNN_LM",
    help="Char model for the Generate tab. Default: checkpoints/charlm (or the newest char LM).",
)
@click.option(
    "--db",
    default=None,
    envvar="CHATRNN_DB",
    type=click.Path(dir_okay=False),
    help="Conversation history file (default: in the user data folder; ':memory:' keeps nothing).",
)
@click.option(
    "--plain",
    is_flag=True,
    envvar="CHATRNN_PLAIN",
    help="No TUI: one message per input line, one reply per output line (automatic when not a terminal).",
)
@click.option("--device", default="cpu", show_default=True, envvar="CHATRNN_DEVICE", help="cpu, cuda, mps or auto.")
@click.option(
    "--temperature",
    "-t",
    type=float,
    default=None,
    envvar="CHATRNN_TEMPERATURE",
    help="Reply sampling temperature (0 = greedy, the default).",
)
@click.option(
    "--top-k", type=int, default=None, envvar="CHATRNN_TOP_K", help="Sample among the k most likely (0 = all)."
)
@click.option("--top-p", type=float, default=None, envvar="CHATRNN_TOP_P", help="Nucleus sampling mass.")
@click.option("--beam", type=int, default=None, envvar="CHATRNN_BEAM", help="Beam size (1 = no beam search).")
@click.option("--max-len", type=int, default=None, envvar="CHATRNN_MAX_LEN", help="Longest reply, in tokens.")
def chat(checkpoint, lm, db, plain, device, temperature, top_k, top_p, beam, max_len) -> None:
    """Talk to your models: a terminal app with a Chat tab (seq2seq) and a Generate tab (char LM).

    \b
    chatrnn chat                                  # the models under checkpoints/
    chatrnn chat --checkpoint korean -t 0.7 --beam 4
    printf 'hello\\nhow are you\\n' | chatrnn chat   # plain mode: one reply per line

    In the app: Enter sends, Esc stops a reply, F1 shows every key, ctrl+p the command palette,
    /help the chat commands (/temp 0.7, /beam 4, ...).
    """
    settings = reply_settings(temperature, top_k, top_p, beam, max_len)
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    if plain or not tty:
        from chatrnn.tui.models import ModelLoader

        responder = ModelLoader(device).load_chat(checkpoint)
        sys.exit(run_plain(responder, settings))

    from chatrnn.decoding import GenerateSettings, from_env
    from chatrnn.tui.app import ChatrnnApp

    app = ChatrnnApp(
        chat_checkpoint=checkpoint,
        lm_checkpoint=lm,
        db_path=db or None,
        reply_settings=settings,
        generate_settings=from_env(GenerateSettings()),
        device=device,
    )
    app.run()
