"""The top-level ``corpus/`` folder: every example parses in the format its README names, the
bare-name lookup finds them, and real (tiny) training runs on all of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from chatrnn.cli import cli
from chatrnn.corpus.dialogs import detect_format, load_pairs, read_conversations
from chatrnn.corpus.locate import ENV, resolve_corpus
from chatrnn.errors import ChatrnnError

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
# name -> (format, conversations, pairs): counted by hand from the files
DIALOGS = {
    "qa.csv": ("csv", 6, 6),
    "qa.tsv": ("tsv", 4, 4),
    "prompt_response.jsonl": ("jsonl", 4, 4),
    "messages.jsonl": ("jsonl", 2, 6),
    "cornell": ("cornell", 2, 3),
    "chatterbot.yml": ("chatterbot", 4, 7),
    "play.txt": ("transcript", 2, 4),
}
HANGUL = re.compile("[\uac00-\ud7a3]")


@pytest.fixture
def corpus_dir(monkeypatch):
    monkeypatch.setenv(ENV, str(CORPUS))
    return CORPUS


def test_the_readme_documents_every_example_and_nothing_else():
    readme = (CORPUS / "README.md").read_text("utf-8")
    examples = {p.name for p in CORPUS.iterdir() if p.name != "README.md"}
    assert examples == set(DIALOGS) | {"plain.txt"}
    for name in examples:
        assert f"`{name}" in readme, name


@pytest.mark.parametrize("name", sorted(DIALOGS))
def test_each_dialog_example_reads_in_its_format_in_both_languages(name):
    fmt, n_convs, n_pairs = DIALOGS[name]
    path = CORPUS / name
    assert detect_format(path) == fmt
    convs = read_conversations(path)
    assert len(convs) == n_convs
    pairs, report = load_pairs([path])
    assert len(pairs) == report.kept == report.read == n_pairs and not report.dropped
    text = " ".join(t for c in convs for t in c)
    assert HANGUL.search(text) and re.search("[A-Za-z]{3}", text)


def test_bare_names_resolve_under_the_corpus_folder(corpus_dir, tmp_path, monkeypatch):
    assert resolve_corpus("qa.csv") == CORPUS / "qa.csv"
    assert resolve_corpus("plain") == CORPUS / "plain.txt"  # a unique stem
    assert resolve_corpus("cornell") == CORPUS / "cornell"
    with pytest.raises(ChatrnnError, match="ambiguous.*qa.csv, qa.tsv"):
        resolve_corpus("qa")
    with pytest.raises(ChatrnnError, match="corpus nope does not exist.*has: chatterbot.yml") as e:
        resolve_corpus("nope")
    assert f"(${ENV})" in str(e.value) and "set " not in str(e.value)  # it is set: no advice to set it
    own = tmp_path / "qa.csv"  # a path that exists wins over the corpus folder
    own.write_text("Q,A\nx,y\n")
    assert resolve_corpus(own) == own
    monkeypatch.delenv(ENV)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "mine.tsv").write_text("q\ta\nx\ty\n")
    assert resolve_corpus("mine") == Path("corpus") / "mine.tsv"  # ./corpus without the variable
    with pytest.raises(ChatrnnError, match=f"under corpus/ \\(set {ENV} to your corpus folder\\)"):
        resolve_corpus("nope")


def test_train_chat_on_every_dialog_example_by_name(corpus_dir, tmp_path):
    args = ["train", "chat", "--preset", "tiny", "--max-steps", "3", "--evals", "1", "--out", str(tmp_path / "c")]
    args += ["--vocab-size", "512"]  # the tiny preset's 300 is below what ~300 distinct Hangul syllables need
    for name in sorted(DIALOGS):
        args += ["--corpus", name if name.startswith("qa.") else Path(name).stem]  # stems where unique
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    total = sum(n for _, _, n in DIALOGS.values())
    assert f"corpus: read {total} pairs, kept {total}" in r.output
    sources = json.loads((tmp_path / "c" / "config.json").read_text())["corpus"]["sources"]
    assert sorted(Path(s).name for s in sources) == sorted(DIALOGS)


def test_train_charlm_on_the_text_example_by_name(corpus_dir, tmp_path):
    out = tmp_path / "lm"
    args = ["train", "charlm", "--corpus", "plain", "--preset", "tiny", "--max-steps", "3", "--out", str(out)]
    r = CliRunner().invoke(cli, [*args, "--seq-len", "16", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    check = json.loads(CliRunner().invoke(cli, ["corpus", "check", "plain", "--json"]).output)
    assert check["vocab_size"] == cfg["model"]["vocab_size"] == len(cfg["vocab"])
    assert check["chars"] == cfg["corpus"]["train_chars"] + cfg["corpus"]["val_chars"]
