"""The ``chatrnn`` command line: a thin layer of click over the library.

Nothing heavy is imported at module level: ``chatrnn --help`` must stay instant, so torch and the
models are imported inside the commands that need them.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import click

from chatrnn import __version__
from chatrnn.errors import ChatrnnError


class ChatrnnGroup(click.Group):
    """Turns library errors into click's one-line error and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ChatrnnError as e:
            raise click.ClickException(str(e)) from None
        except BrokenPipeError:  # `chatrnn generate | head`: the reader left, which is fine
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
                raise click.ClickException(f"{e.strerror}: {e.filename or ''}".rstrip(": ")) from None
            raise


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=ChatrnnGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="chatrnn")
def cli() -> None:
    """Train recurrent language models on your own text and talk to them in the terminal.

    \b
    Quick start:
      chatrnn train                 # both models on the bundled corpus, a few minutes on a CPU
      chatrnn generate --seed "hello"
      chatrnn chat
    """


def _duration(ctx, param, value):
    if value is None:
        return None
    from chatrnn.units import parse_duration

    try:
        return parse_duration(value)
    except ChatrnnError as e:
        raise click.BadParameter(str(e)) from None


def _out_path(value: str | None, kind: str) -> Path:
    from chatrnn.checkpoint import checkpoints_root

    if value is None:
        return checkpoints_root() / kind
    p = Path(value)
    return p if (p.is_absolute() or os.sep in value or value.startswith(".")) else checkpoints_root() / value


def _reporter(quiet: bool):
    from chatrnn.train.progress import Reporter

    return Reporter(quiet=quiet, stream=sys.stdout)


def _limits(max_steps, epochs, max_time, default_time: float | None):
    if max_steps is None and epochs is None and max_time is None:
        max_time = default_time
    return max_steps, epochs, max_time


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------
@cli.group(cls=ChatrnnGroup, invoke_without_command=True, context_settings=CONTEXT)
@click.option(
    "--corpus",
    "corpus",
    multiple=True,
    type=click.Path(),
    help="Corpus file or folder (repeatable). Default: the bundled chatterbot-corpus.",
)
@click.option("--lang", default="english", show_default=True, help="Language of the bundled corpus.")
@click.option(
    "--max-time", callback=_duration, default="5m", show_default=True, help="Budget for both models together."
)
@click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps.")
@click.option("--seed", type=int, default=1337, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option(
    "--dry-run", is_flag=True, help="Print the plan of both runs (device, ranks, model sizes, memory) and exit."
)
@click.pass_context
def train(ctx: click.Context, corpus, lang, max_time, device, seed, quiet, dry_run) -> None:
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
        list(corpus), lang=lang, max_time=max_time, device=device, seed=seed, reporter=_reporter(quiet), dry_run=dry_run
    )


def _apply(f, opts):
    for o in reversed(opts):
        f = o(f)
    return f


def training_options(f):
    """Run-control and optimiser flags, the same for both models (read by :func:`train_config_from`)."""
    return _apply(
        f,
        [
            click.option(
                "--lr",
                type=click.FloatRange(0, min_open=True),
                default=None,
                help="Peak learning rate (preset's by default).",
            ),
            click.option(
                "--weight-decay",
                type=click.FloatRange(0),
                default=None,
                help="AdamW weight decay of the weight matrices (preset's; 0.01 without one).",
            ),
            click.option(
                "--warmup", "warmup_steps", type=click.IntRange(0), default=50, show_default=True, help="Warmup steps."
            ),
            click.option("--min-lr-ratio", type=click.FloatRange(0, 1), default=0.05, show_default=True),
            click.option("--grad-clip", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True),
            click.option(
                "--ema",
                type=click.FloatRange(0, 1, max_open=True),
                default=None,
                help="Average the weights (exponential moving average, this decay per step, e.g. 0.999); "
                "evaluations score the average. 0: off. Default: the preset's.",
            ),
            click.option("--max-steps", type=click.IntRange(1), default=None),
            click.option("--epochs", type=click.FloatRange(0, min_open=True), default=None),
            click.option(
                "--max-time",
                callback=_duration,
                default=None,
                help="Wall-clock budget, e.g. 110s, 10m, 1h (default 3m when no limit is given).",
            ),
            click.option(
                "--evals",
                type=click.IntRange(1),
                default=6,
                show_default=True,
                help="Evaluations per run (the last at the end).",
            ),
            click.option("--eval-every", type=click.IntRange(1), default=None, help="Evaluate every N steps instead."),
            click.option("--seed", type=int, default=1337, show_default=True),
            click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps."),
            click.option(
                "--threads",
                type=click.IntRange(1),
                default=None,
                envvar="CHATRNN_THREADS",
                help="CPU, char LM: threads that each train a slice of the batch (default: the cores).",
            ),
            click.option("--amp/--no-amp", default=None, help="bf16 autocast (default: on with CUDA)."),
            click.option(
                "--compile", "compile_model", is_flag=True, help="torch.compile the model (first steps slower)."
            ),
            click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped."),
            click.option(
                "--dry-run", is_flag=True, help="Print the plan (device, ranks, model size, steps, memory) and exit."
            ),
            click.option("--quiet", "-q", is_flag=True, help="No progress output."),
        ],
    )


