"""Nothing a user owns is lost by training (issue 10, "Data loss" 1-5 and "resume after the corpus
changed" 14).

Every case trains a real tiny checkpoint (the ``tiny`` preset, a few steps, text written to
``tmp_path``), does the hostile or unlucky thing, and checks the exit code, the one line on
stderr, that no traceback was printed, and that everything under the user's folder is still
there, byte for byte. Signals and the lock are tested with real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from chatrnn import checkpoint as ckpt
from chatrnn.cli import cli
from chatrnn.errors import ChatrnnError
from chatrnn.train.output import RunLock, lock_path

DATA = Path(__file__).resolve().parent.parent / "data"
TORCHRUN = Path(sys.executable).parent / "torchrun"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry under ``folder``, recursively: files by content, links by target, folders by name."""
    out: dict[str, bytes] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = b"-> " + os.readlink(p).encode()
        elif p.is_dir():
            out[rel] = b"<dir>"
        else:
            out[rel] = p.read_bytes()
    return out


def one_line_error(r, *needles: str) -> str:
    """A CliRunner result that failed with exactly one line on stderr and no traceback."""
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def train_args(corpus: Path, out: Path, *extra: str, steps: int = 10) -> list[str]:
    return [
        *("train", "charlm", "--corpus", str(corpus), "--preset", "tiny", "--threads", "1", "--quiet"),
        *("--max-steps", str(steps), "--out", str(out), *extra),
    ]


def train(corpus: Path, out: Path, *extra: str, steps: int = 10):
    return CliRunner().invoke(cli, train_args(corpus, out, *extra, steps=steps))


def strict_json(path: Path):
    """JSON as the standard defines it: NaN and Infinity are not JSON."""

    def refuse(name):
        raise AssertionError(f"{path} holds {name}")

    return json.loads(path.read_text("utf-8"), parse_constant=refuse)


@pytest.fixture
def model(tmp_path, sample_text_file) -> Path:
    """A real tiny char LM checkpoint in ``tmp_path/m``, 10 steps."""
    out = tmp_path / "m"
    r = train(sample_text_file, out)
    assert r.exit_code == 0, r.output
    return out


# ----- 1. --out at a folder that is not a checkpoint ----------------------------------------------
def test_a_non_empty_folder_that_is_not_a_checkpoint_is_refused_and_untouched(tmp_path, sample_text_file):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("x")
    (d / "notes.txt").write_text("mine")
    before = snapshot(d)
    for extra in ((), ("--overwrite",)):
        one_line_error(train(sample_text_file, d, *extra), str(d), "not a chatrnn checkpoint")
        assert snapshot(d) == before
    hf = tmp_path / "hf"  # someone else's config.json is not a checkpoint of ours
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "bert"}')
    one_line_error(train(sample_text_file, hf, "--overwrite"), "not a chatrnn checkpoint")
    assert snapshot(hf) == {"config.json": b'{"model_type": "bert"}'}
    f = tmp_path / "file"
    f.write_text("data")
    one_line_error(train(sample_text_file, f), "is a file")
    assert f.read_text() == "data"
    assert not list(tmp_path.glob(".*"))  # no temp folder or lock left beside them


def test_an_empty_folder_or_a_link_to_one_is_fine(tmp_path, sample_text_file):
    (tmp_path / "e").mkdir()
    assert train(sample_text_file, tmp_path / "e").exit_code == 0
    assert (tmp_path / "e" / ckpt.CONFIG).is_file()
    (tmp_path / "disk").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "disk")  # --out on a bigger disk, through a link
    for extra in ((), ("--resume",)):
        assert train(sample_text_file, tmp_path / "link", *extra, steps=4 + len(extra)).exit_code == 0
        assert (tmp_path / "link").is_symlink() and (tmp_path / "disk" / ckpt.CONFIG).is_file()
    assert ckpt.load_train_state(tmp_path / "link")["step"] == 5


