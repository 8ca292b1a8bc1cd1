"""``chatrnn corpus check``: the corpus report training prints, without training."""

from __future__ import annotations

import click

from chatrnn.cli.options import CONTEXT, ChatrnnGroup, corpus_paths
from chatrnn.cli.train import FORMATS, _columns


@click.group(cls=ChatrnnGroup, context_settings=CONTEXT)
def corpus() -> None:
    """Look at corpora before training on them."""


@corpus.command("check", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, callback=corpus_paths)
@click.option(
    "--as",
    "kind",
    type=click.Choice(["auto", "dialog", "text"]),
    default="auto",
    show_default=True,
    help="Read as a dialog corpus (train chat) or as text (train charlm); auto: by the name and content.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Dialog format (detected by default).")
@click.option("--columns", callback=_columns, help="Question and answer columns/keys, e.g. Q,A.")
@click.option("--encoding", help="Text encoding (default UTF-8).")
@click.option("--context-turns", type=click.IntRange(0, 64), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per corpus.")
def check(paths, kind, fmt, columns, encoding, context_turns, as_json) -> None:
    """Read each corpus as training would and print what it found: the format, pairs read, kept and
    dropped (with the reasons and where), or for text the characters, lines and vocabulary.

    \b
    chatrnn corpus check qa.csv                 # a NAME under corpus/, or any path
    chatrnn corpus check corpus/cornell play.txt
    chatrnn corpus check ChatbotData.csv --json
    chatrnn corpus check notes/ --as text
    """
    import json

    from chatrnn.corpus.check import check_corpus

    for i, path in enumerate(paths):
        result = check_corpus(path, kind, fmt, columns, encoding, context_turns)
        if as_json:
            click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
            continue
        if i:
            click.echo("")
        for line in result.lines():
            click.echo(line)
