"""The one training loop both models share.

A task (``charlm_task.py``, ``chat_task.py``; the interface is ``task.py``) supplies batches, a loss,
how to split a batch into shards, an evaluation and its part of the checkpoint; this loop supplies
the rest: device and autocast, AdamW with warmup and cosine decay planned on whichever limit ends
the run (steps, epochs or a wall-clock budget), the step's random draw, gradients (whole-batch, or
sharded over CPU threads, through the same loss), clipping, periodic evaluation with best/last
checkpoints (never of non-finite weights or scores), exact resume, a NaN guard and a clean stop on
Ctrl-C, SIGTERM or SIGHUP (the step ends, a resumable checkpoint is saved).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from chatrnn import checkpoint as ckpt
from chatrnn.device import autocast_dtype
from chatrnn.errors import ChatrnnError
from chatrnn.settings import TrainConfig  # resolved, frozen: see chatrnn.settings
from chatrnn.train.cpu_parallel import ShardPool, default_threads, sum_gradients
from chatrnn.train.progress import Reporter
from chatrnn.train.task import Loss, Task


@dataclass
class TrainResult:
    steps: int
    best_val_loss: float | None
    last_metrics: dict | None
    elapsed: float
    interrupted: bool
    folder: Path
    unit: str = "tokens"  # the task's: what a loss is per ("chars", "tokens")
    signal: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM, SIGHUP), if one did


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay from ``lr`` to ``lr*min_lr_ratio``
    over the run's progress (0..1), whatever limit defines progress."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    p = min(max(progress, 0.0), 1.0)
    decay = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return cfg.lr * warm * decay


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: decaying biases and embeddings hurts small RNNs (and AdamW users expect it)."""
    seen: set[int] = set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and "embedding" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def forward_backward(
    task: Task,
    model: torch.nn.Module,
    batch: Any,
    pool: ShardPool | None = None,
    device: torch.device | None = None,
    autocast: torch.dtype | None = None,
) -> tuple[float, int]:
    """The gradients of ``batch``'s mean loss (left in ``.grad``), that loss and its count.

    The one loss path for both ways of running: :meth:`Task.loss` gives summed losses and the
    gradient is of ``sum of totals / sum of counts``. Without ``pool``, one backward pass over the
    whole batch (DDP's hooks expect exactly one). With it (CPU threads), each of the task's shards is
    differentiated in its own thread and the gradients are added in shard order, then divided by the
    batch's count: the whole batch's gradients up to float rounding, and bit for bit the same from
    run to run. Autocast (``autocast`` on ``device``) is entered in each thread: its state is per thread.
    """
    dev = "cpu" if device is None else device.type

    def loss_of(b: Any) -> Loss:
        with torch.autocast(dev, dtype=autocast, enabled=autocast is not None):
            return task.loss(model, b)

    if pool is None:
        out = loss_of(batch)
        loss = out.total / max(1, out.count)
        loss.backward()
        task.carry_over([out.carry])
        return float(loss.detach()), out.count
    shards = task.split(batch, pool.n)
    params = [p for p in model.parameters() if p.requires_grad]

    def work(i: int) -> tuple[Loss, tuple[torch.Tensor | None, ...]]:
        out = loss_of(shards[i])
        return out, torch.autograd.grad(out.total, params, allow_unused=True)

    results = pool.map(work, len(shards))
    count = sum(out.count for out, _ in results)
    sum_gradients(params, [grads for _, grads in results], scale=1.0 / max(1, count))
    task.carry_over([out.carry for out, _ in results])
    total = results[0][0].total.detach()
    for out, _ in results[1:]:
        total = total + out.total.detach()
    return float(total) / max(1, count), count


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if "python" in st:
        random.setstate(_as_tuple(st["python"]))
    if "cuda" in st and torch.cuda.is_available() and len(st["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(st["cuda"])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


class Trainer:
    """Runs a task to its limit; ``stop_check`` lets tests (and DDP) request a stop like Ctrl-C."""

    def __init__(
        self,
        task: Task,
        cfg: TrainConfig,
        out: Path,
        device: torch.device,
        reporter: Reporter | None = None,
        resume: bool = False,
        dist=None,
        stop_check: Callable[[int], bool] | None = None,
        train_model: torch.nn.Module | None = None,
        fresh: bool = False,
        corpus_digest: str | None = None,
        allow_corpus_change: bool = False,
    ):
        """``fresh``: the first save starts a clean folder (``--overwrite``, see train/output.py).
        ``corpus_digest``: the content hash of the corpus (and validation split), stored with the
        checkpoint; a resume on another corpus is refused unless ``allow_corpus_change``."""
        if cfg.max_steps is None and cfg.epochs is None and cfg.max_time is None:
            raise ChatrnnError("give a limit: --max-steps, --epochs or --max-time")
        self.task = task
        self.cfg = cfg
        self.out = Path(out)
        self.device = device
        self.reporter = reporter or Reporter(quiet=True)
        self.resume = resume
        self.dist = dist
        self.stop_check = stop_check
        self.model = task.model
        self.train_model = train_model or self.model  # DDP wraps here; checkpoints use the plain model
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.autocast = autocast_dtype(device, cfg.amp)
        # The fused kernel updates every tensor in one pass: on a CPU it is ~4x cheaper than the
        # per-tensor loop, a few percent of a small LSTM's whole step.
        self.opt = torch.optim.AdamW(
            param_groups(self.model, cfg.weight_decay),
            lr=cfg.lr,
            betas=(0.9, 0.99),
            fused=device.type in ("cuda", "cpu"),
        )
        self.averaged = None
        if cfg.ema:
            # Polyak averaging: the late, small-lr steps of a run jitter around a minimum that
            # their average sits closer to; torch's AveragedModel keeps the average (one foreach lerp).
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.averaged = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema))
            self.averaged.requires_grad_(False)
        self.step = 0
        self.elapsed_before = 0.0
        self.best: float | None = None
        self.last_metrics: dict | None = None
        self.next_eval_at = 1
        self._interrupt = False
        self.pool: ShardPool | None = None  # CPU shard threads while running (see _shard_pool)
        # The step's random draw (Task.next_batch), from its own generator: the same on every DDP
        # rank, saved with the checkpoint, and independent of how dropout consumes torch's RNG.
        self.draws = torch.Generator().manual_seed(cfg.seed)
        self.is_main = dist is None or dist.is_main
        self.fresh = fresh
        self.had_checkpoint = fresh  # ``--overwrite``: the old model stays until the first save
        self.saved_step: int | None = None  # the step of the last checkpoint this run saved (or resumed)
        self.corpus_digest = corpus_digest
        self.allow_corpus_change = allow_corpus_change
        self._signal: int | None = None  # the first stop signal received

    # ----- progress and limits -------------------------------------------------------------
    def progress(self, elapsed: float) -> float:
        c = self.cfg
        parts = []
        if c.max_steps:
            parts.append(self.step / c.max_steps)
        if c.max_time:
            parts.append(elapsed / c.max_time)
        if c.epochs:
            parts.append(self.task.epoch / c.epochs)
        return max(parts) if parts else 0.0

    def _eval_due(self, progress: float) -> bool:
        if self.cfg.eval_every:
            return self.step % self.cfg.eval_every == 0
        return progress >= self.next_eval_at / max(1, self.cfg.evals)

    # ----- checkpoints ---------------------------------------------------------------------
    def _config_json(self, finished: bool, elapsed: float) -> dict:
        cfg = ckpt.base_config(self.task.kind)
        cfg.update(self.task.checkpoint_config())
        if self.corpus_digest is not None and isinstance(cfg.get("corpus"), dict):
            cfg["corpus"] = {**cfg["corpus"], "digest": self.corpus_digest}
        cfg["training"] = {
            "steps": self.step,
            "epochs": round(float(self.task.epoch), 4),
            "tokens": self.step * self.task.tokens_per_step * (1 if self.dist is None else self.dist.world),
            "unit": self.task.unit,
            "train_time_s": round(elapsed, 2),
            "best_val_loss": self.best,
            "last_val": self.last_metrics,
            "device": str(self.device),
            "finished": finished,
            "world_size": 1 if self.dist is None else self.dist.world,
        }
        cfg["train_config"] = self.cfg.to_dict()
        return cfg

    def save(
        self,
        elapsed: float,
        best: bool,
        finished: bool,
        metrics_line: dict | None,
        best_model: torch.nn.Module | None = None,
    ) -> None:
        weights = self.model.state_dict()
        best_weights = weights if best_model is None else best_model.state_dict()
        # Never write a diverged model over a good one. The weights are the same on every rank
        # (DDP), so every rank decides alike, before the collective below.
        bad = ckpt.non_finite(weights) or (ckpt.non_finite(best_weights) if best else None)
        if bad is not None:
            raise ChatrnnError(
                f"the weights became non-finite (NaN or inf in {bad}) by step {self.step}{self._kept()}; lower --lr"
            )
        task_state, rng = self.task.state_dict(), rng_state()
        if self.dist is not None:  # every rank takes part: its TBPTT state and RNG go to rank 0
            task_state, rng = self.dist.gather_state(self.task, task_state, rng)
        if not self.is_main:
            self.saved_step = self.step
            return
        meta = {"step": str(self.step)}
        config = self._config_json(finished, elapsed)
        try:  # strict JSON (no NaN, no Infinity), checked before anything is staged
            metrics = None if metrics_line is None else json.dumps(metrics_line, allow_nan=False)
            json.dumps(config, allow_nan=False)
        except ValueError:
            raise ChatrnnError(
                f"not saved at step {self.step}: a setting or score is not a finite number{self._kept()}"
            ) from None
        with ckpt.update_checkpoint(self.out, fresh=self.fresh) as st:
            st.save_json(ckpt.CONFIG, config)
            st.save_tensors(ckpt.LAST_WEIGHTS, weights, meta)
            if best or not (st.path / ckpt.BEST_WEIGHTS).exists():
                st.save_tensors(ckpt.BEST_WEIGHTS, best_weights, meta)
            st.save_torch(
                ckpt.TRAIN_STATE,
                {
                    "step": self.step,
                    "elapsed": elapsed,
                    "best": self.best,
                    "next_eval_at": self.next_eval_at,
                    "optimizer": self.opt.state_dict(),
                    "task": task_state,
                    "rng": rng,
                    "train_config": self.cfg.to_dict(),
                    "last_metrics": self.last_metrics,
                    "averaged": self.averaged.state_dict() if self.averaged is not None else None,
                    "draws": self.draws.get_state(),
                    "corpus_digest": self.corpus_digest,
                },
            )
            self.task.write_extras(st)
            if metrics is not None:
                st.append_lines(ckpt.METRICS, [metrics])
        self.fresh = False  # the folder is this run's now: later saves carry it over
        self.saved_step = self.step

    def _kept(self) -> str:
        """What a failed run leaves in ``--out``, truthfully: the tail of its error message."""
        if self.saved_step is not None:
            return f"; {self.out} keeps the last good checkpoint (step {self.saved_step})"
        if self.had_checkpoint:
            return f"; nothing was saved: {self.out} still holds the model it had before this run"
        return "; nothing was saved"

    def load_resume(self) -> None:
        folder = ckpt.resolve_checkpoint(self.out)
        state = ckpt.load_train_state(folder)
        from chatrnn.train.state_check import check_train_state

        check_train_state(state, folder / ckpt.TRAIN_STATE, self)  # every tensor before use: one line, no segfault
        corpus_changed = self._check_corpus(folder, state.get("corpus_digest"))  # before the data position
        weights = ckpt.load_weights(folder, ckpt.LAST_WEIGHTS)
        try:
            self.model.load_state_dict(weights)
        except RuntimeError as e:
            raise ChatrnnError(
                f"cannot resume {folder}: its weights do not fit this model ({str(e).splitlines()[0]})"
            ) from None
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.elapsed_before = float(state["elapsed"])
        self.best = None if corpus_changed else state.get("best")  # another validation set: not comparable
        self.next_eval_at = int(state.get("next_eval_at", 1))
        self.last_metrics = state.get("last_metrics")
        if self.averaged is not None:
            if state.get("averaged") is not None:
                self.averaged.load_state_dict(state["averaged"])
            else:  # the run had no average: start one from here
                self.averaged.update_parameters(self.model)
        self.task.load_state_dict(state["task"])
        self.saved_step = self.step
        if state.get("draws") is not None:
            self.draws.set_state(state["draws"])
        else:  # a checkpoint from before the trainer drew: a fresh stream for the rest of the run
            self.draws.manual_seed(self.cfg.seed + self.step)
        set_rng_state(state["rng"])
        if self.dist is not None:
            self.dist.restore_rng(state["rng"], self.cfg.seed, self.step)

    def _check_corpus(self, folder: Path, stored: Any) -> bool:
        """Whether ``--resume`` runs on another corpus, which would train on text the vocabulary may
        not cover and compare "best" across two validation sets: refused, or (with
        ``--allow-corpus-change``) True after a warning; the caller then restarts "best". A
        checkpoint from before digests were stored resumes as before."""
        if not isinstance(stored, str) or self.corpus_digest is None or stored == self.corpus_digest:
            return False
        if not self.allow_corpus_change:
            try:
                sources = ckpt.read_config(folder).get("corpus", {}).get("sources") or []
            except (ChatrnnError, AttributeError):
                sources = []
            was = f" ({', '.join(map(str, sources[:3]))})" if sources and isinstance(sources, list) else ""
            raise ChatrnnError(
                f"the corpus differs from the one {folder} was trained on{was}; give that corpus (and "
                "validation split) again, or add --allow-corpus-change to continue on this one"
            )
        if self.is_main:
            unseen = " characters the model has no symbol for are dropped," if self.task.kind == "charlm" else ""
            print(
                f"warning: the corpus changed since {folder} was saved:{unseen} and the best "
                "validation loss starts over with this run's first evaluation",
                file=sys.stderr,
                flush=True,
            )
        return True

    # ----- the loop ------------------------------------------------------------------------
    STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # what Ctrl-C, torchrun, systemd, Slurm, docker stop send

    def _on_signal(self, signum, frame) -> None:
        """Finish the step, save a resumable checkpoint, stop; a second signal stops at once."""
        if self._interrupt:  # a second signal: the user really wants out now
            raise KeyboardInterrupt
        self._interrupt = True
        self._signal = signum
        if signum == getattr(signal, "SIGHUP", None):
            # The terminal went away: writing progress to it would fail (EIO) before the save, so
            # what went to the terminal goes nowhere now; a log file or pipe still gets every line.
            # (A character device, not isatty(): a hung-up terminal fails isatty's ioctl.)
            import stat

            devnull = os.open(os.devnull, os.O_WRONLY)
            for fd in (1, 2):
                try:
                    if stat.S_ISCHR(os.fstat(fd).st_mode):
                        os.dup2(devnull, fd)
                except OSError:
                    pass
            os.close(devnull)

    def _shard_pool(self) -> ShardPool | None:
        """Batch-sharded CPU threads (see cpu_parallel.py) when the task can split its batches; not
        under DDP, whose gradient hooks expect one backward pass per step."""
        if self.device.type != "cpu" or self.dist is not None:
            return None
        n = min(self.cfg.threads or default_threads(), self.task.max_shards)
        return ShardPool(n) if n > 1 else None

    def evaluate(self, model: torch.nn.Module | None = None) -> dict:
        m = self.task.evaluate(self.model if model is None else model, autocast=self.autocast, pool=self.pool)
        if self.dist is not None:
            m = self.dist.reduce_metrics(m)
        return m

    def run(self) -> TrainResult:
        torch.manual_seed(self.cfg.seed + (self.dist.rank if self.dist is not None else 0))  # own dropout per rank
        random.seed(self.cfg.seed)
        if self.resume:
            self.load_resume()
        old_handlers: dict[int, Any] = {}
        if self.is_main or self.dist is not None:
            for name in self.STOP_SIGNALS:
                sig = getattr(signal, name, None)  # no SIGHUP on Windows
                if sig is None:
                    continue
                try:
                    old_handlers[sig] = signal.signal(sig, self._on_signal)
                except ValueError:  # not in the main thread (e.g. under a test runner's thread)
                    break
        self.pool = self._shard_pool()  # evaluation uses the same threads
        self.reporter.start(
            self.task.describe() + f" on {self.device}" + (f" ({self.dist.world} ranks)" if self.dist else "")
        )
        try:
            return self._loop()
        finally:
            if self.pool is not None:
                self.pool.close()
                self.pool = None
            self.reporter.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _loop(self) -> TrainResult:
        cfg = self.cfg
        t0 = time.monotonic() - self.elapsed_before
        tokens_window, t_window = 0, time.monotonic()
        rate, loss_ema = 0.0, None
        interrupted = False
        agreed = None  # DDP: (stop, elapsed) that every rank agreed on after the last step
        self.train_model.train()
        while True:
            elapsed = time.monotonic() - t0
            stop_now = self._stop_request()
            if self.dist is not None:
                stop_now, elapsed = agreed or self.dist.agree(self.step, stop_now, elapsed, cfg.max_time)
            progress = self.progress(elapsed)
            if stop_now:
                interrupted = True
                break
            if progress >= 1.0:
                break
            lr = lr_at(cfg, self.step, progress)
            for g in self.opt.param_groups:
                g["lr"] = lr
            batch = self.task.next_batch(float(torch.rand((), generator=self.draws)))
            self.opt.zero_grad(set_to_none=True)
            loss_v, ntok = forward_backward(self.task, self.train_model, batch, self.pool, self.device, self.autocast)
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            if not (math.isfinite(loss_v) and math.isfinite(float(gnorm))):
                raise ChatrnnError(
                    f"loss became {loss_v} at step {self.step + 1}{self._kept()}; lower --lr or check the corpus"
                )
            self.opt.step()
            if self.averaged is not None:
                self.averaged.update_parameters(self.model)
            self.step += 1
            tokens_window += ntok
            loss_ema = loss_v if loss_ema is None else 0.95 * loss_ema + 0.05 * loss_v
            now = time.monotonic()
            if now - t_window >= 1.0:
                rate = tokens_window / (now - t_window) * (self.dist.world if self.dist else 1)
                tokens_window, t_window = 0, now
            elapsed = now - t0
            if self.dist is not None:  # the same lr, evaluation and stop decisions on every rank
                agreed = self.dist.agree(self.step, self._stop_request(), elapsed, cfg.max_time)
                elapsed = agreed[1]
            progress = self.progress(elapsed)
            eta = None
            if progress > 0:
                eta = elapsed * (1 - min(progress, 1)) / progress
            self.reporter.update(
                self.step, progress, loss_ema, rate, self.task.unit, eta, float(gnorm), lr, step_loss=loss_v
            )
            if self._eval_due(progress) and progress < 1.0:
                while self.next_eval_at / max(1, cfg.evals) <= progress:
                    self.next_eval_at += 1
                self._evaluate_and_save(time.monotonic() - t0, finished=False, lr=lr, train_loss=loss_ema)
        elapsed = time.monotonic() - t0
        stopped_by = None
        if interrupted:
            stopped_by = self._signal if self.dist is None else (self.dist.stop_signal or self._signal)
            self.save(elapsed, best=False, finished=False, metrics_line=None)
            if self.is_main:
                self.reporter.message(
                    f"interrupted at step {self.step}; checkpoint saved to {self.out} (resume with --resume)"
                )
        else:
            self._evaluate_and_save(elapsed, finished=True, lr=None, train_loss=loss_ema)
        return TrainResult(
            self.step, self.best, self.last_metrics, elapsed, interrupted, self.out, self.task.unit, stopped_by
        )

    def _stop_request(self) -> float:
        """0: go on; the stop signal's number; 0.5: a ``stop_check`` asked. A number, so that under
        DDP the ranks agree on which signal stopped the run (the largest wins; see ``agree``)."""
        if self._interrupt:
            return float(self._signal or signal.SIGINT)
        if self.stop_check is not None and self.stop_check(self.step):
            return 0.5
        return 0.0

    def _evaluate_and_save(self, elapsed: float, finished: bool, lr: float | None, train_loss: float | None) -> None:
        scored: dict[str, tuple[dict, torch.nn.Module]] = {}
        if self.averaged is not None:
            scored["ema"] = (self.evaluate(self.averaged.module), self.averaged.module)
        if self.averaged is None or finished:
            scored["raw"] = (self.evaluate(), self.model)
        finite = [k for k in scored if math.isfinite(scored[k][0]["loss"])]
        if not finite:  # diverged: a NaN score must neither become "best" nor reach a file
            loss = next(iter(scored.values()))[0]["loss"]
            raise ChatrnnError(
                f"validation loss became {loss} at step {self.step}: the weights diverged{self._kept()}; lower --lr"
            )
        which = min(finite, key=lambda k: scored[k][0]["loss"])
        m, best_model = scored[which]
        self.last_metrics = m
        is_best = self.best is None or m["loss"] < self.best
        if is_best:
            self.best = m["loss"]
        note = ""
        if len(scored) > 1:
            note = ", ".join(f"{'averaged' if k == 'ema' else 'raw'} {v[0]['loss']:.4f}" for k, v in scored.items())
        elif which == "ema":
            note = "averaged weights"
        self.reporter.evaluated(self.step, m, is_best, note)
        line = {
            "step": self.step,
            "elapsed": round(elapsed, 2),
            "epoch": round(float(self.task.epoch), 4),
            "train_loss": train_loss,
            "lr": lr,
            **{f"val_{k}": v for k, v in m.items()},
        }
        if self.averaged is not None:
            line["weights"] = which
            line.update({f"val_loss_{k}": v[0]["loss"] if k in finite else None for k, v in scored.items()})
        self.save(elapsed, best=is_best, finished=finished, metrics_line=line, best_model=best_model)
