"""SVG snapshots of the two views no other chat app has: a reply's attention heatmap and the
candidates per generated character. Scripted models, no cursor blink, no timings on screen.

Update after an intended change of the look: ``pytest tests/tui/test_snapshots.py --snapshot-update``
and check the SVGs under ``__snapshots__`` by eye.
"""

from __future__ import annotations

import time

from chatrnn.decoding import GenerateSettings


def _app(make_app, fakes, **kw):
    app = make_app(
        loader=fakes.Loader(
            chat=fakes.Responder(words=["the", "cat", "sat", "down"]),
            lm=fakes.Generator("to be or not to be, that is the question\n"),
        ),
        **kw,
    )
    return app


async def _settle(pilot, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        await pilot.pause(0.02)


def _quiet(app):
    from textual.widgets import Input, TextArea

    for box in [*app.query(Input), *app.query(TextArea)]:
        box.cursor_blink = False
    app.clear_notifications()


def test_chat_with_attention_heatmap(snap_compare, make_app, fakes):
    app = _app(make_app, fakes)

    async def run_before(pilot):
        await _settle(pilot, lambda: app.chat.model is not None)
        _quiet(app)
        app.chat.submit("where did the cat sit")
        await _settle(pilot, lambda: app.chat.job is not None and app.chat.job.reported)
        app.chat.action_toggle_attention()
        app.chat.set_status("ready")
        app.clear_notifications()
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_generate_with_candidates(snap_compare, make_app, fakes):
    app = _app(make_app, fakes, generate_settings=GenerateSettings(temperature=1.2, length=150))

    async def run_before(pilot):
        await _settle(pilot, lambda: app.gen.model is not None)
        app.action_tab("generate")
        _quiet(app)
        app.gen.action_toggle_candidates()
        app.gen.start("Hamlet: ")
        await _settle(pilot, lambda: app.gen.job is not None and app.gen.job.reported)
        await pilot.pause(0.1)
        app.gen.set_status("done")
        app.clear_notifications()
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(120, 30), run_before=run_before)
