"""Turning next-token logits into a choice: temperature, top-k, top-p (nucleus), greedy.

Shared by the char LM and the chat model so both treat the same settings the same way.
"""

from __future__ import annotations

import torch


def next_token_probs(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
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
        # keep the smallest set of most likely tokens whose mass reaches top_p: find the probability
        # of the last token kept and mask below it (no boolean indexing: this runs per character)
        sorted_p = torch.sort(probs, descending=True).values
        before = torch.cumsum(sorted_p, 0) - sorted_p  # mass strictly before each token
        keep = int((before < top_p).sum().item())
        threshold = sorted_p[max(keep, 1) - 1]
        probs = probs.masked_fill(probs < threshold, 0.0)
        probs = probs / probs.sum()
    return probs


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> int:
    """Inverse-CDF sampling: one uniform draw and a binary search, several times cheaper than
    ``torch.multinomial`` at batch 1. Tokens of zero probability are never drawn."""
    cdf = torch.cumsum(probs, 0)
    u = torch.rand(1, generator=generator, dtype=cdf.dtype) * cdf[-1]
    return min(int(torch.searchsorted(cdf, u, right=True).item()), probs.numel() - 1)


def top_candidates(probs: torch.Tensor, k: int) -> list[tuple[int, float]]:
    """The ``k`` most likely ids with their probabilities (for the TUI's candidate view)."""
    k = min(k, probs.numel())
    values, ids = torch.topk(probs, k)
    return [(int(i), float(v)) for i, v in zip(ids, values)]
