"""``--dry-run``: what a run would do, without doing it."""

from __future__ import annotations

from chatrnn.train.progress import Reporter


def print_plan(kind: str, opts, dist, reporter: Reporter) -> None:
    from chatrnn.device import pick_device

    device = dist.device if dist is not None else pick_device(opts.device)
    world = dist.world if dist is not None else 1
    if kind == "charlm":
        from chatrnn.train.charlm import build_charlm

        task, train = build_charlm(opts, device, dist)
        cfg = task.model.cfg
        act = task.rows.batch_size * task.rows.seq_len * cfg.hidden * cfg.layers * 4 * 12
    else:
        from chatrnn.train.chat import build_chat

        task, train = build_chat(opts, device, dist)
        act = getattr(task, "activation_bytes", 0)
    params = sum(p.numel() for p in {id(p): p for p in task.model.parameters()}.values())
    mem = params * 4 * 4 + act  # weights, grads, two AdamW moments, and activations
    tokens_step = task.tokens_per_step * world
    lines = [
        f"plan for {kind}: {task.describe()}",
        f"device {device}, {world} rank(s), autocast {'bf16' if device.type == 'cuda' and train.amp is not False else 'off'}",
        f"parameters {params:,}; {tokens_step:,} {task.unit} per step (all ranks)",
        f"steps: {train.max_steps or '-'} max, epochs: {train.epochs or '-'} (one epoch = {getattr(task, 'epoch_steps', '?')} steps), time budget: {train.max_time or '-'} s",
        f"estimated memory per rank: {mem / 2**20:,.0f} MiB",
        f"checkpoint folder: {opts.out}",
    ]
    for line in lines:
        reporter.message(line)
