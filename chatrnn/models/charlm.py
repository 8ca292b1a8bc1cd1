"""The character-level recurrent language model: embedding -> N-layer LSTM/GRU/RNN -> linear head.

Read top to bottom like nanoGPT's model.py: the config, the module, and a lean single-step path for
sampling at batch 1 (where calling ``nn.LSTM`` once per character is dominated by overhead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from chatrnn.config import JsonConfig

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


State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class CharLM(nn.Module):
    def __init__(self, cfg: CharLMConfig):
        super().__init__()
        if cfg.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}")
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed)
        self.rnn = CELLS[cfg.cell](
            cfg.embed,
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        top = cfg.hidden * cfg.layers if cfg.skip else cfg.hidden  # what the head reads
        # Tying needs the head's input to have the embedding's width: project down when they differ.
        self.proj = nn.Linear(top, cfg.embed) if cfg.tie_weights and top != cfg.embed else None
        self.head = nn.Linear(cfg.embed if cfg.tie_weights else top, cfg.vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        """Orthogonal recurrent weights keep gradients alive through long unrolls; an LSTM forget
        gate biased to 1 starts by remembering (Jozefowicz et al., 2015)."""
        H = self.cfg.hidden
        for name, p in self.rnn.named_parameters():
            if name.startswith("weight_hh"):
                for block in p.data.split(H, dim=0):
                    nn.init.orthogonal_(block)
            elif name.startswith("weight_ih"):
                nn.init.xavier_uniform_(p.data)
            elif name.startswith("bias"):
                nn.init.zeros_(p.data)
                if self.cfg.cell == "lstm" and name.startswith("bias_ih"):
                    p.data[H : 2 * H] = 1.0
        if self.cfg.tie_weights:
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)

    def forward(
        self, x: torch.Tensor, state: State | None = None, masks: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, State]:
        """Logits (B, T, V) for ids ``x`` (B, T), and the state after the last step.

        ``masks`` (from :meth:`dropout_masks`) replaces the dropout that would draw from torch's
        global generator: the CPU trainer's threads each run a slice of one batch at the same time,
        and masks drawn per thread from their own generators keep such runs repeatable without making
        the threads take turns.
        """
        emb = self.embedding(x)
        if torch.is_autocast_enabled(emb.device.type):
            # Keep the recurrence in float32 under autocast (the head still runs in bf16): CUDA autocast
            # runs cuDNN RNNs in float16 whatever its dtype (aten's AutocastRNN casts to kHalf) and this
            # trainer does no loss scaling; cuDNN's float32 RNN uses TF32 tensor cores anyway. On a CPU
            # without bf16 support oneDNN cannot build a bf16 LSTM at all.
            with torch.autocast(emb.device.type, enabled=False):
                out, state = self._recur(emb.float(), state, masks)
        else:
            out, state = self._recur(emb, state, masks)
        if self.proj is not None:
            out = self.proj(out)
        return self.head(out), state

    def _recur(self, emb: torch.Tensor, state: State | None, masks: list[torch.Tensor] | None):
        """The recurrent core plus dropout: what the head reads, and the new state."""
        if masks is None and not self.cfg.skip:  # all layers in one call (one cuDNN kernel on a GPU)
            out, state = self.rnn(emb, state)
            return self.drop(out), state
        # Layer by layer, through the functions nn.LSTM itself calls, so that each layer's output
        # can be masked and, with skip connections, kept.
        rnn, L, lstm = self.rnn, self.cfg.layers, self.cfg.cell == "lstm"
        fn = {"lstm": torch.lstm, "gru": torch.gru, "rnn": torch.rnn_tanh}[self.cfg.cell]
        if state is None:
            state = self.init_state(emb.shape[0], emb.device)
        out, outs, hs, cs = emb, [], [], []
        for layer in range(L):
            hx = (state[0][layer : layer + 1], state[1][layer : layer + 1]) if lstm else state[layer : layer + 1]
            out, *st = fn(out, hx, rnn.all_weights[layer], rnn.bias, 1, 0.0, self.training, False, True)
            out = out * masks[layer] if masks is not None else self.drop(out)
            outs.append(out)
            hs.append(st[0])
            if lstm:
                cs.append(st[1])
        new_state: State = (torch.cat(hs), torch.cat(cs)) if lstm else torch.cat(hs)
        return (torch.cat(outs, dim=-1) if self.cfg.skip else out), new_state

    def dropout_masks(
        self, batch: int, seq_len: int, generator: torch.Generator | None = None
    ) -> list[torch.Tensor] | None:
        """One scaled keep-mask (B, T, H) per layer output, the last one for the output dropout: the
        same places ``nn.Dropout`` and the RNN's inter-layer dropout would apply. None when the model
        would drop nothing (evaluation, or no dropout)."""
        p = self.cfg.dropout
        if not self.training or p <= 0:
            return None
        dev = self.embedding.weight.device
        shape = (batch, seq_len, self.cfg.hidden)
        return [
            torch.empty(shape, device=dev).bernoulli_(1 - p, generator=generator).div_(1 - p)
            for _ in range(self.cfg.layers)
        ]

    def loss(self, x: torch.Tensor, y: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        logits, state = self(x, state)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1)), state

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        z = torch.zeros(self.cfg.layers, batch, self.cfg.hidden, device=device)
        return (z, z.clone()) if self.cfg.cell == "lstm" else z

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())


def detach_state(state: State | None) -> State | None:
    """Cut the graph between TBPTT windows while keeping the values (the "stateful" in TBPTT)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


