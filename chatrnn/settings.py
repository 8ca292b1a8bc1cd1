"""Where a training run's settings come from: one rule, applied once, in one place.

Every setting of a run (learning rate, model width, corpus, limits...) is looked up in four layers,
first match wins:

1. **flag**: what the user typed (or, for library callers, what they passed): never a value that
   merely *looks* unset. "Not given" is the absence of a key, so a typed ``--lang english`` or
   ``--lr 0.003`` counts even when it equals a default;
2. **checkpoint**: on ``--resume``, what the stored run used;
3. **preset**: the preset's value (``config.CHARLM_PRESETS`` / ``CHAT_PRESETS``);
4. **default**: the built-in default.

:func:`resolve` applies that rule and returns the values with the layer each came from, which
``--dry-run`` prints. The per-model resolutions (``train.charlm.resolve_charlm``,
``train.chat.resolve_chat``) only gather the layers; they return frozen dataclasses, so nothing
downstream can quietly re-fill or override a setting. No torch here: the CLI reads
:class:`TrainConfig`'s defaults for its ``--help``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from chatrnn.config import JsonConfig
from chatrnn.errors import ChatrnnError


class Source(str, enum.Enum):
    """The layer a setting's value came from, highest precedence first."""

    FLAG = "flag"
    CHECKPOINT = "checkpoint"
    PRESET = "preset"
    DEFAULT = "default"

    def __str__(self) -> str:
        return self.value


