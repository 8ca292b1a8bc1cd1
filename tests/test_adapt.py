"""Dynamic evaluation (chatrnn/adapt.py) on a real tiny model: it learns, it scores honestly, its
update is the paper's, it is exact, and it never touches the checkpoint on disk."""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch
import torch.nn.functional as F

from chatrnn.adapt import AdaptSettings, adapt, gradient_stats, stats_for, text_ids, training_slice
from chatrnn.errors import ChatrnnError
from chatrnn.infer import Generator

REPEATED = "It is the east, and Juliet is the sun.\n" * 40


@pytest.fixture
def gen(tiny_charlm) -> Generator:
    return Generator.load(tiny_charlm)


@pytest.fixture
def ids(gen):
    return torch.tensor(gen.vocab.encode(REPEATED))


@pytest.fixture
def stats(gen):
    data, _ = training_slice(gen.config, gen.folder, gen.vocab, 2001)
    return gradient_stats(gen.model, data, 50)


def _static_loss(model, ids) -> float:
    with torch.no_grad():
        logits, _, _ = model(ids[:-1].unsqueeze(0))
        return float(F.cross_entropy(logits[0], ids[1:]))


def test_adapted_loss_on_repetitive_text_is_lower(gen, ids, stats):
    static = _static_loss(gen.model, ids)
    r = adapt(copy.deepcopy(gen.model), ids, AdaptSettings(lr=3e-3, decay=0.01, seq=50), stats)
    assert r.chars == len(ids) - 1
    assert r.loss < static - 0.1, (r.loss, static)
    # it keeps learning: the last segments score better than the first ones
    assert sum(r.segment_losses[-5:]) < sum(r.segment_losses[:5])


def test_first_segment_is_scored_before_any_update(gen, ids, stats):
    seq = 50
    r = adapt(copy.deepcopy(gen.model), ids, AdaptSettings(lr=1e-2, seq=seq), stats)
    assert r.segment_losses[0] == pytest.approx(_static_loss(gen.model, ids[: seq + 1]), abs=1e-5)
    # the second one is scored by updated weights (a large lr moves it measurably)
    with torch.no_grad():
        _, _, state = gen.model(ids[:seq].unsqueeze(0))
        logits, _, _ = gen.model(ids[seq : 2 * seq].unsqueeze(0), state)
        second_static = float(F.cross_entropy(logits[0], ids[seq + 1 : 2 * seq + 1]))
    assert abs(r.segment_losses[1] - second_static) > 1e-3


def test_update_is_the_rms_rule_with_decay(gen, ids, stats):
    """Two segments by hand: θ1 = θ0 - η g0/(√MS+ε); θ2 = θ1 - η g1/(√MS+ε) + min(1, λ RMS_norm)(θ0 - θ1)."""
    s = AdaptSettings(lr=1e-3, decay=0.5, seq=20)
    st = gradient_stats(gen.model, ids[:401], s.seq)  # any text works for checking the algebra
    model = copy.deepcopy(gen.model)
    adapt(model, ids[:41], s, st)  # exactly two segments of 20 predictions

    ref = copy.deepcopy(gen.model).eval()
    params = list(ref.parameters())
    theta0 = [p.detach().clone() for p in params]
    rms = [m.sqrt() for m in st]
    mean_rms = sum(float(r.sum()) for r in rms) / sum(r.numel() for r in rms)
    state = None
    for lo in (0, 20):
        logits, _, state = ref(ids[lo : lo + 20].unsqueeze(0), state)
        loss = F.cross_entropy(logits[0], ids[lo + 1 : lo + 21])
        grads = torch.autograd.grad(loss, params)
        state = tuple(x.detach() for x in state)
        with torch.no_grad():
            for p, g, r, t0 in zip(params, grads, rms, theta0):
                pull = (s.decay * r / mean_rms).clamp(max=1.0)
                p.copy_(p - s.lr * g / (r + s.eps) + pull * (t0 - p))
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(a, t) for a, t in zip(model.parameters(), theta0))


