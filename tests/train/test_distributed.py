"""DDP on the CPU: two gloo ranks started by torchrun, against one process with the same global batch.

Each multi-process test starts real processes (torchrun --standalone, or a plain python for the
single-process reference) running a small worker script written to ``tmp_path``; the models are tiny
so a test takes seconds, most of it importing torch.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from chatrnn.train import distributed

VENV_BIN = Path(sys.executable).parent
TORCHRUN = VENV_BIN / "torchrun"

WORKER = r"""
import hashlib, json, sys
from pathlib import Path
import torch
from chatrnn.train import distributed
from chatrnn.train.charlm import CharLMOptions, build_charlm
from chatrnn.train.trainer import Trainer

a = json.loads(sys.argv[1])
dist = distributed.from_env("cpu")
rank = dist.rank if dist else 0
train = dict(max_steps=a.get("steps"), max_time=a.get("max_time"), eval_every=a.get("eval_every"),
             evals=a.get("evals", 2), warmup_steps=2, lr=1e-2, seed=7)
train = {k: v for k, v in train.items() if v is not None}  # the limits this run was given
opts = CharLMOptions(out=Path(a["out"]), corpus=[a["corpus"]], preset="tiny", batch_size=a["batch"], seq_len=a["seq"],
                     model=dict(cell="lstm", layers=a.get("layers", 1), hidden=a.get("hidden", 32), embed=16,
                                dropout=a.get("dropout", 0.0)),
                     train=train, device="cpu", resume=a.get("resume", False))
if a.get("kind") == "chat":
    from chatrnn.train.chat import ChatOptions, build_chat

    opts = ChatOptions(out=Path(a["out"]), corpus=[a["corpus"]], preset="tiny", vocab_size=a.get("vocab", 300),
                       batch_size=a["batch"], train=train, device="cpu", resume=a.get("resume", False),
                       model=dict(hidden=a.get("hidden", 32), embed=16, dropout=a.get("dropout", 0.0)))
    task, train = build_chat(opts, torch.device("cpu"), dist)
else:
    task, train = build_charlm(opts, torch.device("cpu"), dist)
digests = {}

def stop_check(step):
    blob = b"".join(p.detach().numpy().tobytes() for p in task.model.parameters())
    digests[step] = hashlib.sha256(blob).hexdigest()
    if a.get("raise_rank") == rank and step >= a["raise_at"]:
        raise RuntimeError(f"rank {rank} fails at step {step}")
    return a.get("stop_rank") == rank and step >= a.get("stop_at", 10**9)

trainer = Trainer(task, train, opts.out, torch.device("cpu"), resume=opts.resume, dist=dist, stop_check=stop_check,
                  train_model=dist.wrap(task.model) if dist else None)
r = trainer.run()
Path(a["record"] + f".{rank}.json").write_text(json.dumps({
    "steps": r.steps, "interrupted": r.interrupted, "best": r.best_val_loss, "last": r.last_metrics,
    "digests": digests, "syncs": dist.syncs if dist else 0}))
if dist:
    dist.close()
