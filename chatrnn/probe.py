"""Look inside the char LM: hidden state, cell state and gate activations per character and layer.

The contract (what the TUI, ``neurons.py`` and the benchmarks rely on)::

    Trace                       one text run through the char LM; float32 numpy arrays
      .text: str                the characters that were run (unknown ones dropped), len T
      .cell: str                "lstm" | "gru" | "rnn"
      .h: (layers, T, hidden)   hidden state after reading each character
      .c: (layers, T, hidden)   LSTM cell state after each character; None for GRU / RNN
      .gates: dict              LSTM "i", "f", "g", "o"; GRU "r", "z", "n"; RNN none; each (layers, T, hidden)
      .logits: (T, vocab)       the model's output after each character (predicts character t + 1)
      .saturation: dict         gate -> (layers, hidden, 2), see below
      .layers / .hidden / len(trace) / .states() -> {"h": ..., "c": ...}

    trace_text(model, vocab, text, state=None, keep_gates=True) -> Trace   the whole text (seconds for 100k chars)
    trace_ids(model, ids, state=None, text="", keep_gates=True) -> Trace   the same on ids
    ProbeStepper(model, state=None)                          batch-1 streaming, one character a call
      .step(char_id) -> (logits (vocab,), {"h": (layers, hidden), "c": ..., "i": ..., ...})  numpy copies
      .step_tensor(char_id) -> logits buffer; .snapshot() -> that dict; .reset()
    probe_keys(cell) -> tuple of the dict keys ProbeStepper.step returns for that cell

    infer.Generator.stream(..., probe=True)  each GenToken.probe is that dict for the state AFTER the
                                             token's character was read (None when probe=False)
    infer.Generator.trace(text) -> Trace
    infer_chat.Reply.encoder_states (src_len, hidden) / .decoder_states (reply_len, hidden), numpy
    infer_chat.ReplyToken.state (hidden,) the decoder's top-layer hidden state at the step that chose
                                the token (the step whose attention row it carries); beam search too
    Trace.saturation[gate] (layers, hidden, 2) fraction of time each unit is < 0.1 / > 0.9 (tanh: ±0.9);
                           trace_text(..., keep_gates=False) keeps only this (no (L, T, H) gate arrays)

All values are the model's own float32. The gates come from the reference equations (PyTorch's gate
order and formulas, on the modules' own weights; see ``models/charlm.py``'s docstring for the LSTM
and ``models/seq2seq.py`` for the GRU): ``nn.LSTM`` exposes no gates. ``tests/test_probe.py``
checks that they give back the modules' h and c and ``CharLM.forward``'s logits to 1e-5.

Why two paths: streaming needs one character at a time at batch 1, as cheap as ``fast.LeanStepper``
(the gates are the same matrix-vector products, kept instead of thrown away: ``ProbeStepper`` runs
the whole recurrence on the equations); a whole file lets each layer module run the sequence in its
own fast loop, after which every step's gates are two (T, G*H) matrix products and only the cell
state loops (see :func:`trace_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from chatrnn.models.fast import rnn_fp32

if TYPE_CHECKING:
    from chatrnn.charvocab import CharVocab
    from chatrnn.models.charlm import CharLM, State

GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ()}
GATE_NAMES = {
    "i": "input gate",
    "f": "forget gate",
    "g": "cell candidate",
    "o": "output gate",
    "r": "reset gate",
    "z": "update gate",
    "n": "new-state candidate",
}


def probe_keys(cell: str) -> tuple[str, ...]:
    """The keys of a probe dict for ``cell``: the states, then the gates in PyTorch's order."""
    return ("h", "c", *GATES[cell]) if cell == "lstm" else ("h", *GATES[cell])


@dataclass
class Trace:
    """One text run through the char LM (see the module docstring for the shapes)."""

    text: str
    cell: str
    h: np.ndarray
    c: np.ndarray | None
    gates: dict[str, np.ndarray] = field(default_factory=dict)
    logits: np.ndarray | None = None
    # gate -> (layers, hidden, 2): fraction of time each unit is left / right saturated (see ``saturation``)
    saturation: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def layers(self) -> int:
        return int(self.h.shape[0])

    @property
    def hidden(self) -> int:
        return int(self.h.shape[2])

    def __len__(self) -> int:
        return int(self.h.shape[1])

    def states(self) -> dict[str, np.ndarray]:
        """The state arrays a unit can be read from: "h", and "c" for an LSTM."""
        return {"h": self.h} if self.c is None else {"h": self.h, "c": self.c}


