"""Presets: model shape and batch settings that suit a machine, overridable flag by flag.

The CPU preset is the default: it was chosen by ``benchmarks/charlm_shakespeare.py`` for the best
validation loss on a 2-core CPU in a few minutes. The GPU presets use a GPU's width (see issue 5).
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


# Optimiser settings a preset may choose (the user's flag wins), and their values for presets without them.
TRAIN_DEFAULTS = {"weight_decay": 0.01, "ema": 0.0}


def fill_train_defaults(train, preset: dict) -> None:
    """Fill the TrainConfig settings the user left unset (None) from the preset, else the defaults."""
    for key, default in TRAIN_DEFAULTS.items():
        if getattr(train, key) is None:
            setattr(train, key, preset.get(key, default))


CHARLM_PRESETS: dict[str, dict] = {
    # name: model shape + batch shape + learning rate (+ weight_decay, ema: see TRAIN_DEFAULTS).
    # On a CPU the number of *updates* a run gets matters more than anything: the per-character
    # cost of an LSTM step is flat in the batch size (the matrix products are compute-bound), so
    # small batches of short windows buy more updates for the same time (until weight averaging
    # and weight decay made batch 32 pay off in 10-minute runs: below). Measured on Tiny
    # Shakespeare (val = last 10%), same characters seen: B32xT128 reached 2.15 after 0.5 M chars
    # where B16xT64 reached 1.92; T32 with lr 6e-3 beat T64.
    # Skip connections (every layer feeds the head) were the largest gain: in 110 s on 2 cores,
    # 2x192 went from 1.541 to 1.505, and with them deeper, narrower stacks learn faster still:
    # 3x128 1.494, 4x112 1.485, 5x96 1.508. Dropout only slows a run this short (2x192: 1.555
    # with 0.1, 1.541 without). The train-val gap is mostly the val plays' shift.
    # cpu-large (runs of 5 minutes or more), 10 minutes: 4x224 dropout 0.25 1.445, 4x176 dropout
    # 0.2 1.438 (lr 8e-3: 1.435), 4x144 dropout 0.15 1.441; the old 2x384 without skip connections 1.499.
    # Weight averaging (ema) was the next large gain: the last weights of a run still jitter, and
    # their average scores better. Paired, in the same run: 10 min 4x176 weight decay 0.1, raw
    # 1.430 / averaged 1.409; with batch 32 (lr 1e-2) raw 1.399 / averaged 1.390; weight decay 0.2
    # 1.453 / 1.431; batch 64 (lr 1.2e-2, ema 0.996) 1.405 / 1.398; batch 32 with weight decay 0.01
    # 1.420 (averaged), so the decay matters there. In 110 s (cpu preset): 1.509 without, 1.494
    # with ema 0.998, and the average lets a higher lr pay: 8e-3 1.485; batch 32 1.494-1.499;
    # weight decay 0.1 did not help there (1.511; with ema 1.503). Figures from here on score
    # every val character (see charlm_task.evaluate_stream).
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
    # GPU (H100, 3-minute Tiny Shakespeare runs): 3x1024 with dropout 0.2 peaked at 1.498 then
    # overfitted hard (1M characters is ~30 steps an epoch); 3x768 with dropout 0.5 peaked at 1.462.
    "gpu": dict(cell="lstm", layers=3, hidden=768, embed=128, dropout=0.5, batch_size=64, seq_len=256, lr=2e-3),
    "gpu-small": dict(cell="lstm", layers=2, hidden=512, embed=64, dropout=0.1, batch_size=64, seq_len=256, lr=3e-3),
}


CHAT_PRESETS: dict[str, dict] = {
    # name: seq2seq shape + tokenizer + batch + optimisation. "cpu" is the default without a GPU,
    # chosen on ChatbotData for a 10-minute budget on a 2-core CPU (benchmarks/chat_chatbotdata.py;
    # the settings were compared at equal step counts): what matters there is how many epochs fit,
    # so it is one layer, a 128-wide tied embedding, a 2,000-piece vocabulary and no input feeding
    # (the reply then trains in one GRU call, ~1.6x faster a step). Label smoothing is what keeps
    # validation loss falling for 20 epochs (without it the best checkpoint comes after ~4 and
    # barely uses the prompt); light dropout on top. "gpu" is the full model (input feeding, two
    # layers, more dropout); "tiny" is for tests.
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
