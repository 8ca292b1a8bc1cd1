import os
import pickle

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
