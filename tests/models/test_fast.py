"""Every fast path in ``chatrnn.models.fast`` matches the reference model it stands in for."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from chatrnn.charvocab import CharVocab
from chatrnn.infer import Generator
from chatrnn.models.charlm import CharLM, CharLMConfig
from chatrnn.models.fast import LeanStepper, decoder_step, gru_step
from chatrnn.models.seq2seq import Seq2Seq, Seq2SeqConfig, StackedGRU


def _perturbed_charlm(**kw) -> CharLM:
    torch.manual_seed(1)
    m = CharLM(CharLMConfig(vocab_size=13, hidden=24, embed=8, **kw)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # biases away from their init, so all paths matter
    return m


@pytest.mark.parametrize(
    "layers,tie,skip", [(1, False, False), (3, False, False), (2, True, False), (3, False, True), (2, True, True)]
)
def test_lean_stepper_gives_the_same_logits_as_forward(layers, tie, skip):
    m = _perturbed_charlm(layers=layers, tie_weights=tie, skip=skip)
    ids = torch.randint(0, 13, (40,))
    with torch.no_grad():
        ref, _, _ = m(ids[None])
    lean = LeanStepper(m)
    got = torch.stack([lean.step(int(i)).clone() for i in ids])
    assert torch.allclose(got, ref[0], atol=1e-5)
    lean.reset()
    assert torch.allclose(lean.step(int(ids[0])), ref[0, 0], atol=1e-5)


def test_generator_stream_greedy_equals_the_models_generate():
    """The streaming sampler (LeanStepper) and ``CharLM.generate`` (forward per character) pick the
    same characters at temperature 0."""
    m = _perturbed_charlm(layers=2, skip=True)
    vocab = CharVocab(list("abcdefghijklm"))
    gen = Generator(m, vocab)
    text = gen.generate("abc", length=30, temperature=0)
    ref = m.generate(torch.tensor([vocab.encode("abc")]), 30, temperature=0)[0, 3:]
    assert text == "".join(vocab.chars[i] for i in ref.tolist())


def _seq2seq(layers: int = 2, feed: bool = True) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(vocab_size=50, embed=12, hidden=16, layers=layers, dropout=0.0, input_feeding=feed)
    return Seq2Seq(cfg).eval()


@pytest.mark.parametrize("layers", [1, 2])
def test_gru_step_equals_nn_gru(layers):
    m = _seq2seq(layers)
    h = torch.randn(layers, 2, 16)
    x = torch.randn(2, 12 + 16)
    with torch.no_grad():
        _, ref = m.decoder.rnn(x.unsqueeze(1), h)
        torch.testing.assert_close(gru_step(m.decoder.rnn.layers, x, h), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layers,feed", [(1, True), (2, True), (2, False)])
def test_decoder_step_equals_the_decoder(layers, feed):
    m = _seq2seq(layers, feed)
    enc = m.encode(torch.tensor([[5, 6, 7]]), torch.tensor([3]))
    feed_in = torch.randn(1, 16)
    tok = torch.tensor([9])
    with torch.no_grad():
        ref_h, ref_hidden, ref_w = m.decoder(tok[:, None], enc.hidden, feed_in, enc)
        got_h, got_hidden, got_w = decoder_step(m.decoder, tok, enc.hidden, feed_in, enc)
        torch.testing.assert_close(got_h, ref_h[:, 0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_hidden, ref_hidden, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_w, ref_w[:, 0], atol=1e-5, rtol=1e-5)
        a = m.step(tok, enc.hidden, feed_in, enc, lean=False)
        b = m.step(tok, enc.hidden, feed_in, enc, lean=True)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_gru_recurrence_stays_float32_under_autocast():
    """CUDA autocast would run cuDNN GRUs in float16 (no loss scaling here); CPU bf16 checks the guard."""
    torch.manual_seed(0)
    g = StackedGRU(8, 6, 2, 0.0, bidirectional=True)
    x, lens = torch.randn(3, 5, 8), torch.tensor([5, 3, 2])
    ref, h_ref = g(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, h = g(pack_padded_sequence(x.bfloat16(), lens, batch_first=True, enforce_sorted=False))
    assert out.data.dtype == torch.float32 and h.dtype == torch.float32
    assert torch.allclose(out.data, ref.data, atol=2e-2) and torch.allclose(h, h_ref, atol=2e-2)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_char_lm_recurrence_stays_float32_under_autocast(cell):
    """Under autocast only the head runs in bf16: the state comes back float32 and the logits stay
    within bf16 rounding of the float32 model's."""
    torch.manual_seed(0)
    m = CharLM(CharLMConfig(vocab_size=11, cell=cell, layers=2, hidden=16, embed=8, skip=True)).eval()
    x = torch.randint(0, 11, (2, 9))
    with torch.no_grad():
        ref, _, ref_state = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _, state = m(x, ref_state)
            again, _, _ = m(x)
    for s in state if isinstance(state, tuple) else (state,):
        assert s.dtype == torch.float32
    assert torch.allclose(again.float(), ref, atol=3e-2)


@pytest.mark.parametrize("layers", [1, 2])
def test_decoder_step_feeds_its_attentional_state_like_the_teacher_forced_decoder(layers):
    """Input feeding over a whole reply: stepping ``decoder_step`` and feeding each attentional state
    back gives the teacher-forced ``Decoder.forward`` (which loops over positions itself) at every position."""
    m = _seq2seq(layers, feed=True)
    src, src_len = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]]), torch.tensor([3, 4])
    tgt = torch.tensor([[2, 12, 13, 14, 15], [2, 16, 17, 18, 19]])
    with torch.no_grad():
        enc = m.encode(src, src_len)
        ref, ref_hidden, ref_w = m.decoder(tgt, enc.hidden, m.initial_feed(enc), enc)
        hidden, feed = enc.hidden, m.initial_feed(enc)
        for t in range(tgt.size(1)):
            feed, hidden, w = decoder_step(m.decoder, tgt[:, t], hidden, feed, enc)
            torch.testing.assert_close(feed, ref[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(w, ref_w[:, t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hidden, ref_hidden, atol=1e-5, rtol=1e-5)
