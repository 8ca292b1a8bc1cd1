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

import gc
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chatrnn import checkpoint as ckpt
from chatrnn.checkpoint_schema import loads_json, read_safetensors_header
from chatrnn.errors import ChatrnnError

log = logging.getLogger(__name__)

CHAT = "chat"
LM = "charlm"
KINDS = (CHAT, LM)
KIND_LABEL = {CHAT: "chat (seq2seq)", LM: "char LM"}


def settle_heap() -> None:
    """Collect once, then move every object alive now out of the collector's reach (``gc.freeze``).

    Torch, Textual and a loaded model leave millions of long-lived objects, and each full
    collection walked them all: 100-250 ms with the UI frozen, at random moments while a reply
    streamed (measured with ``gc.callbacks`` in ``benchmarks/tui_latency.py``). Done right after a
    model loads (the screen says "loading" anyway), later collections only visit what is new.
    """
    gc.collect()
    gc.freeze()


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
    """Number of values in a safetensors file, from its checked JSON header only (no torch, no
    weights); None when the header is damaged (:func:`weights_problem` says how)."""
    try:
        return sum(spec.numel for spec in read_safetensors_header(path).values())
    except (ChatrnnError, OSError):
        return None


def _reason(e: ChatrnnError, folder: Path) -> str:
    """A checkpoint error as the picker's short reason: without the folder's path, which the row names."""
    text = str(e)
    for prefix in (str(folder / ckpt.CONFIG) + ": ", str(folder) + "/", str(folder) + " "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def inspect_checkpoint(folder: Path, root: Path | None = None, name: str | None = None) -> CheckpointInfo:
    """A :class:`CheckpointInfo` for ``folder``; problems are reported in ``problem``, never raised.

    Everything a folder holds is untrusted (see ``checkpoint_schema.py``): config.json goes through
    the one schema, the weights' header through the one header check, and any failure, expected or
    not, marks this checkpoint unreadable with its reason instead of reaching the picker."""
    folder = Path(folder)
    if name is None:
        try:
            name = str(folder.relative_to(root)) if root is not None else str(folder)
        except ValueError:
            name = str(folder)
    info = CheckpointInfo(path=folder, name=name, kind=None)
    try:
        _inspect(folder, info)
    except Exception as e:  # a damaged folder is one unreadable row, never a crashed app
        info.problem = f"unreadable ({e.__class__.__name__})"
    return info


def _inspect(folder: Path, info: CheckpointInfo) -> None:
    path = folder / ckpt.CONFIG
    try:
        cfg = loads_json(ckpt.read_checked(path), path)
        info.modified = path.stat().st_mtime
    except (OSError, ChatrnnError) as e:
        info.problem = (
            f"unreadable {ckpt.CONFIG} ({_reason(e, folder) if isinstance(e, ChatrnnError) else e.__class__.__name__})"
        )
        return
    if not isinstance(cfg, dict):
        info.problem = f"{ckpt.CONFIG} is not a chatrnn config"
        return
    kind = cfg.get("kind")
    info.kind = kind if kind in KINDS else None
    weights = folder / ckpt.BEST_WEIGHTS
    if not weights.exists():
        info.problem = f"no {ckpt.BEST_WEIGHTS} (training never saved?)"
    try:
        info.size_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    except OSError:
        pass
    if info.problem is not None:
        return
    try:
        ckpt.read_config(folder)  # the one schema: kind, version, every field's type and range
    except ChatrnnError as e:
        info.problem = _reason(e, folder)
        return
    training = cfg.get("training") or {}
    loss = training.get("best_val_loss")
    info.best_val_loss = float(loss) if isinstance(loss, (int, float)) and not isinstance(loss, bool) else None
    steps = training.get("steps")
    info.steps = steps if isinstance(steps, int) else None
    try:
        header = read_safetensors_header(weights)
    except (ChatrnnError, OSError) as e:
        info.problem = _reason(e, folder) if isinstance(e, ChatrnnError) else f"unreadable {ckpt.BEST_WEIGHTS}"
        return
    info.parameters = sum(spec.numel for spec in header.values())
    model = cfg["model"]
    if model.get("tie_weights"):
        # a tied head is stored twice but trained once (as `chatrnn info` counts it)
        emb = model.get("vocab_size", 0) * model.get("embed", 0)
        if 0 < emb < info.parameters:
            info.parameters -= emb


def candidate_folders(parent: Path) -> list[tuple[Path, str]]:
    """The checkpoint folders directly in ``parent`` with the name each is listed under: ``NAME``,
    or ``.NAME.old`` under ``NAME`` when a save was interrupted between its two renames
    (:func:`chatrnn.checkpoint.recovered`, the rule ``--checkpoint`` follows too). Other dot folders
    (a save in progress) are skipped."""
    names: set[str] = set()
    for child in parent.iterdir():
        n = ckpt.interrupted_name(child) if child.name.startswith(".") else child.name
        if n:
            names.add(n)
    out = []
    for n in sorted(names):
        found = ckpt.recovered(parent / n)
        if found is not None:
            out.append((found, n))
    return out


def discover(root: Path | None = None, extra: list[str | Path] | tuple = ()) -> list[CheckpointInfo]:
    """Every checkpoint under ``root`` (default ``checkpoints/``, two levels deep) plus ``extra``
    folders given on the command line; newest first, without duplicates. A folder a save left as
    ``.NAME.old`` is listed (and loads) as ``NAME``."""
    root = Path(root) if root is not None else ckpt.checkpoints_root()
    folders: list[tuple[Path, str | None]] = []
    if root.is_dir():
        try:
            for folder, name in candidate_folders(root):
                folders.append((folder, name))
            for child in sorted(root.iterdir()):
                if child.name.startswith(".") or not child.is_dir() or ckpt.recovered(child) is not None:
                    continue
                try:
                    folders.extend((g, f"{child.name}/{n}") for g, n in candidate_folders(child))
                except OSError:
                    pass
        except OSError:
            pass
    for e in extra:
        found = ckpt.recovered(Path(e).expanduser())
        if found is not None:
            folders.append((found, None))
    seen: set[str] = set()
    out: list[CheckpointInfo] = []
    for f, name in folders:
        key = os.path.realpath(f)
        if key in seen:
            continue
        seen.add(key)
        out.append(inspect_checkpoint(f, root if _under(f, root) else None, name))
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
    default = ckpt.recovered(root / kind) or root / kind  # .KIND.old after an interrupted save
    for i in usable:
        if os.path.realpath(i.path) == os.path.realpath(default):
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

    # With beam search (``settings.beam > 1``) the pane also passes ``alternatives=[]``, which the
    # model fills with its n best replies (``infer_chat.Alternative``: text, score, pieces,
    # attention) before the first token.


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
        probe: bool = False,  # each token's ``probe``: every unit's values after reading it (Neurons view)
    ) -> Iterator[Any]: ...

    def trace(self, text: str) -> Any: ...  # a ``chatrnn.probe.Trace``

    def adapt(
        self, path: str, settings: Any = None, stats_file: Any = None, cancel: Any = None, progress: Any = None
    ) -> Any: ...  # a ``chatrnn.adapt.AdaptResult``; the model samples with the adapted weights after


