"""Widgets shared by the chat and generate panes: message bubbles, the attention heatmap, the
temperature bar, the candidates view. Pure display: no models, no store, no threads.

All model and user text is shown as :class:`rich.text.Text` (never parsed as markup), with control
characters turned into their visible "control pictures", so a message containing ``[bold]`` or
ANSI escapes shows as typed and cannot restyle or corrupt the screen.
"""

from __future__ import annotations

import re
from collections import deque

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.containers import HorizontalScroll
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from chatrnn.terminal import visible

#: Longest text a bubble shows; the store keeps the whole message, the bubble says what it left out.
MAX_SHOWN = 4000

# C0 (but newline and tab), DEL, C1 (U+009B is CSI on its own: Rich passes it to the terminal) and
# the line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _picture(m: re.Match[str]) -> str:
    c = ord(m.group())
    if c < 0x20 or 0x7F <= c <= 0x9F:
        return visible(m.group())  # chatrnn.terminal's one rendering: control pictures, C1 as \x9b
    return "\u21b5"  # line/paragraph separators


def clean_text(text: str, limit: int | None = MAX_SHOWN) -> str:
    """``text`` safe to draw: control characters as pictures (newlines and tabs kept), lone
    surrogates as U+FFFD, and at most ``limit`` characters with a note saying how many were cut."""
    cut = 0
    if limit is not None and len(text) > limit:
        cut = len(text) - limit
        text = text[:limit]
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    text = _CONTROL.sub(_picture, text)
    text = _SURROGATE.sub("\ufffd", text)
    if cut:
        text += f"\n… ({cut:,} more characters not shown; the full text is kept)"
    return text


def show_char(c: str) -> str:
    """One generated character as something visible: space, newline, tab and controls named."""
    if c == " ":
        return "␣"
    if c == "\n":
        return "⏎"
    if c == "\t":
        return "⇥"
    if c == "▁":
        return "▁"
    return clean_text(c, None) or "∅"


def show_piece(p: str, width: int) -> str:
    """A subword piece in at most ``width`` cells (sentencepiece's word-start mark kept)."""
    p = clean_text(p, None).replace("\n", "⏎") or "∅"
    if not p.strip():
        p = "␣" * len(p)
    return p if len(p) <= width else p[: max(1, width - 1)] + "…"


# ---------------------------------------------------------------------------------------------
# colours

_PALETTE = [
    (13, 8, 135),
    (84, 2, 163),
    (139, 10, 165),
    (185, 50, 137),
    (219, 92, 104),
    (244, 136, 73),
    (254, 188, 43),
    (240, 249, 33),
]  # plasma, dark to bright


def heat_colour(v: float) -> tuple[int, int, int]:
    """A colour for ``v`` in [0, 1] on a perceptually ordered scale (dark purple to yellow)."""
    v = 0.0 if v != v else min(1.0, max(0.0, v))
    x = v * (len(_PALETTE) - 1)
    i = min(int(x), len(_PALETTE) - 2)
    f = x - i
    a, b = _PALETTE[i], _PALETTE[i + 1]
    return tuple(round(a[k] + (b[k] - a[k]) * f) for k in range(3))  # type: ignore[return-value]


def _rgb(c: tuple[int, int, int]) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})"


