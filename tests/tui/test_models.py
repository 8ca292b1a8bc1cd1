"""Checkpoint discovery (no torch), the token pipe, history shaping, and the display helpers."""

from __future__ import annotations

import json
import threading

import pytest

from chatrnn.tui.models import (
    NoCheckpoint,
    Pipe,
    discover,
    history_pairs,
    inspect_checkpoint,
    model_history,
    pick_default,
    safetensors_parameters,
    train_hint,
)
from chatrnn.tui.widgets import _break_at, candidates_text, clean_text, heat_colour, heatmap_text, show_piece


def test_discover_reads_kind_size_params_and_loss(checkpoints):
    infos = {i.name: i for i in discover(checkpoints)}
    lm = infos["charlm"]
    assert lm.kind == "charlm" and lm.usable
    assert lm.parameters and lm.parameters > 1000 and lm.size_bytes > 0
    assert isinstance(lm.best_val_loss, float)
    if "chat" in infos:
        assert infos["chat"].kind == "chat" and infos["chat"].usable
    assert pick_default("charlm", list(infos.values()), checkpoints).name == "charlm"


def test_param_count_matches_torch(checkpoints):
    from chatrnn.checkpoint import load_weights

    weights = load_weights(checkpoints / "charlm")
    assert safetensors_parameters(checkpoints / "charlm" / "model.safetensors") == sum(
        t.numel() for t in weights.values()
    )


def test_discover_survives_broken_folders(tmp_path):
    (tmp_path / "bad-json").mkdir()
    (tmp_path / "bad-json" / "config.json").write_text("{not json", "utf-8")
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "config.json").write_text(json.dumps({"kind": "chat"}), "utf-8")
    (tmp_path / "garbage-weights").mkdir()
    (tmp_path / "garbage-weights" / "config.json").write_text(json.dumps({"kind": "charlm"}), "utf-8")
    (tmp_path / "garbage-weights" / "model.safetensors").write_bytes(b"\xff" * 64)
    (tmp_path / "not-a-checkpoint").mkdir()
    infos = {i.name: i for i in discover(tmp_path)}
    assert set(infos) == {"bad-json", "no-weights", "garbage-weights"}
    assert all(not i.usable and i.problem for i in infos.values())
    assert pick_default("chat", list(infos.values()), tmp_path) is None
    assert discover(tmp_path / "missing") == []
    assert inspect_checkpoint(tmp_path / "missing").problem


def test_loader_without_checkpoints_says_how_to_train(tmp_path, monkeypatch):
    from chatrnn.tui.models import ModelLoader

    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(tmp_path))
    with pytest.raises(NoCheckpoint, match="chatrnn train chat"):
        ModelLoader().load_chat()
    with pytest.raises(NoCheckpoint, match="chatrnn train charlm"):
        ModelLoader().load_lm()
    assert "chatrnn train" in train_hint()


def test_loader_loads_the_real_models(in_checkpoints, has_chat_model):
    from chatrnn.tui.models import ModelLoader

    lm = ModelLoader().load_lm()
    assert "".join(t.text for t in lm.stream("he", length=5))
    if has_chat_model:
        chat = ModelLoader().load_chat("chat")
        toks = list(chat.stream("hello", [], None))
        assert all(hasattr(t, "attention") for t in toks)


def test_pipe_coalesces_wakeups():
    wakes = []
    pipe = Pipe(lambda: wakes.append(1))
    for i in range(100):
        pipe.put(i)
    assert len(wakes) == 1 and pipe.take() == list(range(100)) and pipe.take() == []
    pipe.put("x")
    assert len(wakes) == 2

    # from many threads: nothing lost
    got = []
    pipe = Pipe(lambda: None)
    threads = [threading.Thread(target=lambda k=k: [pipe.put((k, i)) for i in range(500)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = pipe.take()
    assert len(got) == 2000


def test_history_keeps_turns_aligned():
    turns = [("user", "a"), ("bot", "A"), ("user", "b"), ("user", "c"), ("bot", "C"), ("user", "d")]
    assert history_pairs(turns) == [("a", "A"), ("b", ""), ("c", "C")]
    assert model_history(turns) == ["a", "A", "b", "", "c", "C"]
    assert model_history([]) == []


def test_clean_text_makes_anything_drawable():
    assert clean_text("a\x00b\x1b[31mc\x7f") == "a\u2400b\u241b[31mc\u2421"
    assert clean_text("tab\there\r\nnext") == "tab    here\nnext"
    assert clean_text("x\ud800y") == "x\ufffdy"
    long = clean_text("z" * 10_000)
    assert long.startswith("z" * 4000) and "6,000 more characters" in long
    assert show_piece(" ", 4) == "␣" and show_piece("▁hello", 4) == "▁he…"


def test_heatmap_text_shape_and_marks():
    text = heatmap_text(["▁hi", "▁there"], ["▁hello", "▁you", "<sep>"], [[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]]).plain
    lines = text.splitlines()
    assert lines[0].split() == ["▁hello", "▁you", "<sep>"]
    assert "0.80 → ▁you" in lines[1] and "0.70 → ▁hello" in lines[2]
    assert all(line.count("◆") == 1 for line in lines[1:3])
    # ragged or empty input never raises
    assert "no attention" in heatmap_text([], [], []).plain
    assert heatmap_text(["a"], ["x", "y"], [[1.0]]).plain
    assert heatmap_text(["a", "b"], ["x"], [[float("nan")], [0.0]]).plain
    assert heat_colour(0) != heat_colour(1) and heat_colour(-5) == heat_colour(0)


def test_candidates_text_highlights_the_choice():
    text = candidates_text([("e", [("e", 0.5), ("a", 0.3)]), (" ", [("x", 0.9), (" ", 0.1)])], "header").plain
    lines = text.splitlines()
    assert lines[0] == "header" and "50.0%" in lines[1] and "␣" in lines[2]


@pytest.mark.parametrize(
    "line,width",
    [("hello world foo bar", 7), ("a" * 30, 8), ("안녕하세요 반가워요 😀😀", 5), ("  leading", 3), ("x y", 1)],
)
def test_break_at_fits_and_makes_progress(line, width):
    from rich.cells import cell_len

    rest = line
    while cell_len(rest) > width:
        cut = _break_at(rest, width)
        assert cut >= 1
        assert cell_len(rest[:cut].rstrip(" ")) <= width
        rest = rest[cut:]
