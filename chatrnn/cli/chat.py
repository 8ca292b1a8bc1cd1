"""The chat model's conversation commands: ``reply`` (one message) and ``chat`` (the TUI, or plain
mode). Both take the same decoding flags (:func:`chatrnn.cli.options.decoding_options`) and load
the model the same way (``Responder.load``) in plain mode.

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

from chatrnn.cli.options import CONTEXT, decoding_options, inference_device, reply_settings
from chatrnn.errors import ChatrnnError
from chatrnn.terminal import visible

_NEWLINES = re.compile(r"[\r\n\u2028\u2029\x85]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")


@click.command(context_settings=CONTEXT)
@click.argument("message")
@click.option(
    "--checkpoint", "-c", default=None, help="Checkpoint name under checkpoints/ or a path. Default: checkpoints/chat."
)
@click.option("--history", multiple=True, help="An earlier turn, oldest first, alternating user/bot (repeatable).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, mps or auto.")
@click.option(
    "--raw",
    is_flag=True,
    help="Print the reply exactly as generated, control characters included (for pipes); "
    "by default they are shown visibly (ESC as \u241b) so model output cannot drive the terminal.",
)
@decoding_options
def reply(message, checkpoint, history, device, raw, **kw) -> None:
    """Answer one message with the chat model and print the reply.

    \b
    chatrnn reply "Hello"
    chatrnn reply "오늘 너무 피곤해" --checkpoint korean --beam 5 --nbest 3
    chatrnn reply "tell me a joke" -t 0.8 --top-p 0.9 --rng-seed 7
    """
    if not message.strip():
        raise ChatrnnError("the message is empty; give some text to reply to")
    settings = reply_settings(kw)
    from chatrnn.infer_chat import Responder

    responder = Responder.load(checkpoint, device=inference_device(device))
    r = responder.reply(message, history=list(history), settings=settings)
    show = (lambda s: s) if raw else visible
    # color=True: click would strip CSI codes (only those) when piped; --raw means exact bytes
    if settings.nbest > 1 and settings.beam > 1:
        for text, score in r.nbest[: settings.nbest]:
            click.echo(f"{score:.3f}\t{show(text)}", color=raw or None)
    else:
        click.echo(show(r.text), color=raw or None)


def one_line(text: str) -> str:
    """A reply as exactly one output line: line breaks become spaces, control characters go
    (C0, DEL and C1: a reply can never drive the terminal), lone surrogates too (unencodable)."""
    return _CONTROL.sub("", _NEWLINES.sub(" ", text)).strip()


def run_plain(responder, settings, stdin=None, stdout=None, stderr=None) -> int:
    """Answer each line of ``stdin`` on ``stdout``; returns the exit status: 0, or 1 when every
    reply failed (a script must not take a run of empty lines for answers), 130 on Ctrl-C."""
    stdin = stdin or io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace", newline=None)
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    history: list[str] = []
    answered = failed = 0
    while True:
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            return 130
        if not line:
            if failed and not answered:
                print(f"error: all {failed} replies failed", file=stderr, flush=True)
                return 1
            return 0
        message = line.rstrip("\r\n")
        if not message.strip():
            continue
        try:
            text = one_line(responder.reply(message, list(history), settings).text)
            answered += 1
        except KeyboardInterrupt:
            return 130
        except ChatrnnError as e:
            text = ""
            failed += 1
            print(visible(f"error: {e}"), file=stderr, flush=True)
        except Exception as e:  # never die on one odd message; say what happened
            text = ""
            failed += 1
            print(visible(f"error: {e.__class__.__name__}: {e}"), file=stderr, flush=True)
        stdout.write(text + "\n")
        stdout.flush()
        history += [message, text]


@click.command("chat", context_settings=CONTEXT)
@click.option(
    "--checkpoint",
    "-c",
    default=None,
    envvar="CHATRNN_CHECKPOINT",
    help="Chat model: a name under checkpoints/ or a path. Default: checkpoints/chat "
    "(the app falls back to the newest chat checkpoint).",
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
@decoding_options
def chat(checkpoint, lm, db, plain, device, **kw) -> None:
    """Talk to your models: a terminal app with a Chat tab (seq2seq) and a Generate tab (char LM).

    \b
    chatrnn chat                                  # the models under checkpoints/
    chatrnn chat --checkpoint korean -t 0.7 --beam 4
    printf 'hello\\nhow are you\\n' | chatrnn chat   # plain mode: one reply per line

    In the app: Enter sends, Esc stops a reply, F1 shows every key, ctrl+p the command palette,
    /help the chat commands (/temp 0.7, /beam 4, ...).
    """
    settings = reply_settings(kw)
    if plain or not (sys.stdin.isatty() and sys.stdout.isatty()):
        from chatrnn.infer_chat import Responder

        responder = Responder.load(checkpoint, device=inference_device(device))
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
