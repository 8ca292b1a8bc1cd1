"""Starting a training run from the CLI: single process or a torchrun rank, the dry-run plan, and
the closing summary. Keeps ``cli.py`` free of torch."""

from __future__ import annotations

from chatrnn.train.progress import Reporter
from chatrnn.units import format_duration


def _train_fn(kind: str):
    if kind == "charlm":
        from chatrnn.train.charlm import train_charlm

        return train_charlm
    from chatrnn.train.chat import train_chat

    return train_chat


def run_training(kind: str, opts, dry_run: bool = False, reporter: Reporter | None = None):
    """Train ``kind`` ("charlm" or "chat") with ``opts``; under torchrun every rank calls this."""
    from chatrnn.train import distributed

    reporter = reporter or Reporter()
    dist = distributed.from_env(opts.device, init=not dry_run)  # a dry run joins no process group
    graceful = False
    try:
        if dist is not None and not dist.is_main:
            reporter = Reporter(quiet=True)
        if dry_run:
            from chatrnn.train.plan import print_plan

            print_plan(kind, opts, dist, reporter)
            return None
        result = _train_fn(kind)(opts, reporter=reporter, dist=dist)
        if dist is None or dist.is_main:
            summarize(kind, result, reporter)
            report_throughput(result, reporter)
        graceful = True
    finally:
        if dist is not None:
            dist.close(graceful)
    if result.interrupted and (dist is None or dist.is_main):
        # The shell's convention for "stopped by Ctrl-C", after a clean save. Under torchrun only
        # rank 0 says so: the save was collective, so the other ranks are done, and a non-zero exit
        # from them first would make torchrun SIGTERM rank 0 while it is still exiting.
        raise SystemExit(130)
    return result


def run_both(
    corpus: list[str],
    lang: str,
    max_time: float,
    device: str | None,
    seed: int,
    reporter: Reporter | None = None,
    dry_run: bool = False,
):
    """``chatrnn train`` with no subcommand, single process or a torchrun rank (one process group for both)."""
    from chatrnn.train import distributed
    from chatrnn.train.both import train_both

    reporter = reporter or Reporter()
    dist = distributed.from_env(device, init=not dry_run)
    graceful = False
    try:
        if dist is not None and not dist.is_main:
            reporter = Reporter(quiet=True)
        result = train_both(
            corpus,
            lang=lang,
            max_time=max_time,
            device=device,
            seed=seed,
            reporter=reporter,
            dist=dist,
            dry_run=dry_run,
        )
        graceful = True
        return result
    finally:
        if dist is not None:
            dist.close(graceful)


def summarize(kind: str, result, reporter: Reporter) -> None:
    m = result.last_metrics or {}
    unit = "char" if kind == "charlm" else "token"
    parts = [f"{result.steps:,} steps in {format_duration(result.elapsed)}"]
    if result.best_val_loss is not None:
        parts.append(f"best val loss {result.best_val_loss:.4f} nats/{unit}")
    if m:
        extra = f", {m['bpc']:.3f} bits/char" if "bpc" in m else ""
        parts.append(f"last {m['loss']:.4f} (ppl {m['perplexity']:.2f}{extra})")
    status = "stopped" if result.interrupted else "done"
    reporter.message(f"{status}: " + "; ".join(parts))
    reporter.message(f"checkpoint: {result.folder}")


def report_throughput(result, reporter: Reporter) -> None:
    """Average tokens/s over the run (all ranks, evaluation included) and, on a GPU, its peak memory."""
    import json

    import torch

    try:
        t = json.loads((result.folder / "config.json").read_text("utf-8"))["training"]
    except (OSError, ValueError, KeyError):
        return
    line = ""
    if t.get("train_time_s") and t.get("tokens"):
        line = (
            f"throughput: {t['tokens'] / t['train_time_s']:,.0f} "
            f"{t.get('unit', 'tokens')}/s over {t.get('world_size', 1)} rank(s)"
        )
    if torch.cuda.is_available() and str(t.get("device", "")).startswith("cuda") and torch.cuda.is_initialized():
        peak = torch.cuda.max_memory_allocated() / 2**30
        line += f"{'; ' if line else ''}peak GPU memory {peak:.2f} GiB per rank"
    if line:
        reporter.message(line)
