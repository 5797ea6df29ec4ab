r"""What the failure modes of intrinsic rewards look like in a group of responses: length, repetition, parse
rate, answer diversity and drift from the initial policy.

The failure modes of He et al. 2026 (arXiv 2603.08660) are behaviours, not accuracies: *length collapse*
(responses shrink, the probability reward), *repetition collapse* (a unit repeated to the length cap, the
entropy rewards), *progressive degradation* (the policy drifts and its answers become one shared wrong answer,
self-certainty and majority voting). Each function here measures one of them from what a rollout already
holds, one value per response (or per group), so a caller can average, take quantiles or compare groups:

================================  =========  ========================================================
function                          returns    measures
================================  =========  ========================================================
:func:`response_lengths`          ``(B,)``   tokens per response (length collapse or growth)
:func:`truncated`                 ``(B,)``   responses cut by the length cap (no end token)
:func:`repeated_ngram_share`      ``(B,)``   share of a response's n-grams repeating an earlier one
:func:`longest_repeat`            ``(B,)``   longest stretch made of back-to-back copies of one unit
:func:`parse_rate`                float      share of responses with a parseable answer
:func:`distinct_answers`          ``(G,)``   distinct parsed answers in each group of ``n``
:func:`kl_k3`, :func:`sequence_kl`  ``(B, T)``, ``(B,)``  KL to the initial policy from sampled log-probs
================================  =========  ========================================================

Conventions: ``tokens`` is a ``(B, T)`` integer array of response token ids and ``mask`` its ``(B, T)`` 0/1
*right-padded* mask (each row's valid tokens first, as the trainer packs them; the end token, when present,
is a valid token). Inputs are array-likes (lists, numpy arrays; torch tensors after ``.cpu().numpy()``);
results are numpy arrays or floats; the math is numpy only, no randomness and no state. Bad input raises a
one-line ``ValueError("name: problem, got ...")``.

This module will join :mod:`sharpen.metrics` (kept apart while that module is being reworked); the training
loop reads it through ``empirical.behaviour.behaviour_metrics``.

Example
-------
>>> tokens = [[5, 6, 5, 6, 5, 6, 2], [7, 8, 9, 2, 0, 0, 0]]
>>> mask = [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]]
>>> response_lengths(mask).tolist(), longest_repeat(tokens, mask).tolist()
([7, 4], [6, 0])
>>> repeated_ngram_share(tokens, mask, n=2).round(3).tolist(), truncated(tokens, mask, eos_id=2).tolist()
([0.5, 0.0], [False, False])
>>> parse_rate(["12", None, "12", "13"]), distinct_answers(["12", None, "12", "13"], n=2).tolist()
(0.75, [1, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = [
    "distinct_answers",
    "kl_k3",
    "longest_repeat",
    "parse_rate",
    "repeated_ngram_share",
    "response_lengths",
    "sequence_kl",
    "truncated",
]


# ----------------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------------


def _mask(mask: Any, name: str = "mask") -> np.ndarray:
    """``(B, T)`` bool array of a right-padded 0/1 mask."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{name}: must be a (B, T) array, got shape {m.shape}")
    if m.dtype != bool:
        if not (np.issubdtype(m.dtype, np.number) and np.isin(m, (0, 1)).all()):
            raise ValueError(f"{name}: must hold only 0/1 or booleans, got dtype {m.dtype}")
        m = m != 0
    if m.shape[1] > 1 and (m[:, 1:] & ~m[:, :-1]).any():
        raise ValueError(f"{name}: must be right-padded (valid tokens first in each row)")
    return m


