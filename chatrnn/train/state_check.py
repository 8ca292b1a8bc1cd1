"""The one check of a loaded ``train_state.pt`` before ``--resume`` uses any of it.

``weights_only=True`` keeps a tampered file from running code, but not from holding tensors of the
wrong shape or type: optimizer moments of another shape make the fused CPU AdamW write out of bounds
(signal 11), an integer hidden state or a string data position fails deep in the loop with a
traceback. So every tensor and value the trainer and the tasks read is checked here first, and a
mismatch is one :class:`ChatrnnError` line naming the field (``optimizer.state.3.exp_avg``).

:func:`check_train_state` runs twice: in :func:`chatrnn.checkpoint.load_train_state` with no trainer
(the structure: what the settings resolution reads before any model exists), and in
:meth:`Trainer.load_resume` with the trainer (shapes and dtypes against the model, the optimizer,
the weight average and the task).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from chatrnn.errors import ChatrnnError

if TYPE_CHECKING:
    from chatrnn.train.trainer import Trainer

STATE_SLACK = 64 << 20  # bytes beyond the weights' multiple: RNG states, positions, hidden states
_GEN_STATE = torch.Generator().get_state().numel()  # a CPU generator's state (torch's and the draws')
_OPT_FLAGS = ("amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused", "decoupled_weight_decay")


def train_state_limit(folder: Path) -> int:
    """Most bytes a ``train_state.pt`` may have: AdamW's two moments and the weight average are three
    copies of the weights (``last.safetensors``), plus small state; a larger file is not ours."""
    try:
        weights = (Path(folder) / "last.safetensors").stat().st_size
    except OSError:
        weights = 0
    return 4 * weights + STATE_SLACK


def check_archive(path: Path, limit: int) -> None:
    """Refuse a ``train_state.pt`` that would expand past ``limit`` bytes when loaded: ``torch.save``
    writes a zip of stored (uncompressed) records, but ``torch.load`` also inflates compressed ones,
    so a 200 KB file of deflated zeros loads as 200 MB (a thousand times its size). Read from the
    zip's directory only, before torch sees the file."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            records = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ChatrnnError(f"{path} is corrupt or unsafe (not a torch.save archive); cannot resume") from None
    if any(r.compress_type != zipfile.ZIP_STORED for r in records):
        raise ChatrnnError(f"{path} holds compressed records, which chatrnn never writes; cannot resume")
    total = sum(r.file_size for r in records)
    if total > limit:
        raise ChatrnnError(
            f"{path} would load as {total:,} bytes, more than a chatrnn train_state.pt can be ({limit:,})"
        )