def heatmap_text(
    rows: list[str], cols: list[str], weights: list[list[float]], max_cell: int = 8, label: int = 10
) -> Text:
    """The attention heatmap: one line per reply piece, one coloured cell per prompt piece (each
    column as wide as its piece, 2 to ``max_cell`` cells).

    Colours are scaled per row (each row is a distribution over the prompt, so the brightest
    cell is where that reply piece looked most); the row's strongest cell is marked with ``◆`` and
    its weight is printed at the end of the line.
    """
    out = Text(no_wrap=True, overflow="crop")
    if not cols or not weights:
        out.append("(no attention recorded for this reply)", style="italic dim")
        return out
    shown, widths = heat_columns(cols, max_cell)
    header = " " * (label + 1) + "".join(c.ljust(w) + " " for c, w in zip(shown, widths))
    out.append(header.rstrip() + "\n", style="bold")
    for r, row in enumerate(weights):
        name = rows[r] if r < len(rows) else "?"
        out.append(show_piece(name, label).rjust(label) + " ", style="bold")
        vals = [float(v) if isinstance(v, (int, float)) else 0.0 for v in row[: len(cols)]]
        vals += [0.0] * (len(cols) - len(vals))
        top = max(vals) if vals else 0.0
        best = vals.index(top) if vals else -1
        for j, v in enumerate(vals):
            scaled = v / top if top > 0 else 0.0
            bg = heat_colour(scaled)
            fg = (0, 0, 0) if scaled > 0.6 else (255, 255, 255)
            mark = "◆" if j == best and top > 0 else " "
            out.append(mark.center(widths[j]), style=Style.parse(f"{_rgb(fg)} on {_rgb(bg)}"))
            out.append(" ")
        out.append(f" {top:.2f} → {show_piece(cols[best], 12) if best >= 0 else '-'}\n", style="dim")
    legend = Text(" " * (label + 1) + "low ", style="dim")
    for k in range(9):
        legend.append("  ", style=Style.parse(f"on {_rgb(heat_colour(k / 8))}"))
    legend.append(" high (scaled per row)   ◆ where it looked most", style="dim")
    out.append_text(legend)
    return out


def heat_columns(cols: list[str], max_cell: int = 8) -> tuple[list[str], list[int]]:
    """The attention heatmap's column labels and widths (one column per prompt piece)."""
    shown = [show_piece(c, max_cell) for c in cols]
    return shown, [max(2, len(c)) for c in shown]


#: Dimensions of a hidden state shown in the state heatmaps: those that moved most over the text.
STATE_DIMS = 12
STATE_DIGITS = 3


def state_changes(states: list[list[float]], start: list[float] | None = None, top: int = STATE_DIMS) -> dict:
    """Which dimensions of a hidden state moved at each step: ``|h_t - h_(t-1)|`` per dimension
    (``h_(-1)`` is ``start``, e.g. the decoder's initial state, else the first step counts from
    zero), kept for the ``top`` dimensions that moved most in total, in dimension order.

    Returns ``{"dims": [d...], "rows": [[|dh| per kept dim] per step], "size": D}``, rounded, small
    enough to store with a message (the full states are not kept)."""
    if not states:
        return {"dims": [], "rows": [], "size": 0}
    size = len(states[0])
    prev = list(start) if start is not None and len(start) == size else [0.0] * size
    moves = []
    for h in states:
        h = [float(x) for x in h[:size]] + [0.0] * max(0, size - len(h))
        moves.append([abs(a - b) for a, b in zip(h, prev)])
        prev = h
    total = [sum(m[d] for m in moves) for d in range(size)]
    dims = sorted(sorted(range(size), key=lambda d: -total[d])[: max(1, top)])
    rows = [[round(m[d], STATE_DIGITS) for d in dims] for m in moves]
    return {"dims": dims, "rows": rows, "size": size}


def _state_cell(v: float, top: float, width: int) -> tuple[str, Style]:
    scaled = v / top if top > 0 else 0.0
    fg = (0, 0, 0) if scaled > 0.6 else (255, 255, 255)
    return " " * width, Style.parse(f"{_rgb(fg)} on {_rgb(heat_colour(scaled))}")


def _changes_ok(ch: dict | None) -> bool:
    return isinstance(ch, dict) and bool(ch.get("dims")) and bool(ch.get("rows"))


