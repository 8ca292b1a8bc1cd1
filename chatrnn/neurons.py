"""Find the interpretable units: score every unit of a char LM against features of the text it reads.

Karpathy, Johnson and Fei-Fei (2015, "Visualizing and Understanding Recurrent Networks") found
single LSTM cells that track quotes, brackets or the position in a line. This module makes that
search a function: :func:`text_features` computes per-character features from the text alone,
:func:`score_units` scores every unit (layer, index, in h and, for an LSTM, c) against each one.

Scores, per (unit, feature):

* ``score``: point-biserial correlation (Pearson against a 0/1 feature) for binary features,
  Spearman's rank correlation for ordinal ones (position in line, bracket depth). Signed.
* ``auc``: how well the unit ALONE separates the feature: the rank-based (Mann-Whitney) area under
  the ROC curve of the unit's value as a classifier, reported as max(auc, 1 - auc) with ``sign``
  +1 when high values mean "feature present", -1 when low values do. An ordinal feature is
  thresholded at its median (present = above the median) for its AUC.

Ranks use average ranks for ties (numpy only; no scipy). A feature that is constant on the text
(no digits in it, say) cannot be scored and is reported with no units. Each character's value is
the state after the model read it, and each feature is defined for that same moment: "inside
quotes" is 1 at the opening quote and 0 at the closing one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from chatrnn.errors import ChatrnnError
from chatrnn.probe import Trace

BINARY, ORDINAL = "binary", "ordinal"

# Common Korean particles (josa) that close a word: the longest match wins.
KOREAN_PARTICLES = (
    "에서부터",
    "으로부터",
    "에게서",
    "한테서",
    "에서",
    "에게",
    "한테",
    "께서",
    "으로",
    "까지",
    "부터",
    "처럼",
    "보다",
    "이나",
    "하고",
    "마다",
    "조차",
    "은",
    "는",
    "이",
    "가",
    "을",
    "를",
    "에",
    "의",
    "도",
    "로",
    "와",
    "과",
    "만",
    "께",
    "랑",
)
OPEN_QUOTES, CLOSE_QUOTES = "\u201c", "\u201d"  # “ ”; a plain " toggles
OPEN_BRACKETS, CLOSE_BRACKETS = "([{", ")]}"
VOWELS = set("aeiouAEIOU")
# A line that is a speaker's name: "ROMEO:" / "First Citizen:" (Tiny Shakespeare; every word
# capitalised, nothing after the colon), or a transcript's "ALICE: hello" (the name in capitals).
_NAME_LINE = re.compile(r"[^\W\d_a-z][^\W\d_]*(?:[ '.-][^\W\d_a-z][^\W\d_]*){0,4}:[ \t]*")
_CAPS_NAME = re.compile(r"(?:[A-Z][A-Z'.-]*|[\uac00-\ud7a3]+)(?: (?:[A-Z][A-Z'.-]*|[\uac00-\ud7a3]+)){0,2}:(?=[ \t])")


def is_hangul_syllable_start(ch: str) -> bool:
    """A precomposed Hangul syllable (U+AC00-U+D7A3: each is one syllable) or a leading consonant
    jamo (U+1100-U+115F, U+A960-U+A97F: where a decomposed syllable starts)."""
    o = ord(ch)
    return 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x115F or 0xA960 <= o <= 0xA97F


def _is_hangul(ch: str) -> bool:
    o = ord(ch)
    return 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0xA960 <= o <= 0xA97F or 0xD7B0 <= o <= 0xD7FF


@dataclass
class Feature:
    name: str
    kind: str  # BINARY | ORDINAL
    values: np.ndarray  # (T,) float32
    description: str = ""


def _speaker_lines(text: str, out: np.ndarray) -> None:
    start = 0
    for line in text.split("\n"):
        stripped = line.rstrip("\r")
        m = _NAME_LINE.fullmatch(stripped) if len(stripped) <= 48 else None
        if m is not None:
            out[start : start + len(stripped)] = 1
        else:
            m = _CAPS_NAME.match(stripped)
            if m is not None:
                out[start : start + m.end()] = 1
        start += len(line) + 1


def _particles(text: str, out: np.ndarray) -> None:
    """1 on the particle closing a Hangul word of at least two syllables."""
    for m in re.finditer(r"[\uac00-\ud7a3]{2,}", text):
        word = m.group()
        for p in KOREAN_PARTICLES:
            if word.endswith(p) and len(word) > len(p):
                out[m.end() - len(p) : m.end()] = 1
                break


def text_features(text: str, regex: dict[str, str] | None = None) -> list[Feature]:
    """Every built-in feature of ``text`` (one value per character), then the ``regex`` ones
    (name -> pattern: 1 on the characters inside a match)."""
    T = len(text)
    quote = np.zeros(T, np.float32)
    depth = np.zeros(T, np.float32)
    pos = np.zeros(T, np.float32)
    word_start = np.zeros(T, np.float32)
    after_nl = np.zeros(T, np.float32)
    upper = np.zeros(T, np.float32)
    digit = np.zeros(T, np.float32)
    vowel = np.zeros(T, np.float32)
    hangul = np.zeros(T, np.float32)
    inside, d, col, prev = False, 0, 0, "\n"
    for t, ch in enumerate(text):
        if ch == '"':
            inside = not inside
        elif ch == OPEN_QUOTES:
            inside = True
        elif ch == CLOSE_QUOTES:
            inside = False
        quote[t] = inside
        if ch in OPEN_BRACKETS:
            d += 1
        elif ch in CLOSE_BRACKETS:
            d = max(0, d - 1)
        depth[t] = d
        pos[t] = col
        col = 0 if ch == "\n" else col + 1
        word_start[t] = ch.isalpha() and not (prev.isalnum() or prev in "'-")
        after_nl[t] = prev == "\n" and t > 0
        upper[t] = ch.isupper()
        digit[t] = ch.isdigit()
        vowel[t] = ch in VOWELS or unicodedata.normalize("NFD", ch)[:1] in VOWELS and ch.isalpha()
        hangul[t] = is_hangul_syllable_start(ch)
        prev = ch
    speaker = np.zeros(T, np.float32)
    _speaker_lines(text, speaker)
    particle = np.zeros(T, np.float32)
    _particles(text, particle)
    feats = [
        Feature("inside quotes", BINARY, quote, 'between an opening and a closing " (or “ ”)'),
        Feature("inside brackets", BINARY, (depth > 0).astype(np.float32), "inside ( ), [ ] or { }"),
        Feature("bracket depth", ORDINAL, depth, "how many brackets are open"),
        Feature("position in line", ORDINAL, pos, "characters since the last newline"),
        Feature("word start", BINARY, word_start, "a letter after a non-letter"),
        Feature("after newline", BINARY, after_nl, "the first character of a line"),
        Feature("uppercase", BINARY, upper, "an uppercase letter"),
        Feature("digit", BINARY, digit, "a digit"),
        Feature("vowel", BINARY, vowel, "a, e, i, o, u (accents included)"),
        Feature("speaker line", BINARY, speaker, "a NAME: line of a play or transcript"),
        Feature("hangul syllable", BINARY, hangul, "a Hangul syllable starts here"),
        Feature("korean particle", BINARY, particle, "a particle (은 는 이 가 을 를 에 의 ...) closing a word"),
    ]
    for name, pattern in (regex or {}).items():
        if name in BUILTIN_FEATURES:
            raise ChatrnnError(f"--feature {name}: a built-in feature has that name; choose another")
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise ChatrnnError(f"--feature {name}: bad regular expression {pattern!r} ({e})") from None
        v = np.zeros(T, np.float32)
        for m in rx.finditer(text):
            v[m.start() : m.end()] = 1
        feats.append(Feature(name, BINARY, v, f"inside a match of /{pattern}/"))
    return feats


#: The built-in features' names, in :func:`text_features`' order (a ``--feature`` may not reuse one).
BUILTIN_FEATURES = (
    "inside quotes",
    "inside brackets",
    "bracket depth",
    "position in line",
    "word start",
    "after newline",
    "uppercase",
    "digit",
    "vowel",
    "speaker line",
    "hangul syllable",
    "korean particle",
)


def parse_features(specs: Iterable[str]) -> dict[str, str]:
    """Every ``--feature NAME=REGEX``: name -> REGEX. A name given twice, or one a built-in feature
    already has, is a one-line error: two features of one name would be indistinguishable in the
    table, the JSON and the report's menu (and a dict would silently keep only the last)."""
    out: dict[str, str] = {}
    for spec in specs:
        name, pattern = parse_feature(spec)
        if name in BUILTIN_FEATURES:
            raise ChatrnnError(f"--feature {name}: a built-in feature has that name; choose another")
        if name in out:
            raise ChatrnnError(f"--feature {name}: given twice")
        out[name] = pattern
    return out