def test_a_users_files_inside_a_checkpoint_survive_every_save(model, sample_text_file):
    (model / "notes.txt").write_text("my notes")
    (model / "samples" / "deep").mkdir(parents=True)
    (model / "samples" / "deep" / "out.bin").write_bytes(b"\x00\x01")
    (model / "latest").symlink_to("notes.txt")
    mine = {k: v for k, v in snapshot(model).items() if k.split("/")[0] in ("notes.txt", "samples", "latest")}
    stale = model.parent / ".m.tmp-999999"  # the staging folder of a run killed mid-save
    stale.mkdir()
    (stale / ckpt.CONFIG).write_text("{}")
    r = train(sample_text_file, model, "--resume", steps=14)
    assert r.exit_code == 0, r.output
    assert not stale.exists()
    after = snapshot(model)
    assert {k: after.get(k) for k in mine} == mine and (model / "latest").is_symlink()
    assert ckpt.load_train_state(model)["step"] == 14
    r = train(sample_text_file, model, "--overwrite", steps=6)
    assert r.exit_code == 0, r.output
    after = snapshot(model)
    assert {k: after.get(k) for k in mine} == mine


# ----- 2. a fresh run into an existing checkpoint ---------------------------------------------------
def test_a_fresh_run_into_a_checkpoint_needs_overwrite(model, sample_text_file):
    before = snapshot(model)
    one_line_error(train(sample_text_file, model), str(model), "already holds a trained charlm model", "--overwrite")
    assert snapshot(model) == before
    one_line_error(train(sample_text_file, model, "--resume", "--overwrite"), "not both")
    assert snapshot(model) == before


def test_overwrite_starts_a_clean_folder(tmp_path, sample_text_file):
    """A chat checkpoint replaced by a char LM: no stale tokenizer, metrics or resume state survive."""
    out = tmp_path / "chat"
    shutil.copytree(DATA / "chat_v1", out)
    old_metrics = (out / ckpt.METRICS).read_text()
    one_line_error(train(sample_text_file, out), "already holds a trained chat model")
    assert (out / "tokenizer.model").is_file()
    r = train(sample_text_file, out, "--overwrite", "--evals", "2", steps=6)
    assert r.exit_code == 0, r.output
    assert not (out / "tokenizer.model").exists()
    assert ckpt.read_config(out)["kind"] == "charlm"
    lines = (out / ckpt.METRICS).read_text().splitlines()
    assert len(lines) == 2 and old_metrics not in (out / ckpt.METRICS).read_text()
    assert ckpt.load_train_state(out)["step"] == 6


