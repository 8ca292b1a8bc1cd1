"""Library entry point for training the chat model: dialogs -> pairs -> tokenizer -> model -> trainer.

The CLI's ``chatrnn train chat`` only turns the flags the user typed into :class:`ChatOptions` and
calls :func:`train_chat`; tests, the benchmark and the combined ``chatrnn train`` call it directly.
:func:`resolve_chat` decides every setting once (``chatrnn.settings``: flag > checkpoint > preset >
default); everything after it reads the frozen :class:`ChatSettings`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from chatrnn import checkpoint as ckpt
from chatrnn.checkpoint_schema import check_weights_fit
from chatrnn.config import CHAT_DEFAULTS, CHAT_PRESETS, default_preset
from chatrnn.corpus.dialogs import Pair, ReadReport, load_pairs
from chatrnn.corpus.locate import data_section
from chatrnn.device import pick_device
from chatrnn.errors import ChatrnnError
from chatrnn.models.seq2seq import Seq2Seq, Seq2SeqConfig
from chatrnn.settings import (
    NOT_GIVEN,
    TRAIN_KEYS,
    Resolved,
    Source,
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
from chatrnn.subword import MIN_COVERAGE, N_META, SubwordTokenizer
from chatrnn.train.chat_task import ChatData, ChatTask, Example, join_source
from chatrnn.train.progress import Reporter
from chatrnn.train.trainer import Trainer, TrainResult

MODEL_KEYS = ("embed", "hidden", "layers", "attention", "dropout", "tie_weights", "input_feeding", "word_dropout")
TOKENIZER_FILE = "tokenizer.model"
DATA_KEYS = ("corpus", "lang", "fmt", "columns", "encoding", "val_fraction", "val_file", "context_turns")
# Settings the trained weights or tokenizer are built on: on --resume they come from the checkpoint.
SHAPE_KEYS = (*MODEL_KEYS, "max_len", "max_src_len", "vocab_size", "tokenizer")
CHAT_TRAIN_KEYS = ("label_smoothing", "teacher_forcing", "tf_decay", "tf_min", "subword_sampling")


@dataclass(frozen=True)
class ChatOptions:
    """What the caller chose. A field left at ``NOT_GIVEN`` (or a key absent from ``model`` /
    ``train``) is decided by the checkpoint, the preset or the default: see :func:`resolve_chat`."""

    out: Path
    corpus: Any = NOT_GIVEN
    lang: Any = NOT_GIVEN
    fmt: Any = NOT_GIVEN
    columns: Any = NOT_GIVEN
    encoding: Any = NOT_GIVEN
    val_fraction: Any = NOT_GIVEN
    val_file: Any = NOT_GIVEN
    context_turns: Any = NOT_GIVEN
    max_len: Any = NOT_GIVEN  # prompt and reply tokens; longer pairs are dropped
    max_src_len: Any = NOT_GIVEN  # encoder tokens incl. context (default: max_len * (1 + context_turns), <= 256)
    vocab_size: Any = NOT_GIVEN  # given: exactly this size; else the preset's, capped for small corpora
    tokenizer: Any = NOT_GIVEN
    batch_size: Any = NOT_GIVEN
    label_smoothing: Any = NOT_GIVEN
    teacher_forcing: Any = NOT_GIVEN
    tf_decay: Any = NOT_GIVEN
    tf_min: Any = NOT_GIVEN
    subword_sampling: Any = NOT_GIVEN  # alpha of subword regularisation of the prompts (0: off)
    preset: Any = NOT_GIVEN
    model: Mapping[str, Any] = field(default_factory=dict)  # some of MODEL_KEYS
    train: Mapping[str, Any] = field(default_factory=dict)  # some of TrainConfig's fields
    device: str | None = None
    resume: bool = False
    overwrite: bool = False  # replace a checkpoint already in ``out`` (see train/output.py)
    allow_corpus_change: bool = False  # ``resume`` on other dialogs: warn and restart "best"

    def given(self) -> dict[str, Any]:
        """Every setting the caller chose, under one flat namespace (the names ``--dry-run`` shows)."""
        check_known(self.model, MODEL_KEYS, "chat model")
        check_known(self.train, TRAIN_KEYS, "training")
        names = (*DATA_KEYS, "max_len", "max_src_len", "vocab_size", "tokenizer", "batch_size", *CHAT_TRAIN_KEYS)
        out = {k: getattr(self, k) for k in (*names, "preset") if getattr(self, k) is not NOT_GIVEN}
        if "corpus" in out:
            out["corpus"] = tuple(out["corpus"])
        if out.get("columns") is not None:
            out["columns"] = tuple(out["columns"])
        return {**out, **self.model, **self.train}


@dataclass(frozen=True)
class ChatSettings:
    """A chat model run's settings, resolved (see :func:`resolve_chat`)."""

    out: Path
    device: str | None
    resume_from: Path | None  # the checkpoint folder of ``--resume``
    preset: str
    corpus: tuple[str, ...]
    lang: str
    fmt: str | None
    columns: tuple[str, str] | None
    encoding: str | None
    val_fraction: float
    val_file: str | None
    context_turns: int
    max_len: int
    max_src_len: int
    vocab_size: int
    vocab_exact: bool  # a typed --vocab-size is taken as is; the preset's is capped for small corpora
    tokenizer: str
    model: Mapping[str, Any]  # MODEL_KEYS
    batch_size: int  # global, over all ranks
    label_smoothing: float
    teacher_forcing: float
    tf_decay: float
    tf_min: float
    subword_sampling: float
    train: TrainConfig
    resolved: Resolved  # every value and where it came from (``--dry-run``)


