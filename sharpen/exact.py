r"""Exact answer distributions: what a policy's answers are, without sampling noise.

For a task whose answers can be listed (sums of two numbers, multiple choice, any task given a candidate list),
the policy's probability of each candidate answer :math:`a` is computable exactly by teacher forcing:
:math:`\pi(a\mid q)=\prod_t \pi(a_t\mid q,a_{<t})\cdot\pi(\mathrm{eos}\mid q,a)` at the rollout temperature
(``empirical.exact`` scores every candidate of every probe question in batched forward passes). The mass not
on the list, :math:`r(q)=1-\sum_a\pi(a\mid q)`, is everything else the policy can write (other spellings,
unparseable text, answers off the list).

This module turns those probabilities into what Theorem 1 is about, per question (all arrays ``(Q,)``):

* ``majority`` / ``p_majority`` -- the exact mode :math:`\arg\max_a\pi(a\mid q)` and its mass :math:`p_k`;
* ``p_initial_majority`` -- the mass of the *initial* mode (the answer Theorem 1 says the policy locks onto);
* ``entropy`` -- the answer entropy :math:`-\sum_a\pi\log\pi - r\log r` (the residual counted as one outcome,
  so a lower bound on the entropy over all distinct answers);
* ``accuracy`` -- the expected accuracy :math:`\pi(a^\star\mid q)` of one sample (``correct`` given);
* ``vote_mode_prob`` -- the probability that the plurality vote of ``n_votes`` samples returns the mode
  (:func:`sharpen.theory.plurality_win_probs`, residual mass voting but unable to win).

Exact per-sample probabilities make the probes noise-free: fitting Theorem 1 to :math:`p_k` needs no binomial
weights (least squares on :math:`\mathrm{logit}\,p_k`), and a question's :math:`p_0` is known before training.

Bad input: ``probs`` must be a finite ``(Q, C)`` array with entries in [0, 1] and rows summing to at most
1 + 1e-6 (``ValueError`` naming ``probs`` otherwise); ``candidates`` must have ``C`` distinct strings; index
arrays must have shape ``(Q,)`` with entries in ``-1..C-1`` (-1: not on the list).

Example
-------
>>> import numpy as np
>>> s = answer_summary(np.array([[0.5, 0.3, 0.1]]), ("7", "8", "9"), correct=np.array([1]), n_votes=8)
>>> s.majority.tolist(), round(float(s.p_majority[0]), 3), round(float(s.accuracy[0]), 3)
([0], 0.5, 0.3)
>>> round(float(s.residual[0]), 3), 0.5 < float(s.vote_mode_prob[0]) < 1
(0.1, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sharpen.theory import plurality_win_probs

__all__ = ["AnswerSummary", "answer_summary", "VOTE_TOP_K"]

VOTE_TOP_K = 16
"""The vote-mode probability is computed on the ``VOTE_TOP_K`` largest answers of each question, the rest
bounding it from both sides (see :func:`answer_summary`; exact plurality probabilities cost about
:math:`K^2 n^2`). ``vote_mode_prob_gap`` reports the width of the bound."""


@dataclass(frozen=True)
class AnswerSummary:
    """Per-question summary of exact answer distributions; every array has shape ``(Q,)``.

    ``majority`` and ``initial_majority`` index ``candidates`` (-1: no candidate has mass).
    ``vote_mode_prob_gap`` is the width of the bound on ``vote_mode_prob`` (0 when every answer was used).
    """

    candidates: tuple[str, ...]
    residual: np.ndarray
    majority: np.ndarray
    p_majority: np.ndarray
    initial_majority: np.ndarray
    p_initial_majority: np.ndarray
    entropy: np.ndarray
    accuracy: np.ndarray | None
    vote_mode_prob: np.ndarray | None
    vote_mode_prob_gap: np.ndarray | None

    def answer(self, index: int) -> str | None:
        """The candidate at ``index`` (None for -1)."""
        return None if index < 0 else self.candidates[index]


def _check_index(name: str, values, q: int, c: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (q,) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name}: expected {q} integer indices, got shape {arr.shape} dtype {arr.dtype}"
        )
    if arr.size and (arr.min() < -1 or arr.max() >= c):
        raise ValueError(f"{name}: indices must lie in -1..{c - 1}")
    return arr.astype(np.int64)


def _grouped_rest(rest_sorted: np.ndarray, cap: np.ndarray, n_groups: int) -> np.ndarray:
    """Pack each row's remaining answers (descending) into ``n_groups`` rivals, greedily filling one group until
    the next answer would take it past the row's ``cap``; the last group takes whatever is left."""
    q = rest_sorted.shape[0]
    groups = np.zeros((q, n_groups))
    current = np.zeros(q, dtype=np.int64)
    for j in range(rest_sorted.shape[1]):
        x = rest_sorted[:, j]
        move = (groups[np.arange(q), current] + x > cap) & (groups[np.arange(q), current] > 0)
        current = np.minimum(current + move, n_groups - 1)
        groups[np.arange(q), current] += x
    return groups


