import json
import os
import pickle
from pathlib import Path

import pytest

from chatrnn import checkpoint as ckpt
from chatrnn.errors import ChatrnnError


def write(folder, text):
    with ckpt.update_checkpoint(folder) as st:
        st.save_json(ckpt.CONFIG, {"kind": "charlm", "format_version": 1, "text": text})
        st.save_bytes("payload.bin", text.encode())


def test_update_is_all_or_nothing(tmp_path):
    folder = tmp_path / "m"
    write(folder, "one")
    with pytest.raises(RuntimeError):
        with ckpt.update_checkpoint(folder) as st:
            st.save_bytes("payload.bin", b"half-written")
            raise RuntimeError("crash while saving")
    assert (folder / "payload.bin").read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_unchanged_files_carry_over_and_the_old_inode_is_never_written(tmp_path):
    folder = tmp_path / "m"
    write(folder, "one")
    (folder / "keep.txt").write_text("kept")
    old_payload = os.stat(folder / "payload.bin").st_ino
    with ckpt.update_checkpoint(folder) as st:
        st.save_bytes("payload.bin", b"two")
    assert (folder / "keep.txt").read_text() == "kept"
    assert (folder / "payload.bin").read_bytes() == b"two"
    assert os.stat(folder / "payload.bin").st_ino != old_payload


def test_a_crash_between_the_two_renames_is_recovered(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    write(folder, "one")
    os.replace(folder, tmp_path / ".m.old")  # what a kill right after the first rename leaves
    assert ckpt.resolve_checkpoint(folder) == tmp_path / ".m.old"
    write(folder, "two")
    assert (folder / "payload.bin").read_bytes() == b"two" and not (tmp_path / ".m.old").exists()


def test_resolve_by_name_under_the_root_and_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(tmp_path))
    write(tmp_path / "mine", "x")
    assert ckpt.resolve_checkpoint("mine") == tmp_path / "mine"
    with pytest.raises(ChatrnnError, match=r"no checkpoint at .*charlm.*chatrnn train charlm"):
        ckpt.resolve_checkpoint(None, "charlm")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ChatrnnError, match="not a chatrnn checkpoint"):
        ckpt.resolve_checkpoint("junk")


