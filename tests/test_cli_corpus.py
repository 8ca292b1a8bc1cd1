"""``chatrnn corpus check``: the report training prints, without training."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from chatrnn.cli import cli

MESSY = (
    "Q,A\n"
    + "".join(f"question {i},answer {i}\n" for i in range(30))
    + (
        "question 1,answer 1\n"  # a duplicate
        "only one field\n"  # malformed, line 33
        ",no question\n"  # malformed, line 34
        "  spaced   out ,  answer\u00a0here \n"  # normalised, kept
    )
)


def test_dialog_report_counts_every_row_and_says_where_the_bad_ones_are(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_text(MESSY, "utf-8")
    r = CliRunner().invoke(cli, ["corpus", "check", str(path)])
    assert r.exit_code == 0, r.output
    out = r.output.splitlines()
    assert out[0] == str(path)
    assert out[1].split() == ["format", "csv", "(detected)"]
    assert out[2].split() == ["conversations", "32", "(64", "turns)"]
    assert out[3].split(None, 1)[1] == "read 34 pairs, kept 31; dropped: 2 malformed, 1 duplicate"
    assert out[4].strip() == f"{path}:33: expected 2 fields, found 1"
    assert out[5].strip() == f"{path}:34: empty 'Q' field"
    assert "'question 0' -> 'answer 0'" in out[6]
    data = json.loads(CliRunner().invoke(cli, ["corpus", "check", str(path), "--json"]).output)
    assert (data["read"], data["kept"], data["dropped"]) == (34, 31, {"malformed": 2, "duplicate": 1})
    assert data["format"] == "csv" and data["kind"] == "dialog"


def test_the_report_is_the_one_training_prints(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_text(MESSY, "utf-8")
    check = CliRunner().invoke(cli, ["corpus", "check", str(path)]).output.splitlines()[3].split(None, 1)[1]
    args = ["train", "chat", "--corpus", str(path), "--preset", "tiny", "--max-steps", "2", "--evals", "1"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    trained = re.search(r"^corpus: (.*)$", r.output, re.M).group(1)
    assert trained == check


def test_text_report_and_forced_kind(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("hello world\nsecond line\n", "utf-8")
    (folder / "b.md").write_text("안녕", "utf-8")  # no final newline: training adds one
    r = CliRunner().invoke(cli, ["corpus", "check", str(folder), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    text = "hello world\nsecond line\n안녕\n"
    assert data["kind"] == "text" and data["files"] == 2
    assert (data["chars"], data["lines"], data["vocab_size"]) == (len(text), 3, len(set(text)))
    assert data["non_ascii_examples"] == sorted("안녕")  # code-point order, like the vocabulary
    play = tmp_path / "play.txt"
    play.write_text("A:\nhi\n\nB:\nhello\n\nA:\nbye\n", "utf-8")
    assert json.loads(CliRunner().invoke(cli, ["corpus", "check", str(play), "--json"]).output)["format"] == (
        "transcript"
    )
    forced = json.loads(CliRunner().invoke(cli, ["corpus", "check", str(play), "--as", "text", "--json"]).output)
    assert forced["kind"] == "text" and forced["lines"] == 8


def test_bad_corpora_are_one_line_errors(tmp_path):
    r = CliRunner().invoke(cli, ["corpus", "check", str(tmp_path / "missing.csv")])
    assert r.exit_code == 1 and "missing.csv does not exist" in r.output and r.output.count("\n") == 1
    (tmp_path / "x.bin").write_bytes(b"\x00\x01")
    r = CliRunner().invoke(cli, ["corpus", "check", str(tmp_path / "x.bin")])
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0 and r.output.startswith("Error: cannot tell")
    empty = tmp_path / "empty.csv"
    empty.write_text("Q,A\n,\n")
    r = CliRunner().invoke(cli, ["corpus", "check", str(empty)])
    assert r.exit_code == 1 and r.output.startswith("Error: no conversations found") and r.output.count("\n") == 1
