"""Hostile or unlucky corpora: never a traceback, a hang, a memory blow-up or a leftover file.

Each case is built here (nothing downloaded). The risky reads run in a subprocess under
``RLIMIT_AS`` with a timeout, so a regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chatrnn.corpus.dialogs import MAX_FIELD_CHARS, load_pairs, read_conversations
from chatrnn.corpus.text import collect_sources, encode_corpus
from chatrnn.errors import ChatrnnError

GOOD_PAIRS = [("hello there", "hi, how are you"), ("what is your name", "my name is bot"), ("bye", "see you")]


def chatrnn(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chatrnn", *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def bounded(code: str, megabytes: int, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python whose address space may grow ``megabytes`` past what it
    uses once ``chatrnn.corpus.dialogs`` is imported (so the bound is about the read alone)."""
    prelude = textwrap.dedent(
        f"""
        import re, resource
        import chatrnn.corpus.dialogs
        def _vm(key):
            return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
        _limit = _vm("VmSize") + {megabytes} * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def good_lines() -> list[str]:
    return [json.dumps({"prompt": q, "response": a}) for q, a in GOOD_PAIRS]


# ---------------------------------------------------------------------------------------------
# nesting


def test_deeply_nested_jsonl_line_is_one_malformed_record(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "deep.jsonl", ["[" * 100_000 + "]" * 100_000, *good_lines(), "{" * 50_000])
    pairs, report = load_pairs([path])
    assert [(p.prompt, p.reply) for p in pairs] == GOOD_PAIRS  # nothing good is lost
    assert report.dropped["malformed"] == 2
    assert report.malformed_lines[0][1:] == (1, "invalid JSON (nested too deeply)")


def test_deeply_nested_json_array_and_yaml_give_one_line(tmp_path: Path) -> None:
    deep_json = tmp_path / "deep.json"
    deep_json.write_text("[" * 100_000 + "]" * 100_000, "utf-8")
    deep_yaml = tmp_path / "deep.yml"
    deep_yaml.write_text("conversations:\n- " + "[" * 50_000 + "]" * 50_000 + "\n", "utf-8")
    for path, why in ((deep_json, "nested too deeply"), (deep_yaml, "nested too deeply")):
        with pytest.raises(ChatrnnError, match=why):
            read_conversations(path)
        msg = one_line_error(chatrnn("train", "chat", "--corpus", str(path), "--preset", "tiny", "--max-steps", "1"))
        assert why in msg and path.name in msg


# ---------------------------------------------------------------------------------------------
# YAML aliases


def _alias_bomb(path: Path) -> Path:
    """A "billion laughs": 9 levels of 9 aliases each, a few hundred bytes naming 9**10 turns."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines += ["conversations:", "- [" + ", ".join(["*a8"] * 9) + "]"]
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def _flat_bomb(path: Path) -> Path:
    """One 1,000-turn conversation aliased 20,000 times: ~100 KB of YAML, 20 million turns."""
    body = "x: &x [" + ", ".join(f"turn {i}" for i in range(1000)) + "]\nconversations:\n" + "- *x\n" * 20_000
    path.write_text(body, "utf-8")
    return path


@pytest.mark.parametrize("make", [_alias_bomb, _flat_bomb])
def test_yaml_aliases_are_refused_in_bounded_memory(tmp_path: Path, make) -> None:
    path = make(tmp_path / "bomb.yml")
    r = bounded(
        f"""
        from chatrnn.errors import ChatrnnError
        from chatrnn.corpus.dialogs import load_pairs
        try:
            load_pairs([{str(path)!r}])
        except ChatrnnError as e:
            print("refused:", e)
        """,
        megabytes=200,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "refused:" in r.stdout and "anchors and aliases" in r.stdout
    msg = one_line_error(chatrnn("train", "chat", "--corpus", str(path), "--preset", "tiny", "--max-steps", "1"))
    assert "aliases" in msg


def test_yaml_without_aliases_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yml"
    path.write_text("categories: [x]\nconversations:\n- - hi\n  - hello\n- - '22'\n  - yes\n", "utf-8")
    assert read_conversations(path) == [["hi", "hello"], ["22", "yes"]]


# ---------------------------------------------------------------------------------------------
# file names that are not UTF-8


def _bad_name(folder: Path, stem: bytes, suffix: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (os.fsdecode(stem) + suffix)


def test_non_utf8_file_name_in_a_text_corpus_folder(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CHATRNN_CACHE", str(cache))
    f = _bad_name(tmp_path / "corpus", b"scene-\xff", ".txt")
    line = "ROMEO: but soft, what light through yonder window breaks?\n"
    f.write_text(line * 200, "utf-8")
    corpus = encode_corpus(collect_sources([tmp_path / "corpus"]))
    assert corpus.names == [str(tmp_path / "corpus" / "scene-\\xff.txt")]
    assert len(corpus) == len(line) * 200
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # no temp file left
    out = tmp_path / "ck"
    corpus_dir = str(tmp_path / "corpus")
    r = chatrnn("train", "charlm", "--corpus", corpus_dir, "--preset", "tiny", "--max-steps", "2", "--out", str(out))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    sources = json.loads((out / "config.json").read_text("utf-8"))["corpus"]["sources"]
    assert sources == [str(tmp_path / "corpus" / "scene-\\xff.txt")]
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]


def test_non_utf8_file_name_in_a_chatterbot_folder(tmp_path: Path) -> None:
    good = _bad_name(tmp_path / "yaml", b"greet-\xfe", ".yml")
    good.write_text("conversations:\n- - hi\n  - hello\n- - bye\n  - see you\n", "utf-8")
    bad = _bad_name(tmp_path / "yaml", b"broken-\xff", ".yml")
    bad.write_text("conversations: [unclosed\n", "utf-8")
    pairs, report = load_pairs([tmp_path / "yaml"])
    assert [(p.prompt, p.reply) for p in pairs] == [("hi", "hello"), ("bye", "see you")]
    assert "broken-\\xff.yml" in report.summary()
    report.summary().encode("utf-8")  # printable: no lone surrogates


# ---------------------------------------------------------------------------------------------
# one huge line, one huge field


def _one_line_of_short_turns(path: Path, megabytes: int, distinct: int | None) -> Path:
    turns, size, i = [], 0, 0
    while size < megabytes << 20:
        t = f"turn {i if distinct is None else i % distinct}"
        turns.append(t)
        size += len(t) + 4
        i += 1
    path.write_text(json.dumps(turns) + "\n", "utf-8")
    return path


@pytest.mark.parametrize(
    ("distinct", "budget"),
    [
        (997, 48),  # mostly duplicates: few pairs kept, so little memory (33 MB now, 114 MB before)
        (None, 130),  # every pair kept: about the pairs themselves (89 MB now, 174 MB before)
    ],
)
def test_a_huge_dialog_line_is_read_in_bounded_memory(tmp_path: Path, distinct, budget) -> None:
    path = _one_line_of_short_turns(tmp_path / "huge.jsonl", 4, distinct)
    r = bounded(
        f"""
        from chatrnn.corpus.dialogs import load_pairs
        pairs, report = load_pairs([{str(path)!r}])
        print(len(pairs), report.read)
        """,
        megabytes=budget,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    kept, read = map(int, r.stdout.split())
    assert read > 250_000 and kept == (997 if distinct else read)


def test_one_csv_field_over_the_csv_module_limit_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    long_reply = "word " * 40_000  # 200,000 characters: over csv's default 131,072
    path.write_text(
        f'q,a\nhello there,hi\nlong one,"{long_reply}"\ntoo long,{"x" * (MAX_FIELD_CHARS + 10)}\nbye,see you\n',
        "utf-8",
    )
    pairs, report = load_pairs([path])
    assert [p.prompt for p in pairs] == ["hello there", "long one", "bye"]
    assert len(pairs[1].reply) == len(long_reply.strip())  # read whole, normalised
    assert report.dropped == {"malformed": 1}
    assert report.malformed_lines[0][1] == 4 and "longer than" in report.malformed_lines[0][2]
    import csv

    assert csv.field_size_limit() == 131_072  # the process-wide limit is put back
    pairs, report = load_pairs([path], max_chars=1000)  # and the usual length filter still applies
    assert [p.prompt for p in pairs] == ["hello there", "bye"] and report.dropped["too long"] == 1


# ---------------------------------------------------------------------------------------------
# files that only look like files: a link to /dev/zero reads forever, a FIFO blocks forever


@pytest.mark.parametrize("name", ["dialogs.jsonl", "dialogs.csv", "dialogs.txt"])
def test_a_dialog_corpus_linked_to_dev_zero_is_one_line_in_bounded_memory(tmp_path: Path, name: str) -> None:
    link = tmp_path / name
    link.symlink_to("/dev/zero")
    r = bounded(
        f"""
        from chatrnn.corpus.dialogs import read_conversations
        from chatrnn.errors import ChatrnnError
        try:
            read_conversations({str(link)!r})
        except ChatrnnError as e:
            print("refused:", e)
        """,
        megabytes=200,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "is not a regular file" in r.stdout, r.stdout


def test_a_dialog_corpus_that_is_a_fifo_never_blocks(tmp_path: Path) -> None:
    for name in ("dialogs.jsonl", "chat.txt"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        r = subprocess.run(
            [sys.executable, "-c", f"from chatrnn.corpus.dialogs import read_conversations as r; r({str(fifo)!r})"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "is not a regular file" in r.stderr, r.stderr


def test_a_text_corpus_that_is_a_device_says_so(tmp_path: Path) -> None:
    link = tmp_path / "zero.txt"
    link.symlink_to("/dev/zero")
    with pytest.raises(ChatrnnError, match="is not a regular file"):
        collect_sources([link])
