"""Turning next-token logits into a choice: temperature, top-k, top-p (nucleus), greedy.

Shared by the char LM and the chat model so both treat the same settings the same way.
"""

from __future__ import annotations

import torch


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """The distribution actually sampled from (1-D ``logits``), after temperature and filtering.

    Temperature 0 means greedy: all the mass on the argmax. Filtering is applied after the
    temperature, as in HF transformers, so top-p keeps the nucleus of what will really be sampled.
    """
    logits = logits.float()
    if temperature <= 0:
        probs = torch.zeros_like(logits)
        probs[int(torch.argmax(logits))] = 1.0
        return probs
    logits = logits / temperature
    if top_k and 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if 0 < top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_p, 0) - sorted_p  # mass strictly before each token
        drop = before >= top_p
        drop[0] = False  # the most likely token always survives
        probs = probs.clone()
        probs[order[drop]] = 0.0
        probs = probs / probs.sum()
    return probs


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           generator: torch.Generator | None = None) -> int:
    """One token id drawn from :func:`next_token_probs`."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = next_token_probs(logits, temperature, top_k, top_p)
    return int(torch.multinomial(probs, 1, generator=generator))


def top_candidates(probs: torch.Tensor, k: int) -> list[tuple[int, float]]:
    """The ``k`` most likely ids with their probabilities (for the TUI's candidate view)."""
    k = min(k, probs.numel())
    values, ids = torch.topk(probs, k)
    return [(int(i), float(v)) for i, v in zip(ids, values)]
