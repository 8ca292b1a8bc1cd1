"""The chat model's CLI: train chat, reply, eval; bad input gives one line and a non-zero exit."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from chatrnn.cli import cli


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(tmp_path / "checkpoints"))
    for k in ("CHATRNN_TEMPERATURE", "CHATRNN_BEAM", "CHATRNN_TOP_K", "CHATRNN_TOP_P"):
        monkeypatch.delenv(k, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Q", "A"])
        w.writerows(rows)
    return path


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_line_error(result) -> str:
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def trained(tmp_path) -> Path:
    corpus = write_csv(tmp_path / "pairs.csv", [(f"hello number {i}", f"hi {i}") for i in range(20)])
    r = invoke(
        "train", "chat", "--corpus", str(corpus), "--preset", "tiny", "--max-steps", "4", "--evals", "1", "--quiet"
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "checkpoints" / "chat" / "tokenizer.model").is_file()
    return corpus


def test_train_reply_eval(trained, tmp_path, monkeypatch):
    r = invoke("reply", "hello number 3")
    assert r.exit_code == 0, r.output
    assert len(r.output.strip().splitlines()) <= 1
    r = invoke("reply", "hello", "--beam", "3", "--nbest", "2", "--no-repeat-ngram", "2", "--max-len", "5")
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 2
    monkeypatch.setenv("CHATRNN_TEMPERATURE", "0.9")
    assert invoke("reply", "hello", "--rng-seed", "1").exit_code == 0
    r = invoke("eval", "--checkpoint", "chat", "--file", str(trained), "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    for k in ("loss", "perplexity", "bpc", "distinct_1", "distinct_2", "tokens", "pairs"):
        assert k in m
    r = invoke("info", "chat", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["kind"] == "chat"


def test_dry_run_and_resume(trained, tmp_path):
    r = invoke(
        "train", "chat", "--corpus", str(trained), "--preset", "tiny", "--max-steps", "4", "--dry-run", "--out", "plan"
    )
    assert r.exit_code == 0 and "chat model" in r.output
    assert not (tmp_path / "checkpoints" / "plan").exists()
    r = invoke("train", "chat", "--resume", "--max-steps", "6", "--quiet")
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "checkpoints" / "chat" / "config.json").read_text())
    assert cfg["training"]["steps"] == 6


def _rows(output: str) -> dict[str, tuple[str, str]]:
    """The dry run's settings table: name -> (value, where it came from)."""
    table = output.split("settings (value, from):\n", 1)[1].splitlines()
    found = [re.match(r"^  (\S+)\s+(.*?)\s+(flag|checkpoint|preset|default)$", line) for line in table]
    return {m.group(1): (m.group(2), m.group(3)) for m in found if m}


def test_a_typed_lang_beats_the_checkpoint_on_resume(tmp_path):
    """``--lang english`` typed on ``--resume`` is a flag, though it is also the default."""
    from chatrnn.settings import Source
    from chatrnn.train.chat import ChatOptions, resolve_chat

    corpus = write_csv(tmp_path / "pairs.csv", [(f"hello number {i}", f"hi {i}") for i in range(20)])
    r = invoke(
        "train", "chat", "--corpus", str(corpus), "--lang", "korean", "--preset", "tiny", "--max-steps", "2", "--quiet"
    )
    assert r.exit_code == 0, r.output
    out = tmp_path / "checkpoints" / "chat"
    resumed = resolve_chat(ChatOptions(out=out, resume=True), "cpu")
    assert (resumed.lang, resumed.resolved.origin["lang"]) == ("korean", Source.CHECKPOINT)
    typed = resolve_chat(ChatOptions(out=out, resume=True, lang="english"), "cpu")
    assert (typed.lang, typed.resolved.origin["lang"]) == ("english", Source.FLAG)
    assert _rows(invoke("train", "chat", "--resume", "--dry-run").output)["lang"] == ("korean", "checkpoint")
    rows = _rows(invoke("train", "chat", "--resume", "--dry-run", "--lang", "english").output)
    assert rows["lang"] == ("english", "flag")
    assert rows["max_steps"] == ("2", "checkpoint") and rows["vocab_size"][1] == "checkpoint"
    assert rows["label_smoothing"] == ("0", "checkpoint")  # the tiny preset's, stored
    r = invoke("train", "chat", "--resume", "--dry-run", "--tokenizer", "bpe")
    assert "--tokenizer bpe does not match" in one_line_error(r)