def auto_vocab_size(texts: list[str], requested: int) -> int:
    """A vocabulary a small corpus can fill: every character plus ~4·sqrt(characters) pieces.

    A 1,000-pair corpus cannot train embeddings for 4,000 pieces (most would be seen once); the
    cap grows with the corpus, so a large one gets the preset's size.
    """
    counts = Counter("".join(texts))
    chars = sum(counts.values())
    distinct = len(counts)
    # sentencepiece refuses a vocabulary smaller than the characters that make up its minimum coverage
    # (a Korean corpus has hundreds), however few pieces the budget asks for: never plan below that.
    covered, needed = 0, 0
    for _, n in counts.most_common():
        if covered >= MIN_COVERAGE * chars:
            break
        covered, needed = covered + n, needed + 1
    floor = max(SubwordTokenizer.MIN_VOCAB, N_META + needed + 16)
    return max(floor, min(requested, N_META + distinct + int(4 * math.sqrt(chars))))


def _split(pairs: list[Pair], val_fraction: float) -> tuple[list[Pair], list[Pair]]:
    """Every k-th pair (k = round(1/f)) to validation: interleaved, so a corpus sorted by topic
    (ChatbotData is) validates on every topic, and the split is fixed across runs."""
    if not 0 < val_fraction < 1:
        raise ChatrnnError("--val-fraction must be between 0 and 1")
    k = max(2, round(1 / val_fraction))
    if len(pairs) < 2:
        raise ChatrnnError(f"only {len(pairs)} usable pair; give a corpus with more dialog")
    val = [p for i, p in enumerate(pairs) if i % k == k - 1] or [pairs[-1]]
    train = [p for i, p in enumerate(pairs) if i % k != k - 1] if len(val) > 1 or len(pairs) >= k else pairs[:-1]
    return train, val


