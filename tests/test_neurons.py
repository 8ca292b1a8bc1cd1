"""The neuron search: the text features mark what they say, the ranks, correlations and AUCs match
their textbook definitions computed the slow way, a unit built to track a feature is found first,
and the HTML report is one self-contained page that carries Korean text."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatrnn.errors import ChatrnnError
from chatrnn.neurons import (
    BINARY,
    BUILTIN_FEATURES,
    ORDINAL,
    average_ranks,
    parse_feature,
    parse_features,
    score_units,
    text_features,
)
from chatrnn.neurons_html import render
from chatrnn.probe import Trace, saturation


def feats(text: str, **regex) -> dict[str, np.ndarray]:
    return {f.name: f.values for f in text_features(text, regex)}


def marks(values: np.ndarray) -> str:
    return "".join("#" if v > 0 else "." for v in values)


def test_features_mark_what_they_say():
    text = 'ROMEO:\nBut "soft" (a [b]) 42.\nAnd thus I say:\nALICE: hi\n'
    f = feats(text, num=r"\d+")
    lines = text.split("\n")
    assert marks(f["speaker line"][: len(lines[0])]) == "######"
    say = text.index("And thus")  # a speech line ending in a colon is not a name
    assert f["speaker line"][say : say + len(lines[2])].sum() == 0
    alice = text.index("ALICE")
    assert marks(f["speaker line"][alice : alice + 9]) == "######..."  # the name and its colon
    q = text.index('"soft"')
    assert marks(f["inside quotes"][q : q + 6]) == "#####."  # opening quote in, closing quote out
    b = text.index("(a [b])")
    assert f["bracket depth"][b : b + 7].tolist() == [1, 1, 1, 2, 2, 1, 0]
    assert marks(f["inside brackets"][b : b + 7]) == "######."
    assert f["position in line"][:8].tolist() == [0, 1, 2, 3, 4, 5, 6, 0]
    assert f["after newline"][7] == 1 and f["after newline"][0] == 0
    assert marks(f["word start"][7:13]) == "#....#"  # B, then s after the quote
    assert marks(f["uppercase"][:7]) == "#####.."
    d = text.index("42")
    assert marks(f["digit"][d - 1 : d + 3]) == ".##." and marks(f["num"][d - 1 : d + 3]) == ".##."
    assert marks(f["vowel"][7:10]) == ".#."


def test_hangul_features():
    text = "오늘 날씨가 좋네요. 학교에서 책을 읽어요\n"
    f = feats(text)
    assert f["hangul syllable"].sum() == sum(1 for c in text if "\uac00" <= c <= "\ud7a3")
    assert f["hangul syllable"][text.index(" ")] == 0
    p = f["korean particle"]
    assert p[text.index("가")] == 1  # 날씨 + 가
    assert p[text.index("에서")] == 1 and p[text.index("에서") + 1] == 1 and p[text.index("학교")] == 0
    assert p[text.index("을")] == 1  # 책 + 을
    assert p[text.index("오늘") + 1] == 0  # 늘 is not a particle
    # decomposed (NFD) text: each syllable starts at its leading consonant jamo
    import unicodedata

    nfd = unicodedata.normalize("NFD", "한국")
    assert marks(feats(nfd)["hangul syllable"]) == "#..#.."


@given(st.text(max_size=80))
@settings(max_examples=150, deadline=None)
def test_every_feature_has_one_value_per_character(text):
    for f in text_features(text, {"x": "a+"}):
        assert f.values.shape == (len(text),) and f.kind in (BINARY, ORDINAL)
        if f.kind == BINARY:
            assert set(np.unique(f.values)) <= {0.0, 1.0}


def test_bad_regex_feature_is_a_one_line_error():
    with pytest.raises(ChatrnnError, match="bad regular expression"):
        parse_feature("x=(unclosed")
    with pytest.raises(ChatrnnError, match="NAME=REGEX"):
        parse_feature("noequals")
    assert parse_feature("thee=\\bth(ee|ou)\\b") == ("thee", "\\bth(ee|ou)\\b")


@given(st.lists(st.integers(-3, 3), min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_average_ranks_match_the_definition(values):
    x = np.array(values, dtype=np.float64)
    want = np.array([(x < v).sum() + ((x == v).sum() + 1) / 2 for v in x])
    np.testing.assert_allclose(average_ranks(x), want)
    block = np.stack([x, -x, x * 0], axis=1).astype(np.float32)
    np.testing.assert_allclose(average_ranks(block)[:, 0], want)
    np.testing.assert_allclose(average_ranks(block)[:, 2], (len(x) + 1) / 2)


def slow_auc(x: np.ndarray, y: np.ndarray) -> float:
    """P(x_pos > x_neg) + P(tie) / 2, over every pair."""
    pos, neg = x[y], x[~y]
    return float(
        ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    )


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(average_ranks(a.astype(np.float64)), average_ranks(b.astype(np.float64)))[0, 1])


def test_scores_match_their_definitions():
    rng = np.random.default_rng(0)
    T, L, H = 300, 2, 5
    text = "".join(rng.choice(list("ab (c)\n"), T))
    f = text_features(text)
    by = {x.name: x for x in f}
    h = rng.standard_normal((L, T, H)).astype(np.float32)
    h[1, :, 2] = np.round(h[1, :, 2])  # a unit with many ties
    h[0, :, 3] = by["inside brackets"].values + 0.3 * rng.standard_normal(T)  # a unit that tracks brackets
    c = rng.standard_normal((L, T, H)).astype(np.float32)
    c[1, :, 4] = -by["position in line"].values + rng.standard_normal(T)  # an anti-tracker of the column
    s = score_units(Trace(text, "lstm", h, c), f)
    assert len(s.units) == 2 * L * H and s.chars == T
    fs = {x.feature.name: x for x in s.features}
    for name in ("inside brackets", "word start", "position in line"):
        feat = by[name]
        y = feat.values > 0.5 if feat.kind == BINARY else feat.values > np.median(feat.values)
        for k, (state, layer, unit) in enumerate(s.units):
            x = (h if state == "h" else c)[layer, :, unit]
            assert fs[name].auc[k] == pytest.approx(slow_auc(x, y), abs=1e-9)
            want = np.corrcoef(x, feat.values)[0, 1] if feat.kind == BINARY else spearman(x, feat.values)
            assert fs[name].score[k] == pytest.approx(want, abs=1e-5)
    best = s.top(fs["inside brackets"], 1)[0]
    assert (best.state, best.layer, best.unit, best.sign) == ("h", 0, 3, 1) and best.auc > 0.95
    anti = s.top(fs["position in line"], 1, by="auc")[0]
    assert (anti.state, anti.layer, anti.unit, anti.sign) == ("c", 1, 4, -1) and anti.score < -0.5
    assert fs["digit"].skipped and fs["digit"].positives == 0 and s.top(fs["digit"], 3) == []
    doc = s.to_json(top=3)
    assert doc["chars"] == T and [x["name"] for x in doc["features"]] == [x.name for x in f]
    unit = doc["features"][1]["units"][0]
    assert {"layer", "unit", "state", "score", "auc"} <= set(unit) and unit["state"] in ("h", "c")
    assert all(0.5 <= u["auc"] <= 1 for x in doc["features"] for u in x["units"])


def test_scoring_a_gru_trace_has_no_cell_state_and_empty_text_is_fine():
    rng = np.random.default_rng(1)
    h = rng.standard_normal((1, 50, 4)).astype(np.float32)
    s = score_units(Trace("ab\n" * 16 + "ab", "gru", h, None), text_features("ab\n" * 16 + "ab"))
    assert {u[0] for u in s.units} == {"h"}
    e = score_units(Trace("", "lstm", np.zeros((1, 0, 4), np.float32), np.zeros((1, 0, 4), np.float32)), [])
    assert e.chars == 0 and e.features == []


def test_html_report_is_self_contained_and_carries_korean():
    rng = np.random.default_rng(2)
    text = "철수: 오늘 날씨가 좋네요.\nROMEO:\nBut soft <!--<script> </script> (what) light\n" * 3
    T, L, H = len(text), 2, 6
    h = np.tanh(rng.standard_normal((L, T, H))).astype(np.float32)
    c = (3 * rng.standard_normal((L, T, H))).astype(np.float32)
    gates = {g: 1 / (1 + np.exp(-3 * rng.standard_normal((L, T, H)))).astype(np.float32) for g in "ifo"}
    gates["g"] = np.tanh(rng.standard_normal((L, T, H))).astype(np.float32)
    tr = Trace(text, "lstm", h, c, gates, None, {g: saturation(v, g) for g, v in gates.items()})
    scores = score_units(tr, text_features(text))
    page = render(tr, scores, top=3, excerpt=90)
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)  # nothing fetched from anywhere
    assert "<link" not in page and "@import" not in page
    blob = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(blob)
    assert data["text"] == text[:90] and "철수" in data["text"] and "<!--<script>" in data["text"]
    # no "<" in the block at all: "<!--<script>" would otherwise keep the block's "</script>" from closing it
    assert "<" not in blob and page.count("</script>") == 2
    unit = data["units"][0]
    q = np.frombuffer(base64.b64decode(unit["q"]), np.int8)
    x = (h if unit["state"] == "h" else c)[unit["layer"], :90, unit["unit"]]
    np.testing.assert_allclose(q / 127 * unit["s"], x, atol=unit["s"] / 127)
    assert page.count("<svg") == L * 4  # a histogram per layer and gate
    assert {m["feature"] for m in data["menu"]} >= {"speaker line", "hangul syllable", "korean particle"}
    # the menu ranks as the table does: by |score|, or by AUC when asked
    by_auc = json.loads(re.search(r'id="data">(.*?)</script>', render(tr, scores, top=3, by="auc"), re.S).group(1))
    for m, fs in zip(by_auc["menu"], scores.features):
        aucs = [it["auc"] for it in m["units"]]
        assert aucs == sorted(aucs, reverse=True)
        assert [by_auc["units"][it["u"]]["key"] for it in m["units"]] == [
            f"{u.state}{u.layer}:{u.unit}" for u in scores.top(fs, 3, "auc")
        ]


def test_feature_names_are_unique():
    assert parse_features(["the=the", "thou=thou"]) == {"the": "the", "thou": "thou"}
    with pytest.raises(ChatrnnError, match="built-in feature has that name"):
        parse_features(["uppercase=[a-z]"])
    with pytest.raises(ChatrnnError, match="given twice"):
        parse_features(["x=a", "x=b"])
    with pytest.raises(ChatrnnError, match="built-in"):
        text_features("abc", {"vowel": "a"})
    assert [f.name for f in text_features("ab")] == list(BUILTIN_FEATURES)
