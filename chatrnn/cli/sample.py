"""The commands that read a trained checkpoint: ``generate`` (sample the char LM), ``eval`` (score a
file with either model) and ``info`` (describe a checkpoint). Torch loads inside the commands only.
"""

from __future__ import annotations

import sys

import click

from chatrnn.cli.options import CONTEXT


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


@click.command("eval", context_settings=CONTEXT)
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


@click.command(context_settings=CONTEXT)
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
