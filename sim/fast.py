"""The fast path for big tabular runs: one sampled-GRPO step with the majority-voting reward.

Why it is exact: the majority-voting reward of a rollout depends only on its answer class, so every rollout of a
class gets the same group advantage; the tabular gradient :math:`\\frac1N\\sum_i A_i(e_{y_i}-\\pi)` therefore
depends on the rollouts only through the answer counts :math:`c\\sim\\mathrm{Mult}(N,\\pi)`, and equals
:math:`\\frac1N c\\odot A` because group advantages sum to zero. So the step samples the counts (exact
inverse-CDF sampling, :func:`sim.core.sample_counts` in float32) instead of N rollouts. The layout is
transposed, ``(K, Q)``, so that every reduction over the K answers is K contiguous row operations. The
plurality winner draws a uniform rank among the tied answers (exact, only where there is a tie:
:func:`_uniform_ranks`) and finds it with uint8 row sums instead of ``argmax`` (see :func:`_plurality_winners_t`),
so K and N must stay below 256. The step goes through the questions in blocks of columns (:data:`_BLOCK`):
a block's probabilities, counts, winner and update stay in cache and its scratch arrays are reused, so one
pass over the logits does the step. Importing this module loads neither torch nor scipy (the advantage
table, built once per run, goes through :mod:`sharpen.grpo` when first asked for).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["tabular_majority_step", "sample_counts_t"]


# Columns per block: a block's (K, B) float32 running sums, comparisons and counts stay in cache while the
# N draws are counted against them (one pass over all columns streams the (K, Q) CDF N times), and B is
# large enough that the ~60 numpy calls of a block cost little. Not a power of two: rows 2**k bytes apart
# share cache sets (B = 4096 ran 40% slower than 4000 or 8000).
_BLOCK = 8000
# Most bytes of the (draws, K - 1, B) comparison array of one block (it is filled in chunks of draws).
_LESS_BYTES = 2**20


def sample_counts_t(e: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Multinomial(n, e_q / sum e_q) counts for unnormalised weights ``e (K, Q)`` (float32), as ``(K, Q)`` uint8.

    Same rule as :func:`sim.core.sample_counts` (draw j lands in the first k with u_j < F_k), transposed.
    The uniforms are one ``(n, Q)`` draw; the columns are counted in blocks (the counts do not depend on
    the block size).
    """
    n = _check_n(n)
    u = rng.random((n, e.shape[1]), dtype=e.dtype)
    counts = np.empty(e.shape, dtype=np.uint8)
    work = _Work(e.shape[0], n, e.shape[1], e.dtype)
    for cols in _blocks(e.shape[1]):
        cdf = work.cdf[:, : cols.stop - cols.start]
        np.copyto(cdf, e[:, cols])
        _count_block(cdf, u[:, cols], counts[:, cols], work)
    return counts


def _check_n(n) -> int:
    if not 1 <= int(n) < 256:
        raise ValueError(f"n: the fast path needs 1 <= N < 256, got {n}")
    return int(n)


def _blocks(q: int):
    return (slice(s, min(s + _BLOCK, q)) for s in range(0, q, _BLOCK))


