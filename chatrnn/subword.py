"""Subword tokenizer for the seq2seq chatbot: a thin, safe wrapper over sentencepiece.

Choices, and why:

* **Byte fallback** (256 ``<0xNN>`` pieces): no character is ever ``<unk>``, so a Korean corpus
  with 1,200 distinct syllables, emoji, or text typed at chat time all round-trip.
* **Our normalisation, not sentencepiece's**: sentencepiece runs with the ``identity`` rule and
  every text goes through :meth:`SubwordTokenizer.normalize` first (NFKC, whitespace collapsed to
  single spaces, stripped, and ``▁`` U+2581 turned into a space because sentencepiece uses it as
  its space marker). That is the same :func:`~chatrnn.corpus.dialogs.normalize_text` the corpus
  readers use, so ``decode(encode(t)) == normalize(t)`` exactly, for any ``t``.
* **<sep> is a control symbol**: control symbols are never produced from input text, so a user
  typing ``<sep>`` cannot inject a turn boundary. :meth:`decode` renders it as a newline.
* **Deterministic training**: one thread, no sampling, a fixed seed; the same texts give
  byte-identical models, so checkpoints are reproducible.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from itertools import accumulate
from pathlib import Path

import sentencepiece as spm

from chatrnn.corpus.dialogs import normalize_text
from chatrnn.errors import ChatrnnError

SPACE = "\u2581"  # sentencepiece's visible space, "▁"
UNK_SURFACE = " \u2047 "  # what sentencepiece itself prints for <unk>, kept for consistency
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>", "<sep>")
N_META = len(SPECIALS) + 256  # special pieces + byte pieces, present in every model
MIN_COVERAGE = 0.98  # sentencepiece's lower limit for character_coverage
FEW_CHARS = 1000  # up to this many distinct characters, give every one its own piece
MODEL_TYPES = ("unigram", "bpe")


def _bytewise_replace(err: UnicodeError) -> tuple[str, int]:
    # One U+FFFD per bad byte, as sentencepiece's own decoder does, so ours agrees with it.
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return "\ufffd", err.start + 1


codecs.register_error("chatrnn-bytewise", _bytewise_replace)


class SubwordTokenizer:
    """A trained sentencepiece model with chatrnn's fixed special ids."""

    PAD, UNK, BOS, EOS, SEP = 0, 1, 2, 3, 4
    MIN_VOCAB = N_META + 1

    def __init__(self, processor: spm.SentencePieceProcessor) -> None:
        """Use :meth:`train`, :meth:`from_bytes` or :meth:`load`; they check the model first."""
        self._sp = processor
        self._size = processor.get_piece_size()
        self._byte_value = {
            i: int(processor.id_to_piece(i)[3:5], 16) for i in range(self._size) if processor.is_byte(i)
        }

    # ------------------------------------------------------------ building

    @staticmethod
    def normalize(text: str) -> str:
        """The text :meth:`encode` actually tokenizes; ``decode(encode(t))`` returns exactly this."""
        text = normalize_text(text)
        if SPACE in text:
            text = normalize_text(text.replace(SPACE, " "))
        if any("\ud800" <= ch <= "\udfff" for ch in text):  # lone surrogates cannot be UTF-8 encoded
            text = re.sub("[\ud800-\udfff]", "\ufffd", text)
        return text

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int, model_type: str = "unigram", *, seed: int = 0
    ) -> SubwordTokenizer:
        """Train in memory. ``vocab_size`` is lowered automatically when the corpus cannot fill it
        (compare :attr:`vocab_size` afterwards); rare characters fall back to bytes when the
        vocabulary is too small to give each its own piece."""
        if model_type not in MODEL_TYPES:
            raise ChatrnnError(f"unknown tokenizer model type {model_type!r}; use one of: {', '.join(MODEL_TYPES)}")
        if vocab_size < cls.MIN_VOCAB:
            raise ChatrnnError(
                f"vocab size {vocab_size} is too small: {N_META} ids are taken by byte and special pieces; "
                f"use at least {cls.MIN_VOCAB}"
            )
        sentences = [t for t in (cls.normalize(t) for t in texts) if t]
        if not sentences:
            raise ChatrnnError("no text to train the tokenizer on")
        counts = Counter(ch for s in sentences for ch in s.replace(" ", SPACE))
        counts[SPACE] += len(sentences)  # the dummy prefix sentencepiece adds to each sentence
        spm.set_random_generator_seed(seed)
        vocab, char_budget = vocab_size, vocab_size - N_META
        for _ in range(8):
            try:
                proto = _train_once(sentences, vocab, model_type, _coverage(counts, char_budget))
            except RuntimeError as e:
                msg = str(e)
                if m := re.search(r"Please set it to a value <= (\d+)", msg):
                    vocab = min(int(m.group(1)), vocab - 1)  # corpus too small for this vocabulary
                    char_budget = min(char_budget, vocab - N_META)
                    continue
                if m := re.search(r"smaller than required_chars\. (\d+) vs (\d+)", msg):
                    if _coverage(counts, char_budget) <= MIN_COVERAGE:
                        raise ChatrnnError(
                            f"vocab size {vocab_size} is too small for this corpus: its common characters "
                            f"alone need {m.group(2)} ids; use a vocab size of at least {m.group(2)}"
                        ) from e
                    char_budget -= max(1, int(m.group(2)) - int(m.group(1)))  # float rounding let one more in
                    continue
                raise ChatrnnError(f"tokenizer training failed: {_first_line(msg)}") from e
            return cls.from_bytes(proto)
        raise ChatrnnError(f"tokenizer training failed: could not fit vocab size {vocab_size} to this corpus")

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "tokenizer model") -> SubwordTokenizer:
        """Load a serialized model proto, refusing models whose special ids differ from ours
        (a checkpoint's embeddings are only meaningful with the exact ids it was trained with)."""
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(bytes(data))
        except (RuntimeError, OSError, TypeError, ValueError) as e:
            raise ChatrnnError(f"{source} is not a sentencepiece model ({_first_line(str(e))})") from e
        size = sp.get_piece_size()
        pieces = [sp.id_to_piece(i) for i in range(min(size, len(SPECIALS)))]
        if pieces != list(SPECIALS) or not sp.is_control(cls.SEP):
            raise ChatrnnError(f"{source} was not made by chatrnn: its special pieces are not {', '.join(SPECIALS)}")
        if sum(sp.is_byte(i) for i in range(size)) != 256:
            raise ChatrnnError(f"{source} was not made by chatrnn: it has no byte fallback")
        return cls(sp)

    def to_bytes(self) -> bytes:
        """The serialized model, as stored in ``tokenizer.model`` beside a checkpoint."""
        return self._sp.serialized_model_proto()

    @classmethod
    def load(cls, path: Path) -> SubwordTokenizer:
        """Read a ``tokenizer.model`` file."""
        from chatrnn.checkpoint import read_checked

        path = Path(path)
        try:
            data = read_checked(path)  # a regular file of a sane size: never a link to /dev/zero
        except FileNotFoundError as e:
            raise ChatrnnError(f"{path} does not exist") from e
        except OSError as e:
            raise ChatrnnError(f"cannot read {path}: {e.strerror or e}") from e
        return cls.from_bytes(data, source=str(path))

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename), so a crash never leaves a half-written model."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.to_bytes())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------ using

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials and byte pieces included: the model's embedding size."""
        return self._size

    def encode(self, text: str) -> list[int]:
        """Ids of :meth:`normalize`\\ (text); never contains UNK, PAD, BOS, EOS or SEP."""
        text = self.normalize(text)
        return list(self._sp.encode(text, out_type=int)) if text else []

    def sample_encode(self, texts: list[str], alpha: float, seed: int) -> list[list[int]]:
        """One sampled segmentation of each text: subword regularisation (Kudo 2018), so a model
        trained on them sees each prompt cut several ways and cannot key on one segmentation.

        Unigram: a segmentation drawn from all of them with probability ∝ P(x)^alpha (small alpha:
        closer to uniform). BPE: BPE-dropout (Provilkov et al. 2020), each merge skipped with
        probability alpha. Every result decodes to :meth:`normalize`\\ (text), like :meth:`encode`.
        sentencepiece's sampler is process-global; it is reseeded here so the same texts, alpha and
        seed give the same ids (exact resume), whatever was sampled before.
        """
        spm.set_random_generator_seed(seed)
        out = []
        for text in texts:
            norm = self.normalize(text)
            ids = self._sp.encode(norm, out_type=int, enable_sampling=True, alpha=alpha, nbest_size=-1)
            out.append(list(ids) if norm else [])
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: PAD/BOS/EOS are skipped, SEP becomes a newline, bad bytes become U+FFFD."""
        stream = StreamDecoder(self)
        return "".join(stream.feed(i) for i in ids) + stream.finish()

    def check_id(self, i: int) -> int:
        """``i`` as an int, or a clear error (a model/tokenizer mismatch shows up here)."""
        i = int(i)
        if not 0 <= i < self._size:
            raise ChatrnnError(
                f"token id {i} is outside this tokenizer's 0..{self._size - 1}; model and tokenizer do not match"
            )
        return i

    def id_to_piece(self, i: int) -> str:
        """The raw sentencepiece piece (``▁hello``, ``<0xE3>``, ``<sep>``)."""
        return self._sp.id_to_piece(self.check_id(i))

    def piece_text(self, i: int) -> str:
        """A piece as shown to people: ``▁`` as a space; byte and special pieces kept as written."""
        piece = self.id_to_piece(i)
        if self._sp.is_byte(i) or self._sp.is_control(i) or self._sp.is_unknown(i):
            return piece
        return piece.replace(SPACE, " ")

    def encode_context(self, turns: list[str], max_len: int) -> list[int]:
        """Turns joined by SEP, cut from the left: the latest turns matter most for a reply."""
        if max_len < 1:
            raise ChatrnnError(f"context length must be at least 1 token, not {max_len}")
        ids: list[int] = []
        for turn in turns:
            enc = self.encode(turn)
            if enc:
                if ids:
                    ids.append(self.SEP)
                ids.extend(enc)
        return ids[-max_len:]


class StreamDecoder:
    """Turns ids into text as they are generated, for printing a reply token by token.

    Byte-fallback pieces can split one character over several ids (``<0xE3> <0x85> <0x8B>``);
    their text is held back until the character is complete. Concatenating every :meth:`feed`
    result and :meth:`finish` gives exactly :meth:`SubwordTokenizer.decode`.
    """

    def __init__(self, tokenizer: SubwordTokenizer) -> None:
        """One decoder per generated sequence; it keeps pending bytes and start-of-turn state."""
        self._tok = tokenizer
        self._sp = tokenizer._sp
        self._bytes = codecs.getincrementaldecoder("utf-8")(errors="chatrnn-bytewise")
        self._at_start = True  # the first "▁" of a turn is sentencepiece's dummy prefix, not a space

    def feed(self, i: int) -> str:
        """Text completed by id ``i`` (often empty while a multi-byte character is pending)."""
        i = self._tok.check_id(i)
        if i in (SubwordTokenizer.PAD, SubwordTokenizer.BOS, SubwordTokenizer.EOS):
            return ""
        if i in self._tok._byte_value:
            return self._emit(self._bytes.decode(bytes([self._tok._byte_value[i]])))
        out = self.finish()
        if i == SubwordTokenizer.SEP:
            self._at_start = True
            return out + "\n"
        if self._sp.is_unknown(i):
            return out + self._emit(UNK_SURFACE)
        if self._sp.is_control(i):
            return out
        piece = self._sp.id_to_piece(i)
        if self._at_start and piece.startswith(SPACE):
            piece = piece[1:]
            self._at_start = False
        return out + self._emit(piece.replace(SPACE, " "))

    def finish(self) -> str:
        """Flush bytes still pending (an incomplete character becomes U+FFFD per byte)."""
        return self._emit(self._bytes.decode(b"", final=True))

    def _emit(self, text: str) -> str:
        if text:
            self._at_start = False
        return text


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0] if msg.strip() else "unknown error"


def _coverage(counts: Counter[str], char_budget: int) -> float:
    """A ``character_coverage`` that makes sentencepiece keep at most ``char_budget`` characters.

    sentencepiece adds characters by falling frequency while the covered fraction is below the
    coverage, and fails if they do not fit the vocabulary; with byte fallback the rest are
    still encodable, so we pick the coverage that fits rather than fail (down to 0.98, below
    which sentencepiece refuses and the caller reports the vocabulary as too small).
    """
    target = 1.0 if len(counts) <= FEW_CHARS else 0.9995
    freqs = sorted(counts.values(), reverse=True)
    total = sum(freqs)
    covered = [0, *accumulate(freqs)]
    needed = len(freqs) if target >= 1.0 else next(k for k, c in enumerate(covered) if c / total >= target)
    if needed <= char_budget:
        return target
    k = max(char_budget, 1)
    # strictly between k-1 and k characters' worth; sentencepiece refuses less than 0.98
    return max(MIN_COVERAGE, (covered[k - 1] + covered[k]) / (2 * total))


def _train_once(sentences: list[str], vocab_size: int, model_type: str, coverage: float) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=coverage,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        pad_id=SubwordTokenizer.PAD,
        unk_id=SubwordTokenizer.UNK,
        bos_id=SubwordTokenizer.BOS,
        eos_id=SubwordTokenizer.EOS,
        control_symbols=["<sep>"],
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        max_sentence_length=max(4192, max(len(s.encode("utf-8")) for s in sentences) + 16),
        minloglevel=2,
    )
    return model.getvalue()
