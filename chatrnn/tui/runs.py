"""The Runs screen (F4): every checkpoint found, its loss curve, best val loss, size, corpus and
training time, kept current while a run trains in another terminal.

Staying current must cost nothing when nothing changes: a timer stats the checkpoints root, its
group folders and each run's ``metrics.jsonl`` and ``config.json`` (no reads), and only a change of
that signature rescans; a rescan re-reads only the files whose stat changed. A save swaps the
whole checkpoint folder in (``checkpoint.py``), so every evaluation changes the signature.

No torch: discovery is ``loading.discover`` (JSON and safetensors headers), the curves come from
:mod:`chatrnn.plot`, drawn by ``textual-plotext``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Label, Static
from textual_plotext import PlotextPlot

from chatrnn import checkpoint as ckpt
from chatrnn.errors import ChatrnnError
from chatrnn.plot import Curve, curve_from_metrics, draw
from chatrnn.terminal import visible
from chatrnn.tui.loading import KIND_LABEL, CheckpointInfo, discover
from chatrnn.units import format_duration

COLUMNS = ("name", "kind", "best val", "evals", "steps", "size", "corpus", "trained", "saved")
MAX_COMPARED = 8


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@dataclass
class Run:
    """One row: the picker's facts plus what only this view shows."""

    info: CheckpointInfo
    curve: Curve
    corpus: str = ""
    train_time_s: float | None = None

    @property
    def key(self) -> str:
        return str(self.info.path)

    def cells(self) -> tuple[Text, ...]:
        """Every cell as plain Text: names, corpora and reasons come from files and are never markup."""
        i = self.info
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(i.modified)) if i.modified else "-"
        trained = format_duration(self.train_time_s) if self.train_time_s is not None else "-"
        best = self.curve.best_val()
        best_text = f"{best:.3f}" if best is not None else i.loss_text()
        steps = f"{i.steps:,}" if i.steps is not None else "-"
        # a damaged run says so in one word: its reason (often 30+ characters) would widen the
        # column and push "saved" off an 120-column screen; the plot's title gives the reason
        kind = KIND_LABEL.get(i.kind or "", str(i.kind)) if i.problem is None else "unreadable"
        cells = (i.name, kind, best_text, str(len(self.curve)), steps, i.size_text(), self.corpus, trained, saved)
        return tuple(Text(visible(c)) for c in cells)


def _corpus_text(cfg: dict) -> str:
    corpus = cfg.get("corpus") if isinstance(cfg.get("corpus"), dict) else {}
    sources = corpus.get("sources")
    if not isinstance(sources, list) or not sources:
        return "-"
    names = [Path(str(s)).name or str(s) for s in sources]
    text = ", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")
    return text[:28]


