"""Library entry point for training the chat model: dialogs -> pairs -> tokenizer -> model -> trainer.

The CLI's ``chatrnn train chat`` only parses flags into :class:`ChatOptions` and calls
:func:`train_chat`; tests, the benchmark and the combined ``chatrnn train`` call it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from chatrnn import checkpoint as ckpt
from chatrnn.config import CHAT_PRESETS, default_preset, fill_train_defaults
from chatrnn.corpus.dialogs import Pair, ReadReport, load_pairs
from chatrnn.device import pick_device
from chatrnn.errors import ChatrnnError
from chatrnn.models.seq2seq import Seq2Seq, Seq2SeqConfig
from chatrnn.subword import N_META, SubwordTokenizer
from chatrnn.train.chat_task import ChatData, ChatTask, Example
from chatrnn.train.progress import Reporter
from chatrnn.train.trainer import TrainConfig, Trainer, TrainResult

MODEL_KEYS = ("embed", "hidden", "layers", "attention", "dropout", "tie_weights", "input_feeding")
TOKENIZER_FILE = "tokenizer.model"


@dataclass
class ChatOptions:
    out: Path
    corpus: list[str] = field(default_factory=list)  # empty: the bundled chatterbot dialogs for ``lang``
    lang: str = "english"
    fmt: str | None = None
    columns: tuple[str, str] | None = None
    encoding: str | None = None
    val_fraction: float = 0.1  # every round(1/f)-th pair, in corpus order
    val_file: str | None = None
    context_turns: int = 0
    max_len: int | None = None  # prompt and reply tokens; longer pairs are dropped (preset's)
    max_src_len: int | None = None  # encoder tokens incl. context (default: max_len * (1 + context_turns), <= 256)
    vocab_size: int | None = None  # preset's, capped for small corpora unless given
    tokenizer: str = "unigram"
    model: dict = field(default_factory=dict)  # overrides of MODEL_KEYS
    batch_size: int | None = None
    label_smoothing: float | None = None
    teacher_forcing: float = 1.0
    tf_decay: float = 1.0  # teacher forcing ratio multiplied by this each epoch
    tf_min: float = 0.0
    train: TrainConfig = field(default_factory=TrainConfig)
    lr_given: bool = False
    device: str | None = None
    resume: bool = False
    preset: str | None = None


def auto_vocab_size(texts: list[str], requested: int) -> int:
    """A vocabulary a small corpus can fill: every character plus ~4·sqrt(characters) pieces.

    A 1,000-pair corpus cannot train embeddings for 4,000 pieces (most would be seen once); the
    cap grows with the corpus, so a large one gets the preset's size.
    """
    chars = sum(len(t) for t in texts)
    distinct = len(set("".join(texts)))
    return max(SubwordTokenizer.MIN_VOCAB, min(requested, N_META + distinct + int(4 * math.sqrt(chars))))


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
        src = prompt
        if p.context:
            ctx: list[int] = []
            for turn in p.context:
                ids = enc(turn)
                if ids:
                    ctx += ([tok.SEP] if ctx else []) + ids
            src = (ctx + [tok.SEP] + prompt)[-max_src_len:] if ctx else prompt
        out.append(Example(src, reply, len(tok.normalize(p.reply)) + 1))
    return out


def resolve_settings(opts: ChatOptions, device: torch.device) -> tuple[dict, dict]:
    """Preset, then explicit flags: (model overrides, other settings)."""
    name = opts.preset or default_preset(device.type)
    if name not in CHAT_PRESETS:
        raise ChatrnnError(f"unknown preset {name!r}; choose from {', '.join(CHAT_PRESETS)}")
    p = dict(CHAT_PRESETS[name])
    model = {k: p[k] for k in MODEL_KEYS if k in p}
    model.update({k: v for k, v in opts.model.items() if v is not None})
    other = {
        "vocab_size": opts.vocab_size or p["vocab_size"],
        "vocab_given": opts.vocab_size is not None,
        "max_len": opts.max_len or p["max_len"],
        "batch_size": opts.batch_size or p["batch_size"],
        "lr": p["lr"],
        "preset": p,
        "label_smoothing": p["label_smoothing"] if opts.label_smoothing is None else opts.label_smoothing,
    }
    return model, other


def _load_pairs(opts: ChatOptions, corpus: list[str]) -> tuple[list[Pair], list[Pair], ReadReport, ReadReport | None]:
    pairs, report = load_pairs(
        [Path(c) for c in corpus] or None,
        fmt=opts.fmt,
        columns=opts.columns,
        encoding=opts.encoding,
        lang=opts.lang,
        context_turns=opts.context_turns,
    )
    if opts.val_file:
        val, val_report = load_pairs(
            [Path(opts.val_file)],
            fmt=opts.fmt,
            columns=opts.columns,
            encoding=opts.encoding,
            lang=opts.lang,
            context_turns=opts.context_turns,
        )
        return pairs, val, report, val_report
    train, val = _split(pairs, opts.val_fraction)
    return train, val, report, None


def load_chat_data(
    opts: ChatOptions,
    corpus: list[str],
    max_len: int,
    max_src_len: int,
    vocab_size: int,
    vocab_given: bool,
    tokenizer: SubwordTokenizer | None = None,
) -> ChatData:
    """Read, split, train the tokenizer on the training split only (unless resuming), tokenize, filter."""
    train_pairs, val_pairs, report, val_report = _load_pairs(opts, corpus)
    if tokenizer is None:
        texts = list(dict.fromkeys(t for p in train_pairs for t in (*p.context, p.prompt, p.reply)))
        size = vocab_size if vocab_given else auto_vocab_size(texts, vocab_size)
        tokenizer = SubwordTokenizer.train(texts, size, opts.tokenizer)
    train = _examples(train_pairs, tokenizer, max_len, max_src_len, report)
    val_kept = []
    val_ex = []
    for p in val_pairs:  # keep val pairs aligned with their examples (decoding needs the text)
        ex = _examples([p], tokenizer, max_len, max_src_len, val_report if val_report is not None else report)
        if ex:
            val_ex += ex
            val_kept.append(p)
    where = ", ".join(corpus) if corpus else f"the bundled {opts.lang} corpus"
    if not train:
        raise ChatrnnError(f"no training pairs left in {where} after filtering: {report.summary().splitlines()[0]}")
    if not val_ex:
        raise ChatrnnError(
            f"no validation pairs left after filtering (longer than {max_len} tokens?); "
            "raise --max-len or give --val-file"
        )
    summary = {
        "sources": corpus[:20] if corpus else [f"chatterbot-corpus:{opts.lang}"],
        "format": opts.fmt,
        "read": report.read,
        "kept": report.kept,
        "dropped": dict(report.dropped),
        "malformed_examples": [f"{f}:{n}: {w}" for f, n, w in report.malformed_lines[:3]],
        "report": report.summary(),
    }
    if val_report is not None:
        summary["val_file"] = opts.val_file
        summary["val_report"] = val_report.summary()
    return ChatData(tokenizer, train, val_ex, summary, val_kept)


def build_chat(opts: ChatOptions, device: torch.device, dist=None) -> tuple[ChatTask, TrainConfig]:
    """The task ready to train: fresh, or rebuilt from the checkpoint's config for ``--resume``."""
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    if opts.resume:
        folder = ckpt.resolve_checkpoint(opts.out, "chat")
        saved = ckpt.read_config(folder, "chat")
        try:
            cfg = Seq2SeqConfig.from_dict(saved["model"])
        except (KeyError, TypeError, ValueError) as e:
            raise ChatrnnError(f"{folder / ckpt.CONFIG} does not describe a chat model ({e})") from None
        tok = SubwordTokenizer.load(folder / TOKENIZER_FILE)
        data_args = saved.get("data", {})
        corpus = list(opts.corpus) or list(data_args.get("corpus", []))
        for k in ("fmt", "columns", "encoding", "val_file", "lang"):
            if getattr(opts, k) in (None, "english") and data_args.get(k) is not None:
                setattr(opts, k, tuple(data_args[k]) if k == "columns" else data_args[k])
        opts.context_turns = int(saved.get("context_turns", opts.context_turns))
        if "val_fraction" in data_args:
            opts.val_fraction = data_args["val_fraction"]
        stored = ckpt.load_train_state(folder)
        train = TrainConfig.from_dict({**stored.get("train_config", {}), **_explicit_limits(opts.train)})
        batch_size = opts.batch_size or saved.get("batch", {}).get("batch_size", 64)
        ct = saved.get("chat_train", {})
        label_smoothing, tf = ct.get("label_smoothing", 0.1), ct.get("teacher_forcing", 1.0)
        tf_decay, tf_min = ct.get("tf_decay", 1.0), ct.get("tf_min", 0.0)
        max_len = saved.get("max_len", cfg.max_tgt_len)
        data = load_chat_data(opts, corpus, max_len, cfg.max_src_len, tok.vocab_size, True, tokenizer=tok)
        tokenizer_type = saved.get("tokenizer", {}).get("type", "unigram")
    else:
        model_d, other = resolve_settings(opts, device)
        train = TrainConfig.from_dict(opts.train.to_dict())
        if not opts.lr_given:
            train.lr = other["lr"]
        fill_train_defaults(train, other["preset"])
        max_len = other["max_len"]
        if opts.context_turns < 0:
            raise ChatrnnError("--context-turns must be 0 or more")
        max_src_len = opts.max_src_len or min(256, max_len * (1 + opts.context_turns))
        corpus = list(opts.corpus)
        data = load_chat_data(opts, corpus, max_len, max_src_len, other["vocab_size"], other["vocab_given"])
        tok = data.tokenizer
        try:
            cfg = Seq2SeqConfig(
                vocab_size=tok.vocab_size,
                pad_id=tok.PAD,
                bos_id=tok.BOS,
                eos_id=tok.EOS,
                sep_id=tok.SEP,
                max_src_len=max_src_len,
                max_tgt_len=max_len,
                **model_d,
            )
        except ValueError as e:
            raise ChatrnnError(str(e)) from None
        batch_size = other["batch_size"]
        label_smoothing, tf, tf_decay, tf_min = (
            other["label_smoothing"],
            opts.teacher_forcing,
            opts.tf_decay,
            opts.tf_min,
        )
        tokenizer_type = opts.tokenizer
    if not 0 <= tf <= 1:
        raise ChatrnnError("--teacher-forcing must be between 0 and 1")
    if dist is not None and dist.initialized:  # every rank built its own: they must be the same one
        dist.check_same("the tokenizer", tok.to_bytes())
    torch.manual_seed(train.seed)
    model = Seq2Seq(cfg).to(device)
    if world > 1:
        if batch_size % world:
            raise ChatrnnError(f"batch size {batch_size} does not split over {world} ranks")
        batch_size //= world  # --batch-size and the presets give the global batch
    extra = {
        "tokenizer_type": tokenizer_type,
        "max_len": max_len,
        "data": {
            "corpus": corpus,
            "fmt": opts.fmt,
            "columns": list(opts.columns) if opts.columns else None,
            "encoding": opts.encoding,
            "lang": opts.lang,
            "val_fraction": opts.val_fraction,
            "val_file": opts.val_file,
        },
    }
    task = ChatTask(
        model,
        data,
        batch_size,
        device,
        label_smoothing=label_smoothing,
        teacher_forcing=tf,
        tf_decay=tf_decay,
        tf_min=tf_min,
        context_turns=opts.context_turns,
        seed=train.seed,
        rank=rank,
        world=world,
        extra_config=extra,
    )
    return task, train


def _explicit_limits(train: TrainConfig) -> dict:
    """On resume, limits typed on the command line extend or shorten the stored run."""
    return {
        k: v for k, v in (("max_steps", train.max_steps), ("epochs", train.epochs), ("max_time", train.max_time)) if v
    }


def train_chat(opts: ChatOptions, reporter: Reporter | None = None, stop_check=None, dist=None) -> TrainResult:
    device = pick_device(opts.device) if dist is None else dist.device
    task, train = build_chat(opts, device, dist)
    if reporter is not None and (dist is None or dist.is_main):
        reporter.message("corpus: " + task.data.summary["report"])
        if "val_report" in task.data.summary:
            reporter.message("validation file: " + task.data.summary["val_report"])
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
