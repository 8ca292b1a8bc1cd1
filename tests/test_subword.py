"""SubwordTokenizer and StreamDecoder on small in-memory corpora (training takes milliseconds)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from chatrnn.errors import ChatrnnError
from chatrnn.subword import StreamDecoder, SubwordTokenizer

CORPUS = [
    "hello there, how are you today?",
    "I am fine, thank you. And you?",
    "the quick brown fox jumps over the lazy dog",
    "what is your favourite colour?",
    "안녕하세요, 반가워요!",
    "오늘 날씨가 좋네요 😀",
    "사랑해요 ❤️ 정말로",
    "where are you going tonight?",
] * 4

# Korean, emoji (incl. ZWJ and skin-tone sequences), controls, sentencepiece's own "▁", spaces.
MIXED = st.text(alphabet=st.sampled_from(list("ab 안녕世界😀👍🏽\u200d❤️\x01\x7f\t\n▁é\u0301ＡΩ")))
ANY_TEXT = st.one_of(st.text(), MIXED)


@pytest.fixture(scope="module")
def tok() -> SubwordTokenizer:
    return SubwordTokenizer.train(CORPUS, 400)


@settings(deadline=None)
@given(text=ANY_TEXT)
def test_round_trip_is_exact_after_normalisation(tok: SubwordTokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == tok.normalize(text)
    # byte fallback: nothing is unknown, and text never produces special ids
    assert not set(ids) & {tok.PAD, tok.UNK, tok.BOS, tok.EOS, tok.SEP}
    # our decoder agrees with sentencepiece's own on everything encode can produce
    assert tok.decode(ids) == tok._sp.decode(ids)


def test_normalize_is_what_round_trips() -> None:
    assert SubwordTokenizer.normalize("  a\t\tb\n▁c ＡＢ  ") == "a b c AB"
    assert SubwordTokenizer.normalize("▁") == ""


def test_unseen_characters_use_bytes(tok: SubwordTokenizer) -> None:
    ids = tok.encode("世")
    assert [tok.piece_text(i) for i in ids] == [" ", "<0xE4>", "<0xB8>", "<0x96>"]  # UTF-8 of 世
    assert tok.decode(ids) == "世"
    assert tok.id_to_piece(ids[-1]) == "<0x96>"


def test_piece_text(tok: SubwordTokenizer) -> None:
    ids = tok.encode("hello there")
    assert "".join(tok.piece_text(i) for i in ids) == " hello there"
    assert [tok.piece_text(i) for i in (tok.PAD, tok.UNK, tok.BOS, tok.EOS, tok.SEP)] == [
        "<pad>",
        "<unk>",
        "<s>",
        "</s>",
        "<sep>",
    ]
    with pytest.raises(ChatrnnError, match="outside"):
        tok.piece_text(tok.vocab_size)


def test_special_ids_and_decode_skips_them(tok: SubwordTokenizer) -> None:
    assert (tok.PAD, tok.UNK, tok.BOS, tok.EOS, tok.SEP) == (0, 1, 2, 3, 4)
    ids = tok.encode("hello")
    assert tok.decode([tok.BOS, *ids, tok.EOS, tok.PAD, tok.PAD]) == "hello"
    assert tok.decode([*ids, tok.SEP, *ids]) == "hello\nhello"
    assert tok.encode("<sep> <s>") == tok.encode("<sep> <s>") and tok.SEP not in tok.encode("<sep>")
    with pytest.raises(ChatrnnError, match="model and tokenizer do not match"):
        tok.decode([tok.vocab_size + 5])


@settings(deadline=None)
@given(data=st.data())
def test_decode_matches_sentencepiece_on_any_ids(tok: SubwordTokenizer, data: st.DataObject) -> None:
    # Any ids a model might generate (bad byte runs, <unk>, stray "▁"), except SEP which
    # sentencepiece renders as nothing and we render as a newline. PAD/BOS/EOS are skipped
    # outright by us; sentencepiece lets them split a byte run, hence the filtered comparison.
    ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1).filter(lambda i: i != tok.SEP), max_size=30))
    assert tok.decode(ids) == tok._sp.decode([i for i in ids if i not in (tok.PAD, tok.BOS, tok.EOS)])


@settings(deadline=None)
@given(data=st.data())
def test_stream_decoder_concatenation_equals_decode(tok: SubwordTokenizer, data: st.DataObject) -> None:
    ids = data.draw(st.one_of(ANY_TEXT.map(tok.encode), st.lists(st.integers(0, tok.vocab_size - 1), max_size=30)))
    stream = StreamDecoder(tok)
    parts = [stream.feed(i) for i in ids]
    assert "".join(parts) + stream.finish() == tok.decode(ids)


def test_stream_decoder_holds_split_characters(tok: SubwordTokenizer) -> None:
    ids = tok.encode("世 hello")
    stream = StreamDecoder(tok)
    out = [stream.feed(i) for i in ids]
    assert out[:4] == ["", "", "", "世"]  # "▁" dummy prefix, then three byte pieces
    assert "".join(out) == "世 hello" and stream.finish() == ""
    truncated = StreamDecoder(tok)
    assert [truncated.feed(i) for i in ids[:3]] == ["", "", ""]
    assert truncated.finish() == "\ufffd\ufffd"


def test_encode_context_truncates_from_left(tok: SubwordTokenizer) -> None:
    a, b, c = tok.encode("hello there"), tok.encode("안녕하세요"), tok.encode("how are you?")
    assert tok.encode_context(["hello there", "안녕하세요", "how are you?"], 1000) == [*a, tok.SEP, *b, tok.SEP, *c]
    assert tok.encode_context(["hello there", "", "how are you?"], 1000) == [*a, tok.SEP, *c]
    assert tok.encode_context(["hello there", "안녕하세요", "how are you?"], len(c) + 2) == [b[-1], tok.SEP, *c]
    assert tok.encode_context([], 5) == []
    with pytest.raises(ChatrnnError):
        tok.encode_context(["hi"], 0)


def test_bytes_and_file_round_trip(tok: SubwordTokenizer, tmp_path: Path) -> None:
    again = SubwordTokenizer.from_bytes(tok.to_bytes())
    path = tmp_path / "ckpt" / "tokenizer.model"
    tok.save(path)
    loaded = SubwordTokenizer.load(path)
    assert list(tmp_path.joinpath("ckpt").iterdir()) == [path]  # no temp file left behind
    for text in [*CORPUS[:8], "世界 😀 \x01"]:
        assert again.encode(text) == loaded.encode(text) == tok.encode(text)
    assert loaded.vocab_size == tok.vocab_size and loaded.to_bytes() == tok.to_bytes()


def test_bad_model_files(tmp_path: Path) -> None:
    with pytest.raises(ChatrnnError, match="does not exist"):
        SubwordTokenizer.load(tmp_path / "missing.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ChatrnnError, match="garbage.model is not a sentencepiece model"):
        SubwordTokenizer.load(garbage)
    foreign = io.BytesIO()  # a plain sentencepiece model: different special ids, no byte fallback
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=foreign, vocab_size=60, minloglevel=2)
    with pytest.raises(ChatrnnError, match="not made by chatrnn"):
        SubwordTokenizer.from_bytes(foreign.getvalue())


def test_vocab_is_capped_on_a_tiny_corpus() -> None:
    tok = SubwordTokenizer.train(["hi there", "hi you"], 8000)
    assert SubwordTokenizer.MIN_VOCAB <= tok.vocab_size < 8000
    assert tok.decode(tok.encode("hi there, 世界")) == "hi there, 世界"
    bpe = SubwordTokenizer.train(["hi there", "hi you"], 8000, "bpe")
    assert bpe.vocab_size < 8000


def test_training_errors() -> None:
    with pytest.raises(ChatrnnError, match="at least 262"):
        SubwordTokenizer.train(CORPUS, 100)
    with pytest.raises(ChatrnnError, match="no text"):
        SubwordTokenizer.train(["", "  \n"], 400)
    with pytest.raises(ChatrnnError, match="unknown tokenizer model type 'word'"):
        SubwordTokenizer.train(CORPUS, 400, "word")
    many_chars = ["".join(chr(0xAC00 + i + j) for j in range(10)) for i in range(0, 2000, 10)]
    with pytest.raises(ChatrnnError, match="too small for this corpus.*at least"):
        SubwordTokenizer.train(many_chars, 400)


def test_many_rare_characters_fall_back_to_bytes() -> None:
    # 2,100 distinct Hangul syllables (100 common, 2,000 seen once) do not all fit a 2,100
    # vocabulary beside the 261 fixed pieces; the rarest go to bytes instead of failing.
    common = "".join(chr(0xAC00 + i) for i in range(100))
    rare = ["".join(chr(0xB000 + i + j) for j in range(10)) for i in range(0, 2000, 10)]
    tok = SubwordTokenizer.train([common] * 200 + rare, 2100)
    assert tok.vocab_size == 2100
    assert any(tok._sp.is_byte(i) for i in tok.encode(rare[-1]))
    for t in [common, *rare]:
        assert tok.decode(tok.encode(t)) == t


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_training_is_deterministic(model_type: str) -> None:
    a = SubwordTokenizer.train(CORPUS, 400, model_type, seed=3)
    b = SubwordTokenizer.train(iter(CORPUS), 400, model_type, seed=3)
    assert a.to_bytes() == b.to_bytes()


WORDS = "hello there how are you today fine thank quick brown fox jumps over lazy dog weather rain 오늘 날씨".split()


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def wordy(request) -> SubwordTokenizer:
    """Pieces longer than a character, so a text has many segmentations to sample from."""
    import random

    rng = random.Random(0)
    return SubwordTokenizer.train(
        [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(300)], 400, request.param
    )


def test_sampled_segmentations_vary_by_seed_and_repeat_for_one(wordy: SubwordTokenizer) -> None:
    """Subword regularisation: seeds give different cuts of the same text, one seed gives the same
    cut again (in another thread too: sentencepiece's sampler is reseeded, not left running)."""
    import threading

    texts = ["hello there quick brown fox today", "weather rain 오늘 날씨"]
    first = wordy.sample_encode(texts, 0.1, 5)
    assert wordy.sample_encode(texts, 0.1, 5) == first
    elsewhere: dict = {}
    t = threading.Thread(target=lambda: elsewhere.update(ids=wordy.sample_encode(texts, 0.1, 5)))
    t.start()
    t.join()
    assert elsewhere["ids"] == first
    cuts = {tuple(wordy.sample_encode(texts[:1], 0.1, seed)[0]) for seed in range(10)}
    assert len(cuts) >= 3


@settings(deadline=None, max_examples=60)
@given(text=ANY_TEXT, seed=st.integers(0, 2**32 - 1), alpha=st.floats(0.01, 1.0))
def test_a_sampled_segmentation_decodes_to_the_text(
    wordy: SubwordTokenizer, text: str, seed: int, alpha: float
) -> None:
    (ids,) = wordy.sample_encode([text], alpha, seed)
    assert wordy.decode(ids) == wordy.normalize(text)
    assert not set(ids) & {wordy.PAD, wordy.UNK, wordy.BOS, wordy.EOS, wordy.SEP}
