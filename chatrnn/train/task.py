"""What a model must supply to be trained by the shared loop (``trainer.py``): the whole interface.

The trainer, the ``--dry-run`` plan (``plan.py``), DDP (``distributed.py``) and CPU sharding
(``cpu_parallel.py``) use a task through these members and nothing else, so a new model needs only
a subclass of :class:`Task`. The abstract members are required (instantiating a task that lacks one
raises ``TypeError``); the others are optional capabilities whose defaults are right for a task
without them.

Who owns what:

* the task owns its data (batches, their order and position), its loss, its evaluation and its part
  of the checkpoint;
* the trainer owns the step: it draws the step's random number (handed to :meth:`Task.next_batch`,
  so that, say, a teacher-forcing coin is saved and restored with the trainer's RNG and is the same
  for every shard of the batch), decides whether to shard, runs the threads, and computes the
  gradients from :meth:`Task.loss` the same way whether the batch is whole or in shards:
  ``sum(shard totals) / sum(shard counts)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from chatrnn.checkpoint import Stage
    from chatrnn.train.cpu_parallel import ShardPool


@dataclass
class Loss:
    """One (shard of a) batch's loss, as :meth:`Task.loss` returns it.

    ``total`` is *summed* over the ``count`` positions scored, not averaged: shards then add up to
    exactly the whole batch (mean = sum of totals / sum of counts) however unevenly the positions
    fall, e.g. padded replies of different lengths. ``carry`` is what the step hands on to the next
    one (the char LM's TBPTT state, detached); the trainer gives the shards' carries back to
    :meth:`Task.carry_over` in shard order.
    """

    total: torch.Tensor
    count: int
    carry: Any = None


class Task(ABC):
    """A model's training task. See the module docstring for who owns what."""

    #: The model being trained (the plain module: the trainer wraps it for DDP or ``torch.compile``
    #: itself, and checkpoints and evaluation use this one).
    model: torch.nn.Module

    # ----- what it is ------------------------------------------------------------------------------
    @property
    @abstractmethod
    def kind(self) -> str:
        """The checkpoint kind (``"charlm"``, ``"chat"``): written to config.json, checked on load."""

    @property
    @abstractmethod
    def unit(self) -> str:
        """What a loss is per and what throughput counts (``"chars"``, ``"tokens"``)."""

    @property
    @abstractmethod
    def tokens_per_step(self) -> int:
        """Units one step trains on, on this rank (the summary's token count and the plan's figure)."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the start of a run and the plan: the model's shape and the data's size."""

    # ----- data ------------------------------------------------------------------------------------
    @abstractmethod
    def next_batch(self, draw: float) -> Any:
        """The next training batch, on the task's device.

        ``draw`` is a uniform number in [0, 1), one per step from the trainer's generator, for the
        batch's own random choices (the chat model's teacher-forcing coin); a batch must carry what
        it decides, so that every shard of it decides alike."""

    @property
    @abstractmethod
    def epoch(self) -> float:
        """Passes over the training data so far (fractional): the ``--epochs`` limit's progress."""

    @property
    @abstractmethod
    def epoch_steps(self) -> int:
        """Steps in one pass on this rank: the plan's "one epoch = N steps"."""

    # ----- the loss --------------------------------------------------------------------------------
    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Any) -> Loss:
        """The summed loss of ``batch``, a whole batch or one of :meth:`split`'s shards.

        ``model`` is the training model (maybe DDP-wrapped or compiled): call it, but read
        configuration from :attr:`model`. Runs under the trainer's autocast, in a worker thread when
        sharded, so it must not change the task's state: hand state on through ``Loss.carry``."""

    @property
    def max_shards(self) -> int:
        """The most pieces :meth:`split` can cut a batch into (usually the batch size); 1, the
        default, means the task cannot be sharded and runs on the CPU's intra-op threads instead."""
        return 1

    def split(self, batch: Any, n: int) -> list[Any]:
        """Up to ``n`` shards of ``batch`` (1 < ``n`` <= :attr:`max_shards`) whose :meth:`loss`
        totals and counts add up to the whole batch's; also what makes them reproducible (the char
        LM gives each shard its own dropout generator). Only called when :attr:`max_shards` > 1."""
        return [batch]

    def carry_over(self, carries: list[Any]) -> None:
        """After each step: the ``Loss.carry`` of every shard (one for a whole batch), in shard
        order. The char LM joins its rows' TBPTT states here; the default keeps nothing."""
        return None

    # ----- evaluation ------------------------------------------------------------------------------
    @abstractmethod
    def evaluate(
        self, model: torch.nn.Module, autocast: torch.dtype | None = None, pool: ShardPool | None = None
    ) -> dict:
        """Validation figures of ``model`` on this rank's share: at least ``"loss"``, and the count
        it is a mean over (``"chars"`` or ``"tokens"``) so that ranks can be combined. ``pool`` is
        the trainer's CPU threads, if it has any, for a task that can use them."""

    # ----- checkpoints -----------------------------------------------------------------------------
    @abstractmethod
    def state_dict(self) -> dict:
        """This rank's data position (and carried state): tensors and plain data only."""

    @abstractmethod
    def load_state_dict(self, d: dict) -> None:
        """Continue from :meth:`state_dict` (or :meth:`merge_rank_states`) output, maybe written
        with another number of ranks or another batch size."""

    def merge_rank_states(self, states: list[dict]) -> dict:
        """DDP: one checkpoint state from every rank's :meth:`state_dict`, in rank order; by default
        rank 0's, right for a task whose ranks differ only in a position they can recompute."""
        return states[0]

    @abstractmethod
    def checkpoint_config(self) -> dict:
        """The task's part of config.json (``model``, ``batch``, ``corpus``, ...): what inference and
        ``--resume`` need to rebuild the model and the data."""

    def write_extras(self, stage: Stage) -> None:
        """Files beyond config.json and the weights (the chat model's tokenizer); default none."""
        return None

    # ----- the plan --------------------------------------------------------------------------------
    def activation_bytes(self, bytes_per_value: int) -> int | None:
        """``--dry-run``'s estimate of one step's activation memory on one rank, with activations of
        ``bytes_per_value`` bytes; None (the default) when the task cannot tell."""
        return None
