"""The Neurons view of the Generate tab: parsing ``layer:unit``, the colour scale, the probe trace,
the ranking cache next to the weights, and the view driven through the pilot on the real tiny
char model (live colouring while it streams, the gate strip at the cursor, the ranking computed
in a worker and cached), plus an SVG snapshot."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatrnn.decoding import GenerateSettings
from chatrnn.errors import ChatrnnError
from chatrnn.tui import neurons as nv

SIZE = (120, 34)


# ---------------------------------------------------------------------------------------------
# parsing and colours


@given(
    st.integers(0, 7),
    st.integers(0, 999),
    st.sampled_from(["", ":h", ":c", ":f", ":i", ":o", ":g"]),
    st.sampled_from([":", ".", ", ", " "]),
)
def test_parse_unit_round_trips(layer, unit, state, sep):
    u = nv.parse_unit(f"{layer}{sep}{unit}{state}", 8, 1000, ("h", "c", "i", "f", "g", "o"))
    assert (u.layer, u.unit, u.state) == (layer, unit, state[1:] or "h")
    assert nv.parse_unit(u.label(), 8, 1000, ("h", "c", "i", "f", "g", "o")) == u


@given(st.text(max_size=12))
def test_parse_unit_refuses_garbage_in_one_line(raw):
    try:
        u = nv.parse_unit(raw, 2, 32)
    except ChatrnnError as e:
        assert "\n" not in str(e)
    else:
        assert 0 <= u.layer < 2 and 0 <= u.unit < 32 and u.state in ("h", "c")


def test_parse_unit_says_what_is_out_of_range():
    with pytest.raises(ChatrnnError, match="layers 0 to 1"):
        nv.parse_unit("2:5", 2, 32)
    with pytest.raises(ChatrnnError, match="units 0 to 31"):
        nv.parse_unit("1:32", 2, 32)
    with pytest.raises(ChatrnnError, match="not one of this model's"):
        nv.parse_unit("1:3:z", 2, 32, ("h", "c"))


@given(st.floats(-5, 5, allow_nan=False))
def test_levels_are_monotone_and_centred(v):
    assert 0 <= nv.level(v) < nv.LEVELS
    assert nv.level(v) <= nv.level(v + 0.2)
    assert nv.level(0.0) == nv.LEVELS // 2
    assert nv.level(float("nan")) == nv.LEVELS // 2
    r, g, b = nv.activation_colour(-1.0)
    assert b > r  # negative is blue
    r, g, b = nv.activation_colour(1.0)
    assert r > b  # positive is red


def test_normalise_per_state():
    v = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    assert nv.normalise(v, "f")[0].tolist() == [-1.0, 0.0, 1.0]  # gates: [0, 1] onto [-1, 1]
    assert nv.normalise(v, "h")[0].tolist() == v.tolist()  # tanh: as it is
    scaled, scale = nv.normalise(np.array([-4.0, 2.0]), "c")  # the cell: by its extreme
    assert scale == 4.0 and scaled.tolist() == [-1.0, 0.5]


def test_show_cell_is_one_visible_cell():
    from rich.cells import cell_len

    for c in ["a", "\n", "\t", "\x1b", "\x9b", "\u200b", "\u2028", "한", "\x7f"]:
        shown = nv.show_cell(c)
        assert len(shown) == 1 and cell_len(shown) >= 1 and shown.isprintable()


def test_probe_trace_keeps_the_last_chars():
    trace = nv.ProbeTrace()
    probe = {k: np.arange(6, dtype=np.float32).reshape(2, 3) for k in ("h", "c", "i", "f", "g", "o")}
    trace.append("ab", None)  # a seed without values
    for _ in range(nv.MAX_CHARS + 5):
        trace.append("x", probe)
    assert trace.states == ("h", "c", "i", "f", "g", "o") and (trace.layers, trace.hidden) == (2, 3)
    assert trace.trim() > 0 and len(trace) <= nv.MAX_CHARS and trace.offset > 0
    s = trace.series(nv.Unit(1, 2, "c"))
    assert s.shape == (len(trace),) and float(s[-1]) == 5.0
    assert trace.at(len(trace) - 1, nv.Unit(0, 1))["f"] == 1.0


# ---------------------------------------------------------------------------------------------
# the ranking cache


def _fake_folder(tmp_path, corpus=None, val_chars=None):
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    cfg = {"kind": "charlm"}
    if corpus is not None:
        cfg["corpus"] = {"sources": corpus, "train_chars": 10, "val_chars": val_chars}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder, cfg


def test_validation_text_is_the_corpus_tail(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("α" * 500, "utf-8")
    (tmp_path / "b.txt").write_text("first " * 100 + "THE END", "utf-8")
    folder, cfg = _fake_folder(tmp_path, ["a.txt", "b.txt"], val_chars=700)
    text, source = nv.validation_text(folder, cfg)
    assert len(text) == 700 and text.endswith("THE END") and text.startswith("α")
    assert "b.txt" in source
    # found relative to the checkpoint's parents too (training ran elsewhere)
    monkeypatch.chdir(folder)
    assert nv.validation_text(folder, cfg)[0] == text
    # gone, or never recorded: None (the view falls back to the generated text)
    (tmp_path / "b.txt").unlink()
    assert nv.validation_text(folder, cfg) is None
    assert nv.validation_text(folder, {"kind": "charlm"}) is None


def test_cache_round_trip_is_atomic_and_follows_the_weights(tmp_path):
    folder, _ = _fake_folder(tmp_path)
    ranking = {
        "features": [{"name": "quote", "units": [{"layer": 0, "unit": 3, "state": "c", "score": 0.5, "auc": 0.9}]}],
        "chars": 1000,
    }
    assert nv.read_cache(folder) is None
    assert nv.write_cache(folder, ranking, "val", "some text") == folder / nv.CACHE_FILE
    assert nv.read_cache(folder)["ranking"] == ranking
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert nv.ranked_units(ranking) == [("quote", nv.Unit(0, 3, "c"), 0.5, 0.9)]
    # new weights (retrained): the cached ranking is void
    st = (folder / "model.safetensors").stat()
    os.utime(folder / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert nv.read_cache(folder) is None
    # a damaged cache file is ignored, not an error
    (folder / nv.CACHE_FILE).write_text("{not json")
    assert nv.read_cache(folder) is None


def test_the_default_unit_is_not_a_rare_features_chance_auc():
    ranking = {
        "chars": 19000,
        "features": [
            {"name": "digit", "positives": 3, "units": [{"layer": 0, "unit": 12, "state": "c", "auc": 0.99}]},
            {"name": "after newline", "positives": 1000, "units": [{"layer": 0, "unit": 70, "auc": 0.9}]},
            {"name": "old cache", "units": [{"layer": 1, "unit": 2, "auc": 0.8}]},  # no counts: kept
        ],
    }
    assert nv.common_features(ranking) == {"after newline", "old cache"}


def test_cache_in_a_read_only_folder_is_skipped(tmp_path):
    folder, _ = _fake_folder(tmp_path)
    os.chmod(folder, 0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        assert nv.write_cache(folder, {"features": []}, "val", "t") is None
    finally:
        os.chmod(folder, 0o755)


# ---------------------------------------------------------------------------------------------
# the view, on the real tiny char model


def _view(app):
    return app.query_one(nv.NeuronsView)


async def test_neurons_view_live_on_the_real_model(make_app, in_checkpoints, fakes):
    cache = in_checkpoints / "charlm" / nv.CACHE_FILE
    cache.unlink(missing_ok=True)
    app = make_app(generate_settings=GenerateSettings(length=120, rng_seed=5))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.gen.model is not None, timeout=60)
        await pilot.press("f3", "ctrl+g")
        view = _view(app)
        assert app.gen.view == "neurons" and view.display and not app.query_one("#gen-body").display
        # the ranking: computed in a worker on the checkpoint's validation text, cached next to the weights
        await fakes.wait_for(pilot, lambda: view.ranking is not None, timeout=120)
        assert view.ranked and cache.is_file()
        cached = nv.read_cache(in_checkpoints / "charlm")
        assert cached["ranking"] == view.ranking and "corpus.txt" in cached["source"]
        assert view.unit == view.best_unit()  # nobody chose one: the most legible unit is shown
        units = app.query_one("#neu-units")
        assert len(units.options) >= len(view.ranked)
        # each ranked unit is one line of the side panel (a wrapped "r +0.65" read as another option)
        room = units.scrollable_content_region.width  # inside the list's padding, its scrollbar shown
        assert units.show_vertical_scrollbar and max(o.prompt.cell_len for o in units.options) <= room
        # a run with every unit probed: the seed is traced, every generated character coloured live
        app.gen.start("hello ")
        await fakes.wait_for(pilot, lambda: app.gen.job.reported, timeout=60)
        job = app.gen.job
        assert job.probe and job.error is None and len(job.text) == 120
        assert view.text == "hello " + job.text
        assert all(v is not None for v in view.trace.values)
        # the live values are the model's: the same as tracing the whole text afterwards
        trace = app.gen.model.trace(view.text)
        for unit in (view.unit, nv.Unit(0, 1, "c"), nv.Unit(trace.layers - 1, trace.hidden - 1, "h")):
            full = (trace.h if unit.state == "h" else trace.c)[unit.layer, :, unit.unit]
            np.testing.assert_allclose(view.trace.series(unit), full, atol=2e-3, rtol=1e-2)
        for gate in ("i", "f", "o"):
            np.testing.assert_allclose(view.trace.series(nv.Unit(0, 2, gate)), trace.gates[gate][0, :, 2], atol=2e-3)
        levels = view.text_view.levels
        want, _ = nv.normalise(view.trace.series(view.unit), view.unit.state)
        assert levels == [nv.level(float(v)) for v in want]
        # typing a unit recolours the text; a unit that does not exist is refused in one line
        box = app.query_one("#neu-unit")
        box.focus()
        box.value = ""
        await pilot.press(*"0:1:c", "enter")
        assert view.unit == nv.Unit(0, 1, "c") and app.focused is view.text_view
        want, _ = nv.normalise(view.trace.series(view.unit), "c")
        assert view.text_view.levels == [nv.level(float(v)) for v in want]
        box.focus()
        box.value = ""
        await pilot.press(*f"{trace.layers}:0", "enter")
        assert box.has_class("invalid") and view.unit == nv.Unit(0, 1, "c")
        # the cursor: Home, then → ; the strip shows the unit's states and gates there
        view.text_view.focus()
        await pilot.press("home", "right")
        assert view.text_view.cursor == 1
        strip = str(app.query_one("#neu-strip").render())
        at = view.trace.at(1, view.unit)
        assert "#1 " in strip and f"c {at['c']:+.3f}" in strip and f"f {at['f']:.2f}" in strip
        await pilot.press("end")
        assert view.text_view.index == len(view.text) - 1
        # a click moves the cursor to the character under the mouse
        await pilot.click("#neu-text", offset=(1 + 3, 0))
        assert view.text_view.cursor == 3
        # a ranked unit picked from the list (arrow keys move through it, each shown at once)
        units = app.query_one("#neu-units")
        units.focus()
        await pilot.press("home", "down")
        picked = units.get_option_at_index(units.highlighted)
        assert view.unit == view.ranked[int(picked.id)][1]
        await pilot.press("enter")
        assert view.unit == view.ranked[int(picked.id)][1] and view.unit_typed
    # a second visit: the cached ranking, not a new one (the file is not rewritten)
    mtime = cache.stat().st_mtime_ns
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.gen.model is not None, timeout=60)
        app.action_tab("generate")
        app.gen.set_view("neurons")
        await fakes.wait_for(pilot, lambda: _view(app).ranking is not None, timeout=30)
        assert cache.stat().st_mtime_ns == mtime


async def test_neurons_view_after_a_plain_run_and_while_streaming(make_app, in_checkpoints, fakes):
    app = make_app(generate_settings=GenerateSettings(length=60, rng_seed=1))
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.gen.model is not None, timeout=60)
        app.action_tab("generate")
        app.gen.start("to be")
        await fakes.wait_for(pilot, lambda: app.gen.job.reported, timeout=60)
        plain = "to be" + app.gen.job.text
        # opened after a plain run: that text is traced in a worker and coloured
        await pilot.press("ctrl+g")
        view = _view(app)
        await fakes.wait_for(pilot, lambda: view.trace.values and view.trace.values[-1] is not None, timeout=30)
        assert view.text == plain
        # a long run: the view grows while the model streams, and Esc stops it
        app.gen.apply_settings(GenerateSettings(length=1_000_000))
        app.gen.start("")
        await fakes.wait_for(pilot, lambda: len(view.trace) > 30, timeout=60)
        assert app.gen.running
        fakes.send_key(app, "escape")
        await fakes.wait_for(pilot, lambda: app.gen.job.reported, timeout=30)
        assert len(view.trace) == min(app.gen.job.count, nv.MAX_CHARS) or view.trace.offset
        # the run's tokens do not keep their probe values (the view has its own bounded copy)
        assert app.gen.job.produced and all(t.probe is None for t in app.gen.job.produced)
        # back to the plain view
        await pilot.press("ctrl+g")
        assert app.gen.view == "text" and not view.display


# ---------------------------------------------------------------------------------------------
# snapshot


def probed_scripted(fakes):
    """A scripted char model with the probe interface: deterministic values that follow the
    text (unit 0 of layer 0 rises inside words, falls at spaces)."""

    class ProbedScripted(fakes.Generator):
        layers, hidden = 2, 4

        def _probe(self, i, c):
            base = np.full((self.layers, self.hidden), 0.1, dtype=np.float32)
            base[0, 0] = -0.9 if c == " " else min(0.9, -0.5 + 0.3 * (i % 6))
            base[1, 3] = 0.8 if c in ",.:" else -0.2
            return {
                "h": base,
                "c": base * 3,
                "i": (base + 1) / 2,
                "f": 1 - (base + 1) / 2,
                "g": base,
                "o": np.full_like(base, 0.5),
            }

        def token(self, i, c, temperature, candidates, probe):
            from types import SimpleNamespace

            return SimpleNamespace(
                text=c, candidates=[(c, 0.9)][:candidates], probe=self._probe(i, c) if probe else None
            )

        def trace(self, text):
            from types import SimpleNamespace

            probes = [self._probe(i, c) for i, c in enumerate(text)]
            stack = {k: np.stack([p[k] for p in probes], axis=1) for k in probes[0]}
            return SimpleNamespace(text=text, h=stack.pop("h"), c=stack.pop("c"), gates=stack)

    gen = ProbedScripted("to be, or not to be: that is the question.\n")
    gen.folder = None
    return gen


def test_snapshot_neurons_view(snap_compare, make_app, fakes):
    app = make_app(
        loader=fakes.Loader(chat=fakes.Responder(), lm=probed_scripted(fakes)),
        generate_settings=GenerateSettings(length=200),
    )

    async def run_before(pilot):
        await fakes.wait_for(pilot, lambda: app.gen.model is not None)
        app.action_tab("generate")
        for box in app.query("Input, TextArea"):
            box.cursor_blink = False
        app.gen.set_view("neurons")
        app.gen.start("Hamlet: ")
        await fakes.wait_for(pilot, lambda: app.gen.job is not None and app.gen.job.reported)
        view = _view(app)
        view.text_view.focus()
        view.text_view.action_jump(12)
        app.gen.set_status("done")
        app.clear_notifications()
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# ---------------------------------------------------------------------------------------------
# Chat: the hidden-state heatmaps beside the attention heatmap


async def test_chat_reply_shows_its_hidden_state_changes(make_app, in_checkpoints, has_chat_model, fakes):
    if not has_chat_model:
        pytest.skip("the chat trainer is not available")
    from chatrnn.decoding import ReplySettings
    from chatrnn.tui.widgets import MessageView, state_changes

    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await fakes.wait_for(pilot, lambda: app.chat.model is not None, timeout=60)
        app.chat.submit("how are you")
        await fakes.wait_for(pilot, lambda: app.chat.job is not None and app.chat.job.reported, timeout=60)
        (bot,) = [v for v in app.query(MessageView) if v.role == "bot"]
        states = bot.states
        assert states and set(states) == {"dec", "enc"}
        model = app.chat.model
        # the same numbers as the library's own Reply (decoder states per piece, encoder outputs)
        reply = model.reply("how are you", [], ReplySettings())
        assert len(states["dec"]["rows"]) == len(bot.pieces) == len(reply.pieces)
        assert states["dec"]["size"] == reply.decoder_states.shape[1]
        assert states["enc"] == state_changes(reply.encoder_states.tolist())
        assert len(states["enc"]["rows"]) == len(bot.prompt_pieces)
        dims = states["dec"]["dims"]
        moves = np.abs(np.diff(reply.decoder_states, axis=0))
        if len(moves):
            np.testing.assert_allclose(np.array(states["dec"]["rows"][1:]), moves[:, dims], atol=2e-3)
        # stored with the reply, and drawn beside the attention heatmap
        (conv,) = app.store.list_conversations()
        stored = [m for m in app.store.messages(conv.id) if m.role == "bot"][-1]
        assert stored.meta["states"] == states
        await pilot.press("ctrl+t")
        await pilot.pause()
        shown = str(bot.attn_view.render())
        assert "decoder: top" in shown and "encoder: top" in shown and f"enc {states['enc']['dims'][0]}" in shown


class StatefulResponder:
    """The scripted responder's replies, each token with a decoder state (deterministic)."""

    def __init__(self, fakes):
        self.inner = fakes.Responder(words=["the", "cat", "sat", "down"])
        self.config, self.folder, self.context_turns = self.inner.config, self.inner.folder, 1

    def prompt_pieces(self, message, history=None, settings=None):
        return self.inner.prompt_pieces(message, history, settings)

    def stream(self, message, history=None, settings=None, cancel=None):
        from types import SimpleNamespace

        for i, t in enumerate(self.inner.stream(message, history, settings, cancel)):
            state = np.zeros(16, dtype=np.float32)
            state[(3 * i) % 16] = 1.0
            state[(5 * i + 1) % 16] = -0.5 * i
            yield SimpleNamespace(text=t.text, piece=t.piece, attention=t.attention, state=state)


def test_snapshot_chat_state_heatmap(snap_compare, make_app, fakes):
    app = make_app(loader=fakes.Loader(chat=StatefulResponder(fakes), lm=fakes.Generator()))

    async def run_before(pilot):
        await fakes.wait_for(pilot, lambda: app.chat.model is not None)
        for box in app.query("Input, TextArea"):
            box.cursor_blink = False
        app.clear_notifications()
        app.chat.submit("where did the cat sit")
        await fakes.wait_for(pilot, lambda: app.chat.job is not None and app.chat.job.reported)
        app.chat.action_toggle_attention()
        bot = [v for v in app.query("MessageView") if v.role == "bot"][-1]
        await fakes.wait_for(pilot, lambda: bot.attention_shown and bot.attn_view.states is not None)
        app.chat.set_status("ready")
        app.clear_notifications()
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(120, 30), run_before=run_before)
