"""What every command module shares: the error-handling group class, option blocks, callbacks, and
:func:`given`, the one way the CLI tells a typed flag from a default.

No torch (nor anything heavy) here: ``chatrnn --help`` imports this module.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from chatrnn.decoding import RERANKERS, ReplySettings
from chatrnn.errors import ChatrnnError
from chatrnn.settings import TrainConfig

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
#: What torch's generators accept (``manual_seed``); a bigger integer was an OverflowError traceback.
SEED = click.IntRange(-(2**63), 2**64 - 1)
GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


class ChatrnnGroup(click.Group):
    """Turns library errors into click's one-line error and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ChatrnnError as e:
            from chatrnn.terminal import visible  # messages quote files and checkpoints: never obeyed

            raise click.ClickException(visible(str(e))) from None
        except BrokenPipeError:  # `chatrnn generate | head`: the reader left, which is fine
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
                from chatrnn.terminal import visible

                raise click.ClickException(visible(f"{e.strerror}: {e.filename or ''}".rstrip(": "))) from None
            raise


def given(ctx: click.Context) -> dict[str, Any]:
    """The parameters the user typed (or set through an environment variable), by name.

    A parameter left at its default is absent, whatever its value: the settings layers below the
    flags (checkpoint, preset, default) decide it. So ``--lang english`` typed on ``--resume`` wins
    over the checkpoint's language, and an untyped ``--lang`` does not.
    """
    return {name: value for name, value in ctx.params.items() if ctx.get_parameter_source(name) in GIVEN}


def apply(f: Callable, opts: list[Callable]) -> Callable:
    """Decorate ``f`` with ``opts`` so that ``--help`` lists them in this order."""
    for o in reversed(opts):
        f = o(f)
    return f


def duration(ctx, param, value):
    """``--max-time 10m`` -> seconds; a bad duration is a usage error."""
    if value is None:
        return None
    from chatrnn.units import parse_duration

    try:
        return parse_duration(value)
    except ChatrnnError as e:
        raise click.BadParameter(str(e)) from None


def corpus_paths(ctx, param, value):
    """``--corpus``: each a path, or a name under the corpus folder (``corpus/``, or
    ``$CHATRNN_CORPUS_DIR``: see :mod:`chatrnn.corpus.locate`); an unknown name is the usual one-line
    error (the group turns the ChatrnnError into it), not click's three-line usage error."""
    if not value:
        return value
    from chatrnn.corpus.locate import resolve_corpus

    return tuple(str(resolve_corpus(v)) for v in value)


def out_path(value: str | None, kind: str) -> Path:
    """``--out``: a path, or a name under the checkpoints root (default: the kind's folder)."""
    from chatrnn.checkpoint import checkpoints_root

    if value is None:
        return checkpoints_root() / kind
    p = Path(value)
    return p if (p.is_absolute() or os.sep in value or value.startswith(".")) else checkpoints_root() / value


def reporter(quiet: bool, tensorboard: str | None = None, run: str | None = None):
    """The run's reporter; with ``--tensorboard DIR`` it also logs to ``DIR/<run>`` (one folder per
    checkpoint, so ``tensorboard --logdir DIR`` compares runs)."""
    from chatrnn.train.progress import Reporter

    sinks = []
    if tensorboard:
        from chatrnn.train.tensorboard import TensorboardSink

        sinks.append(TensorboardSink(Path(tensorboard) / run if run else Path(tensorboard)))
    return Reporter(quiet=quiet, stream=sys.stdout, sinks=sinks)


def inference_device(name: str | None):
    """``--device`` of the commands that load a model: ``auto`` picks cuda, mps or cpu."""
    if name in (None, "", "auto"):
        from chatrnn.device import pick_device

        return pick_device(None)
    return name


class Finite(click.FloatRange):
    """A float range that refuses ``inf`` (and ``nan``): a checkpoint's config.json is strict JSON."""

    def convert(self, value, param, ctx):
        import math

        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