def reply_heatmaps_text(
    rows: list[str],
    cols: list[str],
    weights: list[list[float]],
    states: dict | None = None,
    max_cell: int = 8,
    label: int = 10,
) -> Text:
    """The attention heatmap with the hidden-state heatmaps beside it, on the same axes.

    Right of each attention row (a reply piece), the decoder's top dimensions by how much they
    moved at that piece; under each attention column (a prompt piece), the encoder's. Colours are
    scaled over each whole block (not per row): a bright cell is a big move for this reply.
    ``states`` is ``{"dec": state_changes(...), "enc": state_changes(...)}``; without it this
    is :func:`heatmap_text`."""
    base = heatmap_text(rows, cols, weights, max_cell, label)
    dec = (states or {}).get("dec")
    enc = (states or {}).get("enc")
    if not cols or not weights or not (_changes_ok(dec) or _changes_ok(enc)):
        return base
    lines = base.split("\n")
    legend = lines.pop()
    body = lines  # header, then one line per attention row
    out = Text(no_wrap=True, overflow="crop")
    if _changes_ok(dec):
        dims = dec["dims"]
        cell = max(3, len(str(max(dims))) + 1)
        top = max((max(r) for r in dec["rows"] if r), default=0.0)
        width = max(line.cell_len for line in body) + 2
        for i, line in enumerate(body):
            line = line.copy()
            line.pad_right(width - line.cell_len)
            line.append("│ ", style="dim")
            if i == 0:
                line.append("".join(str(d).ljust(cell) for d in dims), style="bold")
            else:
                r = dec["rows"][i - 1] if i - 1 < len(dec["rows"]) else []
                for v in r[: len(dims)]:
                    text, style = _state_cell(float(v), top, cell - 1)
                    line.append(text, style=style)
                    line.append(" ")
            out.append_text(line)
            out.append("\n")
        out.append(" " * width)
        out.append("│ ", style="dim")
        out.append(f"decoder: top {len(dims)} of {dec.get('size', '?')} units, |h_t - h_(t-1)|\n", style="dim")
    else:
        for line in body:
            out.append_text(line)
            out.append("\n")
    if _changes_ok(enc):
        _, widths = heat_columns(cols, max_cell)
        top = max((max(r) for r in enc["rows"] if r), default=0.0)
        out.append(" " * (label + 1) + "─" * (sum(w + 1 for w in widths) - 1) + "\n", style="dim")
        for k, d in enumerate(enc["dims"]):
            out.append(f"enc {d}".rjust(label) + " ", style="bold")
            for j, w in enumerate(widths):
                v = enc["rows"][j][k] if j < len(enc["rows"]) and k < len(enc["rows"][j]) else 0.0
                text, style = _state_cell(float(v), top, w)
                out.append(text, style=style)
                out.append(" ")
            out.append("\n")
        out.append(
            " " * (label + 1) + f"encoder: top {len(enc['dims'])} of {enc.get('size', '?')} units, "
            "how much each moved at each prompt piece\n",
            style="dim",
        )
    out.append_text(legend)
    return out


# ---------------------------------------------------------------------------------------------
# message bubbles


class AttentionView(Static):
    """A bot reply's heatmap (reply pieces × prompt pieces); lives in a horizontal scroller."""

    def __init__(self, **kw) -> None:
        super().__init__("", **kw)
        self.rows: list[str] = []
        self.cols: list[str] = []
        self.weights: list[list[float]] = []
        self.states: dict | None = None

    def set_data(
        self, rows: list[str], cols: list[str], weights: list[list[float]], states: dict | None = None
    ) -> None:
        """``states``: the hidden-state changes shown beside the attention (see :func:`reply_heatmaps_text`)."""
        self.rows, self.cols, self.weights, self.states = rows, cols, weights, states
        self.update(reply_heatmaps_text(rows, cols, weights, states))


