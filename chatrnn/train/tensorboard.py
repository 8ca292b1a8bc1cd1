"""``chatrnn train ... --tensorboard DIR``: the run's scalars as TensorBoard event files.

A :class:`~chatrnn.train.progress.Sink` of the reporter, so the trainer knows nothing about it and
it logs even under ``--quiet``. Under torchrun only rank 0's reporter carries it (the other ranks get
a quiet reporter without sinks, see ``launch.py``), and the writer is opened when the run starts,
so no other rank ever creates an events file. ``tensorboard`` is an optional extra: without it the
flag fails at once with the command that installs it, before any training.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from chatrnn.errors import ChatrnnError

INSTALL_HINT = "--tensorboard needs the tensorboard package: pip install 'chatrnn[tb]' (or pip install tensorboard)"


def check_available() -> None:
    """Fail early (one line) when ``torch.utils.tensorboard`` cannot be imported."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ChatrnnError(INSTALL_HINT) from None


class TensorboardSink:
    """Writes ``train/*`` every step and ``val/*`` at every evaluation into ``logdir``.

    ``logdir`` is one run's folder: ``tensorboard --logdir DIR`` then shows every run under DIR
    side by side (the CLI names them after the checkpoint). A resumed run appends to the same
    folder, continuing its step axis.
    """

    def __init__(self, logdir: str | Path):
        check_available()
        self.logdir = Path(logdir)
        self._writer: Any = None

    def start(self, description: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.close()
        self._writer = SummaryWriter(log_dir=str(self.logdir))
        self._writer.add_text("run", description, 0)

    def step(self, step: int, loss: float, lr: float | None, grad_norm: float | None, rate: float, unit: str) -> None:
        w = self._writer
        if w is None:
            return
        if math.isfinite(loss):
            w.add_scalar("train/loss", loss, step)
        if lr is not None:
            w.add_scalar("train/lr", lr, step)
        if grad_norm is not None and math.isfinite(grad_norm):
            w.add_scalar("train/grad_norm", grad_norm, step)
        if rate > 0:  # 0 until the first second of the run has been measured
            w.add_scalar(f"train/{unit}_per_s", rate, step)

    def evaluated(self, step: int, metrics: dict) -> None:
        w = self._writer
        if w is None:
            return
        for key in ("loss", "perplexity", "bpc"):
            value = metrics.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                w.add_scalar(f"val/{key}", float(value), step)
        w.flush()  # an evaluation is what people open TensorBoard to see: do not wait for the queue

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
