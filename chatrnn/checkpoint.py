"""Checkpoint folders: atomic writes, safe loads, and finding checkpoints by name.

A checkpoint is a folder (see ARCHITECTURE.md): ``config.json`` says what to build, safetensors files
hold weights, ``train_state.pt`` holds what resuming needs (tensors and plain data only, read with
``weights_only=True``), ``metrics.jsonl`` the evaluation log.

Every update is staged in a sibling temp folder (unchanged files hard-linked, so big weights are not
copied) and swapped in with two renames. A kill at any moment leaves either the old or the new
folder complete; if it lands between the two renames, the old folder sits at ``.NAME.old`` and
:func:`resolve_checkpoint` picks it up.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chatrnn import __version__
from chatrnn.errors import ChatrnnError

FORMAT_VERSION = 1
CONFIG = "config.json"
BEST_WEIGHTS = "model.safetensors"
LAST_WEIGHTS = "last.safetensors"
TRAIN_STATE = "train_state.pt"
METRICS = "metrics.jsonl"
KIND_COMMAND = {"charlm": "chatrnn train charlm", "chat": "chatrnn train chat"}
# What a training run writes; ``--overwrite`` leaves these behind, never a user's own files
OWN_FILES = frozenset({CONFIG, BEST_WEIGHTS, LAST_WEIGHTS, TRAIN_STATE, METRICS, "tokenizer.model"})


def checkpoints_root() -> Path:
    """Where checkpoints live by default: ``./checkpoints``, or ``$CHATRNN_CHECKPOINTS``."""
    return Path(os.environ.get("CHATRNN_CHECKPOINTS") or "checkpoints")


def _old(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.old"


def recovered(folder: Path) -> Path | None:
    """The folder that holds checkpoint ``folder``: itself, or ``.NAME.old`` when a save was killed
    between its two renames (``folder`` gone, the complete old one beside it); None when neither
    holds a config. The one recovery rule, for ``--checkpoint`` and the TUI's discovery alike."""
    folder = Path(folder)
    if (folder / CONFIG).is_file():
        return folder
    if not folder.exists() and (_old(folder) / CONFIG).is_file():
        return _old(folder)
    return None


def interrupted_name(child: Path) -> str | None:
    """``NAME`` for a leftover ``.NAME.old`` folder (see :func:`recovered`), else None."""
    n = child.name
    return n[1:-4] if n.startswith(".") and n.endswith(".old") and len(n) > 5 else None


# Most bytes each checkpoint file may have before it is read: a file a user is handed may be a
# link to /dev/zero or a multi-gigabyte blob, and must be refused before it fills the memory.
MAX_BYTES = {CONFIG: 64 << 20, METRICS: 256 << 20, "tokenizer.model": 256 << 20}


def checked_size(path: Path, limit: int | None = None) -> int:
    """The size of ``path`` if it is a regular file (after links) of at most ``limit`` bytes (default:
    :data:`MAX_BYTES` for its name, none for weights); else one line. FileNotFoundError passes through."""
    import stat

    path = Path(path)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ChatrnnError(f"{path} is not a regular file; refusing to read it")
    limit = MAX_BYTES.get(path.name) if limit is None else limit
    if limit is not None and st.st_size > limit:
        raise ChatrnnError(f"{path} is {st.st_size:,} bytes, more than a chatrnn {path.name} can be ({limit:,})")
    return st.st_size


