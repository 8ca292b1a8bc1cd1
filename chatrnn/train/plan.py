"""``--dry-run``: what a run would do, without doing it.

The plan builds the task exactly as training would (so it catches a bad corpus or a batch that does
not split over the ranks) but joins no process group, creates no checkpoint and trains nothing.
Under ``torchrun`` it shows the world it was started in; every rank builds it, rank 0 prints it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatrnn.train.progress import Reporter
from chatrnn.units import format_duration

if TYPE_CHECKING:
    from chatrnn.train.task import Task


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


def plan_lines(kind: str, task: Task, train, device, dist) -> list[str]:
    from chatrnn.device import autocast_dtype

    world = dist.world if dist is not None else 1
    local = dist.local_world if dist is not None else 1
    amp = autocast_dtype(device, train.amp)
    params = sum(p.numel() for p in {id(p): p for p in task.model.parameters()}.values())
    act_bytes = 2 if amp is not None else 4
    act = task.activation_bytes(act_bytes)
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
    spe = task.epoch_steps
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
    """The plan of a run, then every setting with the layer it came from (flag / checkpoint / preset / default)."""
    from chatrnn.device import pick_device
    from chatrnn.settings import settings_table

    device = dist.device if dist is not None else pick_device(opts.device)
    if kind == "charlm":
        from chatrnn.train.charlm import build_charlm_task, resolve_charlm

        settings = resolve_charlm(opts, device.type)
        task = build_charlm_task(settings, device, dist)
    else:
        from chatrnn.train.chat import build_chat_task, resolve_chat

        settings = resolve_chat(opts, device.type)
        task = build_chat_task(settings, device, dist)
    for line in plan_lines(kind, task, settings.train, device, dist):
        reporter.message(line)
    for line in settings_table(settings.resolved):
        reporter.message(line)
    reporter.message(f"checkpoint folder: {opts.out}" + (" (resumed)" if opts.resume else ""))
