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

Every recurrent layer is a single-layer ``nn.GRU``. At each step t, with x_t the layer's input and the
gates in PyTorch's order r, z, n (the three H-row blocks of ``weight_ih_l0``, ``weight_hh_l0`` and both
biases)::

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          reset gate
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          update gate
    n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))  candidate
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

The decoder at reply position t (Luong et al., 2015), with s_t its top-layer state, m_1..m_S the
encoder outputs, y_{t-1} the previous reply token and h~ the attentional state::

    x_t  = [E y_{t-1} ; h~_{t-1}]   with input feeding (h~_0 = 0),  else  x_t = E y_{t-1}
    s_t  = GRU(x_t, s_{t-1})                       (s_0 = tanh(W_b [encoder final states] + b_b))
    a_t  = softmax_s(score(s_t, m_s))  over real prompt tokens;  c_t = Σ_s a_ts m_s
    h~_t = tanh(W_c [c_t ; s_t]);   p(y_t | y_<t, prompt) = softmax(W_o h~_t)

Word dropout (Bowman et al., 2016; training only, teacher forcing): each y_{t-1} (t > 1) of the
reference is replaced by UNK with probability ``word_dropout`` before it is embedded.

This file is the reference path only: ``fast.py`` holds the one-step decoder that inference uses
(the same equations on the weights, without a module call per step; tested against this file) and
the float32-under-autocast guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from chatrnn.config import JsonConfig
from chatrnn.models import fast

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
    word_dropout: float = 0.0  # training only: share of the decoder's input tokens replaced by UNK
    pad_id: int = 0
    unk_id: int = 1  # the tokenizer's UNK: byte fallback means real text never encodes to it
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
        if not 0 <= self.word_dropout < 1:
            raise ValueError(f"word_dropout must be at least 0 and below 1, not {self.word_dropout}")


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
            x, h = fast.rnn_fp32(rnn, x, h0)
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

    def attend(self, h: torch.Tensor, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        """Luong's attentional state tanh(W_c [context; h]) and the attention weights, for decoder
        outputs ``h`` (B, H) or (B, T, H)."""
        context, weights = self.attention(h, enc.keys, enc.memory, enc.mask)  # (B, [T,] H), (B, [T,] S)
        return torch.tanh(self.combine(torch.cat([context, h], dim=-1))), weights

    def forward(
        self, tokens: torch.Tensor, hidden: torch.Tensor, feed: torch.Tensor, enc: Encoded
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reads ``tokens`` (B, T): attentional states (B, T, H), the last hidden (L, B, H), attention
        weights (B, T, S). ``feed`` (B, H) is the attentional state before the first token.

        With input feeding each position needs the previous one's attentional state, so the GRU
        steps through the reply; without, nothing feeds back and the whole reply goes through the
        GRU in one call with attention as one batched product (several times faster on a CPU).
        """
        x = self.drop(self.embedding(tokens))  # (B, T, E)
        if not self.cfg.input_feeding:
            out, hidden = self.rnn(x, hidden)  # (B, T, H)
            attn_h, weights = self.attend(out, enc)
            return attn_h, hidden, weights
        states, attns = [], []
        for t in range(x.size(1)):
            out, hidden = self.rnn(torch.cat([x[:, t], feed], dim=-1).unsqueeze(1), hidden)  # (B, 1, H)
            feed, w = self.attend(out[:, 0], enc)  # (B, H), (B, S)
            states.append(feed)
            attns.append(w)
        return torch.stack(states, 1), hidden, torch.stack(attns, 1)


class Seq2Seq(nn.Module):
    """Prompt -> encoder -> bridge -> decoder (attending over the encoder's outputs) -> head (V),
    one embedding shared by both sides (and the head, when tied)."""

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

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> Encoded:
        memory, final = self.encoder(src, src_len)
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < src_len.to(src.device).unsqueeze(1)
        hidden = torch.tanh(self.bridge(final)).contiguous()
        return Encoded(memory, self.decoder.attention.keys(memory), mask, hidden)

    def null_encoded(self, batch: int, device: torch.device | None = None) -> Encoded:
        """The encoding of "no prompt at all", for MMI reranking's p(reply): one all-zero memory
        position (so attention returns a zero context) and the bridge of all-zero encoder states
        (tanh of its bias). Zero is the encoder's output at padding, so this is the decoder with its
        prompt input removed, rather than the encoding of some particular short prompt (an empty
        string still encodes to SEP, which the model reads as a real prompt)."""
        H, L = self.cfg.hidden, self.cfg.layers
        w = self.bridge.weight
        memory = w.new_zeros(batch, 1, H)
        hidden = torch.tanh(self.bridge(w.new_zeros(L, batch, H))).contiguous()
        mask = torch.ones(batch, 1, dtype=torch.bool, device=w.device)
        enc = Encoded(memory, self.decoder.attention.keys(memory), mask, hidden)
        return enc if device is None else Encoded(*(t.to(device) for t in enc))

    @torch.no_grad()
    def reply_logprobs(self, enc: Encoded, replies: list[list[int]], ended: list[bool]) -> list[float]:
        """Total log-probability of each reply (ids without BOS; its EOS scored too where ``ended``)
        given the encodings ``enc`` (one per reply), teacher-forced in one padded batch (the decoder
        is causal: padding after a reply never changes its scores)."""
        cfg = self.cfg
        T = max(len(r) + 1 for r in replies)
        device = enc.memory.device
        tgt_in = torch.full((len(replies), T), cfg.pad_id, dtype=torch.long, device=device)
        tgt_out = torch.full((len(replies), T), cfg.pad_id, dtype=torch.long, device=device)
        for i, (r, end) in enumerate(zip(replies, ended)):
            tgt_in[i, : len(r) + 1] = torch.tensor([cfg.bos_id, *r])
            scored = [*r, cfg.eos_id] if end else r
            tgt_out[i, : len(scored)] = torch.tensor(scored, dtype=torch.long)
        attn_h, _, _ = self.decoder(tgt_in, enc.hidden, self.initial_feed(enc), enc)
        logp = torch.log_softmax(self.logits(attn_h).float(), -1)
        picked = logp.gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1).masked_fill(tgt_out == cfg.pad_id, 0.0)
        return picked.sum(-1).tolist()

    def initial_feed(self, enc: Encoded) -> torch.Tensor:
        return enc.memory.new_zeros(enc.memory.size(0), self.cfg.hidden)

    def logits(self, attn_h: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits for attentional states (..., H)."""
        x = self.drop(attn_h)
        if self.proj is not None:
            x = self.proj(x)
        return self.head(x)

    def forward(
        self,
        src: torch.Tensor,
        src_len: torch.Tensor,
        tgt_in: torch.Tensor,
        targets: torch.Tensor | None = None,
        teacher_forcing: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Logits (B, T, V) for every reply position; the mean cross-entropy against ``targets``
        (B, T; padding ignored) when given, else None; and attention weights (B, T, S).

        With ``teacher_forcing`` the decoder reads the reference reply (``tgt_in``: BOS + reply);
        without, it reads its own greedy choice from the previous position (only ``tgt_in[:, 0]``
        is used), which is what it will do at inference. Whether a batch is teacher-forced is the
        caller's draw.
        """
        enc = self.encode(src, src_len)
        hidden, feed = enc.hidden, self.initial_feed(enc)  # (L, B, H), (B, H)
        if teacher_forcing:
            attn_h, _, weights = self.decoder(self.drop_words(tgt_in), hidden, feed, enc)  # (B, T, H), _, (B, T, S)
            logits = self.logits(attn_h)  # (B, T, V)
        else:
            tokens, steps, attns = tgt_in[:, :1], [], []  # (B, 1): BOS
            for _ in range(tgt_in.size(1)):
                attn_h, hidden, w = self.decoder(tokens, hidden, feed, enc)  # (B, 1, H), _, (B, 1, S)
                feed = attn_h[:, 0]
                steps.append(self.logits(attn_h))  # (B, 1, V)
                attns.append(w)
                tokens = steps[-1].argmax(-1).detach()  # (B, 1)
            logits, weights = torch.cat(steps, 1), torch.cat(attns, 1)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=self.cfg.pad_id
            )
        return logits, loss, weights

    def drop_words(self, tgt_in: torch.Tensor) -> torch.Tensor:
        """Word dropout (Bowman et al., 2016, sec. 3.2): in training, each reference token the decoder
        reads (never BOS, never padding) becomes UNK with probability ``word_dropout``, so the next
        token must often be predicted from the prompt (through attention and the bridge) rather
        than from the reply so far. UNK is a dedicated token here: byte fallback means no text
        encodes to it and inference never emits it. The mask draws from torch's generator, like
        ``nn.Dropout``, so checkpoints resume it exactly; at p = 0 nothing is drawn."""
        p = self.cfg.word_dropout
        if not self.training or p <= 0:
            return tgt_in
        drop = torch.rand(tgt_in.shape, device=tgt_in.device) < p
        drop[:, 0] = False  # BOS: the decoder always knows where the reply starts
        drop &= tgt_in != self.cfg.pad_id
        return tgt_in.masked_fill(drop, self.cfg.unk_id)

    # ----- decoding, one position at a time -------------------------------------------------
    def step(
        self, tokens: torch.Tensor, hidden: torch.Tensor, feed: torch.Tensor, enc: Encoded, lean: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode one position for a batch (``tokens`` (B,)): logits (B, V), hidden, next feed,
        attention (B, S). ``lean`` (inference only) runs ``fast.decoder_step``: the same maths
        without an ``nn.GRU`` call, ~20x less overhead at batch 1 on a CPU."""
        if lean:
            attn_h, hidden, weights = fast.decoder_step(self.decoder, tokens, hidden, feed, enc)
        else:
            attn_h, hidden, weights = self.decoder(tokens.unsqueeze(1), hidden, feed, enc)
            attn_h, weights = attn_h[:, 0], weights[:, 0]
        return self.logits(attn_h), hidden, attn_h, weights

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, src_len: torch.Tensor, max_len: int = 40) -> list[list[int]]:
        """The most likely token at every position, until EOS or ``max_len``: a reply (ids, without
        EOS) per prompt of ``src`` (B, S). ``infer_chat.Responder`` adds sampling, beam search,
        n-gram blocking and streaming on top of :meth:`step`."""
        enc = self.encode(src, src_len)
        hidden, feed = enc.hidden, self.initial_feed(enc)
        tokens = torch.full((src.size(0),), self.cfg.bos_id, dtype=torch.long, device=src.device)
        replies: list[list[int]] = [[] for _ in range(src.size(0))]
        done = [False] * src.size(0)
        for _ in range(max_len):
            logits, hidden, feed, _ = self.step(tokens, hidden, feed, enc)
            tokens = logits.argmax(-1)  # (B,)
            for b, t in enumerate(tokens.tolist()):
                done[b] = done[b] or t == self.cfg.eos_id
                if not done[b]:
                    replies[b].append(t)
            if all(done):
                break
        return replies