def _examples(
    pairs: list[Pair], tok: SubwordTokenizer, max_len: int, max_src_len: int, report: ReadReport | None
) -> list[Example]:
    """Tokenize; pairs whose prompt or reply exceeds ``max_len`` tokens are dropped (and counted)."""
    cache: dict[str, list[int]] = {}

    def enc(t: str) -> list[int]:
        if t not in cache:
            cache[t] = tok.encode(t)
        return cache[t]

    out = []
    for p in pairs:
        prompt, reply = enc(p.prompt), enc(p.reply)
        if not prompt or not reply:
            if report is not None:
                report.drop("empty after tokenizing")
            continue
        if len(prompt) > max_len or len(reply) > max_len:
            if report is not None:
                report.drop(f"longer than {max_len} tokens")
            continue
        src = join_source([enc(turn) for turn in p.context], prompt, tok.SEP, max_src_len)
        out.append(Example(src, reply, len(tok.normalize(p.reply)) + 1, (*p.context, p.prompt)))
    return out


def _model_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(Seq2SeqConfig) if f.name in MODEL_KEYS}


def _stored(folder: Path) -> dict[str, Any]:
    """The checkpoint layer: the settings the resumed run was trained with."""
    saved = ckpt.read_config(folder, "chat")
    model = saved.get("model", {})
    stored = {k: v for k, v in model.items() if k in MODEL_KEYS}
    data = saved.get("data", {})
    stored.update({k: v for k, v in data.items() if k in DATA_KEYS})
    if "corpus" in stored:
        stored["corpus"] = tuple(stored["corpus"])
    if stored.get("columns") is not None:
        stored["columns"] = tuple(stored["columns"])
    for key, value in (
        ("context_turns", saved.get("context_turns")),
        ("max_len", saved.get("max_len", model.get("max_tgt_len"))),
        ("max_src_len", model.get("max_src_len")),
        ("vocab_size", model.get("vocab_size")),
        ("tokenizer", saved.get("tokenizer", {}).get("type")),
        ("batch_size", saved.get("batch", {}).get("batch_size")),
    ):
        if value is not None:
            stored[key] = value
    stored.update({k: v for k, v in saved.get("chat_train", {}).items() if k in CHAT_TRAIN_KEYS})
    stored.update(stored_train_config(ckpt.load_train_state(folder).get("train_config")))
    return stored


def resolve_chat(opts: ChatOptions, device_type: str) -> ChatSettings:
    """Every setting of the run, decided once: flag > checkpoint (``--resume``) > preset > default.

    ``max_src_len`` defaults to what the prompt and its context turns need (``max_len`` per turn,
    at most 256); a typed ``--vocab-size`` is taken exactly, the preset's is capped for small corpora.
    """
    flags = opts.given()
    stored: dict[str, Any] = {}
    folder = None
    if opts.resume:
        folder = ckpt.resolve_checkpoint(opts.out, "chat")
        stored = _stored(folder)
        check_fixed_on_resume(flags, stored, SHAPE_KEYS)
    defaults = {**CHAT_DEFAULTS, **_model_defaults(), **train_defaults(flags, fresh=not opts.resume)}
    chosen = resolve_preset_name(flags, default_preset(device_type), CHAT_PRESETS)
    layers = dict(flags=flags, checkpoint=stored, preset=CHAT_PRESETS[chosen["preset"]])
    names = (*DATA_KEYS, "tokenizer", "vocab_size", "max_len", *MODEL_KEYS, "batch_size", *CHAT_TRAIN_KEYS)
    r = resolve(names, defaults=defaults, **layers)
    if r["context_turns"] < 0:
        raise ChatrnnError("--context-turns must be 0 or more")
    if not 0 <= r["teacher_forcing"] <= 1:
        raise ChatrnnError("--teacher-forcing must be between 0 and 1")
    if not 0 <= r["subword_sampling"] <= 1:
        raise ChatrnnError("--subword-sampling must be between 0 and 1")
    src = resolve(
        ["max_src_len"], defaults={"max_src_len": min(256, r["max_len"] * (1 + r["context_turns"]))}, **layers
    )
    r = merge(chosen, r, src, resolve(TRAIN_KEYS, defaults=defaults, **layers))
    return ChatSettings(
        out=Path(opts.out),
        device=opts.device,
        resume_from=folder,
        preset=r["preset"],
        corpus=tuple(r["corpus"]),
        lang=r["lang"],
        fmt=r["fmt"],
        columns=r["columns"],
        encoding=r["encoding"],
        val_fraction=r["val_fraction"],
        val_file=r["val_file"],
        context_turns=r["context_turns"],
        max_len=r["max_len"],
        max_src_len=r["max_src_len"],
        vocab_size=r["vocab_size"],
        vocab_exact=r.origin["vocab_size"] in (Source.FLAG, Source.CHECKPOINT),
        tokenizer=r["tokenizer"],
        model=frozen(r.pick(MODEL_KEYS)),
        batch_size=r["batch_size"],
        label_smoothing=r["label_smoothing"],
        teacher_forcing=r["teacher_forcing"],
        tf_decay=r["tf_decay"],
        tf_min=r["tf_min"],
        subword_sampling=r["subword_sampling"],
        train=r.train_config(),
        resolved=r,
    )