def train_config_from(kw: dict):
    """The :class:`TrainConfig` of :func:`training_options`' flags; 3 minutes when no limit is given
    (a resumed run keeps its stored limits unless new ones are typed)."""
    from chatrnn.train.trainer import TrainConfig

    max_steps, epochs, max_time = _limits(
        kw["max_steps"], kw["epochs"], kw["max_time"], None if kw["resume"] else 180.0
    )
    return TrainConfig(
        max_steps=max_steps,
        epochs=epochs,
        max_time=max_time,
        lr=kw["lr"] or TrainConfig.lr,
        min_lr_ratio=kw["min_lr_ratio"],
        warmup_steps=kw["warmup_steps"],
        weight_decay=kw["weight_decay"],
        grad_clip=kw["grad_clip"],
        evals=kw["evals"],
        eval_every=kw["eval_every"],
        seed=kw["seed"],
        amp=kw["amp"],
        threads=kw["threads"],
        compile=kw["compile_model"],
        ema=kw["ema"],
    )


def charlm_options(f):
    """The flags of ``train charlm``."""
    return training_options(
        _apply(
            f,
            [
                click.option(
                    "--corpus",
                    "corpus",
                    multiple=True,
                    type=click.Path(),
                    help="UTF-8 text file or folder of .txt files (repeatable). "
                    "Default: the bundled chatterbot-corpus.",
                ),
                click.option(
                    "--lang",
                    default="english",
                    show_default=True,
                    help="Language of the bundled corpus (when no --corpus).",
                ),
                click.option(
                    "--encoding", default="utf-8", show_default=True, help="Text encoding of the corpus files."
                ),
                click.option(
                    "--val-fraction",
                    type=float,
                    default=0.1,
                    show_default=True,
                    help="Tail of the corpus held out for validation.",
                ),
                click.option(
                    "--val-file", type=click.Path(), default=None, help="Validate on this file instead of the tail."
                ),
                click.option(
                    "--out",
                    default=None,
                    help="Checkpoint folder (a name under checkpoints/ or a path). Default: checkpoints/charlm.",
                ),
                click.option(
                    "--preset",
                    default=None,
                    help="cpu, cpu-large, gpu, gpu-small, tiny (default: gpu on CUDA; "
                    "on a CPU cpu, or cpu-large for --max-time of 5m or more).",
                ),
                click.option(
                    "--cell",
                    type=click.Choice(["lstm", "gru", "rnn"]),
                    default=None,
                    help="Recurrent cell (preset: lstm).",
                ),
                click.option("--layers", type=click.IntRange(1, 16), default=None),
                click.option("--hidden", type=click.IntRange(1), default=None),
                click.option("--embed", type=click.IntRange(1), default=None),
                click.option("--dropout", type=click.FloatRange(0, 0.9), default=None),
                click.option(
                    "--tie-weights/--no-tie-weights", default=None, help="Share the embedding with the output layer."
                ),
                click.option(
                    "--skip/--no-skip",
                    default=None,
                    help="Feed every layer's output to the head (skip connections; preset: on for CPU presets).",
                ),
                click.option(
                    "--batch-size",
                    type=click.IntRange(1),
                    default=None,
                    help="Rows trained in parallel (global, over all ranks).",
                ),
                click.option(
                    "--seq-len", type=click.IntRange(1), default=None, help="Characters per truncated-BPTT window."
                ),
            ],
        )
    )


def build_charlm_options(kw: dict):
    from chatrnn.train.charlm import CharLMOptions

    model = {k: kw[k] for k in ("cell", "layers", "hidden", "embed", "dropout", "tie_weights", "skip")}
    return CharLMOptions(
        out=_out_path(kw["out"], "charlm"),
        corpus=list(kw["corpus"]),
        lang=kw["lang"],
        encoding=kw["encoding"],
        val_fraction=kw["val_fraction"],
        val_file=kw["val_file"],
        preset=kw["preset"],
        model=model,
        batch_size=kw["batch_size"],
        seq_len=kw["seq_len"],
        train=train_config_from(kw),
        lr_given=kw["lr"] is not None,
        device=kw["device"],
        resume=kw["resume"],
    )


@train.command("charlm", context_settings=CONTEXT)
@charlm_options
def train_charlm_cmd(**kw) -> None:
    """Train the character-level LSTM language model (stateful truncated BPTT).

    \b
    chatrnn train charlm --corpus tinyshakespeare.txt --max-time 10m
    chatrnn train charlm --corpus notes/ --cell gru --layers 3 --hidden 384
    chatrnn train charlm --resume --max-time 20m        # continue checkpoints/charlm
    """
    from chatrnn.train.launch import run_training

    run_training("charlm", build_charlm_options(kw), dry_run=kw["dry_run"], reporter=_reporter(kw["quiet"]))


