"""torch.distributed glue: read torchrun's environment, agree on stopping, gather and reduce state.

``torchrun --nproc_per_node=N -m chatrnn train ...`` starts N copies of the command; each reads
``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` here, joins one process group (NCCL on CUDA, gloo on CPU) and
trains a DDP-wrapped replica on its own shard of the data. Single-process runs get ``None`` from
:func:`from_env` and never touch torch.distributed.

What the ranks must do identically, and how this module keeps them in step:

* the learning rate and every evaluate/save/stop decision depend on progress, and progress on the
  wall clock, which differs a little per rank. :meth:`DistContext.agree` all-reduces (MAX) the
  elapsed time and a stop flag every few steps (about ten times a second) and extrapolates the
  elapsed time in between from agreed numbers only, so all ranks compute the same value without a
  collective on every step. A stop request on any rank (Ctrl-C, SIGTERM or SIGHUP from torchrun,
  Slurm or systemd, a signal to one worker, a test's ``stop_check``) is seen by all at the next
  agreement, with the signal's number, so rank 0 exits as that signal asks; a time budget is
  forced to an agreement as soon as the extrapolated clock reaches it.
* control traffic goes over gloo on the CPU even when the gradients use NCCL, so it never forces a
  GPU synchronisation.
* checkpoints are written by rank 0 alone, but every rank contributes its own TBPTT hidden state
  and RNG state (:meth:`DistContext.gather_state`), so a resume continues each row exactly, with
  the same or another number of ranks.
* a rank that dies closes its sockets and torchrun's agent stops the others; the process group has
  a finite timeout (``CHATRNN_DIST_TIMEOUT`` seconds, default 600) as a last resort against a hang.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from chatrnn.train.task import Task

AGREE_EVERY_S = 0.1  # how often the ranks compare clocks and stop flags
AGREE_MAX_STEPS = 64  # ... but at least every this many steps
DEFAULT_TIMEOUT_S = 600.0


@dataclass
class DistContext:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    local_world: int = 1
    initialized: bool = True  # False for a dry run: the environment read, no process group joined
    ctrl: object | None = None  # process group for control traffic (gloo, on the CPU)
    # agreement bookkeeping: identical on every rank because it is only fed agreed numbers
    _next_sync: int = 0
    _last: tuple[int, float] | None = None  # (step, elapsed) at the last agreement
    _sec_per_step: float | None = None
    _stop_pending: float = 0.0  # the largest stop request seen (a signal's number, or 0.5)
    stop_signal: int | None = None  # the signal that stopped the run on some rank, once agreed
    syncs: int = field(default=0)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ----- the model ---------------------------------------------------------------------------
    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around ``model`` (already on ``self.device``); parameters are broadcast from rank 0."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        if self.device.type == "cuda":
            ddp = DDP(model, device_ids=[self.device.index], output_device=self.device.index)
        else:
            ddp = DDP(model)
        # cuDNN wants each RNN's weights in one contiguous buffer. ``.to(device)`` flattens them and
        # DDP's broadcast copies in place, so this is normally a no-op (and always one on the CPU);
        # it guards against anything that replaced the storage in between.
        for m in model.modules():
            if isinstance(m, torch.nn.RNNBase):
                m.flatten_parameters()
        return ddp

    # ----- agreeing ----------------------------------------------------------------------------
    def _all_reduce_max(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.ctrl)
        return t.tolist()

    def agree(self, step: int, stop: bool | float, elapsed: float, deadline: float | None = None) -> tuple[bool, float]:
        """``(stop, elapsed)``, the same on every rank; call it once per step on every rank.

        Any rank's stop request wins, and the furthest clock wins. Between agreements the elapsed time
        is extrapolated from the agreed seconds per step, so the learning rate and the evaluation and
        stopping decisions that depend on it stay identical across ranks. ``stop`` may be the number
        of the signal that asked (SIGINT 2, SIGTERM 15, SIGHUP 1): the largest one any rank saw is
        kept in :attr:`stop_signal`, so rank 0 exits with the code of a signal sent to another rank.
        """
        request = (0.5 if stop else 0.0) if isinstance(stop, bool) else float(stop)
        self._stop_pending = max(self._stop_pending, request)
        estimate = None
        if self._last is not None and self._sec_per_step is not None:
            estimate = self._last[1] + (step - self._last[0]) * self._sec_per_step
        due = step >= self._next_sync or estimate is None or (deadline is not None and estimate >= deadline)
        if not due:
            return False, estimate
        flag, agreed = self._all_reduce_max([self._stop_pending, float(elapsed)])
        if flag >= 1:
            self.stop_signal = int(flag)
        self.syncs += 1
        if self._last is not None and step > self._last[0]:
            self._sec_per_step = max(0.0, (agreed - self._last[1]) / (step - self._last[0]))
        self._last = (step, agreed)
        every = AGREE_MAX_STEPS
        if self._sec_per_step:
            every = max(1, min(AGREE_MAX_STEPS, int(AGREE_EVERY_S / self._sec_per_step)))
        self._next_sync = step + every
        return flag > 0, agreed

    # ----- checkpoints -------------------------------------------------------------------------
    def gather_state(self, task: Task, task_state: dict, rng: dict) -> tuple[dict, dict]:
        """Every rank calls this before a save; rank 0 gets the checkpoint's task and RNG state.

        The task merges its ranks' states (:meth:`Task.merge_rank_states`: the char LM joins its
        TBPTT hidden states in global row order; by default rank 0's is kept). The RNG state keeps rank
        0's at the top level (what a single process restores) and every rank's under ``"ranks"``.
        """
        gathered: list = [None] * self.world
        torch.distributed.all_gather_object(gathered, (task_state, rng), group=self.ctrl)
        if not self.is_main:
            return task_state, rng
        states = [g[0] for g in gathered]
        merged = task.merge_rank_states(states)
        rngs = dict(gathered[0][1])
        rngs["ranks"] = [g[1] for g in gathered]
        return merged, rngs

    def restore_rng(self, rng: dict, seed: int, step: int) -> None:
        """After a resume: this rank's own RNG stream, or (another number of ranks) a fresh per-rank seed."""
        from chatrnn.train.trainer import set_rng_state

        ranks = rng.get("ranks")
        if ranks is not None and len(ranks) == self.world:
            set_rng_state(ranks[self.rank])
        else:
            torch.manual_seed(seed + 1_000_003 * (step + 1) + self.rank)

    # ----- metrics -----------------------------------------------------------------------------
    def reduce_metrics(self, m: dict) -> dict:
        """Validation figures over all ranks' shards: the loss weighted by the tokens each rank scored,
        bits per character by the characters (``reply_chars`` for the chat model, ``chars`` for the
        char LM, whose tokens are characters)."""
        count_key = "chars" if "chars" in m else "tokens" if "tokens" in m else None
        char_key = "reply_chars" if "reply_chars" in m else count_key
        count = float(m[count_key]) if count_key else 1.0
        chars = float(m[char_key]) if char_key else 1.0
        t = torch.tensor([m["loss"] * count, count, m.get("bpc", 0.0) * chars, chars], dtype=torch.float64)
        torch.distributed.all_reduce(t, group=self.ctrl)
        out = dict(m)
        out["loss"] = float(t[0] / t[1]) if t[1] > 0 else float(m["loss"])
        out["perplexity"] = math.exp(min(out["loss"], 50.0))
        if count_key:
            out[count_key] = int(t[1])
        if char_key and char_key != count_key:
            out[char_key] = int(t[3])
        if "bpc" in m and t[3] > 0:
            out["bpc"] = float(t[2] / t[3])
        return out

    def check_same(self, what: str, data: bytes) -> None:
        """Raise on every rank if ``data`` (a vocabulary, a tokenizer) differs between ranks, which
        would make their replicas disagree; e.g. nodes that read different corpus files."""
        import hashlib

        from chatrnn.errors import ChatrnnError

        digests: list = [None] * self.world
        torch.distributed.all_gather_object(digests, hashlib.sha256(data).hexdigest(), group=self.ctrl)
        if len(set(digests)) > 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise ChatrnnError(f"{what} differs between rank 0 and rank(s) {odd}: give every node the same corpus")

    def max_float(self, x: float) -> float:
        """The largest ``x`` over the ranks (e.g. a clock reading every rank must use alike)."""
        return self._all_reduce_max([float(x)])[0]

    def barrier(self) -> None:
        torch.distributed.barrier(group=self.ctrl)

    def close(self, graceful: bool = True) -> None:
        """Leave the process group.

        ``graceful`` (the run ended normally on every rank): first wait for all ranks, so no rank
        shuts its gloo sockets while a peer is still talking to it, and collect the DDP wrapper's
        reference cycles, so the backend is torn down here, in a live interpreter, and not during
        interpreter exit, where gloo's worker threads were seen to abort the process ("terminate
        called without an active exception") after a successful run. After an error the peers may
        be anywhere, so no barrier then.
        """
        if not (self.initialized and torch.distributed.is_initialized()):
            return
        if graceful:
            import gc

            torch.distributed.barrier(group=self.ctrl)
            gc.collect()
        torch.distributed.destroy_process_group()


