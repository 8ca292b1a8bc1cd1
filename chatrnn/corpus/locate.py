"""Where ``--corpus NAME`` points: a path as given, else a name under the corpus folder.

The corpus folder is ``$CHATRNN_CORPUS_DIR`` when set, else ``./corpus`` under the current
directory: in a checkout that is the project's own ``corpus/`` (the example of every format, see
``corpus/README.md``); an installed package ships no corpora, so there it is whatever folder of
corpora the user keeps, named by the variable. This mirrors ``--checkpoint`` and
``checkpoints/`` (:func:`chatrnn.checkpoint.resolve_checkpoint`). No heavy imports: the CLI's
option callbacks use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from chatrnn.errors import ChatrnnError

ENV = "CHATRNN_CORPUS_DIR"


def corpus_root() -> Path:
    return Path(os.environ.get(ENV) or "corpus")


def resolve_corpus(name: str | Path) -> Path:
    """``name`` itself when it exists; else ``<corpus root>/name``; else the one entry of the
    corpus root whose stem is ``name`` (``--corpus qa`` for ``corpus/qa.csv``).

    A name that is none of these is an error listing what the corpus folder holds, so a typo does
    not surface later as a format error about a file that is not there.
    """
    p = Path(name).expanduser()
    if p.exists():
        return p
    root = corpus_root()
    if not p.is_absolute():
        under = root / p
        if under.exists():
            return under
        if root.is_dir() and len(p.parts) == 1:
            stems = sorted(c for c in root.iterdir() if c.stem == p.name and not c.name.startswith("."))
            if len(stems) == 1:
                return stems[0]
            if len(stems) > 1:
                raise ChatrnnError(f"corpus {name} is ambiguous in {root}/: {', '.join(c.name for c in stems)}")
    if p.is_absolute() or len(p.parts) > 1:
        raise ChatrnnError(f"corpus {name} does not exist")
    known = ""
    if root.is_dir():
        names = sorted(c.name for c in root.iterdir() if not c.name.startswith(".") and c.name != "README.md")
        if names:
            known = f"; {root}/ has: {', '.join(names[:12])}" + (" ..." if len(names) > 12 else "")
    # the hint to set the variable only when it is not set: else it names what was used
    where = f"${ENV}" if os.environ.get(ENV) else f"set {ENV} to your corpus folder"
    raise ChatrnnError(f"corpus {name} does not exist, as a path or as a name under {root}/ ({where}){known}")


def absolute(path: str) -> str:
    """``path`` as an absolute path when it exists, for a checkpoint to record: ``--resume`` from
    another directory must still find the corpus it trained on. Anything else is kept as given."""
    p = Path(path).expanduser()
    return str(p.absolute()) if p.exists() else str(path)


def data_section(corpus, val_file: str | None, **rest) -> dict:
    """A checkpoint's ``data`` section: where its text came from (the corpus paths and validation
    file absolute, as :func:`absolute` makes them) plus how it was read (``rest``), so that
    ``--resume`` needs no ``--corpus``. Both models write one; each reads it back through its own
    settings resolution."""
    return {
        "corpus": [absolute(p) for p in corpus],
        **rest,
        "val_file": absolute(val_file) if val_file else None,
    }
