"""Decoding settings shared by the CLI, the TUI and the inference API (no torch here).

One dataclass per model kind, so a setting means the same thing wherever it is set: a flag, an
environment variable (``CHATRNN_TEMPERATURE``...), a slash command in the TUI, or a stored
conversation's settings.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace

from chatrnn.errors import ChatrnnError


@dataclass
class ReplySettings:
    """How the chat model decodes a reply. ``temperature`` 0 with ``beam`` 1 is greedy."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    beam: int = 1
    length_penalty: float = 0.6
    nbest: int = 1
    no_repeat_ngram: int = 3
    min_len: int = 1
    max_len: int = 40
    context_turns: int | None = None  # None: what the model was trained with
    rng_seed: int | None = None
    # Beam candidates reranked by maximum mutual information ("mmi", Li et al. 2016's MMI-antiLM:
    # log p(reply | prompt) - mmi_lambda * log p(reply), see infer_chat.Responder._mmi), or "none".
    rerank: str = "none"
    mmi_lambda: float = 0.5


RERANKERS = ("none", "mmi")


@dataclass
class GenerateSettings:
    """How the char LM samples."""

    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    length: int = 500
    rng_seed: int | None = None


_LIMITS = {
    "temperature": (0.0, 10.0),
    "top_k": (0, 100000),
    "top_p": (1e-6, 1.0),
    "beam": (1, 64),
    "length_penalty": (0.0, 5.0),
    "nbest": (1, 64),
    "no_repeat_ngram": (0, 20),
    "min_len": (0, 10000),
    "max_len": (1, 10000),
    "context_turns": (0, 64),
    "length": (0, 1000000),
    "mmi_lambda": (0.0, 5.0),
}


def set_value(settings, name: str, raw: str | float | int):
    """A copy of ``settings`` with field ``name`` parsed from ``raw`` and range-checked (for ``/temperature 0.7``).

    Only field names: short names (``/temp``) are the TUI's, resolved by its one alias table first.
    """
    names = {f.name: f for f in fields(settings)}
    key = name.lower().replace("-", "_")
    if key not in names:
        raise ChatrnnError(f"unknown setting {name!r}; settings: {', '.join(names)}")
    if key == "rerank":
        choice = str(raw).strip().lower() if raw not in (None, "") else "none"
        if choice not in RERANKERS:
            raise ChatrnnError(f"rerank must be one of {', '.join(RERANKERS)}, not {raw!r}")
        return replace(settings, rerank=choice)
    is_int = key in (
        "top_k",
        "beam",
        "nbest",
        "no_repeat_ngram",
        "min_len",
        "max_len",
        "context_turns",
        "length",
        "rng_seed",
    )
    try:
        value = (int(raw) if is_int else float(raw)) if raw not in (None, "", "none") else None
    except (TypeError, ValueError):
        raise ChatrnnError(f"{key} needs a {'whole ' if is_int else ''}number, not {raw!r}") from None
    if value is None and key not in ("context_turns", "rng_seed"):
        raise ChatrnnError(f"{key} needs a value")
    if value is not None and key in _LIMITS:
        lo, hi = _LIMITS[key]
        if not lo <= value <= hi:
            raise ChatrnnError(f"{key} must be between {lo:g} and {hi:g}")
    return replace(settings, **{key: value})


def from_env(settings, prefix: str = "CHATRNN_"):
    """Apply ``CHATRNN_<NAME>`` environment variables (e.g. ``CHATRNN_TEMPERATURE=0.7``)."""
    for f in fields(settings):
        raw = os.environ.get(prefix + f.name.upper())
        if raw is not None and raw != "":
            settings = set_value(settings, f.name, raw)
    return settings


def to_dict(settings) -> dict:
    return asdict(settings)


def from_dict(cls, d: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (d or {}).items() if k in names})