class MessageView(Static, can_focus=True):
    """One turn of the conversation, as one widget (every widget in the conversation costs
    layout time at each message sent). A bot turn can show its attention heatmap, mounted
    beside it when first asked for (``a`` on the focused reply, ctrl+t for the last one)."""

    BINDINGS = [Binding("a", "toggle_attention", "Attention", show=True)]

    def __init__(
        self,
        role: str,
        text: str = "",
        *,
        pending: bool = False,
        meta: dict | None = None,
        message_id: int | None = None,
    ) -> None:
        self.role = role
        self.text = text
        self.message_id = message_id
        self.pending = pending
        self.cancelled = False
        self.note = ""
        self.pieces: list[str] = []
        self.prompt_pieces: list[str] = []
        self.attention: list[list[float]] = []
        self.states: dict | None = None  # hidden-state changes (``state_changes``), "enc" and "dec"
        #: (place, count) among the alternatives to the same message ("2/3"), None: the only one
        self.branch: tuple[int, int] | None = None
        #: beam search's n best replies: [text, score, pieces, attention] each, best first
        self.nbest: list[list] = []
        if meta:
            self.states = meta.get("states") if isinstance(meta.get("states"), dict) else None
            self.pieces = list(meta.get("pieces") or [])
            self.prompt_pieces = list(meta.get("prompt_pieces") or [])
            self.attention = [list(r) for r in (meta.get("attention") or [])]
            self.cancelled = bool(meta.get("cancelled"))
            self.nbest = nbest_list(meta.get("nbest"))
        self._lines = 2 if pending else 0  # "Bot" and "…": what a pending reply starts as
        self.attn_box: HorizontalScroll | None = None
        self.attn_view: AttentionView | None = None
        super().__init__(self._render_body(), classes=f"message {role}")

    def _render_body(self) -> Text:
        shown = clean_text(self.text.strip() if self.role == "bot" else self.text)
        t = Text()
        t.append("You" if self.role == "user" else "Bot", style="bold " + ("cyan" if self.role == "user" else "green"))
        if self.branch is not None:
            t.append(f"  ‹ {self.branch[0]}/{self.branch[1]} ›", style="bold dim")
        t.append("\n")
        if self.pending and not self.text:
            t.append("…", style="dim italic")
        else:
            t.append(shown)
        if self.cancelled:
            t.append("  (stopped)", style="italic dim")
        if self.note:
            t.append(f"\n{clean_text(self.note, 1000)}", style="italic dim")  # errors quote model text
        if len(self.nbest) > 1 and not self.pending:
            t.append("\nn-best (score: log-probability / length penalty; 1-9 picks one):", style="dim")
            for i, (text, score, *_rest) in enumerate(self.nbest[:9]):
                mark = "▸" if text.strip() == self.text.strip() else " "
                t.append(f"\n{mark}{i + 1}  {score:7.3f}  ", style="bold" if mark != " " else "dim")
                t.append(clean_text(text, 200).replace("\n", " "))
        return t

    # streaming -----------------------------------------------------------------------------
    def add(self, text: str, pieces: list[str], rows: list[list[float]]) -> None:
        """Append streamed output (several tokens at once when the UI was busy)."""
        self.text += text
        self.pieces.extend(pieces)
        self.attention.extend(rows)
        self.refresh_body()

    def finish(
        self,
        *,
        text: str | None = None,
        cancelled: bool = False,
        note: str = "",
        pieces: list[str] | None = None,
        attention: list[list[float]] | None = None,
        prompt_pieces: list[str] | None = None,
        states: dict | None = None,
    ) -> None:
        self.pending = False
        self.cancelled = cancelled
        self.note = note
        if text is not None:
            self.text = text
        if pieces is not None:
            self.pieces = list(pieces)
        if attention is not None:
            self.attention = [list(r) for r in attention]
        if prompt_pieces is not None:
            self.prompt_pieces = list(prompt_pieces)
        if states is not None:
            self.states = states
        self.refresh_body()

    def refresh_body(self) -> None:
        """Redraw the text; a layout pass (which repaints the whole screen) only when the number
        of lines changed, not for every token of a streaming reply."""
        text = self._render_body()
        width = self.size.width
        layout = True
        if width > 0 and self.is_mounted:
            lines = len(text.wrap(self.app.console, width))
            layout = lines != self._lines
            self._lines = lines
        self.update(text, layout=layout)
        if self.attn_box is not None and self.attn_box.display:
            self._draw_attention()

    def on_unmount(self) -> None:
        if self.attn_box is not None:
            self.attn_box.remove()

    # attention -----------------------------------------------------------------------------
    @property
    def attention_shown(self) -> bool:
        return bool(self.attn_box is not None and self.attn_box.display)

    def action_toggle_attention(self) -> None:
        self.show_attention(not self.attention_shown)

    def show_attention(self, on: bool) -> None:
        if self.role != "bot":
            return
        if self.attn_box is None:
            if not on or self.parent is None:
                return
            self.attn_view = AttentionView(classes="attention")
            self.attn_box = HorizontalScroll(self.attn_view, classes="attention-box")
            self.parent.mount(self.attn_box, after=self)
        self.attn_box.display = on
        if on:
            self._draw_attention()

    def _draw_attention(self) -> None:
        if self.attn_view is not None:
            self.attn_view.set_data(self.pieces, self.prompt_pieces, self.attention, self.states)


