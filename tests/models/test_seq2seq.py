"""The seq2seq model: config round trip, padding never matters, one decoder for every decode."""

from __future__ import annotations

import pytest
import torch

from chatrnn.models.seq2seq import Seq2Seq, Seq2SeqConfig

V = 50


def make(attention="general", layers=2, tie=True, feed=True, seed=0) -> Seq2Seq:
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(
        vocab_size=V,
        embed=12,
        hidden=16,
        layers=layers,
        attention=attention,
        dropout=0.0,
        tie_weights=tie,
        input_feeding=feed,
    )
    return Seq2Seq(cfg).eval()


def test_config_round_trip_and_validation():
    cfg = Seq2SeqConfig(vocab_size=300, attention="concat", layers=3)
    assert Seq2SeqConfig.from_dict({**cfg.to_dict(), "unknown_key": 1}) == cfg
    with pytest.raises(ValueError):
        Seq2SeqConfig(vocab_size=300, attention="bahdanau")
    with pytest.raises(ValueError):
        Seq2SeqConfig(vocab_size=300, hidden=15)


@pytest.mark.parametrize("attention", ["dot", "general", "concat"])
def test_padding_changes_nothing(attention):
    """A prompt batched with a longer one, with garbage in its padded positions, gets exactly the
    logits and attention it gets alone (packing + masked attention)."""
    m = make(attention)
    short, long_ = [5, 6, 7], [8, 9, 10, 11, 12, 13]
    tgt = torch.tensor([[2, 14, 15, 16]])
    with torch.no_grad():
        alone, _, attn_alone = m(torch.tensor([short]), torch.tensor([3]), tgt)
        for filler in (0, 17, 42):
            src = torch.tensor([short + [filler] * 3, long_])
            both, _, attn = m(src, torch.tensor([3, 6]), tgt.repeat(2, 1))
            torch.testing.assert_close(both[0], alone[0], atol=1e-5, rtol=1e-5)
            assert torch.all(attn[0, :, 3:] == 0)  # padding gets exactly zero weight
            torch.testing.assert_close(attn[0, :, :3], attn_alone[0], atol=1e-5, rtol=1e-5)


def test_attention_rows_are_distributions():
    m = make("general")
    with torch.no_grad():
        _, _, attn = m(torch.tensor([[5, 6, 7, 8]]), torch.tensor([4]), torch.tensor([[2, 9, 10]]))
    torch.testing.assert_close(attn.sum(-1), torch.ones(1, 3))


def test_tied_weights_are_shared_and_untied_are_not():
    m = make(tie=True)
    assert m.head.weight.data_ptr() == m.embedding.weight.data_ptr()
    assert m.encoder.embedding is m.decoder.embedding is m.embedding
    u = make(tie=False)
    assert u.head.weight.data_ptr() != u.embedding.weight.data_ptr()


def test_free_running_and_no_input_feeding_paths():
    for m in (make(feed=False), make()):
        src, tgt = torch.tensor([[5, 6, 7]]), torch.tensor([[2, 9, 10, 11]])
        logits, _, attn = m(src, torch.tensor([3]), tgt, teacher_forcing=False)
        assert logits.shape == (1, 4, V) and attn.shape == (1, 4, 3)
        logits.sum().backward()


@pytest.mark.parametrize("attention", ["dot", "general", "concat"])
def test_whole_sequence_path_equals_stepping(attention):
    """Without input feeding, teacher-forced training runs the reply in one GRU call; it must give
    what stepping one position at a time (as inference does) gives."""
    m = make(attention, feed=False)
    src, src_len = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]]), torch.tensor([3, 4])
    tgt = torch.tensor([[2, 12, 13], [2, 14, 15]])
    with torch.no_grad():
        logits, _, attn = m(src, src_len, tgt)
        enc = m.encode(src, src_len)
        hidden, feed = enc.hidden, m.initial_feed(enc)
        for t in range(3):
            step_logits, hidden, feed, w = m.step(tgt[:, t], hidden, feed, enc, lean=True)
            torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(w, attn[:, t], atol=1e-5, rtol=1e-5)


def test_dropout_uses_torch_rng_so_resume_can_replay_it():
    """Between-layer dropout is ours (torch RNG), not cuDNN's: same seed, same masks."""
    torch.manual_seed(0)
    m = Seq2Seq(Seq2SeqConfig(vocab_size=V, embed=12, hidden=16, layers=3, dropout=0.5)).train()
    src, tgt = torch.tensor([[5, 6, 7]]), torch.tensor([[2, 9, 10]])
    torch.manual_seed(1)
    a, _, _ = m(src, torch.tensor([3]), tgt)
    torch.manual_seed(1)
    b, _, _ = m(src, torch.tensor([3]), tgt)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("feed", [True, False])
