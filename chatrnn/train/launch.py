"""Starting a training run from the CLI: single process or a torchrun rank, the dry-run plan, and
the closing summary. Keeps the CLI free of torch. Imports ``both.py`` (for ``run_both``); ``both.py``
never imports this module back."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from chatrnn.train.progress import Reporter
from chatrnn.train.summary import report_throughput, summarize


def _train_fn(kind: str):
    if kind == "charlm":
        from chatrnn.train.charlm import train_charlm

        return train_charlm
    from chatrnn.train.chat import train_chat

    return train_chat


class Stopped(BaseException):
    """SIGTERM or SIGHUP outside the trainer's loop (which saves and stops on its own, see
    ``Trainer._on_signal``): raised where the program is, so that every ``finally`` on the way out
    still runs. A BaseException, like KeyboardInterrupt, so that no ``except Exception`` keeps going."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def stops_unwind() -> Iterator[None]:
    """Make a stop signal unwind the stack, before and after training as during it.

    Python's default for SIGTERM and SIGHUP kills the process on the spot: the run lock
    (``.NAME.lock``) and a staging folder would stay behind when ``docker stop`` or a closed
    terminal came while the corpus was still being read. Ctrl-C already unwinds (KeyboardInterrupt);
    click would print "Aborted!" and exit 1 for it. Either way the command now ends with one line
    and the shell's 128 + N exit status; the trainer's own handlers take over while it trains (and
    restore these after)."""
    names = {signal.SIGINT: "Ctrl-C"}
    old = {}

    def stop(signum, frame) -> None:
        raise Stopped(signum)

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)  # no SIGHUP on Windows
        if sig is None:
            continue
        names[sig] = name
        try:
            old[sig] = signal.signal(sig, stop)
        except ValueError:  # not in the main thread (a test runner's thread): nothing to unwind for
            break
    try:
        yield
    except (Stopped, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, Stopped) else signal.SIGINT
        said = names.get(signum, signum)
        print(f"chatrnn: stopped by {said} (a checkpoint already saved is untouched)", file=sys.stderr)
        raise SystemExit(128 + signum) from None
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def run_training(kind: str, opts, dry_run: bool = False, reporter: Reporter | None = None):
    """Train ``kind`` ("charlm" or "chat") with ``opts``; under torchrun every rank calls this."""
    with stops_unwind():
        return _run_training(kind, opts, dry_run, reporter)


def _run_training(kind: str, opts, dry_run: bool, reporter: Reporter | None):
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
    with stops_unwind():
        return _run_both(corpus, lang, max_time, device, seed, reporter, dry_run, overwrite)


def _run_both(corpus, lang, max_time, device, seed, reporter, dry_run, overwrite):
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
