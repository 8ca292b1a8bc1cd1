"""Dialog corpus readers: every format on small real files written to tmp_path."""

from __future__ import annotations

import csv
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatrnn.corpus.dialogs import (
    FORMATS,
    Pair,
    ReadReport,
    bundled_conversations,
    bundled_languages,
    conversations_to_text,
    detect_format,
    load_pairs,
    make_pairs,
    normalize_text,
    read_conversations,
)
from chatrnn.errors import ChatrnnError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def balanced(r: ReadReport) -> bool:
    return r.read == r.kept + sum(r.dropped.values())


# ---------------------------------------------------------------- CSV / TSV


def test_csv_q_a_label_header(tmp_path: Path) -> None:
    f = write(tmp_path / "chat.csv", 'Q,A,label\n안녕,반가워요 😀,0\n"a, b","multi\nline",1\n')
    assert read_conversations(f) == [["안녕", "반가워요 😀"], ["a, b", "multi\nline"]]


def test_csv_bad_rows_reported_with_line_numbers(tmp_path: Path) -> None:
    text = 'question,answer\nhi,hello\n"two\nlines",x\nonly one field\nq,\n\nhow,fine\n'
    f = write(tmp_path / "bad.csv", text)
    report = ReadReport()
    convs = read_conversations(f, report=report)
    assert convs == [["hi", "hello"], ["two\nlines", "x"], ["how", "fine"]]
    assert report.dropped == {"malformed": 2}
    assert [(Path(p).name, line) for p, line, _ in report.malformed_lines] == [("bad.csv", 5), ("bad.csv", 6)]
    assert "expected 2 fields, found 1" in report.malformed_lines[0][2]
    assert "empty 'answer'" in report.malformed_lines[1][2]
    assert report.read == 5 and balanced(report)
    assert "bad.csv:5" in report.summary()


def test_csv_explicit_columns_and_missing_column(tmp_path: Path) -> None:
    f = write(tmp_path / "x.csv", "Id,Utterance,Reply\n1,hi,hello\n")
    assert read_conversations(f, columns=("utterance", "REPLY")) == [["hi", "hello"]]
    with pytest.raises(ChatrnnError, match="--columns"):
        read_conversations(f)
    with pytest.raises(ChatrnnError, match="no column 'nope'.*Id, Utterance, Reply"):
        read_conversations(f, columns=("nope", "reply"))


def test_tsv_with_bom(tmp_path: Path) -> None:
    f = write(tmp_path / "x.tsv", "\ufeffPrompt\tResponse\nhow are you?\tfine, thanks\n")
    assert detect_format(f) == "tsv"
    assert read_conversations(f) == [["how are you?", "fine, thanks"]]


CELL = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))  # NUL means "binary file"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(CELL, CELL), max_size=8))
def test_csv_round_trip(tmp_path: Path, rows: list[tuple[str, str]]) -> None:
    f = tmp_path / "rt.csv"
    with f.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Q", "A"])
        w.writerows(rows)
    expected = [[q, a] for q, a in rows if normalize_text(q) and normalize_text(a)]
    if not expected:
        with pytest.raises(ChatrnnError, match="no conversations"):
            read_conversations(f)
        return
    got = read_conversations(f)
    assert got == expected  # exact cells, quotes/newlines/CR included
    assert [normalize_text(t) for c in got for t in c] == [normalize_text(t) for c in expected for t in c]


# ---------------------------------------------------------------- JSONL


def test_jsonl_pairs_messages_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"prompt": "hi", "response": "hello"}),
        json.dumps({"Question": "2+2?", "Answer": 4}),
        "{not json",
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "be nice"},
                    {"role": "user", "content": "안녕"},
                    {"role": "assistant", "content": [{"type": "text", "text": "반가워"}]},
                ]
            }
        ),
        "",
        json.dumps({"foo": 1}),
        json.dumps({"input": "in", "output": "out"}),
    ]
    f = write(tmp_path / "d.jsonl", "\n".join(lines) + "\n")
    report = ReadReport()
    convs = read_conversations(f, report=report)
    assert convs == [["hi", "hello"], ["2+2?", "4"], ["안녕", "반가워"], ["in", "out"]]
    assert [line for _, line, _ in report.malformed_lines] == [3, 6]
    assert "invalid JSON" in report.malformed_lines[0][2]


