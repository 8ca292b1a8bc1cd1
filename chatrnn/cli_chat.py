"""CLI commands of the chat model (`train chat`, `reply`); registered by importing this module.

Like ``cli.py``, nothing heavy is imported at module level: torch and the model load inside the
commands, so every ``--help`` stays instant.
"""

from __future__ import annotations

import click

from chatrnn.cli import CONTEXT, _apply, _out_path, _reporter, cli, train, train_config_from, training_options
from chatrnn.errors import ChatrnnError

FORMATS = ("csv", "tsv", "jsonl", "cornell", "chatterbot", "transcript")


def _columns(ctx, param, value):
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(parts):
        raise click.BadParameter("give two column names, e.g. --columns question,answer")
    return tuple(parts)


def chat_options(f):
    """The flags of ``train chat`` (shared with the distributed launcher's dry run)."""
    opts = [
        click.option(
            "--corpus",
            "corpus",
            multiple=True,
            type=click.Path(),
            help="Dialog corpus: CSV/TSV (Q,A columns), JSONL, Cornell folder, chatterbot YAML, "
            "or a NAME: transcript (repeatable). Default: the bundled chatterbot-corpus.",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(FORMATS),
            default=None,
            help="Corpus format (detected from the name by default).",
        ),
        click.option("--columns", callback=_columns, default=None, help="Question and answer columns/keys, e.g. Q,A."),
        click.option("--encoding", default=None, help="Text encoding of the corpus (default UTF-8)."),
        click.option(
            "--lang", default="english", show_default=True, help="Language of the bundled corpus (when no --corpus)."
        ),
        click.option(
            "--val-fraction",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=0.1,
            show_default=True,
            help="Every round(1/f)-th pair is held out for validation.",
        ),
        click.option("--val-file", type=click.Path(), default=None, help="Validate on this dialog file instead."),
        click.option(
            "--context-turns",
            type=click.IntRange(0, 64),
            default=0,
            show_default=True,
            help="Earlier turns fed to the encoder with each prompt.",
        ),
        click.option(
            "--max-len",
            type=click.IntRange(1),
            default=None,
            help="Drop pairs whose prompt or reply is longer (tokens; preset: 32).",
        ),
        click.option(
            "--vocab-size",
            type=click.IntRange(262),
            default=None,
            help="Subword vocabulary (preset: 2000, capped for small corpora).",
        ),
        click.option(
            "--tokenizer",
            type=click.Choice(["unigram", "bpe"]),
            default="unigram",
            show_default=True,
            help="sentencepiece model type.",
        ),
        click.option(
            "--out",
            default=None,
            help="Checkpoint folder (a name under checkpoints/ or a path). Default: checkpoints/chat.",
        ),
        click.option("--preset", default=None, help="cpu (default without a GPU), gpu, tiny."),
        click.option("--embed", type=click.IntRange(1), default=None),
        click.option(
            "--hidden",
            type=click.IntRange(2),
            default=None,
            help="Decoder state width (even; the encoder splits it over two directions).",
        ),
        click.option("--layers", type=click.IntRange(1, 8), default=None),
        click.option(
            "--attention",
            type=click.Choice(["dot", "general", "concat"]),
            default=None,
            help="Luong score function (preset: general).",
        ),
        click.option("--dropout", type=click.FloatRange(0, 0.9), default=None),
        click.option("--tie-weights/--no-tie-weights", default=None, help="Share the embedding with the output layer."),
        click.option(
            "--input-feeding/--no-input-feeding",
            default=None,
            help="Feed the last attentional state to the decoder (default on).",
        ),
        click.option(
            "--batch-size", type=click.IntRange(1), default=None, help="Pairs per step (global, over all ranks)."
        ),
        click.option("--label-smoothing", type=click.FloatRange(0, 0.5), default=None, help="Preset: 0.1."),
        click.option(
            "--teacher-forcing",
            type=click.FloatRange(0, 1),
            default=1.0,
            show_default=True,
            help="Share of batches decoded from the reference reply.",
        ),
        click.option(
            "--tf-decay",
            type=click.FloatRange(0, 1),
            default=1.0,
            show_default=True,
            help="Multiply the teacher forcing ratio by this every epoch.",
        ),
    ]
    return training_options(_apply(f, opts))


def build_chat_options(kw: dict):
    from chatrnn.train.chat import ChatOptions

    model = {k: kw[k] for k in ("embed", "hidden", "layers", "attention", "dropout", "tie_weights", "input_feeding")}
    return ChatOptions(
        out=_out_path(kw["out"], "chat"),
        corpus=list(kw["corpus"]),
        lang=kw["lang"],
        fmt=kw["fmt"],
        columns=kw["columns"],
        encoding=kw["encoding"],
        val_fraction=kw["val_fraction"],
        val_file=kw["val_file"],
        context_turns=kw["context_turns"],
        max_len=kw["max_len"],
        vocab_size=kw["vocab_size"],
        tokenizer=kw["tokenizer"],
        model=model,
        batch_size=kw["batch_size"],
        label_smoothing=kw["label_smoothing"],
        teacher_forcing=kw["teacher_forcing"],
        tf_decay=kw["tf_decay"],
        train=train_config_from(kw),
        lr_given=kw["lr"] is not None,
        device=kw["device"],
        resume=kw["resume"],
        preset=kw["preset"],
    )