class LeanStepper:
    """Batch-1 inference for an LSTM ``CharLM`` with as few kernel launches as possible.

    Per character the work is three matrix-vector products (first layer's recurrent weights, each
    deeper layer's input+recurrent weights concatenated, the head) plus a handful of pointwise ops:
    the first layer's input projection is folded into a (V, 4H) table looked up by the character id.
    Same weights, same maths as ``CharLM.forward`` (a test checks the logits agree).
    """

    def __init__(self, model: CharLM):
        if model.cfg.cell != "lstm":
            raise ValueError("LeanStepper supports LSTM models")
        cfg = model.cfg
        H = cfg.hidden
        self.H, self.layers, self.skip = H, cfg.layers, cfg.skip
        with torch.no_grad():
            rnn = model.rnn
            dev = model.head.weight.device
            w_ih0, w_hh0 = rnn.weight_ih_l0.float(), rnn.weight_hh_l0.float()
            b0 = (rnn.bias_ih_l0 + rnn.bias_hh_l0).float()
            self.table0 = (model.embedding.weight.float() @ w_ih0.t() + b0).contiguous()
            self.w_hh0 = w_hh0.contiguous()
            self.w_cat = []
            self.b = []
            for layer in range(1, cfg.layers):
                w_ih = getattr(rnn, f"weight_ih_l{layer}").float()
                w_hh = getattr(rnn, f"weight_hh_l{layer}").float()
                self.w_cat.append(torch.cat([w_ih, w_hh], dim=1).contiguous())
                self.b.append((getattr(rnn, f"bias_ih_l{layer}") + getattr(rnn, f"bias_hh_l{layer}")).float())
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

    def reset(self) -> None:
        self.hs.zero_()
        for t in self.c:
            t.zero_()

    @torch.inference_mode()
    def step(self, token: int) -> torch.Tensor:
        """Feed one id; returns the next-token logits (a buffer reused by the next call)."""
        H, g, sig, hs = self.H, self.gates, self.sig, self.hs
        for layer in range(self.layers):
            if layer == 0:
                torch.addmv(self.table0[token], self.w_hh0, hs[:H], out=g)
            else:
                torch.addmv(self.b[layer - 1], self.w_cat[layer - 1], hs[(layer - 1) * H : (layer + 1) * H], out=g)
            torch.sigmoid(g, out=sig)
            torch.tanh(g[2 * H : 3 * H], out=self.tg)
            c = self.c[layer]
            c.mul_(sig[H : 2 * H]).addcmul_(sig[:H], self.tg)
            torch.tanh(c, out=self.tc)
            torch.mul(sig[3 * H :], self.tc, out=hs[layer * H : (layer + 1) * H])
        top = hs if self.skip else hs[(self.layers - 1) * H :]
        if self.proj_w is not None:
            top = torch.addmv(self.proj_b, self.proj_w, top)
        torch.addmv(self.head_b, self.head_w, top, out=self.logits)
        return self.logits
