"""The chat model as a training task: length-bucketed batches, masked label-smoothed loss, teacher
forcing, evaluation (loss, perplexity, bits per character of replies), and its part of the checkpoint.

The trainer (``trainer.py``) owns everything else (optimiser, schedule, clipping, checkpoints,
resume, Ctrl-C, NaN guard, the teacher-forcing draw's RNG, CPU sharding); this file is all the chat
model adds to it (the interface it implements is ``task.py``'s :class:`Task`).
"""

from __future__ import annotations

import math
import zlib
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from chatrnn.models.seq2seq import Seq2Seq
from chatrnn.subword import SubwordTokenizer
from chatrnn.train.cpu_parallel import ShardPool, Turns, shard_bounds
from chatrnn.train.task import Loss, Task

LN2 = math.log(2)
POOL = 50  # batches per sorting pool: big enough to bucket well, small enough to stay random


@dataclass
class Example:
    """One tokenized pair: encoder ids (context + SEP + prompt), reply ids (no BOS/EOS), reply chars."""

    src: list[int]
    tgt: list[int]
    chars: int  # characters of the normalised reply, +1 for its end (a char LM's newline)
    turns: tuple[str, ...] = ()  # the text ``src`` encodes: context turns, then the prompt (for resampling)


def join_source(context: list[list[int]], prompt: list[int], sep: int, max_src_len: int) -> list[int]:
    """The encoder's input: the non-empty context turns and the prompt joined by SEP, cut from the
    left to ``max_src_len`` (the latest turns matter most); a prompt alone is kept whole."""
    ctx: list[int] = []
    for ids in context:
        if ids:
            ctx += ([sep] if ctx else []) + ids
    return (ctx + [sep] + prompt)[-max_src_len:] if ctx else prompt


@dataclass
class ChatData:
    tokenizer: SubwordTokenizer
    train: list[Example]
    val: list[Example]
    summary: dict = field(default_factory=dict)  # corpus sources, read/kept/dropped counts
    val_pairs: list = field(default_factory=list)  # the validation Pair objects (prompts for decoding)


@dataclass
class ChatBatch:
    src: torch.Tensor  # (B, S) ids, padded
    src_len: torch.Tensor  # (B,) int64 on the CPU, as packing wants
    tgt_in: torch.Tensor  # (B, T) BOS + reply, padded
    tgt_out: torch.Tensor  # (B, T) reply + EOS, padded
    chars: int = 0
    tokens: int = 0  # positions scored: reply tokens + EOS (counted before the copy to the device)
    forced: bool = True  # teacher-forced (the step's draw, made once for the whole batch)
    turns: Turns | None = None  # a CPU shard whose forward pass takes its turn (see ChatTask.split)
    shard: int = 0


def collate(
    examples: list[Example],
    pad: int,
    bos: int,
    eos: int,
    device: torch.device | None = None,
    prompts: list[list[int]] | None = None,
) -> ChatBatch:
    """Pad a list of examples into tensors (``prompts`` replaces their sources, for shuffled-prompt scoring)."""
    srcs = prompts if prompts is not None else [e.src for e in examples]
    B, S, T = len(examples), max(len(s) for s in srcs), max(len(e.tgt) for e in examples) + 1
    src = torch.full((B, S), pad, dtype=torch.long)
    tgt_in = torch.full((B, T), pad, dtype=torch.long)
    tgt_out = torch.full((B, T), pad, dtype=torch.long)
    for i, (s, e) in enumerate(zip(srcs, examples)):
        src[i, : len(s)] = torch.tensor(s)
        tgt_in[i, : len(e.tgt) + 1] = torch.tensor([bos, *e.tgt])
        tgt_out[i, : len(e.tgt) + 1] = torch.tensor([*e.tgt, eos])
    src_len = torch.tensor([len(s) for s in srcs], dtype=torch.int64)
    chars = sum(e.chars for e in examples)
    tokens = int((tgt_out != pad).sum())
    if device is not None and device.type != "cpu":
        nb = device.type == "cuda"
        src, tgt_in, tgt_out = (
            t.pin_memory().to(device, non_blocking=nb) if nb else t.to(device) for t in (src, tgt_in, tgt_out)
        )
    return ChatBatch(src, src_len, tgt_in, tgt_out, chars, tokens)