@train.command("chat", context_settings=CONTEXT)
@chat_options
def train_chat_cmd(**kw) -> None:
    """Train the seq2seq GRU chatbot (bidirectional encoder, Luong attention decoder).

    \b
    chatrnn train chat --corpus ChatbotData.csv --max-time 10m
    chatrnn train chat --corpus movie_dialogs/ --context-turns 2 --attention concat
    chatrnn train chat --corpus chats.jsonl --tokenizer bpe --vocab-size 8000
    chatrnn train chat --resume --max-time 20m          # continue checkpoints/chat
    """
    from chatrnn.train.launch import run_training

    run_training("chat", build_chat_options(kw), dry_run=kw["dry_run"], reporter=_reporter(kw["quiet"]))


def decoding_options(f):
    """Decoding flags of the chat model (each also read from CHATRNN_<NAME>)."""
    opts = [
        click.option(
            "--beam",
            type=click.IntRange(1, 64),
            default=1,
            show_default=True,
            envvar="CHATRNN_BEAM",
            help="Beam size (1 = greedy or sampling).",
        ),
        click.option(
            "--temperature",
            "-t",
            type=click.FloatRange(0, 10),
            default=0.0,
            show_default=True,
            envvar="CHATRNN_TEMPERATURE",
            help="0 = greedy; >0 samples (with --beam 1).",
        ),
        click.option(
            "--top-k",
            type=click.IntRange(0),
            default=0,
            show_default=True,
            envvar="CHATRNN_TOP_K",
            help="Sample from the k most likely (0 = all).",
        ),
        click.option(
            "--top-p",
            type=click.FloatRange(0, 1, min_open=True),
            default=1.0,
            show_default=True,
            envvar="CHATRNN_TOP_P",
            help="Nucleus sampling mass.",
        ),
        click.option(
            "--length-penalty",
            type=click.FloatRange(0, 5),
            default=0.6,
            show_default=True,
            envvar="CHATRNN_LENGTH_PENALTY",
            help="Beam search length normalisation (GNMT alpha).",
        ),
        click.option(
            "--nbest",
            type=click.IntRange(1, 64),
            default=1,
            show_default=True,
            envvar="CHATRNN_NBEST",
            help="Print this many beam alternatives, with scores.",
        ),
        click.option(
            "--no-repeat-ngram",
            type=click.IntRange(0, 20),
            default=3,
            show_default=True,
            envvar="CHATRNN_NO_REPEAT_NGRAM",
            help="Never repeat an n-gram of this size (0 = off).",
        ),
        click.option(
            "--min-len",
            type=click.IntRange(0),
            default=1,
            show_default=True,
            envvar="CHATRNN_MIN_LEN",
            help="Minimum reply tokens.",
        ),
        click.option(
            "--max-len",
            type=click.IntRange(1, 10000),
            default=40,
            show_default=True,
            envvar="CHATRNN_MAX_LEN",
            help="Maximum reply tokens.",
        ),
        click.option(
            "--context-turns",
            type=click.IntRange(0, 64),
            default=None,
            envvar="CHATRNN_CONTEXT_TURNS",
            help="Earlier turns given to the model (default: as trained).",
        ),
        click.option("--rng-seed", type=int, default=None, envvar="CHATRNN_RNG_SEED", help="Make sampling repeatable."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def settings_from(kw: dict):
    from chatrnn.decoding import ReplySettings

    return ReplySettings(
        temperature=kw["temperature"],
        top_k=kw["top_k"],
        top_p=kw["top_p"],
        beam=kw["beam"],
        length_penalty=kw["length_penalty"],
        nbest=kw["nbest"],
        no_repeat_ngram=kw["no_repeat_ngram"],
        min_len=kw["min_len"],
        max_len=kw["max_len"],
        context_turns=kw["context_turns"],
        rng_seed=kw["rng_seed"],
    )


@cli.command(context_settings=CONTEXT)
@click.argument("message")
@click.option(
    "--checkpoint", "-c", default=None, help="Checkpoint name under checkpoints/ or a path. Default: checkpoints/chat."
)
@click.option("--history", multiple=True, help="An earlier turn, oldest first, alternating user/bot (repeatable).")
@click.option("--device", default="cpu", show_default=True)
@decoding_options
def reply(message, checkpoint, history, device, **kw) -> None:
    """Answer one message with the chat model and print the reply.

    \b
    chatrnn reply "Hello"
    chatrnn reply "오늘 너무 피곤해" --checkpoint korean --beam 5 --nbest 3
    chatrnn reply "tell me a joke" -t 0.8 --top-p 0.9 --rng-seed 7
    """
    if not message.strip():
        raise ChatrnnError("the message is empty; give some text to reply to")
    settings = settings_from(kw)
    from chatrnn.infer_chat import Responder

    responder = Responder.load(checkpoint, device=device)
    r = responder.reply(message, history=list(history), settings=settings)
    if settings.nbest > 1 and settings.beam > 1:
        for text, score in r.nbest[: settings.nbest]:
            click.echo(f"{score:.3f}\t{text}")
    else:
        click.echo(r.text)
