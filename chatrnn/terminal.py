"""Text from models and files made safe to write to a terminal.

A terminal obeys control characters: ``ESC [ 31 m`` recolours it, ``ESC ] 0 ; title BEL`` retitles
the window, the one-character C1 form ``U+009B`` does what ``ESC [`` does, and some terminals answer
queries by typing into the shell. A char LM trained on text holding such sequences emits them, and
a checkpoint's ``config.json`` can hold any string, so every string chatrnn did not write itself
goes through :func:`visible` before it reaches a terminal.

What is shown instead (the choice, documented in the README):

* C0 controls (U+0000-U+001F) except newline and tab: their Unicode "control pictures"
  (``ESC`` as ``␛``, ``BEL`` as ``␇``, ``CR`` as ``␍``), one cell wide and clearly not text;
* DEL (U+007F) as ``␡``;
* C1 controls (U+0080-U+009F), which have no pictures, as the Python escape ``\\x9b``;
* lone surrogates (from undecodable file names) as ``\\udcff``: they cannot be encoded as UTF-8,
  so writing them raw would crash the stream.

This is done whether or not the output is a terminal: click strips only CSI sequences when piped,
so an OSC sequence would pass, and a file or pipe read later with ``cat`` reaches a terminal
anyway. ``--raw`` on ``generate`` and ``reply`` is the way to get the exact text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["CONTROL_CHARS", "is_visible", "shown_path", "visible", "visible_json"]


def _table() -> dict[int, str]:
    table: dict[int, str] = {}
    for c in range(0x20):
        if c not in (0x09, 0x0A):
            table[c] = chr(0x2400 + c)
    table[0x7F] = "\u2421"
    for c in range(0x80, 0xA0):
        table[c] = f"\\x{c:02x}"
    for c in range(0xD800, 0xE000):
        table[c] = f"\\u{c:04x}"
    return table


_VISIBLE = _table()
#: Every code point :func:`visible` replaces.
CONTROL_CHARS = frozenset(chr(c) for c in _VISIBLE)


def visible(text: str) -> str:
    """``text`` with every terminal control character shown as itself instead of obeyed.

    Newline and tab are kept; printable text (any language, emoji) is returned unchanged.
    ``str.translate`` so a char LM's per-character stream pays a dictionary look-up, not a regex.
    """
    return text.translate(_VISIBLE)


def is_visible(text: str) -> bool:
    """True when ``text`` holds nothing :func:`visible` would change (no control characters)."""
    return not any(c in CONTROL_CHARS for c in text)


_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0), *range(0xD800, 0xE000))}


def visible_json(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)`` that is also safe on a terminal.

    JSON escapes only U+0000-U+001F; DEL, C1 controls and lone surrogates would pass raw. They can
    only occur inside JSON strings, so escaping them as ``\\u009b`` keeps the document valid and the
    data exactly the same for whoever parses it.
    """
    return json.dumps(value, ensure_ascii=False).translate(_JSON_ESCAPES)


def shown_path(path: str | Path) -> str:
    """A path as printable text. A file name that is not valid UTF-8 reaches Python as lone
    surrogates, which crash every print, log line and JSON file that names it; its bad bytes show
    as ``\\xff`` instead, and control characters as :func:`visible` shows them."""
    text = str(path)
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name decoding produced
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return visible(text)  # and a name holding ESC shows it, in progress lines and reports too
