import pytest
import torch

from chatrnn.models.charlm import CharLM, CharLMConfig, LeanStepper


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forward_shapes_and_state_for_each_cell(cell):
    torch.manual_seed(0)
    m = CharLM(CharLMConfig(vocab_size=11, cell=cell, layers=2, hidden=16, embed=8))
    x = torch.randint(0, 11, (3, 5))
    logits, state = m(x)
    assert logits.shape == (3, 5, 11)
    # feeding the sequence in two halves with the carried state gives the same logits (stateful RNN)
    a, st = m(x[:, :2])
    b, _ = m(x[:, 2:], st)
    assert torch.allclose(torch.cat([a, b], 1), logits, atol=1e-6)


def test_init_forget_bias_one_and_orthogonal_recurrent_weights():
    m = CharLM(CharLMConfig(vocab_size=5, layers=1, hidden=8, embed=4))
    b = m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0
    assert torch.all(b[8:16] == 1) and torch.all(b[:8] == 0) and torch.all(b[16:] == 0)
    for block in m.rnn.weight_hh_l0.detach().split(8):
        assert torch.allclose(block @ block.t(), torch.eye(8), atol=1e-5)


def test_weight_tying_shares_one_matrix_and_projects_when_widths_differ():
    m = CharLM(CharLMConfig(vocab_size=7, layers=1, hidden=12, embed=6, tie_weights=True))
    assert m.head.weight is m.embedding.weight and m.proj is not None
    untied = CharLM(CharLMConfig(vocab_size=7, layers=1, hidden=12, embed=6))
    assert m.num_parameters() < untied.num_parameters() + 12 * 6 + 6
    logits, _ = m(torch.zeros(1, 3, dtype=torch.long))
    assert logits.shape == (1, 3, 7)


@pytest.mark.parametrize(
    "layers,tie,skip", [(1, False, False), (3, False, False), (2, True, False), (3, False, True), (2, True, True)]
)
def test_lean_stepper_gives_the_same_logits_as_forward(layers, tie, skip):
    torch.manual_seed(1)
    m = CharLM(CharLMConfig(vocab_size=13, layers=layers, hidden=24, embed=8, tie_weights=tie, skip=skip)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # biases away from their init, so all paths matter
    ids = torch.randint(0, 13, (40,))
    with torch.no_grad():
        ref, _ = m(ids[None])
    lean = LeanStepper(m)
    got = torch.stack([lean.step(int(i)).clone() for i in ids])
    assert torch.allclose(got, ref[0], atol=1e-5)
    lean.reset()
    assert torch.allclose(lean.step(int(ids[0])), ref[0, 0], atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_explicit_dropout_masks_drop_where_the_built_in_dropout_would(cell):
    torch.manual_seed(2)
    m = CharLM(CharLMConfig(vocab_size=11, cell=cell, layers=3, hidden=16, embed=8, dropout=0.3))
    x = torch.randint(0, 11, (4, 7))
    m.eval()
    assert m.dropout_masks(4, 7) is None
    ref, ref_state = m(x)
    keep = [torch.ones(4, 7, 16) for _ in range(3)]
    got, state = m(x, masks=keep)  # keep-all masks: the layer-by-layer path is the same network
    assert torch.allclose(got, ref, atol=1e-6)
    for a, b in zip(state if cell == "lstm" else [state], ref_state if cell == "lstm" else [ref_state]):
        assert torch.allclose(a, b, atol=1e-6)
    m.train()
    masks = m.dropout_masks(4, 7)
    assert len(masks) == 3 and all(mk.shape == (4, 7, 16) for mk in masks)
    values = torch.cat([mk.flatten() for mk in masks]).unique().tolist()
    assert values[0] == 0.0 and values[1:] == [pytest.approx(1 / 0.7)]
    # zeroing the top layer's whole output leaves only the head's bias
    masks[-1].zero_()
    logits, _ = m(x, masks=masks)
    assert torch.allclose(logits, m.head.bias.expand_as(logits))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_skip_connections_feed_every_layer_to_the_head(cell):
    torch.manual_seed(3)
    m = CharLM(CharLMConfig(vocab_size=9, cell=cell, layers=3, hidden=12, embed=6, skip=True)).eval()
    assert m.head.in_features == 36
    x = torch.randint(0, 9, (2, 10))
    logits, state = m(x)
    a, st = m(x[:, :4])  # stateful across calls, as without skip
    b, _ = m(x[:, 4:], st)
    assert torch.allclose(torch.cat([a, b], 1), logits, atol=1e-6)
    # the bottom layer reaches the loss directly: its weights get a gradient through the head's first block
    with torch.no_grad():
        m.head.weight[:, 12:].zero_()
    m.zero_grad()
    m(x)[0].sum().backward()
    assert m.rnn.weight_ih_l0.grad.abs().sum() > 0 and m.rnn.weight_ih_l2.grad.abs().sum() == 0