def test_teacher_forcing_reads_the_reply_and_free_running_reads_its_own_choices(feed):
    """Free running feeds back the argmax; teacher forcing on exactly that sequence is the same decode.
    With targets, forward also gives the mean cross-entropy over non-padding positions."""
    m = make(feed=feed)
    src, src_len = torch.tensor([[5, 6, 7]]), torch.tensor([3])
    with torch.no_grad():
        free, _, free_attn = m(src, src_len, torch.tensor([[2, 0, 0, 0, 0]]), teacher_forcing=False)
        chosen = torch.cat([torch.tensor([[2]]), free.argmax(-1)[:, :-1]], 1)
        forced, _, forced_attn = m(src, src_len, chosen)
        torch.testing.assert_close(forced, free, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(forced_attn, free_attn, atol=1e-5, rtol=1e-5)
        targets = torch.tensor([[9, 10, 11, 0, 0]])
        _, loss, _ = m(src, src_len, chosen, targets=targets)
        ref = torch.nn.functional.cross_entropy(forced[0, :3], targets[0, :3])
        torch.testing.assert_close(loss, ref)


def test_greedy_decode_stops_at_eos_and_matches_stepping():
    m = make()
    src, src_len = torch.tensor([[5, 6, 7], [8, 9, 0]]), torch.tensor([3, 2])
    replies = m.greedy(src, src_len, max_len=6)
    assert len(replies) == 2 and all(len(r) <= 6 and m.cfg.eos_id not in r for r in replies)
    with torch.no_grad():  # the first prompt alone, one step at a time
        enc = m.encode(src[:1], src_len[:1])
        hidden, feed, tok, ref = enc.hidden, m.initial_feed(enc), torch.tensor([m.cfg.bos_id]), []
        for _ in range(6):
            logits, hidden, feed, _ = m.step(tok, hidden, feed, enc)
            tok = logits.argmax(-1)
            if int(tok) == m.cfg.eos_id:
                break
            ref.append(int(tok))
    assert replies[0] == ref


# ----- word dropout (Bowman et al. 2016) -------------------------------------------------------
def _wd(p: float, dropout: float = 0.0) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(Seq2SeqConfig(vocab_size=V, embed=12, hidden=16, layers=1, dropout=dropout, word_dropout=p))


@torch.no_grad()
def test_word_dropout_changes_training_loss_but_never_evaluation():
    src, src_len = torch.tensor([[5, 6, 7, 8]]).repeat(4, 1), torch.tensor([4] * 4)
    tgt_in = torch.tensor([[2, 9, 10, 11, 12, 13, 14, 15]]).repeat(4, 1)
    targets = torch.tensor([[9, 10, 11, 12, 13, 14, 15, 3]]).repeat(4, 1)
    losses = {}
    for p in (0.0, 0.5):  # (no_grad keeps training mode: dropout and word dropout still apply)
        m = _wd(p).train()
        torch.manual_seed(1)
        losses[p] = float(m(src, src_len, tgt_in, targets)[1])
        torch.manual_seed(1)
        assert float(m(src, src_len, tgt_in, targets)[1]) == losses[p]  # same seed, same masks
        m.eval()
        losses[p, "eval"] = float(m(src, src_len, tgt_in, targets)[1])
    assert losses[0.0] != losses[0.5]
    assert losses[0.0, "eval"] == losses[0.5, "eval"]  # same weights: at evaluation p does nothing


def test_word_dropout_replaces_reply_tokens_only_and_draws_nothing_at_zero():
    m = _wd(0.5).train()
    tgt = torch.tensor([[2, 9, 10, 11, 12, 13, 0, 0]] * 64)
    torch.manual_seed(2)
    out = m.drop_words(tgt)
    assert torch.all(out[:, 0] == 2) and torch.all(out[:, 6:] == 0)  # BOS and padding kept
    changed = out[:, 1:6] != tgt[:, 1:6]
    assert torch.all(out[:, 1:6][changed] == m.cfg.unk_id)
    assert 0.35 < changed.float().mean() < 0.65
    off = _wd(0.0).train()  # p = 0: no random draw, so an old run's RNG stream (and resume) is unchanged
    state = torch.get_rng_state()
    assert off.drop_words(tgt) is tgt and torch.equal(torch.get_rng_state(), state)


def test_word_dropout_config_range_and_old_configs_load_without_it():
    with pytest.raises(ValueError):
        Seq2SeqConfig(vocab_size=300, word_dropout=1.0)
    old = {k: v for k, v in Seq2SeqConfig(vocab_size=300).to_dict().items() if k not in ("word_dropout", "unk_id")}
    cfg = Seq2SeqConfig.from_dict(old)
    assert cfg.word_dropout == 0.0 and cfg.unk_id == 1


# ----- the pieces MMI reranking uses ------------------------------------------------------------
@pytest.mark.parametrize("feed", [True, False])
def test_reply_logprobs_equal_stepping_for_real_and_null_encodings(feed):
    """``reply_logprobs`` (one padded teacher-forced batch) gives the summed log-softmax of stepping
    each reply alone, for a prompt's encoding and for ``null_encoded`` (whose attention context is zero)."""
    m = make(feed=feed)
    replies, ended = [[9, 10, 11], [12], [13, 14]], [True, False, True]
    src = torch.tensor([[5, 6, 7]]).repeat(3, 1)
    with torch.no_grad():
        for enc in (m.encode(src, torch.tensor([3, 3, 3])), m.null_encoded(3)):
            got = m.reply_logprobs(enc, replies, ended)
            for i, (r, end) in enumerate(zip(replies, ended)):
                one = type(enc)(*(t[i : i + 1] if j < 3 else t[:, i : i + 1] for j, t in enumerate(enc)))
                hidden, fd, total = one.hidden, m.initial_feed(one), 0.0
                for prev, nxt in zip([m.cfg.bos_id, *r], [*r, m.cfg.eos_id] if end else r):
                    logits, hidden, fd, _ = m.step(torch.tensor([prev]), hidden, fd, one, lean=True)
                    total += float(torch.log_softmax(logits[0], -1)[nxt])
                assert got[i] == pytest.approx(total, abs=1e-4)
        null = m.null_encoded(2)
        context, weights = m.decoder.attention(torch.randn(2, 16), null.keys, null.memory, null.mask)
        assert torch.all(context == 0) and torch.all(weights == 1)
