"""Using every CPU core for a small recurrent batch: one Python thread per core, each running the
forward and backward pass of its own slice of the batch with single-threaded kernels.

Why not PyTorch's own intra-op threads: an LSTM step is a chain of small matrix products, and
splitting each of them across OpenMP threads costs a barrier per product. On an idle 2-core
machine that gains little; on a busy one (CI, a laptop in use) it is several times *slower* than
one thread, because every barrier waits for a descheduled sibling. Rows of a TBPTT batch are
independent, so slicing the batch instead needs no synchronisation until the gradients are summed,
which is done here in a fixed order so that runs stay repeatable bit for bit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")


def default_threads() -> int:
    """Cores to use: ``$CHATRNN_THREADS``, else what torch would use (the physical cores)."""
    env = os.environ.get("CHATRNN_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, torch.get_num_threads())


class ShardPool:
    """``n`` worker threads; while open, torch's own intra-op threading is set to 1."""

    def __init__(self, n: int):
        self.n = n
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="chatrnn-shard")
        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(1)

    def map(self, fn: Callable[[int], T], count: int | None = None) -> list[T]:
        """``[fn(0), ..., fn(count-1)]`` (``count`` defaults to ``n``) run concurrently, results in
        shard order."""
        return list(self._pool.map(fn, range(self.n if count is None else count)))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        torch.set_num_threads(self._threads_before)


def shard_bounds(size: int, n: int) -> list[tuple[int, int]]:
    """``n`` contiguous, nearly equal slices of ``range(size)``."""
    step, extra = divmod(size, n)
    out, lo = [], 0
    for i in range(n):
        hi = lo + step + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def shard_generators(n: int) -> list[torch.Generator]:
    """One CPU generator per shard for this step, seeded from torch's global generator (so
    ``--seed`` and a resume's restored RNG state decide them) in the calling thread."""
    seeds = torch.randint(0, 2**62, (n,)).tolist()
    return [torch.Generator().manual_seed(s) for s in seeds]


def sum_gradients(
    params: list[torch.Tensor], per_shard: list[tuple[torch.Tensor | None, ...]], scale: float = 1.0
) -> None:
    """Set ``p.grad`` to the sum of the shards' gradients, added in shard order (deterministic),
    times ``scale`` (the trainer's 1 / positions scored: shards' losses are sums, see ``task.Loss``)."""
    for j, p in enumerate(params):
        total = None
        for grads in per_shard:
            g = grads[j]
            if g is not None:
                total = g if total is None else total + g
        if total is not None and scale != 1.0:
            total.mul_(scale)
        p.grad = total


class Turns:
    """Shards that must run one part of their work one at a time, in shard order.

    For models whose dropout draws from torch's global generator (the chat model's ``nn.Dropout`` and
    GRU layers): threads drawing in whatever order they run would give other masks on every run, so
    their forward passes take turns; the backward passes still overlap."""

    def __init__(self, n: int):
        self._events = [threading.Event() for _ in range(n)]
        if n:
            self._events[0].set()

    @contextmanager
    def turn(self, i: int) -> Iterator[None]:
        """Wait for shard ``i``'s turn; pass it on when done (also on an error, so no shard hangs)."""
        self._events[i].wait()
        try:
            yield
        finally:
            if i + 1 < len(self._events):
                self._events[i + 1].set()