class _Work:
    """Scratch arrays of one column block (``K`` answers, ``N`` draws, ``Q`` columns), reused from block to block."""

    def __init__(self, k: int, n: int, q: int, dtype) -> None:
        width = min(_BLOCK, q)
        # the draws are compared in chunks of `chunk` draws: a (chunk, K - 1, B) bool array of at most
        # _LESS_BYTES
        self.chunk = max(1, min(n, _LESS_BYTES // max(1, (k - 1) * width)))
        self.cdf = np.empty((k, width), dtype=dtype)  # weights, then their running sums
        # flat, so that a block's (N, B) draws are a C-contiguous view of it
        self.draws = np.empty(n * width, dtype=dtype)
        self.less = np.empty((self.chunk, k - 1, width), dtype=bool)
        self.below = np.empty((k, width), dtype=np.uint8)
        self.tied = np.empty((k, width), dtype=bool)
        self.step = np.empty((k, width), dtype=dtype)

    def x(self, n: int, width: int) -> np.ndarray:
        """The ``(n, width)`` draws of a block, C-contiguous (``Generator.random(out=...)`` needs that)."""
        return self.draws[: n * width].reshape(n, width)


def _count_block(cdf: np.ndarray, u: np.ndarray, out: np.ndarray, work: _Work) -> None:
    """Counts ``out (K, B)`` uint8 of the draws ``u (N, B)`` (uniforms on [0, 1)) under the weights
    ``cdf (K, B)``, which become their running sums (in place)."""
    n, width = u.shape
    for k in range(1, cdf.shape[0]):  # row adds: much faster than np.cumsum(axis=0) on this layout
        np.add(cdf[k - 1], cdf[k], out=cdf[k])
    x = np.multiply(u, cdf[-1], out=work.x(n, width))  # (N, B): the draws on the scale of the sums
    below = work.below[:, :width]  # below[k] = #{j : x_j < F_k}
    below[-1] = n  # F_K is the total: every draw lies below it (no rounding gap)
    for j0 in range(0, n, work.chunk):
        xs = x[j0 : j0 + work.chunk, None, :]
        less = np.less(xs, cdf[None, :-1], out=work.less[: xs.shape[0], :, :width])
        if j0 == 0:
            less.view(np.uint8).sum(axis=0, dtype=np.uint8, out=below[:-1])
        else:
            below[:-1] += less.view(np.uint8).sum(axis=0, dtype=np.uint8)
    out[0] = below[0]
    np.subtract(below[1:], below[:-1], out=out[1:])  # below is non-decreasing in k: no wrap-around


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
    return _rank_position(tied.copy(), j).astype(np.intp), m


def _rank_position(tied: np.ndarray, j: np.ndarray) -> np.ndarray:
    r"""Position of the (j+1)-th tied answer of each column: :math:`\sum_k \mathbb 1[R_k \le j]` with
    :math:`R_k` the tied answers among 0..k, for ``tied (K, B)`` uint8 0/1 (overwritten with R) and ranks
    ``j (B,)``; ``(B,)`` uint8."""
    for k in range(1, tied.shape[0]):  # R by row adds (np.cumsum(axis=0) is slow on this layout)
        tied[k] += tied[k - 1]
    return (tied <= j).sum(axis=0, dtype=np.uint8)


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
    Same seed -> same result, bit for bit. The columns go through in blocks of :data:`_BLOCK`: a block's
    probabilities, counts, winners and update stay in cache and its scratch arrays are reused, so a step
    allocates little beyond its result. Each block draws its own randomness, the ``(N, B)`` uniforms of its
    counts and then its tie ranks; the law of the step does not depend on the block size.
    """
    if zt.ndim != 2 or not 2 <= zt.shape[0] < 256:
        raise ValueError(f"zt: expected shape (K, Q) with 2 <= K < 256, got {zt.shape}")
    n = _check_n(n)
    k_, q = zt.shape
    a_pos_t, a_neg_t = (
        table
        if table is not None
        else binary_advantage_table(n, normalize_std=normalize_std, eps=eps)
    )
    scale = lr / n
    m = np.arange(n + 1)
    a_neg_of = (a_neg_t * scale).astype(zt.dtype)  # lr A / N outside the winner's class, by c_win
    extra_of = (m * (a_pos_t - a_neg_t) * scale).astype(zt.dtype)  # c_win (a_pos - a_neg) lr / N
    work = _Work(k_, n, q, zt.dtype)
    counts = np.empty((k_, min(_BLOCK, q)), dtype=np.uint8)
    flat = zt.reshape(-1) if zt.flags.c_contiguous else None
    winners = np.empty(q, dtype=np.intp)
    for cols in _blocks(q):
        width = cols.stop - cols.start
        z, e, c = zt[:, cols], work.cdf[:, :width], counts[:, :width]
        np.subtract(z, z.max(axis=0), out=e)
        np.exp(e, out=e)  # (K, B) unnormalised probabilities
        u = rng.random((n, width), dtype=zt.dtype, out=work.x(n, width))
        _count_block(e, u, c, work)
        c_win = c.max(axis=0)  # the winner holds the maximum count
        tied = np.equal(c, c_win, out=work.tied[:, :width]).view(np.uint8)  # (K, B) 0/1
        j = _uniform_ranks(tied.sum(axis=0, dtype=np.uint8), rng)  # uniform rank among the tied
        win = _rank_position(tied, j)
        winners[cols] = win
        # grad = c * A / N, with A = a_neg except in the winner's class (tabular: group advantages sum
        # to zero), whose entry gets c_win (a_pos - a_neg) on top
        z += np.multiply(c, a_neg_of[c_win], out=work.step[:, :width])
        if flat is not None:  # the winner's entries through the flat index: ~3x cheaper than 2-D
            flat[win * np.intp(q) + np.arange(cols.start, cols.stop)] += extra_of[c_win]
        else:
            zt[win, np.arange(cols.start, cols.stop)] += extra_of[c_win]
    return winners