class RunsScreen(Screen):
    """Full screen: the table of runs on top, the highlighted run's curve (or all of them) below."""

    DEFAULT_CSS = """
    RunsScreen {
        layout: vertical;
    }
    #runs-title {
        padding: 0 1;
        text-style: bold;
    }
    #runs-table {
        height: 2fr;
        min-height: 5;
    }
    #runs-plot {
        height: 3fr;
        min-height: 8;
    }
    #runs-empty {
        padding: 1 2;
        color: $text-muted;
    }
    #runs-hint {
        padding: 0 1;
        color: $text-muted;
    }
    """

    BINDINGS = [
        Binding("escape,f4,q", "close", "Close"),
        Binding("f5", "rescan", "Rescan"),
        Binding("x", "toggle_x", "Steps/time"),
        Binding("c", "toggle_compare", "All runs"),
    ]

    def __init__(self, root: Path | None = None, extra: list[str] | tuple = (), poll_s: float = 2.0) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else ckpt.checkpoints_root()
        self.extra = list(extra)
        self.poll_s = poll_s
        self.x_axis = "step"
        self.compare = False
        self.runs: list[Run] = []
        self.rescans = 0  # how many times the files were actually re-read (tests, and the cheap-poll claim)
        self._signature: Any = None
        self._curves: dict[str, tuple[Any, Curve]] = {}  # path -> (metrics stat, curve)
        self._configs: dict[str, tuple[Any, str, float | None]] = {}  # path -> (config stat, corpus, time)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(f"Runs under {self.root}/"), id="runs-title")
            table: DataTable = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield table
            yield Static("", id="runs-empty")
            yield PlotextPlot(id="runs-plot")
            yield Label(
                "↑/↓ picks a run · c all runs on one plot · x steps/time · F5 rescans · Esc closes", id="runs-hint"
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.action_rescan()
        self.set_interval(self.poll_s, self.poll)
        table.focus()

    # ---- staying current ------------------------------------------------------------------
    def _head(self) -> tuple:
        """Stats of the root and its group folders: a run appearing or being saved changes them."""
        parts: list[Any] = [_stat(self.root)]
        try:
            with os.scandir(self.root) as it:
                parts += sorted((e.name, _stat(Path(e.path))) for e in it if e.is_dir() and not e.name.startswith("."))
        except OSError:
            pass
        return tuple(parts)

    def signature(self) -> tuple:
        """Stats only, no reads: the root and its group folders, then each known run's
        metrics.jsonl and config.json."""
        runs = tuple((r.key, _stat(r.info.path / ckpt.METRICS), _stat(r.info.path / ckpt.CONFIG)) for r in self.runs)
        return self._head() + runs

    def poll(self) -> None:
        if self.signature() != self._signature:
            self.action_rescan()

    def action_rescan(self) -> None:
        # Every stat is taken before the read it stands for: a save that lands during the rescan
        # then differs from the recorded signature, and the next poll picks it up.
        self.rescans += 1
        head = self._head()
        infos = discover(self.root, extra=self.extra)
        self.runs = [self._run(info) for info in infos]
        live = {r.key for r in self.runs}
        self._curves = {k: v for k, v in self._curves.items() if k in live}
        self._configs = {k: v for k, v in self._configs.items() if k in live}
        self._signature = head + tuple((r.key, self._curves[r.key][0], self._configs[r.key][0]) for r in self.runs)
        self._fill_table()
        self._draw()

    def _run(self, info: CheckpointInfo) -> Run:
        key = str(info.path)
        mstat = _stat(info.path / ckpt.METRICS)
        cached = self._curves.get(key)
        if cached is not None and cached[0] == mstat:
            curve = cached[1]
        else:
            try:
                lines = ckpt.read_metrics(info.path)
            except (ChatrnnError, OSError):
                lines = []
            curve = curve_from_metrics(lines, info.name)
            self._curves[key] = (mstat, curve)
        cstat = _stat(info.path / ckpt.CONFIG)
        conf = self._configs.get(key)
        if conf is None or conf[0] != cstat:
            corpus, seconds = "-", None
            try:
                cfg = ckpt.read_config(info.path)
                corpus = _corpus_text(cfg)
                t = (cfg.get("training") or {}).get("train_time_s")
                seconds = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
            except (ChatrnnError, OSError, ValueError, AttributeError):
                pass
            conf = (cstat, corpus, seconds)
            self._configs[key] = conf
        return Run(info, curve, conf[1], conf[2])

    # ---- showing --------------------------------------------------------------------------
    def _fill_table(self) -> None:
        table = self.query_one(DataTable)
        keep = self.highlighted.key if self.highlighted is not None else None
        table.clear()
        for run in self.runs:
            table.add_row(*run.cells(), key=run.key)
        empty = self.query_one("#runs-empty", Static)
        empty.display = not self.runs
        empty.update(
            Text("")
            if self.runs
            else Text(f"No checkpoints under {self.root}/ yet. Train one (chatrnn train) and it appears here.")
        )
        keys = [r.key for r in self.runs]
        if keep in keys:
            table.move_cursor(row=keys.index(keep), animate=False)

    @property
    def highlighted(self) -> Run | None:
        if not self.runs:
            return None
        table = self.query_one(DataTable)
        row = table.cursor_row
        return self.runs[row] if 0 <= row < len(self.runs) else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._draw()

    def shown_curves(self) -> list[Curve]:
        if self.compare:
            return [r.curve for r in self.runs if len(r.curve)][:MAX_COMPARED]
        run = self.highlighted
        return [run.curve] if run is not None and len(run.curve) else []

    def _draw(self) -> None:
        plot = self.query_one(PlotextPlot)
        curves = self.shown_curves()
        run = self.highlighted
        if curves:
            title = "all runs" if self.compare else f"{curves[0].label}: train and val loss"
            if not self.compare and run is not None and run.info.problem is not None:
                title = visible(f"{run.info.name}: {run.info.problem}; its train and val loss")
            draw(plot.plt, curves, self.x_axis, title)
        else:
            plot.plt.clear_data()
            plot.plt.clear_figure()
            if run is not None and run.info.problem is not None:
                plot.plt.title(visible(f"{run.info.name}: {run.info.problem}"))
            else:
                plot.plt.title("no evaluations yet" if run is not None else "")
        plot.refresh()

    def action_toggle_x(self) -> None:
        self.x_axis = "time" if self.x_axis == "step" else "step"
        self._draw()

    def action_toggle_compare(self) -> None:
        self.compare = not self.compare
        self._draw()

    def action_close(self) -> None:
        self.app.pop_screen()
