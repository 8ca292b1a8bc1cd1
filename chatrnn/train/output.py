"""The folder a training run writes: claimed by one run at a time, and never one that holds something else.

A run holds an exclusive lock (``fcntl.flock``) on ``.NAME.lock`` beside its checkpoint folder from
before it reads the corpus until its last save, so a second run on the same ``--out`` fails at
once, naming the first one's PID, instead of the two interleaving their saves. Readers (generate,
reply, chat) never take it: every save is an atomic swap, so they always see a whole checkpoint.

Under the lock, a fresh run checks what ``--out`` already holds. Nothing, or an empty folder, is
fine. A chatrnn checkpoint is replaced only with ``--overwrite`` (``--resume`` continues it), and
then the first save starts a clean folder, so no stale tokenizer or metrics of the old model survive.
Any other non-empty folder, or a file, is refused: it is the user's, not ours.

Under torchrun only rank 0 writes, so only rank 0 locks and checks; the ranks then agree, so a
refusal stops every rank before any work.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chatrnn import checkpoint as ckpt
from chatrnn.errors import ChatrnnError

CONTINUE_HINT = "add --resume to continue it, or --overwrite to replace it"
MAX_CONFIG_BYTES = 16 << 20


def real_out(out: str | Path) -> Path:
    """``--out`` as the folder saves replace: a symlink's target (a link to a bigger disk, say), so
    the link stays a link and the checkpoint is written where it points."""
    out = Path(out)
    return out.resolve() if out.is_symlink() else out


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"PID {text}" if text.isdigit() else "PID unknown"


class RunLock:
    """The exclusive lock of one run on one checkpoint folder (see the module docstring).

    The lock file is removed on release, while still locked; so a run that opened the file just
    before that checks, once it holds the lock, that it locked the file still on disk, and retries
    otherwise. A run killed with SIGKILL leaves the file behind, unlocked: harmless.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = lock_path(self.out)
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): run unlocked, as before
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ChatrnnError(f"cannot create the folder of --out {self.out}: {e.strerror}") from None
        while True:
            try:
                # never through a link: a planted .NAME.lock -> a user's file would be truncated
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except OSError as e:
                raise ChatrnnError(
                    f"cannot use the lock file {self.path} ({e.strerror}); "
                    "it is not one chatrnn left behind: move it away, or give another --out"
                ) from None
            try:
                taken = self._take(fd, fcntl)
            except ChatrnnError:
                os.close(fd)
                raise
            except BaseException:  # a stop signal (or anything else) before the lock was recorded
                self._abandon(fd, fcntl)
                raise
            if taken == "held":
                return
            os.close(fd)
            if taken == "unlocked":  # a file system without locks
                return

    def _take(self, fd: int, fcntl) -> str:
        """Lock the opened ``fd`` and record it ("held"); "retry": the file was replaced meanwhile;
        "unlocked": the file system has no locks. The caller closes ``fd`` unless it is held."""
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device in its place
            raise ChatrnnError(f"the lock file {self.path} is not a regular file; move it away, or give another --out")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ChatrnnError(
                    f"{self.out} is being trained by another run ({_holder(fd)}); "
                    "wait for it to finish, or give another --out"
                ) from None
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return "unlocked"
            raise
        if not _same_file(self.path, fd):  # released and removed by the previous holder after we opened it
            return "retry"
        self.fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return "held"

    def _abandon(self, fd: int, fcntl) -> None:
        """Undo a half-taken lock: a stop signal that lands between creating the file and recording
        it unwinds past :meth:`release`, which would leave ``.NAME.lock`` behind. The file goes if no
        other run holds it (a lock we already took, or nobody's) and it is still the one we opened."""
        self.fd = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if stat.S_ISREG(os.fstat(fd).st_mode) and _same_file(self.path, fd):
                self.path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # still locked: nobody else can be holding this file
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None


