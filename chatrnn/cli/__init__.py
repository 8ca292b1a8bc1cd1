"""The ``chatrnn`` command line: a thin layer of click over the library.

This module holds the group and registers every command, in one place; the commands live in one
module per family (``train``, ``sample``: generate/eval/info, ``chat``: reply/chat) and share
``options``. They never import this module back, so ``python -m chatrnn.cli`` and the ``chatrnn``
script see the same commands. Nothing heavy is imported at module level: ``chatrnn --help`` must
stay instant, so torch and the models are imported inside the commands that need them.
"""

from __future__ import annotations

import click

from chatrnn import __version__
from chatrnn.cli.chat import chat, reply
from chatrnn.cli.corpus import corpus
from chatrnn.cli.neurons import neurons
from chatrnn.cli.options import CONTEXT, ChatrnnGroup
from chatrnn.cli.sample import eval_cmd, generate, info
from chatrnn.cli.train import train


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


for _command in (train, generate, eval_cmd, info, reply, chat, corpus, neurons):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="chatrnn")
