"""The task interface (``chatrnn.train.task``): a task written against the ABC alone trains through the
trainer, whole-batch and sharded alike; the ABC rejects an incomplete task; the trainer owns the draw."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chatrnn import checkpoint as ckpt
from chatrnn.train.cpu_parallel import shard_bounds
from chatrnn.train.task import Loss, Task
from chatrnn.train.trainer import TrainConfig, Trainer

CPU = torch.device("cpu")


class Regression(Task):
    """Least squares on 64 fixed rows, 8 per batch: the smallest task that still learns something."""

    kind = "toy"
    unit = "rows"

    def __init__(self, batch: int = 8):
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=g)
        self.y = torch.sin(self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]))
        self.batch = batch
        self.pos = 0
        self.draws: list[float] = []
        self.splits = 0

    @property
    def tokens_per_step(self) -> int:
        return self.batch

    def describe(self) -> str:
        return "toy regression"

    def next_batch(self, draw: float) -> tuple[torch.Tensor, torch.Tensor]:
        self.draws.append(draw)
        i = self.pos % self.epoch_steps * self.batch
        self.pos += 1
        return self.x[i : i + self.batch], self.y[i : i + self.batch]

    @property
    def epoch(self) -> float:
        return self.pos / self.epoch_steps

    @property
    def epoch_steps(self) -> int:
        return len(self.x) // self.batch

    def loss(self, model: torch.nn.Module, batch) -> Loss:
        x, y = batch
        return Loss(((model(x) - y) ** 2).sum(), len(x))

    def evaluate(self, model, autocast=None, pool=None) -> dict:
        with torch.no_grad():
            return {"loss": float(((model(self.x) - self.y) ** 2).mean()), "tokens": len(self.x)}

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, d: dict) -> None:
        self.pos = int(d["pos"])

    def checkpoint_config(self) -> dict:
        return {"model": {"inputs": 4}}


class ShardedRegression(Regression):
    """The same task, able to cut its batches by rows: all a task adds for CPU threads."""

    max_shards = 8

    def split(self, batch, n: int) -> list:
        self.splits += 1
        x, y = batch
        return [(x[lo:hi], y[lo:hi]) for lo, hi in shard_bounds(len(x), n)]


def train(task: Task, out: Path, threads: int, steps: int = 12, **kw) -> Trainer:
    cfg = TrainConfig(max_steps=steps, evals=2, threads=threads, warmup_steps=1, lr=3e-2, seed=5)
    t = Trainer(task, cfg, out, CPU, **kw)
    t.run()
    return t


def test_a_task_missing_a_required_member_is_rejected():
    class NoLoss(Task):
        kind, unit = "toy", "rows"
        tokens_per_step = epoch = epoch_steps = 1

        def describe(self):
            return ""

        def next_batch(self, draw):
            return None

        def evaluate(self, model, autocast=None, pool=None):
            return {}

        def state_dict(self):
            return {}

        def load_state_dict(self, d):
            pass

        def checkpoint_config(self):
            return {}

    with pytest.raises(TypeError, match="loss"):
        NoLoss()


def test_a_task_of_only_the_interface_trains_whole_and_sharded_alike(tmp_path):
    whole, sharded, plain = Regression(), ShardedRegression(), Regression()
    first = whole.evaluate(whole.model)["loss"]
    a = train(whole, tmp_path / "whole", threads=1)
    b = train(sharded, tmp_path / "sharded", threads=2)
    train(plain, tmp_path / "plain", threads=2)  # no split: the default max_shards of 1 keeps it whole
    assert sharded.splits == 12 and plain.splits == 0
    assert a.best < first  # it learned
    assert b.best == pytest.approx(a.best, rel=1e-5)
    for p, q in zip(whole.model.parameters(), sharded.model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    for p, q in zip(whole.model.parameters(), plain.model.parameters()):
        assert torch.equal(p, q)
    assert ckpt.read_config(tmp_path / "sharded", kind="toy")["training"]["unit"] == "rows"


def test_the_trainer_draws_and_a_resume_continues_the_draws(tmp_path):
    straight = Regression()
    train(straight, tmp_path / "straight", threads=1)
    again = Regression()
    train(again, tmp_path / "again", threads=1)
    assert straight.draws == again.draws and len(set(straight.draws)) == 12
    assert all(0.0 <= d < 1.0 for d in straight.draws)
    stopped, resumed = Regression(), Regression()
    train(stopped, tmp_path / "split", threads=1, stop_check=lambda step: step >= 5)
    train(resumed, tmp_path / "split", threads=1, resume=True)
    assert stopped.draws + resumed.draws == straight.draws
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_the_chat_task_decides_teacher_forcing_from_the_draw_once_for_all_its_shards():
    from chatrnn.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from chatrnn.train.chat_task import ChatData, ChatTask, Example
    from chatrnn.train.cpu_parallel import ShardPool
    from chatrnn.train.trainer import forward_backward

    g = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return (torch.randint(5, 30, (n,), generator=g)).tolist()

    pairs = [Example(ids(3 + i % 4), ids(2 + i % 5), 10) for i in range(24)]
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(vocab_size=30, embed=8, hidden=8, layers=1, dropout=0.0))
    task = ChatTask(model, ChatData(None, pairs, pairs[:4]), 6, CPU, teacher_forcing=0.5)
    assert task.next_batch(0.49).forced and not task.next_batch(0.5).forced
    batch = task.next_batch(0.9)
    shards = task.split(batch, 4)
    assert len(shards) == 4 and not any(s.forced for s in shards)
    assert sum(s.tokens for s in shards) == batch.tokens == int((batch.tgt_out != 0).sum())
    loss_whole, n = forward_backward(task, model, batch)
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    pool = ShardPool(4)
    try:
        loss_sharded, m = forward_backward(task, model, batch, pool)
    finally:
        pool.close()
    assert n == m == batch.tokens and loss_sharded == pytest.approx(loss_whole, rel=1e-5)
    for a, p in zip(grads, model.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-4)