# ---------------------------------------------------------------------------------------------
# looking inside the char LM (the Neurons view; called from worker threads)


def trace_states(model: Any, text: str) -> tuple[str, dict[str, Any]]:
    """``text`` run through the char LM: the characters that were run (unknown ones dropped) and
    every unit's values after each of them, as ``{"h": (T, layers, hidden), "c": ..., gates...}``
    (numpy, the layout the Neurons view appends a character at a time)."""
    trace = model.trace(text)
    states = {"h": trace.h}
    if trace.c is not None:
        states["c"] = trace.c
    states.update(trace.gates)
    return trace.text, {k: v.transpose(1, 0, 2) for k, v in states.items()}


def chat_states(model: Any, message: str, history: Any, settings: Any, tokens: list[Any]) -> dict | None:
    """The hidden-state heatmaps of a streamed reply (``widgets.state_changes`` of each side):
    ``{"dec": ..., "enc": ...}``, or None for a model that reports no states.

    ``dec``: the decoder's top-layer state at each shown reply token (``ReplyToken.state``), moves
    counted from the decoder's initial state; ``enc``: the encoder's outputs at each prompt token.
    The stream carries only the decoder's states, so the prompt is encoded once more here (one
    encoder pass, milliseconds, in the reply's worker thread, after the last token). Never
    raises: a failure is logged and the reply keeps its attention heatmap alone."""
    try:
        return _chat_states(model, message, history, settings, tokens)
    except Exception:
        log.warning("the reply's hidden states could not be summarised", exc_info=True)
        return None


def _chat_states(model: Any, message: str, history: Any, settings: Any, tokens: list[Any]) -> dict | None:
    from chatrnn.tui.widgets import state_changes

    shown = [t for t in tokens if t.piece or t.attention]
    dec_rows = [getattr(t, "state", None) for t in shown]
    if not shown or any(r is None for r in dec_rows):
        return None
    enc_rows, start = None, None
    encode = getattr(model, "_encode", None)
    if callable(encode) and hasattr(model, "prompt_ids"):
        import torch

        enc = encode(model.prompt_ids(message, history, settings))
        with torch.inference_mode():
            enc_rows = enc.memory[0].float().cpu().numpy()
            start = enc.hidden[-1, 0].float().cpu().numpy()
    out = {"dec": state_changes([list(map(float, r)) for r in dec_rows], None if start is None else start.tolist())}
    if enc_rows is not None:
        out["enc"] = state_changes(enc_rows.tolist())
    return out


def rank_units(model: Any, text: str) -> dict:
    """The units that track each text feature of ``text``, best AUC first (``chatrnn neurons --json``'s layout:
    ``{"features": [{"name", "units": [{"layer", "unit", "state", "score", "auc"}...]}...], "chars"}``)."""
    from chatrnn.neurons import find_neurons

    _, scores = find_neurons(model, text)
    return scores.to_json(top=10, by="auc")  # the units that ALONE tell the feature best: the legible ones


@dataclass
class AdaptSummary:
    """What the Generate tab shows after "adapt to a file" (``chatrnn.adapt``: the model keeps
    learning on the file; the checkpoint on disk is untouched)."""

    path: str
    loss_static: float | None
    loss: float
    chars: int
    seconds: float
    cancelled: bool

    def text(self) -> str:
        name = Path(self.path).name
        if self.cancelled:
            return f"adapting to {name} stopped: the model is unchanged"
        before = "?" if self.loss_static is None else f"{self.loss_static:.3f}"
        return f"adapted to {name}: {before} → {self.loss:.3f} nats/char ({self.chars:,} chars, {self.seconds:.0f}s)"


def adapt_model(model: Any, path: str, cancel: threading.Event | None = None, progress: Any = None) -> AdaptSummary:
    """Dynamic evaluation of the char LM on ``path`` (worker threads only: it runs for seconds to
    minutes). Raises ChatrnnError with a one-line reason for a missing, binary or empty file."""
    r = model.adapt(path, cancel=cancel, progress=progress)
    return AdaptSummary(path, r.loss_static, r.loss, r.chars, r.seconds, r.cancelled)


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