def nbest_list(value: object) -> list[list]:
    """A stored n-best list (``meta["nbest"]``) as ``[text, score, pieces, attention]`` rows,
    whatever a hand-edited or older file holds (bad rows are dropped, not shown as garbage)."""
    out: list[list] = []
    for row in value if isinstance(value, list) else []:
        if isinstance(row, (list, tuple)) and len(row) >= 2 and isinstance(row[0], str):
            score = row[1] if isinstance(row[1], (int, float)) and not isinstance(row[1], bool) else 0.0
            pieces = row[2] if len(row) > 2 and isinstance(row[2], list) else []
            attention = row[3] if len(row) > 3 and isinstance(row[3], list) else []
            out.append([row[0], float(score), pieces, attention])
    return out


def transcript_text(turns: list[tuple[str, str]], hidden: int = 0) -> Text:
    """Older turns, folded into one block of text above the live messages."""
    out = Text()
    if hidden:
        out.append(
            f"… {hidden:,} earlier messages not shown (ctrl+s exports the whole conversation)\n\n", style="italic"
        )
    for i, (role, text) in enumerate(turns):
        out.append("You: " if role == "user" else "Bot: ", style="bold " + ("cyan" if role == "user" else "green"))
        out.append(clean_text(text, 1000))
        if i < len(turns) - 1:
            out.append("\n")
    return out


# ---------------------------------------------------------------------------------------------
# generate pane displays


TEMP_BAR_MAX = 2.0


def temperature_text(t: float, width: int = 16) -> Text:
    """``temperature 0.80 ▕███████░░░░░▏`` coloured from cold (blue) to hot (red); the bar spans
    0-2 and shows ``+`` beyond."""
    out = Text()
    out.append("temperature ", style="bold")
    out.append(f"{t:4.2f}", style="bold reverse" if t == 0 else "bold")
    out.append(" ▕")
    filled = round(min(t, TEMP_BAR_MAX) / TEMP_BAR_MAX * width)
    for i in range(width):
        if i < filled:
            x = i / max(1, width - 1)
            colour = (round(60 + 195 * x), round(120 - 60 * x), round(255 - 215 * x))
            out.append("█", style=Style.parse(_rgb(colour)))
        else:
            out.append("░", style="dim")
    out.append("▏")
    out.append("+" if t > TEMP_BAR_MAX else " ")
    out.append(
        "greedy" if t == 0 else ("sharper" if t < 1 else ("as trained" if t == 1 else "flatter")), style="dim italic"
    )
    return out


class TemperatureBar(Static):
    def __init__(self, value: float = 0.8, **kw) -> None:
        super().__init__(temperature_text(value), **kw)
        self.value = value

    def set_value(self, value: float) -> None:
        self.value = value
        self.update(temperature_text(value), layout=False)  # fixed width: no layout pass


