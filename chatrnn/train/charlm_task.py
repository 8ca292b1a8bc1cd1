"""The char LM as a training task: its batches, its loss, its evaluation, its checkpoint config.

The trainer (``trainer.py``) owns everything else; this file is all the char model adds to it
(the interface it implements is ``task.py``'s :class:`Task`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from chatrnn.charvocab import CharVocab
from chatrnn.models.charlm import CharLM, detach_state
from chatrnn.train.batches import RowBatch, StreamRows
from chatrnn.train.cpu_parallel import ShardPool, shard_bounds, shard_generators
from chatrnn.train.task import Loss, Task

LN2 = math.log(2)
EVAL_MAX_CHARS = 1_000_000
EVAL_BURN_IN = 256  # characters a validation row reads before it scores (see evaluate_stream)
# Bytes kept per token and hidden unit and layer for the backward pass (gates, cell and hidden
# state, the layer's output and dropout mask), by cell type; a rough figure that errs high.
_RNN_FLOATS = {"lstm": 8, "gru": 6, "rnn": 3}


def metrics_from_loss(loss: float, count: int) -> dict:
    """Loss in nats/char with the figures people quote: perplexity and bits per character."""
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "bpc": loss / LN2, "chars": count}


@torch.no_grad()
def evaluate_stream(
    model: CharLM,
    data: np.ndarray,
    device: torch.device,
    rows: int = 32,
    seq_len: int = 256,
    autocast: torch.dtype | None = None,
    rank: int = 0,
    world: int = 1,
    set_mode: bool = True,
    burn_in: int = EVAL_BURN_IN,
) -> dict:
    """Mean next-character loss over a whole stream: every character after the first is scored once,
    each with the text before it as context, as if the model read the stream from the start.

    Reading it in one row would be slow, so it is read in ``rows`` parallel rows; each row after the
    first starts ``burn_in`` characters early and scores nothing until it reaches its own part, so
    that no character is scored from a cold (zero) state. Without that, each row start cost ~18 nats
    (a 4x176 LSTM on Tiny Shakespeare), 0.006 nats/char over 32 rows of its 111k validation chars.
    Under DDP (and the CPU trainer's threads) each rank scores ``rows // world`` of the rows; the
    ranks' figures, weighted by ``chars``, then give the single-process figure.
    """
    was_training = model.training
    if set_mode:
        model.eval()
    preds = len(data) - 1  # input i predicts character i + 1
    rows = max(1, min(rows, preds // 2))
    rows = max(world, rows - rows % world)  # every rank the same number of rows
    burn = 0 if rows == 1 else min(burn_in, preds // (2 * rows))
    width = -(-(preds + (rows - 1) * burn) // rows)  # each row's inputs, burn-in included
    mine = np.arange(rank * (rows // world), (rank + 1) * (rows // world))
    starts = mine * (width - burn)  # row r reads inputs [starts[r], starts[r] + width)
    first_scored = np.where(mine == 0, 0, burn)
    total, count, state = 0.0, 0, None
    try:
        for lo in range(0, width, seq_len):
            j = np.arange(lo, min(lo + seq_len + 1, width + 1))
            idx = starts[:, None] + j[None, :]
            ids = torch.from_numpy(np.asarray(data[np.minimum(idx, preds)], dtype=np.int64))
            scored = (j[None, :-1] >= first_scored[:, None]) & (idx[:, :-1] < preds)
            x, y = ids[:, :-1].to(device), ids[:, 1:].to(device)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                logits, _, state = model(x, state)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="none"
            )
            total += float(loss[torch.from_numpy(scored.reshape(-1)).to(device)].sum())
            count += int(scored.sum())  # from the numpy mask: no second device sync per window
    finally:
        if set_mode:
            model.train(was_training)
    return metrics_from_loss(total / max(count, 1), count)


def _slice_state(state, lo: int, hi: int):
    if state is None:
        return None
    return tuple(s[:, lo:hi] for s in state) if isinstance(state, tuple) else state[:, lo:hi]


def _cat_states(states: list):
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, dim=1) for parts in zip(*states))
    return torch.cat(states, dim=1)


@dataclass
class CharLMData:
    vocab: CharVocab
    train: np.ndarray
    val: np.ndarray
    corpus_names: list[str]


class CharLMTask(Task):
    """Stateful TBPTT over ``data.train``; validation over ``data.val``.

    The rows' hidden state at the end of a window starts the next one: each batch carries the state
    it starts from, :meth:`loss` hands the new one on, and :meth:`carry_over` keeps it. On a CPU the
    trainer shards a batch by rows, each shard with its slice of the state."""

    kind = "charlm"
    unit = "chars"

    def __init__(
        self,
        model: CharLM,
        data: CharLMData,
        batch_size: int,
        seq_len: int,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        eval_rows: int = 32,
        data_settings: dict | None = None,
    ):
        self.model = model
        self.data = data
        # where the text came from (corpus paths, encoding, split): ``--resume`` reads it back, so
        # continuing a run needs no ``--corpus``; None for text handed over (``chatrnn train``)
        self.data_settings = data_settings
        self.device = device
        self.rows = StreamRows(data.train, batch_size, seq_len, rank, world)
        self.rank, self.world = rank, world
        self.state = None
        self.eval_rows = eval_rows
        self.pin = device.type == "cuda"

    @property
    def tokens_per_step(self) -> int:
        return self.rows.batch_size * self.rows.seq_len

    def next_batch(self, draw: float) -> RowBatch:
        """The next window of every row, with the state the rows ended the last one in (``draw``
        is unused: the char LM makes no per-batch random choice)."""
        b = self.rows.next(pin=self.pin)
        nb = self.device.type == "cuda"
        x, y = b.x.to(self.device, non_blocking=nb), b.y.to(self.device, non_blocking=nb)
        return RowBatch(x, y, b.reset, state=None if b.reset else self.state)

    def loss(self, model: torch.nn.Module, batch: RowBatch) -> Loss:
        """Summed next-character loss of the batch's (or shard's) rows, and their new state."""
        masks = None
        if batch.generator is not None:  # a CPU shard: masks from its own generator (see split)
            masks = self.model.dropout_masks(batch.x.size(0), batch.x.size(1), generator=batch.generator)
        logits, _, state = model(batch.x, batch.state, masks=masks)
        total = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), batch.y.reshape(-1), reduction="sum"
        )
        return Loss(total, batch.y.numel(), detach_state(state))

    # ----- CPU: the batch's rows sharded over threads (see cpu_parallel.py) ---------------------
    @property
    def max_shards(self) -> int:
        return self.rows.batch_size

    def split(self, batch: RowBatch, n: int) -> list[RowBatch]:
        """Contiguous slices of the rows, each with its slice of the carried state.

        Dropout would draw from torch's global generator in whatever order the threads run, so each
        shard draws its masks from its own generator, seeded here (in the trainer's thread) from the
        global one: runs stay the same from run to run, and the threads never wait for each other."""
        bounds = shard_bounds(batch.x.size(0), n)
        return [
            RowBatch(batch.x[lo:hi], batch.y[lo:hi], batch.reset, _slice_state(batch.state, lo, hi), gen)
            for (lo, hi), gen in zip(bounds, shard_generators(n))
        ]

    def carry_over(self, carries: list) -> None:
        """The shards' new states, joined back in row order, start the next window."""
        self.state = carries[0] if len(carries) == 1 else _cat_states(carries)

    def evaluate(
        self, model: torch.nn.Module, autocast: torch.dtype | None = None, pool: ShardPool | None = None
    ) -> dict:
        """Scores the first ``EVAL_MAX_CHARS`` of validation: a 20 MB tail of a 200 MB corpus
        would otherwise cost minutes per evaluation; a million characters pins the loss to ~0.01."""
        val = self.data.val[:EVAL_MAX_CHARS]
        if pool is None:
            return evaluate_stream(
                model, val, self.device, rows=self.eval_rows, autocast=autocast, rank=self.rank, world=self.world
            )
        n = pool.n  # each thread scores its own rows, as a DDP rank would

        def shard(i: int) -> dict:
            return evaluate_stream(
                model,
                val,
                self.device,
                rows=self.eval_rows,
                autocast=autocast,
                rank=self.rank * n + i,
                world=self.world * n,
                set_mode=False,
            )

        was_training = model.training
        model.eval()  # once, here: threads flipping the mode themselves would race
        try:
            parts = pool.map(shard)
        finally:
            model.train(was_training)
        count = sum(p["chars"] for p in parts)
        return metrics_from_loss(sum(p["loss"] * p["chars"] for p in parts) / max(count, 1), count)

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
            hs = [h[:, self.rank * b : (self.rank + 1) * b].contiguous().to(self.device) for h in hidden]
            self.state = tuple(hs) if len(hs) == 2 else hs[0]

    def checkpoint_config(self) -> dict:
        return {
            "model": self.model.cfg.to_dict(),
            "vocab": self.data.vocab.chars,
            "batch": {"batch_size": self.rows.batch_size * self.world, "seq_len": self.rows.seq_len},
            "corpus": {
                "sources": self.data.corpus_names[:20],
                "train_chars": int(len(self.data.train)),
                "val_chars": int(len(self.data.val)),
            },
            **({"data": self.data_settings} if self.data_settings is not None else {}),
        }

    def write_extras(self, stage) -> None:
        """The char LM needs nothing beyond config.json and the weights."""

    def activation_bytes(self, bytes_per_value: int) -> int:
        """One step's activations on one rank: the RNN's saved state per token, plus the logits,
        their float32 copy and the softmax gradient (the largest term with a big vocabulary)."""
        cfg = self.model.cfg
        tokens = self.tokens_per_step
        per_token = cfg.layers * cfg.hidden * _RNN_FLOATS.get(cfg.cell, 8) + cfg.embed + cfg.hidden
        return tokens * per_token * bytes_per_value + tokens * cfg.vocab_size * (bytes_per_value + 4 + 4)

    def describe(self) -> str:
        m = self.model.cfg
        return (
            f"char LM: {m.layers}x{m.hidden} {m.cell.upper()}, {self.model.num_parameters():,} parameters, "
            f"vocab {m.vocab_size}, {len(self.data.train):,} train / {len(self.data.val):,} val chars"
        )
