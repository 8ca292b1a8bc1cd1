import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from chatrnn import checkpoint as ckpt
from chatrnn.cli import cli

COMMANDS = [
    [],
    ["train"],
    ["train", "charlm"],
    ["train", "chat"],
    ["generate"],
    ["eval"],
    ["info"],
    ["reply"],
    ["chat"],
    ["corpus"],
    ["corpus", "check"],
    ["neurons"],
]


def run_cli(*args, env=None, **kw):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "chatrnn", *args], capture_output=True, text=True, env=e, **kw)


def test_help_never_imports_torch():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom chatrnn.cli import cli\n"
        f"for args in {COMMANDS!r}:\n"
        "    r = CliRunner().invoke(cli, args + ['--help'])\n"
        "    assert r.exit_code == 0, (args, r.output)\n"
        "heavy = [m for m in ('torch', 'textual', 'sentencepiece', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"--help imported {out}"


def test_every_entry_point_lists_the_same_commands():
    """``python -m chatrnn.cli``, ``python -m chatrnn`` and the ``chatrnn`` script share one group."""
    outs = [
        subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True, check=True).stdout
        for mod in ("chatrnn.cli", "chatrnn")
    ]
    assert outs[0] == outs[1]
    listed = outs[0].split("Commands:")[1].split()
    for command in ("chat", "corpus", "eval", "generate", "info", "reply", "train"):
        assert command in listed
    assert set(cli.commands) == {"chat", "corpus", "eval", "generate", "info", "neurons", "reply", "train"}
    assert set(cli.commands["train"].commands) == {"charlm", "chat"}


def settings_rows(output: str) -> dict[str, tuple[str, str]]:
    """The dry run's settings table: name -> (value, where it came from)."""
    lines = output.split("settings (value, from):\n", 1)[1].splitlines()
    rows = {}
    for line in lines:
        m = re.match(r"^  (\S+)\s+(.*?)\s+(flag|checkpoint|preset|default)$", line)
        if not m:
            break
        rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_dry_run_shows_every_setting_and_its_source(tmp_path, sample_text_file):
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "charlm",
            "--dry-run",
            "--corpus",
            str(sample_text_file),
            "--lr",
            "0.01",
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert r.exit_code == 0, r.output
    rows = settings_rows(r.output)
    assert rows["lr"] == ("0.01", "flag")
    assert rows["preset"] == ("cpu", "default")
    assert rows["hidden"] == ("112", "preset") and rows["ema"] == ("0.998", "preset")
    assert rows["warmup_steps"] == ("50", "default")  # click's default is not a typed flag
    assert rows["max_time"] == ("180", "default")
    assert rows["corpus"] == (str(sample_text_file), "flag")
    from chatrnn.settings import TRAIN_KEYS

    assert set(TRAIN_KEYS) <= rows.keys()
    assert not (tmp_path / "m").exists()
    r = CliRunner().invoke(
        cli, ["train", "charlm", "--dry-run", "--corpus", str(sample_text_file), "--warmup", "50", "--preset", "tiny"]
    )
    rows = settings_rows(r.output)
    assert rows["warmup_steps"] == ("50", "flag") and rows["hidden"] == ("64", "preset")


TRAIN_FLAGS = [
    *("--lr", "0.02", "--weight-decay", "0.1", "--warmup", "5", "--min-lr-ratio", "0.1", "--grad-clip", "2"),
    *("--ema", "0.9", "--max-steps", "10", "--epochs", "1", "--max-time", "1m", "--evals", "2", "--eval-every", "5"),
    *("--seed", "3", "--threads", "1", "--no-amp", "--compile"),
]


