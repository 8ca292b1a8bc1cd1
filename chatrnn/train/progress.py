"""Showing a run: a rich progress bar on a terminal, plain lines in logs and pipes, or nothing."""

from __future__ import annotations

import sys
import time

from chatrnn.units import format_duration


class Reporter:
    """Receives the trainer's events; the plain form prints a line at most every few seconds."""

    def __init__(self, quiet: bool = False, rich: bool | None = None, stream=None, every_s: float = 5.0):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.rich = (self.stream.isatty() if rich is None else rich) and not quiet
        self.every_s = every_s
        self._last = 0.0
        self._progress = None
        self._task = None
        self._val = "—"

    def start(self, description: str) -> None:
        self._val = "—"  # one reporter may show several runs (`chatrnn train`): no stale val loss
        if self.quiet:
            return
        self.message(description)
        if self.rich:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=1.0, info="")

    def update(self, step: int, progress: float, loss: float, rate: float, unit: str, eta: float | None) -> None:
        if self.quiet:
            return
        info = f"step {step} loss {loss:.3f} val {self._val} {rate:,.0f} {unit}/s"
        if self._progress is not None:
            self._progress.update(self._task, completed=min(progress, 1.0), info=info)
            return
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            eta_s = f" eta {format_duration(eta)}" if eta is not None else ""
            print(f"{100 * min(progress, 1):5.1f}% {info}{eta_s}", file=self.stream, flush=True)

    def evaluated(self, step: int, metrics: dict, best: bool, note: str = "") -> None:
        self._val = f"{metrics['loss']:.3f}"
        if self.quiet:
            return
        star = " (best)" if best else ""
        extra = f" bpc {metrics['bpc']:.3f}" if "bpc" in metrics else ""
        note = f" [{note}]" if note else ""
        self.message(
            f"eval step {step}: val loss {metrics['loss']:.4f} ppl {metrics['perplexity']:.2f}{extra}{star}{note}"
        )

    def message(self, text: str) -> None:
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