"""


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(
        CHATRNN_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", CHATRNN_DIST_TIMEOUT="60", PYTHONUNBUFFERED="1"
    )
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = random.Random(0)
    words = "the of and to in a is that for it as was with be by on not he this are or his from at which".split()
    lines = []
    for _ in range(1500):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))).capitalize() + ".")
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(lines) + "\n", "utf-8")
    return p


@pytest.fixture
def dialogs(tmp_path: Path) -> Path:
    rng = random.Random(1)
    things = "cat dog sun moon tea bread rain snow book song".split()
    colours = "red blue green black white warm cold small big old".split()
    rows = ["Q,A"]
    for _ in range(600):
        t, c = rng.choice(things), rng.choice(colours)
        rows.append(f"what is the {t} like,the {t} is {c}")
        rows.append(f"do you like the {c} {t},yes i like the {t}")
    p = tmp_path / "pairs.csv"
    p.write_text("\n".join(rows) + "\n", "utf-8")
    return p


def _script(tmp_path: Path) -> Path:
    p = tmp_path / "worker.py"
    p.write_text(WORKER, "utf-8")
    return p


def run_worker(tmp_path: Path, nproc: int, args: dict, timeout: float = 90) -> subprocess.CompletedProcess:
    script = _script(tmp_path)
    if nproc == 1:
        cmd = [sys.executable, str(script), json.dumps(args)]
    else:
        cmd = [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", str(script), json.dumps(args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def record(args: dict, rank: int = 0) -> dict:
    return json.loads(Path(args["record"] + f".{rank}.json").read_text())


def weights(folder: Path, name: str = "last.safetensors") -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / name))


def _base(tmp_path: Path, corpus: Path, name: str, **kw) -> dict:
    a = dict(
        corpus=str(corpus),
        out=str(tmp_path / name),
        record=str(tmp_path / f"{name}.rec"),
        batch=8,
        seq=16,
        steps=8,
        eval_every=4,
    )
    a.update(kw)
    return a


# ---------------------------------------------------------------------------------------------
# two real ranks
# ---------------------------------------------------------------------------------------------
def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path, corpus):
    two = _base(tmp_path, corpus, "two")
    one = _base(tmp_path, corpus, "one")
    run_worker(tmp_path, 2, two)
    run_worker(tmp_path, 1, one)
    r0, r1, single = record(two, 0), record(two, 1), record(one, 0)
    assert r0["steps"] == r1["steps"] == 8 and not r0["interrupted"]
    # the two replicas hold identical weights after every step
    assert r0["digests"] == r1["digests"] and len(r0["digests"]) >= 9
    # one checkpoint, written once (rank 0), for the global batch
    folders = [p for p in tmp_path.iterdir() if p.is_dir() and (p / "config.json").exists()]
    assert sorted(p.name for p in folders) == ["one", "two"]
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["batch"]["batch_size"] == 8 and cfg["training"]["world_size"] == 2 and cfg["training"]["finished"]
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2
    # 2 ranks x 4 rows is the same optimisation as 1 process x 8 rows
    w2, w1 = weights(tmp_path / "two"), weights(tmp_path / "one")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=2e-5, rtol=1e-4)
    assert abs(r0["best"] - single["best"]) < 1e-4
    assert r0["last"]["chars"] == single["last"]["chars"]  # validation sharded over ranks, summed back
    state = torch.load(tmp_path / "two" / "train_state.pt", weights_only=True)
    assert state["task"]["hidden"][0].shape == (1, 8, 32)  # both ranks' TBPTT rows, in global order
    assert len(state["rng"]["ranks"]) == 2


def test_chat_model_on_two_ranks(tmp_path, dialogs):
    two = _base(tmp_path, dialogs, "chat2", kind="chat", batch=16, steps=12, eval_every=6)
    one = _base(tmp_path, dialogs, "chat1", kind="chat", batch=16, steps=12, eval_every=6)
    run_worker(tmp_path, 2, two)
    run_worker(tmp_path, 1, one)
    r0, r1, single = record(two, 0), record(two, 1), record(one, 0)
    assert r0["steps"] == r1["steps"] == 12 and r0["digests"] == r1["digests"]
    assert (tmp_path / "chat2" / "tokenizer.model").exists()
    cfg = json.loads((tmp_path / "chat2" / "config.json").read_text())
    assert cfg["batch"]["batch_size"] == 16 and cfg["training"]["world_size"] == 2
    # the buckets are cut differently for 2 x 8 than for 1 x 16, so close rather than equal
    assert r0["last"]["tokens"] == single["last"]["tokens"]  # every validation pair scored once
    assert abs(r0["best"] - single["best"]) < 0.1 * single["best"]
    b = _base(
        tmp_path,
        dialogs,
        "chat2",
        kind="chat",
        batch=16,
        steps=15,
        eval_every=None,
        evals=1,
        resume=True,
        record=str(tmp_path / "chat2r.rec"),
    )
    run_worker(tmp_path, 1, b)  # resumes on one process
    assert record(b, 0)["steps"] == 15


def test_resume_with_another_number_of_ranks_continues_exactly(tmp_path, corpus):
    start = _base(tmp_path, corpus, "start", steps=5, eval_every=None, evals=1)
    run_worker(tmp_path, 1, start)
    import shutil

    shutil.copytree(tmp_path / "start", tmp_path / "as_two")
    shutil.copytree(tmp_path / "start", tmp_path / "as_one")
    run_worker(tmp_path, 2, _base(tmp_path, corpus, "as_two", steps=10, resume=True, evals=1, eval_every=None))
    run_worker(tmp_path, 1, _base(tmp_path, corpus, "as_one", steps=10, resume=True, evals=1, eval_every=None))
    w2, w1 = weights(tmp_path / "as_two"), weights(tmp_path / "as_one")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=2e-5, rtol=1e-4)
    # and back from two ranks to one
    shutil.copytree(tmp_path / "as_two", tmp_path / "back")
    run_worker(tmp_path, 1, _base(tmp_path, corpus, "back", steps=12, resume=True, evals=1, eval_every=None))
    assert json.loads((tmp_path / "back" / "config.json").read_text())["training"]["steps"] == 12


def test_a_stop_on_one_rank_stops_both_with_a_resumable_checkpoint(tmp_path, corpus):
    a = _base(tmp_path, corpus, "stop", steps=100_000, eval_every=None, evals=1, stop_rank=1, stop_at=6)
    t0 = time.monotonic()
    run_worker(tmp_path, 2, a, timeout=60)
    assert time.monotonic() - t0 < 45
    r0, r1 = record(a, 0), record(a, 1)
    assert r0["interrupted"] and r1["interrupted"] and r0["steps"] == r1["steps"] >= 6
    assert r0["steps"] < 1000  # stopped at the next agreement, not at the step limit
    cfg = json.loads((tmp_path / "stop" / "config.json").read_text())
    assert cfg["training"]["steps"] == r0["steps"] and not cfg["training"]["finished"]
    b = _base(
        tmp_path,
        corpus,
        "stop",
        steps=r0["steps"] + 3,
        eval_every=None,
        evals=1,
        resume=True,
        record=str(tmp_path / "resumed.rec"),
    )
    run_worker(tmp_path, 2, b)
    assert record(b, 0)["steps"] == r0["steps"] + 3


def test_a_failing_rank_ends_the_job_instead_of_hanging(tmp_path, corpus):
    a = _base(tmp_path, corpus, "fail", steps=100_000, eval_every=None, evals=1, raise_rank=1, raise_at=5)
    script = _script(tmp_path)
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(script), json.dumps(a)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=_env(tmp_path))
    assert p.returncode != 0 and "rank 1 fails at step 5" in p.stdout + p.stderr
    assert time.monotonic() - t0 < 60


def test_time_budget_is_agreed(tmp_path, corpus):
    a = _base(tmp_path, corpus, "budget", steps=None, max_time=2.0, eval_every=None, evals=2)
    run_worker(tmp_path, 2, a, timeout=60)
    r0, r1 = record(a, 0), record(a, 1)
    assert r0["steps"] == r1["steps"] > 2 and r0["digests"] == r1["digests"] and not r0["interrupted"]
    assert r0["syncs"] < r0["steps"]  # not a collective on every step
    cfg = json.loads((tmp_path / "budget" / "config.json").read_text())
    assert cfg["training"]["finished"] and 1.9 < cfg["training"]["train_time_s"] < 6


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"RANK="):
            return int(kv[5:])
    return None


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find torchrun's workers")
@pytest.mark.parametrize("target", ["one_worker", "torchrun"])
def test_sigint_stops_all_ranks_cleanly(tmp_path, corpus, target):
    """Ctrl-C reaches torchrun, which forwards SIGINT to every worker; a signal may also hit one worker."""
    out = tmp_path / "sig"
    cmd = [
        str(TORCHRUN),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "chatrnn",
        "train",
        "charlm",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--hidden",
        "32",
        "--batch-size",
        "8",
        "--seq-len",
        "16",
        "--max-time",
        "90s",
        "--evals",
        "1",
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(tmp_path), cwd=tmp_path
    )
    lines: list[str] = []
    started = threading.Event()

    def pump():
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("char LM:"):
                started.set()

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    try:
        assert started.wait(60), "".join(lines)
        time.sleep(1.0)
        if target == "torchrun":
            victim = proc.pid
        else:
            workers = _children(proc.pid)
            victim = next(p for p in workers if _rank_of(p) == 1)
        t0 = time.monotonic()
        os.kill(victim, signal.SIGINT)
        rc = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    th.join(5)
    log = "".join(lines)
    assert took < 15, log
    assert rc != 0  # stopped, not finished: rank 0 exits 130 after the clean save
    if target == "one_worker":
        assert log.count("exitcode  : 130") == 1 and "local_rank: 0" in log, log  # rank 0 reports the stop
        assert "SIGTERM" not in log.split("interrupted at step")[0], log  # nobody was killed before the save
    assert "interrupted at step" in log, log
    cfg = json.loads((out / "config.json").read_text())
    assert not cfg["training"]["finished"] and cfg["training"]["steps"] > 0
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["step"] == cfg["training"]["steps"]


# ---------------------------------------------------------------------------------------------
# pieces, in one process
# ---------------------------------------------------------------------------------------------
def test_agree_extrapolates_between_syncs_and_forces_one_at_the_deadline(monkeypatch):
    ctx = distributed.DistContext(rank=0, world=2, local_rank=0, device=torch.device("cpu"))
    calls = []

    def fake(values):
        calls.append(values)
        return [values[0], values[1] + 0.001]  # another rank's clock a little ahead

    monkeypatch.setattr(ctx, "_all_reduce_max", fake)
    assert ctx.agree(0, False, 0.0) == (False, 0.001)
    assert ctx.agree(1, False, 0.01)[1] == pytest.approx(0.011)  # second sync: seconds per step known
    n = len(calls)
    stop, e = ctx.agree(2, True, 123.0)  # a local stop waits for the next agreement
    assert not stop and e == pytest.approx(0.021) and len(calls) == n
    for step in range(3, 200):
        stop, e = ctx.agree(step, False, step * 0.01)
        if stop:
            break
    assert stop and step <= 11 and len(calls) == n + 1  # about AGREE_EVERY_S later
    # a deadline that the extrapolated clock reaches forces an agreement on every rank at that step
    ctx2 = distributed.DistContext(rank=0, world=2, local_rank=0, device=torch.device("cpu"))
    monkeypatch.setattr(ctx2, "_all_reduce_max", lambda v: calls.append(v) or v)
    ctx2.agree(0, False, 0.0)
    ctx2.agree(1, False, 0.001)
    n = len(calls)
    _, e = ctx2.agree(2, False, 0.002, deadline=0.0025)
    assert len(calls) == n
    _, e = ctx2.agree(3, False, 0.003, deadline=0.0025)
    assert len(calls) == n + 1 and e == 0.003


def test_evaluation_shards_sum_to_the_single_process_figure():
    import numpy as np

    from chatrnn.models.charlm import CharLM, CharLMConfig
    from chatrnn.train.charlm_task import evaluate_stream

    torch.manual_seed(0)
    model = CharLM(CharLMConfig(vocab_size=20, hidden=16, embed=8, layers=1))
    data = np.random.default_rng(0).integers(0, 20, 5000).astype(np.uint8)
    full = evaluate_stream(model, data, torch.device("cpu"), rows=8, seq_len=32)
    parts = [evaluate_stream(model, data, torch.device("cpu"), rows=8, seq_len=32, rank=r, world=2) for r in (0, 1)]
    assert sum(p["chars"] for p in parts) == full["chars"]
    mean = sum(p["loss"] * p["chars"] for p in parts) / full["chars"]
    assert mean == pytest.approx(full["loss"], rel=1e-6)


def test_task_state_merges_in_row_order_and_splits_for_any_world():
    import numpy as np

    from chatrnn.charvocab import CharVocab
    from chatrnn.models.charlm import CharLM, CharLMConfig
    from chatrnn.train.charlm_task import CharLMData, CharLMTask

    vocab = CharVocab(list("abcdefgh"))
    arr = np.random.default_rng(0).integers(0, 8, 4000).astype(np.uint8)
    data = CharLMData(vocab, arr, arr[:500], ["x"])
    model = CharLM(CharLMConfig(vocab_size=8, hidden=4, embed=4, layers=2))
    ranks = [CharLMTask(model, data, 2, 16, torch.device("cpu"), rank=r, world=2) for r in (0, 1)]
    for r, t in enumerate(ranks):
        t.next_batch(0.0)
        t.state = (torch.full((2, 2, 4), float(r)), torch.full((2, 2, 4), 10.0 + r))
    merged = ranks[0].merge_rank_states([t.state_dict() for t in ranks])
    assert merged["hidden"][0].shape == (2, 4, 4)
    single = CharLMTask(model, data, 4, 16, torch.device("cpu"))
    single.load_state_dict(merged)
    assert torch.equal(single.state[0][:, 2:], torch.ones(2, 2, 4)) and single.rows.pos == 1
    again = CharLMTask(model, data, 2, 16, torch.device("cpu"), rank=1, world=2)
    again.load_state_dict(merged)
    assert torch.equal(again.state[1], torch.full((2, 2, 4), 11.0))
    other = CharLMTask(model, data, 8, 16, torch.device("cpu"))  # another global batch: fresh state
    other.load_state_dict(merged)
    assert other.state is None


def test_dry_run_prints_the_plan(tmp_path, monkeypatch, corpus):
    from click.testing import CliRunner

    from chatrnn.cli import cli

    monkeypatch.setenv("CHATRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "charlm",
            "--corpus",
            str(corpus),
            "--out",
            str(tmp_path / "p"),
            "--preset",
            "tiny",
            "--device",
            "cpu",
            "--max-steps",
            "100",
            "--dry-run",
        ],
    )
    assert r.exit_code == 0, r.output
    out = r.output
    assert "2 rank(s)" in out and "parameters" in out and "per step" in out and "memory" in out
    assert "steps" in out and not (tmp_path / "p").exists()
    assert not torch.distributed.is_initialized()


def test_dry_run_of_both_models(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from chatrnn.cli import cli

    monkeypatch.setenv("CHATRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(tmp_path / "ck"))
    r = CliRunner().invoke(cli, ["train", "--dry-run", "--device", "cpu", "--max-time", "2m"])
    assert r.exit_code == 0, r.output
    assert "plan for charlm" in r.output and "plan for chat" in r.output and "estimated memory" in r.output
    assert not (tmp_path / "ck").exists()


def test_train_both_models_under_torchrun(tmp_path, dialogs):
    """``torchrun ... -m chatrnn train``: one process group for both runs, one checkpoint each."""
    env = _env(tmp_path)
    env["CHATRNN_CHECKPOINTS"] = str(tmp_path / "ck")
    cmd = [
        str(TORCHRUN),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "chatrnn",
        "train",
        "--corpus",
        str(dialogs),
        "--max-time",
        "16s",
        "--device",
        "cpu",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert p.stdout.count("[2/2] chat model") == 1  # rank 0 alone reports
    for kind in ("charlm", "chat"):
        cfg = json.loads((tmp_path / "ck" / kind / "config.json").read_text())
        assert cfg["training"]["world_size"] == 2 and cfg["training"]["finished"]


def test_chat_order_resumed_on_another_world_keeps_its_place_in_the_epoch():
    from chatrnn.train.chat_task import BucketedOrder

    lengths = [(i % 7 + 1, i % 5 + 1) for i in range(400)]
    ranks = [BucketedOrder(lengths, 8, seed=3, rank=r, world=2) for r in (0, 1)]
    assert len(ranks[0].batches) == len(ranks[1].batches)  # lockstep
    seen = {i for o in ranks for b in o.batches for i in b}
    assert len(seen) >= 400 - 2 * 8  # every example but a ragged tail batch, on exactly one rank
    for _ in range(10):
        ranks[0].next()
    single = BucketedOrder(lengths, 16, seed=3)
    single.load_state_dict(ranks[0].state_dict())
    assert single.pos == round(10 * len(single.batches) / len(ranks[0].batches))