def _load_pairs(s: ChatSettings) -> tuple[list[Pair], list[Pair], ReadReport, ReadReport | None]:
    read = dict(fmt=s.fmt, columns=s.columns, encoding=s.encoding, lang=s.lang, context_turns=s.context_turns)
    pairs, report = load_pairs([Path(c) for c in s.corpus] or None, **read)
    if s.val_file:
        val, val_report = load_pairs([Path(s.val_file)], **read)
        return pairs, val, report, val_report
    train, val = _split(pairs, s.val_fraction)
    return train, val, report, None


def load_chat_data(s: ChatSettings, tokenizer: SubwordTokenizer | None = None) -> ChatData:
    """Read, split, train the tokenizer on the training split only (unless resuming), tokenize, filter."""
    train_pairs, val_pairs, report, val_report = _load_pairs(s)
    if tokenizer is None:
        texts = list(dict.fromkeys(t for p in train_pairs for t in (*p.context, p.prompt, p.reply)))
        size = s.vocab_size if s.vocab_exact else auto_vocab_size(texts, s.vocab_size)
        tokenizer = SubwordTokenizer.train(texts, size, s.tokenizer)
    train = _examples(train_pairs, tokenizer, s.max_len, s.max_src_len, report)
    val_kept = []
    val_ex = []
    for p in val_pairs:  # keep val pairs aligned with their examples (decoding needs the text)
        ex = _examples([p], tokenizer, s.max_len, s.max_src_len, val_report if val_report is not None else report)
        if ex:
            val_ex += ex
            val_kept.append(p)
    corpus = list(s.corpus)
    where = ", ".join(corpus) if corpus else f"the bundled {s.lang} corpus"
    if not train:
        raise ChatrnnError(f"no training pairs left in {where} after filtering: {report.summary().splitlines()[0]}")
    if not val_ex:
        raise ChatrnnError(
            f"no validation pairs left after filtering (longer than {s.max_len} tokens?); "
            "raise --max-len or give --val-file"
        )
    summary = {
        "sources": corpus[:20] if corpus else [f"chatterbot-corpus:{s.lang}"],
        "format": s.fmt,
        "read": report.read,
        "kept": report.kept,
        "dropped": dict(report.dropped),
        "malformed_examples": [f"{f}:{n}: {w}" for f, n, w in report.malformed_lines[:3]],
        "report": report.summary(),
        "digest": pairs_digest(train_pairs, val_pairs),
    }
    if val_report is not None:
        summary["val_file"] = s.val_file
        summary["val_report"] = val_report.summary()
    return ChatData(tokenizer, train, val_ex, summary, val_kept)


