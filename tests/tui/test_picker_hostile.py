"""The model picker over damaged checkpoints (issue 10, item 11), driven by the real Textual pilot:
every damaged folder is one unreadable row with its reason, names are shown as typed (never as
markup), and the app keeps running."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

from chatrnn import checkpoint as ckpt

SIZE = (140, 40)
CLICK = "[@click=app.quit]"


def _edit(path: Path, fn) -> None:
    cfg = json.loads(path.read_text("utf-8"))
    fn(cfg)
    path.write_text(json.dumps(cfg), "utf-8")


def _bad_header(folder: Path) -> None:
    head = json.dumps({"w": {"dtype": "F32", "shape": [{"a": 1}], "data_offsets": [0, 4]}}).encode()
    (folder / ckpt.BEST_WEIGHTS).write_bytes(struct.pack("<Q", len(head)) + head + b"\0" * 4)


def _zero_weights(folder: Path) -> None:
    (folder / ckpt.BEST_WEIGHTS).unlink()
    (folder / ckpt.BEST_WEIGHTS).symlink_to("/dev/zero")


def _deep(folder: Path) -> None:
    (folder / ckpt.CONFIG).write_text('{"kind": "charlm", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "utf-8")


DAMAGE = {
    "bad-shape": (_bad_header, "has shape"),
    "kind-markup": (lambda f: _edit(f / ckpt.CONFIG, lambda c: c.update(kind="[/]")), 'not "[/]"'),
    "bold [b]x[/b]": (lambda f: _edit(f / ckpt.CONFIG, lambda c: c["model"].update(layers=100000)), "model.layers"),
    "deep": (_deep, "nested too deeply"),
    "zero": (_zero_weights, "not a regular file"),
}


def _root(tmp_path: Path, good: Path) -> Path:
    root = tmp_path / "checkpoints"
    root.mkdir()
    shutil.copytree(good, root / CLICK)  # a usable model whose name is Rich markup
    for name, (damage, _) in DAMAGE.items():
        shutil.copytree(good, root / name)
        damage(root / name)
    return root


async def test_the_picker_lists_damaged_checkpoints_as_unreadable_text(tmp_path, checkpoints, make_app, monkeypatch):
    root = _root(tmp_path, checkpoints / "charlm")
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    app = make_app(load_models=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await pilot.pause()
        screen = app.screen
        assert type(screen).__name__ == "ModelPickerScreen"
        infos = {i.name: i for i in screen.infos}
        assert set(infos) == {CLICK, *DAMAGE}
        options = screen.query_one("OptionList")
        shown = {}
        for index, info in enumerate(screen.infos):
            option = options.get_option_at_index(index)
            shown[info.name] = (str(option.prompt), option.disabled)
        for name, (_, reason) in DAMAGE.items():
            text, disabled = shown[name]
            assert disabled and "unreadable" in text and reason in text, (name, text)
        text, disabled = shown[CLICK]
        assert not disabled and text.startswith(CLICK)  # the name as typed: no action, no markup
        # the rendered screen holds the literal names (a markup parse would have eaten the brackets)
        assert CLICK in "".join(str(line) for line in options.render_lines(options.region.reset_offset))
        # choosing the model with the markup name loads it; the app is still there
        options.highlighted = screen.infos.index(infos[CLICK])
        await pilot.press("enter")
        await pilot.pause()
        assert app.is_running


async def test_loading_a_model_named_like_markup_shows_its_name_as_text(tmp_path, checkpoints, make_app, monkeypatch):
    """The name reaches the loading and error messages too: as text, never as an action."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    shutil.copytree(checkpoints / "charlm", root / CLICK)
    _bad_header(root / CLICK)
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    app = make_app(load_models=False)
    async with app.run_test(size=SIZE) as pilot:
        app.load_model("chat", str(root / CLICK))
        for _ in range(200):
            await pilot.pause(0.05)
            if not app.chat.model_loading:
                break
        assert app.is_running and app.chat.model is None
        empty = app.chat.query_one("#chat-empty")
        assert CLICK in str(empty.render())


async def test_the_runs_screen_shows_damaged_and_markup_named_checkpoints_as_text(
    tmp_path, checkpoints, make_app, monkeypatch
):
    """F4's table is fed the same folder: names and reasons are plain Text cells, so `[/]` or a
    click action in a name never reaches Rich's markup parser, and the app keeps running."""
    root = _root(tmp_path, checkpoints / "charlm")
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    app = make_app(load_models=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        screen = app.screen
        assert type(screen).__name__ == "RunsScreen"
        table = screen.query_one("DataTable")
        names = {str(table.get_row_at(i)[0]) for i in range(table.row_count)}
        assert names == {CLICK, *DAMAGE}
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running