def parse_feature(spec: str) -> tuple[str, str]:
    """``name=REGEX`` -> (name, REGEX), with a one-line error otherwise."""
    name, sep, pattern = spec.partition("=")
    name = name.strip()
    if not sep or not name or not pattern:
        raise ChatrnnError(f"--feature wants NAME=REGEX, not {spec!r}")
    try:
        re.compile(pattern)
    except re.error as e:
        raise ChatrnnError(f"--feature {name}: bad regular expression {pattern!r} ({e})") from None
    return name, pattern


# ----- ranks and scores ---------------------------------------------------------------------------------


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..T down each column of ``x`` (T,) or (T, K), ties sharing their average rank
    (float64 for one column, float32 for a block of unit columns: exact for T < 2**24)."""
    one = x.ndim == 1
    rows = np.ascontiguousarray((x[:, None] if one else x).T)  # (K, T): each sort runs on contiguous memory
    K, T = rows.shape
    order = np.argsort(rows, axis=1)
    ranks = np.empty((K, T), np.float64 if one else np.float32)
    base = np.arange(1, T + 1, dtype=ranks.dtype)
    for k in range(K):  # row by row: 1-D fancy indexing is several times faster than put_along_axis
        o = order[k]
        ranks[k, o] = base
        s = rows[k, o]
        if T > 1 and (s[1:] == s[:-1]).any():  # ties share the mean of their ranks
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
            ends = np.r_[starts[1:], T]
            ranks[k, o] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks[0] if one else ranks.T


def _standardise(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance (population); constant columns become zeros."""
    x = x - x.mean(axis=0)
    sd = np.sqrt((x * x).mean(axis=0))
    return np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)