class _Checker:
    def __init__(self, path: Path | str):
        self.path = path

    def fail(self, where: str, why: str) -> None:
        raise ChatrnnError(f"{self.path} cannot be resumed: {where} {why}")

    def dict(self, v: Any, where: str) -> dict:
        if not isinstance(v, dict):
            self.fail(where, f"must be a dictionary, not {type(v).__name__}")
        return v

    def int(self, v: Any, where: str, lo: int = 0) -> int:
        if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point() and v.dtype != torch.bool:
            v = int(v.item())
        if not isinstance(v, int) or isinstance(v, bool):
            self.fail(where, f"must be an integer, not {type(v).__name__}")
        if v < lo:
            self.fail(where, f"must be at least {lo}, not {v}")
        return v

    def number(self, v: Any, where: str, optional: bool = False) -> None:
        if v is None and optional:
            return
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            self.fail(where, f"must be a finite number, not {_short(v)}")

    def tensor(
        self, v: Any, where: str, shape: tuple[int, ...] | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        if not isinstance(v, torch.Tensor):
            self.fail(where, f"must be a tensor, not {type(v).__name__}")
        if v.layout != torch.strided or v.is_quantized or v.is_meta:
            self.fail(where, "must be a plain dense tensor")
        if shape is not None and tuple(v.shape) != tuple(shape):
            self.fail(where, f"has shape {list(v.shape)}, but the model needs {list(shape)}")
        if dtype is not None and v.dtype != dtype:
            self.fail(where, f"has dtype {v.dtype}, but the model needs {dtype}")
        return v

    def generator_state(self, v: Any, where: str) -> None:
        self.tensor(v, where, (_GEN_STATE,), torch.uint8)
        try:
            torch.Generator().set_state(v)  # on a scratch generator: a bad state fails here, harmlessly
        except (RuntimeError, ValueError, TypeError):
            self.fail(where, "is not a random generator state")

    def rng(self, v: Any, where: str) -> None:
        st = self.dict(v, where)
        if "torch" not in st:
            self.fail(f"{where}.torch", "is missing")
        self.generator_state(st["torch"], f"{where}.torch")
        if "python" in st:
            from chatrnn.train.trainer import _as_tuple

            try:
                random.Random().setstate(_as_tuple(st["python"]))
            except (TypeError, ValueError, OverflowError):
                self.fail(f"{where}.python", "is not a Python random state")
        if "cuda" in st:
            cuda = st["cuda"]
            if not isinstance(cuda, (list, tuple)):
                self.fail(f"{where}.cuda", "must be a list of generator states")
            for i, s in enumerate(cuda):
                self.tensor(s, f"{where}.cuda[{i}]", dtype=torch.uint8)
                if s.dim() != 1:
                    self.fail(f"{where}.cuda[{i}]", "is not a random generator state")
        if st.get("ranks") is not None:  # DDP: every rank's own states
            ranks = st["ranks"]
            if not isinstance(ranks, (list, tuple)):
                self.fail(f"{where}.ranks", "must be a list")
            for i, r in enumerate(ranks):
                self.rng(r, f"{where}.ranks[{i}]")


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def check_train_state(state: Any, path: Path | str, trainer: Trainer | None = None) -> None:
    """Raise one line naming the first field of ``state`` the resume could not use safely; see the
    module docstring. Without ``trainer`` only what needs no model is checked."""
    c = _Checker(path)
    c.dict(state, "the state")
    if "step" not in state:
        c.fail("step", "is missing")
    c.int(state["step"], "step")
    c.number(state.get("elapsed", 0.0), "elapsed")
    c.number(state.get("best"), "best", optional=True)
    if "next_eval_at" in state:
        c.int(state["next_eval_at"], "next_eval_at")
    if state.get("last_metrics") is not None:
        c.dict(state["last_metrics"], "last_metrics")
    if state.get("train_config") is not None:
        from chatrnn.checkpoint_schema import SchemaError, check_train_config

        try:
            check_train_config(c.dict(state["train_config"], "train_config"))
        except SchemaError as e:
            raise ChatrnnError(f"{path} cannot be resumed: {e}") from None
    for key in ("optimizer", "task", "rng"):
        if key not in state:
            c.fail(key, "is missing")
        if key != "rng":
            c.dict(state[key], key)
    c.rng(state["rng"], "rng")
    if state.get("draws") is not None:
        c.generator_state(state["draws"], "draws")
    if state.get("averaged") is not None:
        c.dict(state["averaged"], "averaged")
    if trainer is None:
        return
    _check_optimizer(c, state["optimizer"], trainer.opt)
    if trainer.averaged is not None and state.get("averaged") is not None:
        _check_average(c, state["averaged"], trainer.model)
    kind = trainer.task.kind
    if kind == "charlm":
        _check_charlm_task(c, state["task"], trainer.task)
    elif kind == "chat":
        _check_chat_task(c, state["task"])


def _check_optimizer(c: _Checker, saved: dict, opt: torch.optim.Optimizer) -> None:
    """AdamW's state against the parameters it will update: the fused kernel trusts every shape."""
    groups, state = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list):
        c.fail("optimizer.param_groups", "must be a list")
    c.dict(state, "optimizer.state")
    if len(groups) != len(opt.param_groups):
        c.fail("optimizer.param_groups", f"has {len(groups)} groups, but the model's optimizer {len(opt.param_groups)}")
    params: dict[Any, torch.Tensor] = {}
    for gi, (g, ours) in enumerate(zip(groups, opt.param_groups)):
        where = f"optimizer.param_groups[{gi}]"
        c.dict(g, where)
        ids = g.get("params")
        if not isinstance(ids, list) or len(ids) != len(ours["params"]):
            c.fail(f"{where}.params", f"must list the group's {len(ours['params'])} parameters")
        for key, value in g.items():
            if key == "params" or key not in ours:
                continue
            if key in _OPT_FLAGS:
                if value is not None and not isinstance(value, bool):
                    c.fail(f"{where}.{key}", f"must be true, false or null, not {_short(value)}")
            elif key == "betas":
                if (
                    not isinstance(value, (list, tuple))
                    or len(value) != 2
                    or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in value)
                ):
                    c.fail(f"{where}.betas", f"must be two numbers in [0, 1), not {_short(value)}")
            elif isinstance(ours[key], (int, float)) and not isinstance(ours[key], bool):
                c.number(value, f"{where}.{key}")
        for i, p in zip(ids, ours["params"]):
            if isinstance(i, bool) or not isinstance(i, (int, str)) or i in params:
                c.fail(f"{where}.params", "must be distinct parameter ids")
            params[i] = p
    for key, st in state.items():
        where = f"optimizer.state.{_short(key)}"
        if key not in params:
            c.fail(where, "belongs to no parameter of the model")
        p = params[key]
        c.dict(st, where)
        for name in ("exp_avg", "exp_avg_sq"):
            if name not in st:
                c.fail(f"{where}.{name}", "is missing")
            c.tensor(st[name], f"{where}.{name}", tuple(p.shape), p.dtype)
        if "max_exp_avg_sq" in st:
            c.tensor(st["max_exp_avg_sq"], f"{where}.max_exp_avg_sq", tuple(p.shape), p.dtype)
        step = st.get("step")
        if isinstance(step, torch.Tensor):
            if step.numel() != 1 or step.dtype.is_complex or step.dtype == torch.bool:
                c.fail(f"{where}.step", f"must be one number, not a tensor of shape {list(step.shape)}")
            step = float(step.item())
        c.number(step, f"{where}.step")
        if step < 0:
            c.fail(f"{where}.step", f"must be at least 0, not {step}")


