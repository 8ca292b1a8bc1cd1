"""Checkpoints for the TUI: discovery (no torch) and loading (in worker threads).

This is the only TUI module that reaches the inference API (``chatrnn.infer`` for the char LM,
``chatrnn.infer_chat`` for the chat model), and it imports them lazily inside
:meth:`ModelLoader.load`, which the app calls from a thread worker: importing the TUI never imports
torch, and the screen shows "loading..." while torch and the weights come in.

Discovery reads only ``config.json`` and the safetensors header (a JSON prefix), so listing every
checkpoint in the model picker is instant and safe even when a folder is half-written. File names
come from :mod:`chatrnn.checkpoint` (which imports torch only inside its loaders).

Tests and benchmarks swap models in through :class:`ModelLoader`: any object with the
``Responder``/``Generator`` streaming interface works (see ``tests/tui/conftest.py``).
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chatrnn import checkpoint as ckpt
from chatrnn.errors import ChatrnnError

CHAT = "chat"
LM = "charlm"
KINDS = (CHAT, LM)
KIND_LABEL = {CHAT: "chat (seq2seq)", LM: "char LM"}


class NoCheckpoint(ChatrnnError):
    """No checkpoint of the wanted kind exists at all: the app shows how to train one."""


def train_hint(kind: str | None = None) -> str:
    """The exact commands that produce a model the TUI can use."""
    root = ckpt.checkpoints_root()
    if kind in ckpt.KIND_COMMAND:
        return (
            f"No {KIND_LABEL[kind]} model found under {root}/. Train one with:\n\n"
            f"    {ckpt.KIND_COMMAND[kind]}\n\n"
            "(or `chatrnn train` for both models, about 5 minutes on a CPU), then press ctrl+o "
            "to pick it, or restart `chatrnn chat`."
        )
    return (
        f"No checkpoints found under {root}/. Train both models with:\n\n"
        "    chatrnn train\n\n(about 5 minutes on a CPU), then run `chatrnn chat` again."
    )


def missing_message(kind: str) -> str:
    """One line for a missing model of ``kind`` (the app's notification)."""
    return f"no {KIND_LABEL[kind]} model under {ckpt.checkpoints_root()}/; train one with `{ckpt.KIND_COMMAND[kind]}`"


# ---------------------------------------------------------------------------------------------
# discovery


@dataclass
class CheckpointInfo:
    """What the model picker shows about one checkpoint folder."""

    path: Path
    name: str
    kind: str | None
    parameters: int | None = None
    size_bytes: int = 0
    best_val_loss: float | None = None
    steps: int | None = None
    modified: float = 0.0
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None and self.kind in KINDS

    def size_text(self) -> str:
        return format_bytes(self.size_bytes)

    def params_text(self) -> str:
        if self.parameters is None:
            return "?"
        n = float(self.parameters)
        for unit in ("", "K", "M", "B"):
            if n < 1000 or unit == "B":
                return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
            n /= 1000
        return str(self.parameters)

    def loss_text(self) -> str:
        return "-" if self.best_val_loss is None else f"{self.best_val_loss:.3f}"


def format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def safetensors_parameters(path: Path) -> int | None:
    """Number of values in a safetensors file, from its JSON header only (no torch, no weights)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if not 0 < n <= 100_000_000:
                return None
            header = json.loads(fh.read(n))
    except (OSError, ValueError):
        return None
    total = 0
    for key, entry in header.items():
        if key == "__metadata__" or not isinstance(entry, dict):
            continue
        count = 1
        for dim in entry.get("shape", []):
            count *= int(dim)
        total += count
    return total


def inspect_checkpoint(folder: Path, root: Path | None = None) -> CheckpointInfo:
    """A :class:`CheckpointInfo` for ``folder``; problems are reported in ``problem``, never raised."""
    folder = Path(folder)
    try:
        name = str(folder.relative_to(root)) if root is not None else str(folder)
    except ValueError:
        name = str(folder)
    info = CheckpointInfo(path=folder, name=name, kind=None)
    try:
        cfg = json.loads((folder / ckpt.CONFIG).read_text("utf-8"))
        info.modified = (folder / ckpt.CONFIG).stat().st_mtime
    except (OSError, UnicodeDecodeError, ValueError) as e:
        info.problem = f"unreadable {ckpt.CONFIG} ({e.__class__.__name__})"
        return info
    if not isinstance(cfg, dict):
        info.problem = f"{ckpt.CONFIG} is not a chatrnn config"
        return info
    info.kind = cfg.get("kind")
    training = cfg.get("training") or {}
    if isinstance(training, dict):
        loss = training.get("best_val_loss")
        info.best_val_loss = float(loss) if isinstance(loss, (int, float)) else None
        steps = training.get("steps")
        info.steps = int(steps) if isinstance(steps, int) else None
    weights = folder / ckpt.BEST_WEIGHTS
    if not weights.is_file():
        info.problem = f"no {ckpt.BEST_WEIGHTS} (training never saved?)"
    else:
        info.parameters = safetensors_parameters(weights)
        model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
        if info.parameters is not None and model.get("tie_weights"):
            # a tied head is stored twice but trained once (as `chatrnn info` counts it)
            emb = model.get("vocab_size", 0) * model.get("embed", 0)
            if isinstance(emb, int) and 0 < emb < info.parameters:
                info.parameters -= emb
        if info.parameters is None:
            info.problem = f"{ckpt.BEST_WEIGHTS} is corrupt"
    try:
        info.size_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    except OSError:
        pass
    if info.kind not in KINDS and info.problem is None:
        info.problem = f"unknown kind {info.kind!r}"
    return info


def discover(root: Path | None = None, extra: list[str | Path] | tuple = ()) -> list[CheckpointInfo]:
    """Every checkpoint under ``root`` (default ``checkpoints/``, two levels deep) plus ``extra``
    folders given on the command line; newest first, without duplicates."""
    root = Path(root) if root is not None else ckpt.checkpoints_root()
    folders: list[Path] = []
    if root.is_dir():
        try:
            for child in sorted(root.iterdir()):
                if child.name.startswith("."):
                    continue
                if (child / ckpt.CONFIG).is_file():
                    folders.append(child)
                elif child.is_dir():
                    try:
                        folders.extend(
                            g
                            for g in sorted(child.iterdir())
                            if not g.name.startswith(".") and (g / ckpt.CONFIG).is_file()
                        )
                    except OSError:
                        pass
        except OSError:
            pass
    for e in extra:
        p = Path(e).expanduser()
        if (p / ckpt.CONFIG).is_file():
            folders.append(p)
    seen: set[str] = set()
    out: list[CheckpointInfo] = []
    for f in folders:
        key = os.path.realpath(f)
        if key in seen:
            continue
        seen.add(key)
        out.append(inspect_checkpoint(f, root if _under(f, root) else None))
    out.sort(key=lambda i: -i.modified)
    return out


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def pick_default(kind: str, infos: list[CheckpointInfo], root: Path | None = None) -> CheckpointInfo | None:
    """``checkpoints/<kind>`` when it is usable, else the newest usable checkpoint of that kind."""
    root = Path(root) if root is not None else ckpt.checkpoints_root()
    usable = [i for i in infos if i.kind == kind and i.usable]
    for i in usable:
        if os.path.realpath(i.path) == os.path.realpath(root / kind):
            return i
    return usable[0] if usable else None


def model_label(model: Any) -> str:
    """A short name for a loaded model: its folder relative to the checkpoints root."""
    folder = model_folder(model)
    if folder is None:
        return "model"
    try:
        return str(Path(folder).resolve().relative_to(ckpt.checkpoints_root().resolve()))
    except (ValueError, OSError):
        return folder


def model_folder(model: Any) -> str | None:
    """The checkpoint folder a model came from, as stored with a conversation (None: not from disk)."""
    return str(model.folder) if model.folder is not None else None


# ---------------------------------------------------------------------------------------------
# loading


class ChatModel(Protocol):
    """What the chat pane needs (``chatrnn.infer_chat.Responder`` has it)."""

    config: dict
    folder: Path | None
    context_turns: int  # earlier turns the model reads by default

    def prompt_pieces(self, message: str, history: Any = None, settings: Any = None) -> list[str]: ...

    def stream(
        self, message: str, history: Any = None, settings: Any = None, cancel: threading.Event | None = None
    ) -> Iterator[Any]: ...


class CharModel(Protocol):
    """What the generate pane needs (``chatrnn.infer.Generator`` has it)."""

    config: dict
    folder: Path | None

    def prepare_seed(self, seed: str) -> tuple[list[int], list[str]]: ...

    def stream(
        self,
        seed: str = "",
        length: int = 500,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        rng_seed: int | None = None,
        candidates: int = 0,
        cancel: threading.Event | None = None,
    ) -> Iterator[Any]: ...


class ModelLoader:
    """Loads and warms checkpoints for the app. Called from worker threads only (both import torch).

    :meth:`load` takes a name or path (``None``: the default checkpoint of that kind, see
    :func:`pick_default`) and raises :class:`ChatrnnError` with a one-line reason. :meth:`warm` is a
    separate step so that a model that loads but fails its trial run still reaches the screen, with
    a warning the app shows (and logs) instead of an error swallowed here.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device or "cpu"
        self._resolved_device: Any = None

    def _device(self) -> Any:
        if self._resolved_device is None:
            if self.device in ("auto", ""):
                from chatrnn.device import pick_device

                self._resolved_device = pick_device(None)
            else:
                self._resolved_device = self.device
        return self._resolved_device

    def resolve(self, name: str | Path | None, kind: str) -> Path:
        if name is None or str(name) == "":
            found = pick_default(kind, discover())
            if found is None:
                raise NoCheckpoint(missing_message(kind))
            return found.path
        return ckpt.resolve_checkpoint(name, kind)

    def load(self, kind: str, name: str | Path | None = None) -> ChatModel | CharModel:
        folder = self.resolve(name, kind)
        if kind == CHAT:
            from chatrnn.infer_chat import Responder

            return Responder.load(folder, device=self._device())
        from chatrnn.infer import Generator

        return Generator.load(folder, device=self._device())

    def warm(self, kind: str, model: Any) -> None:
        """One short throwaway run, so the user's first message does not pay for lazy init (torch's
        first call, allocator growth). Raises whatever the model raises: the caller reports it."""
        if kind == CHAT:
            from chatrnn.decoding import ReplySettings

            for _ in zip(range(2), model.stream("hello", [], ReplySettings(max_len=2))):
                pass
        else:
            for _ in model.stream("a", length=2, candidates=5):
                pass
