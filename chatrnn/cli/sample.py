"""The commands that read a trained checkpoint: ``generate`` (sample the char LM), ``eval`` (score a
file with either model) and ``info`` (describe a checkpoint). Torch loads inside the commands only.
"""

from __future__ import annotations

import sys

import click

from chatrnn.cli.options import CONTEXT, SEED, out_path
from chatrnn.terminal import visible, visible_json


def adapt_options(f):
    """Dynamic evaluation's flags (``chatrnn.adapt``), shared by ``eval --adapt`` and ``generate --adapt``."""
    from chatrnn.adapt import RULES, AdaptSettings

    d = AdaptSettings()
    for opt in reversed(
        [
            click.option("--adapt-lr", type=float, default=d.lr, show_default=True, help="Adaptation step size (eta)."),
            click.option(
                "--adapt-decay",
                type=float,
                default=d.decay,
                show_default=True,
                help="Pull back toward the trained weights.",
            ),
            click.option(
                "--adapt-seq", type=click.IntRange(2), default=d.seq, show_default=True, help="Characters per update."
            ),
            click.option(
                "--adapt-rule",
                type=click.Choice(RULES),
                default=d.rule,
                show_default=True,
                help="rms (Krause et al.) or sgd.",
            ),
            click.option(
                "--adapt-stats",
                type=click.Path(),
                default=None,
                help="Training-like text for the rms rule's gradient statistics (default: the checkpoint's own).",
            ),
        ]
    ):
        f = opt(f)
    return f


def _adapt_settings(lr, decay, seq, rule, seed=0):
    from chatrnn.adapt import AdaptSettings

    return AdaptSettings(lr=lr, decay=decay, seq=seq, rule=rule, seed=seed).check()


@click.command(context_settings=CONTEXT)
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
@click.option("--rng-seed", type=SEED, default=None, help="Make sampling repeatable.")
@click.option("--num-samples", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--checkpoint",
    "-c",
    default=None,
    help="Checkpoint name under checkpoints/ or a path. Default: checkpoints/charlm.",
)
@click.option("--echo/--no-echo", default=True, show_default=True, help="Print the seed before the continuation.")
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--raw",
    is_flag=True,
    help="Write the text exactly as generated, control characters included (for pipes); "
    "by default they are shown visibly (ESC as \u241b) so model output cannot drive the terminal.",
)
@click.option(
    "--adapt",
    "adapt_file",
    type=click.Path(),
    default=None,
    help="Adapt the model to this text first (dynamic evaluation; the checkpoint on disk is untouched).",
)
@adapt_options
@click.option(
    "--save-adapted",
    type=click.Path(),
    default=None,
    help="--adapt: write the adapted model to this new folder (a bare name goes under the checkpoints root, as --out).",
)
def generate(
    seed_text,
    length,
    temperature,
    top_k,
    top_p,
    rng_seed,
    num_samples,
    checkpoint,
    echo,
    device,
    raw,
    adapt_file,
    adapt_lr,
    adapt_decay,
    adapt_seq,
    adapt_rule,
    adapt_stats,
    save_adapted,
) -> None:
    """Sample text from the char LM, streamed as it is produced.

    \b
    chatrnn generate --seed "ROMEO:" --temperature 0.7 --length 300
    chatrnn generate --seed "안녕" --checkpoint korean --top-p 0.9
    chatrnn generate --adapt my_letters.txt --save-adapted mine --seed "Dear"
    """
    from chatrnn.infer import Generator

    if save_adapted is not None and adapt_file is None:
        raise click.UsageError("--save-adapted needs --adapt FILE")
    if save_adapted is not None:  # like --out: `-c NAME`, the chat picker and `info` then find it
        save_adapted = out_path(save_adapted, "charlm")
    gen = Generator.load(checkpoint, device=device)
    if adapt_file is not None:
        settings = _adapt_settings(adapt_lr, adapt_decay, adapt_seq, adapt_rule)
        if save_adapted is not None:
            gen.check_adapted_target(save_adapted)  # before minutes of work, not after
        r = gen.adapt(adapt_file, settings, stats_file=adapt_stats)
        click.echo(
            visible(
                f"adapted to {adapt_file}: {r.loss_static:.4f} -> {r.loss:.4f} nats/char over {r.chars:,} chars "
                f"({r.seconds:.1f}s)"
            ),
            err=True,
        )
        if save_adapted is not None:
            click.echo(visible(f"saved the adapted model to {gen.save_adapted(save_adapted)}"), err=True)
    _, unknown = gen.prepare_seed(seed_text)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        click.echo(f"note: skipping seed characters this model never saw: {shown}", err=True)
    out = sys.stdout
    show = (lambda s: s) if raw else visible
    for i in range(num_samples):
        if i:
            out.write("\n\n")
        if echo:
            out.write(show(seed_text))
        out.flush()
        rs = None if rng_seed is None else rng_seed + i
        for tok in gen.stream(seed_text, length=length, temperature=temperature, top_k=top_k, top_p=top_p, rng_seed=rs):
            out.write(show(tok.text))
            out.flush()
    out.write("\n")
    out.flush()


