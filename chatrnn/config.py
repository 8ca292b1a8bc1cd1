"""Presets: model shape and batch settings that suit a machine, overridable flag by flag.

A preset is one layer of a run's settings (``chatrnn.settings``: flag > checkpoint > preset >
default). The CPU presets were chosen by ``benchmarks/charlm_shakespeare.py`` and
``benchmarks/chat_chatbotdata.py`` on a 2-core CPU; the GPU presets use a GPU's width. The
measurements behind every value are in ``docs/presets.md``.
"""

from __future__ import annotations

from dataclasses import asdict, fields


class JsonConfig:
    """Mixin for the dataclasses stored in ``config.json``: keys this version does not know (from
    a newer chatrnn, or a removed setting) are ignored on load rather than failing it."""

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict | None):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in (d or {}).items() if k in names})


# The default layer of the settings that no preset sets (chatrnn.settings: flag > checkpoint > preset >
# default). The CLI shows them in --help; the training settings' defaults are TrainConfig's.
CHARLM_DEFAULTS: dict = {
    "corpus": (),  # the bundled chatterbot dialogs, flattened to text
    "lang": "english",
    "encoding": "utf-8",
    "val_fraction": 0.1,  # the tail of the corpus
    "val_file": None,
    "batch_size": 32,  # every preset sets these two; for checkpoints without them
    "seq_len": 128,
}
CHAT_DEFAULTS: dict = {
    "corpus": (),  # the bundled chatterbot dialogs for ``lang``
    "lang": "english",
    "fmt": None,  # detected from the file name
    "columns": None,
    "encoding": None,  # UTF-8 (with a BOM or not)
    "val_fraction": 0.1,  # every round(1/f)-th pair, in corpus order
    "val_file": None,
    "context_turns": 0,
    "tokenizer": "unigram",
    "vocab_size": 2000,  # every preset sets these four; for checkpoints without them
    "max_len": 32,
    "batch_size": 64,
    "label_smoothing": 0.1,
    "teacher_forcing": 1.0,
    "tf_decay": 1.0,  # teacher forcing ratio multiplied by this each epoch
    "tf_min": 0.0,
    "subword_sampling": 0.0,  # off; see docs/presets.md for what it does on ChatbotData
}


CHARLM_PRESETS: dict[str, dict] = {
    # name: model shape + batch shape + learning rate (+ weight_decay, ema; chatrnn.settings.TrainConfig's
    # defaults without them). Why these values: the measurements are in docs/presets.md.
    "tiny": dict(cell="lstm", layers=1, hidden=64, embed=16, dropout=0.0, batch_size=8, seq_len=32, lr=1e-2),
    "cpu": dict(
        cell="lstm",
        layers=4,
        hidden=112,
        embed=64,
        dropout=0.0,
        skip=True,
        batch_size=16,
        seq_len=32,
        lr=8e-3,
        ema=0.998,
    ),
    "cpu-large": dict(
        cell="lstm",
        layers=4,
        hidden=176,
        embed=64,
        dropout=0.2,
        skip=True,
        batch_size=32,
        seq_len=32,
        lr=1e-2,
        weight_decay=0.1,
        ema=0.998,
    ),
    "gpu": dict(cell="lstm", layers=3, hidden=768, embed=128, dropout=0.5, batch_size=64, seq_len=256, lr=2e-3),
    "gpu-small": dict(cell="lstm", layers=2, hidden=512, embed=64, dropout=0.1, batch_size=64, seq_len=256, lr=3e-3),
}


CHAT_PRESETS: dict[str, dict] = {
    # name: seq2seq shape + tokenizer + batch + optimisation. "cpu" is the default without a GPU, "gpu"
    # the full model, "tiny" is for tests; why these values: docs/presets.md.
    "tiny": dict(
        embed=32,
        hidden=64,
        layers=1,
        attention="general",
        dropout=0.0,
        tie_weights=True,
        vocab_size=300,
        max_len=48,
        batch_size=16,
        lr=1e-2,
        label_smoothing=0.0,
    ),
    "cpu": dict(
        embed=128,
        hidden=256,
        layers=1,
        attention="general",
        dropout=0.1,
        tie_weights=True,
        input_feeding=False,
        vocab_size=2000,
        max_len=32,
        batch_size=64,
        lr=8e-3,
        label_smoothing=0.1,
    ),
    "gpu": dict(
        embed=512,
        hidden=1024,
        layers=2,
        attention="general",
        dropout=0.2,
        tie_weights=True,
        input_feeding=True,
        vocab_size=8000,
        max_len=48,
        batch_size=256,
        lr=1e-3,
        label_smoothing=0.1,
    ),
}


def default_preset(device_type: str) -> str:
    return "gpu" if device_type == "cuda" else "cpu"
