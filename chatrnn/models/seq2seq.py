"""The chat model: a bidirectional GRU encoder and a Luong-attention GRU decoder with input feeding.

Read top to bottom like nanoGPT's model.py: the config, the encoder, the attention, the decoder, and
the whole model. The shape follows the PyTorch chatbot tutorial and OpenNMT-py's RNN models, with
the fixes their users ask for:

* attention is masked over padding (the tutorial attends to pad positions of shorter prompts);
* the encoder reads packed sequences, so padding never enters its final state either;
* one token embedding is shared by the encoder and the decoder (and optionally the output layer):
  prompts and replies use the same subword vocabulary, and a small corpus cannot afford to learn
  every piece twice;
* the decoder's state is *computed* from the encoder's final states (a "bridge"), not copied, so
  the encoder and decoder may differ in what their state means.

Shapes: B batch, S source (prompt) length, T target (reply) length, H hidden, E embedding, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from chatrnn.config import JsonConfig

ATTENTIONS = ("dot", "general", "concat")


@dataclass
class Seq2SeqConfig(JsonConfig):
    vocab_size: int
    embed: int = 256
    hidden: int = 256  # encoder output width (both directions together) and decoder state width
    layers: int = 2  # encoder and decoder alike, so the bridge maps layer to layer
    attention: str = "general"
    dropout: float = 0.1
    tie_weights: bool = True
    input_feeding: bool = True
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3
    sep_id: int = 4
    max_src_len: int = 64  # prompt (with context) tokens the encoder reads; longer input is cut from the left
    max_tgt_len: int = 40  # reply tokens trained on (inference may ask for more)

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, not {self.attention!r}")
        if self.hidden % 2:
            raise ValueError("hidden must be even: the encoder splits it over two directions")


class Encoded(NamedTuple):
    """What the decoder needs from the encoder, computed once per prompt."""

    memory: torch.Tensor  # (B, S, H) encoder outputs: the attention's values
    keys: torch.Tensor  # (B, S, H) memory pre-projected for the score function (reused every step)
    mask: torch.Tensor  # (B, S) True at real tokens, False at padding
    hidden: torch.Tensor  # (L, B, H) the decoder's initial state


class StackedGRU(nn.Module):
    """Single-layer ``nn.GRU`` modules stacked, with ``nn.Dropout`` between them.

    ``nn.GRU(num_layers=N, dropout=p)`` drops between layers inside cuDNN, whose dropout state is
    seeded once and is not part of torch's RNG state: a run resumed on a GPU would draw other
    masks than the uninterrupted run. Dropping here uses torch's RNG, which checkpoints save, so
    resume stays exact on every device. Accepts a tensor or a ``PackedSequence``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool = False):
        super().__init__()
        dirs = 2 if bidirectional else 1
        self.hidden_size, self.num_layers, self.dirs = hidden_size, num_layers, dirs
        self.layers = nn.ModuleList(
            nn.GRU(
                input_size if i == 0 else hidden_size * dirs, hidden_size, batch_first=True, bidirectional=bidirectional
            )
            for i in range(num_layers)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x, hidden: torch.Tensor | None = None):
        """Like ``nn.GRU``: outputs, and final states (layers * directions, B, hidden)."""
        finals = []
        for i, rnn in enumerate(self.layers):
            if i:
                x = (
                    PackedSequence(self.drop(x.data), x.batch_sizes, x.sorted_indices, x.unsorted_indices)
                    if isinstance(x, PackedSequence)
                    else self.drop(x)
                )
            h0 = None if hidden is None else hidden[i * self.dirs : (i + 1) * self.dirs]
            data = x.data if isinstance(x, PackedSequence) else x
            if torch.is_autocast_enabled(data.device.type):
                # The recurrence stays in float32 under autocast, as in the char LM: CUDA autocast
                # runs cuDNN RNNs in float16 whatever dtype it was given, and we do no loss scaling.
                x = x.to(torch.float32) if isinstance(x, PackedSequence) else x.float()
                with torch.autocast(data.device.type, enabled=False):
                    x, h = rnn(x, None if h0 is None else h0.float())
            else:
                x, h = rnn(x, h0)
            finals.append(h)
        return x, torch.cat(finals, 0)


