import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from chatrnn import checkpoint as ckpt
from chatrnn.charvocab import CharVocab
from chatrnn.models.charlm import CharLM, CharLMConfig, detach_state
from chatrnn.train.charlm import CharLMOptions, train_charlm
from chatrnn.train.charlm_task import CharLMData, CharLMTask
from chatrnn.train.cpu_parallel import ShardPool, shard_bounds, shard_generators
from chatrnn.train.trainer import forward_backward


@pytest.mark.parametrize("size,n", [(8, 2), (7, 3), (2, 2), (5, 1)])
def test_shard_bounds_cover_the_batch(size, n):
    b = shard_bounds(size, n)
    assert b[0][0] == 0 and b[-1][1] == size and all(lo < hi for lo, hi in b)
    assert all(b[i][1] == b[i + 1][0] for i in range(n - 1))


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_sharded_gradients_equal_whole_batch_gradients(dropout):
    torch.manual_seed(0)
    data = CharLMData(
        CharVocab("abcdefgh"),
        np.random.RandomState(0).randint(0, 8, 4000).astype(np.uint8),
        np.zeros(10, np.uint8),
        ["synthetic"],
    )
    model = CharLM(CharLMConfig(vocab_size=8, layers=2, hidden=16, embed=8, dropout=dropout))
    whole = CharLMTask(model, data, 6, 12, torch.device("cpu"))
    sharded = CharLMTask(model, data, 6, 12, torch.device("cpu"))
    pool = ShardPool(3)
    try:
        for _ in range(3):  # several windows: the carried TBPTT state must be split and rejoined too
            b1, b2 = whole.next_batch(0.0), sharded.next_batch(0.0)
            model.zero_grad()
            torch.manual_seed(1)  # the whole batch through the masks the shards will draw
            parts = [
                model.dropout_masks(hi - lo, 12, generator=g)
                for (lo, hi), g in zip(shard_bounds(6, 3), shard_generators(3))
            ]
            masks = None if dropout == 0 else [torch.cat(m) for m in zip(*parts)]
            logits, _, state = model(b1.x, b1.state, masks=masks)
            whole.state = detach_state(state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 8), b1.y.reshape(-1))
            loss.backward()
            g_whole = [p.grad.clone() for p in model.parameters()]
            model.zero_grad()
            torch.manual_seed(1)
            loss_s, count = forward_backward(sharded, model, b2, pool)
            assert count == 6 * 12
            assert loss_s == pytest.approx(float(loss.detach()), rel=1e-5)
            for a, p in zip(g_whole, model.parameters()):
                assert torch.allclose(a, p.grad, atol=1e-6)
            for a, b in zip(whole.state, sharded.state):  # the rows' states, rejoined in row order
                assert torch.allclose(a, b, atol=1e-6)
    finally:
        pool.close()
    assert torch.get_num_threads() == 1  # the conftest's setting is restored


def opts(out, corpus, resume=False, **train):
    return CharLMOptions(
        out=out,
        corpus=[str(corpus)],
        preset="tiny",
        model={"layers": 2, "dropout": 0.2},
        train=dict(max_steps=16, evals=2, threads=2, **train),
        device="cpu",
        resume=resume,
    )


def test_sharded_training_with_dropout_is_repeatable_and_resumes_exactly(tmp_path, sample_text_file):
    train_charlm(opts(tmp_path / "a", sample_text_file))
    train_charlm(opts(tmp_path / "b", sample_text_file))
    train_charlm(opts(tmp_path / "c", sample_text_file), stop_check=lambda step: step >= 7)
    train_charlm(opts(tmp_path / "c", sample_text_file, resume=True))
    a, b, c = (load_file(str(tmp_path / x / ckpt.LAST_WEIGHTS)) for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a), "two identical sharded runs differ"
    assert all(torch.equal(a[k], c[k]) for k in a), "a stopped and resumed sharded run differs"
