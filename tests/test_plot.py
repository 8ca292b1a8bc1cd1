"""Training curves: ``chatrnn info --plot`` on real checkpoints, and the metrics.jsonl reader."""

from __future__ import annotations

import json
import re
import shutil

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatrnn.cli import cli
from chatrnn.plot import curve_from_metrics, load_curve, render, x_ticks


def _ticks(text: str) -> list[float]:
    """The y-axis tick labels of a plotext plot (numbers left of ``┤``)."""
    return [float(m.group(1)) for m in re.finditer(r"^\s*(-?\d+(?:\.\d+)?)┤", text, re.M)]


def test_info_plot_draws_train_and_val_of_the_run(tiny_charlm):
    r = CliRunner().invoke(cli, ["info", str(tiny_charlm), "--plot", "--height", "16"])
    assert r.exit_code == 0, r.output
    assert "parameters" in r.output  # the description, then the plot
    plot = r.output[r.output.index("train and val loss") :]
    assert "train" in plot and "val" in plot and "step" in plot
    assert "\x1b[" not in plot  # not a terminal: no colour codes
    c = load_curve(tiny_charlm)
    assert len(c) == 2  # the fixture evaluates twice
    values = [v for v in c.train + c.val if v is not None]
    ticks = _ticks(plot)
    # plotext's y axis spans exactly the data: its extreme ticks are the extreme losses
    assert abs(max(ticks) - max(values)) < 0.01 and abs(min(ticks) - min(values)) < 0.01


def test_info_plot_compares_runs_against_time(tiny_charlm, tmp_path):
    other = tmp_path / "other-run"
    shutil.copytree(tiny_charlm, other)
    lines = [json.loads(x) for x in (other / "metrics.jsonl").read_text().splitlines()]
    for m in lines:  # a run that ended much lower, so the axis must stretch to it
        m["val_loss"] = m["val_loss"] / 4
        m["elapsed"] = m["elapsed"] * 100 + 300
    (other / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    r = CliRunner().invoke(cli, ["info", str(tiny_charlm), str(other), "--plot", "--x", "time"])
    assert r.exit_code == 0, r.output
    plot = r.output[r.output.index("train and val loss") :]
    assert "charlm val" in plot and "other-run train" in plot
    assert "training time (minutes)" in plot
    assert abs(min(_ticks(plot)) - min(m["val_loss"] for m in lines)) < 0.01
    r = CliRunner().invoke(cli, ["info", str(tiny_charlm), str(other), "--json"])
    assert [json.loads(x)["path"] for x in r.output.splitlines()] == [str(tiny_charlm), str(other)]


def test_a_run_without_evaluations_is_a_one_line_error(tiny_charlm, tmp_path):
    empty = tmp_path / "fresh"
    shutil.copytree(tiny_charlm, empty)
    (empty / "metrics.jsonl").unlink()
    r = CliRunner().invoke(cli, ["info", str(empty), "--plot"])
    assert r.exit_code == 1 and r.output.strip().splitlines()[-1].startswith("Error: nothing to plot")
    # lines, but not one finite loss in them: the same line, not an empty frame
    (empty / "metrics.jsonl").write_text('{"step": 5, "val_loss": NaN, "train_loss": 1e999}\nnot json\n')
    r = CliRunner().invoke(cli, ["info", str(empty), "--plot"])
    assert r.exit_code == 1 and r.output.strip().splitlines()[-1].startswith("Error: nothing to plot")
    r = CliRunner().invoke(cli, ["info", str(empty), "--plot", "--json"])
    assert r.exit_code == 2 and "--json" in r.output


def test_render_colours_only_when_asked(tiny_charlm):
    c = load_curve(tiny_charlm)
    assert "\x1b[" in render([c], color=True) and "\x1b[" not in render([c])


lines_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "step": st.one_of(st.integers(-5, 50), st.none(), st.text(max_size=2)),
            "elapsed": st.one_of(st.floats(0, 1e4), st.none()),
            "train_loss": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()),
            "val_loss": st.one_of(st.floats(0, 10), st.none(), st.booleans()),
        }
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines_strategy)
def test_curves_move_forward_and_hold_only_finite_numbers(lines):
    c = curve_from_metrics(lines, "run")
    assert c.step == sorted(set(c.step))
    assert len(c.step) == len(c.elapsed) == len(c.train) == len(c.val)
    for v in c.train + c.val:
        assert v is None or (isinstance(v, float) and abs(v) < float("inf"))


def _x_labels(text: str) -> list[str]:
    """The x-axis tick labels of a plotext plot: the line under the frame's bottom edge."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "└" in line)
    return lines[at + 1].split()


def test_a_short_run_has_one_tick_per_step_not_repeated_labels(tiny_charlm, tmp_path):
    short = tmp_path / "short"
    shutil.copytree(tiny_charlm, short)
    lines = [
        {"step": s, "elapsed": s * 0.2, "train_loss": 5.8 - s / 100, "val_loss": 5.77 - s / 100} for s in (1, 2, 3)
    ]
    (short / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    r = CliRunner().invoke(cli, ["info", str(short), "--plot"])
    assert r.exit_code == 0, r.output
    assert _x_labels(r.output[r.output.index("train and val loss") :]) == ["1", "2", "3"]  # was 1 2 2 2 3
    r = CliRunner().invoke(cli, ["info", str(short), "--plot", "--x", "time"])
    labels = _x_labels(r.output[r.output.index("train and val loss") :])
    assert len(labels) == len(set(labels)) == 5


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1e7), st.floats(1e-3, 1e6), st.sampled_from(["step", "time"]))
def test_x_tick_labels_always_differ(lo, span, x):
    if x == "step":
        lo, span = float(round(lo)), float(max(1, round(span)))
    ticks, labels = x_ticks(lo, lo + span, x)
    assert len(ticks) == len(labels) >= 2 and len(set(labels)) == len(labels)
    assert ticks == sorted(ticks) and ticks[0] >= lo - 0.5 and ticks[-1] <= lo + span + 0.5
    if x == "step":
        assert all(t == int(t) for t in ticks) and labels[-1] == f"{int(lo + span):,}"
