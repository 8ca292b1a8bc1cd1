"""The probe reproduces the model: its gates, run through the reference equations, give back the
modules' own h and c and the head's logits, for every cell type, with and without skip connections;
streaming (ProbeStepper, pure reference equations) and the whole-text trace agree; generation with
the probe on samples exactly what it samples without; the chat model's states line up with its tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chatrnn.charvocab import CharVocab
from chatrnn.infer import Generator
from chatrnn.models.charlm import CharLM, CharLMConfig
from chatrnn.probe import GATES, ProbeStepper, probe_keys, saturation, trace_ids, trace_text

TOL = 1e-5
CASES = [
    (cell, skip, tie) for cell in ("lstm", "gru", "rnn") for skip, tie in ((False, False), (True, False), (True, True))
]


def model_for(cell: str, skip: bool, tie: bool = False, layers: int = 3, seed: int = 0) -> CharLM:
    """A model with weights spread wide enough that gates leave their linear range."""
    torch.manual_seed(seed)
    m = CharLM(CharLMConfig(vocab_size=23, cell=cell, layers=layers, hidden=16, embed=8, skip=skip, tie_weights=tie))
    with torch.no_grad():
        for p in m.parameters():
            # (less for the plain RNN: with larger weights it turns chaotic and float error grows)
            p.add_((0.1 if cell == "rnn" else 0.4) * torch.randn_like(p))
    return m.eval()


def ids_for(n: int, seed: int = 1) -> list[int]:
    return torch.randint(0, 23, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize(("cell", "skip", "tie"), CASES)
def test_trace_reproduces_the_model(cell, skip, tie):
    m = model_for(cell, skip, tie)
    ids = ids_for(70)
    with torch.no_grad():
        logits, _, state = m(torch.tensor([ids]))
    tr = trace_ids(m, ids)
    L, T, H = 3, 70, 16
    assert tr.h.shape == (L, T, H) and tr.logits.shape == (T, 23) and tr.h.dtype == np.float32
    assert sorted(tr.gates) == sorted(GATES[cell])
    np.testing.assert_allclose(tr.logits, logits[0].numpy(), atol=TOL)
    h_final = state[0] if cell == "lstm" else state
    np.testing.assert_allclose(tr.h[:, -1], h_final[:, 0].numpy(), atol=TOL)
    # every layer's h at every step, against the layer modules run one by one
    x = m.embedding(torch.tensor([ids]))
    with torch.no_grad():
        for layer, rnn in enumerate(m.layers):
            x, _ = rnn(x)
            np.testing.assert_allclose(tr.h[layer], x[0].numpy(), atol=TOL)
    h_prev = np.concatenate([np.zeros((L, 1, H), np.float32), tr.h[:, :-1]], axis=1)
    g = tr.gates
    if cell == "lstm":
        np.testing.assert_allclose(tr.c[:, -1], state[1][:, 0].numpy(), atol=TOL)
        # the gates give back the module's h and c: h = o ⊙ tanh(c), c = f ⊙ c_prev + i ⊙ g
        np.testing.assert_allclose(g["o"] * np.tanh(tr.c), tr.h, atol=TOL)
        c_prev = np.concatenate([np.zeros((L, 1, H), np.float32), tr.c[:, :-1]], axis=1)
        np.testing.assert_allclose(g["f"] * c_prev + g["i"] * g["g"], tr.c, atol=TOL)
        assert all((g[k] > 0).all() and (g[k] < 1).all() for k in "ifo") and (np.abs(g["g"]) < 1).all()
        assert np.ptp(g["f"]) > 0.5  # the gates really move
    elif cell == "gru":
        np.testing.assert_allclose((1 - g["z"]) * g["n"] + g["z"] * h_prev, tr.h, atol=TOL)
        assert tr.c is None
    else:
        assert tr.c is None and tr.gates == {}


@pytest.mark.parametrize(("cell", "skip", "tie"), CASES)
def test_streaming_probe_matches_the_trace(cell, skip, tie):
    m = model_for(cell, skip, tie)
    ids = ids_for(40, seed=2)
    tr = trace_ids(m, ids)
    stepper = ProbeStepper(m)
    rows = [stepper.step(i) for i in ids]
    np.testing.assert_allclose(np.stack([lg for lg, _ in rows]), tr.logits, atol=TOL)
    for key in probe_keys(cell):
        got = np.stack([p[key] for _, p in rows], axis=1)  # (L, T, H)
        want = tr.h if key == "h" else tr.c if key == "c" else tr.gates[key]
        np.testing.assert_allclose(got, want, atol=TOL, err_msg=key)
    # the dicts are copies: a later step does not change an earlier one
    assert not np.array_equal(rows[0][1]["h"], rows[-1][1]["h"])
    stepper.reset()
    np.testing.assert_allclose(stepper.step(ids[0])[0], tr.logits[0], atol=TOL)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_trace_continues_from_a_state(cell):
    m = model_for(cell, skip=True)
    ids = ids_for(50, seed=3)
    full = trace_ids(m, ids)
    with torch.no_grad():
        _, _, state = m(torch.tensor([ids[:20]]))
    rest = trace_ids(m, ids[20:], state)
    np.testing.assert_allclose(rest.h, full.h[:, 20:], atol=TOL)
    np.testing.assert_allclose(rest.logits, full.logits[20:], atol=TOL)
    np.testing.assert_allclose(ProbeStepper(m, state).step(ids[20])[0], full.logits[20], atol=TOL)


def test_saturation_without_keeping_the_gates():
    m = model_for("lstm", skip=False)
    ids = ids_for(60, seed=4)
    full, lean = trace_ids(m, ids), trace_ids(m, ids, keep_gates=False)
    assert lean.gates == {} and sorted(lean.saturation) == sorted(GATES["lstm"])
    np.testing.assert_allclose(lean.c, full.c)
    for name in GATES["lstm"]:
        np.testing.assert_allclose(lean.saturation[name], full.saturation[name])
        np.testing.assert_allclose(full.saturation[name], saturation(full.gates[name], name))
        assert full.saturation[name].shape == (3, 16, 2)
    f = full.gates["f"]
    assert full.saturation["f"][1, 5, 1] == pytest.approx((f[1, :, 5] > 0.9).mean())


def test_trace_text_drops_unknown_characters_and_handles_empty_text():
    m = model_for("lstm", skip=False)
    vocab = CharVocab("abcdefghijklmnopqrstuvw")
    tr = trace_text(m, vocab, "ab\u2603cd")
    assert tr.text == "abcd" and len(tr) == 4 and tr.logits.shape == (4, 23)
    empty = trace_text(m, vocab, "")
    assert len(empty) == 0 and empty.h.shape == (3, 0, 16) and empty.logits.shape == (0, 23)


def test_generation_with_the_probe_samples_the_same_text(tiny_charlm):
    g = Generator.load(tiny_charlm)
    plain = g.generate("ROMEO:", length=60, temperature=0.8, rng_seed=5)
    toks = list(g.stream("ROMEO:", length=60, temperature=0.8, rng_seed=5, probe=True))
    assert "".join(t.text for t in toks) == plain
    assert all(sorted(t.probe) == sorted(probe_keys("lstm")) for t in toks)
    # each token's probe is the state after reading it: the trace of seed + text, at that position
    tr = g.trace("ROMEO:" + plain)
    L = g.model.cfg.layers
    for k, t in enumerate(toks):
        assert t.probe["h"].shape == (L, g.model.cfg.hidden)
        np.testing.assert_allclose(t.probe["h"], tr.h[:, 6 + k], atol=TOL)
        np.testing.assert_allclose(t.probe["f"], tr.gates["f"][:, 6 + k], atol=TOL)
    assert all(t.probe is None for t in g.stream("ROMEO:", length=3, rng_seed=5))


def test_generation_with_the_probe_for_a_gru_model():
    m = model_for("gru", skip=True)
    vocab = CharVocab("abcdefghijklmnopqrstuvw")
    g = Generator(m, vocab)
    plain = g.generate("abc", length=30, temperature=1.0, rng_seed=1)
    toks = list(g.stream("abc", length=30, temperature=1.0, rng_seed=1, probe=True))
    assert "".join(t.text for t in toks) == plain
    tr = g.trace("abc" + plain)
    np.testing.assert_allclose(np.stack([t.probe["z"] for t in toks], 1), tr.gates["z"][:, 3:], atol=TOL)


# ----- the chat model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def responder(tmp_path_factory):
    """A tiny chat model trained for a few steps: states only need to be the model's, not good."""
    import csv

    from chatrnn.infer_chat import Responder
    from chatrnn.train.chat import ChatOptions, train_chat

    d = tmp_path_factory.mktemp("chat")
    mp = pytest.MonkeyPatch()
    mp.setenv("CHATRNN_CACHE", str(d / "cache"))
    try:
        with open(d / "pairs.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["Q", "A"])
            w.writerows([("hello there", "hi, how are you"), ("안녕하세요", "반가워요"), ("bye now", "see you")] * 10)
        train_chat(
            ChatOptions(
                out=d / "ck",
                corpus=[str(d / "pairs.csv")],
                val_file=str(d / "pairs.csv"),
                preset="tiny",
                max_len=16,
                train=dict(max_steps=20, evals=1, warmup_steps=2, seed=3),
                device="cpu",
            )
        )
    finally:
        mp.undo()
    return Responder.load(d / "ck")


def test_chat_reply_carries_encoder_and_decoder_states(responder):
    from chatrnn.decoding import ReplySettings

    settings = ReplySettings(temperature=0, no_repeat_ngram=0, min_len=3, max_len=8)
    r = responder.reply("hello there", settings=settings)
    H = responder.model.cfg.hidden
    ids = responder.prompt_ids("hello there", settings=settings)
    assert r.encoder_states.shape == (len(r.prompt_pieces), H) == (len(ids), H)
    with torch.no_grad():
        memory, _ = responder.model.encoder(torch.tensor([ids]), torch.tensor([len(ids)]))
    np.testing.assert_allclose(r.encoder_states, memory[0].numpy(), atol=TOL)
    assert r.decoder_states.shape == (len(r.pieces), H) and len(r.pieces) >= 3
    tokens = [t for t, *_ in responder._sample(ids, settings, None)]
    np.testing.assert_allclose(r.decoder_states, responder._replay_states(ids, tokens), atol=TOL)
    streamed = [t.state for t in responder.stream("hello there", settings=settings) if t.state is not None]
    np.testing.assert_allclose(np.stack(streamed), r.decoder_states, atol=TOL)
    beam = responder.reply("hello there", settings=ReplySettings(beam=3, no_repeat_ngram=0, min_len=3, max_len=8))
    assert beam.decoder_states.shape == (len(beam.pieces), H) and beam.encoder_states.shape == (len(ids), H)