@pytest.mark.parametrize(
    "content,match",
    [
        (b"{not json", "corrupt"),
        (b'{"kind": "charlm", "format_version": 99}', "newer chatrnn"),
        (b"[1,2]", "not a chatrnn config"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, content, match):
    (tmp_path / ckpt.CONFIG).write_bytes(content)
    with pytest.raises(ChatrnnError, match=match):
        ckpt.read_config(tmp_path)


def test_wrong_kind_is_named(tmp_path):
    write(tmp_path / "m", "x")
    with pytest.raises(ChatrnnError, match="holds a charlm model, not a chat model"):
        ckpt.read_config(tmp_path / "m", "chat")


def test_corrupt_weights_are_a_clear_error(tmp_path):
    (tmp_path / ckpt.BEST_WEIGHTS).write_bytes(b"\x00" * 100)
    with pytest.raises(ChatrnnError, match="corrupt"):
        ckpt.load_weights(tmp_path)
    with pytest.raises(ChatrnnError, match="missing"):
        ckpt.load_weights(tmp_path, "nope.safetensors")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_train_state_is_never_unpickled_unsafely(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / ckpt.TRAIN_STATE, "wb") as f:
        pickle.dump({"step": Evil()}, f)
    with pytest.raises(ChatrnnError, match="corrupt or unsafe"):
        ckpt.load_train_state(tmp_path)
    assert not (tmp_path / "pwned").exists()


# ----- checkpoints written by earlier versions still load -------------------------------------------
# tests/data/*_v1 were written by chatrnn 0.1.0 (format_version 1) before the char LM's layers became
# one module each: a 2x24 skip-connection LSTM with dropout and weight averaging trained 5 steps on
# tests/data/charlm_v1_corpus.txt, and a 2-layer input-feeding chat model. The *_expected.json files
# hold what that version computed from them.

DATA = Path(__file__).parent / "data"


def test_an_old_char_lm_checkpoint_gives_the_logits_and_text_it_gave_then():
    import torch

    from chatrnn.infer import Generator

    expected = json.loads((DATA / "charlm_v1_expected.json").read_text("utf-8"))
    gen = Generator.load(DATA / "charlm_v1")
    ids = [gen.vocab.index[c] for c in expected["text"]]
    with torch.no_grad():
        logits, _, _ = gen.model(torch.tensor([ids]))
    torch.testing.assert_close(logits[0], torch.tensor(expected["logits"]), atol=1e-5, rtol=1e-5)
    assert gen.generate("The ", length=40, temperature=0) == expected["greedy"]
    # Sampled text is not held to the recorded one: a 1e-7 difference in another CPU's arithmetic may
    # move one draw across a boundary, and every later character with it.
    sampled = gen.generate("The ", length=40, temperature=0.8, rng_seed=3)
    assert len(sampled) == 40 and sampled == gen.generate("The ", length=40, temperature=0.8, rng_seed=3)


def test_an_old_chat_checkpoint_gives_the_logits_and_replies_it_gave_then():
    import torch

    from chatrnn.decoding import ReplySettings
    from chatrnn.infer_chat import Responder

    expected = json.loads((DATA / "chat_v1_expected.json").read_text("utf-8"))
    r = Responder.load(DATA / "chat_v1")
    src, tgt = expected["src"], expected["tgt_in"]
    assert r.prompt_ids(expected["prompt"]) == src
    with torch.no_grad():
        logits, _, attn = r.model(torch.tensor([src]), torch.tensor([len(src)]), torch.tensor([tgt]))
    torch.testing.assert_close(logits[0], torch.tensor(expected["logits"]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn[0], torch.tensor(expected["attention"]), atol=1e-5, rtol=1e-5)
    assert r.reply(expected["prompt"], settings=ReplySettings(temperature=0)).text == expected["greedy"]
    assert r.reply(expected["prompt"], settings=ReplySettings(beam=3)).text == expected["beam3"]


def test_an_old_char_lm_run_resumes_with_its_optimizer_and_weight_average(tmp_path):
    """``--resume`` maps the old names in last.safetensors and in the weight average, and the saved
    AdamW state (indexed by parameter position) still fits every parameter."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from chatrnn.train.charlm import CharLMOptions, train_charlm

    out = tmp_path / "charlm_v1"
    shutil.copytree(DATA / "charlm_v1", out)
    before = load_file(str(out / ckpt.LAST_WEIGHTS))
    state = torch.load(out / ckpt.TRAIN_STATE, weights_only=True)
    assert state["step"] == 5 and any(k.startswith("module.rnn.") for k in state["averaged"])
    result = train_charlm(
        CharLMOptions(
            out=out,
            corpus=[str(DATA / "charlm_v1_corpus.txt")],
            train={"max_steps": 8, "threads": 1},
            device="cpu",
            resume=True,
        )
    )
    assert result.steps == 8
    after = load_file(str(out / ckpt.LAST_WEIGHTS))
    assert "layers.1.weight_ih_l0" in after and not any(k.startswith("rnn.") for k in after)
    assert not torch.equal(after["layers.0.weight_hh_l0"], before["rnn.weight_hh_l0"])


def test_an_old_optimizer_state_lines_up_with_the_new_parameter_order():
    """AdamW's saved state is indexed by parameter position: each saved moment has the shape of the
    parameter that position holds now."""
    import torch

    from chatrnn.models.charlm import CharLM, CharLMConfig
    from chatrnn.train.trainer import param_groups

    cfg = json.loads((DATA / "charlm_v1" / ckpt.CONFIG).read_text("utf-8"))
    model = CharLM(CharLMConfig.from_dict(cfg["model"]))
    state = torch.load(DATA / "charlm_v1" / ckpt.TRAIN_STATE, weights_only=True)["optimizer"]
    params = [p for g in param_groups(model, 0.01) for p in g["params"]]
    saved = [i for g in state["param_groups"] for i in g["params"]]
    assert len(saved) == len(params)
    for i, p in zip(saved, params):
        assert state["state"][i]["exp_avg"].shape == p.shape