@dataclass
class UnitScore:
    layer: int
    unit: int
    state: str  # "h" | "c"
    score: float
    auc: float  # max(auc, 1 - auc)
    sign: int  # +1: high values mean the feature is present; -1: low values do

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "unit": self.unit,
            "state": self.state,
            "score": round(self.score, 4),
            "auc": round(self.auc, 4),
            "sign": self.sign,
        }


@dataclass
class FeatureScores:
    """Every unit's scores for one feature: arrays over units in the order of ``Scores.units``."""

    feature: Feature
    score: np.ndarray  # (U,) signed correlation
    auc: np.ndarray  # (U,) raw AUC (below 0.5: low values mean present)
    positives: int  # characters where the (thresholded) feature is 1
    skipped: str = ""  # why the feature could not be scored, e.g. constant on the text

    def best(self, top: int, by: str = "score") -> list[int]:
        """Unit indices, best first, by |score| or by AUC (either direction)."""
        if self.skipped:
            return []
        key = np.abs(self.score) if by == "score" else np.maximum(self.auc, 1 - self.auc)
        return list(np.argsort(-key, kind="stable")[:top])


@dataclass
class Scores:
    chars: int
    units: list[tuple[str, int, int]]  # (state, layer, unit) per column
    features: list[FeatureScores] = field(default_factory=list)

    def unit_score(self, fs: FeatureScores, k: int) -> UnitScore:
        state, layer, unit = self.units[k]
        a = float(fs.auc[k])
        return UnitScore(layer, unit, state, float(fs.score[k]), max(a, 1 - a), 1 if a >= 0.5 else -1)

    def top(self, fs: FeatureScores, n: int, by: str = "score") -> list[UnitScore]:
        return [self.unit_score(fs, k) for k in fs.best(n, by)]

    def to_json(self, top: int = 10, by: str = "score") -> dict:
        """The ``chatrnn neurons --json`` document."""
        return {
            "features": [
                {
                    "name": fs.feature.name,
                    "kind": fs.feature.kind,
                    "positives": fs.positives,
                    **({"skipped": fs.skipped} if fs.skipped else {}),
                    "units": [u.to_dict() for u in self.top(fs, top, by)],
                }
                for fs in self.features
            ],
            "chars": self.chars,
        }


