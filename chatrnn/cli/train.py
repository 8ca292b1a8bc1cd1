"""``chatrnn train`` (both models), ``train charlm`` and ``train chat``.

The commands only collect the flags the user typed (:func:`chatrnn.cli.options.given`) into the
library's options; which value each setting ends up with is decided once, by the library's
resolution (``chatrnn.settings``), and ``--dry-run`` shows the outcome. Torch is imported inside
the commands only.
"""

from __future__ import annotations

import click

from chatrnn.cli.options import (
    CONTEXT,
    SEED,
    ChatrnnGroup,
    apply,
    corpus_paths,
    duration,
    given,
    out_path,
    reporter,
    training_options,
)
from chatrnn.config import CHARLM_DEFAULTS, CHAT_DEFAULTS
from chatrnn.settings import TRAIN_KEYS

FORMATS = ("csv", "tsv", "jsonl", "cornell", "chatterbot", "transcript")
RUN_CONTROL = (  # how to run, not what to train
    "out",
    "device",
    "resume",
    "overwrite",
    "allow_corpus_change",
    "dry_run",
    "quiet",
    "tensorboard",
)


@click.group(cls=ChatrnnGroup, invoke_without_command=True, context_settings=CONTEXT)
@click.option(
    "--corpus",
    "corpus",
    multiple=True,
    type=click.Path(),
    callback=corpus_paths,
    help="Corpus file or folder, or a NAME under corpus/ (repeatable). Default: the bundled chatterbot-corpus.",
)
@click.option("--lang", default="english", show_default=True, help="Language of the bundled corpus.")
@click.option("--max-time", callback=duration, default="5m", show_default=True, help="Budget for both models together.")
@click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps.")
@click.option("--seed", type=SEED, default=1337, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option(
    "--dry-run", is_flag=True, help="Print the plan of both runs (device, ranks, model sizes, memory) and exit."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace the models already in checkpoints/charlm and checkpoints/chat."
)
@click.pass_context
def train(ctx: click.Context, corpus, lang, max_time, device, seed, quiet, dry_run, overwrite) -> None:
    """Train models. With no subcommand: the char LM, then the chatbot, on the same corpus.

    \b
    chatrnn train                          # bundled English dialogs, ~5 minutes on a CPU
    chatrnn train --lang korean --max-time 10m
    chatrnn train charlm --corpus shakespeare.txt --max-time 10m
    chatrnn train chat --corpus ChatbotData.csv
    """
    if ctx.invoked_subcommand is not None:
        return
    from chatrnn.train.launch import run_both

    run_both(
        list(corpus),
        lang=lang,
        max_time=max_time,
        device=device,
        seed=seed,
        reporter=reporter(quiet),
        dry_run=dry_run,
        overwrite=overwrite,
    )


def _split(ctx: click.Context, model_keys: tuple[str, ...]) -> dict:
    """The typed flags as the library's options take them: ``model`` and ``train`` apart, the rest flat."""
    flags = {k: v for k, v in given(ctx).items() if k not in RUN_CONTROL}
    model = {k: flags.pop(k) for k in model_keys if k in flags}
    train = {k: flags.pop(k) for k in TRAIN_KEYS if k in flags}
    return {**flags, "model": model, "train": train}


def _out(params: dict, kind: str) -> dict:
    return {
        "out": out_path(params["out"], kind),
        "device": params["device"],
        "resume": params["resume"],
        "overwrite": params["overwrite"],
        "allow_corpus_change": params["allow_corpus_change"],
    }


def charlm_options(f):
    """The flags of ``train charlm``."""
    d = CHARLM_DEFAULTS
    opts = [
        click.option(
            "--corpus",
            "corpus",
            multiple=True,
            type=click.Path(),
            callback=corpus_paths,
            help="UTF-8 text file or folder of .txt files, or a NAME under corpus/ (repeatable). "
            "Default: the bundled chatterbot-corpus.",
        ),
        click.option(
            "--lang", default=d["lang"], show_default=True, help="Language of the bundled corpus (when no --corpus)."
        ),
        click.option("--encoding", default=d["encoding"], show_default=True, help="Text encoding of the corpus files."),
        click.option(
            "--val-fraction",
            type=float,
            default=d["val_fraction"],
            show_default=True,
            help="Tail of the corpus held out for validation.",
        ),
        click.option("--val-file", type=click.Path(), help="Validate on this file instead of the tail."),
        click.option(
            "--out", help="Checkpoint folder (a name under checkpoints/ or a path). Default: checkpoints/charlm."
        ),
        click.option(
            "--preset",
            help="cpu, cpu-large, gpu, gpu-small, tiny (default: gpu on CUDA; "
            "on a CPU cpu, or cpu-large for --max-time of 5m or more).",
        ),
        click.option("--cell", type=click.Choice(["lstm", "gru", "rnn"]), help="Recurrent cell (preset: lstm)."),
        click.option("--layers", type=click.IntRange(1, 16)),
        click.option("--hidden", type=click.IntRange(1)),
        click.option("--embed", type=click.IntRange(1)),
        click.option("--dropout", type=click.FloatRange(0, 0.9)),
        click.option("--tie-weights/--no-tie-weights", default=None, help="Share the embedding with the output layer."),
        click.option(
            "--skip/--no-skip",
            default=None,
            help="Feed every layer's output to the head (skip connections; preset: on for CPU presets).",
        ),
        click.option("--batch-size", type=click.IntRange(1), help="Rows trained in parallel (global, over all ranks)."),
        click.option("--seq-len", type=click.IntRange(1), help="Characters per truncated-BPTT window."),
    ]
    return training_options(apply(f, opts))


@click.command("charlm", context_settings=CONTEXT)
@charlm_options
@click.pass_context
def train_charlm_cmd(ctx: click.Context, **kw) -> None:
    """Train the character-level LSTM language model (stateful truncated BPTT).

    \b
    chatrnn train charlm --corpus tinyshakespeare.txt --max-time 10m
    chatrnn train charlm --corpus notes/ --cell gru --layers 3 --hidden 384
    chatrnn train charlm --resume --max-time 20m        # continue checkpoints/charlm
    chatrnn train charlm --dry-run --lr 0.01            # every setting and where it came from
    """
    from chatrnn.train.charlm import MODEL_KEYS, CharLMOptions
    from chatrnn.train.launch import run_training

    opts = CharLMOptions(**_out(kw, "charlm"), **_split(ctx, MODEL_KEYS))
    run_training(
        "charlm", opts, dry_run=kw["dry_run"], reporter=reporter(kw["quiet"], kw["tensorboard"], opts.out.name)
    )


def _columns(ctx, param, value):
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(parts):
        raise click.BadParameter("give two column names, e.g. --columns question,answer")
    return tuple(parts)


def chat_options(f):
    """The flags of ``train chat``."""
    d = CHAT_DEFAULTS
    opts = [
        click.option(
            "--corpus",
            "corpus",
            multiple=True,
            type=click.Path(),
            callback=corpus_paths,
            help="Dialog corpus: CSV/TSV (Q,A columns), JSONL, Cornell folder, chatterbot YAML, "
            "or a NAME: transcript; a bare name is looked up under corpus/ (repeatable). "
            "Default: the bundled chatterbot-corpus.",
        ),
        click.option(
            "--format", "fmt", type=click.Choice(FORMATS), help="Corpus format (detected from the name by default)."
        ),
        click.option("--columns", callback=_columns, help="Question and answer columns/keys, e.g. Q,A."),
        click.option("--encoding", help="Text encoding of the corpus (default UTF-8)."),
        click.option(
            "--lang", default=d["lang"], show_default=True, help="Language of the bundled corpus (when no --corpus)."
        ),
        click.option(
            "--val-fraction",
            type=click.FloatRange(0, 1, min_open=True, max_open=True),
            default=d["val_fraction"],
            show_default=True,
            help="Every round(1/f)-th pair is held out for validation.",
        ),
        click.option("--val-file", type=click.Path(), help="Validate on this dialog file instead."),
        click.option(
            "--context-turns",
            type=click.IntRange(0, 64),
            default=d["context_turns"],
            show_default=True,
            help="Earlier turns fed to the encoder with each prompt.",
        ),
        click.option(
            "--max-len",
            type=click.IntRange(1),
            help="Drop pairs whose prompt or reply is longer (tokens; preset: 32).",
        ),
        click.option(
            "--vocab-size",
            type=click.IntRange(262),
            help="Subword vocabulary (preset: 2000, capped for small corpora).",
        ),
        click.option(
            "--tokenizer",
            type=click.Choice(["unigram", "bpe"]),
            default=d["tokenizer"],
            show_default=True,
            help="sentencepiece model type.",
        ),
        click.option(
            "--out", help="Checkpoint folder (a name under checkpoints/ or a path). Default: checkpoints/chat."
        ),
        click.option("--preset", help="cpu (default without a GPU), gpu, tiny."),
        click.option("--embed", type=click.IntRange(1)),
        click.option(
            "--hidden",
            type=click.IntRange(2),
            help="Decoder state width (even; the encoder splits it over two directions).",
        ),
        click.option("--layers", type=click.IntRange(1, 8)),
        click.option(
            "--attention",
            type=click.Choice(["dot", "general", "concat"]),
            help="Luong score function (preset: general).",
        ),
        click.option("--dropout", type=click.FloatRange(0, 0.9)),
        click.option("--tie-weights/--no-tie-weights", default=None, help="Share the embedding with the output layer."),
        click.option(
            "--input-feeding/--no-input-feeding",
            default=None,
            help="Feed the last attentional state to the decoder (preset's).",
        ),
        click.option(
            "--word-dropout",
            type=click.FloatRange(0, 0.9),
            help="Share of the decoder's reference tokens replaced by UNK in training (default 0).",
        ),
        click.option("--batch-size", type=click.IntRange(1), help="Pairs per step (global, over all ranks)."),
        click.option("--label-smoothing", type=click.FloatRange(0, 0.5), help="Preset: 0.1."),
        click.option(
            "--teacher-forcing",
            type=click.FloatRange(0, 1),
            default=d["teacher_forcing"],
            show_default=True,
            help="Share of batches decoded from the reference reply.",
        ),
        click.option(
            "--tf-decay",
            type=click.FloatRange(0, 1),
            default=d["tf_decay"],
            show_default=True,
            help="Multiply the teacher forcing ratio by this every epoch.",
        ),
        click.option(
            "--subword-sampling",
            type=click.FloatRange(0, 1),
            metavar="ALPHA",
            help="Subword regularisation: every batch's prompts segmented anew by sampling (unigram: "
            "smoothing ALPHA, 0.1 strong; BPE: merge dropout ALPHA). Default 0: off.",
        ),
    ]
    return training_options(apply(f, opts))


@click.command("chat", context_settings=CONTEXT)
@chat_options
@click.pass_context
def train_chat_cmd(ctx: click.Context, **kw) -> None:
    """Train the seq2seq GRU chatbot (bidirectional encoder, Luong attention decoder).

    \b
    chatrnn train chat --corpus ChatbotData.csv --max-time 10m
    chatrnn train chat --corpus movie_dialogs/ --context-turns 2 --attention concat
    chatrnn train chat --corpus chats.jsonl --tokenizer bpe --vocab-size 8000
    chatrnn train chat --resume --max-time 20m          # continue checkpoints/chat
    """
    from chatrnn.train.chat import MODEL_KEYS, ChatOptions
    from chatrnn.train.launch import run_training

    opts = ChatOptions(**_out(kw, "chat"), **_split(ctx, MODEL_KEYS))
    run_training("chat", opts, dry_run=kw["dry_run"], reporter=reporter(kw["quiet"], kw["tensorboard"], opts.out.name))


train.add_command(train_charlm_cmd)
train.add_command(train_chat_cmd)
