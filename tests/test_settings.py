"""One settings resolution: flag > checkpoint > preset > default, once per run, frozen afterwards."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatrnn.config import CHARLM_PRESETS, CHAT_PRESETS
from chatrnn.errors import ChatrnnError
from chatrnn.settings import DEFAULT_MAX_TIME, NOT_GIVEN, Source, TrainConfig, per_rank_batch, resolve
from chatrnn.train.charlm import CharLMOptions, resolve_charlm

NAMES = ["a", "b", "c", "d", "e"]
layer = st.dictionaries(st.sampled_from(NAMES), st.integers())


@given(flags=layer, checkpoint=layer, preset=layer, defaults=layer)
def test_the_highest_layer_that_sets_a_value_wins(flags, checkpoint, preset, defaults):
    defaults = {**dict.fromkeys(NAMES, 0), **defaults}  # every setting has a default
    r = resolve(NAMES, flags=flags, checkpoint=checkpoint, preset=preset, defaults=defaults)
    for name in NAMES:
        for source, values in (
            (Source.FLAG, flags),
            (Source.CHECKPOINT, checkpoint),
            (Source.PRESET, preset),
            (Source.DEFAULT, defaults),
        ):
            if name in values:
                assert (r[name], r.origin[name]) == (values[name], source)
                break
    assert [row[0] for row in r.rows()] == NAMES


@given(value=st.one_of(st.none(), st.just("english"), st.just(0), st.just(False), st.just(())))
def test_a_given_value_counts_even_when_it_looks_unset(value):
    r = resolve(["x"], flags={"x": value}, checkpoint={"x": "stored"}, preset={"x": "p"}, defaults={"x": "d"})
    assert r["x"] == value and r.origin["x"] is Source.FLAG


def test_resolved_settings_are_frozen():
    cfg = TrainConfig(max_steps=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    s = resolve_charlm(CharLMOptions(out="x", preset="tiny", train={"max_steps": 1}), "cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.batch_size = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.model["hidden"] = 3  # type: ignore[index]
    with pytest.raises(TypeError, match="hiden"):
        resolve_charlm(CharLMOptions(out="x", model={"hiden": 3}), "cpu")


def test_charlm_fresh_run_layers():
    s = resolve_charlm(CharLMOptions(out="x", preset="tiny", model={"hidden": 99}, train={"lr": 0.5}), "cpu")
    o = s.resolved.origin
    assert (s.model["hidden"], o["hidden"]) == (99, Source.FLAG)
    assert (s.model["layers"], o["layers"]) == (CHARLM_PRESETS["tiny"]["layers"], Source.PRESET)
    assert (s.model["tie_weights"], o["tie_weights"]) == (False, Source.DEFAULT)
    assert (s.train.lr, o["lr"]) == (0.5, Source.FLAG)
    assert (s.train.weight_decay, o["weight_decay"]) == (TrainConfig.weight_decay, Source.DEFAULT)
    assert (s.preset, o["preset"]) == ("tiny", Source.FLAG)
    assert (s.train.max_time, o["max_time"]) == (DEFAULT_MAX_TIME, Source.DEFAULT)  # no limit given


def test_three_minutes_when_no_limit_is_given_and_the_preset_follows_the_budget():
    s = resolve_charlm(CharLMOptions(out="x"), "cpu")
    assert s.train.max_time == DEFAULT_MAX_TIME and s.preset == "cpu"
    assert s.resolved.origin["preset"] is Source.DEFAULT
    s = resolve_charlm(CharLMOptions(out="x", train={"max_steps": 5}), "cpu")
    assert s.train.max_time is None and s.train.max_steps == 5
    assert resolve_charlm(CharLMOptions(out="x", train={"max_time": 600.0}), "cpu").preset == "cpu-large"
    assert resolve_charlm(CharLMOptions(out="x"), "cuda").preset == "gpu"
    assert resolve_charlm(CharLMOptions(out="x", preset=None), "cpu").preset == "cpu"  # None: choose for me
    with pytest.raises(ChatrnnError, match="unknown preset"):
        resolve_charlm(CharLMOptions(out="x", preset="huge"), "cpu")
    assert CharLMOptions(out="x").lang is NOT_GIVEN


def test_charlm_resume_takes_the_checkpoint_unless_a_flag_is_given(tiny_charlm):
    s = resolve_charlm(CharLMOptions(out=tiny_charlm, resume=True), "cpu")
    o = s.resolved.origin
    assert s.resume_from == tiny_charlm
    assert (s.train.max_steps, o["max_steps"]) == (60, Source.CHECKPOINT)
    assert s.train.max_time is None  # a resumed run keeps its stored limits: no 3-minute default
    assert (s.train.lr, o["lr"]) == (CHARLM_PRESETS["tiny"]["lr"], Source.CHECKPOINT)
    assert (s.model["hidden"], o["hidden"]) == (CHARLM_PRESETS["tiny"]["hidden"], Source.CHECKPOINT)
    assert (s.batch_size, o["batch_size"]) == (CHARLM_PRESETS["tiny"]["batch_size"], Source.CHECKPOINT)
    s = resolve_charlm(CharLMOptions(out=tiny_charlm, resume=True, train={"max_steps": 80, "lr": 0.02}), "cpu")
    assert (s.train.max_steps, s.train.lr, s.resolved.origin["lr"]) == (80, 0.02, Source.FLAG)
    same = CHARLM_PRESETS["tiny"]["hidden"]
    assert resolve_charlm(CharLMOptions(out=tiny_charlm, resume=True, model={"hidden": same}), "cpu")
    with pytest.raises(ChatrnnError, match="--hidden"):
        resolve_charlm(CharLMOptions(out=tiny_charlm, resume=True, model={"hidden": same + 1}), "cpu")


def test_per_rank_batch():
    assert per_rank_batch(64, 4) == 16
    with pytest.raises(ChatrnnError, match="does not split over 3 ranks"):
        per_rank_batch(64, 3)


def test_chat_presets_and_defaults():
    from chatrnn.train.chat import ChatOptions, resolve_chat

    s = resolve_chat(ChatOptions(out="x", context_turns=2, train={"max_steps": 1}), "cpu")
    o = s.resolved.origin
    assert (s.preset, s.vocab_size, o["vocab_size"]) == ("cpu", CHAT_PRESETS["cpu"]["vocab_size"], Source.PRESET)
    assert not s.vocab_exact  # the preset's size is capped for small corpora
    assert s.max_src_len == min(256, s.max_len * 3) and o["max_src_len"] is Source.DEFAULT
    assert (s.lang, o["lang"]) == ("english", Source.DEFAULT)
    assert resolve_chat(ChatOptions(out="x", vocab_size=500), "cpu").vocab_exact
    assert resolve_chat(ChatOptions(out="x"), "cuda").preset == "gpu"
