"""Training curves: ``chatrnn info --plot`` on real checkpoints, and the metrics.jsonl reader."""

from __future__ import annotations

import json
import re
import shutil

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatrnn.cli import cli
from chatrnn.plot import curve_from_metrics, load_curve, render


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