def _check_average(c: _Checker, saved: dict, model: torch.nn.Module) -> None:
    """The weight average (``AveragedModel``: ``module.*`` and ``n_averaged``), tried on a copy of the
    model built on the meta device, so the model's own load hooks map old tensor names as on the
    real load, and a mismatch costs no memory."""
    weights = {}
    for k, t in saved.items():
        c.tensor(t, f"averaged.{_short(k)}")
        if k == "n_averaged":
            if t.numel() != 1 or t.is_floating_point():
                c.fail("averaged.n_averaged", "must be one integer")
        elif not isinstance(k, str) or not k.startswith("module.") or not t.is_floating_point():
            c.fail(f"averaged.{_short(k)}", "is not a weight of the model")
        else:
            weights[k[len("module.") :]] = torch.empty(t.shape, dtype=t.dtype, device="meta")
    with torch.device("meta"):
        shadow = type(model)(model.cfg)
    try:
        shadow.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()] or [str(e)]
        c.fail("averaged", f"does not fit the model: {lines[0][:160]}")


def _check_charlm_task(c: _Checker, d: dict, task: Any) -> None:
    rows = c.dict(d.get("rows"), "task.rows")
    for key in ("pos", "passes"):
        if key not in rows:
            c.fail(f"task.rows.{key}", "is missing")
        c.int(rows[key], f"task.rows.{key}")
    if "steps_per_pass" in rows:
        c.int(rows["steps_per_pass"], "task.rows.steps_per_pass", lo=1)
    hidden = d.get("hidden")
    if hidden is None:
        return
    cfg = task.model.cfg
    parts = 2 if cfg.cell == "lstm" else 1
    if not isinstance(hidden, (list, tuple)) or len(hidden) != parts:
        c.fail("task.hidden", f"must be {parts} tensor(s) for a {cfg.cell.upper()}")
    first = None
    for i, h in enumerate(hidden):
        where = f"task.hidden[{i}]"
        c.tensor(h, where)
        if not h.is_floating_point():
            c.fail(where, f"has dtype {h.dtype}; a hidden state is floating point")
        if h.dim() != 3 or h.shape[0] != cfg.layers or h.shape[2] != cfg.hidden or h.shape[1] < 1:
            c.fail(where, f"has shape {list(h.shape)}, but the model needs [{cfg.layers}, rows, {cfg.hidden}]")
        if first is not None and h.shape != first:
            c.fail(where, f"has shape {list(h.shape)}, unlike task.hidden[0] {list(first)}")
        first = h.shape


def _check_chat_task(c: _Checker, d: dict) -> None:
    order = c.dict(d.get("order"), "task.order")
    for key in ("epoch_index", "pos"):
        if key not in order:
            c.fail(f"task.order.{key}", "is missing")
        c.int(order[key], f"task.order.{key}")
    for key in ("batch_size", "world"):
        if key in order:
            c.int(order[key], f"task.order.{key}", lo=1)
    if "steps" in order:
        c.int(order["steps"], "task.order.steps")
    if "epoch_state" not in order:
        c.fail("task.order.epoch_state", "is missing")
    c.generator_state(order["epoch_state"], "task.order.epoch_state")