def _vote_mode_prob(probs: np.ndarray, mode: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """P[the plurality of ``n`` samples returns ``mode``] per row, sandwiched between two exact computations.

    Keep each row's ``VOTE_TOP_K`` largest answers. *Upper*: the others cannot win (their mass votes like
    unparseable text) -- the mode can only lose less. *Lower*: the others are packed into ``2 VOTE_TOP_K``
    merged rivals, each no heavier than the smallest kept answer where possible; a merged rival's count is
    at least each of its members', so the mode can only lose more. The estimate is the midpoint, the gap its
    error bound; both are batched :func:`plurality_win_probs` calls over the rows.
    """
    q, c = probs.shape
    k = min(VOTE_TOP_K, c)
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)
    kept = ranked[:, :k]  # (Q, k), the mode first (ties: first index, as argmax)
    upper = plurality_win_probs(kept, n)[:, 0]
    lower = upper
    if c > k and ranked[:, k:].max(initial=0.0) > 0:
        rivals = _grouped_rest(ranked[:, k:], kept[:, -1], 2 * VOTE_TOP_K)
        lower = plurality_win_probs(np.concatenate([kept, rivals], axis=1), n)[:, 0]
    has_mode = mode >= 0
    return np.where(has_mode, 0.5 * (upper + lower), 0.0), np.where(has_mode, upper - lower, 0.0)


def answer_summary(
    probs,
    candidates: Sequence[str],
    *,
    initial_majority=None,
    correct=None,
    n_votes: int | None = None,
) -> AnswerSummary:
    r"""Summarise exact answer distributions ``probs`` ``(Q, C)`` over ``candidates``.

    Parameters
    ----------
    probs : array (Q, C)
        :math:`\pi(a_c\mid q)`; each row sums to at most 1 (the rest is the residual).
    candidates : C distinct strings
    initial_majority : (Q,) indices, optional
        The initial mode of each question (-1: none); default: this distribution's mode (step 0).
    correct : (Q,) indices, optional
        The correct candidate of each question (-1: not on the list, accuracy 0); ``accuracy`` is None
        without it.
    n_votes : int, optional
        Samples per vote for ``vote_mode_prob`` (None: not computed).

    Ties for the mode go to the first candidate (numpy ``argmax``); a row without mass has mode -1.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or not np.all(np.isfinite(p)):
        raise ValueError(f"probs: expected a finite (Q, C) array, got shape {p.shape}")
    if p.size and (p.min() < 0 or p.max() > 1 or p.sum(axis=1).max() > 1 + 1e-6):
        raise ValueError("probs: entries must lie in [0, 1] and each row sum to at most 1")
    q, c = p.shape
    cands = tuple(str(x) for x in candidates)
    if len(cands) != c or len(set(cands)) != c:
        raise ValueError(
            f"candidates: expected {c} distinct strings, got {len(cands)} ({len(set(cands))} distinct)"
        )
    rows = np.arange(q)
    residual = np.clip(1.0 - p.sum(axis=1), 0.0, 1.0)
    has_mass = p.max(axis=1, initial=0.0) > 0 if c else np.zeros(q, dtype=bool)
    mode = np.where(has_mass, p.argmax(axis=1) if c else 0, -1)
    p_mode = np.where(mode >= 0, p[rows, np.maximum(mode, 0)] if c else 0.0, 0.0)
    init = (
        mode
        if initial_majority is None
        else _check_index("initial_majority", initial_majority, q, c)
    )
    p_init = np.where(init >= 0, p[rows, np.maximum(init, 0)] if c else 0.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0).sum(axis=1)
        terms += np.where(residual > 0, -residual * np.log(residual), 0.0)
    accuracy = None
    if correct is not None:
        gold = _check_index("correct", correct, q, c)
        accuracy = np.where(gold >= 0, p[rows, np.maximum(gold, 0)] if c else 0.0, 0.0)
    vote = gap = None
    if n_votes is not None:
        if isinstance(n_votes, bool) or not isinstance(n_votes, int | np.integer) or n_votes < 1:
            raise ValueError(f"n_votes: must be an integer >= 1, got {n_votes!r}")
        vote, gap = _vote_mode_prob(p, mode, int(n_votes))
    return AnswerSummary(cands, residual, mode, p_mode, init, p_init, terms, accuracy, vote, gap)
