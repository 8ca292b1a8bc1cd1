"""The Generate tab's "adapt to a file" (F6 / command palette), driven by the pilot on the real tiny
char model: a path prompt, the work in a worker thread, static vs adapted loss in the status line,
the checkpoint on disk untouched, a bad path reported in one line."""

from __future__ import annotations

import hashlib

from textual.widgets import Input, Static

SIZE = (120, 32)


def _status(app) -> str:
    return str(app.query_one("#gen-status", Static).render())


async def _adapt_via_prompt(pilot, app, path) -> None:
    await pilot.press("f3")
    await pilot.press("f6")
    await pilot.pause()
    box = app.screen.query_one("#prompt-input", Input)
    box.value = str(path)
    await pilot.press("enter")


async def test_adapt_to_a_file_shows_static_and_adapted_loss(make_app, in_checkpoints, fakes, tmp_path):
    weights = in_checkpoints / "charlm" / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    text = tmp_path / "mine.txt"
    text.write_text("how are you\ni am fine thanks\n" * 40, "utf-8")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.gen.model is not None, timeout=30)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Adapt to a file" in titles
        before = [p.detach().clone() for p in app.gen.model.model.parameters()]
        await _adapt_via_prompt(pilot, app, text)
        await fakes.wait_for(pilot, lambda: bool(app.gen.adapt_note), timeout=60)
        status = _status(app)
        assert "adapted to mine.txt" in status and "→" in status and "nats/char" in status
        static, adapted = (float(x) for x in status.split("mine.txt: ")[1].split(" nats")[0].split(" → "))
        assert adapted < static
        after = list(app.gen.model.model.parameters())
        assert any(not (a == b).all() for a, b in zip(after, before))  # later runs use the adapted weights
        # generation still works, and the adapted note stays in view
        await pilot.press(*"how", "enter")
        await fakes.wait_for(pilot, lambda: app.gen.job is not None and app.gen.job.reported)
        assert "adapted to mine.txt" in _status(app)
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest


async def test_adapt_to_a_missing_file_is_one_line(make_app, in_checkpoints, fakes, tmp_path):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await fakes.wait_for(pilot, lambda: app.gen.model is not None, timeout=30)
        await _adapt_via_prompt(pilot, app, tmp_path / "nope.txt")
        await fakes.wait_for(pilot, lambda: "adapt failed" in _status(app), timeout=30)
        assert "nope.txt" in _status(app) and "\n" not in _status(app)
        assert not app.gen.adapt_note and app.gen._adapt_cancel is None