def candidates_text(steps: list[tuple[str, list[tuple[str, float]]]], header: str = "", bar: int = 10) -> Text:
    """One line per sampled step (newest last): the chosen character, then the top candidates
    with their probabilities as numbers and bars; the chosen one is highlighted."""
    out = Text(no_wrap=True, overflow="crop")
    if header:
        out.append(header + "\n", style="bold")
    if not steps:
        out.append("(generate something to see the model's top candidates at each step)", style="dim italic")
        return out
    for chosen, cands in steps:
        out.append(f" {show_char(chosen):>2} │", style="bold")
        for ch, p in cands:
            style = "bold reverse" if ch == chosen else ""
            out.append(f" {show_char(ch):>2}", style=style)
            out.append(f" {p * 100:4.1f}% ", style="dim" if ch != chosen else "")
            n = p * bar
            full = int(n)
            part = " ▏▎▍▌▋▊▉"[int((n - full) * 8)] if full < bar else ""
            out.append(("█" * full + part).ljust(bar), style="green" if ch == chosen else "cyan")
        out.append("\n")
    out.rstrip()
    return out


class CandidatesView(Static):
    """The top candidates and their probabilities at the most recent sampling steps."""

    def __init__(self, keep: int = 200, **kw) -> None:
        super().__init__("", **kw)
        self.steps: deque[tuple[str, list[tuple[str, float]]]] = deque(maxlen=keep)
        self.header = ""

    def clear_steps(self, header: str = "") -> None:
        self.steps.clear()
        self.header = header
        self.redraw()

    def add_steps(self, steps: list[tuple[str, list[tuple[str, float]]]]) -> None:
        self.steps.extend(steps)

    def on_resize(self) -> None:
        self.redraw()

    def redraw(self, last: int | None = None) -> None:
        """Show the most recent steps that fit (newest at the bottom)."""
        if last is None:
            last = max(5, self.size.height - (2 if self.header else 1))
        shown = list(self.steps)[-last:]
        self.update(candidates_text(shown, self.header), layout=False)  # fills its box: no layout pass


