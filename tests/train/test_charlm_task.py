"""Validation scoring: every character once, each with its context, however the stream is split."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from chatrnn.models.charlm import CharLM, CharLMConfig
from chatrnn.train.charlm_task import evaluate_stream

CPU = torch.device("cpu")


def _memoryless_model(vocab: int) -> CharLM:
    """A plain RNN with its recurrent weights zeroed: each prediction depends on the current input
    only, so any split of the stream that scores every character once gives the one-row figure."""
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=vocab, cell="rnn", hidden=8, embed=4, layers=1))
    with torch.no_grad():
        model.layers[0].weight_hh_l0.zero_()
    return model


def _reference_loss(model: CharLM, data: np.ndarray) -> float:
    """The whole stream in one forward call: the definition of the figure evaluate_stream estimates."""
    ids = torch.from_numpy(data.astype(np.int64))
    with torch.no_grad():
        logits, _, _ = model.eval()(ids[None, :-1])
    return float(torch.nn.functional.cross_entropy(logits[0], ids[1:]))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 700),
    rows=st.integers(1, 40),
    world=st.integers(1, 4),
    seq_len=st.integers(1, 64),
    burn_in=st.integers(0, 300),
)
def test_every_character_is_scored_once_whatever_the_split(n, rows, world, seq_len, burn_in):
    data = np.random.default_rng(n).integers(0, 7, n).astype(np.uint8)
    model = _memoryless_model(7)
    parts = [
        evaluate_stream(model, data, CPU, rows=rows, seq_len=seq_len, rank=r, world=world, burn_in=burn_in)
        for r in range(world)
    ]
    assert sum(p["chars"] for p in parts) == n - 1
    mean = sum(p["loss"] * p["chars"] for p in parts) / (n - 1)
    assert mean == pytest.approx(_reference_loss(model, data), rel=1e-5)


def _trained_lstm(data: np.ndarray, vocab: int) -> CharLM:
    """A small LSTM fitted to ``data`` for a few hundred steps: enough to lean on its memory."""
    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=vocab, hidden=32, embed=8, layers=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids = torch.from_numpy(data.astype(np.int64))
    starts = torch.arange(0, len(ids) - 65, 64)
    for _ in range(150):
        win = ids[starts[:, None] + torch.arange(65)]
        _, loss, _ = model(win[:, :-1], targets=win[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_rows_read_in_from_before_their_part_so_no_character_is_scored_cold():
    """A trained LSTM remembers: rows that start from a zero state score worse than one long read,
    and the burn-in closes that gap."""
    rng = np.random.default_rng(0)
    words = [rng.integers(0, 12, rng.integers(2, 6)) for _ in range(8)]
    data = np.concatenate([words[i] for i in rng.integers(0, 8, 900)]).astype(np.uint8)
    model = _trained_lstm(data, 12)
    one_row = _reference_loss(model, data)
    cold = evaluate_stream(model, data, CPU, rows=32, seq_len=16, burn_in=0)["loss"]
    warm = evaluate_stream(model, data, CPU, rows=32, seq_len=16, burn_in=40)["loss"]
    assert cold > one_row + 0.01
    assert warm == pytest.approx(one_row, abs=1e-3)
