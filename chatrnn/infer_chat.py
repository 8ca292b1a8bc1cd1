"""The chat model's inference API: load a checkpoint, answer a message. The CLI and the TUI use only this.

:meth:`Responder.stream` yields the reply's tokens as they are decided (greedy or sampling), each with
its attention over the prompt tokens; beam search decides the whole reply first and then yields
the best hypothesis. :meth:`Responder.reply` collects a stream into a :class:`Reply` (text, pieces,
attention matrix reply x prompt, n-best list).

The encoder runs once per reply and its attention keys are computed once (see ``Seq2Seq.encode``);
each token then costs one decoder step at batch 1 (batch ``beam`` for beam search). Every step
runs under ``torch.inference_mode`` entered per step, never across a ``yield``, so a stream may be
consumed from any thread and abandoned at any moment.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from chatrnn import checkpoint as ckpt
from chatrnn.checkpoint_schema import check_weights_fit
from chatrnn.decoding import ReplySettings
from chatrnn.errors import ChatrnnError
from chatrnn.infer import single_thread
from chatrnn.models.sampling import next_token_probs
from chatrnn.models.seq2seq import Encoded, Seq2Seq, Seq2SeqConfig
from chatrnn.subword import StreamDecoder, SubwordTokenizer

TOKENIZER_FILE = "tokenizer.model"
MAX_CHARS_PER_TOKEN = 32  # huge inputs are cut to this many characters per encoder token before tokenizing


@dataclass
class ReplyToken:
    text: str  # newly completed detokenized text (may be "")
    piece: str  # the sentencepiece piece, for display
    attention: list[float]  # this reply token's attention over the prompt tokens
    # (hidden,) the decoder's top-layer hidden state at the step that chose this token (the step whose
    # attention row this is: it has read every token before this one)
    state: np.ndarray | None = None


@dataclass
class Alternative:
    """One of beam search's n best replies: its text, its score (total log-probability divided by
    the length penalty: the number the search ranked it by), and its pieces and attention rows, so
    that picking it as the reply keeps its heatmap."""

    text: str
    score: float
    pieces: list[str]
    attention: list[list[float]]


@dataclass
class Reply:
    text: str
    pieces: list[str]
    prompt_pieces: list[str]
    attention: list[list[float]]  # reply x prompt
    nbest: list[tuple[str, float]] = field(
        default_factory=list
    )  # beam alternatives with scores, else [(text, logprob)]
    cancelled: bool = False
    encoder_states: np.ndarray | None = None  # (prompt tokens, hidden): the encoder's outputs (both directions)
    decoder_states: np.ndarray | None = None  # (reply tokens, hidden): ReplyToken.state, row by row


def banned_by_ngram(tokens: list[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram already in ``tokens`` (the "endless loop" guard)."""
    if n <= 0 or len(tokens) < n - 1:
        return set()
    if n == 1:
        return set(tokens)
    prefix = tuple(tokens[len(tokens) - n + 1 :])
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tuple(tokens[i : i + n - 1]) == prefix}


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + len) / 6) ** alpha: dividing by it keeps beam search from preferring short replies."""
    return ((5 + length) / 6) ** alpha


class Responder:
    """A loaded chat model with its tokenizer."""

    def __init__(
        self, model: Seq2Seq, tokenizer: SubwordTokenizer, config: dict | None = None, folder: Path | None = None
    ):
        self.model = model.eval()
        self.tok = tokenizer
        self.config = config or {}
        self.folder = folder
        self.device = next(model.parameters()).device
        self.context_turns = int(self.config.get("context_turns", 0))
        cfg = model.cfg
        self._never = [i for i in (cfg.pad_id, cfg.bos_id, cfg.sep_id, SubwordTokenizer.UNK) if i < cfg.vocab_size]

    @classmethod
    def load(cls, name: str | Path | None = None, device: str | torch.device = "cpu") -> Responder:
        folder = ckpt.resolve_checkpoint(name, "chat")
        cfg = ckpt.read_config(folder, "chat")  # schema-checked: types and ranges
        model_cfg = Seq2SeqConfig.from_dict(cfg["model"])
        check_weights_fit(folder / ckpt.BEST_WEIGHTS, lambda: Seq2Seq(model_cfg))  # before any allocation
        weights = ckpt.load_weights(folder)
        tok = SubwordTokenizer.load(folder / TOKENIZER_FILE)
        try:
            model = Seq2Seq(model_cfg)
            model.load_state_dict(weights)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ChatrnnError(
                f"{folder} does not hold a usable chat model ({e.__class__.__name__}: {str(e).splitlines()[0][:100]})"
            ) from None
        if tok.vocab_size != model.cfg.vocab_size:
            raise ChatrnnError(
                f"{folder}: tokenizer.model has {tok.vocab_size} pieces but "
                f"the model {model.cfg.vocab_size}; they do not belong together"
            )
        return cls(model.to(device), tok, cfg, folder)

    # ----- the prompt ---------------------------------------------------------------------
    def prompt_ids(
        self, message: str, history: list[str] | None = None, settings: ReplySettings | None = None
    ) -> list[int]:
        """Encoder ids: the last ``context_turns`` turns of ``history`` and ``message``, joined by
        SEP and cut from the left to the encoder's maximum length (so 100 KB of input is fine)."""
        settings = settings or ReplySettings()
        k = self.context_turns if settings.context_turns is None else settings.context_turns
        max_src = self.model.cfg.max_src_len
        limit = max_src * MAX_CHARS_PER_TOKEN
        turns = (list(history or [])[-k:] if k > 0 else []) + [message]
        turns = [t[-limit:] for t in turns]
        ids = self.tok.encode_context(turns, max_src)
        return ids or [self.tok.SEP]  # an empty prompt still needs one position to attend to

    def prompt_pieces(
        self, message: str, history: list[str] | None = None, settings: ReplySettings | None = None
    ) -> list[str]:
        return [self.tok.piece_text(i) for i in self.prompt_ids(message, history, settings)]

    def _encode(self, ids: list[int], copies: int = 1) -> Encoded:
        src = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            enc = self.model.encode(src, torch.tensor([len(ids)], dtype=torch.int64))
            if copies > 1:
                enc = Encoded(
                    *(
                        t.expand(copies, *t.shape[1:]).contiguous() if i < 3 else t.expand(-1, copies, -1).contiguous()
                        for i, t in enumerate(enc)
                    )
                )
        return enc

    def _mask(self, logits: torch.Tensor, tokens: list[int], settings: ReplySettings) -> torch.Tensor:
        """-inf for tokens never produced, EOS before ``min_len``, and n-gram repeats."""
        bad = list(self._never)
        if len(tokens) < settings.min_len:
            bad.append(self.model.cfg.eos_id)
        bad += banned_by_ngram(tokens, settings.no_repeat_ngram)
        logits[bad] = float("-inf")
        return logits

    # ----- streaming ------------------------------------------------------------------------
    def stream(
        self,
        message: str,
        history: list[str] | None = None,
        settings: ReplySettings | None = None,
        cancel: threading.Event | None = None,
        alternatives: list[Alternative] | None = None,
    ) -> Iterator[ReplyToken]:
        """The reply's tokens as they are decided; see the module docstring.

        ``alternatives``, when given, receives beam search's ``settings.nbest`` best replies (the
        first is the one streamed), before the first token: a caller that shows them does not
        have to decode twice. Sampling and greedy decoding leave it empty."""
        with single_thread(self.device.type == "cpu"):  # batch-1 steps: one thread is fastest
            yield from self._run(message, history, settings or ReplySettings(), cancel, None, alternatives)

    def reply(
        self,
        message: str,
        history: list[str] | None = None,
        settings: ReplySettings | None = None,
        cancel: threading.Event | None = None,
    ) -> Reply:
        settings = settings or ReplySettings()
        out = Reply("", [], [], [], [])
        texts: list[str] = []
        states: list[np.ndarray] = []
        with single_thread(self.device.type == "cpu"):
            for t in self._run(message, history, settings, cancel, out):
                texts.append(t.text)
                if t.piece or t.attention:
                    out.pieces.append(t.piece)
                    out.attention.append(t.attention)
                    if t.state is not None:
                        states.append(t.state)
        out.decoder_states = np.stack(states) if states else np.zeros((0, self.model.cfg.hidden), np.float32)
        out.text = "".join(texts).strip()
        if not out.nbest:
            out.nbest = [(out.text, 0.0)]
        return out

    def _run(
        self,
        message: str,
        history: list[str] | None,
        settings: ReplySettings,
        cancel: threading.Event | None,
        out: Reply | None,
        alternatives: list[Alternative] | None = None,
    ) -> Iterator[ReplyToken]:
        ids = self.prompt_ids(message, history, settings)
        if out is not None:
            out.prompt_pieces = [self.tok.piece_text(i) for i in ids]
        sink: dict[str, np.ndarray] = {}
        if settings.beam > 1:
            hyps = self._beam(ids, settings, cancel, sink)
            if hyps is None:  # cancelled
                if out is not None:
                    out.cancelled = True
                return
            if settings.rerank == "mmi":
                hyps = self._mmi(hyps, settings)
            if out is not None:
                out.nbest = [(self.tok.decode(t).strip(), s) for t, s, _ in hyps[: max(1, settings.nbest)]]
            if alternatives is not None:
                alternatives.extend(
                    Alternative(self.tok.decode(t).strip(), float(s), [self.tok.piece_text(i) for i in t], a)
                    for t, s, a in hyps[: max(1, settings.nbest)]
                )
            if out is not None:
                out.encoder_states = sink.get("encoder")
            tokens, _, attn = hyps[0]
            yield from self._emit(tokens, attn, self._replay_states(ids, tokens))
            return
        total, produced = 0.0, []
        dec = StreamDecoder(self.tok)
        for tok_id, logp, attn, state in self._sample(ids, settings, cancel, sink):
            if out is not None and out.encoder_states is None:
                out.encoder_states = sink.get("encoder")
            if tok_id is None:
                if out is not None:
                    out.cancelled = True
                break
            total += logp
            produced.append(tok_id)
            yield ReplyToken(dec.feed(tok_id), self.tok.piece_text(tok_id), attn, state)
        tail = dec.finish()
        if tail:
            yield ReplyToken(tail, "", [])
        if out is not None:
            out.nbest = [(self.tok.decode(produced).strip(), total)]

    def _emit(self, tokens: list[int], attn: list[list[float]], states: np.ndarray) -> Iterator[ReplyToken]:
        dec = StreamDecoder(self.tok)
        for t, a, st in zip(tokens, attn, states):
            yield ReplyToken(dec.feed(t), self.tok.piece_text(t), a, st)
        tail = dec.finish()
        if tail:
            yield ReplyToken(tail, "", [])

    def _replay_states(self, ids: list[int], tokens: list[int]) -> np.ndarray:
        """The decoder's top-layer hidden state at each of ``tokens`` (len(tokens), hidden), fed them in
        turn. Beam search keeps ``beam`` hypotheses whose histories split and die; rather than carry a
        state history for each, the winner is replayed: decoding is deterministic given the tokens, so
        these are the states the search saw (a few ms for a reply)."""
        model = self.model
        enc = self._encode(ids)
        rows = []
        with torch.inference_mode():
            hidden, feed = enc.hidden, model.initial_feed(enc)
            for tok in [model.cfg.bos_id] + tokens[:-1]:
                _, hidden, feed, _ = model.step(torch.tensor([tok], device=self.device), hidden, feed, enc, lean=True)
                rows.append(hidden[-1, 0].float().cpu().numpy().copy())  # not a view: see _sample
        return np.stack(rows) if rows else np.zeros((0, model.cfg.hidden), np.float32)

    def _sample(
        self, ids: list[int], settings: ReplySettings, cancel: threading.Event | None, sink: dict | None = None
    ):
        """Greedy (temperature 0) or sampled ids, one per step, with log-prob, attention row and the
        decoder's top-layer hidden state; ``(None, 0, [], None)`` when cancelled. ``sink["encoder"]``
        receives the encoder's outputs (prompt tokens, hidden)."""
        model, cfg = self.model, self.model.cfg
        gen = torch.Generator().manual_seed(settings.rng_seed) if settings.rng_seed is not None else None
        enc = self._encode(ids)
        if sink is not None:
            sink["encoder"] = enc.memory[0].float().cpu().numpy()
        with torch.inference_mode():
            hidden, feed = enc.hidden, model.initial_feed(enc)
            prev = torch.tensor([cfg.bos_id], device=self.device)
        tokens: list[int] = []
        for _ in range(settings.max_len):
            if cancel is not None and cancel.is_set():
                yield None, 0.0, [], None
                return
            with torch.inference_mode():
                logits, hidden, feed, weights = model.step(prev, hidden, feed, enc, lean=True)
                logits = self._mask(logits[0].float().cpu(), tokens, settings)
                if settings.temperature <= 0:
                    nxt = int(torch.argmax(logits))
                else:
                    probs = next_token_probs(logits, settings.temperature, settings.top_k, settings.top_p)
                    nxt = int(torch.multinomial(probs, 1, generator=gen))
                logp = float(torch.log_softmax(logits, -1)[nxt])
                if nxt == cfg.eos_id:
                    return
                row = weights[0].float().cpu().tolist()
                # A copy, not a view: a view keeps the step's whole hidden tensor alive per token,
                # and thousands of live tensors made each full GC pass in the TUI 50-75 ms.
                state = hidden[-1, 0].float().cpu().numpy().copy()
                prev = torch.tensor([nxt], device=self.device)
            tokens.append(nxt)
            yield nxt, logp, row, state

    def _mmi(self, hyps: list, settings: ReplySettings) -> list:
        """Beam hypotheses reranked by maximum mutual information (Li et al., 2016, MMI-antiLM):
        ``score - mmi_lambda * log p(reply) / length_penalty``, where ``score`` is the beam's own
        length-normalised log p(reply | prompt) and p(reply) is the same decoder reading no prompt
        (``Seq2Seq.null_encoded``: zero encoder memory, the bridge of zero states), scored
        teacher-forced with the reply's end token, normalised by the same GNMT penalty. Replies
        that are likely whatever the prompt ("I don't know") lose to ones this prompt makes
        likely. At ``mmi_lambda`` 0 the order is the beam's (a stable sort of unchanged scores)."""
        lam = settings.mmi_lambda
        if lam == 0 or len(hyps) < 2:
            return hyps
        model = self.model
        toks = [list(t) for t, _, _ in hyps]
        with torch.inference_mode():
            null = model.null_encoded(len(toks), self.device)
            lm = model.reply_logprobs(null, toks, [True] * len(toks))
        rescored = [
            (t, s - lam * p / length_penalty(len(t) + 1, settings.length_penalty), a) for (t, s, a), p in zip(hyps, lm)
        ]
        return sorted(rescored, key=lambda h: -h[1])

    def _beam(self, ids: list[int], settings: ReplySettings, cancel: threading.Event | None, sink: dict | None = None):
        """Beam search; hypotheses ``(tokens, normalised score, attention rows)`` best first, or None if cancelled.

        Finished hypotheses are scored by total log-prob / length penalty (GNMT); the search stops
        when ``beam`` hypotheses have finished or ``max_len`` is reached (live beams then count as
        finished, unterminated).
        """
        model, cfg, k = self.model, self.model.cfg, settings.beam
        enc = self._encode(ids, copies=k)
        if sink is not None:
            sink["encoder"] = enc.memory[0].float().cpu().numpy()
        with torch.inference_mode():
            hidden, feed = enc.hidden, model.initial_feed(enc)
            prev = torch.full((k,), cfg.bos_id, dtype=torch.long, device=self.device)
        scores = torch.full((k,), float("-inf"))
        scores[0] = 0.0  # all beams start identical: expand only the first
        seqs: list[list[int]] = [[] for _ in range(k)]
        attns: list[list[list[float]]] = [[] for _ in range(k)]
        finished: list[tuple[list[int], float, list[list[float]]]] = []
        for _ in range(settings.max_len):
            if cancel is not None and cancel.is_set():
                return None
            with torch.inference_mode():
                logits, hidden, feed, weights = model.step(prev, hidden, feed, enc, lean=True)
                logits = logits.float().cpu()
                for b in range(k):
                    self._mask(logits[b], seqs[b], settings)
                logp = torch.log_softmax(logits, -1)
                cand = (scores.unsqueeze(1) + logp).view(-1)
                top_s, top_i = torch.topk(cand, min(2 * k, cand.numel()))
                w = weights.float().cpu()
            V = logp.size(1)
            new_beams: list[tuple[int, int, float]] = []
            for s, i in zip(top_s.tolist(), top_i.tolist()):
                if s == float("-inf"):
                    break
                b, tok = divmod(i, V)
                if tok == cfg.eos_id:
                    finished.append((seqs[b], s / length_penalty(len(seqs[b]) + 1, settings.length_penalty), attns[b]))
                else:
                    new_beams.append((b, tok, s))
                if len(new_beams) == k:
                    break
            if len(finished) >= k or not new_beams:
                break
            while len(new_beams) < k:  # keep the batch shape; dead copies score -inf
                new_beams.append((new_beams[0][0], new_beams[0][1], float("-inf")))
            src_idx = torch.tensor([b for b, _, _ in new_beams])
            seqs = [seqs[b] + [tok] for b, tok, _ in new_beams]
            attns = [attns[b] + [w[b].tolist()] for b, _, _ in new_beams]
            scores = torch.tensor([s for _, _, s in new_beams])
            with torch.inference_mode():
                dev_idx = src_idx.to(self.device)
                hidden = hidden.index_select(1, dev_idx)
                feed = feed.index_select(0, dev_idx)
                prev = torch.tensor([tok for _, tok, _ in new_beams], device=self.device)
        if len(finished) < k:
            seen = set()
            for b in range(k):
                if scores[b] > float("-inf") and tuple(seqs[b]) not in seen:
                    seen.add(tuple(seqs[b]))
                    finished.append(
                        (seqs[b], float(scores[b]) / length_penalty(len(seqs[b]), settings.length_penalty), attns[b])
                    )
        if not finished:
            return [([], 0.0, [])]
        finished.sort(key=lambda h: -h[1])
        return finished