def _same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        on_disk, mine = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _is_checkpoint(folder: Path) -> dict | None:
    """The config of a chatrnn checkpoint in ``folder``, or None (no config, or someone else's)."""
    path = folder / ckpt.CONFIG
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        cfg = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if isinstance(cfg, dict) and cfg.get("kind") in ckpt.KIND_COMMAND:
        return cfg
    return None


def check_output(out: Path, *, resume: bool, overwrite: bool, hint: str = CONTINUE_HINT) -> bool:
    """Refuse to write where a fresh run would lose something; True when the first save must start
    a clean folder (``--overwrite`` of an existing checkpoint)."""
    out = Path(out)
    if resume and overwrite:
        raise ChatrnnError("give --resume (continue the checkpoint) or --overwrite (replace it), not both")
    if resume:
        return False  # the run reads the checkpoint; a missing one is reported by its loader
    old = out.parent / f".{out.name}.old"  # a save interrupted between its two renames
    if out.is_symlink() or out.exists():
        live = out
    elif old.is_dir():
        live = old
    else:
        return False
    if not live.is_dir():
        raise ChatrnnError(f"--out {out} is a file, not a folder; give a folder for the checkpoint")
    cfg = _is_checkpoint(live)
    if cfg is not None:
        if not overwrite:
            steps = cfg.get("training", {}).get("steps") if isinstance(cfg.get("training"), dict) else None
            at = f" ({steps} steps)" if isinstance(steps, int) else ""
            raise ChatrnnError(f"{out} already holds a trained {cfg['kind']} model{at}; {hint}")
        return True
    try:
        empty = next(live.iterdir(), None) is None
    except OSError as e:
        raise ChatrnnError(f"cannot read --out {out}: {e.strerror}") from None
    if not empty:
        raise ChatrnnError(
            f"{out} is not empty and is not a chatrnn checkpoint; nothing was written: "
            "give a new or empty folder as --out"
        )
    return False


def on_main(dist, fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0 (every process without torchrun); under torchrun the ranks then agree, and
    if rank 0 failed, it raises its error while the other ranks leave quietly (exit 0: a non-zero
    exit from them first would make torchrun kill rank 0 before it says why)."""
    if dist is None or not dist.initialized:
        return fn()
    error: ChatrnnError | None = None
    result = None
    if dist.is_main:
        try:
            result = fn()
        except ChatrnnError as e:
            error = e
    if dist.max_float(1.0 if error is not None else 0.0) > 0:
        if error is not None:
            raise error
        raise SystemExit(0)
    return result


def _remove_stale_stages(out: Path) -> None:
    """Staging folders of killed runs (``.NAME.tmp-PID``): under the lock no other run is writing
    one, and they hold only links to (or copies of) files of a checkpoint."""
    import shutil

    prefix = f".{out.name}.tmp-"
    try:
        stale = [p for p in out.parent.iterdir() if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()]
    except OSError:
        return
    for tmp in stale:
        if tmp.is_dir() and not tmp.is_symlink() and _only_ours(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)


def _only_ours(tmp: Path, out: Path) -> bool:
    """Whether a staging folder holds nothing but what a save puts there: chatrnn's own files and
    copies of what the checkpoint itself holds. A folder of that name holding anything else is a
    user's (or another program's) and stays."""
    try:
        return all(f.name in ckpt.OWN_FILES or (out / f.name).exists() for f in tmp.iterdir())
    except OSError:
        return False


@contextmanager
def claim_output(out: Path, *, resume: bool, overwrite: bool, dist=None) -> Iterator[bool]:
    """Hold ``out`` for a training run: the lock, then :func:`check_output`; yields whether the first
    save must start a clean folder (rank 0's answer; False on the other ranks, which never save)."""
    lock = RunLock(Path(out))

    def claim() -> bool:
        lock.acquire()
        try:
            fresh = check_output(Path(out), resume=resume, overwrite=overwrite)
        except BaseException:
            lock.release()
            raise
        if lock.fd is not None:
            _remove_stale_stages(Path(out))
        return fresh

    try:
        fresh = bool(on_main(dist, claim))
        yield fresh
    finally:
        lock.release()
