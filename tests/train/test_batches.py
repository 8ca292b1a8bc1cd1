import numpy as np
import pytest

from chatrnn.errors import ChatrnnError
from chatrnn.train.batches import StreamRows


def test_windows_continue_each_row_and_targets_shift_by_one():
    data = np.arange(1000, dtype=np.int64)
    rows = StreamRows(data, batch_size=4, seq_len=10)
    b1, b2 = rows.next(), rows.next()
    assert b1.reset and not b2.reset
    assert (b1.y[:, :-1] == b1.x[:, 1:]).all()
    assert (b2.x[:, 0] == b1.x[:, -1] + 1).all()  # the next window starts right where the last ended
    assert (b1.x[1:, 0] - b1.x[:-1, 0] == rows.row_len).all()


def test_wraps_with_reset_and_counts_epochs():
    rows = StreamRows(np.arange(101), batch_size=2, seq_len=10)
    seen = [rows.next().reset for _ in range(rows.steps_per_pass + 1)]
    assert seen[0] and not any(seen[1:-1]) and seen[-1]
    assert rows.passes == 1 and 1.0 < rows.epoch < 1.5


def test_ranks_take_disjoint_contiguous_rows():
    data = np.arange(10_000)
    r0 = StreamRows(data, 3, 8, rank=0, world=2).next().x
    r1 = StreamRows(data, 3, 8, rank=1, world=2).next().x
    assert set(r0[:, 0].tolist()).isdisjoint(r1[:, 0].tolist())
    assert r1[0, 0] == r0[-1, 0] + (r0[1, 0] - r0[0, 0])


def test_state_dict_round_trip():
    rows = StreamRows(np.arange(500), 2, 7)
    for _ in range(5):
        rows.next()
    other = StreamRows(np.arange(500), 2, 7)
    other.load_state_dict(rows.state_dict())
    assert (other.next().x == rows.next().x).all()


def test_too_short_for_the_batch_is_a_clear_error():
    with pytest.raises(ChatrnnError, match="--batch-size"):
        StreamRows(np.arange(10), batch_size=8, seq_len=4)
