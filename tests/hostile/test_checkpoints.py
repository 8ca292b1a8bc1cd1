"""Untrusted checkpoints (issue 10, items 6-11): a tiny real checkpoint with one field or file changed
is refused in one line (exit 1, no traceback), never a crash, a hang or an unbounded allocation.

The risky loads (links to /dev/zero, huge sizes, deep nesting, the fused-AdamW segfault) run in a
subprocess under an address-space limit and a timeout, so a regression fails the test instead of
taking the test run (or the machine) down with it. ``python -c "import torch"`` plus a tiny model
needs about 1.5 GB of address space here (``generate`` ran under ``RLIMIT_AS`` of 1500 MB).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from chatrnn import checkpoint as ckpt
from chatrnn.cli import cli

DATA = Path(__file__).resolve().parent.parent / "data"
LIMIT_MB = 2500  # address space for one CLI process: torch (~1.5 GB mapped) plus the tiny model


# ---------------------------------------------------------------------------------------------
# helpers


def assert_one_line(out: str, rc: int, match: str, code: int = 1) -> None:
    assert "Traceback" not in out, out
    assert rc == code, out
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert match in lines[0], out


def cli_run(args: list[str], stdin: str | None = None, match: str | None = None) -> str:
    """In-process run (no torch import per case); ``match``: it must fail with that one line."""
    r = CliRunner().invoke(cli, args, input=stdin)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    if match is not None:
        assert_one_line(r.stderr, r.exit_code, match)
    return r.stderr


def limited(args: list[str], timeout: float = 120, stdin: str = "") -> subprocess.CompletedProcess:
    """``python -m chatrnn ARGS`` under ``RLIMIT_AS`` and a timeout (never killed by a signal)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT_MB << 20, LIMIT_MB << 20))

    env = {**os.environ, "CHATRNN_THREADS": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "chatrnn", *args],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env=env,
    )
    assert r.returncode >= 0, f"killed by signal {-r.returncode}: {r.stderr}"
    return r


def limited_run(args: list[str], match: str, timeout: float = 120) -> None:
    """:func:`limited`, which must fail with one line holding ``match``."""
    r = limited(args, timeout)
    assert_one_line(r.stderr, r.returncode, match)


def edit_json(path: Path, fn) -> None:
    cfg = json.loads(path.read_text("utf-8"))
    fn(cfg)
    path.write_text(json.dumps(cfg), "utf-8")


def edit_state(folder: Path, fn) -> None:
    path = folder / ckpt.TRAIN_STATE
    state = torch.load(path, weights_only=True)
    out = fn(state)
    state = out if isinstance(out, list) else state  # a case that replaces the whole state
    torch.save(state, path)


def safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


@pytest.fixture
def lm(tmp_path, tiny_charlm) -> Path:
    """A copy of the session's tiny char LM (trained for real, resumable)."""
    out = tmp_path / "lm"
    shutil.copytree(tiny_charlm, out)
    return out


@pytest.fixture
def chat(tmp_path) -> Path:
    """A copy of a real tiny chat checkpoint (tests/data/chat_v1)."""
    out = tmp_path / "chat"
    shutil.copytree(DATA / "chat_v1", out)
    return out


def resume_args(folder: Path, corpus: Path, steps: int = 62) -> list[str]:
    return ["train", "charlm", "--out", str(folder), "--resume", "--corpus", str(corpus), "--max-steps", str(steps)] + [
        "--threads",
        "1",
        "-q",
    ]


# ---------------------------------------------------------------------------------------------
# 6. an interrupted save


def test_an_interrupted_save_is_recovered_by_chat_discovery(tmp_path, tiny_charlm, monkeypatch):
    from chatrnn.tui.loading import LM, ModelLoader, discover, pick_default

    root = tmp_path / "checkpoints"
    root.mkdir()
    shutil.copytree(tiny_charlm, root / ".charlm.old")  # a kill between the two renames leaves this
    (root / ".lm.tmp-123").mkdir()  # a save in progress: not a checkpoint
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    (info,) = discover(root)
    assert info.name == "charlm" and info.usable and info.path == root / ".charlm.old"
    assert pick_default(LM, [info], root) is info
    model = ModelLoader().load(LM)  # what `chatrnn chat` does at start: no "no model" message
    assert model.folder == root / ".charlm.old"
    assert ckpt.resolve_checkpoint("charlm") == root / ".charlm.old"  # the same rule as --checkpoint
    # a live folder wins over a stale .old beside it
    shutil.copytree(tiny_charlm, root / "charlm")
    assert [i.path for i in discover(root)] == [root / "charlm"]