class BucketedOrder:
    """Batches of similar lengths in a random order, reproducible from a ``torch.Generator``.

    Each epoch: shuffle all examples, cut the shuffle into pools of ``POOL`` batches, sort each pool
    by length and cut it into batches (little padding), then shuffle the batches. With ``world`` > 1
    every rank computes the same order and takes every world-th batch (the same count on each rank,
    so DDP steps stay in lockstep). The state is the generator state at the start of the epoch plus
    the position in it, so a resumed run sees exactly the batches it would have seen.
    """

    def __init__(self, lengths: list[tuple[int, int]], batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if not lengths:
            raise ValueError("no training examples")
        self.lengths = lengths
        self.batch_size = max(1, min(batch_size, len(lengths)))
        self.rank, self.world = rank, world
        self.gen = torch.Generator().manual_seed(seed)
        self.epoch_index = 0
        self.pos = 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        self.epoch_state = self.gen.get_state()
        self.batches = self._make_batches()
        self.pos = 0

    def _make_batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        perm = torch.randperm(n, generator=self.gen).tolist()
        batches: list[list[int]] = []
        for start in range(0, n, bs * POOL):
            pool = sorted(perm[start : start + bs * POOL], key=lambda i: self.lengths[i])
            batches += [pool[j : j + bs] for j in range(0, len(pool), bs)]
        order = torch.randperm(len(batches), generator=self.gen).tolist()
        batches = [batches[i] for i in order]
        if self.world > 1:
            per_rank = max(1, len(batches) // self.world)
            mine = batches[self.rank :: self.world][:per_rank]
            batches = mine or batches[:1]
        return batches

    @property
    def steps_per_pass(self) -> int:
        return len(self.batches)

    def next(self) -> list[int]:
        if self.pos >= len(self.batches):
            self.epoch_index += 1
            self._start_epoch()
        b = self.batches[self.pos]
        self.pos += 1
        return b

    @property
    def epoch(self) -> float:
        return self.epoch_index + self.pos / max(1, len(self.batches))

    def state_dict(self) -> dict:
        return {
            "epoch_index": self.epoch_index,
            "pos": self.pos,
            "epoch_state": self.epoch_state.clone(),
            "batch_size": self.batch_size,
            "world": self.world,
            "steps": len(self.batches),
        }

    def load_state_dict(self, d: dict) -> None:
        self.epoch_index = int(d["epoch_index"])
        self.gen.set_state(d["epoch_state"])
        self._start_epoch()
        same_split = (
            int(d.get("batch_size", self.batch_size)) == self.batch_size and int(d.get("world", 1)) == self.world
        )
        if same_split:
            self.pos = min(int(d["pos"]), len(self.batches))
        else:  # another batch size or number of ranks: the same fraction of this epoch's shuffle
            old = int(d.get("steps", 0))
            self.pos = min(len(self.batches), round(int(d["pos"]) * len(self.batches) / old)) if old else 0


@torch.no_grad()
def score_examples(
    model: Seq2Seq,
    examples: list[Example],
    device: torch.device,
    batch_size: int = 128,
    autocast: torch.dtype | None = None,
    prompts: list[list[int]] | None = None,
) -> dict:
    """Teacher-forced reply NLL over ``examples``: nats per token, perplexity, bits per character.

    Bits per character divide the total bits of each reply (its end token included) by its
    characters plus one (the end, as a char LM's newline), so the figure compares across
    tokenizers and with a char LM trained on the replies one per line. ``prompts`` replaces each
    example's encoder input (the benchmark's shuffled-prompt check).
    """
    was_training = model.training
    model.eval()
    cfg = model.cfg
    order = sorted(
        range(len(examples)),
        key=lambda i: (len(examples[i].src) if prompts is None else len(prompts[i]), len(examples[i].tgt)),
    )
    total, tokens, chars = 0.0, 0, 0
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate(
                [examples[i] for i in idx],
                cfg.pad_id,
                cfg.bos_id,
                cfg.eos_id,
                device,
                prompts=None if prompts is None else [prompts[i] for i in idx],
            )
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                logits, _, _ = model(batch.src.to(device), batch.src_len, batch.tgt_in.to(device))
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                batch.tgt_out.to(device).reshape(-1),
                ignore_index=cfg.pad_id,
                reduction="sum",
            )
            total += float(loss)
            tokens += int((batch.tgt_out != cfg.pad_id).sum())
            chars += batch.chars
    finally:
        model.train(was_training)
    loss = total / max(tokens, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "bpc": total / LN2 / max(chars, 1),
        "tokens": tokens,
        "reply_chars": chars,
    }


class ChatTask(Task):
    """Bucketed pairs for the shared trainer; validation on ``data.val``."""

    kind = "chat"
    unit = "tokens"

    def __init__(
        self,
        model: Seq2Seq,
        data: ChatData,
        batch_size: int,
        device: torch.device,
        *,
        label_smoothing: float = 0.1,
        teacher_forcing: float = 1.0,
        tf_decay: float = 1.0,
        tf_min: float = 0.0,
        context_turns: int = 0,
        subword_sampling: float = 0.0,
        seed: int = 1337,
        rank: int = 0,
        world: int = 1,
        extra_config: dict | None = None,
        eval_batch_size: int = 128,
    ):
        self.model = model
        self.data = data
        self.device = device
        self.rank, self.world = rank, world
        self.label_smoothing = label_smoothing
        self.teacher_forcing = teacher_forcing
        self.tf_decay = tf_decay
        self.tf_min = tf_min
        self.context_turns = context_turns
        self.subword_sampling = subword_sampling
        self.seed = seed
        self.extra_config = extra_config or {}
        self.eval_batch_size = eval_batch_size
        self.order = BucketedOrder([(len(e.src), len(e.tgt)) for e in data.train], batch_size, seed, rank, world)
        self.batch_size = self.order.batch_size
        mean_tgt = sum(len(e.tgt) + 1 for e in data.train) / len(data.train)
        mean_src = sum(len(e.src) for e in data.train) / len(data.train)
        self._tokens_per_step = max(1, round(self.batch_size * mean_tgt))  # reply tokens (the unit trained on)
        cfg = model.cfg
        # --dry-run's activation estimate: GRU states and gates over both sides, plus logits and
        # their gradient (the largest term with a big vocabulary), in float32.
        max_tgt = max(len(e.tgt) + 1 for e in data.train)
        max_src = max(len(e.src) for e in data.train)
        self._activation_bytes = int(
            4 * self.batch_size * ((max_src + max_tgt) * cfg.hidden * cfg.layers * 8 + max_tgt * cfg.vocab_size * 3)
        )
        self.mean_lengths = (mean_src, mean_tgt)

    @property
    def tokens_per_step(self) -> int:
        return self._tokens_per_step

    def activation_bytes(self, bytes_per_value: int) -> int:
        """The float32 estimate made from the longest pairs in ``__init__`` (whatever the autocast)."""
        return self._activation_bytes

    def next_batch(self, draw: float) -> ChatBatch:
        """The next bucketed batch; ``draw`` (the trainer's, one per step) below the teacher-forcing
        ratio makes it teacher-forced. The trainer saves its generator, so resume is exact."""
        idx = self.order.next()
        cfg = self.model.cfg
        examples = [self.data.train[i] for i in idx]
        if self.subword_sampling > 0:
            examples = self.resample(examples)
        batch = collate(examples, cfg.pad_id, cfg.bos_id, cfg.eos_id, self.device)
        ratio = self.tf_ratio()
        batch.forced = ratio >= 1.0 or draw < ratio
        return batch

    def resample(self, examples: list[Example]) -> list[Example]:
        """The batch with each encoder input segmented anew by sampling (``--subword-sampling``).

        Prompts only: replies keep the one segmentation they are scored and generated in (sampling
        them too measured far worse on ChatbotData, see docs/presets.md).

        The sampler is seeded from the run's seed, the rank and the batch's place in the epoch
        order, so a resumed run draws what an uninterrupted one would. A sampled prompt longer than
        the encoder takes keeps its usual segmentation.
        """
        order = self.order
        seed = zlib.crc32(f"{self.seed}:{self.rank}:{order.epoch_index}:{order.pos}".encode())
        tok = self.data.tokenizer
        sampled = iter(tok.sample_encode([t for e in examples for t in e.turns], self.subword_sampling, seed))
        max_src = self.model.cfg.max_src_len
        out = []
        for e in examples:
            turns = [next(sampled) for _ in e.turns]
            if not turns or not turns[-1] or len(turns[-1]) > max_src:
                out.append(e)
                continue
            out.append(replace(e, src=join_source(turns[:-1], turns[-1], tok.SEP, max_src)))
        return out

    def tf_ratio(self) -> float:
        """Teacher forcing ratio now: the start ratio decayed per epoch, floored at ``tf_min``."""
        if self.teacher_forcing >= 1.0 and self.tf_decay >= 1.0:
            return 1.0
        return max(self.tf_min, self.teacher_forcing * self.tf_decay**self.order.epoch_index)

    def loss(self, model: torch.nn.Module, batch: ChatBatch) -> Loss:
        """Summed label-smoothed cross-entropy over the reply tokens (padding ignored)."""
        with batch.turns.turn(batch.shard) if batch.turns is not None else nullcontext():
            logits, _, _ = model(batch.src, batch.src_len, batch.tgt_in, teacher_forcing=batch.forced)
        total = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            batch.tgt_out.reshape(-1),
            ignore_index=self.model.cfg.pad_id,
            label_smoothing=self.label_smoothing,
            reduction="sum",
        )
        return Loss(total, batch.tokens)

    # ----- CPU: the batch's pairs sharded over threads (see cpu_parallel.py) --------------------
    @property
    def max_shards(self) -> int:
        return self.batch_size

    def split(self, batch: ChatBatch, n: int) -> list[ChatBatch]:
        """Slices of the pairs (kept at the batch's padded widths), all with the batch's
        teacher-forcing draw. The model's dropout draws from torch's global generator, so with
        dropout the slices' forward passes take turns in slice order and the masks are the same from
        run to run; their backward passes still overlap."""
        pad = self.model.cfg.pad_id
        bounds = [(lo, hi) for lo, hi in shard_bounds(batch.src.size(0), n) if hi > lo]
        dropout = self.model.cfg.word_dropout > 0 or any(
            isinstance(m, torch.nn.Dropout) and m.p > 0 for m in self.model.modules()
        )
        turns = Turns(len(bounds)) if dropout and self.model.training else None
        return [
            ChatBatch(
                batch.src[lo:hi],
                batch.src_len[lo:hi],
                batch.tgt_in[lo:hi],
                batch.tgt_out[lo:hi],
                tokens=int((batch.tgt_out[lo:hi] != pad).sum()),
                forced=batch.forced,
                turns=turns,
                shard=i,
            )
            for i, (lo, hi) in enumerate(bounds)
        ]

    def evaluate(
        self, model: torch.nn.Module, autocast: torch.dtype | None = None, pool: ShardPool | None = None
    ) -> dict:
        """Teacher-forced reply figures (see :func:`score_examples`); ``pool`` is not used: the pairs
        are scored in the calling thread."""
        val = self.data.val[self.rank :: self.world]  # DDP: each rank scores its share; the trainer sums them
        return score_examples(model, val, self.device, self.eval_batch_size, autocast)

    @property
    def epoch(self) -> float:
        return self.order.epoch

    @property
    def epoch_steps(self) -> int:
        return self.order.steps_per_pass

    def state_dict(self) -> dict:
        return {"order": self.order.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.order.load_state_dict(d["order"])

    def checkpoint_config(self) -> dict:
        tok = self.data.tokenizer
        return {
            "model": self.model.cfg.to_dict(),
            "tokenizer": {
                "file": "tokenizer.model",
                "vocab_size": tok.vocab_size,
                "type": self.extra_config.get("tokenizer_type", "unigram"),
                "pad_id": tok.PAD,
                "bos_id": tok.BOS,
                "eos_id": tok.EOS,
                "sep_id": tok.SEP,
            },
            "context_turns": self.context_turns,
            "max_src_len": self.model.cfg.max_src_len,
            "max_tgt_len": self.model.cfg.max_tgt_len,
            "batch": {"batch_size": self.batch_size * self.world},
            "chat_train": {
                "label_smoothing": self.label_smoothing,
                "teacher_forcing": self.teacher_forcing,
                "tf_decay": self.tf_decay,
                "tf_min": self.tf_min,
                "subword_sampling": self.subword_sampling,
            },
            "corpus": {**self.data.summary, "train_pairs": len(self.data.train), "val_pairs": len(self.data.val)},
            **{k: v for k, v in self.extra_config.items() if k != "tokenizer_type"},
        }

    def write_extras(self, stage) -> None:
        stage.save_bytes("tokenizer.model", self.data.tokenizer.to_bytes())

    def describe(self) -> str:
        m = self.model.cfg
        return (
            f"chat model: {m.layers}x{m.hidden} GRU encoder-decoder, {m.attention} attention, "
            f"{self.model.num_parameters():,} parameters, vocab {m.vocab_size}, "
            f"{len(self.data.train):,} train / {len(self.data.val):,} val pairs"
        )
