import numpy as np
import pytest

from chatrnn.corpus import text as textmod
from chatrnn.corpus.text import TextSource, collect_sources, encode_corpus, iter_text
from chatrnn.errors import ChatrnnError


def test_folder_of_txt_files_is_read_in_order(tmp_path):
    (tmp_path / "b.txt").write_text("bbb", "utf-8")
    (tmp_path / "a.txt").write_text("aaa\n", "utf-8")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    enc = encode_corpus(collect_sources([tmp_path]))
    assert enc.vocab.decode(enc.data.tolist()) == "aaa\nbbb\n"


def test_korean_and_emoji_survive(tmp_path):
    p = tmp_path / "ko.txt"
    p.write_text("안녕하세요 🙂 세계\n" * 10, "utf-8")
    enc = encode_corpus(collect_sources([p]))
    assert "안" in enc.vocab and "🙂" in enc.vocab
    assert enc.vocab.decode(enc.data.tolist()) == p.read_text("utf-8")


def test_invalid_utf8_names_file_and_byte_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"hello world\n" + b"abc\xff\xfe")
    with pytest.raises(ChatrnnError, match=r"bad.txt.*byte offset 15.*--encoding"):
        encode_corpus(collect_sources([p]))
    enc = encode_corpus(collect_sources([p]), encoding="latin-1")
    assert len(enc) == len(b"hello world\nabc\xff\xfe") + 1


def test_offset_is_right_when_a_bad_byte_follows_a_chunk_boundary(tmp_path, monkeypatch):
    monkeypatch.setattr(textmod, "CHUNK_BYTES", 8)
    p = tmp_path / "bad.txt"
    p.write_bytes("가나다".encode() + b"xx\xc3(")  # 9 bytes of Hangul, then an invalid sequence at 11
    with pytest.raises(ChatrnnError, match="byte offset 11"):
        list(iter_text(TextSource("bad", path=p)))


def test_multibyte_characters_split_across_chunks_decode_intact(tmp_path, monkeypatch):
    monkeypatch.setattr(textmod, "CHUNK_BYTES", 5)
    p = tmp_path / "ko.txt"
    p.write_text("가나다라마바사 🙂 end", "utf-8")
    assert "".join(iter_text(TextSource("ko", path=p))) == p.read_text("utf-8")


@pytest.mark.parametrize(
    "content,match", [(b"", "empty"), (b"\n\n\n", "empty"), (b"PK\x03\x04\x00\x00binary", "binary")]
)
def test_empty_or_binary_corpus_is_a_clear_error(tmp_path, content, match):
    p = tmp_path / "c.txt"
    p.write_bytes(content)
    with pytest.raises(ChatrnnError, match=match):
        encode_corpus(collect_sources([p]))


def test_missing_paths_are_errors(tmp_path):
    with pytest.raises(ChatrnnError, match="does not exist"):
        collect_sources([tmp_path / "nope.txt"])
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ChatrnnError, match="no .txt"):
        collect_sources([tmp_path / "empty_dir"])


def test_encoded_corpus_is_cached_and_memory_mapped(tmp_path, monkeypatch):
    p = tmp_path / "c.txt"
    p.write_text("some text to cache\n" * 50, "utf-8")
    first = encode_corpus(collect_sources([p]))
    assert isinstance(first.data, np.memmap) and first.data.dtype == np.uint8

    def boom(*a, **k):
        raise AssertionError("re-encoded instead of using the cache")

    monkeypatch.setattr(textmod, "_separated", boom)
    second = encode_corpus(collect_sources([p]))
    assert second.digest == first.digest and np.array_equal(first.data, second.data)


def test_changed_content_changes_the_cache_key(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("abc\n", "utf-8")
    a = encode_corpus(collect_sources([p]))
    p.write_text("abd\n", "utf-8")
    b = encode_corpus(collect_sources([p]))
    assert a.digest != b.digest and b.vocab.chars == ["\n", "a", "b", "d"]


def test_fixed_vocabulary_drops_unknown_characters(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("abcxyz\n", "utf-8")
    train = encode_corpus([TextSource("t", text="abc\n")])
    enc = encode_corpus(collect_sources([p]), vocab=train.vocab)
    assert train.vocab.decode(enc.data.tolist()) == "abc\n"
