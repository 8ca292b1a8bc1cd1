"""The inference API: load a checkpoint, stream tokens. The CLI and the TUI talk only to this.

Streams are plain Python generators: the consumer takes tokens as they are produced and stops the
work at any moment by not asking for more (or by setting the ``cancel`` event from another thread,
which is checked between tokens).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from chatrnn import checkpoint as ckpt
from chatrnn.charvocab import CharVocab
from chatrnn.checkpoint_schema import check_weights_fit
from chatrnn.errors import ChatrnnError
from chatrnn.models.charlm import CharLM, CharLMConfig
from chatrnn.models.fast import LeanStepper
from chatrnn.models.sampling import draw, next_token_probs, top_candidates

if TYPE_CHECKING:
    from chatrnn.adapt import AdaptResult, AdaptSettings
    from chatrnn.probe import Trace

_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 1


@contextmanager
def single_thread(enabled: bool = True):
    """Batch-1 matrix-vector products run faster on one thread than split across cores (the split
    costs more than it saves at this size), so sampling on the CPU runs single-threaded.

    torch's thread count is process-wide and streams may overlap (the TUI's two tabs), so the first
    stream in saves the setting and the last one out restores it."""
    global _threads_users, _threads_before
    if not enabled:
        yield
        return
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)


@dataclass
class GenToken:
    """One produced character, and (when asked for) the most likely candidates at that step and the
    network's state after reading the character (``stream(probe=True)``: "h", "c" and the gates,
    each a (layers, hidden) float32 array; see ``chatrnn/probe.py``)."""

    text: str
    candidates: list[tuple[str, float]] = field(default_factory=list)
    probe: dict[str, np.ndarray] | None = None


class Generator:
    """Sampling from a char LM checkpoint, one character at a time."""

    def __init__(self, model: CharLM, vocab: CharVocab, config: dict | None = None, folder: Path | None = None):
        self.model = model.eval()
        self.vocab = vocab
        self.config = config or {}
        self.folder = folder
        self.device = next(model.parameters()).device
        self._lean = model.cfg.cell == "lstm" and self.device.type == "cpu"

    @classmethod
    def load(cls, name: str | Path | None = None, device: str | torch.device = "cpu") -> Generator:
        folder = ckpt.resolve_checkpoint(name, "charlm")
        cfg = ckpt.read_config(folder, "charlm")  # schema-checked: types and ranges
        model_cfg = CharLMConfig.from_dict(cfg["model"])
        check_weights_fit(folder / ckpt.BEST_WEIGHTS, lambda: CharLM(model_cfg))  # before any allocation
        weights = ckpt.load_weights(folder)
        try:
            model = CharLM(model_cfg)
            model.load_state_dict(weights)
            vocab = CharVocab(cfg["vocab"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ChatrnnError(
                f"{folder} does not hold a usable char model ({e.__class__.__name__}: {str(e).splitlines()[0][:100]})"
            ) from None
        return cls(model.to(device), vocab, cfg, folder)

    def prepare_seed(self, seed: str) -> tuple[list[int], list[str]]:
        """Ids of the seed's known characters, and the unknown ones (the caller reports them)."""
        return self.vocab.split_known(seed)

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
        probe: bool = False,
    ) -> Iterator[GenToken]:
        """Characters that continue ``seed``; unknown seed characters are skipped (see ``prepare_seed``).

        With no usable seed the model starts from a newline if it knows one (a natural "start of
        text" in most corpora), else from its first character. ``probe``: each token carries the
        states and gates after the model read it (``GenToken.probe``), for every cell type.
        """
        ids, _ = self.prepare_seed(seed)
        if not ids:
            ids = [self.vocab.index.get("\n", 0)]
        gen = torch.Generator().manual_seed(rng_seed) if rng_seed is not None else None
        if probe:
            yield from self._stream_probed(ids, length, temperature, top_k, top_p, gen, candidates, cancel)
            return
        with single_thread(self._lean):  # for the whole stream: restored when it ends or is closed
            step = self._stepper(ids)
            logits = step(None)
            chars = self.vocab.chars
            for _ in range(length):
                if cancel is not None and cancel.is_set():
                    return
                probs = next_token_probs(logits if self._lean else logits.float().cpu(), temperature, top_k, top_p)
                nxt = int(torch.argmax(probs).item()) if temperature <= 0 else draw(probs, gen)
                cands = [(chars[i], p) for i, p in top_candidates(probs, candidates)] if candidates else []
                yield GenToken(chars[nxt], cands)
                logits = step(nxt)

    def _stream_probed(self, ids, length, temperature, top_k, top_p, gen, candidates, cancel) -> Iterator[GenToken]:
        """``stream`` through ``probe.ProbeStepper``: the same sampling, and the character is read
        before its token is yielded, so the token carries the state that character produced (the
        plain path reads it after; both make one step per character)."""
        from chatrnn.probe import ProbeStepper

        cpu = self.device.type == "cpu"
        with single_thread(cpu):
            stepper = ProbeStepper(self.model)
            for i in ids:
                logits = stepper.step_tensor(i)
            chars = self.vocab.chars
            for _ in range(length):
                if cancel is not None and cancel.is_set():
                    return
                probs = next_token_probs(logits if cpu else logits.cpu(), temperature, top_k, top_p)
                nxt = int(torch.argmax(probs).item()) if temperature <= 0 else draw(probs, gen)
                cands = [(chars[i], p) for i, p in top_candidates(probs, candidates)] if candidates else []
                logits = stepper.step_tensor(nxt)
                yield GenToken(chars[nxt], cands, stepper.snapshot())

    def trace(self, text: str, keep_gates: bool = True) -> Trace:
        """Every state and gate of the model for ``text`` (unknown characters dropped): see ``probe.Trace``."""
        from chatrnn.probe import trace_text

        return trace_text(self.model, self.vocab, text, keep_gates=keep_gates)

    def _stepper(self, prime: list[int]):
        """A function ``f(id | None) -> logits``: primes on ``prime`` first, then feeds one id a call."""
        if self._lean:
            lean = LeanStepper(self.model)
            for i in prime[:-1]:
                lean.step(i)
            last = prime[-1]

            def lean_step(i: int | None) -> torch.Tensor:
                return lean.step(last if i is None else i)

            return lean_step
        model, dev = self.model, self.device
        state = None
        with torch.inference_mode():
            if len(prime) > 1:
                _, _, state = model(torch.tensor([prime[:-1]], device=dev))
        holder = {"state": state, "last": prime[-1]}

        def module_step(i: int | None) -> torch.Tensor:
            x = torch.tensor([[holder["last"] if i is None else i]], device=dev)
            with torch.inference_mode():
                logits, _, holder["state"] = model(x, holder["state"])
            return logits[0, -1]

        return module_step

    def generate(self, seed: str = "", **kw) -> str:
        return "".join(t.text for t in self.stream(seed, **kw))

    # ----- dynamic evaluation (chatrnn/adapt.py) -----------------------------------------------
    def adapt(
        self,
        path: str | Path,
        settings: AdaptSettings | None = None,
        stats_file: str | Path | None = None,
        cancel: threading.Event | None = None,
        progress=None,
    ) -> AdaptResult:
        """Let the model learn the text at ``path`` (dynamic evaluation), then sample with the
        adapted weights. Only this object changes, never the checkpoint on disk
        (:meth:`save_adapted` writes a new one).

        A copy of the trained weights is adapted and swapped in when done, so a stream running
        meanwhile keeps the weights it started with, and a cancelled run changes nothing. Every
        call starts again from the trained weights. The result has the file's static and adapted
        losses; with no training text at hand, the gradient statistics come from the file itself
        (acceptable here: nothing is reported as a held-out score)."""
        import copy

        from chatrnn.adapt import AdaptSettings, adapt, stats_for, text_ids
        from chatrnn.train.charlm_task import evaluate_stream

        s = (settings or AdaptSettings()).check()
        trained = getattr(self, "_trained", None) or self.model
        data = text_ids(path, self.vocab)
        base = Generator(trained, self.vocab, self.config, self.folder)
        stats, source = stats_for(base, s, stats_file, fallback=data)
        model = copy.deepcopy(trained)
        result = adapt(model, data, s, stats, cancel=cancel, progress=progress)
        result.stats_source = source
        if result.cancelled:
            return result
        rows = max(1, min(32, len(data) // 512))
        result.loss_static = evaluate_stream(trained, data, self.device, rows=rows, seq_len=256)["loss"]
        self._trained = trained
        self.model = model.eval()
        self.adapted = {
            "file": str(path),
            "chars": result.chars,
            "loss_static": result.loss_static,
            "loss": result.loss,
            "settings": s.to_dict(),
            "stats": source,
        }
        return result

    @staticmethod
    def check_adapted_target(out: str | Path) -> None:
        out = Path(out).expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ChatrnnError(f"{out} already exists and is not empty; give a new folder for the adapted checkpoint")

    def save_adapted(self, out: str | Path) -> Path:
        """The adapted weights as a new checkpoint folder ``out`` (config and weights; no training
        state: it is not meant to be resumed). Refuses an existing, non-empty ``out``."""
        out = Path(out).expanduser()
        if getattr(self, "adapted", None) is None:
            raise ChatrnnError("nothing to save: adapt to a file first")
        self.check_adapted_target(out)
        cfg = {**self.config, "adapted": {**self.adapted, "from": str(self.folder)}}
        with ckpt.update_checkpoint(out) as stage:
            stage.save_tensors(ckpt.BEST_WEIGHTS, self.model.state_dict())
            stage.save_json(ckpt.CONFIG, cfg)
        return out