# ---------------------------------------------------------------------------------------------
# generate / eval / info
# ---------------------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.option("--seed", "seed_text", default="", help="Text to prime the model with (unknown characters are skipped).")
@click.option("--length", "-n", type=click.IntRange(0), default=500, show_default=True, help="Characters to generate.")
@click.option(
    "--temperature",
    "-t",
    type=click.FloatRange(0),
    default=0.8,
    show_default=True,
    envvar="CHATRNN_TEMPERATURE",
    help="0 = greedy.",
)
@click.option(
    "--top-k",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    envvar="CHATRNN_TOP_K",
    help="Keep the k most likely (0 = all).",
)
@click.option(
    "--top-p",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    envvar="CHATRNN_TOP_P",
    help="Nucleus sampling mass.",
)
@click.option("--rng-seed", type=int, default=None, help="Make sampling repeatable.")
@click.option("--num-samples", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--checkpoint",
    "-c",
    default=None,
    help="Checkpoint name under checkpoints/ or a path. Default: checkpoints/charlm.",
)
@click.option("--echo/--no-echo", default=True, show_default=True, help="Print the seed before the continuation.")
@click.option("--device", default="cpu", show_default=True)
def generate(seed_text, length, temperature, top_k, top_p, rng_seed, num_samples, checkpoint, echo, device) -> None:
    """Sample text from the char LM, streamed as it is produced.

    \b
    chatrnn generate --seed "ROMEO:" --temperature 0.7 --length 300
    chatrnn generate --seed "안녕" --checkpoint korean --top-p 0.9
    """
    from chatrnn.infer import Generator

    gen = Generator.load(checkpoint, device=device)
    _, unknown = gen.prepare_seed(seed_text)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        click.echo(f"note: skipping seed characters this model never saw: {shown}", err=True)
    out = sys.stdout
    for i in range(num_samples):
        if i:
            out.write("\n\n")
        if echo:
            out.write(seed_text)
        out.flush()
        rs = None if rng_seed is None else rng_seed + i
        for tok in gen.stream(seed_text, length=length, temperature=temperature, top_k=top_k, top_p=top_p, rng_seed=rs):
            out.write(tok.text)
            out.flush()
    out.write("\n")
    out.flush()


@cli.command("eval", context_settings=CONTEXT)
@click.option("--checkpoint", "-c", default=None, help="Checkpoint (default: checkpoints/charlm).")
@click.option("--file", "file", required=True, type=click.Path(), help="Text to score (char LM) or pairs (chat).")
@click.option("--encoding", default="utf-8", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--device", default=None)
@click.option("--format", "fmt", default=None, help="Dialog format of --file for a chat checkpoint.")
def eval_cmd(checkpoint, file, encoding, as_json, device, fmt) -> None:
    """Score a checkpoint on a file: loss (nats/token), perplexity, bits per character.

    \b
    chatrnn eval --checkpoint charlm --file held_out.txt --json
    chatrnn eval --checkpoint chat --file pairs.csv --json
    """
    import json

    from chatrnn.evaluate import checkpoint_kind, evaluate_charlm_file

    kind = checkpoint_kind(checkpoint)
    if kind == "chat":
        from chatrnn.evaluate_chat import evaluate_chat_file

        m = evaluate_chat_file(checkpoint, file, fmt=fmt, encoding=encoding, device=device)
    else:
        m = evaluate_charlm_file(checkpoint, file, encoding=encoding, device=device)
    if as_json:
        click.echo(json.dumps(m, ensure_ascii=False))
    else:
        for k, v in m.items():
            click.echo(f"{k:>16}: {v:.4f}" if isinstance(v, float) else f"{k:>16}: {v}")


@cli.command(context_settings=CONTEXT)
@click.argument("checkpoint", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(checkpoint, as_json) -> None:
    """Describe a checkpoint: kind, parameters, config, best val loss, corpus, training time."""
    import json

    from chatrnn.evaluate import checkpoint_summary
    from chatrnn.units import format_duration

    s = checkpoint_summary(checkpoint)
    if as_json:
        click.echo(json.dumps(s, ensure_ascii=False))
        return
    t = s["training"]
    click.echo(f"checkpoint   {s['path']}")
    click.echo(f"kind         {s['kind']}")
    click.echo(f"parameters   {s['parameters']:,}")
    click.echo("model        " + ", ".join(f"{k}={v}" for k, v in s["model"].items()))
    if s["best_val_loss"] is not None:
        click.echo(f"best val     {s['best_val_loss']:.4f} nats/token")
    if t:
        click.echo(
            f"trained      {t.get('steps', 0):,} steps, {t.get('epochs', 0)} "
            f"epochs, {t.get('tokens', 0):,} {t.get('unit', 'tokens')}, "
            f"{format_duration(t.get('train_time_s', 0))} on {t.get('device', '?')}"
            + ("" if t.get("finished", True) else " (unfinished: resume with --resume)")
        )
    if s["corpus"]:
        click.echo("corpus       " + ", ".join(f"{k}={v}" for k, v in s["corpus"].items()))


# Commands of the chat model and the TUI live in their own modules; importing them registers them.
from chatrnn import cli_chat, cli_tui  # noqa: E402,F401


def main() -> None:
    cli(prog_name="chatrnn")


if __name__ == "__main__":
    main()
