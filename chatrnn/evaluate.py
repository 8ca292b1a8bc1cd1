"""Scoring a checkpoint on any text: the figures ``chatrnn eval`` prints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from chatrnn import checkpoint as ckpt
from chatrnn.corpus.text import collect_sources, encode_corpus
from chatrnn.device import pick_device
from chatrnn.errors import ChatrnnError
from chatrnn.infer import Generator
from chatrnn.train.charlm_task import evaluate_stream, metrics_from_loss

if TYPE_CHECKING:
    from chatrnn.adapt import AdaptSettings


def evaluate_charlm_file(
    checkpoint: str | Path | None,
    file: str | Path,
    encoding: str = "utf-8",
    device: str | None = None,
    adapt: AdaptSettings | None = None,
    adapt_stats: str | Path | None = None,
) -> dict:
    """Loss (nats/char), perplexity, bits/char on ``file``; characters the model never saw are
    dropped and counted (they have no probability to score).

    With ``adapt`` the figures are dynamic evaluation's (``chatrnn.adapt``) and the static ones
    move to ``*_static``: the static figure is the very one a plain ``eval`` prints."""
    dev = pick_device(device)
    gen = Generator.load(checkpoint, device=dev)
    sources = collect_sources([file])
    full = encode_corpus(sources, encoding)
    known = encode_corpus(sources, encoding, vocab=gen.vocab) if full.vocab.chars != gen.vocab.chars else full
    if len(known) < 2:
        raise ChatrnnError(f"{file} has no characters this model knows")
    rows = max(1, min(32, len(known) // 512))
    m = evaluate_stream(gen.model, known.data, dev, rows=rows, seq_len=256)
    m["unknown_chars"] = int(len(full) - len(known)) if full is not known else 0
    m["checkpoint"] = str(gen.folder)
    if adapt is not None:
        m = _adapted_metrics(gen, known.data, m, adapt, adapt_stats)
    return m


def _adapted_metrics(gen: Generator, data, static: dict, s: AdaptSettings, stats_file) -> dict:
    from chatrnn.adapt import adapt, stats_for

    stats, source = stats_for(gen, s.check(), stats_file)  # never from the scored text itself
    r = adapt(gen.model, data, s, stats)
    out = {k: v for k, v in static.items() if k not in ("loss", "perplexity", "bpc")}
    out.update(metrics_from_loss(r.loss, r.chars))
    for k in ("loss", "perplexity", "bpc"):
        out[f"{k}_static"] = static[k]
    out["adapt"] = {**s.to_dict(), "stats": source, "seconds": round(r.seconds, 2)}
    return out


def checkpoint_kind(checkpoint: str | Path | None, default: str = "charlm") -> str:
    folder = ckpt.resolve_checkpoint(checkpoint, default)
    return ckpt.read_config(folder)["kind"]


def checkpoint_summary(checkpoint: str | Path | None, kind: str | None = None) -> dict:
    """What ``chatrnn info`` shows: kind, parameter count, config, best val loss, corpus, time."""
    folder = ckpt.resolve_checkpoint(checkpoint, kind or "charlm")
    cfg = ckpt.read_config(folder)
    weights = ckpt.load_weights(folder)
    seen: set[int] = set()
    params = 0
    for t in weights.values():
        key = t.untyped_storage().data_ptr() if isinstance(t, torch.Tensor) else id(t)
        if key not in seen:
            seen.add(key)
            params += t.numel()
    if cfg.get("model", {}).get("tie_weights") and "head.weight" in weights:
        params -= weights["head.weight"].numel()  # stored twice, trained once
    training = cfg.get("training", {})
    return {
        "path": str(folder),
        "kind": cfg["kind"],
        "parameters": params,
        "model": cfg.get("model", {}),
        "best_val_loss": training.get("best_val_loss"),
        "training": training,
        "corpus": cfg.get("corpus", {}),
        "vocab_size": cfg.get("model", {}).get("vocab_size"),
        "format_version": cfg.get("format_version"),
        "chatrnn_version": cfg.get("chatrnn_version"),
    }
