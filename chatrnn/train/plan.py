"""``--dry-run``: what a run would do, without doing it.

The plan builds the task exactly as training would (so it catches a bad corpus or a batch that does
not split over the ranks) but joins no process group, creates no checkpoint and trains nothing.
Under ``torchrun`` it shows the world it was started in; every rank builds it, rank 0 prints it.
"""

from __future__ import annotations

from chatrnn.train.progress import Reporter
from chatrnn.units import format_duration

# Bytes kept per token and hidden unit and layer for the backward pass (gates, cell and hidden
# state, the layer's output and dropout mask), by cell type; a rough figure that errs high.
_RNN_FLOATS = {"lstm": 8, "gru": 6, "rnn": 3}


def charlm_activation_bytes(task, bytes_per_value: int) -> int:
    """Activation memory of one char-LM training step on one rank."""
    cfg = task.model.cfg
    tokens = task.rows.batch_size * task.rows.seq_len
    per_token = cfg.layers * cfg.hidden * _RNN_FLOATS.get(cfg.cell, 8) + cfg.embed + cfg.hidden
    logits = tokens * cfg.vocab_size * (bytes_per_value + 4 + 4)  # logits, their fp32 copy, the softmax grad
    return tokens * per_token * bytes_per_value + logits


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


def plan_lines(kind: str, task, train, device, dist) -> list[str]:
    from chatrnn.device import autocast_dtype

    world = dist.world if dist is not None else 1
    local = dist.local_world if dist is not None else 1
    amp = autocast_dtype(device, train.amp)
    params = sum(p.numel() for p in {id(p): p for p in task.model.parameters()}.values())
    act_bytes = 2 if amp is not None else 4
    if kind == "charlm":
        act = charlm_activation_bytes(task, act_bytes)
    else:
        act = getattr(task, "activation_bytes", None)
        act = act(act_bytes) if callable(act) else act
    # fp32 weights, grads and AdamW's two moments; DDP adds one gradient bucket copy
    state = params * (16 + (4 if world > 1 else 0))
    if device.type == "cuda":
        where = f"{local} GPU(s) per node (cuda:LOCAL_RANK)" if world > 1 else str(device)
    else:
        where = str(device)
    nodes = max(1, world // max(1, local))
    lines = [
        f"plan for {kind}: {task.describe()}",
        f"device: {where}; {world} rank(s)"
        + (f" on {nodes} node(s), {local} per node" if world > 1 else "")
        + f"; autocast {'bf16' if amp is not None else 'off'}",
        f"parameters: {params:,} ({_mib(params * 4)} in fp32)",
        f"per step: {task.tokens_per_step * world:,} {task.unit} ({task.tokens_per_step:,} per rank)",
    ]
    spe = getattr(task, "epoch_steps", None)
    limits = []
    if train.max_steps:
        limits.append(f"{train.max_steps:,} steps")
    if train.epochs:
        limits.append(f"{train.epochs:g} epochs" + (f" ({int(train.epochs * spe):,} steps)" if spe else ""))
    if train.max_time:
        limits.append(f"{format_duration(train.max_time)} of wall clock")
    lines.append("steps: until " + " or ".join(limits) + (f"; one epoch = {spe:,} steps" if spe else ""))
    if act is None:
        lines.append(f"estimated memory per rank: {_mib(state)} for weights, gradients and AdamW, plus activations")
    else:
        lines.append(
            f"estimated memory per rank: {_mib(state + act)} ({_mib(state)} weights, gradients and AdamW; "
            f"{_mib(act)} activations)"
        )
    if device.type == "cuda":
        import torch

        total = torch.cuda.get_device_properties(device).total_memory
        lines.append(f"GPU memory: {_mib(total)} per device")
    return lines


def print_plan(kind: str, opts, dist, reporter: Reporter) -> None:
    from chatrnn.device import pick_device

    device = dist.device if dist is not None else pick_device(opts.device)
    if kind == "charlm":
        from chatrnn.train.charlm import build_charlm

        task, train = build_charlm(opts, device, dist)
    else:
        from chatrnn.train.chat import build_chat

        task, train = build_chat(opts, device, dist)
    for line in plan_lines(kind, task, train, device, dist):
        reporter.message(line)
    reporter.message(f"checkpoint folder: {opts.out}" + (" (resumed)" if getattr(opts, "resume", False) else ""))