class Encoder(nn.Module):
    """N-layer bidirectional GRU; each direction has H/2 units so outputs are H wide."""

    def __init__(self, cfg: Seq2SeqConfig, embedding: nn.Embedding):
        super().__init__()
        self.cfg = cfg
        self.embedding = embedding
        self.drop = nn.Dropout(cfg.dropout)
        self.rnn = StackedGRU(cfg.embed, cfg.hidden // 2, cfg.layers, cfg.dropout, bidirectional=True)

    def forward(self, src: torch.Tensor, src_len: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs (B, S, H) with zeros at padding, and final states (L, B, H) of both directions.

        ``src_len`` must be int64 on the CPU (what ``pack_padded_sequence`` wants; a CUDA tensor
        here forces a sync and fails on some versions), every length at least 1.
        """
        x = self.drop(self.embedding(src))
        lengths = src_len.to("cpu", torch.int64)
        if int(lengths.min()) == src.size(1):  # no padding (e.g. one prompt at inference): packing is pure overhead
            out, h = self.rnn(x)
        else:
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, h = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        L, B = self.cfg.layers, src.size(0)
        h = h.view(L, 2, B, self.cfg.hidden // 2)  # (layer, direction, B, H/2)
        return out, torch.cat([h[:, 0], h[:, 1]], dim=-1)


class Attention(nn.Module):
    """Luong et al. (2015) scores: ``dot`` (h·s), ``general`` (h·W s) or ``concat`` (v·tanh(W[h;s])).

    The memory-side half of each score is a function of the encoder outputs only, so it is
    computed once per prompt (:meth:`keys`) rather than once per decoded token.
    """

    def __init__(self, kind: str, hidden: int):
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.w = nn.Linear(hidden, hidden, bias=False)
        elif kind == "concat":
            self.w_mem = nn.Linear(hidden, hidden, bias=False)
            self.w_query = nn.Linear(hidden, hidden)
            self.v = nn.Linear(hidden, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        if self.kind == "general":
            return self.w(memory)
        if self.kind == "concat":
            return self.w_mem(memory)
        return memory

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (B, H) and weights (B, S) for decoder states ``query`` (B, H); or, for a whole
        reply at once, (B, T, H) -> context (B, T, H) and weights (B, T, S).

        Padding gets -inf before the softmax, so it receives exactly zero weight: a prompt batched
        with longer ones is read exactly as if it were alone.
        """
        single = query.dim() == 2
        q = query.unsqueeze(1) if single else query  # (B, T, H)
        if self.kind == "concat":
            scores = self.v(torch.tanh(keys.unsqueeze(1) + self.w_query(q).unsqueeze(2))).squeeze(-1)
        else:
            scores = torch.bmm(q, keys.transpose(1, 2))  # (B, T, S)
        scores = scores.float().masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1).to(memory.dtype)
        context = torch.bmm(weights, memory)
        return (context.squeeze(1), weights.squeeze(1)) if single else (context, weights)


class Decoder(nn.Module):
    """N-layer GRU over [token embedding; previous attentional state] (input feeding).

    Input feeding (Luong et al., 2015, sec. 3.3) gives the GRU the attentional vector of the
    previous step, so the decoder knows what it already attended to; it costs a Python loop over
    reply positions, which is short for chat replies.
    """

    def __init__(self, cfg: Seq2SeqConfig, embedding: nn.Embedding):
        super().__init__()
        self.cfg = cfg
        self.embedding = embedding
        self.drop = nn.Dropout(cfg.dropout)
        in_size = cfg.embed + (cfg.hidden if cfg.input_feeding else 0)
        self.rnn = StackedGRU(in_size, cfg.hidden, cfg.layers, cfg.dropout)
        self.attention = Attention(cfg.attention, cfg.hidden)
        self.combine = nn.Linear(2 * cfg.hidden, cfg.hidden, bias=False)  # W_c [context; state]

    def step(
        self, tokens: torch.Tensor, hidden: torch.Tensor, feed: torch.Tensor | None, enc: Encoded, lean: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One reply position: ``tokens`` (B,) -> attentional state (B, H), new hidden, weights (B, S).

        ``lean`` runs the GRU cell's equations directly on its weights: at batch 1 on a CPU a
        one-step ``nn.GRU`` call costs ~1 ms of overhead per call, the maths ~50 us (inference only;
        a test checks both paths agree).
        """
        x = self.drop(self.embedding(tokens))
        if self.cfg.input_feeding:
            x = torch.cat([x, feed], dim=-1)
        if lean:
            hidden = gru_step(self.rnn, x, hidden)
            h = hidden[-1]
        else:
            out, hidden = self.rnn(x.unsqueeze(1), hidden)
            h = out.squeeze(1)
        context, weights = self.attention(h, enc.keys, enc.memory, enc.mask)
        attn_h = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))
        return attn_h, hidden, weights


def gru_step(rnn: StackedGRU, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """One time step of a (unidirectional, eval-mode) :class:`StackedGRU`, written out:
    r = σ(W_ir x + W_hr h), z = σ(W_iz x + W_hz h), n = tanh(W_in x + r ⊙ W_hn h), h' = n + z ⊙ (h - n)
    (biases included as in ``nn.GRU``). Returns the new hidden state (L, B, H)."""
    out = []
    for layer, cell in enumerate(rnn.layers):
        h = hidden[layer]
        gi = F.linear(x, cell.weight_ih_l0, cell.bias_ih_l0)
        gh = F.linear(h, cell.weight_hh_l0, cell.bias_hh_l0)
        i_r, i_z, i_n = gi.chunk(3, 1)
        h_r, h_z, h_n = gh.chunk(3, 1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        x = n + z * (h - n)
        out.append(x)
    return torch.stack(out)


class Seq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed, padding_idx=cfg.pad_id)
        self.encoder = Encoder(cfg, self.embedding)
        self.decoder = Decoder(cfg, self.embedding)
        self.bridge = nn.Linear(cfg.hidden, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        # Tying needs the head's input to be E wide: project the attentional state down first.
        self.proj = (
            nn.Linear(cfg.hidden, cfg.embed, bias=False) if cfg.tie_weights and cfg.hidden != cfg.embed else None
        )
        self.head = nn.Linear(cfg.embed if cfg.tie_weights else cfg.hidden, cfg.vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        """Orthogonal recurrent matrices keep gradients alive over the unroll. The embedding starts
        at N(0, 0.5): large enough that different tokens drive the GRUs apart from the first step
        (with a tied output layer and a tiny init, e.g. U(-0.1, 0.1), the decoder sits for hundreds
        of steps at the unigram distribution before it starts to use its input), small enough that
        the tied output layer's initial logits stay moderate."""
        for rnn in (self.encoder.rnn, self.decoder.rnn):
            for full_name, p in rnn.named_parameters():
                name = full_name.rsplit(".", 1)[-1]
                if name.startswith("weight_hh"):
                    for block in p.data.split(rnn.hidden_size, dim=0):
                        nn.init.orthogonal_(block)
                elif name.startswith("weight_ih"):
                    nn.init.xavier_uniform_(p.data)
                else:
                    nn.init.zeros_(p.data)
        nn.init.normal_(self.embedding.weight, 0.0, 0.5)
        with torch.no_grad():
            self.embedding.weight[self.cfg.pad_id].zero_()
        nn.init.zeros_(self.head.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    # ----- the pieces inference uses ------------------------------------------------------
    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> Encoded:
        memory, final = self.encoder(src, src_len)
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < src_len.to(src.device).unsqueeze(1)
        hidden = torch.tanh(self.bridge(final)).contiguous()
        return Encoded(memory, self.decoder.attention.keys(memory), mask, hidden)

    def initial_feed(self, enc: Encoded) -> torch.Tensor:
        return enc.memory.new_zeros(enc.memory.size(0), self.cfg.hidden)

    def logits(self, attn_h: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits for attentional states (..., H)."""
        x = self.drop(attn_h)
        if self.proj is not None:
            x = self.proj(x)
        return self.head(x)

    def step(
        self, tokens: torch.Tensor, hidden: torch.Tensor, feed: torch.Tensor, enc: Encoded, lean: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode one position for a batch: logits (B, V), hidden, next feed, attention (B, S)."""
        attn_h, hidden, weights = self.decoder.step(tokens, hidden, feed, enc, lean=lean)
        return self.logits(attn_h), hidden, attn_h, weights

    # ----- training -------------------------------------------------------------------------
    def forward(
        self, src: torch.Tensor, src_len: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, V) for every reply position, and attention weights (B, T, S).

        With ``teacher_forcing`` the decoder reads the reference reply (``tgt_in``: BOS + reply);
        without, it reads its own greedy choice from the previous position (only ``tgt_in[:, 0]``
        is used), which is what it will do at inference. Whether a batch is teacher-forced is the
        caller's draw.
        """
        enc = self.encode(src, src_len)
        if teacher_forcing and not self.cfg.input_feeding:
            # Nothing feeds back: the whole reply goes through the GRU in one call and attention
            # is one batched product, several times faster than stepping on a CPU.
            dec = self.decoder
            out, _ = dec.rnn(dec.drop(self.embedding(tgt_in)), enc.hidden)
            context, weights = dec.attention(out, enc.keys, enc.memory, enc.mask)
            attn_h = torch.tanh(dec.combine(torch.cat([context, out], dim=-1)))
            return self.logits(attn_h), weights
        hidden, feed = enc.hidden, self.initial_feed(enc)
        states, attns = [], []
        if teacher_forcing:
            for t in range(tgt_in.size(1)):
                feed, hidden, w = self.decoder.step(tgt_in[:, t], hidden, feed, enc)
                states.append(feed)
                attns.append(w)
            return self.logits(torch.stack(states, 1)), torch.stack(attns, 1)
        tokens, all_logits = tgt_in[:, 0], []
        for _ in range(tgt_in.size(1)):
            feed, hidden, w = self.decoder.step(tokens, hidden, feed, enc)
            logits = self.logits(feed)
            all_logits.append(logits)
            attns.append(w)
            tokens = logits.argmax(-1).detach()
        return torch.stack(all_logits, 1), torch.stack(attns, 1)
