"""Stateful truncated-BPTT rows over a token stream.

The stream is cut into ``world * batch`` contiguous rows; this rank owns ``batch`` of them. Each step
returns the next ``seq_len`` ids of every row (and the ids one to the right as targets), so the
hidden state at the end of one step is exactly the right starting state for the next. When the rows
are used up the position wraps to the start and ``reset`` tells the model to zero its state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from chatrnn.errors import ChatrnnError


@dataclass
class RowBatch:
    x: torch.Tensor  # (B, T) int64 inputs
    y: torch.Tensor  # (B, T) int64 targets
    reset: bool  # True at the first window of a pass: start from a zero state
    # Set by the char LM task, not here: the rows' state from the last window (None: zeros), and for
    # a CPU shard the generator its dropout masks come from (None: the model's own dropout).
    state: Any = None
    generator: torch.Generator | None = None


class StreamRows:
    def __init__(self, data: np.ndarray, batch_size: int, seq_len: int, rank: int = 0, world: int = 1):
        rows = batch_size * world
        row_len = (len(data) - 1) // rows
        if row_len < 2:
            raise ChatrnnError(f"text of {len(data):,} characters is too short for {rows} rows; lower --batch-size")
        self.data = data
        self.batch_size = batch_size
        self.seq_len = min(seq_len, row_len)
        self.row_len = row_len
        self.starts = (np.arange(batch_size) + rank * batch_size) * row_len
        self.steps_per_pass = row_len // self.seq_len
        self._offsets = np.arange(self.seq_len + 1)
        self.pos = 0  # window index within the current pass
        self.passes = 0  # completed passes (epochs)

    @property
    def epoch(self) -> float:
        return self.passes + self.pos / self.steps_per_pass

    def window(self, pos: int) -> np.ndarray:
        idx = self.starts[:, None] + pos * self.seq_len + self._offsets
        return np.asarray(self.data[idx], dtype=np.int64)

    def next(self, pin: bool = False) -> RowBatch:
        reset = self.pos == 0
        w = torch.from_numpy(self.window(self.pos))
        if pin:
            w = w.pin_memory()
        self.pos += 1
        if self.pos >= self.steps_per_pass:
            self.pos = 0
            self.passes += 1
        return RowBatch(w[:, :-1], w[:, 1:], reset)

    def state_dict(self) -> dict:
        return {"pos": self.pos, "passes": self.passes, "steps_per_pass": self.steps_per_pass}

    def load_state_dict(self, d: dict) -> None:
        pos, saved = int(d["pos"]), int(d.get("steps_per_pass", self.steps_per_pass))
        if saved != self.steps_per_pass:  # another batch shape: keep the same fraction of the pass
            pos = round(pos * self.steps_per_pass / max(1, saved))
        self.pos = pos % self.steps_per_pass
        self.passes = int(d["passes"])
