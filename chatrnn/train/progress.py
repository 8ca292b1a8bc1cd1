"""Showing a run: a rich progress bar on a terminal, plain lines in logs and pipes, or nothing;
and handing the same events to sinks (``--tensorboard``), which log even when the screen is quiet."""

from __future__ import annotations

import sys
import time
from typing import Protocol

from chatrnn.units import format_duration


class Sink(Protocol):
    """Receives every step and evaluation (e.g. :class:`chatrnn.train.tensorboard.TensorboardSink`)."""

    def start(self, description: str) -> None: ...

    def step(
        self, step: int, loss: float, lr: float | None, grad_norm: float | None, rate: float, unit: str
    ) -> None: ...

    def evaluated(self, step: int, metrics: dict) -> None: ...

    def close(self) -> None: ...


def cuda_memory() -> int | None:
    """Peak bytes allocated on the current CUDA device, or None when this process never used CUDA.

    Only asks torch when torch is already imported and CUDA initialised: the reporter stays
    importable (and cheap) without either.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_initialized():
            return None
        return int(torch.cuda.max_memory_allocated())
    except Exception:  # a driver problem must not break the progress line
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}G" if n >= 2**30 else f"{n / 2**20:.0f}M"


class Reporter:
    """Receives the trainer's events; the plain form prints a line at most every few seconds."""

    def __init__(
        self,
        quiet: bool = False,
        rich: bool | None = None,
        stream=None,
        every_s: float = 5.0,
        sinks: list[Sink] | tuple[Sink, ...] = (),
    ):
        self.quiet = quiet
        self.sinks = list(sinks)
        self.stream = stream or sys.stderr
        self.rich = (self.stream.isatty() if rich is None else rich) and not quiet
        self.every_s = every_s
        self._last = 0.0
        self._progress = None
        self._task = None
        self._val = "—"

    def start(self, description: str) -> None:
        self._val = "—"  # one reporter may show several runs (`chatrnn train`): no stale val loss
        for sink in self.sinks:
            sink.start(description)
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

    def update(
        self,
        step: int,
        progress: float,
        loss: float,
        rate: float,
        unit: str,
        eta: float | None,
        grad_norm: float | None = None,
        lr: float | None = None,
        step_loss: float | None = None,
    ) -> None:
        """``loss`` is the smoothed training loss shown on screen; sinks get ``step_loss`` (this
        step's own) when given. ``grad_norm`` is before clipping: a norm far above ``--grad-clip``
        every step says the learning rate is too high."""
        for sink in self.sinks:
            sink.step(step, loss if step_loss is None else step_loss, lr, grad_norm, rate, unit)
        if self.quiet:
            return
        gn = f" gnorm {grad_norm:.2f}" if grad_norm is not None else ""
        mem = cuda_memory()
        mem_s = f" mem {_gib(mem)}" if mem is not None else ""
        info = f"step {step} loss {loss:.3f} val {self._val}{gn} {rate:,.0f} {unit}/s{mem_s}"
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
        for sink in self.sinks:
            sink.evaluated(step, metrics)
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
        for sink in self.sinks:
            sink.close()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
