"""Library entry point for training the char LM: corpus -> vocabulary -> model -> trainer.

The CLI's ``chatrnn train charlm`` only turns the flags the user typed into :class:`CharLMOptions`
and calls :func:`train_charlm`; tests and the combined ``chatrnn train`` call it directly.
:func:`resolve_charlm` decides every setting once (``chatrnn.settings``: flag > checkpoint >
preset > default); everything after it reads the frozen :class:`CharLMSettings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from chatrnn import checkpoint as ckpt
from chatrnn.checkpoint_schema import check_weights_fit
from chatrnn.config import CHARLM_DEFAULTS, CHARLM_PRESETS, default_preset
from chatrnn.corpus.locate import data_section
from chatrnn.corpus.text import EncodedCorpus, TextSource, collect_sources, encode_corpus
from chatrnn.device import pick_device
from chatrnn.errors import ChatrnnError
from chatrnn.models.charlm import CharLM, CharLMConfig
from chatrnn.settings import (
    LIMIT_KEYS,
    NOT_GIVEN,
    TRAIN_KEYS,
    Resolved,
    TrainConfig,
    check_fixed_on_resume,
    check_known,
    frozen,
    merge,
    per_rank_batch,
    resolve,
    resolve_preset_name,
    stored_train_config,
    train_defaults,
)
from chatrnn.train.charlm_task import CharLMData, CharLMTask
from chatrnn.train.progress import Reporter
from chatrnn.train.trainer import Trainer, TrainResult

MODEL_KEYS = ("cell", "layers", "hidden", "embed", "dropout", "tie_weights", "skip")
DATA_KEYS = ("corpus", "lang", "encoding", "val_fraction", "val_file")
BATCH_KEYS = ("batch_size", "seq_len")


@dataclass(frozen=True)
class CharLMOptions:
    """What the caller chose. A field left at ``NOT_GIVEN`` (or a key absent from ``model`` /
    ``train``) is decided by the checkpoint, the preset or the default: see :func:`resolve_charlm`."""

    out: Path
    corpus: Any = NOT_GIVEN  # files and folders; empty: the bundled chatterbot dialogs
    lang: Any = NOT_GIVEN
    encoding: Any = NOT_GIVEN
    val_fraction: Any = NOT_GIVEN
    val_file: Any = NOT_GIVEN
    preset: Any = NOT_GIVEN
    batch_size: Any = NOT_GIVEN
    seq_len: Any = NOT_GIVEN
    model: Mapping[str, Any] = field(default_factory=dict)  # some of MODEL_KEYS
    train: Mapping[str, Any] = field(default_factory=dict)  # some of TrainConfig's fields
    device: str | None = None
    resume: bool = False
    sources: list[TextSource] | None = None  # text already prepared (``chatrnn train``: a dialog corpus flattened)
    overwrite: bool = False  # replace a checkpoint already in ``out`` (see train/output.py)
    allow_corpus_change: bool = False  # ``resume`` on another corpus: warn and restart "best"

    def given(self) -> dict[str, Any]:
        """Every setting the caller chose, under one flat namespace (the names ``--dry-run`` shows)."""
        check_known(self.model, MODEL_KEYS, "char LM model")
        check_known(self.train, TRAIN_KEYS, "training")
        top = {k: getattr(self, k) for k in (*DATA_KEYS, "preset", *BATCH_KEYS)}
        out = {k: v for k, v in top.items() if v is not NOT_GIVEN}
        if "corpus" in out:
            out["corpus"] = tuple(out["corpus"])
        return {**out, **self.model, **self.train}


@dataclass(frozen=True)
class CharLMSettings:
    """A char LM run's settings, resolved (see :func:`resolve_charlm`)."""

    out: Path
    device: str | None
    resume_from: Path | None  # the checkpoint folder of ``--resume``
    preset: str
    corpus: tuple[str, ...]
    lang: str
    encoding: str
    val_fraction: float
    val_file: str | None
    model: Mapping[str, Any]  # MODEL_KEYS (the vocabulary size comes from the data)
    batch_size: int  # global, over all ranks
    seq_len: int
    train: TrainConfig
    resolved: Resolved  # every value and where it came from (``--dry-run``)
    texts: tuple[TextSource, ...] | None = None


def corpus_sources(paths: list[str] | tuple[str, ...], lang: str) -> list[TextSource]:
    """Named files and folders, or the bundled chatterbot-corpus dialogs flattened to text."""
    if paths:
        return collect_sources(list(paths))
    from chatrnn.corpus.dialogs import bundled_conversations, conversations_to_text

    return [TextSource(f"chatterbot-corpus:{lang}", text=conversations_to_text(bundled_conversations(lang)))]


def load_data(s: CharLMSettings, vocab_chars: list[str] | None = None) -> CharLMData:
    """Encode the corpus (cached) and split off validation: the tail, or a separate file."""
    sources = list(s.texts) if s.texts else corpus_sources(s.corpus, s.lang)
    enc = encode_corpus(sources, s.encoding)
    if vocab_chars is not None and enc.vocab.chars != list(vocab_chars):
        from chatrnn.charvocab import CharVocab

        enc = encode_corpus(sources, s.encoding, vocab=CharVocab(vocab_chars))
    if s.val_file:
        val: EncodedCorpus = encode_corpus(collect_sources([s.val_file]), s.encoding, vocab=enc.vocab)
        train_arr, val_arr = enc.data, val.data
    else:
        if not 0 < s.val_fraction < 1:
            raise ChatrnnError("--val-fraction must be between 0 and 1")
        n_val = max(2, int(len(enc) * s.val_fraction))
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


def _model_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(CharLMConfig) if f.name in MODEL_KEYS}


