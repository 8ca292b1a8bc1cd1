import math

import pytest
import torch
from safetensors.torch import load_file

from chatrnn import checkpoint as ckpt
from chatrnn.errors import ChatrnnError
from chatrnn.train.charlm import CharLMOptions, train_charlm
from chatrnn.train.charlm_task import CharLMTask
from chatrnn.train.task import Loss
from chatrnn.train.trainer import TrainConfig, lr_at


def opts(out, corpus, resume=False, **train):
    train.setdefault("max_steps", 20)
    train.setdefault("evals", 4)
    return CharLMOptions(
        out=out,
        corpus=[str(corpus)],
        preset="tiny",
        model={"layers": 2, "dropout": 0.2},
        train=dict(**train),
        device="cpu",
        resume=resume,
    )


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(0.1)
    assert lr_at(cfg, 9, 0.0) == pytest.approx(1.0)
    assert lr_at(cfg, 100, 0.5) == pytest.approx(0.55)
    assert lr_at(cfg, 100, 1.0) == pytest.approx(0.1)


def test_training_lowers_validation_loss_and_writes_the_checkpoint(tmp_path, sample_text_file):
    r = train_charlm(opts(tmp_path / "m", sample_text_file, max_steps=80))
    metrics = ckpt.read_metrics(tmp_path / "m")
    assert len(metrics) == 4 and metrics[-1]["step"] == 80
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"] < math.log(40)
    cfg = ckpt.read_config(tmp_path / "m", "charlm")
    assert cfg["training"]["finished"] and cfg["training"]["best_val_loss"] == r.best_val_loss
    assert cfg["vocab"] and cfg["model"]["layers"] == 2
    for name in (ckpt.BEST_WEIGHTS, ckpt.LAST_WEIGHTS, ckpt.TRAIN_STATE, ckpt.METRICS):
        assert (tmp_path / "m" / name).exists()
    assert not list(tmp_path.glob(".m*"))  # no temp or .old folders left behind