def test_every_typed_flag_is_a_flag_setting(tmp_path):
    words = "tea coffee rain sun cats dogs music books trains boats snow wind".split()
    corpus = write_csv(
        tmp_path / "c.csv", [(f"question {i} about {w}", f"answer {i}: {w}") for i, w in enumerate(words)]
    )
    args = [
        *("train", "chat", "--dry-run", "--corpus", str(corpus), "--format", "csv", "--columns", "Q,A"),
        *("--encoding", "utf-8", "--lang", "english", "--val-fraction", "0.2", "--context-turns", "1"),
        *("--max-len", "20", "--vocab-size", "300", "--tokenizer", "bpe", "--preset", "tiny", "--embed", "64"),
        *("--hidden", "64", "--layers", "1", "--attention", "dot", "--dropout", "0.1", "--tie-weights"),
        *("--input-feeding", "--word-dropout", "0.1", "--batch-size", "4", "--label-smoothing", "0.1"),
        *("--teacher-forcing", "0.5", "--subword-sampling", "0.2"),
        *("--tf-decay", "0.9", "--lr", "0.02", "--weight-decay", "0.1", "--warmup", "5", "--min-lr-ratio", "0.1"),
        *("--grad-clip", "2", "--ema", "0.9", "--max-steps", "10", "--epochs", "1", "--max-time", "1m"),
        *("--evals", "2", "--eval-every", "5", "--seed", "3", "--threads", "1", "--no-amp", "--compile"),
    ]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    rows = _rows(r.output)
    assert {name for name, (_, source) in rows.items() if source != "flag"} == {"val_file", "tf_min", "max_src_len"}
    assert rows["max_src_len"] == ("40", "default")  # max_len per turn, prompt and one context turn
    assert rows["columns"][0] == "Q, A" and rows["tokenizer"][0] == "bpe"
    assert rows["subword_sampling"] == ("0.2", "flag")


def test_bad_input_is_one_line(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    one_line_error(invoke("train", "chat", "--corpus", str(empty), "--preset", "tiny", "--max-steps", "1"))
    unusable = tmp_path / "bad.csv"
    unusable.write_text("Q,A\n,\nonly-one\n", encoding="utf-8")
    msg = one_line_error(invoke("train", "chat", "--corpus", str(unusable), "--preset", "tiny", "--max-steps", "1"))
    assert "bad.csv" in msg
    one_line_error(
        invoke("train", "chat", "--corpus", str(tmp_path / "nope.csv"), "--preset", "tiny", "--max-steps", "1")
    )
    assert "train chat" in one_line_error(invoke("reply", "hello"))
    corrupt = tmp_path / "checkpoints" / "corrupt"
    corrupt.mkdir(parents=True)
    (corrupt / "config.json").write_text("{{{")
    one_line_error(invoke("reply", "hello", "--checkpoint", "corrupt"))
    weights = tmp_path / "checkpoints" / "noweights"
    weights.mkdir()
    (weights / "config.json").write_text(json.dumps({"kind": "chat", "format_version": 1, "model": {}}))
    one_line_error(invoke("reply", "hello", "--checkpoint", "noweights"))
    one_line_error(invoke("reply", "   ", "--checkpoint", "noweights"))


def test_help_does_not_import_torch():
    code = (
        "import sys; from click.testing import CliRunner; from chatrnn.cli import cli; "
        "r1 = CliRunner().invoke(cli, ['train', 'chat', '--help']); r2 = CliRunner().invoke(cli, ['reply', '--help']); "
        "assert r1.exit_code == 0 and r2.exit_code == 0; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