def test_json_array_and_custom_keys(tmp_path: Path) -> None:
    f = write(tmp_path / "d.json", json.dumps([{"ask": "a", "say": "b"}, {"ask": "c", "say": "d"}], indent=2))
    assert detect_format(f) == "jsonl"
    assert read_conversations(f, columns=("ask", "say")) == [["a", "b"], ["c", "d"]]
    with pytest.raises(
        ChatrnnError, match=r"no conversations.*2 malformed, first: .*d\.json: item 1: no question/answer"
    ):
        read_conversations(f)


def test_jsonl_lists_of_turns(tmp_path: Path) -> None:
    f = write(tmp_path / "t.jsonl", '["hi", "hello", "how are you?"]\n["a", "b"]\n')
    assert read_conversations(f) == [["hi", "hello", "how are you?"], ["a", "b"]]
    one = write(tmp_path / "one.jsonl", '["hi", "hello"]\n')
    assert read_conversations(one) == [["hi", "hello"]]


def test_jsonl_line_separator_inside_string_is_not_a_line_break(tmp_path: Path) -> None:
    f = write(tmp_path / "d.jsonl", '{"prompt": "a\u2028b", "response": "c\u0085d"}\n')
    assert read_conversations(f) == [["a\u2028b", "c\u0085d"]]


# ---------------------------------------------------------------- Cornell


def cornell(folder: Path) -> Path:
    folder.mkdir()
    sep = " +++$+++ "
    lines = [
        sep.join(["L1", "u0", "m0", "BIANCA", "Où est le café?"]),
        sep.join(["L2", "u1", "m0", "CAMERON", "Là-bas, señorita \x92s\x85"]),
        sep.join(["L3", "u0", "m0", "BIANCA", "Merci."]),
        sep.join(["L4", "u1", "m0", "CAMERON", "De rien."]),
        "L5 +++$+++ broken",
    ]
    convs = [
        sep.join(["u0", "u1", "m0", "['L1', 'L2', 'L3']"]),
        sep.join(["u0", "u1", "m0", "['L4', 'L9', 'L1']"]),
        sep.join(["u0", "u1", "m0", "not a list"]),
    ]
    (folder / "movie_lines.txt").write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    (folder / "movie_conversations.txt").write_bytes("\n".join(convs).encode("latin-1") + b"\n")
    return folder


def test_cornell_latin1_folder_and_file_paths(tmp_path: Path) -> None:
    folder = cornell(tmp_path / "cornell")
    for path in (folder, folder / "movie_lines.txt", folder / "movie_conversations.txt"):
        assert detect_format(path) == "cornell"
        report = ReadReport()
        convs = read_conversations(path, report=report)
        # \x92 and \x85 are cp1252's ’ and …, which the real corpus uses
        assert convs[0] == ["Où est le café?", "Là-bas, señorita ’s…", "Merci."]
        # the missing L9 splits the second conversation rather than joining L4 to L1
        assert convs[1:] == [["De rien."], ["Où est le café?"]]
        assert [(Path(p).name, line) for p, line, _ in report.malformed_lines] == [
            ("movie_lines.txt", 5),
            ("movie_conversations.txt", 2),
            ("movie_conversations.txt", 3),
        ]


def test_cornell_missing_conversations_file(tmp_path: Path) -> None:
    folder = cornell(tmp_path / "c")
    (folder / "movie_conversations.txt").unlink()
    with pytest.raises(ChatrnnError, match="movie_conversations.txt"):
        read_conversations(folder)


# ---------------------------------------------------------------- chatterbot YAML


def test_chatterbot_yaml_keeps_scalars_as_written(tmp_path: Path) -> None:
    text = (
        "categories:\n- test\nconversations:\n"
        "- - How many?\n  - 22\n"
        "- - Are you sure?\n  - yes\n  - 1.50\n"
        "- this line lost its indentation\n  - reply\n"
        "- - nested\n  - - a\n    - b\n"
    )
    f = write(tmp_path / "c.yml", text)
    report = ReadReport()
    assert read_conversations(f, report=report) == [["How many?", "22"], ["Are you sure?", "yes", "1.50"]]
    assert [line for _, line, _ in report.malformed_lines] == [9, 11]
    assert report.read == 3 + 2


