"""``chatrnn neurons``: which units of a char LM track which feature of a text (``chatrnn.neurons``),
as a table, JSON, or a self-contained HTML page (``chatrnn.neurons_html``). Torch loads inside."""

from __future__ import annotations

import click

from chatrnn.cli.options import CONTEXT
from chatrnn.terminal import shown_path, visible, visible_json


def read_text(path: str, encoding: str, max_chars: int) -> tuple[str, bool]:
    """The first ``max_chars`` characters of a file, with the corpus reader's one-line errors, and
    whether the file has more (so the report can say it read only a part)."""
    from pathlib import Path

    from chatrnn.corpus.text import TextSource, iter_text
    from chatrnn.errors import ChatrnnError

    p = Path(path).expanduser()
    if not p.is_file():
        raise ChatrnnError(f"{shown_path(p)} is not a file")
    parts, n, more = [], 0, False
    for chunk in iter_text(TextSource(shown_path(p), path=p), encoding):
        if not chunk:
            continue
        if n >= max_chars:
            more = True
            break
        part = chunk[: max_chars - n]
        parts.append(part)
        n += len(part)
        if len(part) < len(chunk):
            more = True
            break
    if not n:
        raise ChatrnnError(f"{shown_path(p)} is empty: give it some text to read")
    return "".join(parts), more


@click.command(context_settings=CONTEXT)
@click.option("--checkpoint", "-c", default=None, help="Char LM checkpoint (default: checkpoints/charlm).")
@click.option("--file", "file", required=True, type=click.Path(), help="Text to read (e.g. its validation text).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--html", "html_out", type=click.Path(), default=None, help="Write a self-contained HTML report here.")
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True, help="Units listed per feature.")
@click.option(
    "--feature",
    "features",
    multiple=True,
    metavar="NAME=REGEX",
    help="Add a feature: 1 on the characters inside a match of REGEX (repeatable).",
)
@click.option(
    "--max-chars",
    type=click.IntRange(1),
    default=200_000,
    show_default=True,
    help="Read at most this many characters of --file.",
)
@click.option(
    "--rank-by",
    type=click.Choice(["score", "auc"]),
    default="score",
    show_default=True,
    help="Order units by |correlation| or by single-unit AUC.",
)
@click.option(
    "--html-chars",
    type=click.IntRange(1),
    default=4000,
    show_default=True,
    help="Characters of the text shown in the HTML report.",
)
@click.option("--encoding", default="utf-8", show_default=True)
@click.option("--device", default="cpu", show_default=True)
def neurons(
    checkpoint, file, as_json, html_out, top, features, max_chars, rank_by, html_chars, encoding, device
) -> None:
    """Find the units that track features of a text: quotes, brackets, position in the line, word
    starts, newlines, case, digits, vowels, speaker-name lines, Hangul syllables and particles, and
    your own regexes. Each unit (layer:index, in h and the LSTM cell c) gets a correlation score
    (point-biserial / Spearman) and its single-unit AUC.

    \b
    chatrnn neurons --checkpoint shakespeare --file val.txt --top 5
    chatrnn neurons -c korean --file 대화.txt --html report.html
    chatrnn neurons -c code --file main.c --feature 'comment=/\\*.*?\\*/' --json
    """
    import torch

    from chatrnn.errors import ChatrnnError
    from chatrnn.infer import Generator
    from chatrnn.neurons import find_neurons, parse_features

    regex = parse_features(features)
    if html_out is not None:
        from pathlib import Path

        if not Path(html_out).expanduser().resolve().parent.is_dir():  # before minutes of work, not after
            raise ChatrnnError(f"cannot write {shown_path(html_out)}: its folder does not exist")
    text, more = read_text(file, encoding, max_chars)
    gen = Generator.load(checkpoint, device=device)
    with torch.inference_mode():
        trace, scores = find_neurons(gen, text, regex)
    dropped = len(text) - len(trace.text)
    if not trace.text:
        raise ChatrnnError(
            f"none of the {len(text):,} characters of {shown_path(file)} is one the model knows"
            " (a text in another script?): give it text like its corpus"
        )
    if html_out is not None:
        from chatrnn import neurons_html

        name = gen.folder.name if gen.folder is not None else "model"
        path = neurons_html.write(
            html_out,
            trace,
            scores,
            top=top,
            excerpt=html_chars,
            title=f"chatrnn neurons: {name} on {shown_path(file)}",
            by=rank_by,
        )
    if as_json:
        click.echo(visible_json(scores.to_json(top, rank_by)))
        return
    click.echo(
        f"{scores.chars:,} characters scored"
        + (f" (the first {len(text):,} of the file: --max-chars)" if more else "")
        + (f" ({dropped:,} the model never saw dropped)" if dropped else "")
        + f"; {trace.cell.upper()}, {trace.layers} layers x {trace.hidden} units"
    )
    for fs in scores.features:
        click.echo("")
        head = f"{fs.feature.name} ({fs.feature.kind}, {fs.positives:,} positive)"
        if fs.skipped:
            click.echo(visible(f"{head}: {fs.skipped}"))
            continue
        click.echo(visible(head))
        click.echo(f"  {'unit':>10}  {'state':>5}  {'score':>7}  {'auc':>6}")
        for u in scores.top(fs, top, rank_by):
            low = " (low)" if u.sign < 0 else ""
            click.echo(f"  {u.layer:>5}:{u.unit:<4}  {u.state:>5}  {u.score:+7.3f}  {u.auc:6.3f}{low}")
    if html_out is not None:
        click.echo(visible(f"\nwrote {shown_path(path)}"))