def training_options(f: Callable) -> Callable:
    """Run-control and optimiser flags, the same for both models (the names of TrainConfig's fields)."""
    d = TrainConfig
    return apply(
        f,
        [
            click.option("--lr", type=Finite(0, min_open=True), help="Peak learning rate (preset's)."),
            click.option(
                "--weight-decay",
                type=Finite(0),
                help=f"AdamW weight decay of the weight matrices (preset's; {d.weight_decay:g} without one).",
            ),
            click.option(
                "--warmup",
                "warmup_steps",
                type=click.IntRange(0),
                default=d.warmup_steps,
                show_default=True,
                help="Warmup steps.",
            ),
            click.option("--min-lr-ratio", type=click.FloatRange(0, 1), default=d.min_lr_ratio, show_default=True),
            click.option("--grad-clip", type=Finite(0, min_open=True), default=d.grad_clip, show_default=True),
            click.option(
                "--ema",
                type=click.FloatRange(0, 1, max_open=True),
                help="Average the weights (exponential moving average, this decay per step, e.g. 0.999); "
                "evaluations score the average. 0: off. Default: the preset's.",
            ),
            click.option("--max-steps", type=click.IntRange(1)),
            click.option("--epochs", type=Finite(0, min_open=True)),
            click.option(
                "--max-time",
                callback=duration,
                help="Wall-clock budget, e.g. 110s, 10m, 1h (default 3m when no limit is given; "
                "a resumed run keeps its own).",
            ),
            click.option(
                "--evals",
                type=click.IntRange(1),
                default=d.evals,
                show_default=True,
                help="Evaluations per run (the last at the end).",
            ),
            click.option("--eval-every", type=click.IntRange(1), help="Evaluate every N steps instead."),
            click.option("--seed", type=SEED, default=d.seed, show_default=True),
            click.option("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps."),
            click.option(
                "--threads",
                type=click.IntRange(1),
                envvar="CHATRNN_THREADS",
                help="CPU: threads that each train a slice of the batch (default: the cores).",
            ),
            click.option("--amp/--no-amp", default=None, help="bf16 autocast (default: on with CUDA)."),
            click.option("--compile", "compile", is_flag=True, help="torch.compile the model (first steps slower)."),
            click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped."),
            click.option(
                "--overwrite",
                is_flag=True,
                help="Replace the model already in --out with a new one (without it, a fresh run refuses).",
            ),
            click.option(
                "--allow-corpus-change",
                is_flag=True,
                help="With --resume: continue on a corpus other than the one the checkpoint was trained on "
                "(the best validation loss starts over).",
            ),
            click.option(
                "--dry-run",
                is_flag=True,
                help="Print the plan (device, ranks, model size, steps, memory) and every setting "
                "with where it came from (flag, checkpoint, preset, default), and exit.",
            ),
            click.option("--quiet", "-q", is_flag=True, help="No progress output."),
            click.option(
                "--tensorboard",
                type=click.Path(file_okay=False),
                help="Also log loss, val loss, perplexity, bpc, lr, grad norm and speed for TensorBoard "
                "under DIR/<checkpoint name> (needs: pip install 'chatrnn[tb]').",
            ),
        ],
    )


def decoding_options(f: Callable) -> Callable:
    """Decoding flags of the chat model, shared by ``reply`` and ``chat`` (each also read from
    ``CHATRNN_<NAME>``; defaults are :class:`ReplySettings`'s, ranges as the TUI's ``/set``)."""
    d = ReplySettings
    return apply(
        f,
        [
            click.option(
                "--beam",
                type=click.IntRange(1, 64),
                default=d.beam,
                show_default=True,
                envvar="CHATRNN_BEAM",
                help="Beam size (1 = greedy or sampling).",
            ),
            click.option(
                "--temperature",
                "-t",
                type=click.FloatRange(0, 10),
                default=d.temperature,
                show_default=True,
                envvar="CHATRNN_TEMPERATURE",
                help="0 = greedy; >0 samples (with --beam 1).",
            ),
            click.option(
                "--top-k",
                type=click.IntRange(0),
                default=d.top_k,
                show_default=True,
                envvar="CHATRNN_TOP_K",
                help="Sample from the k most likely (0 = all).",
            ),
            click.option(
                "--top-p",
                type=click.FloatRange(0, 1, min_open=True),
                default=d.top_p,
                show_default=True,
                envvar="CHATRNN_TOP_P",
                help="Nucleus sampling mass.",
            ),
            click.option(
                "--length-penalty",
                type=click.FloatRange(0, 5),
                default=d.length_penalty,
                show_default=True,
                envvar="CHATRNN_LENGTH_PENALTY",
                help="Beam search length normalisation (GNMT alpha).",
            ),
            click.option(
                "--nbest",
                type=click.IntRange(1, 64),
                default=d.nbest,
                show_default=True,
                envvar="CHATRNN_NBEST",
                help="Print this many beam alternatives, with scores.",
            ),
            click.option(
                "--rerank",
                type=click.Choice(RERANKERS),
                default=d.rerank,
                show_default=True,
                envvar="CHATRNN_RERANK",
                help="Rerank beam candidates: mmi = log p(reply|prompt) - lambda log p(reply) (Li et al. 2016).",
            ),
            click.option(
                "--mmi-lambda",
                type=click.FloatRange(0, 5),
                default=d.mmi_lambda,
                show_default=True,
                envvar="CHATRNN_MMI_LAMBDA",
                help="Weight of the reply's prompt-free likelihood in --rerank mmi.",
            ),
            click.option(
                "--no-repeat-ngram",
                type=click.IntRange(0, 20),
                default=d.no_repeat_ngram,
                show_default=True,
                envvar="CHATRNN_NO_REPEAT_NGRAM",
                help="Never repeat an n-gram of this size (0 = off).",
            ),
            click.option(
                "--min-len",
                type=click.IntRange(0),
                default=d.min_len,
                show_default=True,
                envvar="CHATRNN_MIN_LEN",
                help="Minimum reply tokens.",
            ),
            click.option(
                "--max-len",
                type=click.IntRange(1, 10000),
                default=d.max_len,
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
            click.option(
                "--rng-seed", type=SEED, default=None, envvar="CHATRNN_RNG_SEED", help="Make sampling repeatable."
            ),
        ],
    )


DECODING_NAMES = (
    "temperature",
    "top_k",
    "top_p",
    "beam",
    "length_penalty",
    "nbest",
    "no_repeat_ngram",
    "min_len",
    "max_len",
    "context_turns",
    "rng_seed",
    "rerank",
    "mmi_lambda",
)


def reply_settings(params: dict[str, Any]) -> ReplySettings:
    """The :class:`ReplySettings` of :func:`decoding_options`' values (already range-checked by click)."""
    return ReplySettings(**{k: params[k] for k in DECODING_NAMES})