def test_train_both_checks_both_folders_before_training(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    shutil.copytree(DATA / "chat_v1", root / "chat")
    before = snapshot(root)
    t = time.monotonic()
    r = CliRunner().invoke(cli, ["train", "--max-time", "30s", "--device", "cpu", "--quiet"])
    one_line_error(r, str(root / "chat"), "--overwrite")
    assert time.monotonic() - t < 10  # refused before the char LM spent its share of the budget
    assert snapshot(root) == before and not (root / "charlm").exists()


# ----- 3. two runs on one folder --------------------------------------------------------------------
def test_the_run_lock_names_its_holder_and_goes_away(tmp_path):
    out = tmp_path / "m"
    first = RunLock(out)
    first.acquire()
    try:
        assert lock_path(out).read_text().strip() == str(os.getpid())
        with pytest.raises(ChatrnnError, match=rf"another run \(PID {os.getpid()}\)"):
            RunLock(out).acquire()
    finally:
        first.release()
    assert not lock_path(out).exists()
    again = RunLock(out)
    again.acquire()
    again.release()


class _Stop(BaseException):
    """Stands in for the stop signal's exception, raised at a chosen point of taking the lock."""


@pytest.mark.parametrize("where", ["flock", "ftruncate", "pwrite"])
def test_a_stop_while_the_lock_is_being_taken_leaves_no_lock(tmp_path, monkeypatch, where):
    """A stop signal landing after the lock file is created but before the lock is recorded used
    to unwind past release(), leaving ``.NAME.lock`` behind (seen once in CI as a flaky SIGHUP run
    of the test below). Raised before flock (nobody holds the file) or after it (we do): gone."""
    import fcntl

    out = tmp_path / "m"

    def stop_once(target, name: str) -> None:
        real = getattr(target, name)
        calls: list = []

        def stop_first_time(*args):
            calls.append(args)
            if len(calls) == 1:
                raise _Stop
            return real(*args)

        monkeypatch.setattr(target, name, stop_first_time)

    stop_once(*((fcntl, "flock") if where == "flock" else (os, where)))
    lock = RunLock(out)
    with pytest.raises(_Stop):
        lock.acquire()
    monkeypatch.undo()
    assert lock.fd is None and not lock_path(out).exists()
    held = RunLock(out)  # another run holds the lock: a stop during our attempt leaves its file alone
    held.acquire()
    try:
        stop_once(fcntl, "flock")
        with pytest.raises(_Stop):
            RunLock(out).acquire()
        monkeypatch.undo()
        assert lock_path(out).read_text().strip() == str(os.getpid())
    finally:
        held.release()
    assert not lock_path(out).exists()


def _start(corpus: Path, out: Path, *extra: str) -> subprocess.Popen:
    args = train_args(corpus, out, "--eval-every", "5", *extra, steps=1_000_000)
    return subprocess.Popen(
        [sys.executable, "-m", "chatrnn", *[a for a in args if a != "--quiet"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(out: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    t = time.monotonic()
    while not (out / ckpt.CONFIG).exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t < timeout
        time.sleep(0.1)


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatrnn", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _one_line(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_sigterm_saves_and_a_second_run_is_locked_out(tmp_path, sample_text_file):
    """SIGTERM (torchrun, systemd, Slurm, docker stop) is a Ctrl-C: the step ends, a resumable
    checkpoint is saved, exit 143; while the run lives, a second one on its folder fails at once
    naming its PID, and readers are not blocked."""
    out = tmp_path / "m"
    proc = _start(sample_text_file, out)
    try:
        _wait_for_checkpoint(out, proc)
        t = time.monotonic()
        second = _cli(*train_args(sample_text_file, out, "--resume", steps=5))
        _one_line(second, f"PID {proc.pid}", str(out))
        assert time.monotonic() - t < 60  # no corpus read, no waiting for the lock
        fresh = _cli(*train_args(sample_text_file, out, "--overwrite", steps=5))
        _one_line(fresh, f"PID {proc.pid}")
        reader = _cli("generate", "-c", str(out), "-n", "5", "--rng-seed", "0")
        assert reader.returncode == 0 and reader.stdout, reader.stderr
        assert proc.poll() is None  # the first run went on
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "interrupted at step" in stdout and "Traceback" not in stderr
    state = ckpt.load_train_state(out)
    assert state["step"] > 0 and not ckpt.read_config(out)["training"]["finished"]
    assert not lock_path(out).exists()
    resumed = _cli(*train_args(sample_text_file, out, "--resume", steps=state["step"] + 3))
    assert resumed.returncode == 0, resumed.stderr
    assert ckpt.load_train_state(out)["step"] == state["step"] + 3


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_saves_too(tmp_path, sample_text_file):
    out = tmp_path / "m"
    proc = _start(sample_text_file, out)
    try:
        _wait_for_checkpoint(out, proc)
        proc.send_signal(signal.SIGHUP)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 129, stderr
    assert "interrupted at step" in stdout and "Traceback" not in stderr
    assert ckpt.load_train_state(out)["step"] == ckpt.read_config(out)["training"]["steps"] > 0


@pytest.mark.skipif(not hasattr(signal, "SIGHUP") or sys.platform == "win32", reason="needs a pty and SIGHUP")
def test_sighup_after_the_terminal_closed_still_saves(tmp_path, sample_text_file):
    """The terminal is gone (writes to it fail with EIO) and SIGHUP arrives: the save must not
    die on the progress output."""
    out = tmp_path / "m"
    main, sub = os.openpty()
    args = train_args(sample_text_file, out, "--eval-every", "5", steps=1_000_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatrnn", *[a for a in args if a != "--quiet"]], stdout=sub, stderr=sub
    )
    os.close(sub)
    drained = threading.Thread(target=lambda: _drain(main), daemon=True)
    drained.start()
    try:
        _wait_for_checkpoint(out, proc)
        os.close(main)  # hang up: the slave side now fails every write; the kernel's SIGHUP follows
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 129
    state = ckpt.load_train_state(out)
    assert state["step"] == ckpt.read_config(out)["training"]["steps"] > 0


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


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
    return next((int(kv[5:]) for kv in env if kv.startswith(b"RANK=")), None)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find torchrun's workers")
def test_sigterm_to_one_torchrun_worker_stops_every_rank_with_143(tmp_path, sample_text_file):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", CHATRNN_DIST_TIMEOUT="60", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    cmd = [
        *(str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "chatrnn", "train", "charlm"),
        *("--corpus", str(sample_text_file), "--out", str(out), "--preset", "tiny", "--batch-size", "8"),
        *("--seq-len", "16", "--max-time", "90s", "--evals", "1", "--device", "cpu"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
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
        assert started.wait(90), "".join(lines)
        time.sleep(1.0)
        victim = next(p for p in _children(proc.pid) if _rank_of(p) == 1)
        os.kill(victim, signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    th.join(5)
    log = "".join(lines)
    assert "interrupted at step" in log and "exitcode  : 143" in log, log  # rank 0 reports the signal
    cfg = json.loads((out / "config.json").read_text())
    assert not cfg["training"]["finished"] and cfg["training"]["steps"] > 0
    ckpt.load_train_state(out)


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_a_stop_before_training_starts_leaves_no_lock(tmp_path, name, code):
    """A stop signal while the corpus is still being read (before the trainer's own handlers):
    one line, 128 + N, and the run lock released (Python's default for SIGTERM / SIGHUP killed the
    process there and left ``.NAME.lock`` behind; Ctrl-C printed click's "Aborted!", exit 1)."""
    sig = getattr(signal, name, None)
    if sig is None:
        pytest.skip(f"no {name} on this platform")
    corpus = tmp_path / "big.txt"  # ~20 MB: seconds of reading and encoding after the lock is taken
    corpus.write_text("the quick brown fox jumps over the lazy dog, said the king.\n" * 340_000, "utf-8")
    out = tmp_path / "m"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatrnn", *train_args(corpus, out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        t = time.monotonic()
        while not lock_path(out).exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - t < 90
            time.sleep(0.005)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"stopped by {'Ctrl-C' if name == 'SIGINT' else name}" in lines[0], stderr
    assert not lock_path(out).exists()
    assert not out.exists()  # stopped before any checkpoint: nothing half-written either
    assert [p.name for p in tmp_path.iterdir()] == ["big.txt"]  # no staging folder left


# ----- 5. NaN that appears only at evaluation ------------------------------------------------------
def test_a_nan_at_evaluation_never_reaches_a_file(tmp_path, model, sample_text_file):
    diverge = ("--lr", "1e39", "--eval-every", "1")
    new = tmp_path / "new"
    one_line_error(train(sample_text_file, new, *diverge), "validation loss became nan", "nothing was saved")
    assert not new.exists()
    strict_json(model / ckpt.CONFIG)
    before = snapshot(model)
    msg = one_line_error(train(sample_text_file, model, "--resume", *diverge, steps=20), "validation loss became nan")
    assert f"{model} keeps the last good checkpoint (step 10)" in msg
    assert snapshot(model) == before
    msg = one_line_error(train(sample_text_file, model, "--overwrite", *diverge), "nothing was saved")
    assert "still holds the model it had before" in msg
    assert snapshot(model) == before


def test_non_finite_values_are_never_written_as_json(tmp_path):
    with pytest.raises(ValueError), ckpt.update_checkpoint(tmp_path / "x") as st:
        st.save_json(ckpt.CONFIG, {"training": {"best_val_loss": float("nan")}})
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())


def test_a_non_finite_setting_is_refused_not_written(tmp_path, sample_text_file):
    from chatrnn.train.charlm import CharLMOptions, train_charlm

    r = train(sample_text_file, tmp_path / "cli", "--grad-clip", "inf")
    assert r.exit_code == 2 and "not a finite number" in r.stderr and not (tmp_path / "cli").exists()
    out = tmp_path / "lib"  # a library caller gets past the CLI: the save refuses it
    opts = CharLMOptions(
        out=out, corpus=[str(sample_text_file)], preset="tiny", device="cpu", train=dict(max_steps=3, grad_clip=1e400)
    )
    with pytest.raises(ChatrnnError, match="not a finite number.*nothing was saved"):
        train_charlm(opts)
    assert not out.exists()


def test_non_finite_weights_are_refused_on_load(tmp_path, model, sample_text_file):
    from safetensors.torch import load_file, save_file

    for name in (ckpt.BEST_WEIGHTS, ckpt.LAST_WEIGHTS):
        w = load_file(str(model / name))
        w["head.weight"][0, 0] = float("nan")
        save_file(w, str(model / name))
    before = snapshot(model)
    one_line_error(CliRunner().invoke(cli, ["generate", "-c", str(model), "-n", "5"]), "non-finite", "head.weight")
    one_line_error(CliRunner().invoke(cli, ["eval", "-c", str(model), "--file", str(sample_text_file)]), "non-finite")
    one_line_error(train(sample_text_file, model, "--resume", steps=12), "non-finite")
    assert snapshot(model) == before


# ----- 14. resume after the corpus changed ---------------------------------------------------------
def test_resume_on_another_corpus_is_refused_or_allowed_with_a_warning(tmp_path, model, sample_text_file):
    other = tmp_path / "other.txt"
    other.write_text(sample_text_file.read_text("utf-8").replace("ROMEO", "ZEBRA"), "utf-8")
    before = snapshot(model)
    one_line_error(train(other, model, "--resume", steps=14), "corpus differs", "sample.txt", "--allow-corpus-change")
    one_line_error(train(sample_text_file, model, "--resume", "--val-fraction", "0.2", steps=14), "corpus differs")
    assert snapshot(model) == before
    old_digest = ckpt.read_config(model)["corpus"]["digest"]
    r = train(other, model, "--resume", "--allow-corpus-change", "--evals", "2", steps=14)
    assert r.exit_code == 0, r.output
    assert "warning: the corpus changed" in r.stderr and "best validation loss starts over" in r.stderr
    cfg = ckpt.read_config(model)
    new_evals = [m["val_loss"] for m in ckpt.read_metrics(model) if m["step"] > 10]
    assert new_evals and cfg["training"]["best_val_loss"] == min(new_evals)
    assert cfg["corpus"]["digest"] != old_digest and cfg["corpus"]["sources"] == [str(other)]
    # the new corpus is the checkpoint's now
    assert train(other, model, "--resume", steps=16).exit_code == 0


def test_a_checkpoint_without_a_corpus_digest_resumes_as_before(tmp_path, model, sample_text_file):
    state = ckpt.load_train_state(model)
    del state["corpus_digest"]
    torch.save(state, model / ckpt.TRAIN_STATE)
    other = tmp_path / "other.txt"
    other.write_text(sample_text_file.read_text("utf-8") + "More lines of text.\n" * 5, "utf-8")
    r = train(other, model, "--resume", steps=12)
    assert r.exit_code == 0, r.output
    assert "warning" not in r.stderr and ckpt.load_train_state(model)["step"] == 12


def test_chat_resume_on_other_dialogs_is_refused(tmp_path):
    def csv(path: Path, n: int, word: str) -> Path:
        path.write_text("Q,A\n" + "".join(f"{word} number {i},hi {i}\n" for i in range(n)), "utf-8")
        return path

    first, second = csv(tmp_path / "a.csv", 24, "hello"), csv(tmp_path / "b.csv", 24, "howdy")
    out = tmp_path / "chat"
    base = ("train", "chat", "--preset", "tiny", "--threads", "1", "--quiet", "--evals", "1", "--out", str(out))
    r = CliRunner().invoke(cli, [*base, "--corpus", str(first), "--max-steps", "3"])
    assert r.exit_code == 0, r.output
    before = snapshot(out)
    one_line_error(
        CliRunner().invoke(cli, [*base, "--corpus", str(second), "--max-steps", "5", "--resume"]), "corpus differs"
    )
    assert snapshot(out) == before
    r = CliRunner().invoke(cli, [*base, "--max-steps", "5", "--resume"])  # the stored corpus: the same dialogs
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------------------------------------
# what sits where the lock file goes: never followed, never truncated, one line


def test_a_lock_path_linked_to_a_users_file_leaves_the_file_alone(tmp_path):
    out = tmp_path / "m"
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    lock_path(out).symlink_to(precious)
    with pytest.raises(ChatrnnError, match="cannot use the lock file"):
        RunLock(out).acquire()
    assert precious.read_text() == "keep me\n"
    assert lock_path(out).is_symlink()


def test_a_folder_where_the_lock_goes_is_one_line(tmp_path, sample_text_file):
    out = tmp_path / "m"
    lock_path(out).mkdir()
    one_line_error(train(sample_text_file, out), "cannot use the lock file")


def test_an_out_below_a_file_is_one_line(tmp_path, sample_text_file):
    (tmp_path / "f").write_text("mine\n")
    one_line_error(train(sample_text_file, tmp_path / "f" / "sub"), "cannot create the folder of --out")
    assert (tmp_path / "f").read_text() == "mine\n"


def test_a_users_folder_named_like_a_stage_is_not_swept(tmp_path, sample_text_file):
    out = tmp_path / "m"
    theirs = tmp_path / ".m.tmp-1"
    theirs.mkdir()
    (theirs / "notes.md").write_text("mine\n")
    assert train(sample_text_file, out).exit_code == 0
    assert (theirs / "notes.md").read_text() == "mine\n"
