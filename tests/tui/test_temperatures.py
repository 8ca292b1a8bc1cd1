"""Side-by-side temperatures in the Generate tab: the parser, the round-robin of streams, the view
driven through the pilot on the real tiny char model (greedy column = the library's greedy
output; Esc stops every column; each column stored with its temperature), and an SVG snapshot."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatrnn.decoding import GenerateSettings
from chatrnn.errors import ChatrnnError
from chatrnn.tui.temperatures import (
    MAX_COLUMNS,
    MIN_COLUMNS,
    ColumnToken,
    format_temperatures,
    interleave,
    parse_temperatures,
)

SIZE = (120, 36)

temps_st = st.lists(
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False).map(lambda t: round(t, 2)),
    min_size=MIN_COLUMNS,
    max_size=MAX_COLUMNS,
)


@given(temps_st, st.sampled_from([" ", ",", ", ", ";", "  "]))
def test_parse_round_trips(temps, sep):
    assert parse_temperatures(sep.join(str(t) for t in temps)) == tuple(temps)
    assert parse_temperatures(format_temperatures(temps)) == tuple(temps)


@given(st.lists(st.floats(min_value=0.0, max_value=10.0), max_size=8).filter(lambda x: not 2 <= len(x) <= 4))
def test_parse_refuses_the_wrong_number_of_values(temps):
    with pytest.raises(ChatrnnError, match="2 to 4"):
        parse_temperatures(" ".join(map(str, temps)))


@given(
    st.one_of(
        st.floats(max_value=-1e-6),
        st.floats(min_value=10.000001),
        st.just(float("nan")),
        st.just(float("inf")),
        st.text(alphabet="abcxyz-+e", min_size=1, max_size=5),
    )
)
def test_parse_refuses_bad_values_in_one_line(bad):
    with pytest.raises(ChatrnnError) as e:
        parse_temperatures(f"0.5 {bad}")
    assert "\n" not in str(e.value)


class _T:
    def __init__(self, text):
        self.text = text


def test_interleave_round_robin_and_closes_every_stream():
    closed = []

    def stream(name, n):
        try:
            for i in range(n):
                yield _T(f"{name}{i}")
        finally:
            closed.append(name)

    out = [(t.column, t.text) for t in interleave([stream("a", 3), stream("b", 1), stream("c", 2)])]
    assert out == [(0, "a0"), (1, "b0"), (2, "c0"), (0, "a1"), (2, "c1"), (0, "a2")]
    assert sorted(closed) == ["a", "b", "c"]
    # abandoned early (the user pressed Esc): every stream is closed, not only the current one
    closed.clear()
    gen = interleave([stream("a", 100), stream("b", 100)])
    assert [next(gen).column for _ in range(3)] == [0, 1, 0]
    assert isinstance(next(gen), ColumnToken)
    gen.close()
    assert sorted(closed) == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# the view, on the real tiny char model


def _columns(app):
    from chatrnn.tui.temperatures import TemperatureColumns

    return app.query_one(TemperatureColumns)


async def test_side_by_side_on_the_real_model(make_app, in_checkpoints, fakes):
    app = make_app(generate_settings=GenerateSettings(length=40, rng_seed=7))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.gen.model is not None, timeout=60)
        await pilot.press("f3", "ctrl+b")
        assert app.gen.view == "temperatures"
        assert not app.query_one("#gen-body").display and _columns(app).display
        box = app.query_one("#gen-temps")
        box.value = "0 1.5"
        await pilot.pause()
        assert len(_columns(app).columns) == 2
        assert [c.display for c in app.query("TemperatureColumn")] == [True, True, False, False]
        app.query_one("#gen-seed").value = "hello"
        app.gen.action_generate()
        await fakes.wait_for(pilot, lambda: app.gen.job is not None and app.gen.job.reported, timeout=60)
        job = app.gen.job
        assert job.temperatures == (0.0, 1.5) and job.error is None
        greedy, hot = (job.column_text(i) for i in range(2))
        assert len(greedy) == len(hot) == 40
        # the greedy column is exactly what the library's greedy generation gives
        assert greedy == app.gen.model.generate("hello", length=40, temperature=0.0)
        assert greedy != hot
        cols = _columns(app).columns
        assert [c.output.plain for c in cols] == ["hello" + greedy, "hello" + hot]
        # each column has its own candidates; greedy is sure of every character
        assert all(len(c.candidates.steps) == 40 for c in cols)
        assert cols[0].mean_p() == pytest.approx(1.0)
        assert cols[1].mean_p() < 1.0
        await pilot.pause(0.2)
        # stored: the seed, then one reply per column with its own temperature and the shared seed
        (conv,) = [c for c in app.store.list_conversations() if c.mode == "generate"]
        msgs = app.store.messages(conv.id)
        assert [m.role for m in msgs] == ["user", "bot", "bot"]
        assert [m.meta["settings"]["temperature"] for m in msgs[1:]] == [0.0, 1.5]
        assert {m.meta["settings"]["rng_seed"] for m in msgs[1:]} == {7}
        assert [m.text for m in msgs[1:]] == [greedy, hot]
        # ctrl+t hides and shows the columns' candidates; ctrl+b goes back to one text
        await pilot.press("ctrl+t")
        assert not cols[0].candidates.display and not app.gen.show_candidates
        await pilot.press("ctrl+b")
        assert app.gen.view == "text" and app.query_one("#gen-body").display


async def test_esc_stops_every_column(make_app, in_checkpoints, fakes):
    app = make_app(generate_settings=GenerateSettings(length=1_000_000))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.gen.model is not None, timeout=60)
        app.action_tab("generate")
        app.gen.set_view("temperatures")
        app.query_one("#gen-temps").value = "0.5 0.8 1.1 2"
        await pilot.pause()
        assert app.gen.start("to be")
        await fakes.wait_for(pilot, lambda: app.gen.job.count > 40, timeout=30)
        threads_before = threading.active_count()
        fakes.send_key(app, "escape")
        await fakes.wait_for(pilot, lambda: app.gen.job.reported, timeout=30)
        job = app.gen.job
        assert job.cancel.is_set() and job.error is None
        lengths = [len(job.column_text(i)) for i in range(4)]
        assert max(lengths) - min(lengths) <= 1  # lockstep: no column ran ahead
        assert 10 < lengths[0] < 1_000_000
        assert "stopped" in app.gen.activity
        assert threading.active_count() <= threads_before


async def test_bad_temperatures_start_nothing(make_app, fakes):
    gen = fakes.Generator()
    app = make_app(loader=fakes.Loader(chat=fakes.Responder(), lm=gen))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.gen.model is not None)
        await pilot.press("f3", "ctrl+b")
        box = app.query_one("#gen-temps")
        box.focus()
        box.value = ""
        await pilot.press(*"0.5", "enter")
        assert box.has_class("invalid")
        assert app.gen.job is None and not gen.calls
        box.value = "0.5 20"
        await pilot.pause()
        assert box.has_class("invalid")
        assert not app.gen.start("x")
        box.value = "0.2 0.9 1.4"
        await pilot.pause()
        assert not box.has_class("invalid") and len(_columns(app).columns) == 3
        await pilot.press("enter")
        await fakes.wait_for(pilot, lambda: app.gen.job is not None and app.gen.job.reported)
        assert sorted(c["temperature"] for c in gen.calls) == [0.2, 0.9, 1.4]


# ---------------------------------------------------------------------------------------------
# snapshot


def temperature_scripted(fakes):
    """A scripted char model whose output depends on the temperature (the higher, the more often
    it strays from its text), deterministic, with candidates that flatten as it rises."""

    class TemperatureScripted(fakes.Generator):
        def token(self, i, c, temperature, candidates, probe):
            from types import SimpleNamespace

            stray = int(temperature * 4)
            p = max(0.2, 1 - temperature / 2)
            if stray and i % (11 - stray) == 5:
                c = "zqxj"[i % 4]
            cands = [(c, p), ("e", (1 - p) / 2), ("s", (1 - p) / 2)]
            return SimpleNamespace(text=c, candidates=cands[:candidates])

    gen = TemperatureScripted("to be or not to be, that is the question\n")
    gen.folder = None
    return gen


def test_snapshot_side_by_side(snap_compare, make_app, fakes):
    app = make_app(
        loader=fakes.Loader(chat=fakes.Responder(), lm=temperature_scripted(fakes)),
        generate_settings=GenerateSettings(length=90, rng_seed=3),
    )

    async def run_before(pilot):
        await fakes.wait_for(pilot, lambda: app.gen.model is not None)
        app.action_tab("generate")
        for box in app.query("Input, TextArea"):
            box.cursor_blink = False
        app.gen.set_view("temperatures")
        app.gen.start("Hamlet: ")
        await fakes.wait_for(pilot, lambda: app.gen.job is not None and app.gen.job.reported)
        # the columns' last layout: their text views shrink to their text and the scrollbars go
        # (a fixed pause here made the snapshot depend on the machine's load)
        outputs = [c.output for c in app.query("TemperatureColumn") if c.display]
        await fakes.wait_for(pilot, lambda: not any(o.show_vertical_scrollbar for o in outputs))
        await pilot.pause(0.1)
        app.gen.set_status("done")
        app.clear_notifications()
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