def _tokens_and_mask(tokens: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(tokens)
    if t.ndim != 2 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(
            f"tokens: must be a (B, T) integer array, got shape {t.shape} dtype {t.dtype}"
        )
    m = _mask(mask)
    if m.shape != t.shape:
        raise ValueError(f"mask: shape {m.shape} differs from tokens {t.shape}")
    return t.astype(np.int64), m


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: must be an int >= 1, got {value!r}")
    return int(value)


def _answers(answers: Any) -> list:
    if isinstance(answers, (str, bytes)) or not isinstance(answers, Sequence | np.ndarray):
        raise ValueError(
            f"answers: must be a sequence of answers (None = unparseable), got {answers!r:.40}"
        )
    out = list(answers)
    if not out:
        raise ValueError("answers: is empty")
    return out


# ----------------------------------------------------------------------------------------------------------
# length
# ----------------------------------------------------------------------------------------------------------


def response_lengths(mask: Any) -> np.ndarray:
    r"""Tokens per response, :math:`L_i=\sum_t m_{it}`: ``(B,)`` int64 (the end token counts when present).

    >>> response_lengths([[1, 1, 0], [1, 0, 0]]).tolist()
    [2, 1]
    """
    return _mask(mask).sum(axis=1).astype(np.int64)


def truncated(tokens: Any, mask: Any, *, eos_id: int) -> np.ndarray:
    """``(B,)`` bool: responses whose last valid token is not ``eos_id`` -- cut by the length cap (an empty
    response has no end token, so it counts as truncated). Responses that run to the cap are where length
    growth and repetition collapse end.

    >>> truncated([[4, 2, 0], [4, 4, 4]], [[1, 1, 0], [1, 1, 1]], eos_id=2).tolist()
    [False, True]
    """
    t, m = _tokens_and_mask(tokens, mask)
    lengths = m.sum(axis=1)
    last = t[np.arange(t.shape[0]), np.maximum(lengths - 1, 0)]
    return (lengths == 0) | (last != eos_id)


# ----------------------------------------------------------------------------------------------------------
# repetition
# ----------------------------------------------------------------------------------------------------------


def repeated_ngram_share(tokens: Any, mask: Any, *, n: int = 4) -> np.ndarray:
    r"""Share of each response's n-grams that repeat an earlier n-gram of the same response: ``(B,)`` float64.

    .. math:: \mathrm{rep}_n(y) = 1 - \frac{|\{\text{distinct } n\text{-grams of } y\}|}{\max(|y| - n + 1, 0)},

    the *seq-rep-n* of Welleck et al. 2019 ("Neural text generation with unlikelihood training",
    arXiv 1908.04319), over the valid tokens of each row. 0 for a response with no repeated n-gram, and for one
    shorter than ``n`` tokens (no n-gram, nothing repeated); it tends to 1 as one unit fills the response.
    A worked solution has a baseline share of its own (its steps share characters), so read the change.

    Vectorised: every valid window is a row ``(response, token_1 .. token_n)`` of one array, and one
    ``np.unique(axis=0)`` counts the distinct ones per response. Memory ``O(B T n)``.

    >>> repeated_ngram_share([[1, 2, 1, 2, 1]], [[1, 1, 1, 1, 1]], n=2).tolist()  # 12 21 12 21: 2 of 4 new
    [0.5]
    """
    t, m = _tokens_and_mask(tokens, mask)
    n = _positive_int(n, "n")
    b, width = t.shape
    lengths = m.sum(axis=1)
    total = np.maximum(lengths - n + 1, 0)
    out = np.zeros(b)
    if width < n or not total.any():
        return out
    windows = np.lib.stride_tricks.sliding_window_view(t, n, axis=1)  # (B, T - n + 1, n)
    starts = np.arange(windows.shape[1])
    valid = starts[None, :] < total[:, None]  # (B, T - n + 1): the window lies inside the response
    rows = np.broadcast_to(np.arange(b)[:, None], valid.shape)[valid]
    keys = np.concatenate([rows[:, None], windows[valid]], axis=1)  # (K, n + 1)
    distinct = np.bincount(np.unique(keys, axis=0)[:, 0], minlength=b)
    has = total > 0
    out[has] = 1.0 - distinct[has] / total[has]
    return out


def longest_repeat(tokens: Any, mask: Any, *, max_period: int = 32) -> np.ndarray:
    r"""Longest stretch of each response made of at least two back-to-back copies of one unit of at most
    ``max_period`` tokens (a partial last copy included), in tokens: ``(B,)`` int64, 0 when there is none.

    For a period :math:`p`, let :math:`r_p` be the longest run of consecutive positions :math:`t` with
    :math:`y_t = y_{t-p}` (both valid). The stretch it covers is :math:`r_p + p` tokens and holds two full
    copies when :math:`r_p \ge p`; the result is :math:`\max_p \{r_p + p : r_p \ge p\}`. ``"988888"`` gives 5
    (unit ``8``), ``"abcabca"`` 7 (unit ``abc``), a worked solution a few tokens (``"=00"``), a response
    looping on one step up to its whole length. Cost ``O(B T max_period)``.

    >>> longest_repeat([[9, 8, 8, 8, 8, 8], [1, 2, 3, 1, 2, 3]], [[1] * 6, [1] * 6]).tolist()
    [5, 6]
    """
    t, m = _tokens_and_mask(tokens, mask)
    max_period = _positive_int(max_period, "max_period")
    b, width = t.shape
    best = np.zeros(b, dtype=np.int64)
    for p in range(1, min(max_period, width - 1) + 1):
        same = (t[:, p:] == t[:, :-p]) & m[:, p:]  # (B, T - p); m right-padded: t - p is valid too
        count = np.cumsum(same, axis=1)
        # the run ending at each position: matches so far minus the count at the last mismatch
        run = count - np.maximum.accumulate(np.where(same, 0, count), axis=1)
        r = run.max(axis=1)
        best = np.maximum(best, np.where(r >= p, r + p, 0))
    return best


# ----------------------------------------------------------------------------------------------------------
# answers
# ----------------------------------------------------------------------------------------------------------


def parse_rate(answers: Sequence[Any]) -> float:
    """Share of responses with a parseable answer (``None`` = unparseable).

    >>> parse_rate(["3", None, "4", None])
    0.5
    """
    out = _answers(answers)
    return float(np.mean([a is not None for a in out]))


def distinct_answers(answers: Sequence[Any], *, n: int) -> np.ndarray:
    """Distinct parsed answers in each group of ``n`` consecutive responses: ``(G,)`` int64, ``G = B / n``.

    Unparseable answers (``None``) are not counted, so an all-unparseable group has 0 and a group that agrees
    on one answer has 1: the count falls to 1 under sharpening and stays 1 through a shared wrong answer.
    Answers are compared as given (canonicalise them first, as the task's parser does).

    >>> distinct_answers(["1", "1", "2", None, None, None], n=3).tolist()
    [2, 0]
    """
    out = _answers(answers)
    n = _positive_int(n, "n")
    if len(out) % n:
        raise ValueError(f"answers: {len(out)} answers do not split into groups of n={n}")
    try:
        return np.array(
            [len({a for a in out[i : i + n] if a is not None}) for i in range(0, len(out), n)],
            dtype=np.int64,
        )
    except TypeError as err:
        raise ValueError(f"answers: must be hashable ({err})") from None


# ----------------------------------------------------------------------------------------------------------
# drift from the initial policy
# ----------------------------------------------------------------------------------------------------------


def _logprobs(
    logp: Any, ref_logp: Any, mask: Any | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, r = np.asarray(logp, dtype=np.float64), np.asarray(ref_logp, dtype=np.float64)
    if a.ndim != 2 or a.shape != r.shape:
        raise ValueError(
            f"ref_logp: logp and ref_logp must be (B, T) arrays of one shape, got {a.shape} and {r.shape}"
        )
    m = np.ones(a.shape, dtype=bool) if mask is None else _mask(mask)
    if m.shape != a.shape:
        raise ValueError(f"mask: shape {m.shape} differs from logp {a.shape}")
    for name, x in (("logp", a), ("ref_logp", r)):
        if np.isnan(x[m]).any() or (x[m] > 0).any():
            raise ValueError(f"{name}: log-probabilities must be <= 0 and not NaN on valid tokens")
    return a, r, m


def kl_k3(logp: Any, ref_logp: Any) -> np.ndarray:
    r"""Per-token k3 estimate of :math:`\mathrm{KL}(\pi\,\Vert\,\pi_{\rm ref})` from tokens sampled from
    :math:`\pi`: ``(B, T)`` float64, elementwise

    .. math:: k_3 = e^{\Delta} - 1 - \Delta, \qquad \Delta = \log\pi_{\rm ref}(y_t\mid h_t) - \log\pi(y_t\mid h_t)

    (Schulman, "Approximating KL divergence", 2020; veRL's ``low_var_kl`` without its clamp;
    :func:`sharpen.grpo.kl_k3` is the torch twin the loss uses). Always :math:`\ge 0`. Given the prefix
    :math:`h_t`, :math:`\mathbb{E}_{y_t\sim\pi}[k_3] = \mathrm{KL}(\pi(\cdot\mid h_t)\,\Vert\,\pi_{\rm ref}(\cdot\mid
    h_t))` exactly (as :math:`\mathbb{E}[e^\Delta] = 1` when both put mass on every token), with less variance
    than :math:`k_1=-\Delta` when the two are close. Both log-probabilities must be of the distribution the
    tokens were *sampled* from -- the same temperature, no nucleus cut (``top_p < 1`` leaves
    :math:`\mathbb{E}[e^\Delta] < 1` and biases it). ``+inf`` where :math:`\Delta = +\infty`.

    >>> kl_k3([[-1.0, -2.0]], [[-1.0, -1.0]]).round(4).tolist()
    [[0.0, 0.7183]]
    """
    a, r = np.asarray(logp, dtype=np.float64), np.asarray(ref_logp, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"ref_logp: shape {r.shape} differs from logp {a.shape}")
    delta = r - a
    with np.errstate(over="ignore", invalid="ignore"):
        k3 = np.expm1(delta) - delta
    return np.where(np.isposinf(delta), np.inf, k3)


def sequence_kl(
    logp: Any,
    ref_logp: Any,
    mask: Any | None = None,
    *,
    estimator: Literal["k3", "k1"] = "k3",
) -> np.ndarray:
    r"""Per-response estimate of the sequence-level :math:`\mathrm{KL}(\pi(\cdot\mid q)\,\Vert\,\pi_{\rm ref}(\cdot\mid
    q))`: the masked sum over its tokens of the per-token estimate, ``(B,)`` float64.

    By the chain rule :math:`\mathrm{KL}(\pi(y\mid q)\Vert\pi_{\rm ref}(y\mid q)) = \mathbb{E}_{y\sim\pi}
    \sum_t \mathrm{KL}(\pi(\cdot\mid h_t)\Vert\pi_{\rm ref}(\cdot\mid h_t))` over the positions the response
    reaches (a response that stopped contributes nothing after its end token; one cut by the cap is a sample
    of the capped distribution), so with responses sampled from :math:`\pi` both per-token estimators give an
    unbiased estimate per response:

    * ``k3`` (default): :math:`\sum_t k_3` (:func:`kl_k3`), never negative, low variance;
    * ``k1``: :math:`\sum_t (\log\pi - \log\pi_{\rm ref}) = \log\pi(y\mid q) - \log\pi_{\rm ref}(y\mid q)`, the
      plain log-ratio, unbiased too but negative on some samples.

    The mean over a batch estimates the KL averaged over its questions. The token mean that the trainer logs
    as ``kl_to_initial`` (:math:`\sum k_3 / \sum m`) is this divided by the mean length: a per-token drift,
    not a KL of anything when lengths change. ``mask`` (``(B, T)``, right-padded; None = all valid) selects
    the response tokens; log-probabilities on masked positions are ignored.

    >>> sequence_kl([[-1.0, -2.0, -3.0]], [[-1.0, -1.0, -9.0]], [[1, 1, 0]]).round(4).tolist()
    [0.7183]
    """
    a, r, m = _logprobs(logp, ref_logp, mask)
    if estimator == "k3":
        per_token = kl_k3(np.where(m, a, 0.0), np.where(m, r, 0.0))
    elif estimator == "k1":
        per_token = a - r
    else:
        raise ValueError(f"estimator: must be 'k3' or 'k1', got {estimator!r}")
    return np.where(m, per_token, 0.0).sum(axis=1)
