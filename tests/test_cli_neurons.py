"""``chatrnn neurons`` end to end on real tiny models (one trained on Korean text): the table, the JSON
document's shape, the HTML report, user regex features, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from chatrnn.cli import cli

KOREAN = "철수: 안녕하세요, 반가워요! 오늘 날씨가 좋네요.\n영희: 학교에서 책을 읽어요. 친구와 밥을 먹었어요.\n" * 40


@pytest.fixture(scope="module")
def korean_model(tmp_path_factory):
    """A tiny char LM trained for a few steps on Korean dialogue lines."""
    from chatrnn.train.charlm import CharLMOptions, train_charlm

    home = tmp_path_factory.mktemp("korean")
    (home / "ko.txt").write_text(KOREAN, "utf-8")
    mp = pytest.MonkeyPatch()
    mp.setenv("CHATRNN_CACHE", str(home / "cache"))
    try:
        train_charlm(
            CharLMOptions(
                out=home / "ko",
                corpus=[str(home / "ko.txt")],
                preset="tiny",
                train=dict(max_steps=30, evals=1),
                device="cpu",
            )
        )
    finally:
        mp.undo()
    return home / "ko", home / "ko.txt"


def test_json_document_has_the_documented_shape(tiny_charlm, sample_text_file):
    r = CliRunner().invoke(
        cli,
        ["neurons", "-c", str(tiny_charlm), "--file", str(sample_text_file), "--json", "--top", "4"]
        + ["--feature", "romeo=Romeo", "--max-chars", "3000"],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["chars"] == 3000
    names = [f["name"] for f in doc["features"]]
    assert {"inside quotes", "position in line", "speaker line", "hangul syllable", "korean particle"} <= set(names)
    assert names[-1] == "romeo"
    speaker = next(f for f in doc["features"] if f["name"] == "speaker line")
    assert len(speaker["units"]) == 4
    for u in speaker["units"]:
        assert set(u) >= {"layer", "unit", "state", "score", "auc"}
        assert u["state"] in ("h", "c") and 0 <= u["layer"] < 1 and 0 <= u["unit"] < 64
        assert 0.5 <= u["auc"] <= 1 and -1 <= u["score"] <= 1
    scores = [abs(u["score"]) for u in speaker["units"]]
    assert scores == sorted(scores, reverse=True)
    by_auc = json.loads(
        CliRunner()
        .invoke(
            cli,
            ["neurons", "-c", str(tiny_charlm), "--file", str(sample_text_file), "--json"]
            + ["--max-chars", "3000", "--rank-by", "auc", "--top", "3"],
        )
        .output
    )
    aucs = [u["auc"] for u in next(f for f in by_auc["features"] if f["name"] == "speaker line")["units"]]
    assert aucs == sorted(aucs, reverse=True) and aucs[0] >= speaker["units"][0]["auc"]


def test_table_says_when_only_part_of_the_file_was_read(tiny_charlm, sample_text_file):
    args = ["neurons", "-c", str(tiny_charlm), "--file", str(sample_text_file), "--top", "1"]
    r = CliRunner().invoke(cli, [*args, "--max-chars", "400"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("400 characters scored (the first 400 of the file: --max-chars)")
    whole = len(sample_text_file.read_text("utf-8"))
    r = CliRunner().invoke(cli, [*args, "--max-chars", str(whole)])
    assert r.exit_code == 0 and "--max-chars" not in r.output.splitlines()[0], r.output


def test_table_and_html_report_on_a_korean_model(korean_model, tmp_path):
    ck, text = korean_model
    out = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["neurons", "-c", str(ck), "--file", str(text), "--html", str(out), "--top", "3"])
    assert r.exit_code == 0, r.output
    assert "korean particle" in r.output and "hangul syllable" in r.output and "wrote" in r.output
    assert "inside quotes (binary, 0 positive): constant on this text" in r.output
    page = out.read_text("utf-8")
    assert "철수: 안녕하세요" in page and "korean particle" in page and page.count("<svg") == 4  # 1 layer x i f o g


def test_bad_input_is_a_one_line_error(tiny_charlm, sample_text_file, tmp_path):
    runner = CliRunner()
    empty = tmp_path / "empty.txt"
    empty.write_text("", "utf-8")
    unknown = tmp_path / "unknown.txt"  # no character of it is in the English model's vocabulary
    unknown.write_text("ㅋㅋㅋ漢字\u2603" * 50, "utf-8")
    for args, msg in (
        (["--file", str(tmp_path / "missing.txt")], "is not a file"),
        (["--file", str(sample_text_file), "--feature", "x=(oops"], "bad regular expression"),
        (["--file", str(sample_text_file), "--feature", "noequals"], "NAME=REGEX"),
        (
            ["--file", str(sample_text_file), "--max-chars", "500", "--html", str(tmp_path / "no" / "r.html")],
            "cannot write",
        ),
        (["--file", str(sample_text_file), "--feature", "uppercase=[a-z]"], "built-in feature has that name"),
        (["--file", str(sample_text_file), "--feature", "x=a", "--feature", "x=b"], "given twice"),
        (["--file", str(empty), "--json"], "is empty"),
        (["--file", str(unknown), "--json", "--html", str(tmp_path / "u.html")], "is one the model knows"),
    ):
        r = runner.invoke(cli, ["neurons", "-c", str(tiny_charlm), *args])
        assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "u.html").exists()
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x00\x01\x02" * 10)
    r = runner.invoke(cli, ["neurons", "-c", str(tiny_charlm), "--file", str(binary)])
    assert r.exit_code != 0 and "binary" in r.output and "Traceback" not in r.output


def test_neurons_help_does_not_import_torch():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom chatrnn.cli import cli\n"
        "r = CliRunner().invoke(cli, ['neurons', '--help'])\n"
        "assert r.exit_code == 0 and '--feature' in r.output, r.output\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))
