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


def checkpoints_root() -> Path:
    """Where checkpoints live by default: ``./checkpoints``, or ``$CHATRNN_CHECKPOINTS``."""
    return Path(os.environ.get("CHATRNN_CHECKPOINTS") or "checkpoints")


def _old(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.old"


class Stage:
    """A folder being written; every ``save_*`` writes a new file (never into a hard link)."""

    def __init__(self, path: Path):
        self.path = path

    def _fresh(self, name: str) -> Path:
        p = self.path / name
        p.unlink(missing_ok=True)  # may be a hard link to the live checkpoint's file
        return p

    def save_json(self, name: str, obj: Any) -> None:
        self._fresh(name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", "utf-8")

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
        old = p.read_text("utf-8") if p.exists() else ""
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


@contextmanager
def update_checkpoint(folder: str | Path) -> Iterator[Stage]:
    """Stage an update of ``folder``; it becomes visible only when the block ends without error."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    live = folder if folder.is_dir() else (_old(folder) if _old(folder).is_dir() else None)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if live is not None:
            for f in live.iterdir():
                if f.is_file():
                    try:
                        os.link(f, tmp / f.name)
                    except OSError:
                        shutil.copy2(f, tmp / f.name)
        yield Stage(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = _old(folder)
        if folder.is_dir():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
        _fsync_dir(folder.parent)
        shutil.rmtree(old, ignore_errors=True)
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
        if (c / CONFIG).is_file():
            return c
        if not c.exists() and (_old(c) / CONFIG).is_file():
            return _old(c)  # a save was interrupted between its two renames
    hint = f"; train one with `{KIND_COMMAND[kind]}`" if kind in KIND_COMMAND else ""
    shown = candidates[0] if name is None else name
    if any(c.is_dir() for c in candidates):
        raise ChatrnnError(f"{shown} is not a chatrnn checkpoint (no {CONFIG}){hint}")
    raise ChatrnnError(f"no checkpoint at {shown}{hint}")


def read_config(folder: Path, kind: str | None = None) -> dict:
    """``config.json`` of a checkpoint, checked for format version and (optionally) kind."""
    try:
        cfg = json.loads((folder / CONFIG).read_text("utf-8"))
    except FileNotFoundError:
        raise ChatrnnError(f"{folder} has no {CONFIG}; not a chatrnn checkpoint") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ChatrnnError(f"{folder / CONFIG} is corrupt ({e.__class__.__name__}); retrain or restore it") from None
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise ChatrnnError(f"{folder / CONFIG} is not a chatrnn config")
    if int(cfg.get("format_version", 0)) > FORMAT_VERSION:
        raise ChatrnnError(f"{folder} was written by a newer chatrnn (format {cfg['format_version']}); upgrade chatrnn")
    if kind is not None and cfg["kind"] != kind:
        raise ChatrnnError(f"{folder} holds a {cfg['kind']} model, not a {kind} model")
    return cfg


def load_weights(folder: Path, name: str = BEST_WEIGHTS) -> dict:
    """Weights as CPU tensors (safetensors: no code runs on load); move them with ``.to(device)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / name
    if not path.is_file():
        raise ChatrnnError(f"{path} is missing; the checkpoint is incomplete")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ChatrnnError(f"{path} is corrupt ({str(e).splitlines()[0][:80]}); retrain or restore it") from None


def load_train_state(folder: Path) -> dict:
    """The resume state; ``weights_only=True`` so a tampered file cannot run code."""
    import torch

    path = folder / TRAIN_STATE
    if not path.is_file():
        raise ChatrnnError(f"{folder} has no {TRAIN_STATE}; it cannot be resumed (was it saved by an older run?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged or unsafe pickles
        raise ChatrnnError(f"{path} is corrupt or unsafe ({e.__class__.__name__}); cannot resume") from None


def base_config(kind: str) -> dict:
    return {"format_version": FORMAT_VERSION, "kind": kind, "chatrnn_version": __version__}


def read_metrics(folder: Path) -> list[dict]:
    path = folder / METRICS
    if not path.exists():
        return []
    out = []
    for line in path.read_text("utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
