"""Checkpoint discovery (no torch) and the model loader."""

from __future__ import annotations

import json

import pytest

from chatrnn.tui.loading import (
    CHAT,
    LM,
    ModelLoader,
    NoCheckpoint,
    discover,
    inspect_checkpoint,
    model_label,
    pick_default,
    safetensors_parameters,
    train_hint,
)


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
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(tmp_path))
    with pytest.raises(NoCheckpoint, match="chatrnn train chat"):
        ModelLoader().load(CHAT)
    with pytest.raises(NoCheckpoint, match="chatrnn train charlm"):
        ModelLoader().load(LM)
    assert "chatrnn train" in train_hint()


def test_loader_loads_the_real_models(in_checkpoints, has_chat_model):
    loader = ModelLoader()
    lm = loader.load(LM)
    loader.warm(LM, lm)
    assert "".join(t.text for t in lm.stream("he", length=5))
    assert model_label(lm) == "charlm"
    if has_chat_model:
        chat = loader.load(CHAT, "chat")
        loader.warm(CHAT, chat)
        toks = list(chat.stream("hello", [], None))
        assert all(hasattr(t, "attention") for t in toks)


def test_warm_up_raises_what_the_model_raises():
    """The loader does not swallow a failed trial run: the app reports it (see test_app)."""

    class Broken:
        def stream(self, *a, **k):
            raise RuntimeError("no kernel image for this device")
            yield

    for kind in (CHAT, LM):
        with pytest.raises(RuntimeError, match="no kernel image"):
            ModelLoader().warm(kind, Broken())


def test_discovery_uses_the_checkpoint_file_names(tmp_path):
    from chatrnn import checkpoint as ckpt

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / ckpt.CONFIG).write_text(json.dumps({"kind": "charlm"}), "utf-8")
    (info,) = discover(tmp_path)
    assert info.problem and ckpt.BEST_WEIGHTS in info.problem