class _Weights:
    """One layer's weights in float32 on the model's device, with the biases folded where the
    equations allow (every LSTM / RNN bias; a GRU keeps b_hn apart, it sits inside r ⊙ (...))."""

    def __init__(self, rnn: torch.nn.RNNBase, cell: str):
        H = rnn.hidden_size
        self.w_ih = rnn.weight_ih_l0.detach().float()
        self.w_hh = rnn.weight_hh_l0.detach().float().contiguous()
        b_ih, b_hh = rnn.bias_ih_l0.detach().float(), rnn.bias_hh_l0.detach().float()
        if cell == "gru":
            # r and z take both biases; n takes b_in outside and b_hn inside the reset gate.
            self.b_x = b_ih + torch.cat([b_hh[: 2 * H], torch.zeros_like(b_hh[2 * H :])])
            self.b_h = torch.cat([torch.zeros_like(b_hh[: 2 * H]), b_hh[2 * H :]])
        else:
            self.b_x = b_ih + b_hh
            self.b_h = None
        self.relu = cell == "rnn" and getattr(rnn, "nonlinearity", "tanh") == "relu"


def _initial(model: CharLM, state: State | None) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Per-layer (H,) start states from a model state ((L, 1, H), or (h, c) for an LSTM)."""
    L, H = model.cfg.layers, model.cfg.hidden
    dev = model.head.weight.device
    lstm = model.cfg.cell == "lstm"
    if state is None:
        hs = [torch.zeros(H, device=dev) for _ in range(L)]
        return hs, ([torch.zeros(H, device=dev) for _ in range(L)] if lstm else None)
    if isinstance(state, tuple):
        h0, c0 = state
        return _rows(h0, L, H), _rows(c0, L, H)
    return _rows(state, L, H), None


def _rows(t: torch.Tensor, L: int, H: int) -> list[torch.Tensor]:
    return [t[i].reshape(H).float().clone() for i in range(L)]


def _head(model: CharLM, top: torch.Tensor) -> torch.Tensor:
    """The head's logits for what it reads (top layer, or every layer with skip connections)."""
    if model.proj is not None:
        top = torch.nn.functional.linear(top, model.proj.weight.float(), model.proj.bias.float())
    return torch.nn.functional.linear(top, model.head.weight.float(), model.head.bias.float())


SIGMOID_GATES = ("i", "f", "o", "r", "z")  # in (0, 1); "g" and "n" are tanh, in (-1, 1)
SATURATED = 0.1  # a sigmoid gate below 0.1 or above 0.9 is "saturated" (Karpathy et al., 2015); tanh: beyond ±0.9


def saturation(values: np.ndarray, name: str) -> np.ndarray:
    """Per unit, the fraction of time a gate is left / right saturated: (layers, hidden, 2) from
    (layers, T, hidden). Sigmoid gates: < 0.1 and > 0.9; tanh candidates: < -0.9 and > 0.9."""
    lo, hi = (SATURATED, 1 - SATURATED) if name in SIGMOID_GATES else (-(1 - SATURATED), 1 - SATURATED)
    T = max(1, values.shape[1])
    return np.stack([(values < lo).sum(1) / T, (values > hi).sum(1) / T], axis=-1).astype(np.float32)


