"""The lines a finished run prints: shared by ``train charlm|chat`` (launch.py) and ``train`` (both.py),
which is why it is its own module (neither imports the other)."""

from __future__ import annotations

from chatrnn.train.progress import Reporter
from chatrnn.units import format_duration


def summarize(result, reporter: Reporter) -> None:
    """Steps, time, best and last validation loss, in the task's own unit (nats per char or token)."""
    m = result.last_metrics or {}
    unit = result.unit.removesuffix("s")
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
