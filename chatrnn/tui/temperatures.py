"""Side by side temperatures: one seed, two to four temperatures streamed in columns at once.

What temperature does is easiest to see by comparison: the same seed, the same random numbers,
only the temperature different. All columns run in ONE worker thread, a character of each column
in turn (:func:`interleave`): the columns grow in lockstep, one Esc (one cancel event) stops them
all, and the pane's single-job machinery (:class:`~chatrnn.tui.streaming.StreamingPane`) is reused
as it is. Every column draws with the same sampling seed, and the sampler spends exactly one
uniform draw per character, so at a step where two columns have the same history they differ
only because their distributions differ.

Pure display and parsing here: the pane (``generate.py``) owns the job, this module the columns.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from chatrnn.errors import ChatrnnError
from chatrnn.tui.widgets import CandidatesView, StreamView, candidates_text, temperature_text

DEFAULT_TEMPERATURES = (0.5, 0.8, 1.1)
MIN_COLUMNS, MAX_COLUMNS = 2, 4
MAX_TEMPERATURE = 10.0


def parse_temperatures(raw: str) -> tuple[float, ...]:
    """``"0.5 0.8 1.1"`` (spaces, commas or semicolons between) -> ``(0.5, 0.8, 1.1)``.

    Two to four values in [0, 10] (0 is greedy); anything else is one-line :class:`ChatrnnError`
    that says what was wrong, so a typo in the box never starts a run."""
    parts = [p for p in re.split(r"[\s,;]+", raw.strip()) if p]
    if not MIN_COLUMNS <= len(parts) <= MAX_COLUMNS:
        raise ChatrnnError(f"give {MIN_COLUMNS} to {MAX_COLUMNS} temperatures, e.g. '0.5 0.8 1.1' (got {len(parts)})")
    out: list[float] = []
    for p in parts:
        try:
            t = float(p)
        except ValueError:
            raise ChatrnnError(f"not a temperature: {p[:20]!r} (a number from 0 to {MAX_TEMPERATURE:g})") from None
        if not 0.0 <= t <= MAX_TEMPERATURE:  # also refuses nan and inf
            raise ChatrnnError(f"temperature {p[:20]} is out of range: 0 (greedy) to {MAX_TEMPERATURE:g}")
        out.append(round(t, 4))
    return tuple(out)


def format_temperatures(temps: Iterable[float]) -> str:
    return " ".join(f"{t:.2f}" for t in temps)


@dataclass
class ColumnToken:
    """A token of one column (``text`` is the token's, so the job's bookkeeping still works)."""

    column: int
    token: Any

    @property
    def text(self) -> str:
        return self.token.text


def interleave(streams: list[Iterator[Any]]) -> Iterator[ColumnToken]:
    """One token of each stream in turn until every stream has ended; closing this generator
    closes every stream (each model stream then restores its thread setting at once)."""
    live = list(enumerate(streams))
    try:
        while live:
            still = []
            for column, stream in live:
                try:
                    tok = next(stream)
                except StopIteration:
                    continue
                still.append((column, stream))
                yield ColumnToken(column, tok)
            live = still
    finally:
        for stream in streams:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def chosen_probability(token: Any) -> float | None:
    """The probability the sampler gave the character it chose (None: not among the candidates)."""
    for ch, p in getattr(token, "candidates", None) or ():
        if ch == token.text:
            return float(p)
    return None


class ColumnCandidates(CandidatesView):
    """A column's candidates: narrower bars (a column is a third of the screen)."""

    BAR = 4

    def redraw(self, last: int | None = None) -> None:
        if last is None:
            last = max(3, self.size.height - (2 if self.header else 1))
        self.update(candidates_text(list(self.steps)[-last:], self.header, bar=self.BAR), layout=False)


class TemperatureColumn(Vertical):
    """One temperature: its bar, the streamed text, and the candidates at each of its steps."""

    def __init__(self, index: int, **kw: Any) -> None:
        super().__init__(classes="temp-column", **kw)
        self.index = index
        self.temperature = 0.0
        self.chars = 0
        self._p_sum = 0.0
        self._p_n = 0

    def compose(self) -> ComposeResult:
        yield Static("", classes="temp-head")
        yield StreamView(classes="temp-output")
        yield ColumnCandidates(keep=100, classes="temp-cands")

    @property
    def output(self) -> StreamView:
        return self.query_one(StreamView)

    @property
    def candidates(self) -> ColumnCandidates:
        return self.query_one(ColumnCandidates)

    def mean_p(self) -> float | None:
        """Mean probability of the chosen characters: how sure this column was (1.0 at greedy)."""
        return self._p_sum / self._p_n if self._p_n else None

    def start(self, temperature: float, seed: str) -> None:
        self.temperature = temperature
        self.chars, self._p_sum, self._p_n = 0, 0.0, 0
        self.output.clear_text()
        self.output.append(seed, style="bold")
        self.candidates.clear_steps()
        self.show_head()

    def add(self, tokens: list[Any]) -> None:
        self.output.append("".join(t.text for t in tokens))
        self.candidates.add_steps([(t.text, list(t.candidates)) for t in tokens])
        self.chars += len(tokens)
        for t in tokens:
            p = chosen_probability(t)
            if p is not None:
                self._p_sum += p
                self._p_n += 1

    def show_head(self) -> None:
        head = temperature_text(self.temperature, width=8)
        p = self.mean_p()
        head.append(f"\n{self.chars:,} chars", style="dim")
        if p is not None:
            head.append(f" · mean p(chosen) {p * 100:.0f}%", style="dim")
        self.query_one(".temp-head", Static).update(head, layout=False)