class _NotGiven:
    """The type of :data:`NOT_GIVEN`: a value the caller did not choose (``None`` can be a real choice)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """Optimisation and run-control settings (the model's own shape lives in its config).

    Frozen: it is the *resolved* configuration; a run gets it from a resolution and never changes it.
    """

    max_steps: int | None = None
    epochs: float | None = None
    max_time: float | None = None  # seconds of wall clock, evaluation included
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 0.01  # of the weight matrices only (presets may choose their own)
    grad_clip: float = 1.0
    evals: int = 6  # evaluations per run, evenly spaced in progress (the last at the end)
    eval_every: int | None = None  # or every N steps
    seed: int = 1337
    amp: bool | None = None  # bf16 autocast; None: on with CUDA
    threads: int | None = None  # CPU: batch shards run in parallel (None: the physical cores)
    compile: bool = False  # torch.compile the training model (RNN layers graph-break: helps the rest)
    # Decay per step of an exponential moving average of the weights (0: off). Evaluations score
    # the average; the last one scores the raw weights too, and the better become the best checkpoint.
    ema: float = 0.0


TRAIN_KEYS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
LIMIT_KEYS = ("max_steps", "epochs", "max_time")
DEFAULT_MAX_TIME = 180.0  # a fresh run given no limit at all trains for 3 minutes


def train_defaults(flags: Mapping[str, Any], fresh: bool) -> dict[str, Any]:
    """:class:`TrainConfig`'s defaults, plus 3 minutes of wall clock for a fresh run given no limit
    (a resumed run keeps its stored limits unless new ones are typed)."""
    d = {f.name: f.default for f in fields(TrainConfig)}
    if fresh and not any(k in flags for k in LIMIT_KEYS):
        d["max_time"] = DEFAULT_MAX_TIME
    return d


def stored_train_config(d: Mapping[str, Any] | None) -> dict[str, Any]:
    """The checkpoint layer of the training settings: the stored ``train_config``'s known keys.

    Before settings were resolved in one place, ``weight_decay`` and ``ema`` could be stored as
    ``None`` ("the preset's"); such a value is no setting, so it is left to the lower layers.
    """
    return {k: v for k, v in (d or {}).items() if k in TRAIN_KEYS and not (v is None and k in ("weight_decay", "ema"))}


@dataclass(frozen=True)
class Resolved:
    """Settings after :func:`resolve`: each value, and the layer it came from."""

    values: Mapping[str, Any]
    origin: Mapping[str, Source]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def pick(self, names: Iterable[str]) -> dict[str, Any]:
        return {k: self.values[k] for k in names}

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.pick(TRAIN_KEYS))

    def rows(self) -> list[tuple[str, Any, Source]]:
        """``(name, value, source)`` per setting, in resolution order (what ``--dry-run`` prints)."""
        return [(k, v, self.origin[k]) for k, v in self.values.items()]


def resolve(
    names: Iterable[str],
    *,
    flags: Mapping[str, Any],
    checkpoint: Mapping[str, Any],
    preset: Mapping[str, Any],
    defaults: Mapping[str, Any],
) -> Resolved:
    """flag > checkpoint > preset > default, per setting; a layer holds only the keys it sets."""
    layers = (
        (Source.FLAG, flags),
        (Source.CHECKPOINT, checkpoint),
        (Source.PRESET, preset),
        (Source.DEFAULT, defaults),
    )
    values: dict[str, Any] = {}
    origin: dict[str, Source] = {}
    for name in names:
        for source, layer in layers:
            if name in layer:
                values[name], origin[name] = layer[name], source
                break
        else:
            raise KeyError(f"setting {name!r} has no default")
    return Resolved(MappingProxyType(values), MappingProxyType(origin))


def merge(first: Resolved, *more: Resolved) -> Resolved:
    """Several resolutions (e.g. one that decided the preset, one that used it) as one, in order."""
    values, origin = dict(first.values), dict(first.origin)
    for r in more:
        values.update(r.values)
        origin.update(r.origin)
    return Resolved(MappingProxyType(values), MappingProxyType(origin))


def check_known(given: Mapping[str, Any], known: Iterable[str], what: str) -> None:
    """A misspelt setting name from a library caller fails loudly instead of being ignored."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise TypeError(f"unknown {what} setting(s): {', '.join(unknown)}")


def check_fixed_on_resume(flags: Mapping[str, Any], stored: Mapping[str, Any], names: Iterable[str]) -> None:
    """Settings the checkpoint's weights (or tokenizer) are built on cannot change on ``--resume``:
    a typed value that differs is a user error, not something to ignore silently."""
    for name in names:
        if name in flags and name in stored and flags[name] != stored[name]:
            raise ChatrnnError(
                f"--{name.replace('_', '-')} {flags[name]} does not match the checkpoint being resumed "
                f"({stored[name]}); it is fixed by the trained model: drop the flag, or train a new model"
            )


def per_rank_batch(batch_size: int, world: int) -> int:
    """``--batch-size`` and the presets give the global batch; each of ``world`` ranks trains its share."""
    if batch_size % world:
        raise ChatrnnError(f"batch size {batch_size} does not split over {world} ranks")
    return batch_size // world


def frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view, for the mappings inside frozen settings dataclasses."""
    return MappingProxyType(dict(d))


def format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_table(resolved: Resolved) -> list[str]:
    """One line per setting: name, value, and where it came from (flag / checkpoint / preset / default)."""
    rows = [(name, format_value(value), str(source)) for name, value, source in resolved.rows()]
    w_name = max(len(r[0]) for r in rows)
    w_value = min(40, max(len(r[1]) for r in rows))
    return ["settings (value, from):"] + [f"  {n:<{w_name}}  {v:<{w_value}}  {s}" for n, v, s in rows]


def resolve_preset_name(flags: Mapping[str, Any], default: str, presets: Mapping[str, Any]) -> Resolved:
    """The preset, itself a setting: the typed one (``None`` from a library caller: none chosen),
    else ``default`` (chosen by the device, and for the char LM by the run's length)."""
    given = {"preset": flags["preset"]} if flags.get("preset") is not None else {}
    r = resolve(["preset"], flags=given, checkpoint={}, preset={}, defaults={"preset": default})
    if r["preset"] not in presets:
        raise ChatrnnError(f"unknown preset {r['preset']!r}; choose from {', '.join(presets)}")
    return r
