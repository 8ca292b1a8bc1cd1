"""Training curves from ``metrics.jsonl``, drawn with plotext: ``chatrnn info --plot`` and the TUI's
Runs view share this one drawing.

No torch here (the TUI imports it). :func:`draw` takes a plotext-like object: the ``plotext``
module itself for the CLI (:func:`render` builds a string), or ``textual_plotext``'s per-widget
``plt`` in the TUI, whose API is the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatrnn import checkpoint as ckpt
from chatrnn.errors import ChatrnnError

X_AXES = ("step", "time")
# One colour per run; a run's train curve is drawn dotted in its colour, its val curve solid.
COLORS = ("blue+", "orange+", "green+", "magenta+", "cyan+", "red+", "yellow+", "gray")


@dataclass
class Curve:
    """One run's evaluations: ``step`` and ``elapsed`` (seconds of training) per evaluation, the
    training loss at that moment (smoothed, as the trainer logs it) and the validation loss."""

    label: str
    step: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    train: list[float | None] = field(default_factory=list)
    val: list[float | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)

    def best_val(self) -> float | None:
        vals = [v for v in self.val if v is not None]
        return min(vals) if vals else None


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def curve_from_metrics(lines: list[dict], label: str) -> Curve:
    """The points of ``metrics.jsonl`` lines; lines without a step, or from before a resume that
    went back in time, are skipped so the x axis only moves forward."""
    c = Curve(label)
    for m in lines:
        if not isinstance(m, dict):
            continue
        step = _number(m.get("step"))
        if step is None or (c.step and step <= c.step[-1]):
            continue
        c.step.append(step)
        c.elapsed.append(_number(m.get("elapsed")) or (c.elapsed[-1] if c.elapsed else 0.0))
        c.train.append(_number(m.get("train_loss")))
        c.val.append(_number(m.get("val_loss")))
    return c


def load_curve(folder: str | Path, label: str | None = None) -> Curve:
    folder = Path(folder)
    return curve_from_metrics(ckpt.read_metrics(folder), label or folder.name)


def _time_scale(curves: list[Curve]) -> tuple[float, str]:
    longest = max((max(c.elapsed) for c in curves if c.elapsed), default=0.0)
    if longest >= 2 * 3600:
        return 3600.0, "hours"
    if longest >= 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


def x_ticks(lo: float, hi: float, x: str = "step") -> tuple[list[float], list[str]]:
    """Five ticks from ``lo`` to ``hi`` whose labels all differ.

    Steps are whole numbers (plotext's own ticks would print 2241.0), so a short run's ticks sit
    on the steps themselves: quarters of steps 1 to 3 would otherwise read "1 2 2 2 3". Times get
    as many digits as it takes to tell the ticks apart (100.1 and 100.2 s, not "100" twice).
    """
    ticks = [lo + (hi - lo) * k / 4 for k in range(5)]
    if x == "step":
        whole = sorted({round(t) for t in ticks})
        return [float(t) for t in whole], [f"{t:,}" for t in whole]
    labels = [f"{t:.3g}" for t in ticks]
    for digits in range(4, 18):
        if len(set(labels)) == len(labels):
            break
        labels = [f"{t:.{digits}g}" for t in ticks]
    return ticks, labels


def draw(plt: Any, curves: list[Curve], x: str = "step", title: str | None = None) -> None:
    """Draw ``curves`` on ``plt`` (cleared first); the caller sets the size and builds or shows it."""
    if x not in X_AXES:
        raise ChatrnnError(f"--x must be one of {', '.join(X_AXES)}, not {x!r}")
    plt.clear_data()
    plt.clear_figure()
    scale, unit = _time_scale(curves) if x == "time" else (1.0, "")
    many = len(curves) > 1
    for i, c in enumerate(curves):
        xs = c.step if x == "step" else [t / scale for t in c.elapsed]
        color = COLORS[i % len(COLORS)]
        for kind, ys, marker in (("train", c.train, "dot"), ("val", c.val, "braille")):
            pts = [(a, b) for a, b in zip(xs, ys) if b is not None]
            if not pts:
                continue
            label = f"{c.label} {kind}" if many else kind
            plt.plot([a for a, _ in pts], [b for _, b in pts], label=label, color=color, marker=marker)
    xs_all = [v for c in curves for v in (c.step if x == "step" else [t / scale for t in c.elapsed])]
    if xs_all and max(xs_all) > min(xs_all):
        plt.xticks(*x_ticks(min(xs_all), max(xs_all), x))
    plt.xlabel("step" if x == "step" else f"training time ({unit})")
    plt.ylabel("loss")
    if title:
        plt.title(title)


def render(curves: list[Curve], x: str = "step", width: int = 100, height: int = 24, color: bool = False) -> str:
    """The plot as text (``plotext.build()``), ANSI colours only with ``color``."""
    import plotext

    if not any(v is not None for c in curves for v in c.train + c.val):
        # no lines yet, or only lines without a finite loss (a run that went NaN at once): an
        # empty frame would look like a drawing bug
        raise ChatrnnError("nothing to plot: no evaluations (with a finite loss) in metrics.jsonl yet")
    title = "train and val loss" + ("" if len(curves) > 1 else f": {curves[0].label}")
    draw(plotext, curves, x, title)
    plotext.plotsize(width, height)
    plotext.theme("clear")  # the terminal's own background and text colours
    text = plotext.build()
    plotext.clear_figure()  # plotext's figure is global: leave nothing for the next caller
    return text if color else plotext.uncolorize(text)