class TemperatureColumns(Vertical):
    """The side-by-side view: a box for the temperatures, then one column per temperature.

    All :data:`MAX_COLUMNS` columns exist from the start and unused ones are hidden, so changing
    the number of temperatures never mounts widgets while text streams."""

    DEFAULT_CSS = """
    TemperatureColumns { height: 1fr; }
    #temps-row { height: 1; padding: 0 1; margin-bottom: 1; }
    #gen-temps { width: 22; }
    #gen-temps.invalid { color: $error; text-style: bold; }
    #temps-hint { width: 1fr; margin-left: 2; }
    #temps-cols { height: 1fr; }
    .temp-column { width: 1fr; border-left: solid $primary; padding: 0 1; }
    .temp-head { height: 2; }
    .temp-output { height: 3fr; scrollbar-size-vertical: 1; }
    .temp-output:focus { background: $boost; }
    .temp-cands { height: 2fr; border-top: solid $primary-darken-2; text-wrap: nowrap; text-overflow: clip; }
    """

    def __init__(self, temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES, **kw: Any) -> None:
        super().__init__(**kw)
        self.temperatures = tuple(temperatures)
        self._last_candidates = 0.0

    def compose(self) -> ComposeResult:
        with Horizontal(id="temps-row"):
            yield Label("temperatures", classes="field-label")
            yield Input(format_temperatures(self.temperatures), id="gen-temps", compact=True)
            yield Static(
                Text("2 to 4, e.g. 0.5 0.8 1.1 · Enter generates · one seed, the same random draws", style="dim"),
                id="temps-hint",
            )
        with Horizontal(id="temps-cols"):
            for i in range(MAX_COLUMNS):
                yield TemperatureColumn(i, id=f"temp-col-{i}")

    def on_mount(self) -> None:
        self._show_columns()

    @property
    def columns(self) -> list[TemperatureColumn]:
        return list(self.query(TemperatureColumn))[: len(self.temperatures)]

    def set_temperatures(self, temps: tuple[float, ...]) -> None:
        self.temperatures = tuple(temps)
        box = self.query_one("#gen-temps", Input)
        if parse_or_none(box.value) != self.temperatures:
            with box.prevent(Input.Changed):
                box.value = format_temperatures(self.temperatures)
        box.remove_class("invalid")
        self._show_columns()

    def _show_columns(self) -> None:
        for col in self.query(TemperatureColumn):
            col.display = col.index < len(self.temperatures)

    def show_candidates(self, on: bool) -> None:
        for col in self.query(TemperatureColumn):
            col.candidates.display = on
            if on:
                col.candidates.redraw()

    def start(self, seed: str, header: str = "") -> None:
        for col, t in zip(self.columns, self.temperatures):
            col.start(t, seed)
            col.candidates.header = header

    #: Candidates redraws per second while streaming: a column's table is ~20 lines of styled
    #: text, and three or four of them at every frame would leave the UI no time for keys.
    CANDIDATES_FPS = 4

    def add(self, items: list[ColumnToken], candidates: bool) -> None:
        by_column: dict[int, list[Any]] = {}
        for it in items:
            by_column.setdefault(it.column, []).append(it.token)
        cols = self.columns
        for i, toks in by_column.items():
            if i < len(cols):
                cols[i].add(toks)
        now = time.perf_counter()
        if candidates and now - self._last_candidates >= 1 / self.CANDIDATES_FPS:
            self._last_candidates = now
            for col in cols:
                col.candidates.redraw()

    def refresh_heads(self) -> None:
        for col in self.columns:
            col.show_head()

    def finish(self) -> None:
        for col in self.columns:
            col.output.finish()
            col.candidates.redraw()
            col.show_head()
        self.refresh(layout=True)  # the text views shrank to their text: repaint without their scrollbars

    def texts(self) -> list[str]:
        return [col.output.plain for col in self.columns]


def parse_or_none(raw: str) -> tuple[float, ...] | None:
    try:
        return parse_temperatures(raw)
    except ChatrnnError:
        return None
