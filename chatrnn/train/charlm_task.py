"""The char LM as a training task: its batches, its loss, its evaluation, its checkpoint config.

The trainer (``trainer.py``) owns everything else; this file is all the char model adds to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from chatrnn.charvocab import CharVocab
from chatrnn.models.charlm import CharLM, CharLMConfig, detach_state
from chatrnn.train.batches import RowBatch, StreamRows

LN2 = math.log(2)


def metrics_from_loss(loss: float, count: int) -> dict:
    """Loss in nats/char with the figures people quote: perplexity and bits per character."""
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "bpc": loss / LN2, "chars": count}


@torch.no_grad()
def evaluate_stream(model: CharLM, data: np.ndarray, device: torch.device, rows: int = 32,
                    seq_len: int = 256, autocast: torch.dtype | None = None, rank: int = 0, world: int = 1) -> dict:
    """Mean next-character loss over a whole stream, scored in ``rows`` stateful rows.

    Nearly every character is scored (the tails of the rows are cut); the first characters of each
    row start from a zero state, which costs little when rows are long. Under DDP each rank scores
    its own ``rows // world`` of the rows (the ranks' sums are then reduced).
    """
    was_training = model.training
    model.eval()
    rows = max(1, min(rows, (len(data) - 1) // 2))
    it = StreamRows(data, max(1, rows // world), seq_len, rank, world)
    total, count, state = 0.0, 0, None
    try:
        for _ in range(it.steps_per_pass):
            b = it.next()
            x, y = b.x.to(device), b.y.to(device)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                logits, state = model(x, state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum")
            total += float(loss)
            count += y.numel()
    finally:
        model.train(was_training)
    return metrics_from_loss(total / max(count, 1), count)


@dataclass
class CharLMData:
    vocab: CharVocab
    train: np.ndarray
    val: np.ndarray
    corpus_names: list[str]


class CharLMTask:
    """Stateful TBPTT over ``data.train``; validation over ``data.val``."""

    kind = "charlm"
    unit = "chars"

    def __init__(self, model: CharLM, data: CharLMData, batch_size: int, seq_len: int,
                 device: torch.device, rank: int = 0, world: int = 1, eval_rows: int = 32):
        self.model = model
        self.data = data
        self.device = device
        self.rows = StreamRows(data.train, batch_size, seq_len, rank, world)
        self.rank, self.world = rank, world
        self.state = None
        self.eval_rows = eval_rows
        self.pin = device.type == "cuda"
        self.tokens_per_step = batch_size * self.rows.seq_len

    def next_batch(self) -> RowBatch:
        b = self.rows.next(pin=self.pin)
        nb = self.device.type == "cuda"
        return RowBatch(b.x.to(self.device, non_blocking=nb), b.y.to(self.device, non_blocking=nb), b.reset)

    def loss(self, model: torch.nn.Module, batch: RowBatch) -> tuple[torch.Tensor, int]:
        if batch.reset:
            self.state = None
        logits, state = model(batch.x, self.state)
        self.state = detach_state(state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), batch.y.reshape(-1))
        return loss, batch.y.numel()

    def evaluate(self, model: CharLM, autocast: torch.dtype | None = None) -> dict:
        return evaluate_stream(model, self.data.val, self.device, rows=self.eval_rows, autocast=autocast,
                               rank=self.rank, world=self.world)

    @property
    def epoch(self) -> float:
        return self.rows.epoch

    @property
    def epoch_steps(self) -> int:
        return self.rows.steps_per_pass

    def state_dict(self) -> dict:
        d: dict = {"rows": self.rows.state_dict()}
        if self.state is not None:
            st = self.state if isinstance(self.state, tuple) else (self.state,)
            d["hidden"] = [s.detach().cpu() for s in st]
        return d

    def merge_rank_states(self, states: list[dict]) -> dict:
        """DDP: one checkpoint state, the ranks' hidden states joined in global row order (rank r owns
        rows r*B..(r+1)*B-1), so any number of ranks can resume it with the same global batch."""
        d = dict(states[0])
        if all("hidden" in s for s in states):
            d["hidden"] = [torch.cat(parts, dim=1) for parts in zip(*(s["hidden"] for s in states))]
        else:
            d.pop("hidden", None)
        return d

    def load_state_dict(self, d: dict) -> None:
        self.rows.load_state_dict(d["rows"])
        hidden = d.get("hidden")
        b = self.rows.batch_size
        if hidden is None or hidden[0].shape[1] != b * self.world:  # another global batch: restart state
            self.state = None
        else:
            hs = [h[:, self.rank * b:(self.rank + 1) * b].contiguous().to(self.device) for h in hidden]
            self.state = tuple(hs) if len(hs) == 2 else hs[0]

    def checkpoint_config(self) -> dict:
        return {
            "model": self.model.cfg.to_dict(),
            "vocab": self.data.vocab.chars,
            "batch": {"batch_size": self.rows.batch_size * self.world, "seq_len": self.rows.seq_len},
            "corpus": {"sources": self.data.corpus_names[:20], "train_chars": int(len(self.data.train)),
                       "val_chars": int(len(self.data.val))},
        }

    def write_extras(self, stage) -> None:
        """The char LM needs nothing beyond config.json and the weights."""

    def describe(self) -> str:
        m = self.model.cfg
        return (f"char LM: {m.layers}x{m.hidden} {m.cell.upper()}, {self.model.num_parameters():,} parameters, "
                f"vocab {m.vocab_size}, {len(self.data.train):,} train / {len(self.data.val):,} val chars")
