"""The fast path for big tabular runs: one sampled-GRPO step with the majority-voting reward.

Why it is exact: the majority-voting reward of a rollout depends only on its answer class, so every rollout of a
class gets the same group advantage; the tabular gradient :math:`\\frac1N\\sum_i A_i(e_{y_i}-\\pi)` therefore
depends on the rollouts only through the answer counts :math:`c\\sim\\mathrm{Mult}(N,\\pi)`, and equals
:math:`\\frac1N c\\odot A` because group advantages sum to zero. So the step samples the counts (exact
inverse-CDF sampling, :func:`sim.core.sample_counts` in float32) instead of N rollouts. The layout is
transposed, ``(K, Q)``, so that every reduction over the K answers is K contiguous row operations.
"""

from __future__ import annotations

import numpy as np

from sim.core import binary_count_advantages

__all__ = ["tabular_majority_step", "sample_counts_t"]


def sample_counts_t(e: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Multinomial(n, e_q / sum e_q) counts for unnormalised weights ``e (K, Q)`` (float32), as ``(K, Q)`` uint8.

    Same rule as :func:`sim.core.sample_counts` (draw j lands in the first k with u_j < F_k), transposed.
    """
    if not 1 <= int(n) < 256:
        raise ValueError(f"n: the fast path needs 1 <= N < 256, got {n}")
    cdf = np.empty_like(e)
    cdf[0] = e[0]
    for k in range(1, e.shape[0]):  # K row adds: much faster than np.cumsum(axis=0) on this layout
        np.add(cdf[k - 1], e[k], out=cdf[k])
    u = rng.random((int(n), e.shape[1]), dtype=e.dtype)
    u *= cdf[-1]
    cdf[-1] = np.inf
    below = np.zeros(e.shape, dtype=np.uint8)
    for j in range(int(n)):
        below += u[j] < cdf
    counts = below.copy()
    counts[1:] -= below[:-1]  # below is non-decreasing in k, so no wrap-around
    return counts


def _plurality_winners_t(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Plurality winner per column of ``counts (K, Q)``, ties split uniformly at random.

    PRIVATE, and a candidate to move to :mod:`sharpen.answers`: the same rule as
    :func:`sharpen.answers.plurality_winners` (equal in law, tested), laid out for speed: a key
    ``count + u/2`` with ``u ~ U[0, 1)`` per cell is largest at a max-count cell chosen uniformly among the tied ones.
    Every column must hold at least one count (no unparseable answers on this path).
    """
    score = rng.random(counts.shape, dtype=np.float32)
    score *= 0.5
    score += counts
    return np.argmax(score, axis=0)


def binary_advantage_table(
    n: int, *, normalize_std: bool = True, eps: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages of a rewarded / unrewarded rollout for each number m = 0..N of rewarded rollouts, (N+1,) each.

    Binary rewards give only N + 1 distinct groups, so :func:`sharpen.grpo.group_advantages` is called once on
    them (via :func:`sim.core.binary_count_advantages`) and looked up afterwards.
    """
    return binary_count_advantages(
        np.arange(int(n) + 1), int(n), normalize_std=normalize_std, eps=eps
    )


def tabular_majority_step(
    zt: np.ndarray,
    n: int,
    lr: float,
    rng: np.random.Generator,
    *,
    normalize_std: bool = True,
    eps: float = 1e-6,
    table: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """One in-place SGD step of sampled GRPO with the majority-voting reward on tabular logits ``zt (K, Q)``.

    ``table`` is :func:`binary_advantage_table` (computed if not given). Returns the winners ``(Q,)``.
    Same seed -> same result, bit for bit.
    """
    if zt.ndim != 2 or zt.shape[0] < 2:
        raise ValueError(f"zt: expected shape (K >= 2, Q), got {zt.shape}")
    n = int(n)
    a_pos_t, a_neg_t = (
        table
        if table is not None
        else binary_advantage_table(n, normalize_std=normalize_std, eps=eps)
    )
    e = zt - zt.max(axis=0)
    np.exp(e, out=e)  # (K, Q) unnormalised probabilities
    counts = sample_counts_t(e, n, rng)
    winners = _plurality_winners_t(counts, rng)
    q = np.arange(zt.shape[1])
    c_win = counts[winners, q]
    scale = lr / n
    a_neg = (a_neg_t * scale).astype(zt.dtype)[c_win]
    a_pos = (a_pos_t * scale).astype(zt.dtype)[c_win]
    # grad = c * A / N, with A = a_neg except in the winner's class (tabular: group advantages sum to zero)
    step = counts * a_neg
    step[winners, q] = c_win * a_pos
    zt += step
    return winners