# ---------------------------------------------------------------------------------------------
# 7 and 10: the training state on --resume


def test_a_genuine_state_still_resumes(lm, sample_text_file):
    cli_run(resume_args(lm, sample_text_file, 62))
    assert torch.load(lm / ckpt.TRAIN_STATE, weights_only=True)["step"] == 62


def test_optimizer_moments_of_the_wrong_shape_are_one_line_not_a_segfault(lm, sample_text_file):
    """The fused CPU AdamW trusts the moments' shapes (writing out of bounds: signal 11 or a heap
    abort); the state is checked before the optimizer sees it. In a subprocess: a regression dies
    by a signal there, not in the test run."""

    def shrink(state):
        first = next(iter(state["optimizer"]["state"].values()))
        first["exp_avg"] = torch.zeros(3)

    edit_state(lm, shrink)
    limited_run(resume_args(lm, sample_text_file), "optimizer.state.0.exp_avg has shape [3]")


def _first_moments(state):
    return next(iter(state["optimizer"]["state"].values()))


STATE_CASES = {
    "exp_avg_sq dtype": (
        lambda s: _first_moments(s).update(exp_avg_sq=_first_moments(s)["exp_avg_sq"].double()),
        "exp_avg_sq has dtype torch.float64",
    ),
    "moment missing": (lambda s: _first_moments(s).pop("exp_avg"), "exp_avg is missing"),
    "adam step shape": (lambda s: _first_moments(s).update(step=torch.zeros(2)), ".step must be one number"),
    "param group count": (lambda s: s["optimizer"]["param_groups"].pop(), "optimizer.param_groups has 1 groups"),
    "group size": (
        lambda s: s["optimizer"]["param_groups"][0]["params"].pop(),
        "optimizer.param_groups[0].params must list",
    ),
    "betas": (lambda s: s["optimizer"]["param_groups"][0].update(betas="x"), "param_groups[0].betas must be"),
    "stray moment": (lambda s: s["optimizer"]["state"].update({99: {}}), "optimizer.state.99 belongs to no parameter"),
    "step missing": (lambda s: s.pop("step"), "step is missing"),
    "step text": (lambda s: s.update(step="12"), "step must be an integer"),
    "state a list": (lambda s: [1, 2], "the state must be a dictionary"),
    "rows.pos text": (lambda s: s["task"]["rows"].update(pos="x"), "task.rows.pos must be an integer"),
    "hidden layers": (
        lambda s: s["task"].update(hidden=[torch.zeros(3, 8, 64), torch.zeros(3, 8, 64)]),
        "task.hidden[0] has shape [3, 8, 64], but the model needs [1, rows, 64]",
    ),
    "hidden width": (
        lambda s: s["task"].update(hidden=[torch.zeros(1, 8, 9), torch.zeros(1, 8, 9)]),
        "task.hidden[0] has shape [1, 8, 9]",
    ),
    "hidden integer": (
        lambda s: s["task"].update(hidden=[torch.zeros(1, 8, 64, dtype=torch.int64)] * 2),
        "task.hidden[0] has dtype torch.int64",
    ),
    "hidden count": (lambda s: s["task"].update(hidden=[torch.zeros(1, 8, 64)]), "task.hidden must be 2 tensor"),
    "torch rng length": (lambda s: s["rng"].update(torch=torch.zeros(7, dtype=torch.uint8)), "rng.torch has shape [7]"),
    "torch rng dtype": (
        lambda s: s["rng"].update(torch=s["rng"]["torch"].float()),
        "rng.torch has dtype torch.float32",
    ),
    "python rng": (lambda s: s["rng"].update(python=[3, [1, 2], None]), "rng.python is not a Python random state"),
    "rng missing": (lambda s: s.pop("rng"), "rng is missing"),
    "draws": (lambda s: s.update(draws=torch.zeros(5, dtype=torch.uint8)), "draws has shape [5]"),
    "train_config": (lambda s: s["train_config"].update(lr="x"), "train_config.lr must be a number"),
    # values no flag accepts, which torch refuses with a traceback: checked against the flags' ranges
    "seed too big": (lambda s: s["train_config"].update(seed=2**70), "train_config.seed must be"),
    "ema above 1": (lambda s: s["train_config"].update(ema=2.0), "train_config.ema must be 0..1"),
    "lr negative": (lambda s: s["train_config"].update(lr=-1.0), "train_config.lr must be above 0"),
    "lr infinite": (lambda s: s["train_config"].update(lr=float("inf")), "train_config.lr must be above 0"),
    "evals zero": (lambda s: s["train_config"].update(evals=0), "train_config.evals must be at least 1"),
    "averaged": (lambda s: s.update(averaged={"module.head.weight": torch.zeros(2)}), "averaged does not fit"),
}


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_a_damaged_training_state_is_one_line_naming_the_field(lm, sample_text_file, case):
    change, match = STATE_CASES[case]
    state = torch.load(lm / ckpt.TRAIN_STATE, weights_only=True)
    assert state["task"].get("hidden") is not None  # the real state carries the TBPTT rows' state
    edit_state(lm, change)
    args = resume_args(lm, sample_text_file)
    if case == "averaged":
        args += ["--ema", "0.9"]
    cli_run(args, match=match)


