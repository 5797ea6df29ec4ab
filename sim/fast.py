"""The fast path for big tabular runs: one sampled-GRPO step with the majority-voting reward.

Why it is exact: the majority-voting reward of a rollout depends only on its answer class, so every rollout of a
class gets the same group advantage; the tabular gradient :math:`\\frac1N\\sum_i A_i(e_{y_i}-\\pi)` therefore
depends on the rollouts only through the answer counts :math:`c\\sim\\mathrm{Mult}(N,\\pi)`, and equals
:math:`\\frac1N c\\odot A` because group advantages sum to zero. So the step samples the counts (exact
inverse-CDF sampling, :func:`sim.core.sample_counts` in float32) instead of N rollouts. The layout is
transposed, ``(K, Q)``, so that every reduction over the K answers is K contiguous row operations. The
plurality winner draws a uniform rank among the tied answers (exact, only where there is a tie:
:func:`_uniform_ranks`) and finds it with uint8 row sums instead of ``argmax`` (see :func:`_plurality_winners_t`),
so K and N must stay below 256. Importing this module loads neither torch nor scipy (the advantage table, built
once per run, goes through :mod:`sharpen.grpo` when first asked for).
"""

from __future__ import annotations

import math

import numpy as np

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
    below = np.zeros(e.shape, dtype=np.uint8)  # below[k] = #{j : u_j < F_k}
    below[-1] = n  # F_K is the total: every draw lies below it (no rounding gap)
    less = np.empty((e.shape[0] - 1, e.shape[1]), dtype=bool)
    body = below[:-1]
    for j in range(int(n)):
        np.less(u[j], cdf[:-1], out=less)
        body += less.view(np.uint8)
    counts = below.copy()
    counts[1:] -= below[:-1]  # below is non-decreasing in k, so no wrap-around
    return counts


def _plurality_winners_t(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""Plurality winner per column of ``counts (K, Q)`` (uint8), ties split uniformly at random, ``(Q,)`` intp.

    PRIVATE, and a candidate to move to :mod:`sharpen.answers`: the same rule as
    :func:`sharpen.answers.plurality_winners` (equal in law, tested), laid out for speed. With
    :math:`T_q` the number of answers tied at the column's maximum, draw :math:`j_q` uniform on
    :math:`\{0..T_q-1\}` (exact, :func:`_uniform_ranks`) and return the position of the
    (j+1)-th tied answer, computed without ``argmax`` as :math:`\sum_k \mathbb 1[R_k \le j]` where
    :math:`R_k` counts the tied answers among 0..k (non-decreasing in k). Every step is a row operation on uint8.
    Every column must hold at least one count (no unparseable answers on this path).
    """
    return _winners_and_max_t(counts, rng)[0]


def _uniform_ranks(n_tied: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""Independent :math:`j_q` uniform on :math:`\{0..T_q-1\}` for bounds ``n_tied (Q,)`` >= 1, ``(Q,)`` uint8.

    Exact, and cheaper than ``rng.integers`` with an array bound (a per-element path, ~25 ns each): a column
    without a tie has only rank 0 and draws nothing; the tied ones draw :math:`V` uniform on
    :math:`\{0..L-1\}` with :math:`L=\mathrm{lcm}(1..\max T)` in one call with a scalar bound, and take
    :math:`j=V \bmod T`, which is uniform because :math:`T` divides :math:`L` (each residue has :math:`L/T`
    preimages).
    """
    j = np.zeros(n_tied.shape, dtype=np.uint8)
    split = np.flatnonzero(n_tied > 1)
    if split.size:
        bound = n_tied[split]
        period = math.lcm(*range(1, int(bound.max()) + 1))
        if period < 2**32:
            j[split] = rng.integers(0, period, size=split.size, dtype=np.uint32) % bound
        else:  # only for more than 22 tied answers
            j[split] = rng.integers(0, bound)
    return j


def _winners_and_max_t(
    counts: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_plurality_winners_t` and the winning count (the column maximum), ``(Q,)`` each."""
    m = counts.max(axis=0)
    tied = (counts == m).view(np.uint8)  # (K, Q) 0/1
    n_tied = tied.sum(axis=0, dtype=np.uint8)
    j = _uniform_ranks(n_tied, rng)  # uniform rank among the tied answers
    running = np.zeros(counts.shape[1], dtype=np.uint8)
    winner = np.zeros(counts.shape[1], dtype=np.uint8)
    for k in range(counts.shape[0]):
        running += tied[k]
        winner += running <= j
    return winner.astype(np.intp), m


def binary_advantage_table(
    n: int, *, normalize_std: bool = True, eps: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages of a rewarded / unrewarded rollout for each number m = 0..N of rewarded rollouts, (N+1,) each.

    Binary rewards give only N + 1 distinct groups, so :func:`sharpen.grpo.group_advantages` is called once on
    them (via :func:`sim.core.binary_count_advantages`) and looked up afterwards.
    """
    from sim.core import binary_count_advantages  # lazy: sim.core imports torch (via sharpen.grpo)

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
    if zt.ndim != 2 or not 2 <= zt.shape[0] < 256:
        raise ValueError(f"zt: expected shape (K, Q) with 2 <= K < 256, got {zt.shape}")
    n = int(n)
    a_pos_t, a_neg_t = (
        table
        if table is not None
        else binary_advantage_table(n, normalize_std=normalize_std, eps=eps)
    )
    e = zt - zt.max(axis=0)
    np.exp(e, out=e)  # (K, Q) unnormalised probabilities
    counts = sample_counts_t(e, n, rng)
    winners, c_win = _winners_and_max_t(counts, rng)  # the winner holds the maximum count
    scale = lr / n
    m = np.arange(n + 1)
    a_neg = (a_neg_t * scale).astype(zt.dtype)[c_win]  # (Q,)
    extra = (m * (a_pos_t - a_neg_t) * scale).astype(zt.dtype)[c_win]  # c_win (a_pos - a_neg), (Q,)
    # grad = c * A / N, with A = a_neg except in the winner's class (tabular: group advantages sum to zero)
    zt += counts * a_neg
    columns = np.arange(zt.shape[1])
    # the winner's entries through the flat index: ~3x cheaper than a 2-D fancy index
    if zt.flags.c_contiguous:
        zt.reshape(-1)[winners * zt.shape[1] + columns] += extra
    else:
        zt[winners, columns] += extra
    return winners