def test_resume_is_exact(tmp_path, sample_text_file):
    train_charlm(opts(tmp_path / "straight", sample_text_file))
    stopped = train_charlm(opts(tmp_path / "resumed", sample_text_file), stop_check=lambda step: step >= 9)
    assert stopped.interrupted and stopped.steps == 9
    assert not ckpt.read_config(tmp_path / "resumed")["training"]["finished"]
    resumed = train_charlm(opts(tmp_path / "resumed", sample_text_file, resume=True))
    assert resumed.steps == 20
    a = load_file(str(tmp_path / "straight" / ckpt.LAST_WEIGHTS))
    b = load_file(str(tmp_path / "resumed" / ckpt.LAST_WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_weight_averaging_is_exact(tmp_path, sample_text_file):
    train_charlm(opts(tmp_path / "straight", sample_text_file, ema=0.9))
    train_charlm(opts(tmp_path / "resumed", sample_text_file, ema=0.9), stop_check=lambda step: step >= 9)
    train_charlm(opts(tmp_path / "resumed", sample_text_file, resume=True, ema=0.9))
    for name in (ckpt.LAST_WEIGHTS, ckpt.BEST_WEIGHTS):
        a = load_file(str(tmp_path / "straight" / name))
        b = load_file(str(tmp_path / "resumed" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_weight_average_is_scored_and_the_better_weights_are_kept(tmp_path, sample_text_file):
    """The average trails the weights: with a slow decay over a short run it is clearly worse, so
    the final evaluation, which scores both, keeps the raw weights, and reports which it kept."""
    r = train_charlm(opts(tmp_path / "m", sample_text_file, max_steps=40, ema=0.99))
    metrics = ckpt.read_metrics(tmp_path / "m")
    assert [m["weights"] for m in metrics[:-1]] == ["ema"] * 3 and "val_loss_raw" not in metrics[0]
    last = metrics[-1]
    assert last["val_loss_raw"] < last["val_loss_ema"] and last["weights"] == "raw"
    assert last["val_loss"] == last["val_loss_raw"] == r.last_metrics["loss"]
    best = load_file(str(tmp_path / "m" / ckpt.BEST_WEIGHTS))
    raw = load_file(str(tmp_path / "m" / ckpt.LAST_WEIGHTS))
    state = ckpt.load_train_state(tmp_path / "m")["averaged"]
    assert all(torch.equal(best[k], raw[k]) for k in raw)
    assert not torch.equal(state["module.head.weight"], raw["head.weight"])
    assert int(state["n_averaged"]) == 40


def test_resume_can_extend_the_run(tmp_path, sample_text_file):
    train_charlm(opts(tmp_path / "m", sample_text_file, max_steps=10))
    r = train_charlm(opts(tmp_path / "m", sample_text_file, resume=True, max_steps=15))
    assert r.steps == 15


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, sample_text_file):
    with pytest.raises(ChatrnnError, match="no checkpoint"):
        train_charlm(opts(tmp_path / "none", sample_text_file, resume=True))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, sample_text_file, monkeypatch):
    real = CharLMTask.loss
    calls = {"n": 0}

    def flaky(self, model, batch):
        calls["n"] += 1
        out = real(self, model, batch)
        return Loss(out.total * float("nan"), out.count, out.carry) if calls["n"] > 12 else out

    monkeypatch.setattr(CharLMTask, "loss", flaky)
    with pytest.raises(ChatrnnError, match=r"nan at step 13.*last good checkpoint"):
        train_charlm(opts(tmp_path / "m", sample_text_file))
    state = ckpt.load_train_state(tmp_path / "m")
    assert state["step"] == 10
    weights = ckpt.load_weights(tmp_path / "m")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_time_budget_ends_the_run_fully_decayed(tmp_path, sample_text_file):
    r = train_charlm(opts(tmp_path / "m", sample_text_file, max_steps=None, max_time=1.5, evals=1))
    assert not r.interrupted and r.steps > 0 and r.elapsed >= 1.5
    assert ckpt.read_config(tmp_path / "m")["training"]["finished"]


def test_epoch_limit(tmp_path, sample_text_file):
    r = train_charlm(opts(tmp_path / "m", sample_text_file, max_steps=None, epochs=0.5))
    assert 0.5 <= ckpt.read_config(tmp_path / "m")["training"]["epochs"] < 0.6 and r.steps > 0


def test_bundled_corpus_trains_offline_in_any_language(tmp_path):
    r = train_charlm(
        CharLMOptions(
            out=tmp_path / "ko",
            corpus=[],
            lang="korean",
            preset="tiny",
            train=dict(max_steps=3, evals=1),
            device="cpu",
        )
    )
    cfg = ckpt.read_config(tmp_path / "ko")
    assert r.steps == 3 and "안" in cfg["vocab"] and cfg["corpus"]["sources"] == ["chatterbot-corpus:korean"]
    with pytest.raises(ChatrnnError, match="klingon"):
        train_charlm(
            CharLMOptions(
                out=tmp_path / "x",
                corpus=[],
                lang="klingon",
                preset="tiny",
                train=dict(max_steps=1),
                device="cpu",
            )
        )


def test_presets_choose_weight_decay_and_averaging_unless_the_user_does():
    from chatrnn.config import CHARLM_PRESETS
    from chatrnn.settings import TrainConfig as Defaults
    from chatrnn.train.charlm import resolve_charlm

    for name in CHARLM_PRESETS:
        train = resolve_charlm(CharLMOptions(out="x", preset=name, train=dict(max_steps=1)), "cpu").train
        for key in ("weight_decay", "ema"):
            assert getattr(train, key) == CHARLM_PRESETS[name].get(key, getattr(Defaults, key))
        train = resolve_charlm(
            CharLMOptions(out="x", preset=name, train=dict(max_steps=1, weight_decay=0.3, ema=0.0)), "cpu"
        ).train
        assert (train.weight_decay, train.ema) == (0.3, 0.0)