def _binary_target(f: Feature) -> np.ndarray:
    if f.kind == BINARY:
        return f.values > 0.5
    med = np.median(f.values)
    above = f.values > med
    return above if above.any() else f.values >= med


def score_units(
    trace: Trace, features: Iterable[Feature], progress: Callable[[int, int], None] | None = None
) -> Scores:
    """Score every unit of ``trace`` (h, and c for an LSTM; every layer) against every feature.

    One (T, hidden) block of units at a time: its ranks are computed once and serve both the
    Spearman scores and every feature's AUC, so the cost is one sort per unit plus matrix products.
    """
    features = list(features)
    T = len(trace)
    states = trace.states()
    units = [(s, layer, u) for s in states for layer in range(trace.layers) for u in range(trace.hidden)]
    U = len(units)
    res = Scores(T, units)
    if T == 0:
        res.features = [FeatureScores(f, np.zeros(U), np.full(U, 0.5), 0, "empty text") for f in features]
        return res
    # Feature side: standardised values (binary) or standardised ranks (ordinal), and AUC targets.
    fz, targets, usable = [], [], []
    for f in features:
        y = _binary_target(f)
        n1 = int(y.sum())
        constant = float(f.values.min()) == float(f.values.max())
        usable.append(not constant and 0 < n1 < T)
        v = f.values.astype(np.float64) if f.kind == BINARY else average_ranks(f.values.astype(np.float64))
        fz.append(_standardise(v))
        targets.append(y)
    FZ = np.stack(fz, axis=1)  # (T, F)
    Y = np.stack(targets, axis=1).astype(np.float64)  # (T, F)
    FZ32 = FZ.astype(np.float32)
    n1 = Y.sum(axis=0)
    n0 = T - n1
    ordinal = np.array([f.kind == ORDINAL for f in features])
    score = np.zeros((U, len(features)))
    auc = np.full((U, len(features)), 0.5)
    blocks = [(s, layer) for s in states for layer in range(trace.layers)]
    for b, (s, layer) in enumerate(blocks):
        x = states[s][layer]  # (T, H) float32
        r = average_ranks(x)
        rows = slice(b * trace.hidden, (b + 1) * trace.hidden)
        pearson = _standardise(x).T @ FZ32 / T  # (H, F): point-biserial for binary features
        spearman = _standardise(r).T @ FZ32 / T  # (H, F): Spearman for ordinal ones (FZ holds their ranks)
        score[rows] = np.where(ordinal[None, :], spearman, pearson)
        with np.errstate(invalid="ignore", divide="ignore"):
            a = (r.T.astype(np.float64) @ Y - n1 * (n1 + 1) / 2) / (n1 * n0)  # Mann-Whitney U / (n1 n0)
        auc[rows] = np.where(np.isfinite(a), a, 0.5)
        if progress is not None:
            progress(b + 1, len(blocks))
    for k, f in enumerate(features):
        why = "" if usable[k] else "constant on this text"
        res.features.append(FeatureScores(f, score[:, k], auc[:, k], int(n1[k]) if usable[k] else 0, why))
    return res


def find_neurons(
    gen,
    text: str,
    regex: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Trace, Scores]:
    """The whole search for a loaded ``infer.Generator``: trace ``text`` (gates kept only as
    saturation figures), compute its features, score every unit. Characters the model never saw
    are dropped before anything is computed, so features and states line up."""
    trace = gen.trace(text, keep_gates=False)
    return trace, score_units(trace, text_features(trace.text, regex), progress)