def test_chatterbot_folder_and_bad_yaml(tmp_path: Path) -> None:
    d = tmp_path / "yml"
    d.mkdir()
    write(d / "a.yml", "conversations:\n- - hi\n  - hello\n")
    write(d / "b.yaml", "conversations: [[unclosed\n")
    assert detect_format(d) == "chatterbot"
    report = ReadReport()
    assert read_conversations(d, report=report) == [["hi", "hello"]]
    assert report.malformed_lines[0][0].endswith("b.yaml") and "invalid YAML" in report.malformed_lines[0][2]


def test_bundled_english_and_korean() -> None:
    assert {"english", "korean"} <= set(bundled_languages())
    for lang in ("english", "Korean"):
        convs = bundled_conversations(lang)
        assert len(convs) > 100 and all(isinstance(t, str) for c in convs for t in c)
    pairs, report = load_pairs(None, lang="korean")
    assert pairs and balanced(report)
    assert any("\uac00" <= ch <= "\ud7a3" for ch in pairs[0].prompt + pairs[0].reply)


def test_bundled_unknown_language_lists_choices() -> None:
    with pytest.raises(ChatrnnError, match="klingon.*english.*korean"):
        bundled_conversations("klingon")


# ---------------------------------------------------------------- transcript


def test_transcript(tmp_path: Path) -> None:
    text = (
        "First Citizen:\nBefore we proceed any further,\nhear me speak.\n\n"
        "All:\nSpeak, speak.\n\n"
        "KING RICHARD III:\n\n"
        "Senators, &C:\nWe'll surety him.\n\n"
        "SCENE II. A room.\n\n"
        "ROMEO:\nHe jests at scars:\nthat never felt a wound.\n\n"
        "JULIET:\nAy me!\n"
    )
    f = write(tmp_path / "play.txt", text)
    assert detect_format(f) == "transcript"
    assert read_conversations(f) == [
        ["Before we proceed any further, hear me speak.", "Speak, speak.", "", "We'll surety him."],
        ["He jests at scars: that never felt a wound.", "Ay me!"],
    ]
    pairs, report = load_pairs([f])
    assert report.dropped == {"empty": 2} and report.kept == 2 and balanced(report)


# ---------------------------------------------------------------- detection and bad files


def test_detection_errors(tmp_path: Path) -> None:
    with pytest.raises(ChatrnnError, match="does not exist"):
        detect_format(tmp_path / "nope.csv")
    with pytest.raises(ChatrnnError, match="--format"):
        detect_format(write(tmp_path / "x.dat", "a,b\n"))
    with pytest.raises(ChatrnnError, match="does not look like a transcript.*--format"):
        detect_format(write(tmp_path / "prose.txt", "just some prose\nwith lines\n"))
    with pytest.raises(ChatrnnError, match="empty"):
        detect_format(write(tmp_path / "empty.txt", ""))
    (tmp_path / "bin.txt").write_bytes(b"NAME:\n\x00\x01")
    with pytest.raises(ChatrnnError, match="binary.*offset 6"):
        detect_format(tmp_path / "bin.txt")
    with pytest.raises(ChatrnnError, match="neither movie_lines.txt"):
        detect_format(tmp_path)
    with pytest.raises(ChatrnnError, match="unknown format 'xml'.*csv, tsv, jsonl"):
        read_conversations(write(tmp_path / "x.csv", "Q,A\na,b\n"), fmt="xml")
    assert set(FORMATS) == {"csv", "tsv", "jsonl", "cornell", "chatterbot", "transcript"}


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ChatrnnError, match="empty"):
        read_conversations(write(tmp_path / "e.csv", "\n \n"))
    (tmp_path / "b.csv").write_bytes(b"Q,A\x00\x01\x02")
    with pytest.raises(ChatrnnError, match="binary.*offset 3"):
        read_conversations(tmp_path / "b.csv")
    bad = tmp_path / "latin.csv"
    bad.write_bytes("Q,A\ncafé,oui\n".encode("latin-1"))
    with pytest.raises(ChatrnnError, match=r"latin.csv is not valid UTF-8 \(byte 0xe9 at offset 7\).*--encoding"):
        read_conversations(bad)
    assert read_conversations(bad, encoding="latin-1") == [["café", "oui"]]
    with pytest.raises(ChatrnnError, match="unknown encoding"):
        read_conversations(bad, encoding="klingon-8")
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes("Q,A\n안녕,hi\n".encode("utf-16"))
    assert read_conversations(utf16, encoding="utf-16") == [["안녕", "hi"]]
    with pytest.raises(ChatrnnError, match="no conversations.*malformed"):
        read_conversations(write(tmp_path / "allbad.csv", "Q,A\nx\ny\n"))


