"""The one schema of a checkpoint's ``config.json``, and the safetensors header it must agree with.

A checkpoint folder is something a user may be handed, so every value in it is untrusted until it
has been checked here: a wrong type or an out-of-range size is one :class:`ChatrnnError` line that
names the field (``config.json: model.layers must be 1..16, not 100000``), never a traceback deep in
a model constructor, and never a model built from sizes nobody checked (``hidden: 8000`` over 20 KB
of weights would allocate gigabytes before failing). The limits are the CLI flags' (``cli/train.py``)
where the CLI has one, and a generous cap where it has none; the real check of a size is
:func:`check_weights_fit`, which builds the model on torch's ``meta`` device (no memory) and loads
the header's shapes into it before any weight is read.

The dataclasses mirror the model configs (``CharLMConfig``, ``Seq2SeqConfig``) without importing
them: discovery in the TUI reads configs without torch. A test keeps their field names in step.
Keys this version does not know are ignored, as :class:`chatrnn.config.JsonConfig` ignores them.
"""

from __future__ import annotations

import json
import math
import struct
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from chatrnn.errors import ChatrnnError

MAX_WIDTH = 65536  # hidden / embedding width: far beyond any model that trains on one machine
MAX_CHARS = 0x110000  # every Unicode code point
MAX_SUBWORDS = 1 << 20
MAX_LEN = 1 << 16  # encoder / decoder lengths in tokens
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on its JSON header
FLOAT_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


class SchemaError(ChatrnnError):
    """A value of a checkpoint file that has the wrong type or is out of range."""


def rng(lo: float | None = None, hi: float | None = None, *, hi_open: bool = False, lo_open: bool = False) -> dict:
    return {"range": (lo, hi, hi_open), **({"lo_open": True} if lo_open else {})}


def choice(*values: str) -> dict:
    return {"choices": values}


# ---------------------------------------------------------------------------------------------
# the schema


@dataclass
class CharLMModel:
    vocab_size: int = field(metadata=rng(1, MAX_CHARS))
    cell: str = field(default="lstm", metadata=choice("lstm", "gru", "rnn"))
    layers: int = field(default=2, metadata=rng(1, 16))
    hidden: int = field(default=256, metadata=rng(1, MAX_WIDTH))
    embed: int = field(default=64, metadata=rng(1, MAX_WIDTH))
    dropout: float = field(default=0.0, metadata=rng(0, 1, hi_open=True))
    tie_weights: bool = False
    skip: bool = False


@dataclass
class ChatModel:
    vocab_size: int = field(metadata=rng(262, MAX_SUBWORDS))  # chatrnn.subword.SubwordTokenizer.MIN_VOCAB
    embed: int = field(default=256, metadata=rng(1, MAX_WIDTH))
    hidden: int = field(default=256, metadata=rng(2, MAX_WIDTH))
    layers: int = field(default=2, metadata=rng(1, 8))
    attention: str = field(default="general", metadata=choice("dot", "general", "concat"))
    dropout: float = field(default=0.1, metadata=rng(0, 1, hi_open=True))
    tie_weights: bool = True
    input_feeding: bool = True
    word_dropout: float = field(default=0.0, metadata=rng(0, 1, hi_open=True))  # absent: 0 (older checkpoints)
    pad_id: int = field(default=0, metadata=rng(0))
    unk_id: int = field(default=1, metadata=rng(0))
    bos_id: int = field(default=2, metadata=rng(0))
    eos_id: int = field(default=3, metadata=rng(0))
    sep_id: int = field(default=4, metadata=rng(0))
    max_src_len: int = field(default=64, metadata=rng(1, MAX_LEN))
    max_tgt_len: int = field(default=40, metadata=rng(1, MAX_LEN))

    def check(self, where: str) -> None:
        if self.hidden % 2:
            raise SchemaError(
                f"{where}.hidden must be even (the encoder splits it over two directions), not {self.hidden}"
            )
        for name in ("pad_id", "unk_id", "bos_id", "eos_id", "sep_id"):
            if getattr(self, name) >= self.vocab_size:
                raise SchemaError(
                    f"{where}.{name} must be below vocab_size {self.vocab_size}, not {getattr(self, name)}"
                )


@dataclass
class Training:
    steps: int | None = field(default=None, metadata=rng(0))
    epochs: float | None = None
    tokens: int | None = field(default=None, metadata=rng(0))
    unit: str | None = None
    train_time_s: float | None = None
    best_val_loss: float | None = None
    last_val: dict | None = None
    device: str | None = None
    finished: bool | None = None
    world_size: int | None = field(default=None, metadata=rng(1))


