import pytest
import torch

from chatrnn.models.charlm import CharLM, CharLMConfig, upgrade_state_dict


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forward_shapes_and_state_for_each_cell(cell):
    torch.manual_seed(0)
    m = CharLM(CharLMConfig(vocab_size=11, cell=cell, layers=2, hidden=16, embed=8))
    x = torch.randint(0, 11, (3, 5))
    logits, loss, state = m(x)
    assert logits.shape == (3, 5, 11) and loss is None
    # feeding the sequence in two halves with the carried state gives the same logits (stateful RNN)
    a, _, st = m(x[:, :2])
    b, _, _ = m(x[:, 2:], st)
    assert torch.allclose(torch.cat([a, b], 1), logits, atol=1e-6)


def test_targets_give_the_mean_cross_entropy():
    torch.manual_seed(0)
    m = CharLM(CharLMConfig(vocab_size=11, layers=2, hidden=16, embed=8))
    x, y = torch.randint(0, 11, (3, 5)), torch.randint(0, 11, (3, 5))
    logits, loss, _ = m(x, targets=y)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), y.reshape(-1))
    torch.testing.assert_close(loss, ref)


def test_init_forget_bias_one_and_orthogonal_recurrent_weights():
    m = CharLM(CharLMConfig(vocab_size=5, layers=1, hidden=8, embed=4))
    b = m.layers[0].bias_ih_l0 + m.layers[0].bias_hh_l0
    assert torch.all(b[8:16] == 1) and torch.all(b[:8] == 0) and torch.all(b[16:] == 0)
    for block in m.layers[0].weight_hh_l0.detach().split(8):
        assert torch.allclose(block @ block.t(), torch.eye(8), atol=1e-5)


def test_weight_tying_shares_one_matrix_and_projects_when_widths_differ():
    m = CharLM(CharLMConfig(vocab_size=7, layers=1, hidden=12, embed=6, tie_weights=True))
    assert m.head.weight is m.embedding.weight and m.proj is not None
    untied = CharLM(CharLMConfig(vocab_size=7, layers=1, hidden=12, embed=6))
    assert m.num_parameters() < untied.num_parameters() + 12 * 6 + 6
    logits, _, _ = m(torch.zeros(1, 3, dtype=torch.long))
    assert logits.shape == (1, 3, 7)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_one_multi_layer_module_is_the_same_network(cell):
    """The per-layer modules compute what one ``nn.LSTM(num_layers=L)`` with the same weights does."""
    torch.manual_seed(4)
    m = CharLM(CharLMConfig(vocab_size=11, cell=cell, layers=3, hidden=16, embed=8)).eval()
    whole = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](8, 16, 3, batch_first=True)
    with torch.no_grad():
        for i, layer in enumerate(m.layers):
            for name, p in layer.named_parameters():
                getattr(whole, name.replace("_l0", f"_l{i}")).copy_(p)
        x = torch.randint(0, 11, (2, 6))
        out, _ = whole(m.embedding(x))
        torch.testing.assert_close(m(x)[0], m.head(out), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_explicit_dropout_masks_drop_where_the_built_in_dropout_would(cell):
    torch.manual_seed(2)
    m = CharLM(CharLMConfig(vocab_size=11, cell=cell, layers=3, hidden=16, embed=8, dropout=0.3))
    x = torch.randint(0, 11, (4, 7))
    m.eval()
    assert m.dropout_masks(4, 7) is None
    ref, _, ref_state = m(x)
    keep = [torch.ones(4, 7, 16) for _ in range(3)]
    got, _, state = m(x, masks=keep)  # keep-all masks: the same network
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
    logits, _, _ = m(x, masks=masks)
    assert torch.allclose(logits, m.head.bias.expand_as(logits))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_skip_connections_feed_every_layer_to_the_head(cell):
    torch.manual_seed(3)
    m = CharLM(CharLMConfig(vocab_size=9, cell=cell, layers=3, hidden=12, embed=6, skip=True)).eval()
    assert m.head.in_features == 36
    x = torch.randint(0, 9, (2, 10))
    logits, _, state = m(x)
    a, _, st = m(x[:, :4])  # stateful across calls, as without skip
    b, _, _ = m(x[:, 4:], st)
    assert torch.allclose(torch.cat([a, b], 1), logits, atol=1e-6)
    # the bottom layer reaches the loss directly: its weights get a gradient through the head's first block
    with torch.no_grad():
        m.head.weight[:, 12:].zero_()
    m.zero_grad()
    m(x)[0].sum().backward()
    assert m.layers[0].weight_ih_l0.grad.abs().sum() > 0 and m.layers[2].weight_ih_l0.grad.abs().sum() == 0


def test_generate_continues_the_prompt_and_greedy_is_repeatable():
    torch.manual_seed(5)
    m = CharLM(CharLMConfig(vocab_size=9, layers=2, hidden=12, embed=6)).eval()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    a = m.generate(prompt, 7, temperature=0)
    assert a.shape == (2, 10) and torch.equal(a[:, :3], prompt)
    assert torch.equal(a, m.generate(prompt, 7, temperature=0))
    # greedy: each new id is the argmax of the logits for everything before it
    logits, _, _ = m(a[:, :-1])
    assert torch.equal(a[:, 3:], logits[:, 2:].argmax(-1))
    g = torch.Generator().manual_seed(0)
    s = m.generate(prompt, 5, temperature=1.0, top_k=3, generator=g)
    assert s.shape == (2, 8) and int(s.max()) < 9


def test_old_multi_layer_names_map_to_the_per_layer_modules_in_the_same_order():
    """Checkpoints before the per-layer modules held ``rnn.weight_ih_l1``; they load unchanged, and
    the parameters keep their order, so an old optimizer state (indexed by position) still fits."""
    torch.manual_seed(6)
    cfg = CharLMConfig(vocab_size=9, layers=3, hidden=8, embed=4, skip=True)
    m = CharLM(cfg)
    old = {}
    for k, v in m.state_dict().items():
        if k.startswith("layers."):
            _, i, name = k.split(".")
            k = f"rnn.{name.replace('_l0', f'_l{i}')}"
        old[k] = v.clone()
    names = [k for k in old if k.startswith("rnn.")]
    assert names == [f"rnn.{w}_l{i}" for i in range(3) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    other = CharLM(cfg)
    other.load_state_dict(old)  # through the load hook
    for a, b in zip(m.parameters(), other.parameters()):
        assert torch.equal(a, b)
    # the same under a prefix (the weight average's copy of the model is ``module.``)
    prefixed = {f"module.{k}": v for k, v in old.items()}
    upgrade_state_dict(prefixed, "module.")
    assert set(prefixed) == {f"module.{k}" for k in m.state_dict()}
    averaged = torch.optim.swa_utils.AveragedModel(CharLM(cfg))
    averaged.load_state_dict({**{f"module.{k}": v for k, v in old.items()}, "n_averaged": torch.tensor(3)})
    for a, b in zip(m.parameters(), averaged.module.parameters()):
        assert torch.equal(a, b)