def test_sgd_rule_with_full_decay_steps_from_the_trained_weights(gen, ids):
    """λ = 1: θ2 = θ1 - η g1 + (θ0 - θ1) = θ0 - η g1, g1 taken at θ1 = θ0 - η g0."""
    s = AdaptSettings(rule="sgd", lr=0.1, decay=1.0, seq=30)
    model = copy.deepcopy(gen.model)
    adapt(model, ids[:61], s)  # no statistics needed

    ref = copy.deepcopy(gen.model).eval()
    params = list(ref.parameters())
    theta0 = [p.detach().clone() for p in params]
    logits, _, state = ref(ids[:30].unsqueeze(0))
    g0 = torch.autograd.grad(F.cross_entropy(logits[0], ids[1:31]), params)
    with torch.no_grad():
        for p, g in zip(params, g0):
            p.sub_(s.lr * g)
    logits, _, _ = ref(ids[30:60].unsqueeze(0), tuple(x.detach() for x in state))
    g1 = torch.autograd.grad(F.cross_entropy(logits[0], ids[31:61]), params)
    for a, t0, g in zip(model.parameters(), theta0, g1):
        torch.testing.assert_close(a.detach(), t0 - s.lr * g, rtol=1e-5, atol=1e-6)
    with pytest.raises(ChatrnnError, match="statistics"):
        adapt(copy.deepcopy(gen.model), ids, AdaptSettings(rule="rms"), None)


def test_runs_are_exactly_repeatable(gen, ids, stats):
    s = AdaptSettings(lr=3e-3, seq=40, seed=7)
    m1, m2 = copy.deepcopy(gen.model), copy.deepcopy(gen.model)
    r1, r2 = adapt(m1, ids, s, stats), adapt(m2, ids, s, stats)
    assert r1.segment_losses == r2.segment_losses and r1.loss == r2.loss
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


def test_generator_adapt_leaves_the_checkpoint_alone_and_saves_a_new_one(gen, tiny_charlm, tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text(REPEATED, "utf-8")
    digest = hashlib.sha256((tiny_charlm / "model.safetensors").read_bytes()).hexdigest()
    trained = copy.deepcopy(gen.model)
    r = gen.adapt(text, AdaptSettings(lr=3e-3, seq=50))
    assert r.loss_static is not None and r.loss < r.loss_static
    assert "training text" in r.stats_source
    assert hashlib.sha256((tiny_charlm / "model.safetensors").read_bytes()).hexdigest() == digest
    assert any(not torch.equal(a, b) for a, b in zip(gen.model.parameters(), trained.parameters()))
    out = gen.save_adapted(tmp_path / "adapted")
    again = Generator.load(out)
    assert all(torch.equal(a, b) for a, b in zip(again.model.parameters(), gen.model.parameters()))
    assert again.config["adapted"]["file"] == str(text)
    assert again.generate("It", length=20, rng_seed=1) == gen.generate("It", length=20, rng_seed=1)
    with pytest.raises(ChatrnnError, match="not empty"):
        gen.save_adapted(out)
    # a second adapt starts from the trained weights again, not from the adapted ones
    r2 = gen.adapt(text, AdaptSettings(lr=3e-3, seq=50))
    assert r2.loss == r.loss


def test_cancel_changes_nothing(gen, tmp_path):
    import threading

    text = tmp_path / "t.txt"
    text.write_text(REPEATED, "utf-8")
    before = copy.deepcopy(gen.model)
    stop = threading.Event()
    stop.set()
    r = gen.adapt(text, AdaptSettings(), cancel=stop)
    assert r.cancelled
    assert all(torch.equal(a, b) for a, b in zip(gen.model.parameters(), before.parameters()))


@pytest.mark.parametrize("kind", ["missing", "binary", "empty", "folder"])
def test_bad_files_are_one_line_errors(gen, tmp_path, kind):
    p = tmp_path / "x.txt"
    if kind == "binary":
        p.write_bytes(b"\x00\x01\x02binary\xff" * 20)
    elif kind == "empty":
        p.write_text("", "utf-8")
    elif kind == "folder":
        p.mkdir()
    with pytest.raises(ChatrnnError) as e:
        gen.adapt(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_statistics_fall_back_only_when_allowed(gen, tmp_path):
    lost = copy.copy(gen)
    lost.config = {**gen.config, "corpus": {**gen.config["corpus"], "sources": [str(tmp_path / "gone.txt")]}}
    with pytest.raises(ChatrnnError, match="--adapt-stats"):
        stats_for(lost, AdaptSettings())
    data = text_ids(_write(tmp_path / "t.txt", REPEATED), gen.vocab)
    st, source = stats_for(lost, AdaptSettings(), fallback=data)
    assert st is not None and "itself" in source
    assert stats_for(lost, AdaptSettings(rule="sgd")) == (None, None)


@pytest.mark.parametrize(
    "bad", [dict(rule="adam"), dict(lr=0), dict(decay=-1), dict(seq=1), dict(seq=100, stats_chars=50)]
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(ChatrnnError):
        AdaptSettings(**bad).check()


def _write(p, text):
    p.write_text(text, "utf-8")
    return p
