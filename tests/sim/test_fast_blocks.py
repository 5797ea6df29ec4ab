"""The fast tabular step in column blocks: equal, bit for bit, to a plain step on the same draws; memory that does
not grow with the number of questions beyond the result."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import sim.fast as fast


def _plain_step(zt, n, lr, rng, table, block):
    """The step written plainly, column by column, drawing as the fast step does: per block of columns the
    (N, B) uniforms, then the tie ranks of the block (``_uniform_ranks``, tested on its own)."""
    a_pos, a_neg = table
    k, q = zt.shape
    out, winners = zt.copy(), np.empty(q, dtype=np.intp)
    for s in range(0, q, block):
        w = min(block, q - s)
        z = zt[:, s : s + w]
        cdf = np.cumsum(np.exp(z - z.max(axis=0)), axis=0)  # float32, summed in row order
        x = rng.random((n, w), dtype=np.float32) * cdf[-1]
        counts = np.zeros((k, w), dtype=np.int64)
        for i in range(w):
            for d in range(n):  # a draw lands in the first answer whose running sum exceeds it
                counts[next((a for a in range(k - 1) if x[d, i] < cdf[a, i]), k - 1), i] += 1
        top = counts.max(axis=0)
        ranks = fast._uniform_ranks((counts == top).sum(axis=0).astype(np.uint8), rng)
        for i in range(w):
            c = int(top[i])
            winners[s + i] = np.flatnonzero(counts[:, i] == c)[ranks[i]]
            lose = np.float32(a_neg[c] * (lr / n))
            for a in range(k):
                out[a, s + i] += np.float32(counts[a, i]) * lose
            out[winners[s + i], s + i] += np.float32(c * (a_pos[c] - a_neg[c]) * (lr / n))
    return out, winners


@pytest.mark.parametrize(
    ("k", "q", "n", "block"), [(5, 300, 6, 37), (3, 64, 1, 64), (16, 90, 8, 200)]
)
def test_fast_step_equals_the_plain_step_on_the_same_draws(k, q, n, block, monkeypatch):
    rng = np.random.default_rng(k * q)
    zt = (rng.standard_normal((k, q)) * rng.choice([0.1, 2.0], size=(1, q))).astype(np.float32)
    zt[:, :5] = 0.0  # flat columns: many ties
    table = (np.linspace(-0.5, 1.5, n + 1), np.linspace(0.25, -1.0, n + 1))
    monkeypatch.setattr(fast, "_BLOCK", block)
    got = zt.copy()
    winners = fast.tabular_majority_step(got, n, 0.3, np.random.default_rng(1), table=table)
    want, want_winners = _plain_step(zt, n, 0.3, np.random.default_rng(1), table, block)
    np.testing.assert_array_equal(winners, want_winners)
    np.testing.assert_array_equal(got, want)


def test_sample_counts_do_not_depend_on_the_block_size(monkeypatch):
    rng = np.random.default_rng(4)
    e = rng.random((7, 1000)).astype(np.float32) + 0.01
    got = []
    for block in (1, 13, 1000, 8000):
        monkeypatch.setattr(fast, "_BLOCK", block)
        got.append(fast.sample_counts_t(e, 9, np.random.default_rng(2)))
    for other in got[1:]:
        np.testing.assert_array_equal(other, got[0])
    assert (got[0].sum(axis=0) == 9).all()


def test_fast_step_memory_beyond_a_block_is_the_result():
    # A step over 4x the questions allocates 4x the (Q,) winners and nothing else that grows with Q: the
    # (K, Q) logits are updated in place, block by block (one (K, Q) float32 temporary would be 6 MB here).
    table = (np.linspace(-1.0, 1.0, 9), np.linspace(1.0, -1.0, 9))
    peaks = []
    for q in (100_000, 400_000):
        zt = np.random.default_rng(0).standard_normal((16, q)).astype(np.float32)
        tracemalloc.start()
        fast.tabular_majority_step(zt, 8, 0.1, np.random.default_rng(1), table=table)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] - peaks[0] < 300_000 * (8 + 4)  # the intp winners, with room to spare
    assert peaks[0] < 16 * 100_000 * 4  # less than one (K, Q) float32 array