@torch.inference_mode()
def trace_ids(
    model: CharLM, ids: list[int] | np.ndarray, state: State | None = None, text: str = "", keep_gates: bool = True
) -> Trace:
    """:func:`trace_text` on ids.

    Per layer, the module itself runs the whole sequence (h for every step, in its own fast loop),
    then the gates are the reference equations evaluated at every step at once: the input
    projection W_ih x_t and the recurrent one W_hh h_{t-1} are two (T, G*H) matrix products, since
    every h_{t-1} is known. Only the LSTM cell state needs a loop (c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t,
    two vector operations a step). Nothing is fed back from the gates, so float error cannot
    accumulate, and ``h = o ⊙ tanh(c)`` (GRU: ``(1 - z) ⊙ n + z ⊙ h_{t-1}``) reproducing the module's
    h is the test that the gates are the model's own. ``keep_gates=False`` keeps only each gate's
    :func:`saturation` (a 100k-character file's gates take about 1 GB otherwise).
    """
    cfg = model.cfg
    cell, L, H = cfg.cell, cfg.layers, cfg.hidden
    dev = model.head.weight.device
    T = len(ids)
    names = GATES[cell]
    h_out = np.empty((L, T, H), np.float32)
    c_out = np.empty((L, T, H), np.float32) if cell == "lstm" else None
    gates: dict[str, np.ndarray] = {}
    sat: dict[str, np.ndarray] = {}
    if keep_gates:
        gates = {n: np.empty((L, T, H), np.float32) for n in names}
    else:
        sat = {n: np.empty((L, H, 2), np.float32) for n in names}
    hs, cs = _initial(model, state)
    if cell == "lstm":  # (T, L, H): every layer's cell recurrence runs in the same loop below
        f_all, ig_all = np.empty((T, L, H), np.float32), np.empty((T, L, H), np.float32)
    x = model.embedding.weight.detach().float()[torch.as_tensor(np.asarray(ids, dtype=np.int64), device=dev)]
    tops = []
    for layer, rnn in enumerate(model.layers):
        w = _Weights(rnn, cell)
        h0 = hs[layer]
        hx = (h0.view(1, 1, H), cs[layer].view(1, 1, H)) if cell == "lstm" else h0.view(1, 1, H)  # type: ignore[index]
        if T == 0:
            break
        out, _ = rnn_fp32(rnn, x.unsqueeze(0), hx)
        h_seq = out[0]  # (T, H): the module's own hidden states
        tops.append(h_seq)
        h_out[layer] = h_seq.cpu().numpy()
        if names:
            h_prev = torch.cat([h0.view(1, H), h_seq[:-1]])  # (T, H): h_{t-1}
            xp = torch.addmm(w.b_x, x, w.w_ih.t())  # (T, G*H): every input projection in one product
            if cell == "lstm":
                pre = xp.addmm_(h_prev, w.w_hh.t())
                pre[:, : 2 * H].sigmoid_()
                pre[:, 2 * H : 3 * H].tanh_()
                pre[:, 3 * H :].sigmoid_()
                g_np = pre.cpu().numpy()
                f_all[:, layer] = g_np[:, H : 2 * H]
                np.multiply(g_np[:, :H], g_np[:, 2 * H : 3 * H], out=ig_all[:, layer])  # i ⊙ g
                blocks = g_np
            else:  # GRU: r, z from both projections; n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
                gh = torch.addmm(w.b_h, h_prev, w.w_hh.t())
                xp[:, : 2 * H].add_(gh[:, : 2 * H]).sigmoid_()
                xp[:, 2 * H :].addcmul_(xp[:, :H], gh[:, 2 * H :]).tanh_()
                blocks = xp.cpu().numpy()
            for k, name in enumerate(names):
                block = blocks[:, k * H : (k + 1) * H]
                if keep_gates:
                    gates[name][layer] = block
                else:
                    sat[name][layer] = saturation(block[None], name)[0]
        x = h_seq
    if cell == "lstm" and T:
        c_tl = np.empty((T, L, H), np.float32)
        c_prev = np.stack([c.cpu().numpy() for c in cs])  # type: ignore[union-attr]
        np.multiply(f_all[0], c_prev, out=c_tl[0])
        c_tl[0] += ig_all[0]
        for t in range(1, T):  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t, all layers at once
            np.multiply(f_all[t], c_tl[t - 1], out=c_tl[t])
            c_tl[t] += ig_all[t]
        del f_all, ig_all
        c_out[:] = c_tl.transpose(1, 0, 2)  # type: ignore[index]
        del c_tl
    if T == 0:
        logits = np.zeros((0, cfg.vocab_size), np.float32)
    else:
        top = torch.cat(tops, dim=-1) if cfg.skip else tops[-1]
        logits = _head(model, top).cpu().numpy()
    tr = Trace(text=text, cell=cell, h=h_out, c=c_out, gates=gates, logits=logits)
    tr.saturation = sat if not keep_gates else {n: saturation(v, n) for n, v in gates.items()}
    return tr


def trace_text(
    model: CharLM, vocab: CharVocab, text: str, state: State | None = None, keep_gates: bool = True
) -> Trace:
    """Run ``text`` through ``model`` and keep every state and gate (see the module docstring).

    Characters outside the vocabulary are dropped (``Trace.text`` is what was run), as in
    ``Generator.stream``'s seed. ``state`` is a model state to start from (default zeros).
    """
    ids, _ = vocab.split_known(text)
    known = "".join(vocab.chars[i] for i in ids)
    return trace_ids(model, ids, state, known, keep_gates)


