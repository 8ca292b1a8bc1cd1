"""Plain-text corpora for the char LM: reading, validation, and the encoded, memory-mapped stream.

A corpus is encoded once into a compact integer array (uint8/16/32 by vocabulary size) and cached
under a key made of the content hash, so re-running ``chatrnn train`` on a 200 MB file neither
re-reads it into Python strings nor holds it in memory: training reads rows straight from the
memory map.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chatrnn.charvocab import CharVocab
from chatrnn.errors import ChatrnnError
from chatrnn.terminal import shown_path

CHUNK_BYTES = 4 << 20  # 4 MiB: large enough for vectorised encoding, small enough to keep RSS flat
TEXT_SUFFIXES = {".txt", ".text", ".md"}


@dataclass(frozen=True)
class TextSource:
    """One piece of the corpus: a file on disk or text already in memory (the bundled default)."""

    name: str
    path: Path | None = None
    text: str | None = None


def collect_sources(paths: list[str | Path]) -> list[TextSource]:
    """Files named, and the ``.txt`` files (recursively, sorted) of folders named."""
    sources: list[TextSource] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
            if not files:
                raise ChatrnnError(f"folder {p} holds no .txt files")
            # the name is for people (progress, errors, config.json): never a file name's raw bytes
            sources += [TextSource(shown_path(f), path=f) for f in files]
        elif p.is_file():
            sources.append(TextSource(shown_path(p), path=p))
        elif p.exists():  # a link to /dev/zero, a FIFO: would read forever or block
            raise ChatrnnError(f"corpus {shown_path(p)} is not a regular file (a device, FIFO or socket)")
        else:
            raise ChatrnnError(f"corpus {shown_path(p)} does not exist")
    return sources


def iter_text(src: TextSource, encoding: str = "utf-8") -> Iterator[str]:
    """The decoded text of a source in chunks, with clear errors for binary or mis-encoded files."""
    if src.text is not None:
        yield src.text
        return
    assert src.path is not None
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ChatrnnError(f"unknown encoding {encoding!r}") from None
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    bom_checked = encoding.lower().replace("_", "-") not in ("utf-8", "utf8")
    try:
        f = open(src.path, "rb")
    except OSError as e:
        raise ChatrnnError(f"cannot read {src.path}: {e.strerror}") from None
    with f:
        while True:
            data = f.read(CHUNK_BYTES)
            final = not data
            if (
                data
                and b"\x00" in data
                and encoding.lower().replace("-", "") in ("utf8", "latin1", "ascii", "cp1252", "iso88591")
            ):
                pos = offset + data.index(b"\x00")
                raise ChatrnnError(f"{src.path} looks binary (NUL byte at offset {pos}); give a text file")
            if not bom_checked and data:
                if data.startswith(codecs.BOM_UTF8):
                    data = data[len(codecs.BOM_UTF8) :]
                    offset += len(codecs.BOM_UTF8)
                bom_checked = True
            pending = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                text = decoder.decode(data, final=final)
            except UnicodeDecodeError as e:
                pos = offset - pending + max(e.start, 0)
                raise ChatrnnError(
                    f"{src.path} is not valid {encoding} (byte offset {pos}); pass --encoding (e.g. latin-1)"
                ) from None
            offset += len(data)
            if text:
                yield text
            if final:
                return


def _cache_dir() -> Path:
    env = os.environ.get("CHATRNN_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return platformdirs.user_cache_path("chatrnn") / "corpus"


@dataclass
class EncodedCorpus:
    """The corpus as ids: ``data`` is a read-only memory map of the whole stream."""

    vocab: CharVocab
    data: np.ndarray
    names: list[str]
    digest: str

    def __len__(self) -> int:
        return int(self.data.shape[0])


def _fingerprint(sources: list[TextSource], encoding: str) -> str:
    h = hashlib.sha256(f"chatrnn-corpus-v1|{encoding}|{len(sources)}".encode())
    for src in sources:
        h.update(b"\x00source\x00")
        if src.text is not None:
            h.update(src.text.encode("utf-8", "surrogatepass"))
        else:
            assert src.path is not None
            try:
                with open(src.path, "rb") as f:
                    while chunk := f.read(CHUNK_BYTES):
                        h.update(chunk)
            except OSError as e:
                raise ChatrnnError(f"cannot read {src.path}: {e.strerror}") from None
    return h.hexdigest()[:32]


def _separated(sources: list[TextSource], encoding: str) -> Iterator[str]:
    """All sources' text, each ending in a newline, so files never run into each other."""
    for src in sources:
        last = ""
        for chunk in iter_text(src, encoding):
            last = chunk
            yield chunk
        if last and not last.endswith("\n"):
            yield "\n"


def encode_corpus(sources: list[TextSource], encoding: str = "utf-8", vocab: CharVocab | None = None) -> EncodedCorpus:
    """Encode (or load from the cache) the concatenated sources as one id stream.

    Two streaming passes (character set, then ids) keep memory flat in the corpus size. ``vocab``
    fixes the vocabulary (a validation file encoded with the training vocabulary); its unknown
    characters are dropped, since they cannot be scored.
    """
    if not sources:
        raise ChatrnnError("no corpus given")
    digest = _fingerprint(sources, encoding)
    cache = _cache_dir()
    names = [s.name for s in sources]
    vocab_key = (
        ""
        if vocab is None
        else "-" + hashlib.sha256("".join(vocab.chars).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    )
    meta_path = cache / f"{digest}{vocab_key}.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
            v = CharVocab(meta["chars"])
            arr = np.memmap(cache / meta["file"], dtype=v.dtype, mode="r", shape=(meta["length"],))
            return EncodedCorpus(v, arr, names, digest)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is simply rebuilt

    if vocab is None:
        chars: set[str] = set()
        total = 0
        for chunk in _separated(sources, encoding):
            chars.update(chunk)
            total += len(chunk)
        if total == 0 or not (chars - {"\n"}):
            raise ChatrnnError(f"corpus {', '.join(names[:3])} is empty")
        vocab = CharVocab(chars)
        drop_unknown = False
    else:
        drop_unknown = True

    cache.mkdir(parents=True, exist_ok=True)
    suffix = {1: "u8", 2: "u16", 4: "u32"}[vocab.dtype.itemsize]
    bin_name = f"{digest}{vocab_key}.{suffix}"
    tmp = cache / f".{bin_name}.{os.getpid()}.tmp"
    tmp_meta = cache / f".{meta_path.name}.{os.getpid()}.tmp"
    length = 0
    try:  # whatever goes wrong (a bad byte mid-file, a full disk, Ctrl-C), no temp file stays
        with open(tmp, "wb") as out:
            for chunk in _separated(sources, encoding):
                if drop_unknown:
                    chunk = "".join(c for c in chunk if c in vocab)
                arr = vocab.encode_array(chunk)
                out.write(arr.tobytes())
                length += arr.size
        if length < 2:
            raise ChatrnnError(f"corpus {', '.join(names[:3])} has too little known text")
        meta = {"chars": vocab.chars, "file": bin_name, "length": length, "sources": names[:50]}
        payload = json.dumps(meta)  # ASCII (\u escapes): no name or character can fail to encode
        os.replace(tmp, cache / bin_name)
        tmp_meta.write_text(payload, "ascii")
        os.replace(tmp_meta, meta_path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
    arr = np.memmap(cache / bin_name, dtype=vocab.dtype, mode="r", shape=(length,))
    return EncodedCorpus(vocab, arr, names, digest)
