"""The character-level recurrent language model: embedding -> N recurrent layers -> linear head.

Read top to bottom like nanoGPT's model.py: the config, the module (its ``forward`` and a short
``generate``). This is the reference path only; ``fast.py`` holds the batch-1 sampler that
inference uses (``LeanStepper``, tested against this file) and the float32-under-autocast guard.

Shapes: B batch, T time steps, V vocabulary, E embedding, H hidden, L layers.

Each layer is one single-layer ``nn.LSTM`` (or ``nn.GRU`` / ``nn.RNN``). For an LSTM, at each step t,
with x_t the layer's input (the embedding for the first layer, the layer below's output otherwise)
and the gates in PyTorch's order i, f, g, o (the four H-row blocks of ``weight_ih_l0``,
``weight_hh_l0`` and both biases)::

    i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)       input gate
    f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)       forget gate
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)    cell candidate
    o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)       output gate
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

(The GRU's equations, gate order r, z, n, are in ``seq2seq.py``.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from chatrnn.config import JsonConfig
from chatrnn.models.fast import rnn_fp32

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class CharLMConfig(JsonConfig):
    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 256
    embed: int = 64
    dropout: float = 0.0
    tie_weights: bool = False
    # The head reads every layer's output, not just the top one's (Graves, 2013, "skip
    # connections"): the lower layers get a direct gradient from the loss and learn faster, for a
    # head only ``layers`` times wider. On a CPU budget this was the largest single gain we found.
    skip: bool = False


# (L, B, H) for a GRU / RNN; (h, c), each (L, B, H), for an LSTM.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class CharLM(nn.Module):
    """embedding (E) -> L recurrent layers (H each, dropout after each) -> [concatenated, with skip
    connections] -> [projection to E, when tied] -> head (V)."""

    def __init__(self, cfg: CharLMConfig):
        super().__init__()
        if cfg.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}")
        self.cfg = cfg
        E, H, L = cfg.embed, cfg.hidden, cfg.layers
        self.embedding = nn.Embedding(cfg.vocab_size, E)
        # One single-layer module per layer, rather than one nn.LSTM(num_layers=L): every layer's
        # output is then at hand, for the skip connections and for dropout masks the caller supplies.
        self.layers = nn.ModuleList(CELLS[cfg.cell](E if i == 0 else H, H, batch_first=True) for i in range(L))
        self.drop = nn.Dropout(cfg.dropout)
        top = H * L if cfg.skip else H  # what the head reads
        # Tying needs the head's input to have the embedding's width: project down when they differ.
        self.proj = nn.Linear(top, E) if cfg.tie_weights and top != E else None
        self.head = nn.Linear(E if cfg.tie_weights else top, cfg.vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight
        self._init_weights()
        # Wherever this module's weights are loaded (inference, resume, the weight average's copy),
        # old checkpoints' names are mapped first.
        self.register_load_state_dict_pre_hook(_upgrade_hook)

    def _init_weights(self) -> None:
        """Orthogonal recurrent weights keep gradients alive through long unrolls; an LSTM forget
        gate biased to 1 starts by remembering (Jozefowicz et al., 2015)."""
        H = self.cfg.hidden
        for name, p in self.layers.named_parameters():
            if "weight_hh" in name:
                for block in p.data.split(H, dim=0):  # one block per gate
                    nn.init.orthogonal_(block)
            elif "weight_ih" in name:
                nn.init.xavier_uniform_(p.data)
            else:
                nn.init.zeros_(p.data)
                if self.cfg.cell == "lstm" and "bias_ih" in name:
                    p.data[H : 2 * H] = 1.0  # f, the second of i, f, g, o
        if self.cfg.tie_weights:
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        x: torch.Tensor,
        state: State | None = None,
        targets: torch.Tensor | None = None,
        masks: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        """Logits (B, T, V) for ids ``x`` (B, T); the mean cross-entropy against ``targets`` (B, T)
        when given, else None; and the state after the last step (pass it back in for the next window).

        ``masks`` (from :meth:`dropout_masks`) replaces the dropout that would draw from torch's
        global generator: the CPU trainer's threads each run a slice of one batch at the same time,
        and masks drawn per thread from their own generators keep such runs repeatable without making
        the threads take turns.
        """
        out = self.embedding(x)  # (B, T, E)
        outs, hs, cs = [], [], []
        for i, rnn in enumerate(self.layers):
            out, st = rnn_fp32(rnn, out, _layer_state(state, i))  # (B, T, H)
            out = out * masks[i] if masks is not None else self.drop(out)
            outs.append(out)
            if isinstance(st, tuple):  # LSTM: (h, c), each (1, B, H)
                hs.append(st[0])
                cs.append(st[1])
            else:
                hs.append(st)
        top = torch.cat(outs, dim=-1) if self.cfg.skip else out  # (B, T, L*H) or (B, T, H)
        if self.proj is not None:
            top = self.proj(top)  # (B, T, E)
        logits = self.head(top)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
        new_state: State = (torch.cat(hs), torch.cat(cs)) if cs else torch.cat(hs)  # (L, B, H)
        return logits, loss, new_state

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        max_new: int,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``prompt`` (B, T) continued by ``max_new`` ids (B, T + max_new): temperature 0 is greedy.

        The plain way, one ``forward`` per character; ``infer.Generator`` streams through
        ``fast.LeanStepper`` instead (the same maths, several times faster at batch 1)."""
        logits, _, state = self(prompt)
        ids = [prompt]
        for _ in range(max_new):
            last = logits[:, -1].float()  # (B, V)
            if temperature <= 0:
                nxt = last.argmax(-1, keepdim=True)  # (B, 1)
            else:
                last = last / temperature
                if 0 < top_k < last.size(-1):
                    last = last.masked_fill(last < torch.topk(last, top_k).values[:, -1:], float("-inf"))
                nxt = torch.multinomial(torch.softmax(last, -1), 1, generator=generator)  # (B, 1)
            ids.append(nxt)
            logits, _, state = self(nxt, state)
        return torch.cat(ids, dim=1)

    def dropout_masks(
        self, batch: int, seq_len: int, generator: torch.Generator | None = None
    ) -> list[torch.Tensor] | None:
        """One scaled keep-mask (B, T, H) per layer output, the last one for the output dropout: the
        same places ``self.drop`` would apply. None when the model would drop nothing (evaluation,
        or no dropout)."""
        p = self.cfg.dropout
        if not self.training or p <= 0:
            return None
        dev = self.embedding.weight.device
        shape = (batch, seq_len, self.cfg.hidden)
        return [
            torch.empty(shape, device=dev).bernoulli_(1 - p, generator=generator).div_(1 - p)
            for _ in range(self.cfg.layers)
        ]

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        z = torch.zeros(self.cfg.layers, batch, self.cfg.hidden, device=device)
        return (z, z.clone()) if self.cfg.cell == "lstm" else z

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())


