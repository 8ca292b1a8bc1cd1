"""Library entry point for training the char LM: corpus -> vocabulary -> model -> trainer.

The CLI's ``chatrnn train charlm`` only parses flags into :class:`CharLMOptions` and calls
:func:`train_charlm`; tests and the combined ``chatrnn train`` call it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from chatrnn import checkpoint as ckpt
from chatrnn.config import CHARLM_PRESETS, default_preset, fill_train_defaults
from chatrnn.corpus.text import EncodedCorpus, TextSource, collect_sources, encode_corpus
from chatrnn.device import pick_device
from chatrnn.errors import ChatrnnError
from chatrnn.models.charlm import CharLM, CharLMConfig
from chatrnn.train.charlm_task import CharLMData, CharLMTask
from chatrnn.train.progress import Reporter
from chatrnn.train.trainer import TrainConfig, Trainer, TrainResult

MODEL_KEYS = ("cell", "layers", "hidden", "embed", "dropout", "tie_weights", "skip")


@dataclass
class CharLMOptions:
    out: Path
    corpus: list[str] = field(default_factory=list)  # empty: the bundled chatterbot dialogs
    lang: str = "english"
    encoding: str = "utf-8"
    val_fraction: float = 0.1
    val_file: str | None = None
    preset: str | None = None
    model: dict = field(default_factory=dict)  # overrides of MODEL_KEYS
    batch_size: int | None = None
    seq_len: int | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    lr_given: bool = False  # an explicit --lr beats the preset's
    device: str | None = None
    resume: bool = False
    sources: list[TextSource] | None = None  # text already prepared (``chatrnn train``: a dialog corpus flattened)


def corpus_sources(paths: list[str], lang: str) -> list[TextSource]:
    """Named files and folders, or the bundled chatterbot-corpus dialogs flattened to text."""
    if paths:
        return collect_sources(paths)
    from chatrnn.corpus.dialogs import bundled_conversations, conversations_to_text

    return [TextSource(f"chatterbot-corpus:{lang}", text=conversations_to_text(bundled_conversations(lang)))]


def load_data(opts: CharLMOptions, vocab_chars: list[str] | None = None) -> CharLMData:
    """Encode the corpus (cached) and split off validation: the tail, or a separate file."""
    sources = opts.sources or corpus_sources(opts.corpus, opts.lang)
    enc = encode_corpus(sources, opts.encoding)
    if vocab_chars is not None and enc.vocab.chars != list(vocab_chars):
        from chatrnn.charvocab import CharVocab

        enc = encode_corpus(sources, opts.encoding, vocab=CharVocab(vocab_chars))
    if opts.val_file:
        val: EncodedCorpus = encode_corpus(collect_sources([opts.val_file]), opts.encoding, vocab=enc.vocab)
        train_arr, val_arr = enc.data, val.data
    else:
        if not 0 < opts.val_fraction < 1:
            raise ChatrnnError("--val-fraction must be between 0 and 1")
        n_val = max(2, int(len(enc) * opts.val_fraction))
        if len(enc) - n_val < 64:
            raise ChatrnnError(f"corpus has only {len(enc)} characters; give at least a few thousand")
        train_arr, val_arr = enc.data[: len(enc) - n_val], enc.data[len(enc) - n_val :]
    return CharLMData(enc.vocab, train_arr, val_arr, enc.names)


LARGE_BUDGET_S = 300.0


def default_charlm_preset(device_type: str, max_time: float | None) -> str:
    """The preset when none is named. On a CPU the best model for a run depends on its length: in
    two minutes a small LSTM that sees the corpus several times wins; in ten, a wider one with
    dropout does (benchmarks/charlm_shakespeare.py). A run limited by steps or epochs gets the
    small one: its length in time is unknown."""
    if device_type == "cuda":
        return default_preset(device_type)
    return "cpu-large" if max_time is not None and max_time >= LARGE_BUDGET_S else "cpu"


def resolve_settings(opts: CharLMOptions, device: torch.device) -> tuple[dict, int, int, TrainConfig]:
    """Preset, then explicit flags: model dict (without vocab), batch size, seq len, train config."""
    name = opts.preset or default_charlm_preset(device.type, opts.train.max_time)
    if name not in CHARLM_PRESETS:
        raise ChatrnnError(f"unknown preset {name!r}; choose from {', '.join(CHARLM_PRESETS)}")
    p = dict(CHARLM_PRESETS[name])
    model = {k: p[k] for k in MODEL_KEYS if k in p}
    model.update({k: v for k, v in opts.model.items() if v is not None})
    train = TrainConfig.from_dict(opts.train.to_dict())
    if not opts.lr_given:
        train.lr = p["lr"]
    fill_train_defaults(train, p)
    return model, opts.batch_size or p["batch_size"], opts.seq_len or p["seq_len"], train


def build_charlm(opts: CharLMOptions, device: torch.device, dist=None) -> tuple[CharLMTask, TrainConfig]:
    """The task ready to train: fresh, or rebuilt from the checkpoint's config for ``--resume``."""
    if opts.resume:
        folder = ckpt.resolve_checkpoint(opts.out, "charlm")
        saved = ckpt.read_config(folder, "charlm")
        cfg = CharLMConfig.from_dict(saved["model"])
        data = load_data(opts, vocab_chars=saved["vocab"])
        stored = ckpt.load_train_state(folder)
        train = TrainConfig.from_dict({**stored.get("train_config", {}), **_explicit_limits(opts.train)})
        batch_size = opts.batch_size or saved.get("batch", {}).get("batch_size", 32)
        seq_len = opts.seq_len or saved.get("batch", {}).get("seq_len", 128)
    else:
        model_d, batch_size, seq_len, train = resolve_settings(opts, device)
        data = load_data(opts)
        cfg = CharLMConfig(vocab_size=len(data.vocab), **model_d)
    if dist is not None and dist.initialized:  # every rank read the corpus itself: it must be the same text
        dist.check_same(
            "the corpus", f"{data.vocab.chars!r} {len(data.train)} {len(data.val)}".encode("utf-8", "surrogatepass")
        )
    torch.manual_seed(train.seed)
    model = CharLM(cfg).to(device)
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    if world > 1:
        if batch_size % world:
            raise ChatrnnError(f"batch size {batch_size} does not split over {world} ranks")
        batch_size //= world  # --batch-size and the presets give the global batch
    return CharLMTask(model, data, batch_size, seq_len, device, rank=rank, world=world), train


def _explicit_limits(train: TrainConfig) -> dict:
    """On resume, limits typed on the command line extend or shorten the stored run."""
    return {
        k: v for k, v in (("max_steps", train.max_steps), ("epochs", train.epochs), ("max_time", train.max_time)) if v
    }


def train_charlm(opts: CharLMOptions, reporter: Reporter | None = None, stop_check=None, dist=None) -> TrainResult:
    device = pick_device(opts.device) if dist is None else dist.device
    task, train = build_charlm(opts, device, dist)
    train_model = dist.wrap(task.model) if dist is not None else None
    trainer = Trainer(
        task,
        train,
        opts.out,
        device,
        reporter=reporter,
        resume=opts.resume,
        dist=dist,
        stop_check=stop_check,
        train_model=train_model,
    )
    return trainer.run()