def resolve_charlm(opts: CharLMOptions, device_type: str) -> CharLMSettings:
    """Every setting of the run, decided once: flag > checkpoint (``--resume``) > preset > default.

    The preset is itself a setting: typed, or chosen by the device and the run's ``max_time``
    (so the limits are resolved first; no preset sets a limit).
    """
    flags = opts.given()
    stored: dict[str, Any] = {}
    folder = None
    if opts.resume:
        folder = ckpt.resolve_checkpoint(opts.out, "charlm")
        saved = ckpt.read_config(folder, "charlm")
        stored = {k: v for k, v in saved.get("model", {}).items() if k in MODEL_KEYS}
        stored.update({k: v for k, v in saved.get("batch", {}).items() if k in BATCH_KEYS})
        stored.update(stored_train_config(ckpt.load_train_state(folder).get("train_config")))
        data = saved.get("data")
        if isinstance(data, dict):  # written since 0.1: where the text came from
            stored.update({k: v for k, v in data.items() if k in DATA_KEYS and v is not None})
            if isinstance(stored.get("corpus"), list):
                stored["corpus"] = tuple(stored["corpus"])
        check_fixed_on_resume(flags, stored, MODEL_KEYS)
    defaults = {**CHARLM_DEFAULTS, **_model_defaults(), **train_defaults(flags, fresh=not opts.resume)}
    limits = resolve(LIMIT_KEYS, flags=flags, checkpoint=stored, preset={}, defaults=defaults)
    chosen = resolve_preset_name(flags, default_charlm_preset(device_type, limits["max_time"]), CHARLM_PRESETS)
    r = merge(
        chosen,
        resolve(
            (*DATA_KEYS, *MODEL_KEYS, *BATCH_KEYS, *TRAIN_KEYS),
            flags=flags,
            checkpoint=stored,
            preset=CHARLM_PRESETS[chosen["preset"]],
            defaults=defaults,
        ),
    )
    return CharLMSettings(
        out=Path(opts.out),
        device=opts.device,
        resume_from=folder,
        preset=r["preset"],
        corpus=tuple(r["corpus"]),
        lang=r["lang"],
        encoding=r["encoding"],
        val_fraction=r["val_fraction"],
        val_file=r["val_file"],
        model=frozen(r.pick(MODEL_KEYS)),
        batch_size=r["batch_size"],
        seq_len=r["seq_len"],
        train=r.train_config(),
        resolved=r,
        texts=tuple(opts.sources) if opts.sources else None,
    )


def build_charlm_task(s: CharLMSettings, device: torch.device, dist=None) -> CharLMTask:
    """The task ready to train: a fresh model, or one shaped like the checkpoint for ``--resume``."""
    if s.resume_from is not None:
        saved = ckpt.read_config(s.resume_from, "charlm")
        cfg = CharLMConfig.from_dict(saved["model"])
        check_weights_fit(s.resume_from / ckpt.LAST_WEIGHTS, lambda: CharLM(cfg))  # before building it
        data = load_data(s, vocab_chars=saved["vocab"])
    else:
        data = load_data(s)
        cfg = CharLMConfig(vocab_size=len(data.vocab), **s.model)
    if dist is not None and dist.initialized:  # every rank read the corpus itself: it must be the same text
        dist.check_same(
            "the corpus", f"{data.vocab.chars!r} {len(data.train)} {len(data.val)}".encode("utf-8", "surrogatepass")
        )
    torch.manual_seed(s.train.seed)
    model = CharLM(cfg).to(device)
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    settings = None
    if s.texts is None:
        settings = data_section(s.corpus, s.val_file, lang=s.lang, encoding=s.encoding, val_fraction=s.val_fraction)
    return CharLMTask(
        model,
        data,
        per_rank_batch(s.batch_size, world),
        s.seq_len,
        device,
        rank=rank,
        world=world,
        data_settings=settings,
    )


def build_charlm(opts: CharLMOptions, device: torch.device, dist=None) -> tuple[CharLMTask, TrainConfig]:
    """Resolve the settings and build the task: what a training run (and its dry run) starts from."""
    s = resolve_charlm(opts, device.type)
    return build_charlm_task(s, device, dist), s.train


def corpus_digest(s: CharLMSettings) -> str:
    """What "the same corpus" means to ``--resume``: the text's content hash (the one the encoded
    cache is keyed by) and the validation split (a file's content, or the held-out fraction)."""
    import hashlib

    from chatrnn.corpus.text import _fingerprint

    sources = list(s.texts) if s.texts else corpus_sources(s.corpus, s.lang)
    val = _fingerprint(collect_sources([s.val_file]), s.encoding) if s.val_file else f"tail {s.val_fraction!r}"
    return hashlib.sha256(f"charlm|{_fingerprint(sources, s.encoding)}|{val}".encode()).hexdigest()[:32]


def train_charlm(opts: CharLMOptions, reporter: Reporter | None = None, stop_check=None, dist=None) -> TrainResult:
    from chatrnn.train.output import claim_output, real_out

    device = pick_device(opts.device) if dist is None else dist.device
    out = real_out(opts.out)
    with claim_output(out, resume=opts.resume, overwrite=opts.overwrite, dist=dist) as fresh:
        s = resolve_charlm(opts, device.type)
        task = build_charlm_task(s, device, dist)
        train_model = dist.wrap(task.model) if dist is not None else None
        trainer = Trainer(
            task,
            s.train,
            out,
            device,
            reporter=reporter,
            resume=opts.resume,
            dist=dist,
            stop_check=stop_check,
            train_model=train_model,
            fresh=fresh,
            corpus_digest=corpus_digest(s),
            allow_corpus_change=opts.allow_corpus_change,
        )
        return trainer.run()