def read_checked(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a checkpoint file, through :func:`checked_size` (and never more than it allowed,
    should the file grow or be swapped between the check and the read)."""
    size = checked_size(path, limit)
    with open(path, "rb") as fh:
        data = fh.read(size + 1)
    if len(data) > size:
        raise ChatrnnError(f"{path} changed while it was read; try again")
    return data


class Stage:
    """A folder being written; every ``save_*`` writes a new file (never into a hard link)."""

    def __init__(self, path: Path):
        self.path = path

    def _fresh(self, name: str) -> Path:
        p = self.path / name
        p.unlink(missing_ok=True)  # may be a hard link to the live checkpoint's file
        return p

    def save_json(self, name: str, obj: Any) -> None:
        # allow_nan=False: NaN is not JSON; a non-finite score is a bug to report, not to store
        self._fresh(name).write_text(json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n", "utf-8")

    def save_bytes(self, name: str, data: bytes) -> None:
        self._fresh(name).write_bytes(data)

    def save_tensors(self, name: str, tensors: dict, metadata: dict[str, str] | None = None) -> None:
        from safetensors.torch import save_file

        # safetensors refuses shared or non-contiguous storage (tied weights): give it plain copies
        plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        save_file(plain, str(self._fresh(name)), metadata=metadata)

    def save_torch(self, name: str, obj: Any) -> None:
        import torch

        torch.save(obj, self._fresh(name))

    def append_lines(self, name: str, lines: list[str]) -> None:
        p = self.path / name
        # read through the size check; a link to a device (/dev/zero) holds no lines worth keeping
        old = read_checked(p).decode("utf-8", "replace") if p.is_file() else ""
        self._fresh(name).write_text(old + "".join(line.rstrip("\n") + "\n" for line in lines), "utf-8")

    def remove(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _carry(src: Path, dst: Path) -> None:
    """One entry of the live folder into the stage, hard-linked: files, symlinks (as links) and
    whole subfolders (a user's, kept inside a checkpoint), so the swap never drops anything."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def _discard(path: Path) -> None:
    """Remove the previous folder; an ``--out`` that was a symlink left a link there (its target,
    the user's, stays untouched)."""
    if path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def update_checkpoint(folder: str | Path, fresh: bool = False) -> Iterator[Stage]:
    """Stage an update of ``folder``; it becomes visible only when the block ends without error.

    Everything the live folder holds is carried over, unless ``fresh`` (``--overwrite``: a new
    model), which leaves chatrnn's own files (:data:`OWN_FILES`) behind but still carries the rest.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    live = folder if folder.is_dir() else (_old(folder) if _old(folder).is_dir() else None)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if live is not None:
            for f in live.iterdir():
                if not (fresh and f.name in OWN_FILES):
                    _carry(f, tmp / f.name)
        yield Stage(tmp)
        for f in tmp.iterdir():
            if f.is_file() and not f.is_symlink():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = _old(folder)
        if folder.is_dir():
            _discard(old)
            os.replace(folder, old)
        os.replace(tmp, folder)
        _fsync_dir(folder.parent)
        _discard(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_checkpoint(name: str | Path | None, kind: str | None = None) -> Path:
    """The folder meant by ``--checkpoint``: a path, a name under the checkpoints root, or the
    default for ``kind``; a clear error (with the command that trains one) when there is none."""
    root = checkpoints_root()
    candidates: list[Path] = []
    if name is None or str(name) == "":
        if kind is None:
            raise ChatrnnError("no checkpoint given")
        candidates.append(root / kind)
    else:
        p = Path(name).expanduser()
        candidates.append(p)
        if not p.is_absolute():
            candidates.append(root / p)
    for c in candidates:
        found = recovered(c)  # c, or its .old when a save was interrupted between its two renames
        if found is not None:
            return found
    hint = f"; train one with `{KIND_COMMAND[kind]}`" if kind in KIND_COMMAND else ""
    shown = candidates[0] if name is None else name
    if any(c.is_dir() for c in candidates):
        raise ChatrnnError(f"{shown} is not a chatrnn checkpoint (no {CONFIG}){hint}")
    raise ChatrnnError(f"no checkpoint at {shown}{hint}")


def read_config(folder: Path, kind: str | None = None) -> dict:
    """``config.json`` of a checkpoint, checked against the one schema (``checkpoint_schema.py``):
    format version, (optionally) kind, and every field's type and range."""
    from chatrnn.checkpoint_schema import loads_json, validate_config

    path = Path(folder) / CONFIG
    try:
        cfg = loads_json(read_checked(path), path)
    except FileNotFoundError:
        raise ChatrnnError(f"{folder} has no {CONFIG}; not a chatrnn checkpoint") from None
    except OSError as e:
        raise ChatrnnError(f"{path} is corrupt ({e.__class__.__name__}); retrain or restore it") from None
    validate_config(cfg, path, FORMAT_VERSION, kind)  # the one schema: a bad field is one line naming it
    return cfg


def load_weights(folder: Path, name: str = BEST_WEIGHTS) -> dict:
    """Weights as CPU tensors (safetensors: no code runs on load); move them with ``.to(device)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / name
    if not path.exists():
        raise ChatrnnError(f"{path} is missing; the checkpoint is incomplete")
    from chatrnn.checkpoint_schema import read_safetensors_header

    read_safetensors_header(path)  # the header's own checks (and no trailing bytes) before it is mapped
    try:
        weights = load_file(str(path), device="cpu")
    except MemoryError:
        raise ChatrnnError(f"{path} does not fit in the memory available to this process") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ChatrnnError(f"{path} is corrupt ({str(e).splitlines()[0][:80]}); retrain or restore it") from None
    bad = non_finite(weights)
    if bad is not None:  # a diverged model would only print garbage
        raise ChatrnnError(f"{path} holds non-finite weights (NaN or inf in {bad}); retrain or restore it")
    return weights


def non_finite(tensors: dict) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, or None."""
    import torch

    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def load_train_state(folder: Path) -> dict:
    """The resume state; ``weights_only=True`` so a tampered file cannot run code."""
    import torch

    from chatrnn.train.state_check import check_archive, check_train_state, train_state_limit

    path = folder / TRAIN_STATE
    if not path.exists():
        raise ChatrnnError(f"{folder} has no {TRAIN_STATE}; it cannot be resumed (was it saved by an older run?)")
    checked_size(path, train_state_limit(folder))
    check_archive(path, train_state_limit(folder))  # nor what it would expand to
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged or unsafe pickles
        raise ChatrnnError(f"{path} is corrupt or unsafe ({e.__class__.__name__}); cannot resume") from None
    check_train_state(state, path)  # its structure now; the trainer checks it against the model too
    return state


def base_config(kind: str) -> dict:
    return {"format_version": FORMAT_VERSION, "kind": kind, "chatrnn_version": __version__}


def read_metrics(folder: Path) -> list[dict]:
    path = folder / METRICS
    if not path.exists():
        return []
    out = []
    for line in read_checked(path).decode("utf-8", "replace").splitlines():
        try:
            out.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError):
            continue
    return out
