"""``--tensorboard DIR``: a real run's scalars read back from the events file with TensorBoard's own
reader; and the one-line error when tensorboard is not installed."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from chatrnn.cli import cli
from chatrnn.train.tensorboard import INSTALL_HINT


def _scalars(logdir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_train_writes_every_scalar_and_val_matches_metrics(tmp_path, sample_text_file):
    pytest.importorskip("tensorboard")
    args = ["train", "charlm", "--corpus", str(sample_text_file), "--preset", "tiny", "--max-steps", "12"]
    args += ["--evals", "2", "--out", str(tmp_path / "run1"), "--tensorboard", str(tmp_path / "tb"), "--quiet"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    tags = _scalars(tmp_path / "tb" / "run1")  # one folder per checkpoint: runs side by side
    assert {"train/loss", "train/lr", "train/grad_norm", "val/loss", "val/perplexity", "val/bpc"} <= tags.keys()
    assert [s for s, _ in tags["train/loss"]] == list(range(1, 13))
    assert all(v > 0 for _, v in tags["train/grad_norm"])
    lines = [json.loads(x) for x in (tmp_path / "run1" / "metrics.jsonl").read_text().splitlines()]
    assert [s for s, _ in tags["val/loss"]] == [m["step"] for m in lines]
    assert [v for _, v in tags["val/loss"]] == pytest.approx([m["val_loss"] for m in lines], rel=1e-6)
    assert [v for _, v in tags["val/bpc"]] == pytest.approx([m["val_bpc"] for m in lines], rel=1e-6)
    assert len(tags["train/lr"]) == 12 and all(v > 0 for _, v in tags["train/lr"])


def test_sink_logs_speed_and_skips_non_finite(tmp_path):
    pytest.importorskip("tensorboard")
    from chatrnn.train.tensorboard import TensorboardSink

    sink = TensorboardSink(tmp_path / "tb")
    sink.step(1, 2.0, 0.01, 1.5, 0.0, "chars")  # before the sink starts: nothing, no error
    sink.start("a run")
    sink.step(1, 2.0, 0.01, 1.5, 0.0, "chars")  # no speed measured yet
    sink.step(2, float("nan"), 0.01, float("inf"), 1234.0, "chars")
    sink.evaluated(2, {"loss": 1.25, "perplexity": 3.49, "tokens": 10})
    sink.close()
    sink.close()
    tags = _scalars(tmp_path / "tb")
    assert tags["train/chars_per_s"] == [(2, 1234.0)]
    assert tags["train/loss"] == [(1, 2.0)] and tags["train/grad_norm"] == [(1, 1.5)]
    assert tags["val/loss"] == [(2, 1.25)] and "val/bpc" not in tags


def test_without_tensorboard_the_flag_is_a_one_line_error(tmp_path, sample_text_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now raises ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    args = ["train", "charlm", "--corpus", str(sample_text_file), "--preset", "tiny", "--max-steps", "2"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "m"), "--tensorboard", str(tmp_path / "tb")])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == ["Error: " + INSTALL_HINT]
    assert not (tmp_path / "m").exists() and not (tmp_path / "tb").exists()  # nothing trained, nothing written
