"""The display helpers (widgets.py) and the chat history shaping: pure functions, no app."""

from __future__ import annotations

import pytest

from chatrnn.tui.chat import history_pairs, model_history, setting_field
from chatrnn.tui.widgets import _break_at, candidates_text, clean_text, heat_colour, heatmap_text, show_piece


def test_history_keeps_turns_aligned():
    turns = [("user", "a"), ("bot", "A"), ("user", "b"), ("user", "c"), ("bot", "C"), ("user", "d")]
    assert history_pairs(turns) == [("a", "A"), ("b", ""), ("c", "C")]
    assert model_history(turns) == ["a", "A", "b", "", "c", "C"]
    assert model_history([]) == []


def test_one_alias_table_covers_the_slash_commands():
    from dataclasses import fields

    from chatrnn.decoding import ReplySettings
    from chatrnn.tui.chat import SETTING_ALIASES

    names = {f.name for f in fields(ReplySettings)}
    assert set(SETTING_ALIASES.values()) <= names
    assert setting_field("maxlen") == "max_len" and setting_field("Top-K") == "top_k"
    assert setting_field("beam") == "beam"  # field names pass through


def test_clean_text_makes_anything_drawable():
    assert clean_text("a\x00b\x1b[31mc\x7f") == "a\u2400b\u241b[31mc\u2421"
    assert clean_text("tab\there\r\nnext") == "tab    here\nnext"
    assert clean_text("x\ud800y") == "x\ufffdy"
    long = clean_text("z" * 10_000)
    assert long.startswith("z" * 4000) and "6,000 more characters" in long
    assert show_piece(" ", 4) == "␣" and show_piece("▁hello", 4) == "▁he…"


def test_heatmap_text_shape_and_marks():
    text = heatmap_text(["▁hi", "▁there"], ["▁hello", "▁you", "<sep>"], [[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]]).plain
    lines = text.splitlines()
    assert lines[0].split() == ["▁hello", "▁you", "<sep>"]
    assert "0.80 → ▁you" in lines[1] and "0.70 → ▁hello" in lines[2]
    assert all(line.count("◆") == 1 for line in lines[1:3])
    # ragged or empty input never raises
    assert "no attention" in heatmap_text([], [], []).plain
    assert heatmap_text(["a"], ["x", "y"], [[1.0]]).plain
    assert heatmap_text(["a", "b"], ["x"], [[float("nan")], [0.0]]).plain
    assert heat_colour(0) != heat_colour(1) and heat_colour(-5) == heat_colour(0)


def test_candidates_text_highlights_the_choice():
    text = candidates_text([("e", [("e", 0.5), ("a", 0.3)]), (" ", [("x", 0.9), (" ", 0.1)])], "header").plain
    lines = text.splitlines()
    assert lines[0] == "header" and "50.0%" in lines[1] and "␣" in lines[2]


@pytest.mark.parametrize(
    "line,width",
    [("hello world foo bar", 7), ("a" * 30, 8), ("안녕하세요 반가워요 😀😀", 5), ("  leading", 3), ("x y", 1)],
)
def test_break_at_fits_and_makes_progress(line, width):
    from rich.cells import cell_len

    rest = line
    while cell_len(rest) > width:
        cut = _break_at(rest, width)
        assert cut >= 1
        assert cell_len(rest[:cut].rstrip(" ")) <= width
        rest = rest[cut:]
