"""Dynamic evaluation: a char LM that keeps learning on the text it reads (Krause et al., 2018,
"Dynamic Evaluation of Neural Sequence Models", arXiv:1709.07432).

The text is cut into segments of ``seq`` characters, read in order with the hidden state carried
across them. Each segment is first *scored* with the current weights (every character predicted
from the past only: the figure stays honest) and only then used for one gradient step, so the
next segment is predicted by weights that have seen everything before it. The paper's update
(its "RMS with an RMS global prior")::

    MS_g      = mean over training segments k of (dL(s_k)/dθ)²      (per parameter, trained θ_g fixed)
    RMS_norm  = sqrt(MS_g) / mean(sqrt(MS_g))                        (mean over every parameter)
    θ        <- θ - η · dL(s_i)/dθ / (sqrt(MS_g) + ε)  +  min(1, λ · RMS_norm) ⊙ (θ_g - θ)

The first term is a gradient step scaled per parameter by how large that parameter's gradients
usually are on the training text (so η means "about this far per step" for every weight); the
second pulls each weight back toward the trained θ_g, harder for the weights whose gradients are
usually large, which keeps the model from drifting away on a long text (the ``min(1, ·)`` keeps
the pull from overshooting θ_g). ``rule="sgd"`` is the paper's plain variant,
``θ <- θ - η · dL/dθ + λ (θ_g - θ)``, which needs no statistics. L is the mean loss (nats/char)
of one segment, for the statistics and the steps alike.

MS_g comes from segments of *training* text (the paper uses the training set), here a slice of the
checkpoint's own training split (:func:`training_slice`). Defaults were chosen by
``benchmarks/adapt_sweep.py`` on another slice of the training text, never the validation text
(``docs/adapt.md``).

Everything runs on one thread, in eval mode (no dropout) with gradients on, so a run is exactly
repeatable: the same text, model and settings give the same figures bit for bit.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from chatrnn.errors import ChatrnnError

if TYPE_CHECKING:  # torch and numpy load inside the functions: the CLI reads the defaults here
    import numpy as np
    import torch

    from chatrnn.models.charlm import CharLM

RULES = ("rms", "sgd")
LN2 = math.log(2.0)


@dataclass(frozen=True)
class AdaptSettings:
    """The knobs of one dynamic evaluation (defaults: ``benchmarks/adapt_sweep.py``)."""

    lr: float = 1e-3  # η
    decay: float = 0.03  # λ
    seq: int = 100  # characters per segment (one update each)
    rule: str = "rms"
    eps: float = 1e-5  # ε: keeps parameters with near-zero training gradients from taking huge steps
    stats_chars: int = 20_000  # training characters MS_g is measured on
    seed: int = 0

    def check(self) -> AdaptSettings:
        if self.rule not in RULES:
            raise ChatrnnError(f"--adapt-rule must be one of {', '.join(RULES)}, not {self.rule!r}")
        if not self.lr > 0:
            raise ChatrnnError("--adapt-lr must be > 0")
        if not self.decay >= 0:
            raise ChatrnnError("--adapt-decay must be >= 0")
        if self.seq < 2:
            raise ChatrnnError("--adapt-seq must be at least 2")
        if not self.eps > 0 or self.stats_chars < 2 * self.seq:
            raise ChatrnnError("adapt: eps must be > 0 and stats_chars at least two segments")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AdaptResult:
    """What one adaptation pass measured. ``loss`` is the adapted figure (each segment scored
    before the step on it); ``loss_static`` the same text scored by the unchanged model, when the
    caller measured it."""

    loss: float
    chars: int
    settings: AdaptSettings
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    stats_source: str | None = None
    loss_static: float | None = None
    segment_losses: list[float] = field(default_factory=list)  # mean nats/char of each segment
    cancelled: bool = False

    @property
    def bpc(self) -> float:
        return self.loss / LN2

    @property
    def bpc_static(self) -> float | None:
        return None if self.loss_static is None else self.loss_static / LN2


ProgressFn = Callable[[int, int], None]  # (characters done, characters in all)


def _params(model: CharLM) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]  # parameters() skips a tied duplicate


def _as_ids(data: np.ndarray | list[int] | torch.Tensor) -> torch.Tensor:
    import numpy as np
    import torch

    if isinstance(data, torch.Tensor):
        return data.to(torch.int64).reshape(-1)
    return torch.from_numpy(np.asarray(data, dtype=np.int64).reshape(-1))


def _segments(preds: int, seq: int):
    for lo in range(0, preds, seq):
        yield lo, min(lo + seq, preds)


def _segment_loss(model: CharLM, ids: torch.Tensor, lo: int, hi: int, state):
    """Summed and mean loss of predicting ids[lo+1 : hi+1] from ids[lo:hi], and the new state."""
    import torch.nn.functional as F

    x = ids[lo:hi].unsqueeze(0)  # (1, T)
    y = ids[lo + 1 : hi + 1]
    logits, _, state = model(x, state)
    total = F.cross_entropy(logits[0].float(), y, reduction="sum")
    return total, total / (hi - lo), state


def _one_thread():
    """Batch-1 work runs fastest on one thread; the shared, counted switch of ``infer`` (a TUI
    stream may run at the same time and restore the count when it ends)."""
    from chatrnn.infer import single_thread

    return single_thread()


def gradient_stats(model: CharLM, data, seq: int, cancel: threading.Event | None = None) -> list[torch.Tensor]:
    """MS_g: the mean squared gradient of each parameter over the segments of ``data`` (training
    text), the weights fixed, the hidden state carried as in adaptation."""
    import torch

    from chatrnn.models.charlm import detach_state

    ids = _as_ids(data)
    preds = len(ids) - 1
    if preds < 2:
        raise ChatrnnError("adapt: the training text for the gradient statistics is too short")
    params = _params(model)
    ms = [torch.zeros_like(p) for p in params]
    n, state = 0, None
    was = model.training
    model.eval()
    try:
        with _one_thread():
            for lo, hi in _segments(preds, seq):
                if cancel is not None and cancel.is_set():
                    break
                _, mean, state = _segment_loss(model, ids, lo, hi, state)
                grads = torch.autograd.grad(mean, params, allow_unused=True)
                for m, g in zip(ms, grads):
                    if g is not None:
                        m.addcmul_(g, g)
                state = detach_state(state)
                n += 1
    finally:
        model.train(was)
    return [m / max(n, 1) for m in ms]


def adapt(
    model: CharLM,
    data,
    settings: AdaptSettings,
    stats: list[torch.Tensor] | None = None,
    cancel: threading.Event | None = None,
    progress: ProgressFn | None = None,
) -> AdaptResult:
    """Dynamic evaluation of ``model`` on ``data`` (ids), changing ``model``'s weights in place:
    afterwards they are the adapted weights (copy the model first to keep the trained ones).

    ``stats`` is :func:`gradient_stats` on training text (needed by ``rule="rms"``)."""
    import torch

    from chatrnn.models.charlm import detach_state

    s = settings.check()
    if s.rule == "rms" and stats is None:
        raise ChatrnnError("adapt: the rms rule needs gradient statistics from training text")
    ids = _as_ids(data)
    preds = len(ids) - 1
    if preds < 1:
        raise ChatrnnError("adapt: the text has fewer than two characters the model knows")
    torch.manual_seed(s.seed)  # nothing here draws at random today; keeps it so if that changes
    params = _params(model)
    with torch.no_grad():
        theta0 = [p.detach().clone() for p in params]
        if s.rule == "rms":
            rms = [m.sqrt() for m in stats]  # type: ignore[union-attr]
            mean_rms = float(sum(float(r.sum()) for r in rms) / max(1, sum(r.numel() for r in rms)))
            inv = [1.0 / (r + s.eps) for r in rms]  # 1 / (sqrt(MS_g) + ε)
            pull = [(s.decay * r / max(mean_rms, 1e-30)).clamp_(max=1.0) for r in rms]  # min(1, λ RMS_norm)
        else:
            inv = None
            pull = [torch.full_like(p, min(1.0, s.decay)) for p in params]
    t0, c0 = time.perf_counter(), time.process_time()
    total, count, state, seg_losses, cancelled = 0.0, 0, None, [], False
    was = model.training
    model.eval()
    try:
        with _one_thread():
            for lo, hi in _segments(preds, s.seq):
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                seg_sum, mean, state = _segment_loss(model, ids, lo, hi, state)  # scored first...
                value = float(seg_sum.detach())
                total += value
                count += hi - lo
                seg_losses.append(value / (hi - lo))
                grads = list(torch.autograd.grad(mean, params, allow_unused=True))  # ...then learnt from
                grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
                with torch.no_grad():
                    back = torch._foreach_sub(theta0, params)  # θ_g - θ, before this step
                    torch._foreach_mul_(back, pull)
                    if inv is not None:
                        torch._foreach_mul_(grads, inv)
                    torch._foreach_add_(params, grads, alpha=-s.lr)
                    torch._foreach_add_(params, back)
                state = detach_state(state)
                if progress is not None:
                    progress(hi, preds)
    finally:
        model.train(was)
    return AdaptResult(
        loss=total / max(count, 1),
        chars=count,
        settings=s,
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - c0,
        segment_losses=seg_losses,
        cancelled=cancelled,
    )


# ----- where the gradient statistics come from ---------------------------------------------------


def training_slice(config: dict, folder: Path | None, vocab, chars: int, offset: int = 0) -> tuple[np.ndarray, str]:
    """``chars`` characters of the checkpoint's training split (its corpus files, encoded with its
    vocabulary), ending ``offset`` characters before the split's end: the validation text (the
    split's tail) is never touched. Raises ChatrnnError when the corpus cannot be found.

    Paths in ``config.json`` are as typed at training time, so they are tried as given (relative to
    the working directory) and relative to the folder that holds ``checkpoints/``."""
    import numpy as np

    from chatrnn.corpus.text import collect_sources, encode_corpus

    corpus = config.get("corpus") or {}
    names = corpus.get("sources") or []
    train_chars = corpus.get("train_chars")
    if not names or not isinstance(train_chars, int):
        raise ChatrnnError("the checkpoint does not record its training corpus")
    bases = [Path.cwd()] + ([folder.resolve().parent.parent] if folder is not None else [])
    paths = []
    for name in names:
        found = next((b / name for b in bases if (b / name).exists()), None)
        if found is None:
            raise ChatrnnError(f"training corpus {name} not found (needed for the adapt gradient statistics)")
        paths.append(found)
    enc = encode_corpus(collect_sources(paths), vocab=vocab)
    end = min(train_chars, len(enc)) - offset
    start = max(0, end - chars)  # a small corpus gives what it has
    if end - start < 3:
        raise ChatrnnError("the training corpus is too short for the adapt statistics")
    return np.asarray(enc.data[start:end]), f"training text [{start}:{end}) of {', '.join(names)}"


def text_ids(path: str | Path, vocab, encoding: str = "utf-8") -> np.ndarray:
    """The known characters of a text file as ids, with one-line errors for a missing, binary or
    empty file (the checks of the corpus reader)."""
    import numpy as np

    from chatrnn.corpus.text import collect_sources, encode_corpus

    p = Path(path).expanduser()
    if p.is_dir():
        raise ChatrnnError(f"{p} is a folder; give a text file to adapt to")
    enc = encode_corpus(collect_sources([p]), encoding, vocab=vocab)
    if len(enc) < 2:
        raise ChatrnnError(f"{p} has no text this model knows (empty, or only unknown characters)")
    return np.asarray(enc.data)


def stats_for(
    gen, settings: AdaptSettings, stats_file: str | Path | None = None, fallback: np.ndarray | None = None
) -> tuple[list[torch.Tensor] | None, str | None]:
    """MS_g for ``gen`` (an ``infer.Generator``): from ``stats_file`` when given, else the
    checkpoint's training text, else (only when the caller allows it, e.g. adapting before
    sampling, where no score is reported as honest) ``fallback``. None for the sgd rule."""
    if settings.rule != "rms":
        return None, None
    if stats_file is not None:
        data = text_ids(stats_file, gen.vocab)[: settings.stats_chars + 1]
        source = f"{stats_file} (first {len(data) - 1} chars)"
    else:
        try:
            data, source = training_slice(gen.config, gen.folder, gen.vocab, settings.stats_chars + 1)
        except ChatrnnError as e:
            if fallback is None:
                raise ChatrnnError(f"{e}; pass --adapt-stats FILE (training-like text) or --adapt-rule sgd") from None
            data, source = fallback[: settings.stats_chars + 1], "the adapted text itself (training corpus not found)"
    return gradient_stats(gen.model, data, settings.seq), source
