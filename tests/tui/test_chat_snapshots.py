"""SVG snapshots of the Chat tab's new views: a regenerated reply ("2/2") with its n-best list and
scores, a multi-line message box, and the ctrl+f search screen. Scripted models, fixed times, no
cursor blink.

Update after an intended change of the look: ``pytest tests/tui/test_chat_snapshots.py
--snapshot-update`` and check the SVGs under ``__snapshots__`` by eye.
"""

from __future__ import annotations

import time
from types import SimpleNamespace


def _quiet(app):
    from textual.widgets import Input, TextArea

    for box in [*app.query(Input), *app.query(TextArea)]:
        box.cursor_blink = False
    app.clear_notifications()


async def _settle(pilot, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        await pilot.pause(0.02)


def _beam_responder(fakes):
    """The scripted responder, with beam search's n-best list (fixed replies and scores)."""

    class Beam(fakes.Responder):
        def stream(self, message, history=None, settings=None, cancel=None, alternatives=None):
            if alternatives is not None:
                for text, score in (("the cat sat down", -0.412), ("a cat sat", -0.873), ("it sat on the mat", -1.205)):
                    words = text.split()
                    alternatives.append(SimpleNamespace(text=text, score=score, pieces=words, attention=[[1.0]] * 3))
            yield from super().stream(message, history, settings, cancel)

    return Beam(words=["the", "cat", "sat", "down"])


def test_snapshot_regenerated_reply_with_nbest_and_multiline_input(snap_compare, make_app, fakes):
    from chatrnn.decoding import ReplySettings

    bot = _beam_responder(fakes)
    app = make_app(loader=fakes.Loader(chat=bot, lm=fakes.Generator()), reply_settings=ReplySettings(beam=3, nbest=3))

    async def run_before(pilot):
        await _settle(pilot, lambda: app.chat.model is not None)
        _quiet(app)
        app.chat.submit("where did the cat sit")
        await _settle(pilot, lambda: app.chat.job is not None and app.chat.job.reported)
        before = app.chat.job
        app.chat.action_regenerate()
        await _settle(pilot, lambda: app.chat.job is not before and app.chat.job.reported)
        app.query_one("#chat-input").value = "and then?\nwhere did it go\nnext"
        app.chat.set_status("ready")
        _quiet(app)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_snapshot_search_screen(snap_compare, make_app, fakes, monkeypatch):
    from chatrnn.tui.store import Store

    monkeypatch.setenv("TZ", "UTC")  # the list shows local times
    time.tzset()

    store = Store(":memory:")
    for title, texts in (
        ("Cooking", ["how long do I boil an egg", "about seven minutes for a boiled egg"]),
        ("Breakfast ideas", ["eggs or pancakes?", "egg on toast is quick"]),
        ("Music", ["play something calm", "how about some piano"]),
    ):
        conv = store.create_conversation(title=title)
        for i, text in enumerate(texts):
            store.add_message(conv.id, "user" if i % 2 == 0 else "bot", text)
    with store._write() as conn:  # fixed times: the list shows them
        conn.execute("UPDATE messages SET created = 1767268800 + id * 3600")  # 2026-01-01, an hour apart
    app = make_app(loader=fakes.Loader(chat=fakes.Responder(), lm=fakes.Generator()), store=store)

    async def run_before(pilot):
        await _settle(pilot, lambda: app.chat.model is not None and app.gen.model is not None)
        await pilot.pause(0.1)
        _quiet(app)  # the models' "loaded" notices, before the dialog covers them
        await pilot.pause(0.1)
        await pilot.press("ctrl+f")
        await pilot.press(*"egg")
        await pilot.pause()
        _quiet(app)
        await pilot.pause(0.1)

    try:
        assert snap_compare(app, terminal_size=(100, 24), run_before=run_before)
    finally:
        monkeypatch.undo()
        time.tzset()