def _timeout() -> timedelta:
    try:
        return timedelta(seconds=float(os.environ.get("CHATRNN_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
    except ValueError:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)


def from_env(device_name: str | None = None, init: bool = True) -> DistContext | None:
    """A process group when launched by torchrun (``WORLD_SIZE`` > 1), else None.

    ``init=False`` reads the environment without joining (``--dry-run``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    from chatrnn.device import pick_device

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    dev = pick_device(device_name)
    if dev.type == "mps":
        from chatrnn.errors import ChatrnnError

        raise ChatrnnError("several ranks on MPS are not supported by torch.distributed; add --device cpu")
    if dev.type == "cuda":
        if not (local_world == 1 and dev.index is not None):  # one process per node may name its GPU
            dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    elif "OMP_NUM_THREADS" not in os.environ:
        # torchrun sets OMP_NUM_THREADS=1; other launchers may not: share the cores between local ranks
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    ctx = DistContext(rank, world, local_rank, dev, local_world=local_world, initialized=init)
    if not init:
        return ctx
    if not torch.distributed.is_initialized():
        kw = {"device_id": dev} if dev.type == "cuda" else {}
        torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", timeout=_timeout(), **kw)
    if torch.distributed.get_backend() != "gloo":
        ctx.ctrl = torch.distributed.new_group(backend="gloo", timeout=_timeout())
    return ctx
