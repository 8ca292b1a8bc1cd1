"""The chat inference API: a tiny model trained to memorise 20 pairs answers them exactly; beam 1
is greedy; no-repeat-ngram holds; streams, attention, huge inputs, cancel, bad checkpoints."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pytest
import torch

from chatrnn.decoding import ReplySettings
from chatrnn.errors import ChatrnnError
from chatrnn.infer_chat import Responder, banned_by_ngram

PAIRS = [
    ("hello", "hi there"),
    ("how are you?", "i am fine, thanks"),
    ("what is your name?", "my name is bot"),
    ("good morning", "morning to you"),
    ("bye", "see you later"),
    ("do you like tea?", "yes, green tea"),
    ("where do you live?", "in the cloud"),
    ("what time is it?", "time for tea"),
    ("tell me a joke", "no jokes today"),
    ("are you a robot?", "i am a program"),
    ("thank you", "you are welcome"),
    ("what is two plus two?", "four"),
    ("안녕하세요", "반가워요"),
    ("오늘 날씨 어때?", "맑아요"),
    ("i am sad", "cheer up"),
    ("i am hungry", "eat something"),
    ("what do you do?", "i answer messages"),
    ("can you sing?", "not really"),
    ("who made you?", "an engineer"),
    ("good night", "sleep well"),
]
EXACT = ReplySettings(no_repeat_ngram=0)


def write_pairs(path: Path, pairs=PAIRS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Q", "A"])
        w.writerows(pairs)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny model trained until it has memorised PAIRS (validated on the same pairs)."""
    from chatrnn.train.chat import ChatOptions, train_chat

    d = tmp_path_factory.mktemp("chat")
    mp = pytest.MonkeyPatch()
    mp.setenv("CHATRNN_CACHE", str(d / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only adds contention
    try:
        corpus = write_pairs(d / "pairs.csv")
        opts = ChatOptions(
            out=d / "ck",
            corpus=[str(corpus)],
            val_file=str(corpus),
            preset="tiny",
            max_len=32,
            train=dict(max_steps=160, evals=1, warmup_steps=10, seed=3),
            device="cpu",
        )
        r = train_chat(opts)
        assert r.last_metrics["loss"] < 0.1, r.last_metrics
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    return d / "ck"


@pytest.fixture(scope="module")
def responder(trained) -> Responder:
    return Responder.load(trained)


def test_memorised_pairs_answered_exactly_with_greedy(responder):
    wrong = [(q, responder.reply(q, settings=EXACT).text, a) for q, a in PAIRS]
    wrong = [w for w in wrong if w[1] != w[2]]
    assert not wrong


def test_beam_one_equals_greedy_and_beam_gives_nbest(responder):
    for q, _ in PAIRS[:8]:
        g = responder.reply(q, settings=ReplySettings())
        b = responder.reply(q, settings=ReplySettings(beam=1))
        assert g.text == b.text and g.pieces == b.pieces
    r = responder.reply("hello", settings=ReplySettings(beam=4, nbest=3, no_repeat_ngram=0))
    assert r.text == "hi there"
    assert len(r.nbest) == 3 and r.nbest[0][0] == "hi there"
    assert [s for _, s in r.nbest] == sorted((s for _, s in r.nbest), reverse=True)
    assert len(r.attention) == len(r.pieces)


def test_no_repeat_ngram_holds_when_sampling(responder):
    for n in (1, 2, 3):
        for seed in range(4):
            s = ReplySettings(temperature=3.0, no_repeat_ngram=n, max_len=30, rng_seed=seed, min_len=30)
            r = responder.reply("hello", settings=s)
            grams = [tuple(r.pieces[i : i + n]) for i in range(len(r.pieces) - n + 1)]
            assert len(grams) == len(set(grams)), (n, r.pieces)


def test_banned_by_ngram():
    assert banned_by_ngram([1, 2, 3, 1, 2], 3) == {3}
    assert banned_by_ngram([1, 2, 1], 2) == {2}
    assert banned_by_ngram([1, 2], 0) == set()
    assert banned_by_ngram([4, 5], 1) == {4, 5}


def test_stream_matches_reply_and_attention_shape(responder):
    q = "how are you?"
    toks = list(responder.stream(q, settings=EXACT))
    r = responder.reply(q, settings=EXACT)
    assert "".join(t.text for t in toks).strip() == r.text == "i am fine, thanks"
    assert [t.piece for t in toks] == r.pieces
    n_prompt = len(responder.prompt_pieces(q))
    assert r.prompt_pieces == responder.prompt_pieces(q)
    for row in r.attention:
        assert len(row) == n_prompt
        assert abs(sum(row) - 1) < 1e-4


def test_sampling_is_repeatable_with_seed(responder):
    s = ReplySettings(temperature=1.5, top_k=20, top_p=0.9, rng_seed=11)
    assert responder.reply("bye", settings=s).text == responder.reply("bye", settings=s).text


def test_min_and_max_len(responder):
    r = responder.reply("bye", settings=ReplySettings(min_len=12, max_len=40, no_repeat_ngram=0))
    assert len(r.pieces) >= 12
    r = responder.reply("how are you?", settings=ReplySettings(max_len=3, no_repeat_ngram=0))
    assert len(r.pieces) <= 3


def test_huge_input_and_unknown_characters(responder):
    r = responder.reply("x" * 100_000 + " 🙂 ☃ 漢字")
    assert isinstance(r.text, str)
    assert len(r.prompt_pieces) <= responder.model.cfg.max_src_len
    assert isinstance(responder.reply("").text, str)  # empty prompt: still an answer, no crash


def test_history_is_used_up_to_context_turns(responder):
    s = ReplySettings(context_turns=2)
    pieces = responder.prompt_pieces("bye", history=["hello", "hi there"], settings=s)
    assert "<sep>" in pieces
    assert responder.prompt_pieces("bye", history=["hello", "hi there"]) == responder.prompt_pieces("bye")


def test_cancel_stops_the_stream(responder):
    ev = threading.Event()
    ev.set()
    r = responder.reply("hello", cancel=ev)
    assert r.cancelled and r.text == ""
    r = responder.reply("hello", settings=ReplySettings(beam=3), cancel=ev)
    assert r.cancelled


def test_tokenizer_round_trips_hangul(responder):
    tok = responder.tok
    for text in ("안녕하세요 반가워요", "héllo wörld!", "漢字 and 🙂"):
        assert tok.decode(tok.encode(text)) == tok.normalize(text)


def test_load_errors_are_one_line(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(tmp_path))
    with pytest.raises(ChatrnnError, match="no checkpoint"):
        Responder.load(None)
    with pytest.raises(ChatrnnError, match="no checkpoint"):
        Responder.load(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ChatrnnError, match="corrupt"):
        Responder.load(bad)
    charlm = tmp_path / "charlm"
    charlm.mkdir()
    (charlm / "config.json").write_text(json.dumps({"kind": "charlm", "format_version": 1}))
    with pytest.raises(ChatrnnError, match="not a chat model"):
        Responder.load(charlm)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ChatrnnError, match="corrupt"):
        Responder.load(broken)
    (broken / "model.safetensors").unlink()
    shutil.copy(trained / "model.safetensors", broken / "model.safetensors")
    (broken / "tokenizer.model").write_bytes(b"garbage")
    with pytest.raises(ChatrnnError):
        Responder.load(broken)


def test_reply_is_fast_enough(responder):
    """Not the benchmark (that is benchmarks/chat_chatbotdata.py), just a guard against a slow path."""
    import time

    torch.set_num_threads(1)
    responder.reply("hello")
    t = time.perf_counter()
    for _ in range(5):
        responder.reply("hello")
    assert (time.perf_counter() - t) / 5 < 0.5


def test_mmi_rerank_at_lambda_zero_is_the_beams_order(responder):
    for q, _ in PAIRS[:6]:
        plain = responder.reply(q, settings=ReplySettings(beam=4, nbest=4, no_repeat_ngram=0))
        zero = responder.reply(
            q, settings=ReplySettings(beam=4, nbest=4, no_repeat_ngram=0, rerank="mmi", mmi_lambda=0)
        )
        assert zero.nbest == plain.nbest and zero.text == plain.text


def test_mmi_rerank_demotes_the_reply_likely_without_the_prompt(responder):
    """A constructed case: two candidates the beam scored equal, the first the likelier with no prompt
    at all (p(reply) from ``null_encoded``). MMI puts the other first; its score is the beam's minus
    lambda x the prompt-free log-probability over the same length penalty."""
    m, tok = responder.model, responder.tok
    cands = [tok.encode(a) for _, a in PAIRS[:8]]
    with torch.no_grad():
        lm = m.reply_logprobs(m.null_encoded(len(cands)), cands, [True] * len(cands))
    lp = [p / ((6 + len(c)) / 6) ** 0.6 for p, c in zip(lm, cands)]  # GNMT penalty over reply + end
    generic, specific = max(range(8), key=lp.__getitem__), min(range(8), key=lp.__getitem__)
    hyps = [(cands[generic], -1.0, []), (cands[specific], -1.0, [])]
    s = ReplySettings(beam=2, rerank="mmi", mmi_lambda=0.5)
    out = responder._mmi(hyps, s)
    assert [h[0] for h in out] == [cands[specific], cands[generic]]
    assert out[0][1] == pytest.approx(-1.0 - 0.5 * lp[specific], abs=1e-4)
    assert responder._mmi(hyps, ReplySettings(beam=2, rerank="mmi", mmi_lambda=0)) == hyps
    r = responder.reply("hello", settings=ReplySettings(beam=4, nbest=4, no_repeat_ngram=0, rerank="mmi"))
    assert [x for _, x in r.nbest] == sorted((x for _, x in r.nbest), reverse=True)


def test_rerank_setting_parses_like_the_others():
    from chatrnn.decoding import set_value

    s = set_value(ReplySettings(), "rerank", "MMI")
    assert s.rerank == "mmi" and set_value(s, "rerank", "none").rerank == "none"
    assert set_value(s, "mmi_lambda", "0.25").mmi_lambda == 0.25
    with pytest.raises(ChatrnnError, match="rerank must be one of"):
        set_value(s, "rerank", "bogus")
    with pytest.raises(ChatrnnError, match="between"):
        set_value(s, "mmi_lambda", "9")