def _layer_state(state: State | None, i: int) -> State | None:
    """Layer ``i``'s slice (1, B, H) of a model state."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return state[0][i : i + 1], state[1][i : i + 1]
    return state[i : i + 1]


def detach_state(state: State | None) -> State | None:
    """Cut the graph between TBPTT windows while keeping the values (the "stateful" in TBPTT)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


# ----- checkpoints written before the per-layer modules --------------------------------------------------
# They held one multi-layer module: their ``rnn.weight_ih_l1`` is ``layers.1.weight_ih_l0`` now. The
# parameters come in the same order, so an optimizer state saved then still lines up.
_OLD_KEY = re.compile(r"rnn\.((?:weight|bias)_(?:ih|hh))_l(\d+)$")


def upgrade_state_dict(state_dict: dict, prefix: str = "") -> None:
    """Rename old checkpoint keys in place (see ``_OLD_KEY``); keys already new are left alone."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        m = _OLD_KEY.fullmatch(key[len(prefix) :])
        if m:
            state_dict[f"{prefix}layers.{m.group(2)}.{m.group(1)}_l0"] = state_dict.pop(key)


def _upgrade_hook(module: nn.Module, state_dict: dict, prefix: str, *_) -> None:
    upgrade_state_dict(state_dict, prefix)