class ProbeStepper:
    """Batch-1 streaming with the probe on: ``fast.LeanStepper``'s maths for every cell type, with
    the states and gates kept in buffers and handed out as numpy copies each step.

    The first layer's input projection is a (V, G*H) table looked up by the character id; each
    layer then costs one matrix-vector product (two for deeper layers: input and recurrent), and
    the gates are the activations of those products: nothing is computed twice.
    """

    def __init__(self, model: CharLM, state: State | None = None):
        cfg = model.cfg
        self.model, self.cell, self.L, self.H, self.skip = model, cfg.cell, cfg.layers, cfg.hidden, cfg.skip
        self.names = GATES[cfg.cell]
        self.G = {"lstm": 4, "gru": 3, "rnn": 1}[cfg.cell]
        dev = model.head.weight.device
        with torch.no_grad():
            self.w = [_Weights(rnn, cfg.cell) for rnn in model.layers]
            emb = model.embedding.weight.detach().float()
            self.table0 = torch.addmm(self.w[0].b_x, emb, self.w[0].w_ih.t()).contiguous()  # (V, G*H)
            self.w_ih = [w.w_ih.contiguous() for w in self.w]
            # LSTM / RNN layers >= 1: [W_ih | W_hh] against [h_{l-1}; h_l], which is the contiguous
            # slice hs[l-1:l+1] (LeanStepper's trick): one product a layer. A GRU's n gate needs
            # W_hn h apart, so it keeps two.
            cat = cfg.cell != "gru"
            self.w_cat = [None] + [torch.cat([w.w_ih, w.w_hh], dim=1).contiguous() if cat else None for w in self.w[1:]]
            if model.proj is not None:
                self.proj_w, self.proj_b = model.proj.weight.detach().float(), model.proj.bias.detach().float()
            else:
                self.proj_w = self.proj_b = None
            self.head_w, self.head_b = model.head.weight.detach().float(), model.head.bias.detach().float()
        L, H, G = self.L, self.H, self.G
        self.hs = torch.zeros(L, H, device=dev)  # contiguous: with skip connections the head reads all of it
        self.c = torch.zeros(L, H, device=dev) if self.cell == "lstm" else None
        self.gates = torch.zeros(L, G, H, device=dev)
        self.xp = torch.empty(G * H, device=dev)
        self.hh = torch.empty(G * H, device=dev)
        self.tc = torch.empty(H, device=dev)
        self.logits = torch.empty(cfg.vocab_size, device=dev)
        self._start = state
        self.reset()

    def reset(self) -> None:
        hs, cs = _initial(self.model, self._start)
        for i in range(self.L):
            self.hs[i].copy_(hs[i])
            if self.c is not None:
                self.c[i].copy_(cs[i])  # type: ignore[index]

    @torch.inference_mode()
    def step_tensor(self, char_id: int) -> torch.Tensor:
        """Feed one id; the next-character logits (a buffer reused by the next call). The states and
        gates are left in ``hs``, ``c`` and ``gates``."""
        H = self.H
        for layer in range(self.L):
            w, h = self.w[layer], self.hs[layer]
            g = self.gates[layer].view(-1)
            if self.cell != "gru":  # the pre-activations, into the gate buffer
                if layer == 0:
                    torch.addmv(self.table0[char_id], w.w_hh, h, out=g)
                else:
                    torch.addmv(w.b_x, self.w_cat[layer], self.hs[layer - 1 : layer + 1].view(-1), out=g)
            if self.cell == "lstm":
                g[: 2 * H].sigmoid_()
                g[2 * H : 3 * H].tanh_()
                g[3 * H :].sigmoid_()
                c = self.c[layer]  # type: ignore[index]
                c.mul_(g[H : 2 * H]).addcmul_(g[:H], g[2 * H : 3 * H])
                torch.tanh(c, out=self.tc)
                torch.mul(g[3 * H :], self.tc, out=h)
            elif self.cell == "gru":
                if layer == 0:
                    xp = self.table0[char_id]
                else:
                    xp = torch.addmv(w.b_x, self.w_ih[layer], self.hs[layer - 1], out=self.xp)
                torch.addmv(w.b_h, w.w_hh, h, out=self.hh)
                torch.add(xp[: 2 * H], self.hh[: 2 * H], out=g[: 2 * H]).sigmoid_()
                torch.addcmul(xp[2 * H :], g[:H], self.hh[2 * H :], out=g[2 * H :]).tanh_()
                n = g[2 * H :]
                torch.sub(h, n, out=self.tc)
                torch.addcmul(n, g[H : 2 * H], self.tc, out=h)
            else:
                g.relu_() if w.relu else g.tanh_()
                h.copy_(g)
        top = self.hs.view(-1) if self.skip else self.hs[self.L - 1]
        if self.proj_w is not None:
            top = torch.addmv(self.proj_b, self.proj_w, top)
        torch.addmv(self.head_b, self.head_w, top, out=self.logits)
        return self.logits

    def snapshot(self) -> dict[str, np.ndarray]:
        """The current states and gates as numpy copies, (layers, hidden) each."""
        out = {"h": self.hs.numpy().copy()} if self.hs.device.type == "cpu" else {"h": self.hs.cpu().numpy()}
        if self.c is not None:
            out["c"] = self.c.cpu().numpy().copy()
        if self.names:
            g = self.gates.cpu().numpy()
            for k, name in enumerate(self.names):
                out[name] = g[:, k].copy()
        return out

    def step(self, char_id: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Feed one id: the logits (vocab,) and the probe dict (see :func:`probe_keys`), both copies."""
        logits = self.step_tensor(char_id)
        return logits.cpu().numpy().copy(), self.snapshot()