def test_a_train_state_bigger_than_any_ours_is_refused_before_it_is_read(lm, sample_text_file):
    with open(lm / ckpt.TRAIN_STATE, "r+b") as f:
        f.truncate(1 << 30)  # sparse: a gigabyte of nothing
    cli_run(resume_args(lm, sample_text_file), match="more than a chatrnn train_state.pt can be")


def test_a_train_state_linked_to_dev_zero_is_refused_at_once(lm, sample_text_file):
    (lm / ckpt.TRAIN_STATE).unlink()
    (lm / ckpt.TRAIN_STATE).symlink_to("/dev/zero")
    limited_run(resume_args(lm, sample_text_file), "train_state.pt is not a regular file", timeout=60)


def test_chat_task_state_is_checked_field_by_field():
    """The chat task's data position (its trainer run is too slow for every case here)."""
    from chatrnn.errors import ChatrnnError
    from chatrnn.train.state_check import _check_chat_task, _Checker

    c = _Checker("x/train_state.pt")
    good = {
        "epoch_index": 0,
        "pos": 3,
        "epoch_state": torch.Generator().get_state(),
        "batch_size": 8,
        "world": 1,
        "steps": 9,
    }
    _check_chat_task(c, {"order": good})
    for change, match in [
        ({"pos": "x"}, "task.order.pos must be an integer"),
        ({"epoch_state": torch.zeros(4)}, "task.order.epoch_state has shape [4]"),
        ({"batch_size": 0}, "task.order.batch_size must be at least 1"),
    ]:
        with pytest.raises(ChatrnnError, match=match.replace("[", r"\[").replace("]", r"\]")):
            _check_chat_task(c, {"order": {**good, **change}})


# ---------------------------------------------------------------------------------------------
# 8. every file of a checkpoint: a regular file of a sane size


def test_a_tokenizer_linked_to_dev_zero_is_refused_at_once(chat):
    (chat / "tokenizer.model").unlink()
    (chat / "tokenizer.model").symlink_to("/dev/zero")
    limited_run(["reply", "hello", "-c", str(chat)], "tokenizer.model is not a regular file", timeout=60)


@pytest.mark.parametrize("name", [ckpt.CONFIG, ckpt.BEST_WEIGHTS])
def test_checkpoint_files_linked_to_dev_zero_are_refused_at_once(lm, name):
    (lm / name).unlink()
    (lm / name).symlink_to("/dev/zero")
    match = "not a chatrnn checkpoint" if name == ckpt.CONFIG else f"{name} is not a regular file"
    limited_run(["generate", "-c", str(lm), "-n", "5"], match, timeout=60)
    limited_run(["info", str(lm)], match, timeout=60)


def test_a_huge_tokenizer_is_refused_before_it_is_read(chat):
    with open(chat / "tokenizer.model", "r+b") as f:
        f.truncate(1 << 30)
    cli_run(["reply", "hello", "-c", str(chat)], match="more than a chatrnn tokenizer.model can be")


def test_a_fifo_config_never_blocks(lm):
    (lm / ckpt.CONFIG).unlink()
    os.mkfifo(lm / ckpt.CONFIG)
    cli_run(["generate", "-c", str(lm), "-n", "5"], match="not a chatrnn checkpoint")
    with pytest.raises(Exception, match="not a regular file"):
        ckpt.read_checked(lm / ckpt.CONFIG)


