"""The Neurons view of the Generate tab: the text coloured by one unit's activation, live.

Karpathy's picture of char-rnn cells that track quotes or line length, in the terminal: every
character gets the background of one unit's value when the model read it (blue negative, white
near zero, red positive); a strip under the text shows, at the cursor, that unit's hidden and cell
state and its gates (LSTM i, f, o and g; GRU r, z, n). The unit is typed (``layer:unit``, with an
optional state: ``1:42:c``) or picked from the units ranked per text feature by
:mod:`chatrnn.neurons`, computed in a worker on the checkpoint's own validation text and cached
next to the weights (``neurons.json``), so a second visit is instant.

Pure display and files here (numpy, no torch): the probe values come from the model's stream
(``probe=True``) through the pane, and the ranking through :mod:`chatrnn.tui.loading`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from chatrnn.errors import ChatrnnError

#: Characters the view keeps (with every unit's values); older ones scroll away in blocks. At
#: float16 a 4-layer, 512-unit LSTM keeps 24 KB per character, so this is ~100 MB at most.
MAX_CHARS = 4000
TRIM = 1000
#: The cache file written next to the checkpoint's weights.
CACHE_FILE = "neurons.json"
CACHE_VERSION = 1
#: Characters of validation text the ranking reads: enough for stable AUCs, seconds on a CPU.
RANK_CHARS = 20_000
#: Fewer characters than this of generated text are too few to rank units on.
MIN_RANK_CHARS = 300
#: Ranked units listed per feature.
PER_FEATURE = 3
#: A feature present at fewer characters than this (or this share of the text) is too rare for
#: its best unit to be the one shown by default.
MIN_POSITIVES = 20
MIN_POSITIVE_SHARE = 0.005

GATE_NAMES = {"i": "input", "f": "forget", "o": "output", "g": "cell input", "r": "reset", "z": "update", "n": "new"}
#: States bounded in [0, 1] (sigmoid gates): coloured on [0, 1], not [-1, 1].
UNIT_INTERVAL = {"i", "f", "o", "r", "z"}
#: States bounded in [-1, 1] (tanh); anything else (the cell state c) is scaled by its extremes.
BOUNDED = {"h", "g", "n"}


# ---------------------------------------------------------------------------------------------
# choosing a unit


@dataclass(frozen=True)
class Unit:
    layer: int
    unit: int
    state: str = "h"

    def label(self) -> str:
        return f"{self.layer}:{self.unit}" + ("" if self.state == "h" else f":{self.state}")


_UNIT = re.compile(r"^\s*[Ll]?(\d+)\s*[:.,/ ]\s*[Uu#]?(\d+)\s*(?:[:.,/ ]\s*([A-Za-z]+))?\s*$")


def parse_unit(raw: str, layers: int | None = None, hidden: int | None = None, states=("h", "c")) -> Unit:
    """``"1:42"`` -> the hidden state of unit 42 of layer 1; ``"1:42:c"`` its cell (or a gate:
    ``:f``). Layers and units count from 0. A one-line :class:`ChatrnnError` says what is wrong."""
    m = _UNIT.match(raw or "")
    if not m:
        raise ChatrnnError(f"not a unit: {raw[:30]!r}; type layer:unit, e.g. 0:12 (or 0:12:c for the cell state)")
    layer, unit, state = int(m.group(1)), int(m.group(2)), (m.group(3) or "h").lower()
    if layers is not None and not 0 <= layer < layers:
        raise ChatrnnError(f"layer {layer} does not exist: this model has layers 0 to {layers - 1}")
    if hidden is not None and not 0 <= unit < hidden:
        raise ChatrnnError(f"unit {unit} does not exist: layers have units 0 to {hidden - 1}")
    if state not in states:
        raise ChatrnnError(f"state {state!r} is not one of this model's: {', '.join(states)}")
    return Unit(layer, unit, state)


# ---------------------------------------------------------------------------------------------
# colours

_DIVERGING = [
    (33, 102, 172),
    (103, 169, 207),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (239, 138, 98),
    (178, 24, 43),
]  # RdBu: blue, white, red
LEVELS = 21  # colours quantised: each a cached Style, and a handful of segments per line


def activation_colour(v: float) -> tuple[int, int, int]:
    """``v`` in [-1, 1] -> blue (negative) .. white (zero) .. red (positive)."""
    v = 0.0 if v != v else min(1.0, max(-1.0, v))
    x = (v + 1) / 2 * (len(_DIVERGING) - 1)
    i = min(int(x), len(_DIVERGING) - 2)
    f = x - i
    a, b = _DIVERGING[i], _DIVERGING[i + 1]
    return tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))  # type: ignore[return-value]


def _level_styles() -> list[Style]:
    out = []
    for k in range(LEVELS):
        v = -1 + 2 * k / (LEVELS - 1)
        r, g, b = activation_colour(v)
        fg = "rgb(255,255,255)" if abs(v) > 0.75 else "rgb(0,0,0)"
        out.append(Style.parse(f"{fg} on rgb({r},{g},{b})"))
    return out


_LEVEL_STYLES = _level_styles()


def level(v: float) -> int:
    """The colour level of ``v`` in [-1, 1] (NaN: the middle, white)."""
    if v != v:
        return LEVELS // 2
    return int(round((min(1.0, max(-1.0, v)) + 1) / 2 * (LEVELS - 1)))


def normalise(values: np.ndarray, state: str, scale: float | None = None) -> tuple[np.ndarray, float]:
    """Values onto [-1, 1] for colouring, and the scale used: gates map [0, 1] onto it, h, g and
    n (tanh) are already there, c is divided by ``scale`` (default: its largest magnitude here)."""
    v = np.asarray(values, dtype=np.float32)
    if state in UNIT_INTERVAL:
        return v * 2 - 1, 1.0
    if state in BOUNDED:
        return v, 1.0
    if scale is None:
        finite = v[np.isfinite(v)]
        scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    scale = scale if scale > 1e-6 else 1.0
    return v / scale, scale


def legend_text(state: str, scale: float) -> Text:
    lo, hi = ("0", "1") if state in UNIT_INTERVAL else (f"{-scale:+.2g}", f"{scale:+.2g}")
    out = Text(f"{lo} ", style="dim")
    for k in range(0, LEVELS, 2):
        out.append(" ", style=_LEVEL_STYLES[k])
    out.append(f" {hi}", style="dim")
    return out


def show_cell(c: str) -> str:
    """One character as one visible glyph (a newline shows as ``↵`` before the line break)."""
    if c == "\n":
        return "↵"
    if c == "\t":
        return "⇥"
    o = ord(c)
    if o < 0x20:
        return chr(0x2400 + o)
    if o == 0x7F:
        return "\u2421"
    # C1 controls (U+009B is CSI on its own), surrogates, separators, and anything of no width
    # (one character must be one visible cell, or the cursor and the mouse would point elsewhere)
    if 0x80 <= o <= 0x9F or 0xD800 <= o <= 0xDFFF or o in (0x2028, 0x2029) or cell_len(c) == 0:
        return "\ufffd"
    return c


# ---------------------------------------------------------------------------------------------
# the probe values of a text


class ProbeTrace:
    """Every unit's values at every character of one text, as it streams.

    One float16 array ``(states, layers, hidden)`` per character (``states`` in a fixed order,
    learned from the first probe), kept for the last :data:`MAX_CHARS` characters; characters
    without values (a seed nobody traced) hold ``None`` and show uncoloured."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.values: list[np.ndarray | None] = []
        self.states: tuple[str, ...] = ()
        self.layers = 0
        self.hidden = 0
        self.offset = 0  # characters dropped from the front so far

    def __len__(self) -> int:
        return len(self.chars)

    def _pack(self, probe: dict[str, Any] | None) -> np.ndarray | None:
        if not probe:
            return None
        if not self.states:
            self.states = tuple(k for k in ("h", "c", "i", "f", "g", "o", "r", "z", "n") if k in probe)
            first = np.asarray(probe[self.states[0]])
            self.layers, self.hidden = int(first.shape[0]), int(first.shape[-1])
        return np.stack([np.asarray(probe[k], dtype=np.float16).reshape(self.layers, self.hidden) for k in self.states])

    def append(self, text: str, probe: dict[str, Any] | None) -> None:
        """A token: its characters (a token is one character for the char LM) and its values."""
        packed = self._pack(probe)
        for c in text:
            self.chars.append(c)
            self.values.append(packed)

    def extend_states(self, text: str, states: dict[str, Any]) -> None:
        """Characters with values stacked per state (``states[k]`` of shape ``(T, layers, hidden)``),
        as :meth:`chatrnn.infer.Generator.trace` returns them."""
        arrays = {k: np.asarray(v) for k, v in states.items()}
        for t, c in enumerate(text):
            self.append(c, {k: a[t] for k, a in arrays.items()} if arrays else None)

    def trim(self) -> int:
        """Drop the oldest characters beyond :data:`MAX_CHARS` (in blocks); returns how many."""
        if len(self.chars) <= MAX_CHARS:
            return 0
        n = len(self.chars) - MAX_CHARS + TRIM
        del self.chars[:n]
        del self.values[:n]
        self.offset += n
        return n

    def series(self, unit: Unit, start: int = 0) -> np.ndarray:
        """The unit's value at each character from ``start`` (NaN where there is none)."""
        k = self.states.index(unit.state) if unit.state in self.states else -1
        out = np.full(len(self.chars) - start, np.nan, dtype=np.float32)
        if k < 0 or unit.layer >= self.layers or unit.unit >= self.hidden:
            return out
        for t, v in enumerate(self.values[start:]):
            if v is not None:
                out[t] = v[k, unit.layer, unit.unit]
        return out

    def at(self, index: int, unit: Unit) -> dict[str, float]:
        """Every state of ``unit``'s layer and index at character ``index`` (empty: no values)."""
        if not 0 <= index < len(self.values) or self.values[index] is None:
            return {}
        v = self.values[index]
        if unit.layer >= self.layers or unit.unit >= self.hidden:
            return {}
        return {s: float(v[k, unit.layer, unit.unit]) for k, s in enumerate(self.states)}


