"""The Runs screen (F4): every checkpoint with its curve, driven by the pilot on real checkpoints;
it follows a run that trains while it is open, and polls by stat alone when nothing changes."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from chatrnn.tui.runs import RunsScreen


def _copy_runs(checkpoints: Path, root: Path) -> Path:
    """The session's real tiny checkpoints, copied so each test may change them.

    Caches other tests leave beside the weights (the Neurons view's ``neurons.json``) are left
    behind: they would change the folder's size, and so the snapshot, with the tests' order."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("charlm", "chat"):
        if (checkpoints / name).is_dir():
            shutil.copytree(checkpoints / name, root / name, ignore=shutil.ignore_patterns("neurons.json"))
    return root


def _app(make_app, fakes):
    return make_app(loader=fakes.Loader(chat=fakes.Responder(), lm=fakes.Generator()))


async def _runs_screen(app, pilot) -> RunsScreen:
    await pilot.press("f4")
    await fakes_wait(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.rescans > 0)
    return app.screen


async def fakes_wait(pilot, cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await pilot.pause(0.05)


def _plot_text(screen: RunsScreen) -> str:
    plot = screen.query_one(PlotextPlot)
    return plot.plt.uncolorize(plot.plt.build())


async def test_f4_lists_every_run_with_its_curve_and_keys_work(make_app, fakes, checkpoints, tmp_path, monkeypatch):
    root = _copy_runs(checkpoints, tmp_path / "ck")
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    app = _app(make_app, fakes)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _runs_screen(app, pilot)
        names = sorted(p.name for p in root.iterdir())
        assert sorted(r.info.name for r in screen.runs) == names
        table = screen.query_one(DataTable)
        assert table.row_count == len(names)
        run = screen.highlighted
        metrics = [json.loads(x) for x in (run.info.path / "metrics.jsonl").read_text().splitlines()]
        assert str(table.get_row_at(0)[2]) == f"{min(m['val_loss'] for m in metrics):.3f}"  # best val, from the curve
        assert str(table.get_row_at(0)[3]) == str(len(metrics))
        assert screen.shown_curves() == [run.curve] and len(run.curve) == len(metrics)
        assert f"{run.info.name}: train and val loss" in _plot_text(screen)
        if len(names) > 1:
            await pilot.press("down")
            assert screen.highlighted is screen.runs[1]
            assert f"{screen.runs[1].info.name}: train and val loss" in _plot_text(screen)
            await pilot.press("c")
            assert len(screen.shown_curves()) == len(names) and "all runs" in _plot_text(screen)
        await pilot.press("x")
        assert screen.x_axis == "time" and "training time" in _plot_text(screen)
        await pilot.press("x")
        assert screen.x_axis == "step"
        await pilot.press("escape")
        await fakes_wait(pilot, lambda: not isinstance(app.screen, RunsScreen))


async def test_a_damaged_run_is_one_word_in_the_table_and_its_reason_is_in_the_plot(
    make_app, fakes, checkpoints, tmp_path, monkeypatch
):
    root = _copy_runs(checkpoints, tmp_path / "ck")
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{not json")
    shutil.copytree(root / "charlm", root / "noweights")
    (root / "noweights" / "model.safetensors").unlink()  # its metrics.jsonl is intact
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    app = _app(make_app, fakes)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _runs_screen(app, pilot)
        table = screen.query_one(DataTable)
        names = [r.info.name for r in screen.runs]
        for name in ("broken", "noweights"):
            assert str(table.get_row_at(names.index(name))[1]) == "unreadable"
        # the reason (30+ characters) used to fill the kind column and push "saved" off the screen
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= 120
        for name in ("broken", "noweights"):
            table.move_cursor(row=names.index(name), animate=False)
            await pilot.pause()
            run = screen.highlighted
            assert run.info.name == name and run.info.problem
            assert f"{name}: {run.info.problem}" in _plot_text(screen)
        assert len(screen.highlighted.curve) > 0  # noweights still shows its curve


async def test_the_view_refreshes_when_metrics_grow_and_only_then(make_app, fakes, checkpoints, tmp_path, monkeypatch):
    root = _copy_runs(checkpoints, tmp_path / "ck")
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    app = _app(make_app, fakes)
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(RunsScreen(poll_s=0.05))
        await fakes_wait(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.rescans > 0)
        screen: RunsScreen = app.screen
        run = next(r for r in screen.runs if r.info.name == "charlm")
        before, rescans = len(run.curve), screen.rescans
        await pilot.pause(0.4)  # ~8 polls with nothing changed: stat only, no rescan
        assert screen.rescans == rescans
        path = root / "charlm" / "metrics.jsonl"
        last = json.loads(path.read_text().splitlines()[-1])
        grown = dict(last, step=last["step"] + 10, val_loss=0.123, elapsed=last["elapsed"] + 1)
        with open(path, "a") as f:  # what the trainer's next evaluation adds
            f.write(json.dumps(grown) + "\n")
        await fakes_wait(pilot, lambda: screen.rescans > rescans)
        run = next(r for r in screen.runs if r.info.name == "charlm")
        assert len(run.curve) == before + 1 and run.curve.best_val() == pytest.approx(0.123)
        row = [r.info.name for r in screen.runs].index("charlm")
        assert screen.query_one(DataTable).get_row_at(row)[2].plain == "0.123"


async def test_a_run_training_meanwhile_appears_and_grows(make_app, fakes, sample_text_file, tmp_path, monkeypatch):
    """A real run trains in a thread (another terminal, as far as the view can tell); after each
    evaluation it waits until the view shows that evaluation before it trains on."""
    from chatrnn.train.charlm import CharLMOptions, train_charlm
    from chatrnn.train.progress import Reporter

    root = tmp_path / "ck"
    root.mkdir()
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    shown = [0]  # evaluations of the live run the view shows, written by the test's loop
    history = []

    class Gate(Reporter):
        evals = 0

        def evaluated(self, step, metrics, best, note=""):
            self.evals += 1  # called just before the save that makes this evaluation visible

        def update(self, *args, **kw):
            deadline = time.monotonic() + 20
            while shown[0] < self.evals and time.monotonic() < deadline:
                time.sleep(0.01)

    errors = []

    def train():
        try:
            opts = CharLMOptions(
                out=root / "live",
                corpus=[str(sample_text_file)],
                preset="tiny",
                train=dict(max_steps=45, evals=3, threads=1),
                device="cpu",
            )
            train_charlm(opts, reporter=Gate(quiet=True))
        except Exception as e:  # surfaced by the assertions below
            errors.append(e)

    app = _app(make_app, fakes)
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(RunsScreen(poll_s=0.05))
        await fakes_wait(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.rescans > 0)
        screen: RunsScreen = app.screen
        assert screen.runs == []
        worker = threading.Thread(target=train, daemon=True)
        worker.start()
        deadline = time.monotonic() + 120
        while shown[0] < 3 and not errors:
            assert time.monotonic() < deadline, history
            await pilot.pause(0.02)
            shown[0] = max((len(r.curve) for r in screen.runs), default=0)
            if not history or history[-1] != shown[0]:
                history.append(shown[0])
        worker.join(30)
        assert not errors, errors
        assert history == [0, 1, 2, 3]  # appeared after its first evaluation, then grew with each
        assert [r.info.name for r in screen.runs] == ["live"]
        assert str(screen.query_one(DataTable).get_row_at(0)[3]) == "3"


def test_runs_snapshot(snap_compare, make_app, fakes, checkpoints, tmp_path, monkeypatch):
    """Fixed metrics, times and modification dates, so the screen is the same on every run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    root = _copy_runs(checkpoints, Path("checkpoints"))
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", "checkpoints")
    for i, folder in enumerate(sorted(root.iterdir())):
        cfg = json.loads((folder / "config.json").read_text())
        cfg["training"]["train_time_s"] = 12.5 * (i + 1)
        # absolute corpus paths: their length (so the folder's size on screen) varies with the temp dir
        cfg["corpus"]["sources"] = ["corpus.txt"]
        if "data" in cfg:
            cfg["data"] = {**cfg["data"], "corpus": ["corpus.txt"], "val_file": None}
        (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        lines = [
            {"step": s, "elapsed": s / 4, "train_loss": 3.5 - 0.2 * k - i / 3, "val_loss": 3.6 - 0.15 * k - i / 3}
            for k, s in enumerate(range(5, 45, 5))
        ]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
        stamp = 1_767_000_000 + 3600 * i
        for f in folder.iterdir():
            os.utime(f, (stamp, stamp))
    app = _app(make_app, fakes)

    async def run_before(pilot):
        app.clear_notifications()
        app.action_runs()
        await pilot.pause(0.2)
        app.screen.action_toggle_compare()
        app.clear_notifications()
        await pilot.pause(0.1)

    try:
        assert snap_compare(app, terminal_size=(110, 32), run_before=run_before)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