# ---------------------------------------------------------------- normalisation, pairs


def test_normalize_keeps_korean_emoji_punctuation() -> None:
    assert normalize_text("  안녕하세요!\t 😀👍🏽  ¿qué?\n") == "안녕하세요! 😀👍🏽 ¿qué?"
    assert normalize_text("ＡＢＣ\u00a0ﬁ") == "ABC fi"
    decomposed = unicodedata.normalize("NFD", "한국어")
    assert normalize_text(decomposed) == "한국어"


@given(st.one_of(st.text(), st.text(st.characters(codec=None, categories=["Cs", "Zs", "Cc", "Mn", "Lo"]))))
def test_normalize_idempotent(s: str) -> None:
    once = normalize_text(s)
    assert normalize_text(once) == once
    assert once == once.strip() and "  " not in once and "\n" not in once


def test_make_pairs_context() -> None:
    conv = [["a", "b", "c", "d"], ["x"]]
    assert make_pairs(conv) == [Pair([], "a", "b"), Pair([], "b", "c"), Pair([], "c", "d")]
    assert make_pairs(conv, context_turns=2)[2] == Pair(["a", "b"], "c", "d")
    assert make_pairs(conv, context_turns=1)[2] == Pair(["b"], "c", "d")
    with pytest.raises(ChatrnnError):
        make_pairs(conv, context_turns=-1)


def test_load_pairs_dedup_empty_too_long(tmp_path: Path) -> None:
    f = write(
        tmp_path / "d.jsonl",
        "\n".join(
            json.dumps({"prompt": p, "response": r})
            for p, r in [
                ("hi", "hello"),
                ("hi ", " hello"),
                ("ｈｉ", "hello"),
                ("hi", "   "),
                ("long " * 20, "x"),
                ("a", "b"),
            ]
        )
        + "\n",
    )
    pairs, report = load_pairs([f], max_chars=50)
    assert pairs == [Pair([], "hi", "hello"), Pair([], "a", "b")]
    assert load_pairs(f, max_chars=50)[0] == pairs  # a lone path is accepted too
    assert report.dropped == {"duplicate": 2, "empty": 1, "too long": 1}
    assert report.read == 6 and report.kept == 2 and balanced(report)
    assert report.summary().startswith("read 6 pairs, kept 2; dropped: 2 duplicate")
    assert ReadReport(read=1, kept=1).summary() == "read 1 pair, kept 1"
    report.drop("too long")
    assert report.kept == 1 and balanced(report)


def test_load_pairs_dedup_respects_context(tmp_path: Path) -> None:
    f = write(tmp_path / "c.yml", "conversations:\n- - a\n  - b\n  - c\n- - x\n  - b\n  - c\n")
    assert len(load_pairs([f])[0]) == 3  # b->c twice, collapsed
    assert len(load_pairs([f], context_turns=1)[0]) == 4  # different context: both kept


def test_load_pairs_nothing_usable(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", "Q,A\naaaaaaaa,bbbbbbbbb\n")
    with pytest.raises(ChatrnnError, match="no usable pairs.*1 too long"):
        load_pairs([f], max_chars=3)


def test_conversations_to_text() -> None:
    text = conversations_to_text([["hi\nthere", "  ", "yo"], [], ["안녕"]])
    assert text == "hi there\nyo\n\n안녕\n"
    assert conversations_to_text([]) == ""


# ---------------------------------------------------------------- real corpora (skipped without ../shared)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "ChatbotData.csv").exists(), reason="shared corpora not present")
def test_chatbotdata_csv() -> None:
    pairs, report = load_pairs([SHARED / "ChatbotData.csv"])
    assert report.read == 11823
    assert report.dropped.get("malformed", 0) == 0 and balanced(report)
    assert len(pairs) == report.kept > 11000
    assert pairs[0] == Pair([], "12시 땡!", "하루가 또 가네요.")


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "tinyshakespeare.txt").exists(), reason="shared corpora not present")
def test_tinyshakespeare_transcript() -> None:
    path = SHARED / "tinyshakespeare.txt"
    assert detect_format(path) == "transcript"
    pairs, report = load_pairs([path], context_turns=2)
    assert report.kept > 6000 and balanced(report)
    assert pairs[0] == Pair([], "Before we proceed any further, hear me speak.", "Speak, speak.")