@dataclass
class Batch:
    batch_size: int | None = field(default=None, metadata=rng(1))
    seq_len: int | None = field(default=None, metadata=rng(1))


@dataclass
class Tokenizer:
    file: str | None = None
    vocab_size: int | None = field(default=None, metadata=rng(1, MAX_SUBWORDS))
    type: str | None = field(default=None, metadata=choice("unigram", "bpe"))


@dataclass
class ChatData:
    corpus: list[str] | None = None
    fmt: str | None = None
    columns: list[str] | None = None
    encoding: str | None = None
    lang: str | None = None
    val_fraction: float | None = field(default=None, metadata=rng(0, 1))
    val_file: str | None = None


@dataclass
class ChatTrain:
    label_smoothing: float | None = field(default=None, metadata=rng(0, 1))
    teacher_forcing: float | None = field(default=None, metadata=rng(0, 1))
    tf_decay: float | None = field(default=None, metadata=rng(0, 1))
    tf_min: float | None = field(default=None, metadata=rng(0, 1))
    subword_sampling: float | None = field(default=None, metadata=rng(0, 1))


@dataclass
class Common:
    """What every checkpoint's config.json holds, whatever its kind."""

    kind: str  # charlm or chat; another Task's kind only where its loader asks for it (see below)
    format_version: int = field(default=0, metadata=rng(0))
    chatrnn_version: str | None = None
    training: Training | None = None
    batch: Batch | None = None
    corpus: dict | None = None
    train_config: dict | None = None  # checked against TrainConfig's own fields (settings.py)


@dataclass
class CharLMData:
    """Where a char LM's text came from: what ``--resume`` reads back when no ``--corpus`` is typed."""

    corpus: list[str] | None = None
    lang: str | None = None
    encoding: str | None = None
    val_fraction: float | None = field(default=None, metadata=rng(0, 1))
    val_file: str | None = None


@dataclass
class CharLMCheckpoint:
    model: CharLMModel
    vocab: list[str]
    data: CharLMData | None = None

    def check(self, where: str) -> None:
        v = self.vocab
        if len(v) != self.model.vocab_size:
            raise SchemaError(f"{where}vocab has {len(v)} characters but model.vocab_size is {self.model.vocab_size}")
        for i, c in enumerate(v):
            if len(c) != 1:
                raise SchemaError(f"{where}vocab[{i}] must be one character, not {c[:20]!r}")
            if i and c <= v[i - 1]:
                raise SchemaError(f"{where}vocab must hold distinct characters in code-point order (see vocab[{i}])")


@dataclass
class ChatCheckpoint:
    model: ChatModel
    context_turns: int = field(default=0, metadata=rng(0, 64))
    max_src_len: int | None = field(default=None, metadata=rng(1, MAX_LEN))
    max_tgt_len: int | None = field(default=None, metadata=rng(1, MAX_LEN))
    max_len: int | None = field(default=None, metadata=rng(1, MAX_LEN))
    tokenizer: Tokenizer | None = None
    data: ChatData | None = None
    chat_train: ChatTrain | None = None


BY_KIND: dict[str, type] = {"charlm": CharLMCheckpoint, "chat": ChatCheckpoint}

# The ranges of the run settings (``settings.TrainConfig``, which has none of its own): the CLI
# flags' (``cli/options.py``). A resumed run takes its settings from ``train_state.pt``, so a stored
# value no flag accepts (a negative lr, an EMA decay of 2, a seed torch cannot take) would otherwise
# reach the optimiser and fail there with a traceback.
TRAIN_LIMITS: dict[str, dict] = {
    "max_steps": rng(1),
    "epochs": rng(0, lo_open=True),
    "max_time": rng(0, lo_open=True),
    "lr": rng(0, lo_open=True),
    "min_lr_ratio": rng(0, 1),
    "warmup_steps": rng(0),
    "weight_decay": rng(0),
    "grad_clip": rng(0, lo_open=True),
    "evals": rng(1),
    "eval_every": rng(1),
    "seed": rng(-(1 << 63), (1 << 64) - 1),  # torch.manual_seed's range
    "threads": rng(1),
    "ema": rng(0, 1, hi_open=True),
}