def build_chat_task(s: ChatSettings, device: torch.device, dist=None) -> ChatTask:
    """The task ready to train: a fresh model and tokenizer, or the checkpoint's for ``--resume``."""
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    if s.resume_from is not None:
        saved = ckpt.read_config(s.resume_from, "chat")
        try:
            cfg = Seq2SeqConfig.from_dict(saved["model"])
        except (KeyError, TypeError, ValueError) as e:
            raise ChatrnnError(f"{s.resume_from / ckpt.CONFIG} does not describe a chat model ({e})") from None
        check_weights_fit(s.resume_from / ckpt.LAST_WEIGHTS, lambda: Seq2Seq(cfg))  # before building it
        data = load_chat_data(s, tokenizer=SubwordTokenizer.load(s.resume_from / TOKENIZER_FILE))
        tok = data.tokenizer
    else:
        data = load_chat_data(s)
        tok = data.tokenizer
        try:
            cfg = Seq2SeqConfig(
                vocab_size=tok.vocab_size,
                pad_id=tok.PAD,
                unk_id=tok.UNK,
                bos_id=tok.BOS,
                eos_id=tok.EOS,
                sep_id=tok.SEP,
                max_src_len=s.max_src_len,
                max_tgt_len=s.max_len,
                **s.model,
            )
        except ValueError as e:
            raise ChatrnnError(str(e)) from None
    if dist is not None and dist.initialized:  # every rank built its own: they must be the same one
        dist.check_same("the tokenizer", tok.to_bytes())
    torch.manual_seed(s.train.seed)
    model = Seq2Seq(cfg).to(device)
    extra = {
        "tokenizer_type": s.tokenizer,
        "max_len": s.max_len,
        "data": data_section(
            s.corpus,
            s.val_file,
            fmt=s.fmt,
            columns=list(s.columns) if s.columns else None,
            encoding=s.encoding,
            lang=s.lang,
            val_fraction=s.val_fraction,
        ),
    }
    return ChatTask(
        model,
        data,
        per_rank_batch(s.batch_size, world),
        device,
        label_smoothing=s.label_smoothing,
        teacher_forcing=s.teacher_forcing,
        tf_decay=s.tf_decay,
        tf_min=s.tf_min,
        subword_sampling=s.subword_sampling,
        context_turns=s.context_turns,
        seed=s.train.seed,
        rank=rank,
        world=world,
        extra_config=extra,
    )


def build_chat(opts: ChatOptions, device: torch.device, dist=None) -> tuple[ChatTask, TrainConfig]:
    """Resolve the settings and build the task: what a training run (and its dry run) starts from."""
    s = resolve_chat(opts, device.type)
    return build_chat_task(s, device, dist), s.train


def pairs_digest(train: list[Pair], val: list[Pair]) -> str:
    """What "the same corpus" means to ``--resume``: the text of every training and validation pair
    (so the format, columns and split that produced them count too, not the files' bytes)."""
    import hashlib

    h = hashlib.sha256(b"chat-pairs-v1")
    for part, pairs in ((b"train", train), (b"val", val)):
        h.update(b"\x00" + part)
        for p in pairs:
            for text in (*p.context, "\x1e", p.prompt, p.reply):
                h.update(text.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()[:32]


def train_chat(opts: ChatOptions, reporter: Reporter | None = None, stop_check=None, dist=None) -> TrainResult:
    from chatrnn.train.output import claim_output, real_out

    device = pick_device(opts.device) if dist is None else dist.device
    out = real_out(opts.out)
    with claim_output(out, resume=opts.resume, overwrite=opts.overwrite, dist=dist) as fresh:
        task, train = build_chat(opts, device, dist)
        if reporter is not None and (dist is None or dist.is_main):
            reporter.message("corpus: " + task.data.summary["report"])
            if "val_report" in task.data.summary:
                reporter.message("validation file: " + task.data.summary["val_report"])
        train_model = dist.wrap(task.model) if dist is not None else None
        trainer = Trainer(
            task,
            train,
            out,
            device,
            reporter=reporter,
            resume=opts.resume,
            dist=dist,
            stop_check=stop_check,
            train_model=train_model,
            fresh=fresh,
            corpus_digest=task.data.summary.get("digest"),
            allow_corpus_change=opts.allow_corpus_change,
        )
        return trainer.run()