def test_metrics_linked_to_dev_zero_does_not_stop_a_resume(lm, sample_text_file):
    (lm / ckpt.METRICS).unlink()
    (lm / ckpt.METRICS).symlink_to("/dev/zero")
    with pytest.raises(Exception, match="not a regular file"):
        ckpt.read_metrics(lm)
    r = limited(resume_args(lm, sample_text_file, 61), timeout=120)  # the save reads only regular files
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert (lm / ckpt.METRICS).is_file() and not (lm / ckpt.METRICS).is_symlink()


# ---------------------------------------------------------------------------------------------
# 9. sizes in config.json against the CLI's limits and the weights' header, before building


def test_a_huge_hidden_size_is_refused_before_the_model_is_built(lm, sample_text_file):
    edit_json(lm / ckpt.CONFIG, lambda c: c["model"].update(hidden=8000))
    limited_run(["generate", "-c", str(lm), "-n", "5"], "model.safetensors does not fit its config.json", timeout=60)
    limited_run(resume_args(lm, sample_text_file), "last.safetensors does not fit its config.json", timeout=60)


def test_100000_layers_are_refused_by_the_schema(lm):
    edit_json(lm / ckpt.CONFIG, lambda c: c["model"].update(layers=100000))
    limited_run(["generate", "-c", str(lm), "-n", "5"], "model.layers must be 1..16, not 100000", timeout=60)


def test_a_chat_config_that_does_not_match_its_weights_is_refused(chat):
    edit_json(chat / ckpt.CONFIG, lambda c: c["model"].update(hidden=4000, embed=4000))
    cli_run(["reply", "hi", "-c", str(chat)], match="does not fit its config.json")


def test_a_weights_header_with_a_bad_shape_is_one_line(lm):
    (lm / ckpt.BEST_WEIGHTS).write_bytes(
        safetensors_bytes({"head.bias": {"dtype": "F32", "shape": [{"a": 1}], "data_offsets": [0, 4]}}, b"\0" * 4)
    )
    cli_run(["generate", "-c", str(lm), "-n", "5"], match='tensor "head.bias" has shape')


