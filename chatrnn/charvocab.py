"""The character vocabulary of the char LM: the characters of its training text, in code-point order."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class CharVocab:
    """Maps characters to ids and back; stored in the checkpoint's ``config.json`` as a list.

    Sorting by code point makes the vocabulary a pure function of the character set, so the same
    corpus always gives the same ids (and the encoded-corpus cache can be keyed on content alone).
    """

    def __init__(self, chars: Iterable[str]):
        self.chars: list[str] = sorted(set(chars))
        if any(len(c) != 1 for c in self.chars):
            raise ValueError("a CharVocab holds single characters")
        self.index: dict[str, int] = {c: i for i, c in enumerate(self.chars)}
        self._codepoints = np.array([ord(c) for c in self.chars], dtype=np.uint32)

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return ch in self.index

    @property
    def dtype(self) -> np.dtype:
        """The narrowest unsigned integer dtype that holds every id (the corpus array's dtype)."""
        n = len(self.chars)
        return np.dtype(np.uint8 if n <= 256 else np.uint16 if n <= 65536 else np.uint32)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; raises KeyError on a character outside the vocabulary."""
        return [self.index[c] for c in text]

    def split_known(self, text: str) -> tuple[list[int], list[str]]:
        """Ids of the known characters and the distinct unknown ones (in order of appearance)."""
        ids: list[int] = []
        unknown: dict[str, None] = {}
        for c in text:
            i = self.index.get(c)
            if i is None:
                unknown[c] = None
            else:
                ids.append(i)
        return ids, list(unknown)

    def encode_array(self, text: str) -> np.ndarray:
        """Vectorised encoding of a chunk of text (every character must be in the vocabulary).

        Goes through UTF-32 code points and a binary search, so a multi-megabyte chunk costs a few
        array passes instead of a Python loop over characters.
        """
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = np.searchsorted(self._codepoints, cps)
        if ids.size and (ids.max() >= len(self.chars) or not np.array_equal(self._codepoints[ids], cps)):
            raise KeyError("text holds characters outside the vocabulary")
        return ids.astype(self.dtype)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)
