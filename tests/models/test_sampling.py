import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from chatrnn.models.sampling import draw, next_token_probs, top_candidates

logit_lists = st.lists(st.floats(min_value=-20, max_value=20, allow_nan=False), min_size=1, max_size=40)


@given(
    logit_lists, st.floats(min_value=0.05, max_value=5), st.integers(0, 50), st.floats(min_value=0.01, max_value=1.0)
)
@settings(max_examples=200, deadline=None)
def test_filtered_distribution_is_valid(logits, temperature, top_k, top_p):
    lg = torch.tensor(logits)
    p = next_token_probs(lg, temperature, top_k, top_p)
    assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-4)
    assert float(p.min()) >= 0
    assert int(torch.argmax(p)) == int(torch.argmax(lg)) or float(p[torch.argmax(lg)]) == float(p.max())
    if top_k:
        assert int((p > 0).sum()) <= max(top_k, int((lg == lg.topk(min(top_k, len(logits))).values[-1]).sum()) + top_k)


@given(logit_lists, st.floats(min_value=0.01, max_value=0.99))
@settings(max_examples=200, deadline=None)
def test_top_p_keeps_a_nucleus_that_reaches_p(logits, top_p):
    lg = torch.tensor(logits)
    full = next_token_probs(lg, 1.0)
    kept = next_token_probs(lg, 1.0, top_p=top_p) > 0
    assert float(full[kept].sum()) >= top_p - 1e-5
    # every dropped token is no more likely than every kept one
    if (~kept).any():
        assert float(full[~kept].max()) <= float(full[kept].min()) + 1e-7


@given(logit_lists)
def test_temperature_zero_is_greedy(logits):
    lg = torch.tensor(logits)
    assert draw(next_token_probs(lg, temperature=0)) == int(torch.argmax(lg))


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=2, max_size=30), st.integers(0, 2**31))
def test_draw_never_picks_a_zero_probability_token(weights, seed):
    p = torch.tensor(weights)
    if float(p.sum()) == 0:
        p[0] = 1.0
    p = p / p.sum()
    i = draw(p, torch.Generator().manual_seed(seed))
    assert 0 <= i < len(weights) and float(p[i]) > 0


def test_draw_follows_the_distribution_and_is_repeatable():
    p = torch.tensor([0.1, 0.0, 0.6, 0.3])
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([draw(p, g) for _ in range(4000)]), minlength=4).float() / 4000
    assert torch.allclose(counts, p, atol=0.03)
    a = [draw(p, torch.Generator().manual_seed(5)) for _ in range(3)]
    assert a == [draw(p, torch.Generator().manual_seed(5)) for _ in range(3)]


def test_top_candidates_sorted():
    c = top_candidates(torch.tensor([0.1, 0.5, 0.4]), 2)
    assert [i for i, _ in c] == [1, 2] and c[0][1] >= c[1][1]
