"""Presets: model shape and batch settings that suit a machine, overridable flag by flag.

The CPU preset is the default: it was chosen by ``benchmarks/charlm_shakespeare.py`` for the best
validation loss on a 2-core CPU in a few minutes. The GPU presets use a GPU's width (see issue 5).
"""

from __future__ import annotations

CHARLM_PRESETS: dict[str, dict] = {
    # name: model shape + batch shape + learning rate
    "tiny": dict(cell="lstm", layers=1, hidden=64, embed=16, dropout=0.0, batch_size=8, seq_len=32, lr=1e-2),
    "cpu": dict(cell="lstm", layers=2, hidden=256, embed=64, dropout=0.0, batch_size=32, seq_len=128, lr=4e-3),
    "cpu-large": dict(cell="lstm", layers=2, hidden=512, embed=64, dropout=0.1, batch_size=32, seq_len=128, lr=3e-3),
    "gpu": dict(cell="lstm", layers=3, hidden=1024, embed=128, dropout=0.2, batch_size=128, seq_len=256, lr=2e-3),
    "gpu-small": dict(cell="lstm", layers=2, hidden=512, embed=64, dropout=0.1, batch_size=64, seq_len=256, lr=3e-3),
}


def default_preset(device_type: str) -> str:
    return "gpu" if device_type == "cuda" else "cpu"
