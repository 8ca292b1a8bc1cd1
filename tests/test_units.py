import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatrnn.errors import ChatrnnError
from chatrnn.units import format_duration, parse_duration


@pytest.mark.parametrize(
    "text,seconds",
    [("90", 90), ("110s", 110), ("10m", 600), ("1h30m", 5400), ("1.5h", 5400), (" 2 m ", 120), ("1d", 86400)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "abc", "10x", "-5m", "0", "m"])
def test_parse_duration_rejects(bad):
    with pytest.raises(ChatrnnError):
        parse_duration(bad)


@given(st.integers(min_value=1, max_value=10**6))
def test_format_then_parse_round_trips_whole_seconds(n):
    assert abs(parse_duration(format_duration(n)) - n) <= 0.05 * n + 0.5


@given(st.text(max_size=20))
def test_parse_never_raises_anything_but_a_user_error(text):
    try:
        assert parse_duration(text) > 0
    except ChatrnnError:
        pass