@click.command("eval", context_settings=CONTEXT)
@click.option("--checkpoint", "-c", default=None, help="Checkpoint (default: checkpoints/charlm).")
@click.option("--file", "file", required=True, type=click.Path(), help="Text to score (char LM) or pairs (chat).")
@click.option("--encoding", default="utf-8", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--device", default=None)
@click.option("--format", "fmt", default=None, help="Dialog format of --file for a chat checkpoint.")
@click.option(
    "--adapt", is_flag=True, help="Char LM: dynamic evaluation (learn while reading; each part scored before)."
)
@adapt_options
@click.option("--seed", type=SEED, default=0, show_default=True, help="--adapt: torch's seed (runs are exact).")
def eval_cmd(
    checkpoint,
    file,
    encoding,
    as_json,
    device,
    fmt,
    adapt,
    adapt_lr,
    adapt_decay,
    adapt_seq,
    adapt_rule,
    adapt_stats,
    seed,
) -> None:
    """Score a checkpoint on a file: loss (nats/token), perplexity, bits per character.

    \b
    chatrnn eval --checkpoint charlm --file held_out.txt --json
    chatrnn eval --checkpoint chat --file pairs.csv --json
    chatrnn eval --checkpoint charlm --file held_out.txt --adapt
    """

    from chatrnn.evaluate import checkpoint_kind, evaluate_charlm_file

    kind = checkpoint_kind(checkpoint)
    if kind == "chat":
        from chatrnn.evaluate_chat import evaluate_chat_file

        if adapt:
            raise click.UsageError("--adapt works with char LM checkpoints only")
        m = evaluate_chat_file(checkpoint, file, fmt=fmt, encoding=encoding, device=device)
    else:
        settings = _adapt_settings(adapt_lr, adapt_decay, adapt_seq, adapt_rule, seed) if adapt else None
        m = evaluate_charlm_file(
            checkpoint, file, encoding=encoding, device=device, adapt=settings, adapt_stats=adapt_stats
        )
    if as_json:
        click.echo(visible_json(m))
    elif "loss_static" in m:
        _print_adapted(m)
    else:
        for k, v in m.items():
            _echo(f"{k:>16}: {v:.4f}" if isinstance(v, float) else f"{k:>16}: {v}")


def _print_adapted(m: dict) -> None:
    """Static and adapted figures side by side."""
    click.echo(f"{'':>12}  {'static':>9}  {'adapted':>9}  {'change':>9}")
    for k, label in (("loss", "nats/char"), ("bpc", "bits/char"), ("perplexity", "perplexity")):
        a, b = m[f"{k}_static"], m[k]
        click.echo(f"{label:>12}  {a:9.4f}  {b:9.4f}  {b - a:+9.4f}")
    s = m["adapt"]
    click.echo(
        f"{m['chars']:,} chars, {m.get('unknown_chars', 0)} unknown dropped · rule {s['rule']}, lr {s['lr']:g}, "
        f"decay {s['decay']:g}, seq {s['seq']} · {s['seconds']:.1f}s"
    )
    if s.get("stats"):
        click.echo(visible(f"gradient statistics: {s['stats']}"))
    click.echo(visible(f"checkpoint {m['checkpoint']}"))


@click.command(context_settings=CONTEXT)
@click.argument("checkpoints", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (one per line for several checkpoints).")
@click.option("--plot", is_flag=True, help="Draw train and val loss (several checkpoints: one plot, to compare).")
@click.option(
    "--x", "x_axis", type=click.Choice(["step", "time"]), default="step", show_default=True, help="--plot's x axis."
)
@click.option("--height", type=click.IntRange(8, 200), default=22, show_default=True, help="--plot's height in lines.")
def info(checkpoints, as_json, plot, x_axis, height) -> None:
    """Describe checkpoints: kind, parameters, config, best val loss, corpus, training time.

    \b
    chatrnn info shakespeare10m
    chatrnn info charlm --plot                 # train and val loss against steps
    chatrnn info run-a run-b --plot --x time   # two runs on one plot, against training time
    """
    import shutil

    from chatrnn.evaluate import checkpoint_summary

    if as_json and plot:
        raise click.UsageError("--plot draws for a terminal; leave out --json")
    names = list(checkpoints) or [None]
    summaries = [checkpoint_summary(name) for name in names]
    for i, s in enumerate(summaries):
        if as_json:
            click.echo(visible_json(s))
            continue
        if i:
            click.echo("")
        _describe(s)
    if plot:
        from pathlib import Path

        from chatrnn.plot import load_curve, render

        paths = [Path(s["path"]) for s in summaries]
        labels = [p.name for p in paths]  # short legend entries; the parent too where names clash
        labels = [f"{p.parent.name}/{p.name}" if labels.count(p.name) > 1 else p.name for p in paths]
        curves = [load_curve(s["path"], label) for s, label in zip(summaries, labels)]
        for c in curves:
            if not len(c):
                click.echo(visible(f"{c.label}: no evaluations in its metrics.jsonl yet"), err=True)
        width = max(40, min(160, shutil.get_terminal_size((100, 24)).columns))
        click.echo("")
        click.echo(render(curves, x=x_axis, width=width, height=height, color=sys.stdout.isatty()))


def _describe(s: dict) -> None:
    # every value here comes from the checkpoint's config.json: shown, never obeyed by the terminal
    from chatrnn.units import format_duration

    t = s["training"]
    _echo(f"checkpoint   {s['path']}")
    _echo(f"kind         {s['kind']}")
    _echo(f"parameters   {s['parameters']:,}")
    _echo("model        " + ", ".join(f"{k}={v}" for k, v in s["model"].items()))
    if s["best_val_loss"] is not None:
        per = "char" if s["kind"] == "charlm" else "token"
        _echo(f"best val     {s['best_val_loss']:.4f} nats/{per}")
    if t:
        _echo(
            f"trained      {t.get('steps', 0):,} steps, {t.get('epochs', 0)} "
            f"epochs, {t.get('tokens', 0):,} {t.get('unit', 'tokens')}, "
            f"{format_duration(t.get('train_time_s', 0))} on {t.get('device', '?')}"
            + ("" if t.get("finished", True) else " (unfinished: resume with --resume)")
        )
    if s["corpus"]:
        _echo("corpus       " + ", ".join(f"{k}={v}" for k, v in s["corpus"].items()))


def _echo(line: str) -> None:
    click.echo(visible(line))