def test_weights_header_lies_are_refused():
    from chatrnn.checkpoint_schema import parse_safetensors_header
    from chatrnn.errors import ChatrnnError

    good = {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    head = json.dumps(good).encode()
    assert parse_safetensors_header(head, 8 + len(head) + 24, "f")["w"].shape == (2, 3)
    for entry, match in [
        ({"dtype": "I64", "shape": [2, 3], "data_offsets": [0, 48]}, "weights must be floats"),
        ({"dtype": "F32", "shape": [2, -3], "data_offsets": [0, 24]}, "has shape"),
        ({"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 2400]}, "outside the file"),
        ({"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}, "outside the file"),
        ("nope", "is not described"),
    ]:
        head = json.dumps({"w": entry}).encode()
        with pytest.raises(ChatrnnError, match=match):
            parse_safetensors_header(head, 8 + len(head) + 24, "f")


# ---------------------------------------------------------------------------------------------
# 10. crafted config values: the one schema, one line naming the field

LM_CONFIG_CASES = {
    "format text": (lambda c: c.update(format_version="abc"), 'format_version must be an integer, not "abc"'),
    "format null": (lambda c: c.update(format_version=None), "format_version must be an integer, not null"),
    "format list": (lambda c: c.update(format_version=[1]), "format_version must be an integer, not [1]"),
    "format newer": (lambda c: c.update(format_version=99), "written by a newer chatrnn (format 99)"),
    "model a list": (lambda c: c.update(model=[1, 2]), "model must be an object"),
    "model missing": (lambda c: c.pop("model"), "model is missing"),
    "vocab short": (lambda c: c.update(vocab=c["vocab"][:-3]), "but model.vocab_size is"),
    "vocab not chars": (lambda c: c["vocab"].__setitem__(0, "ab"), "vocab[0] must be one character"),
    "vocab a string": (lambda c: c.update(vocab="abc"), "vocab must be a list"),
    "cell": (lambda c: c["model"].update(cell="transformer"), "model.cell must be one of lstm, gru, rnn"),
    "dropout": (lambda c: c["model"].update(dropout=float("nan")), "model.dropout must be 0..1"),
    "bool": (lambda c: c["model"].update(skip="yes"), "model.skip must be true or false"),
    "kind markup": (lambda c: c.update(kind="[/]"), 'kind must be one of charlm, chat, not "[/]"'),
    "training text": (lambda c: c.update(training="x"), "training must be an object"),
    "training steps": (lambda c: c["training"].update(steps="many"), "training.steps must be an integer"),
    "data corpus": (lambda c: c.update(data={"corpus": 5}), "data.corpus must be a list"),
    "data paths": (lambda c: c.update(data={"corpus": [1]}), "data.corpus[0] must be a string"),
    "data split": (lambda c: c.update(data={"val_fraction": "x"}), "data.val_fraction must be a number"),
}


@pytest.mark.parametrize("case", list(LM_CONFIG_CASES))
def test_a_crafted_char_lm_config_is_one_line_naming_the_field(lm, case):
    change, match = LM_CONFIG_CASES[case]
    edit_json(lm / ckpt.CONFIG, change)
    cli_run(["generate", "-c", str(lm), "-n", "5"], match=match)
    cli_run(["info", str(lm)], match=match)


CHAT_CONFIG_CASES = {
    "context_turns": (lambda c: c.update(context_turns="x"), "context_turns must be an integer"),
    "eos float": (lambda c: c["model"].update(eos_id=1e6), "model.eos_id must be an integer, not 1000000.0"),
    "bos huge": (lambda c: c["model"].update(bos_id=1000000), "model.bos_id must be below vocab_size 300"),
    "odd hidden": (lambda c: c["model"].update(hidden=15), "model.hidden must be even"),
    "attention": (lambda c: c["model"].update(attention="x"), "model.attention must be one of dot, general, concat"),
    "layers": (lambda c: c["model"].update(layers=9), "model.layers must be 1..8"),
    "max_src_len": (lambda c: c["model"].update(max_src_len=0), "model.max_src_len must be 1..65536"),
}


@pytest.mark.parametrize("case", list(CHAT_CONFIG_CASES))
def test_a_crafted_chat_config_is_one_line_naming_the_field(chat, case):
    change, match = CHAT_CONFIG_CASES[case]
    edit_json(chat / ckpt.CONFIG, change)
    cli_run(["reply", "hello", "-c", str(chat)], match=match)


def test_a_config_nested_100k_deep_is_one_line(lm):
    (lm / ckpt.CONFIG).write_text('{"kind": "charlm", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "utf-8")
    limited_run(["generate", "-c", str(lm), "-n", "5"], "is nested too deeply", timeout=60)
    limited_run(["info", str(lm)], "is nested too deeply", timeout=60)


def test_the_schema_follows_the_model_configs():
    """Every field a model config has is in the schema (which cannot import them: no torch)."""
    from dataclasses import fields

    from chatrnn.checkpoint_schema import CharLMModel, ChatModel
    from chatrnn.models.charlm import CharLMConfig
    from chatrnn.models.seq2seq import Seq2SeqConfig

    for schema, real in [(CharLMModel, CharLMConfig), (ChatModel, Seq2SeqConfig)]:
        assert {f.name for f in fields(real)} == {f.name for f in fields(schema)}
        assert {f.name: f.default for f in fields(real)} == {f.name: f.default for f in fields(schema)}


def test_the_shipped_old_checkpoints_pass_the_schema():
    for name in ("charlm_v1", "chat_v1"):
        ckpt.read_config(DATA / name)


# ---------------------------------------------------------------------------------------------
# 11. the same damaged folder under checkpoints/: `chatrnn chat --plain` and discovery


def damaged_root(root: Path, good: Path) -> dict[str, str]:
    """A checkpoints root holding one good model and one of each damage; name -> expected reason."""
    shutil.copytree(good, root / "good")
    cases = {}

    def variant(name: str, change, reason: str) -> None:
        shutil.copytree(good, root / name)
        change(root / name)
        cases[name] = reason

    variant(
        "bad-shape",
        lambda f: (f / ckpt.BEST_WEIGHTS).write_bytes(
            safetensors_bytes({"w": {"dtype": "F32", "shape": [{"a": 1}], "data_offsets": [0, 4]}}, b"\0" * 4)
        ),
        "has shape",
    )
    variant("kind-markup", lambda f: edit_json(f / ckpt.CONFIG, lambda c: c.update(kind="[/]")), "kind must be one of")
    variant(
        "deep",
        lambda f: (f / ckpt.CONFIG).write_text('{"kind": "charlm", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        "nested too deeply",
    )
    variant(
        "zero-weights",
        lambda f: ((f / ckpt.BEST_WEIGHTS).unlink(), (f / ckpt.BEST_WEIGHTS).symlink_to("/dev/zero")),
        "not a regular file",
    )
    variant("layers", lambda f: edit_json(f / ckpt.CONFIG, lambda c: c["model"].update(layers=100000)), "model.layers")
    variant("[@click=app.quit]", lambda f: None, "")  # a usable model with markup in its name
    return cases


def test_discovery_lists_every_damaged_checkpoint_with_its_reason(tmp_path, tiny_charlm):
    from chatrnn.tui.loading import discover

    root = tmp_path / "checkpoints"
    root.mkdir()
    cases = damaged_root(root, tiny_charlm)
    infos = {i.name: i for i in discover(root)}
    assert set(infos) == {"good", *cases}
    assert infos["good"].usable and infos["[@click=app.quit]"].usable
    for name, reason in cases.items():
        if reason:
            assert not infos[name].usable and reason in infos[name].problem, (name, infos[name].problem)


def test_plain_chat_over_a_damaged_folder_is_one_line(tmp_path, chat, monkeypatch):
    root = tmp_path / "checkpoints"
    root.mkdir()
    damaged_root(root, chat)
    monkeypatch.setenv("CHATRNN_CHECKPOINTS", str(root))
    cli_run(["chat", "--plain"], stdin="hello\n", match="no checkpoint at")
    for name, match in [
        ("bad-shape", "has shape"),
        ("kind-markup", "kind must be one of"),
        ("deep", "nested too deeply"),
    ]:
        cli_run(["chat", "--plain", "-c", name], stdin="hello\n", match=match)
    out = CliRunner().invoke(cli, ["chat", "--plain", "-c", "[@click=app.quit]"], input="hello\n")
    assert out.exit_code == 0 and "Traceback" not in out.output


def test_a_compressed_train_state_is_refused_before_it_expands(lm, sample_text_file):
    """``torch.load`` inflates deflated records: 200 KB of deflated zeros would load as 200 MB."""
    import zipfile

    plain = lm / "plain.pt"
    state = torch.load(lm / ckpt.TRAIN_STATE, weights_only=True)
    torch.save({**state, "padding": torch.zeros(50_000_000)}, plain)
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(lm / ckpt.TRAIN_STATE, "w", zipfile.ZIP_DEFLATED) as zout:
        for record in zin.infolist():
            zout.writestr(record.filename, zin.read(record.filename))
    plain.unlink()
    assert (lm / ckpt.TRAIN_STATE).stat().st_size < 1_000_000
    limited_run(resume_args(lm, sample_text_file), "holds compressed records", timeout=60)


# ---------------------------------------------------------------------------------------------
# 8. weights padded past their last tensor (a sparse file of gigabytes costs no disk, but the
# loader maps all of it: MemoryError under a memory limit)


@pytest.mark.parametrize("name", [ckpt.BEST_WEIGHTS, ckpt.LAST_WEIGHTS])
def test_weights_padded_to_gigabytes_are_one_line(lm, sample_text_file, name):
    with open(lm / name, "r+b") as f:
        f.truncate(3 << 30)
    match = f"{name} is corrupt ("
    if name == ckpt.BEST_WEIGHTS:
        limited_run(["generate", "-c", str(lm), "-n", "5"], match, timeout=60)
        limited_run(["eval", "-c", str(lm), "--file", str(sample_text_file)], match, timeout=60)
    else:
        limited_run(resume_args(lm, sample_text_file), match, timeout=60)


def test_the_chat_models_padded_weights_are_one_line(chat):
    with open(chat / ckpt.BEST_WEIGHTS, "r+b") as f:
        f.truncate(3 << 30)
    limited_run(["reply", "hello", "-c", str(chat)], "bytes beyond its last tensor", timeout=60)


def test_a_header_that_leaves_bytes_over_is_refused():
    from chatrnn.checkpoint_schema import parse_safetensors_header
    from chatrnn.errors import ChatrnnError

    head = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
    with pytest.raises(ChatrnnError, match="4 bytes beyond its last tensor"):
        parse_safetensors_header(head, 8 + len(head) + 28, "f")