# ---------------------------------------------------------------------------------------------
# the coloured text


class ActivationText(ScrollView, can_focus=True):
    """Characters on coloured backgrounds, wrapped at the width (no word wrap: every character
    is a cell of the picture), with a cursor: ←/→ one character, ↑/↓ one line, Home/End; the
    mouse inspects what it hovers and a click moves the cursor there. Lines are drawn by the line
    API, so a long text costs only its visible lines."""

    DEFAULT_CSS = "ActivationText { overflow-x: hidden; }"
    BINDINGS = [
        Binding("left", "move(-1)", "←", show=False),
        Binding("right", "move(1)", "→", show=False),
        Binding("up", "line(-1)", "↑", show=False),
        Binding("down", "line(1)", "↓", show=False),
        Binding("home", "jump(0)", "Start", show=False),
        Binding("end", "jump(-1)", "End", show=False),
    ]

    class Inspect(Message):
        """The character under the cursor (or the mouse) changed."""

        def __init__(self, index: int | None) -> None:
            super().__init__()
            self.index = index

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.chars: list[str] = []
        self.levels: list[int | None] = []  # colour level per character (None: uncoloured)
        self._lines: list[tuple[int, int]] = []  # [start, end) of each display line
        self._wrap_width = 0
        self.cursor: int | None = None  # None: follows the last character
        self.hover: int | None = None

    # content -------------------------------------------------------------------------------
    def clear_text(self) -> None:
        self.chars, self.levels, self._lines = [], [], []
        self.cursor = self.hover = None
        self.virtual_size = Size(0, 0)
        self.scroll_to(0, 0, animate=False, immediate=True, force=True)
        self.refresh()

    def set_text(self, chars: list[str], levels: list[int | None]) -> None:
        self.chars, self.levels = list(chars), list(levels)
        self._rewrap()
        self.refresh()

    def set_levels(self, levels: list[int | None]) -> None:
        """New colours for the same characters (another unit chosen)."""
        self.levels = list(levels)
        self.refresh()

    def append(self, chars: list[str], levels: list[int | None]) -> None:
        follow = self._at_end()
        start = len(self.chars)
        self.chars.extend(chars)
        self.levels.extend(levels)
        first = max(0, len(self._lines) - 1)
        self._wrap_from(start)
        self._resize(exact=False)
        h = self.size.height
        last = len(self._lines) - 1
        if follow and h > 0 and last >= self.scroll_offset.y + h:
            # jump a screenful at a time (as StreamView does): the new lines land in view, and
            # only those are repainted until the next jump, not the whole view per draw
            y = max(0, last - h // 3)
            self.scroll_to(y=y, animate=False, immediate=True, force=True)
            self.refresh()
        else:
            self.refresh_lines(first, len(self._lines) - first)

    @property
    def index(self) -> int | None:
        """The character being inspected: the mouse's, else the cursor's, else the last one."""
        if self.hover is not None:
            return self.hover
        if self.cursor is not None:
            return self.cursor
        return len(self.chars) - 1 if self.chars else None

    # wrapping ------------------------------------------------------------------------------
    def _width(self) -> int:
        return max(10, self.scrollable_content_region.width or 80)

    def _rewrap(self) -> None:
        self._lines = []
        self._wrap_from(0)
        self._resize()

    def _wrap_from(self, start: int) -> None:
        """Wrap characters from ``start`` on (the last line stays open)."""
        width = self._wrap_width = self._width()
        if self._lines:
            a, _ = self._lines.pop()
            used = sum(cell_len(show_cell(c)) for c in self.chars[a:start])
        else:
            a, used = 0, 0
        for i in range(start, len(self.chars)):
            c = self.chars[i]
            w = cell_len(show_cell(c))
            if used + w > width and i > a:
                self._lines.append((a, i))
                a, used = i, 0
            used += w
            if c == "\n":
                self._lines.append((a, i + 1))
                a, used = i + 1, 0
        self._lines.append((a, len(self.chars)))

    def _resize(self, exact: bool = True) -> None:
        """The scrollable height: the text's, or while streaming a screenful ahead in blocks
        (a change of virtual size costs a layout pass of the whole screen)."""
        lines = len(self._lines)
        if not exact:
            block = max(10, self.size.height)
            lines = -(-(lines + block) // block) * block
        size = Size(self._width(), lines)
        if size != self.virtual_size:
            self.virtual_size = size

    def finish(self) -> None:
        """The stream ended: the scrollable height back to the text's."""
        follow = self._at_end()
        self._resize()
        if follow:
            self._scroll_to_end()
        self.refresh()

    def _at_end(self) -> bool:
        h = self.size.height
        return h <= 0 or self.scroll_offset.y + h >= len(self._lines) - 1

    def _scroll_to_end(self) -> None:
        h = self.size.height
        if h > 0:
            y = max(0, len(self._lines) - h)
            if y != self.scroll_offset.y:
                self.scroll_to(y=y, animate=False, immediate=True, force=True)

    def on_resize(self) -> None:
        if self._width() != self._wrap_width:
            follow = self._at_end()
            self._rewrap()
            if follow:
                self._scroll_to_end()
        self.refresh()

    # cursor --------------------------------------------------------------------------------
    def line_of(self, index: int) -> int:
        for y, (a, b) in enumerate(self._lines):
            if a <= index < b:
                return y
        return max(0, len(self._lines) - 1)

    def _set_cursor(self, index: int | None) -> None:
        if index is not None and self.chars:
            index = min(max(0, index), len(self.chars) - 1)
            y = self.line_of(index)
            top, h = self.scroll_offset.y, self.size.height
            if h > 0 and not top <= y < top + h:
                self.scroll_to(y=max(0, y - h // 2), animate=False, immediate=True, force=True)
        self.cursor = index
        self.refresh()
        self.post_message(self.Inspect(self.index))

    def action_move(self, delta: int) -> None:
        if not self.chars:
            return
        here = self.cursor if self.cursor is not None else len(self.chars) - 1
        self._set_cursor(here + delta)

    def action_line(self, delta: int) -> None:
        if not self.chars:
            return
        here = self.cursor if self.cursor is not None else len(self.chars) - 1
        y = self.line_of(here)
        col = here - self._lines[y][0]
        ny = min(max(0, y + delta), len(self._lines) - 1)
        a, b = self._lines[ny]
        self._set_cursor(min(a + col, max(a, b - 1)))

    def action_jump(self, where: int) -> None:
        if self.chars:
            self._set_cursor(0 if where == 0 else None if where < 0 else where)

    def index_at(self, x: int, y: int) -> int | None:
        """The character at widget cell (``x``, ``y``), or None."""
        line = self.scroll_offset.y + y
        if not 0 <= line < len(self._lines):
            return None
        a, b = self._lines[line]
        used = 0
        for i in range(a, b):
            used += cell_len(show_cell(self.chars[i]))
            if x < used:
                return i
        return None

    def _event_index(self, event) -> int | None:
        offset = event.get_content_offset(self)  # inside the padding; None on it
        return None if offset is None else self.index_at(offset.x, offset.y)

    def on_mouse_move(self, event) -> None:
        hover = self._event_index(event)
        if hover != self.hover:
            self.hover = hover
            self.post_message(self.Inspect(self.index))

    def on_leave(self, event) -> None:
        if self.hover is not None:
            self.hover = None
            self.post_message(self.Inspect(self.index))

    def on_click(self, event) -> None:
        i = self._event_index(event)
        if i is not None:
            self.hover = None
            self._set_cursor(i)

    # drawing -------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.size.width
        base = self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, base)
        a, b = self._lines[index]
        cursor = self.cursor if self.cursor is not None else (len(self.chars) - 1 if self.has_focus else None)
        segments: list[Segment] = []
        run, run_style = "", None
        for i in range(a, b):
            lv = self.levels[i] if i < len(self.levels) else None
            style = base if lv is None else _LEVEL_STYLES[lv]
            if i == cursor or i == self.hover:
                style = style + Style(underline=True, bold=True, reverse=i == cursor)
            glyph = show_cell(self.chars[i])
            if style is run_style:
                run += glyph
            else:
                if run:
                    segments.append(Segment(run, run_style))
                run, run_style = glyph, style
        if run:
            segments.append(Segment(run, run_style))
        return Strip(segments).crop_extend(0, width, base)


# ---------------------------------------------------------------------------------------------
# the strip under the text


def _bar(v: float, width: int = 8) -> str:
    v = 0.0 if v != v else min(1.0, max(0.0, v))
    n = v * width
    full = int(n)
    part = " ▏▎▍▌▋▊▉"[int((n - full) * 8)] if full < width else ""
    return ("█" * full + part).ljust(width)


def strip_text(trace: ProbeTrace, index: int | None, unit: Unit) -> Text:
    """At character ``index``: which character, the unit's h and c, and its gates as numbers
    and bars (i/f/o first: what a learner reads about in an LSTM text)."""
    out = Text(no_wrap=True, overflow="crop")
    if index is None or not trace.chars:
        out.append("(generate something: the strip shows the unit's gates at the cursor)", style="dim italic")
        return out
    vals = trace.at(index, unit)
    ch = trace.chars[index]
    out.append(f"#{trace.offset + index:<5} ", style="dim")
    out.append(f"{show_cell(ch)!s:^3}", style="bold reverse")
    out.append(f"  unit {unit.layer}:{unit.unit}  ", style="bold")
    if not vals:
        out.append("no values for this character (the seed is not traced)", style="dim italic")
        return out
    for s in ("h", "c"):
        if s in vals:
            v = vals[s]
            out.append(f"{s} ", style="bold" if s == unit.state else "dim")
            out.append(f"{v:+.3f}", style=_LEVEL_STYLES[level(v if s == "h" else math.tanh(v))])
            out.append("  ")
    out.append("│ ", style="dim")
    for s in ("i", "f", "o", "g", "r", "z", "n"):
        if s not in vals:
            continue
        v = vals[s]
        out.append(f"{s} ", style="bold" if s == unit.state else "")
        out.append(f"{v:+.2f} " if s in ("g", "n") else f"{v:.2f} ")
        if s in UNIT_INTERVAL:
            out.append(_bar(v, 6), style="green" if s == "i" else "red" if s == "f" else "cyan")
        out.append("  ")
    return out


# ---------------------------------------------------------------------------------------------
# the ranking cache


def validation_text(folder: Path | None, config: dict, chars: int = RANK_CHARS) -> tuple[str, str] | None:
    """The tail of the checkpoint's corpus (where training took its validation split), at most
    ``chars`` characters, and where it came from; None when the corpus files are gone.

    Sources are tried as recorded (relative to where training ran, usually the current folder),
    then relative to the checkpoint folder and its parents. Only the tail is read, so a 1 GB
    corpus costs no more than a small one."""
    corpus = config.get("corpus") if isinstance(config, dict) else None
    sources = corpus.get("sources") if isinstance(corpus, dict) else None
    if not isinstance(sources, list) or not sources:
        return None
    val_chars = corpus.get("val_chars")
    want = min(chars, int(val_chars)) if isinstance(val_chars, int) and val_chars > 0 else chars
    files: list[Path] = []
    for s in sources:
        if not isinstance(s, str):
            return None
        found = _find_source(s, folder)
        if found is None:
            return None
        files.append(found)
    parts: list[str] = []
    need = want
    for f in reversed(files):
        if f.is_dir():
            return None  # a folder of files: which order training read them in is not recorded here
        try:
            size = f.stat().st_size
            with open(f, "rb") as fh:
                fh.seek(max(0, size - need * 4))
                raw = fh.read()
        except OSError:
            return None
        text = raw.decode("utf-8", errors="ignore")
        if size > need * 4:
            text = text[1:]  # the first character may be a cut multi-byte one
        parts.insert(0, text[-need:])
        need -= len(parts[0])
        if need <= 0:
            break
    text = "".join(parts)[-want:]
    if len(text) < MIN_RANK_CHARS:
        return None
    return text, f"the last {len(text):,} characters of {files[-1].name}"


def _find_source(s: str, folder: Path | None) -> Path | None:
    p = Path(s).expanduser()
    tries = [p]
    if not p.is_absolute() and folder is not None:
        folder = Path(folder).resolve()
        tries += [folder / p, *(parent / p for parent in folder.parents)]
    for t in tries:
        if t.exists():
            return t
    return None


def weights_key(folder: Path | None) -> str | None:
    """What the ranking was computed for: the weights file's size and modification time (a
    retrained model has new weights, and its old ranking is void)."""
    if folder is None:
        return None
    try:
        st = (Path(folder) / "model.safetensors").stat()
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def read_cache(folder: Path | None) -> dict | None:
    """The cached ranking for this checkpoint's current weights, or None (absent, stale, damaged)."""
    key = weights_key(folder)
    if key is None:
        return None
    try:
        data = json.loads((Path(folder) / CACHE_FILE).read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("weights") != key:
        return None
    if not isinstance(data.get("ranking"), dict) or not isinstance(data["ranking"].get("features"), list):
        return None
    return data


def write_cache(folder: Path | None, ranking: dict, source: str, text: str) -> Path | None:
    """Store ``ranking`` next to the weights, atomically (a temp file renamed over the old one),
    so a crash or a second app never leaves half a file. None when it could not be written (a
    read-only folder): the ranking still shows, it is just computed again next time."""
    key = weights_key(folder)
    if key is None:
        return None
    data = {"version": CACHE_VERSION, "weights": key, "source": source, "text": text_key(text), "ranking": ranking}
    target = Path(folder) / CACHE_FILE
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{CACHE_FILE}.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return None
    return target


def common_features(ranking: dict) -> set[str]:
    """The features with at least :data:`MIN_POSITIVES` characters present and
    :data:`MIN_POSITIVE_SHARE` of the text (a ranking without counts: all). Three digits in 19,000
    Korean characters give some unit an AUC of 0.99 by chance: not the unit to show a learner first."""
    chars = ranking.get("chars")
    out = set()
    for feat in ranking.get("features") or []:
        if not isinstance(feat, dict):
            continue
        n = feat.get("positives")
        if (
            not isinstance(n, int)
            or not isinstance(chars, int)
            or (n >= MIN_POSITIVES and n >= MIN_POSITIVE_SHARE * chars)
        ):
            out.add(str(feat.get("name", "?")))
    return out


def ranked_units(ranking: dict, per_feature: int = PER_FEATURE) -> list[tuple[str, Unit, float | None, float | None]]:
    """``(feature, unit, score, auc)`` for the top units of each feature, features in order."""
    out = []
    for feat in ranking.get("features") or []:
        if not isinstance(feat, dict):
            continue
        name = str(feat.get("name", "?"))
        for u in (feat.get("units") or [])[:per_feature]:
            try:
                unit = Unit(int(u["layer"]), int(u["unit"]), str(u.get("state", "h")))
            except (KeyError, TypeError, ValueError):
                continue
            score, auc = u.get("score"), u.get("auc")
            out.append(
                (
                    name,
                    unit,
                    float(score) if isinstance(score, (int, float)) else None,
                    float(auc) if isinstance(auc, (int, float)) else None,
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# the view


class NeuronsView(Vertical):
    """Unit box and legend; the coloured text beside the ranked units; the gate strip.

    The pane feeds it (``start``, ``add``, ``finish``) and hands it the ranking when the worker
    has one (``set_ranking``); the view owns the :class:`ProbeTrace` and which unit is shown."""

    DEFAULT_CSS = """
    NeuronsView { height: 1fr; }
    #neu-row { height: 1; padding: 0 1; margin-bottom: 1; }
    #neu-unit { width: 14; }
    #neu-unit.invalid { color: $error; text-style: bold; }
    #neu-legend { width: 1fr; margin-left: 2; }
    #neu-body { height: 1fr; }
    #neu-text { width: 1fr; padding: 0 1; }
    #neu-text:focus { background: $boost; }
    #neu-side { width: 44; border-left: solid $primary; }
    #neu-rank-status { height: auto; max-height: 6; color: $text-muted; padding: 0 1; }
    #neu-units { height: 1fr; border: none; }
    #neu-strip { height: 1; padding: 0 1; background: $surface; }
    """

    class UnitChosen(Message):
        def __init__(self, unit: Unit) -> None:
            super().__init__()
            self.unit = unit

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.trace = ProbeTrace()
        self.unit = Unit(0, 0, "h")
        self.unit_typed = False  # the user chose a unit: a ranking arriving later does not replace it
        self.ranking: dict | None = None
        self.ranked: list[tuple[str, Unit, float | None, float | None]] = []
        self.scale = 1.0

    def compose(self) -> ComposeResult:
        with Horizontal(id="neu-row"):
            yield Label("unit", classes="field-label")
            yield Input(self.unit.label(), placeholder="layer:unit", id="neu-unit", compact=True)
            yield Static("", id="neu-legend")
        with Horizontal(id="neu-body"):
            yield ActivationText(id="neu-text")
            with Vertical(id="neu-side"):
                yield Static("", id="neu-rank-status")
                yield OptionList(id="neu-units")
        yield Static("", id="neu-strip")

    def on_mount(self) -> None:
        self._legend()
        self._strip()

    @property
    def text_view(self) -> ActivationText:
        return self.query_one(ActivationText)

    # units ---------------------------------------------------------------------------------
    def choose(self, unit: Unit, typed: bool = True) -> None:
        """Colour the text by ``unit`` (``typed``: the user's choice, kept over the ranking's)."""
        self.unit = unit
        self.unit_typed = self.unit_typed or typed
        box = self.query_one("#neu-unit", Input)
        if box.value.strip() != unit.label():
            with box.prevent(Input.Changed):
                box.value = unit.label()
        box.remove_class("invalid")
        self._recolour()

    def _states(self) -> tuple[str, ...]:
        return self.trace.states or ("h", "c")

    @on(Input.Submitted, "#neu-unit")
    def _unit_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            unit = parse_unit(event.value, self.trace.layers or None, self.trace.hidden or None, self._states())
        except ChatrnnError as e:
            event.input.add_class("invalid")
            self.notify(str(e), severity="warning", title="unit")
            return
        self.choose(unit)
        self.text_view.focus()

    @on(Input.Changed, "#neu-unit")
    def _unit_changed(self, event: Input.Changed) -> None:
        try:
            unit = parse_unit(event.value, self.trace.layers or None, self.trace.hidden or None, self._states())
        except ChatrnnError:
            event.input.add_class("invalid")
            return
        event.input.remove_class("invalid")
        if unit != self.unit:
            self.choose(unit)

    @on(OptionList.OptionSelected, "#neu-units")
    def _unit_picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.choose(self.ranked[int(event.option.id)][1])

    @on(OptionList.OptionHighlighted, "#neu-units")
    def _unit_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id is not None and event.option_list.has_focus:
            self.choose(self.ranked[int(event.option.id)][1])

    def set_rank_status(self, text: str) -> None:
        self.query_one("#neu-rank-status", Static).update(Text(text, style="italic"))

    def set_ranking(self, ranking: dict, source: str) -> None:
        """Show the ranked units; the best one is shown unless the user chose a unit."""
        self.ranking = ranking
        self.ranked = ranked_units(ranking)
        ol = self.query_one("#neu-units", OptionList)
        ol.clear_options()
        options: list[Option | None] = []
        last = None
        for i, (feature, unit, score, auc) in enumerate(self.ranked):
            if feature != last and last is not None:
                options.append(None)  # a separator between features
            last = feature
            # one line in the 44-cell side panel (39 inside its border, the list's padding and its
            # scrollbar): a wrapped score reads as another option
            name = feature if len(feature) <= 15 else feature[:14] + "…"
            line = Text(f"{name:<15} ", style="bold", no_wrap=True, overflow="ellipsis")
            line.append(f"{unit.label():<7}")
            line.append(f" auc {auc:.2f}" if auc is not None else "", style="dim")
            line.append(f" r{score:+.2f}" if score is not None else "", style="dim")
            options.append(Option(line, id=str(i)))
        ol.add_options(options)
        chars = ranking.get("chars")
        where = f"{chars:,} chars of {source}" if isinstance(chars, int) else source
        self.set_rank_status(
            f"units that track a feature, ranked on {where}" if self.ranked else f"no ranked units ({where})"
        )
        if self.ranked and not self.unit_typed:
            self.choose(self.best_unit() or self.ranked[0][1], typed=False)

    def clear_ranking(self) -> None:
        """Forget the ranking (another model was loaded); the unit shown stays if it exists."""
        self.ranking, self.ranked, self.unit_typed = None, [], False
        self.query_one("#neu-units", OptionList).clear_options()
        self.set_rank_status("")

    def best_unit(self) -> Unit | None:
        """The ranked unit with the highest AUC (the most legible single unit), among features
        common enough in the text for an AUC to mean something (see :func:`common_features`)."""
        common = common_features(self.ranking or {})
        scored = [(auc, u) for f, u, _, auc in self.ranked if auc is not None and f in common]
        return max(scored, key=lambda x: x[0])[1] if scored else (self.ranked[0][1] if self.ranked else None)

    # text ----------------------------------------------------------------------------------
    def _levels(self, values: np.ndarray) -> list[int | None]:
        scaled, _ = normalise(values, self.unit.state, self.scale)
        return [None if v != v else level(float(v)) for v in scaled]

    def _recolour(self) -> None:
        series = self.trace.series(self.unit)
        _, self.scale = normalise(series, self.unit.state)
        self.text_view.set_levels(self._levels(series))
        self._legend()
        self._strip()

    def _legend(self) -> None:
        t = legend_text(self.unit.state, self.scale)
        name = GATE_NAMES.get(self.unit.state, "hidden state" if self.unit.state == "h" else "cell state")
        t.append(f"   layer {self.unit.layer}, unit {self.unit.unit}, {name}", style="bold")
        t.append("   ←/→ ↑/↓ cursor · mouse inspects", style="dim")
        self.query_one("#neu-legend", Static).update(t, layout=False)  # one line, fixed size: no layout pass

    def _strip(self) -> None:
        strip = strip_text(self.trace, self.text_view.index, self.unit)
        self.query_one("#neu-strip", Static).update(strip, layout=False)  # at every draw: no layout pass

    @on(ActivationText.Inspect)
    def _inspect(self, event: ActivationText.Inspect) -> None:
        event.stop()
        self._strip()

    def start(self, seed: str, seed_states: dict[str, Any] | None = None) -> None:
        """A new text: the seed (coloured when ``seed_states`` has its values) and nothing else."""
        self.trace = ProbeTrace()
        if seed_states:
            self.trace.extend_states(seed, seed_states)
        else:
            self.trace.append(seed, None)
        self._clamp_unit()
        series = self.trace.series(self.unit)
        _, self.scale = normalise(series, self.unit.state)
        self.text_view.set_text(self.trace.chars, self._levels(series))
        self._legend()
        self._strip()

    def _clamp_unit(self) -> None:
        t = self.trace
        if t.layers and (self.unit.layer >= t.layers or self.unit.unit >= t.hidden or self.unit.state not in t.states):
            self.choose(Unit(0, 0, "h"), typed=False)

    def add(self, tokens: list[Any]) -> None:
        """Streamed tokens, each with ``text`` and ``probe``."""
        had_states = bool(self.trace.states)
        start = len(self.trace)
        for t in tokens:
            self.trace.append(t.text, getattr(t, "probe", None))
        if not had_states and self.trace.states:
            self._clamp_unit()
        if self.trace.trim():
            self._recolour_all()
            return
        series = self.trace.series(self.unit, start)
        if self.unit.state not in UNIT_INTERVAL | BOUNDED:
            finite = series[np.isfinite(series)]
            peak = float(np.max(np.abs(finite))) if finite.size else 0.0
            if peak > self.scale * 1.05:  # a new extreme: rescale everything (rare once warmed up)
                self._recolour_all()
                return
        self.text_view.append(list("".join(t.text for t in tokens)), self._levels(series))
        self._strip()

    def _recolour_all(self) -> None:
        series = self.trace.series(self.unit)
        _, self.scale = normalise(series, self.unit.state)
        self.text_view.set_text(self.trace.chars, self._levels(series))
        self.text_view._scroll_to_end()
        self._legend()
        self._strip()

    def finish(self) -> None:
        self.text_view.finish()
        self._strip()

    @property
    def text(self) -> str:
        return "".join(self.trace.chars)