class StreamView(ScrollView, can_focus=True):
    """Streamed text, word-wrapped, that stays cheap however long it grows.

    A ScrollView drawing lines itself (Textual's line API): appending text re-wraps only the
    last, open line and repaints this widget alone. A widget that grew in height instead would
    re-layout the whole screen at every new line, and a char LM produces lines faster than a
    2-core CPU can lay screens out. Follows the end unless the user scrolled up.
    """

    DEFAULT_CSS = "StreamView { overflow-x: hidden; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._parts: list[str] = []
        self._styles: list[tuple[int, int, Style]] = []  # (start, end, style) of styled appends
        self._lines: list[str] = []  # display lines, wrapped
        self._starts: list[int] = []  # offset in the whole text of each display line
        self._wrap_width = 0
        self._follow = True
        self._auto_y = 0
        self.length = 0

    def clear_text(self) -> None:
        self._parts, self._styles, self._lines, self._starts = [], [], [], []
        self._follow, self._auto_y = True, 0
        self.length = 0
        self.virtual_size = Size(0, 0)
        self.scroll_to(0, 0, animate=False, immediate=True, force=True)
        self.refresh()

    @property
    def plain(self) -> str:
        """Everything shown so far, as displayed (control characters as pictures)."""
        return "".join(self._parts)

    def append(self, text: str, style: str = "") -> None:
        if not text:
            return
        follow = self._following()
        text = clean_text(text, None)
        if style:
            self._styles.append((self.length, self.length + len(text), Style.parse(style)))
        self._parts.append(text)
        first = max(0, len(self._lines) - 1)  # the open line is re-wrapped
        self._wrap(text, self.length)
        self.length += len(text)
        self._resize_virtual()
        height = self.size.height
        last = len(self._lines) - 1
        if follow and height > 0 and last >= self.scroll_offset.y + height:
            # Jump scroll (as terminals do): the last line goes a third of the way down, so the
            # next lines land in view and only they are repainted, not the whole pane per line.
            self._follow_to(max(0, last - height // 3))
            self.refresh()
        else:
            self.refresh_lines(first, len(self._lines) - first)

    # Changing ``virtual_size`` costs a layout pass of the whole screen (tens of ms on a busy
    # 2-core CPU), so while text streams the virtual height grows a screenful at a time.
    def _resize_virtual(self, exact: bool = False) -> None:
        lines = len(self._lines)
        if not exact:
            block = max(10, self.size.height)
            lines = -(-(lines + block) // block) * block
        size = Size(self._width(), lines)
        if size != self.virtual_size:
            self.virtual_size = size

    def _following(self) -> bool:
        """Whether to keep the end in view: yes unless the user scrolled up from where the
        view last followed it (decided only once the widget has a size)."""
        height = self.size.height
        if height > 0:
            y = self.scroll_offset.y
            self._follow = y >= self._auto_y - 1 or len(self._lines) - 1 < y + height
        return self._follow

    def _follow_to(self, y: int) -> None:
        self._auto_y = y
        if y != self.scroll_offset.y:
            # force: the scrollbar (which allows scrolling) only appears after the next layout
            self.scroll_to(y=y, animate=False, immediate=True, force=True)

    def _scroll_to_last(self) -> None:
        if self.size.height > 0:
            self._follow_to(max(0, len(self._lines) - self.size.height))

    def finish(self) -> None:
        """The stream ended: trim the virtual height to the text, the last line at the bottom."""
        follow = self._following()
        self._resize_virtual(exact=True)
        if follow:
            self._scroll_to_last()
        self.refresh()

    def _width(self) -> int:
        return max(10, self.scrollable_content_region.width or 80)

    def _wrap(self, text: str, offset: int) -> None:
        """Add ``text`` (starting at ``offset`` in the whole) to the display lines: the last line
        stays open; greedy word wrap means earlier lines never change."""
        width = self._wrap_width = self._width()
        if self._lines:
            cur, start = self._lines.pop(), self._starts.pop()
        else:
            cur, start = "", offset
        pieces = text.split("\n")
        for i, piece in enumerate(pieces):
            cur += piece
            while _cells(cur) > width:
                cut = _break_at(cur, width)
                self._lines.append(cur[:cut])
                self._starts.append(start)
                start += cut
                cur = cur[cut:]
            if i < len(pieces) - 1:  # a newline closes the line
                self._lines.append(cur)
                self._starts.append(start)
                start += len(cur) + 1
                cur = ""
        self._lines.append(cur)
        self._starts.append(start)

    def on_resize(self) -> None:
        follow = self._follow  # as decided before the size changed
        if self._parts and self._width() != self._wrap_width:
            self._lines, self._starts = [], []
            self._wrap("".join(self._parts), 0)
            self._resize_virtual()
        if follow:
            self._scroll_to_last()
        self.refresh()

    def render_lines(self, crop):
        self._base_style = self.rich_style  # once per frame, not once per line (it walks the DOM)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        _, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        base = getattr(self, "_base_style", None) or self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, base)
        line, start = self._lines[index], self._starts[index]
        end = start + len(line)
        cuts = {0, len(line)}
        for a, b, _ in self._styles:
            if a < end and b > start:
                cuts.update((max(0, a - start), min(len(line), b - start)))
        bounds = sorted(cuts)
        segments = []
        for a, b in zip(bounds, bounds[1:]):
            style = base
            for sa, sb, st in self._styles:
                if sa <= start + a < sb:
                    style = style + st
            segments.append(Segment(line[a:b], style))
        return Strip(segments).crop_extend(0, width, base)


def _cells(s: str) -> int:
    return len(s) if s.isascii() else cell_len(s)


def _break_at(line: str, width: int) -> int:
    """Where to cut ``line`` (longer than ``width`` cells): after the last space that fits, else
    at the width (a word longer than the line is cut)."""
    if line.isascii():
        fit = width
    else:
        fit, used = 0, 0
        for ch in line:
            used += cell_len(ch)
            if used > width:
                break
            fit += 1
    space = line.rfind(" ", 0, fit + 1)
    return space + 1 if 0 < space < fit + 1 and space + 1 <= fit + 1 else max(1, fit)
