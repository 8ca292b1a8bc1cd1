"""Starting a training run from the CLI: single process or a torchrun rank, the dry-run plan, and
the closing summary. Keeps the CLI free of torch. Imports ``both.py`` (for ``run_both``); ``both.py``
never imports this module back."""

from __future__ import annotations

from chatrnn.train.progress import Reporter
from chatrnn.train.summary import report_throughput, summarize


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
            summarize(result, reporter)
            report_throughput(result, reporter)
        graceful = True
    finally:
        if dist is not None:
            dist.close(graceful)
    _exit_if_stopped(result, dist)
    return result


def _exit_if_stopped(result, dist) -> None:
    """The shell's convention for "stopped by signal N" (128 + N: 130 for Ctrl-C, 143 for SIGTERM,
    129 for SIGHUP), after a clean save. Under torchrun only rank 0 says so: the save was
    collective, so the other ranks are done, and a non-zero exit from them first would make
    torchrun SIGTERM rank 0 while it is still exiting."""
    if result is not None and result.interrupted and (dist is None or dist.is_main):
        import signal

        raise SystemExit(128 + (result.signal or signal.SIGINT))


def run_both(
    corpus: list[str],
    lang: str,
    max_time: float,
    device: str | None,
    seed: int,
    reporter: Reporter | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
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
            overwrite=overwrite,
        )
        graceful = True
    finally:
        if dist is not None:
            dist.close(graceful)
    for r in result or ():  # a stopped char LM run ended the command: no chat model followed
        _exit_if_stopped(r, dist)
    return result