def check_train_config(d: Any, where: str = "train_config") -> Any:
    """A stored ``train_config`` as a ``TrainConfig``: its fields' types, then :data:`TRAIN_LIMITS`."""
    from chatrnn.settings import TrainConfig

    obj = check_dataclass(d, TrainConfig, where)
    hints = typing.get_type_hints(TrainConfig)
    for name, meta in TRAIN_LIMITS.items():
        if d.get(name) is not None:
            check_value(d[name], hints[name], f"{where}.{name}", meta)
    return obj


# ---------------------------------------------------------------------------------------------
# the checker: one generic walk over a dataclass's type hints and field metadata


def _type_name(t: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "an object"}
    if t in names:
        return names[t]
    if typing.get_origin(t) is list or t is list:
        return "a list"
    if is_dataclass(t):
        return "an object"
    return getattr(t, "__name__", str(t))


def _shown(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=True) if not isinstance(v, float) or math.isfinite(v) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def check_value(value: Any, t: Any, where: str, meta: typing.Mapping[str, Any] | None = None) -> Any:
    """``value`` checked against type hint ``t`` (and the field's range or choices); returns it,
    with nested dataclasses built. Raises :class:`SchemaError` naming ``where``."""
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(t)
        if value is None and type(None) in options:
            return None
        real = [o for o in options if o is not type(None)]
        t = real[0] if len(real) == 1 else t
        origin = typing.get_origin(t)
    ok = True
    if t is bool:
        ok = isinstance(value, bool)
    elif t is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif t is str:
        ok = isinstance(value, str)
    elif t is dict:
        ok = isinstance(value, dict)
    elif origin is list or t is list:
        ok = isinstance(value, list)
        if ok and origin is list:
            (item,) = typing.get_args(t)
            value = [check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    elif is_dataclass(t):
        return check_dataclass(value, t, where)  # type: ignore[arg-type]
    if not ok:
        raise SchemaError(f"{where} must be {_type_name(t)}, not {_shown(value)}")
    meta = meta or {}
    if "choices" in meta and value not in meta["choices"]:
        raise SchemaError(f"{where} must be one of {', '.join(meta['choices'])}, not {_shown(value)}")
    if "range" in meta:
        lo, hi, hi_open = meta["range"]
        lo_open = meta.get("lo_open", False)
        inside = (
            not (isinstance(value, float) and not math.isfinite(value))  # no range of ours holds inf
            and (lo is None or (value > lo if lo_open else value >= lo))
            and (hi is None or (value < hi if hi_open else value <= hi))
        )
        if not inside:
            span = f"{_num(lo)}..{_num(hi)}" if hi is not None else f"{'above' if lo_open else 'at least'} {_num(lo)}"
            raise SchemaError(f"{where} must be {span}{' (exclusive)' if hi_open else ''}, not {_shown(value)}")
    return value


def check_dataclass(d: Any, cls: type, where: str) -> Any:
    """An instance of ``cls`` from the mapping ``d``: every known key type- and range-checked, unknown
    keys ignored, missing keys given their default (or an error when the field has none)."""
    if not isinstance(d, dict):
        raise SchemaError(f"{where or 'the file'} must be an object, not {_shown(d)}")
    hints = typing.get_type_hints(cls)
    prefix = f"{where}." if where else ""
    values = {}
    for f in fields(cls):
        if f.name not in d:
            if f.default is MISSING and f.default_factory is MISSING:
                raise SchemaError(f"{prefix}{f.name} is missing")
            continue
        values[f.name] = check_value(d[f.name], hints[f.name], f"{prefix}{f.name}", f.metadata)
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        check(where if where else "")
    return obj


def validate_config(cfg: Any, path: Path | str, newest: int, kind: str | None = None) -> None:
    """Raise one line naming the first bad field of a parsed ``config.json`` (at ``path``): the
    common part first (kind, format version), then ``kind`` if one is wanted, then the kind's part."""
    folder = Path(path).parent
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise SchemaError(f"{path} is not a chatrnn config")
    try:
        common = check_dataclass(cfg, Common, "")
        if common.format_version > newest:
            raise ChatrnnError(
                f"{folder} was written by a newer chatrnn (format {common.format_version}); upgrade chatrnn"
            )
        if common.kind not in BY_KIND and common.kind != kind:
            # A Task of one's own (train/task.py) may write its own kind; its loader asks for that kind
            # by name and checks its own part. Nothing else accepts a kind it does not know.
            raise SchemaError(f"kind must be one of {', '.join(BY_KIND)}, not {_shown(common.kind)}")
        if kind is not None and common.kind != kind:
            raise ChatrnnError(f"{folder} holds a {common.kind} model, not a {kind} model")
        if common.kind in BY_KIND:
            check_dataclass(cfg, BY_KIND[common.kind], "")
        if common.train_config is not None:
            check_train_config(common.train_config)
    except SchemaError as e:
        raise SchemaError(f"{path}: {e}") from None


def loads_json(text: str | bytes, path: Path | str) -> Any:
    """``json.loads`` that turns every way a file can be damaged (deep nesting included) into one line."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ChatrnnError(f"{path} is nested too deeply to be a chatrnn file") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ChatrnnError(f"{path} is corrupt ({e.__class__.__name__}); retrain or restore it") from None


# ---------------------------------------------------------------------------------------------
# the weights header


@dataclass(frozen=True)
class TensorSpec:
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def parse_safetensors_header(head: bytes, file_size: int, path: Path | str) -> dict[str, TensorSpec]:
    """The tensors a safetensors file declares (``head`` is the JSON header), each checked: a float
    dtype, a shape of non-negative integers, and data offsets inside the file that hold exactly
    that many values."""
    header = loads_json(head, path)
    if not isinstance(header, dict):
        raise ChatrnnError(f"{path} is corrupt (its header is not an object); retrain or restore it")
    data_size = file_size - 8 - len(head)
    out: dict[str, TensorSpec] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ChatrnnError(f"{path} is corrupt (its __metadata__ is not text); retrain or restore it")
            continue
        shown = _shown(name)
        if not isinstance(entry, dict):
            raise ChatrnnError(f"{path} is corrupt (tensor {shown} is not described); retrain or restore it")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in FLOAT_DTYPES:
            raise ChatrnnError(f"{path}: tensor {shown} has dtype {_shown(dtype)}; weights must be floats")
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise ChatrnnError(f"{path} is corrupt (tensor {shown} has shape {_shown(shape)}); retrain or restore it")
        spec = TensorSpec(dtype, tuple(shape))
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size
            or offsets[1] - offsets[0] != spec.numel * FLOAT_DTYPES[dtype]
        ):
            raise ChatrnnError(f"{path} is corrupt (tensor {shown} lies outside the file); retrain or restore it")
        out[name] = spec
    # safetensors writes the tensors back to back: bytes beyond the last one are not its, and a
    # file padded to gigabytes (sparse, so it costs no disk) would be mapped whole by the loader
    end = max((int(header[n]["data_offsets"][1]) for n in out), default=0)
    if end != data_size:
        raise ChatrnnError(
            f"{path} is corrupt ({data_size - end:,} bytes beyond its last tensor); retrain or restore it"
        )
    return out


def read_safetensors_header(path: Path) -> dict[str, TensorSpec]:
    """The checked header of a safetensors file, read without torch and without reading any weight."""
    from chatrnn.checkpoint import checked_size

    try:
        size = checked_size(path, None)
    except FileNotFoundError:
        raise ChatrnnError(f"{path} is missing; the checkpoint is incomplete") from None
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                raise ChatrnnError(f"{path} is corrupt (shorter than a safetensors header); retrain or restore it")
            (n,) = struct.unpack("<Q", head)
            if not 0 < n <= min(MAX_HEADER_BYTES, size - 8):
                raise ChatrnnError(f"{path} is corrupt (header length {n}); retrain or restore it")
            head = fh.read(n)
    except OSError as e:
        raise ChatrnnError(f"cannot read {path}: {e.strerror or e.__class__.__name__}") from None
    return parse_safetensors_header(head, size, path)


def check_weights_fit(path: Path, build: Callable[[], Any]) -> None:
    """Refuse, in one line, weights whose tensors are not those of the model ``build`` makes; checked
    on torch's ``meta`` device, so a config.json that asks for a huge model costs no memory. The
    model's own load hooks run (old checkpoints' tensor names are mapped as on a real load)."""
    header = read_safetensors_header(path)
    import torch

    dtypes = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    with torch.device("meta"):
        model = build()
        fake = {k: torch.empty(s.shape, dtype=dtypes[s.dtype]) for k, s in header.items()}
    try:
        model.load_state_dict(fake, strict=True)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()] or [str(e)]
        raise ChatrnnError(f"{path} does not fit its config.json: {lines[0][:160]}") from None