def test_every_typed_flag_is_a_flag_setting(sample_text_file):
    args = [
        *(
            "train",
            "charlm",
            "--dry-run",
            "--corpus",
            str(sample_text_file),
            "--lang",
            "english",
            "--encoding",
            "utf-8",
        ),
        *("--val-fraction", "0.2", "--preset", "tiny", "--cell", "gru", "--layers", "2", "--hidden", "40"),
        *("--embed", "40", "--dropout", "0.1", "--tie-weights", "--skip", "--batch-size", "4", "--seq-len", "16"),
        *TRAIN_FLAGS,
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    rows = settings_rows(r.output)
    assert {name for name, (_, source) in rows.items() if source != "flag"} == {"val_file"}
    assert rows["cell"][0] == "gru" and rows["max_time"][0] == "60" and rows["amp"][0] == "False"


def test_resume_dry_run_takes_the_checkpoint_below_typed_flags(tmp_path, tiny_charlm, sample_text_file):
    base = ["train", "charlm", "--resume", "--dry-run", "--out", str(tiny_charlm), "--corpus", str(sample_text_file)]
    rows = settings_rows(CliRunner().invoke(cli, base).output)
    assert rows["max_steps"] == ("60", "checkpoint") and rows["max_time"][0] == "None"
    assert rows["hidden"] == ("64", "checkpoint") and rows["lr"] == ("0.01", "checkpoint")
    rows = settings_rows(CliRunner().invoke(cli, [*base, "--max-steps", "70", "--evals", "6"]).output)
    assert rows["max_steps"] == ("70", "flag") and rows["evals"] == ("6", "flag")
    assert_one_line_error(CliRunner().invoke(cli, [*base, "--hidden", "65"]), "--hidden 65 does not match")


def test_resume_needs_no_corpus_flag_from_any_directory(tmp_path, sample_text_file, monkeypatch):
    """The checkpoint records where its text came from (absolute paths): ``--resume`` alone
    continues on that corpus, wherever it is run from; a typed ``--corpus`` still wins."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sample_text_file, data / "mine.txt")
    monkeypatch.chdir(data)
    out = tmp_path / "ck"
    train = ["train", "charlm", "--preset", "tiny", "--max-steps", "6", "--evals", "1", "--device", "cpu"]
    r = CliRunner().invoke(cli, [*train, "--corpus", "mine.txt", "--out", str(out)])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["corpus"] == [str(data / "mine.txt")]
    monkeypatch.chdir(tmp_path)
    rows = settings_rows(
        CliRunner().invoke(cli, ["train", "charlm", "--resume", "--dry-run", "--out", str(out)]).output
    )
    assert rows["corpus"][1] == "checkpoint" and "mine.txt" in rows["corpus"][0]
    r = CliRunner().invoke(cli, ["train", "charlm", "--resume", "--max-steps", "9", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == 9


def test_version_and_short_help():
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and "chatrnn" in r.output
    assert CliRunner().invoke(cli, ["-h"]).exit_code == 0


def assert_one_line_error(r, match):
    assert r.exit_code != 0
    err = r.stderr if hasattr(r, "stderr") and r.stderr else r.output
    assert "Traceback" not in err, err
    assert match in err, err
    assert len([line for line in err.strip().splitlines() if line.startswith("Error")]) == 1


def test_a_seed_torch_cannot_take_is_refused_by_the_flag(tmp_path, sample_text_file):
    """Was an OverflowError traceback from ``manual_seed`` once the corpus had been read."""
    big = str(2**70)
    for args in (
        ["train", "charlm", "--corpus", str(sample_text_file), "--out", str(tmp_path / "x"), "--seed", big],
        ["train", "--seed", big],
        ["generate", "--rng-seed", big],
        ["eval", "--adapt", "--seed", big],
    ):
        assert_one_line_error(CliRunner().invoke(cli, args), "--")
        assert not (tmp_path / "x").exists()


def test_user_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\x7fELF\x00\x00\x01")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\xff")
    runner = CliRunner()
    assert_one_line_error(runner.invoke(cli, ["train", "charlm", "--corpus", str(empty)]), "empty")
    assert_one_line_error(runner.invoke(cli, ["train", "charlm", "--corpus", str(binary)]), "binary")
    assert_one_line_error(runner.invoke(cli, ["train", "charlm", "--corpus", str(bad)]), "byte offset 2")
    assert_one_line_error(runner.invoke(cli, ["train", "charlm", "--corpus", str(tmp_path / "nope")]), "does not exist")
    assert_one_line_error(runner.invoke(cli, ["generate", "--checkpoint", str(tmp_path / "nope")]), "no checkpoint")
    assert_one_line_error(runner.invoke(cli, ["generate"]), "chatrnn train charlm")
    assert_one_line_error(runner.invoke(cli, ["train", "charlm", "--max-time", "soon"]), "duration")
    assert_one_line_error(runner.invoke(cli, ["train", "charlm", "--preset", "huge"]), "unknown preset")


def test_train_generate_eval_info_round_trip(tmp_path, sample_text_file):
    runner = CliRunner()
    r = runner.invoke(
        cli,
        [
            "train",
            "charlm",
            "--corpus",
            str(sample_text_file),
            "--preset",
            "tiny",
            "--max-steps",
            "30",
            "--out",
            str(tmp_path / "m"),
            "--ema",
            "0.9",
            "--weight-decay",
            "0.05",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "best val loss" in r.output and "checkpoint:" in r.output
    train_config = json.loads((tmp_path / "m" / "config.json").read_text())["train_config"]
    assert (train_config["ema"], train_config["weight_decay"]) == (0.9, 0.05)
    r = runner.invoke(cli, ["generate", "-c", str(tmp_path / "m"), "--seed", "ROMEO☃", "-n", "40", "--rng-seed", "1"])
    assert r.exit_code == 0 and r.stdout.startswith("ROMEO☃") and len(r.stdout) >= 46
    assert "'☃'" in r.stderr
    r = runner.invoke(cli, ["eval", "-c", str(tmp_path / "m"), "--file", str(sample_text_file), "--json"])
    m = json.loads(r.stdout)
    assert {"loss", "perplexity", "bpc", "chars"} <= m.keys()
    assert m["bpc"] == pytest.approx(m["loss"] / 0.6931471805599453) and m["perplexity"] > 1
    info = json.loads(runner.invoke(cli, ["info", str(tmp_path / "m"), "--json"]).output)
    assert info["kind"] == "charlm" and info["parameters"] > 1000 and info["best_val_loss"] > 0
    shown = runner.invoke(cli, ["info", str(tmp_path / "m")]).output
    assert "parameters" in shown and "nats/char" in shown and "nats/token" not in shown


def test_generate_streams_when_piped(tiny_charlm):
    """Characters reach a pipe as they are produced, not at the end."""
    p = subprocess.Popen(
        [sys.executable, "-m", "chatrnn", "generate", "-c", str(tiny_charlm), "-n", "100000", "--no-echo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        first = p.stdout.read(5)
        assert len(first) == 5 and p.poll() is None  # still generating, yet output already arrived
    finally:
        p.kill()
        p.wait()


def _start_training(out, corpus, *extra):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatrnn",
            "train",
            "charlm",
            "--corpus",
            str(corpus),
            "--preset",
            "tiny",
            "--max-steps",
            "1000000",
            "--eval-every",
            "5",
            "--out",
            str(out),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path, proc, timeout=60):
    t = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t < timeout
        time.sleep(0.1)


def test_ctrl_c_saves_a_resumable_checkpoint(tmp_path, sample_text_file):
    out = tmp_path / "m"
    p = _start_training(out, sample_text_file)
    _wait_for(out / ckpt.CONFIG, p)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    assert "interrupted at step" in stdout and "Traceback" not in stderr
    state = ckpt.load_train_state(out)
    assert state["step"] > 0
    r = run_cli(
        "train",
        "charlm",
        "--corpus",
        str(sample_text_file),
        "--out",
        str(out),
        "--resume",
        "--max-steps",
        str(state["step"] + 3),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert ckpt.load_train_state(out)["step"] == state["step"] + 3


def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint(tmp_path, sample_text_file):
    from chatrnn.infer import Generator

    out = tmp_path / "m"
    for delay in (0.3, 0.7, 1.1):
        p = _start_training(
            out,
            sample_text_file,
            *(["--resume"] if (out / ckpt.CONFIG).exists() or (tmp_path / ".m.old").exists() else []),
        )
        _wait_for(tmp_path, p)
        t = time.monotonic()
        while not ((out / ckpt.CONFIG).exists() or (tmp_path / ".m.old").exists()):
            assert p.poll() is None and time.monotonic() - t < 60
            time.sleep(0.02)
        time.sleep(delay)
        p.kill()
        p.communicate()
        folder = ckpt.resolve_checkpoint(out)
        assert Generator.load(folder).generate("R", length=5, rng_seed=0)
        ckpt.load_train_state(folder)


def test_the_summary_names_the_task_unit(tmp_path):
    from chatrnn.train.progress import Reporter
    from chatrnn.train.summary import summarize
    from chatrnn.train.trainer import TrainResult

    lines = []

    class Capture(Reporter):
        def message(self, text):
            lines.append(text)

    for unit, shown in (("chars", "nats/char"), ("tokens", "nats/token")):
        result = TrainResult(
            steps=3, best_val_loss=1.5, last_metrics=None, elapsed=2.0, interrupted=False, folder=tmp_path, unit=unit
        )
        summarize(result, Capture(quiet=False))
        assert shown in lines[-2] and lines[-1] == f"checkpoint: {tmp_path}"


# ----- dynamic evaluation: eval --adapt, generate --adapt / --save-adapted (chatrnn/adapt.py) ------------
ADAPT_TEXT = "It is the east, and Juliet is the sun.\n" * 30


def test_eval_adapt_prints_static_and_adapted(tmp_path, tiny_charlm):
    import hashlib

    text = tmp_path / "t.txt"
    text.write_text(ADAPT_TEXT, "utf-8")
    runner = CliRunner()
    args = ["eval", "-c", str(tiny_charlm), "--file", str(text), "--adapt", "--adapt-lr", "3e-3", "--adapt-seq", "50"]
    plain = json.loads(runner.invoke(cli, ["eval", "-c", str(tiny_charlm), "--file", str(text), "--json"]).stdout)
    r = runner.invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert {"loss", "loss_static", "bpc", "bpc_static", "chars", "adapt"} <= m.keys()
    assert m["loss_static"] == plain["loss"]  # the static figure is plain eval's, exactly
    assert m["loss"] < m["loss_static"] and m["chars"] == plain["chars"]
    assert m["bpc"] == pytest.approx(m["loss"] / 0.6931471805599453)
    assert (m["adapt"]["lr"], m["adapt"]["seq"], m["adapt"]["rule"]) == (3e-3, 50, "rms")
    assert json.loads(runner.invoke(cli, [*args, "--json"]).stdout)["loss"] == m["loss"]  # exact
    digest = hashlib.sha256((tiny_charlm / "model.safetensors").read_bytes()).hexdigest()
    out = runner.invoke(cli, args).stdout
    assert "static" in out and "adapted" in out and "bits/char" in out
    assert f"{m['loss']:.4f}" in out and f"{m['loss_static']:.4f}" in out
    assert hashlib.sha256((tiny_charlm / "model.safetensors").read_bytes()).hexdigest() == digest
    r = runner.invoke(cli, [*args, "--adapt-rule", "sgd", "--adapt-lr", "0.3", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["adapt"]["rule"] == "sgd"


def test_generate_adapt_leaves_the_checkpoint_and_saves_a_new_one(tmp_path, tiny_charlm):
    import hashlib

    text = tmp_path / "mine.txt"
    text.write_text(ADAPT_TEXT, "utf-8")
    before = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in tiny_charlm.iterdir() if f.is_file()}
    runner = CliRunner()
    out = tmp_path / "adapted"
    args = ["generate", "-c", str(tiny_charlm), "--seed", "It", "-n", "30", "--rng-seed", "3"]
    r = runner.invoke(cli, [*args, "--adapt", str(text), "--adapt-lr", "3e-3", "--save-adapted", str(out)])
    assert r.exit_code == 0, r.output
    assert "adapted to" in r.stderr and "->" in r.stderr and str(out) in r.stderr
    after = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in tiny_charlm.iterdir() if f.is_file()}
    assert after == before
    again = runner.invoke(cli, ["generate", "-c", str(out), "--seed", "It", "-n", "30", "--rng-seed", "3"])
    assert again.exit_code == 0 and again.stdout == r.stdout  # the saved model samples as the adapted one did
    assert json.loads((out / "config.json").read_text())["adapted"]["file"] == str(text)
    r = runner.invoke(cli, [*args, "--adapt", str(text), "--save-adapted", str(out)])  # OUT is not empty
    assert r.exit_code != 0 and "not empty" in r.output and "Traceback" not in r.output


def test_save_adapted_name_goes_under_the_checkpoints_root(tmp_path, tiny_charlm, monkeypatch):
    """A bare ``--save-adapted NAME`` is where ``--out NAME`` would put it, so ``-c NAME`` loads it;
    and naming the checkpoint being adapted is refused, leaving it as it was."""
    import shutil

    root = tmp_path / "ckpts"
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_charlm, root / "base")
    text = tmp_path / "mine.txt"
    text.write_text(ADAPT_TEXT, "utf-8")
    runner = CliRunner()
    args = ["generate", "-c", "base", "--seed", "It", "-n", "20", "--rng-seed", "3", "--adapt", str(text)]
    r = runner.invoke(cli, [*args, "--save-adapted", "mine"])
    assert r.exit_code == 0, r.output
    assert (root / "mine" / "config.json").is_file() and not (tmp_path / "mine").exists()
    again = runner.invoke(cli, ["generate", "-c", "mine", "--seed", "It", "-n", "20", "--rng-seed", "3"])
    assert again.exit_code == 0 and again.stdout == r.stdout
    before = (root / "base" / "model.safetensors").read_bytes()
    r = runner.invoke(cli, [*args, "--save-adapted", "base"])
    assert r.exit_code == 1 and "not empty" in r.stderr and "Traceback" not in r.output
    assert (root / "base" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("kind", ["missing", "binary", "empty"])
def test_adapt_bad_file_is_one_line(tmp_path, tiny_charlm, kind):
    p = tmp_path / "bad.txt"
    if kind == "binary":
        p.write_bytes(b"\x00\x01binary\xff" * 50)
    elif kind == "empty":
        p.write_bytes(b"")
    runner = CliRunner()
    for args in (
        ["generate", "-c", str(tiny_charlm), "--adapt", str(p)],
        ["eval", "-c", str(tiny_charlm), "--file", str(p), "--adapt"],
    ):
        r = runner.invoke(cli, args)
        assert r.exit_code != 0 and "Traceback" not in r.output, r.output
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and str(p.name) in lines[0], r.stderr
