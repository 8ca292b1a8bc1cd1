"""The fast paths: the same maths as the reference models in ``charlm.py`` and ``seq2seq.py``, written
for speed where a module call per step costs more than the arithmetic it does.

* :func:`rnn_fp32`: the guard that keeps a recurrence in float32 under autocast (both models).
* :class:`LeanStepper`: batch-1 sampling from an LSTM ``CharLM`` in a handful of kernels a character.
* :func:`gru_step` / :func:`decoder_step`: one decoder position of the chat model without ``nn.GRU``.

Each has a test that it matches the reference path to float tolerance (``tests/models/test_fast.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence

if TYPE_CHECKING:
    from chatrnn.models.charlm import CharLM
    from chatrnn.models.seq2seq import Decoder, Encoded

RNNState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def rnn_fp32(
    rnn: nn.RNNBase, x: torch.Tensor | PackedSequence, hx: RNNState | None = None
) -> tuple[torch.Tensor | PackedSequence, RNNState]:
    """``rnn(x, hx)``, with the recurrence kept in float32 when autocast is on.

    CUDA autocast runs cuDNN RNNs in float16 whatever dtype it was asked for (aten's AutocastRNN casts
    to kHalf) and this trainer does no loss scaling; cuDNN's float32 RNN uses TF32 tensor cores anyway.
    On a CPU without bf16 support oneDNN cannot build a bf16 LSTM at all. What comes after the
    recurrence (attention, the head) still runs under autocast.
    """
    data = x.data if isinstance(x, PackedSequence) else x
    if not torch.is_autocast_enabled(data.device.type):
        return rnn(x, hx)
    x = x.to(torch.float32) if isinstance(x, PackedSequence) else x.float()
    if hx is not None:
        hx = tuple(h.float() for h in hx) if isinstance(hx, tuple) else hx.float()
    with torch.autocast(data.device.type, enabled=False):
        return rnn(x, hx)


class LeanStepper:
    """Batch-1 inference for an LSTM ``CharLM`` with as few kernel launches as possible.

    Per character the work is three matrix-vector products (first layer's recurrent weights, each
    deeper layer's input+recurrent weights concatenated, the head) plus a handful of pointwise ops:
    the first layer's input projection is folded into a (V, 4H) table looked up by the character id.
    Same weights, same equations as ``CharLM.forward`` (see its module docstring; a test checks the
    logits agree). The gate pre-activations are PyTorch's 4H rows in its order i, f, g, o.
    """

    def __init__(self, model: CharLM):
        if model.cfg.cell != "lstm":
            raise ValueError("LeanStepper supports LSTM models")
        cfg = model.cfg
        H = cfg.hidden
        self.H, self.layers, self.skip = H, cfg.layers, cfg.skip
        with torch.no_grad():
            dev = model.head.weight.device
            first = model.layers[0]
            b0 = (first.bias_ih_l0 + first.bias_hh_l0).float()
            self.table0 = (model.embedding.weight.float() @ first.weight_ih_l0.float().t() + b0).contiguous()  # (V, 4H)
            self.w_hh0 = first.weight_hh_l0.float().contiguous()  # (4H, H)
            self.w_cat: list[torch.Tensor] = []  # layer l >= 1: [W_ih | W_hh], (4H, 2H)
            self.b: list[torch.Tensor] = []
            for rnn in model.layers[1:]:
                self.w_cat.append(torch.cat([rnn.weight_ih_l0.float(), rnn.weight_hh_l0.float()], dim=1).contiguous())
                self.b.append((rnn.bias_ih_l0 + rnn.bias_hh_l0).float())
            if model.proj is not None:
                self.proj_w, self.proj_b = model.proj.weight.float().contiguous(), model.proj.bias.float()
            else:
                self.proj_w = self.proj_b = None
            self.head_w, self.head_b = model.head.weight.float().contiguous(), model.head.bias.float()
        # hs = [h_0 | h_1 | ... ]: layer l >= 1 reads [h_{l-1} (this step) ; h_l (last step)], which
        # is the contiguous slice hs[(l-1)H:(l+1)H], so no concatenation or copy is needed per step;
        # with skip connections the head reads all of hs.
        self.hs = torch.zeros(cfg.layers * H, device=dev)
        self.c = [torch.zeros(H, device=dev) for _ in range(cfg.layers)]
        self.gates = torch.empty(4 * H, device=dev)
        self.sig = torch.empty(4 * H, device=dev)
        self.tg = torch.empty(H, device=dev)
        self.tc = torch.empty(H, device=dev)
        self.logits = torch.empty(cfg.vocab_size, device=dev)
        # PyTorch's gate order in the 4H rows: input, forget, cell candidate, output.
        self.i, self.f, self.g, self.o = (slice(k * H, (k + 1) * H) for k in range(4))

    def reset(self) -> None:
        self.hs.zero_()
        for t in self.c:
            t.zero_()

    @torch.inference_mode()
    def step(self, token: int) -> torch.Tensor:
        """Feed one id; returns the next-token logits (a buffer reused by the next call)."""
        H, pre, sig, hs = self.H, self.gates, self.sig, self.hs
        i, f, g, o = self.i, self.f, self.g, self.o
        for layer in range(self.layers):
            if layer == 0:  # W_ih x + b is the table row; add W_hh h_{t-1}
                torch.addmv(self.table0[token], self.w_hh0, hs[:H], out=pre)
            else:  # [W_ih | W_hh] [h_{l-1}; h_l] + b
                torch.addmv(self.b[layer - 1], self.w_cat[layer - 1], hs[(layer - 1) * H : (layer + 1) * H], out=pre)
            torch.sigmoid(pre, out=sig)  # σ of all four; only i, f and o are used
            torch.tanh(pre[g], out=self.tg)  # g = tanh(...)
            c = self.c[layer]
            c.mul_(sig[f]).addcmul_(sig[i], self.tg)  # c = f ⊙ c + i ⊙ g
            torch.tanh(c, out=self.tc)
            torch.mul(sig[o], self.tc, out=hs[layer * H : (layer + 1) * H])  # h = o ⊙ tanh(c)
        top = hs if self.skip else hs[(self.layers - 1) * H :]
        if self.proj_w is not None:
            top = torch.addmv(self.proj_b, self.proj_w, top)
        torch.addmv(self.head_b, self.head_w, top, out=self.logits)
        return self.logits


def gru_step(layers: nn.ModuleList, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """One time step of stacked single-layer, unidirectional ``nn.GRU`` modules (eval mode: no
    dropout between layers), the GRU equations of ``seq2seq.py`` written out on their weights:
    at batch 1 on a CPU a one-step ``nn.GRU`` call costs ~1 ms of overhead, the maths ~50 us.
    ``x`` (B, in), ``hidden`` (L, B, H); returns the new hidden state (L, B, H)."""
    out = []
    for layer, cell in enumerate(layers):
        h = hidden[layer]  # (B, H)
        gi = F.linear(x, cell.weight_ih_l0, cell.bias_ih_l0)  # (B, 3H), PyTorch's order r, z, n
        gh = F.linear(h, cell.weight_hh_l0, cell.bias_hh_l0)
        i_r, i_z, i_n = gi.chunk(3, 1)
        h_r, h_z, h_n = gh.chunk(3, 1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        x = n + z * (h - n)  # = (1 - z) ⊙ n + z ⊙ h
        out.append(x)
    return torch.stack(out)


def decoder_step(
    decoder: Decoder, tokens: torch.Tensor, hidden: torch.Tensor, feed: torch.Tensor, enc: Encoded
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``Decoder.forward`` for one position (``tokens`` (B,)) through :func:`gru_step`: attentional
    state (B, H), new hidden (L, B, H), attention weights (B, S). Inference only."""
    x = decoder.drop(decoder.embedding(tokens))  # (B, E)
    if decoder.cfg.input_feeding:
        x = torch.cat([x, feed], dim=-1)  # (B, E + H)
    hidden = gru_step(decoder.rnn.layers, x, hidden)
    attn_h, weights = decoder.attend(hidden[-1], enc)
    return attn_h, hidden, weights
