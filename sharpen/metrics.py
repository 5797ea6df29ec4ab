"""Training metrics for unsupervised RLVR, named as TTRL / veRL log them.

Two layers:

* **per-group functions** over plain arrays or lists describing the ``N`` rollouts of one prompt
  (``label_accuracy``, ``majority_ratio``, ``ground_truth_ratio``, ``majority_voting_reward``,
  ``reward_accuracy``, ``pass_at_n``), plus batch-level quantities (``pseudo_label_acc``,
  ``point_biserial``, ``mean_token_entropy``, ``response_length``, ``underflow_fraction``) and the
  unbiased ``pass_at_k`` estimator;
* **one batch function** ``ttrl_metrics`` that splits a batch by prompt, computes the per-group
  metrics and averages them over prompts, returning the keys TTRL logs.

Run-level indicators: ``model_collapse_step`` (the Model Collapse Step, MCS, of He et al. 2026,
see docs/metrics.md), ``step_noise`` (the step-to-step noise a noise-aware peak rule scales
its decline by) and ``gt_gain``.

Conventions
-----------
* Binary inputs (``correct``, GT rewards) must be 0/1 (bool, int or float); anything else raises.
* Inputs may be lists, numpy arrays or torch tensors; results are Python floats (float64 maths).
* Every function raises ``ValueError`` naming the argument on empty input, length mismatch, NaN or
  non-binary values where binary is required.

Bad input
---------
Every error is a one-line ``ValueError`` ``name: problem`` that names the argument at fault
(``x: contains inf``, ``window: must be an integer >= 1``, ``answers[2]: is an unhashable list ...``):

* numeric vectors (``correct``, ``proxy_rewards``, ``gt_rewards``, ``before``/``after``,
  ``log_probs_sum``, ``trailing_mean``'s ``x``): not 1-D, empty, not real numbers (str, object,
  complex or datetime dtype; ragged or too deeply nested lists), NaN (``x`` keeps it, see
  :func:`trailing_mean`), inf (``log_probs_sum``: only +inf; ``-inf`` is an underflow by
  definition); binary ones holding values other than 0/1; paired vectors of different lengths;
* answers: a single string instead of a sequence, empty, a float NaN (use ``None`` for unparseable),
  an unhashable entry (``answers[2]: is an unhashable list``); ``groups`` a string or not a sequence, of
  another length than the answers, holding ``None`` or an unhashable id; groups of unequal sizes or
  labels not constant within a group (``ttrl_metrics``); ``label`` None or NaN where a label is
  required (``labels[i]`` in ``ttrl_metrics``, which also needs hashable labels); ``equivalent`` not
  callable;
* ``pass_at_k``: non-integers, values of 2**63 or more, more than 32 dimensions, shapes that do not
  broadcast, ``n < 1``, ``c`` outside [0, n], ``k`` outside [1, n]; ``mean_token_entropy`` /
  ``response_length``: logits not (B, T, V) real numbers, a mask of another shape, not 0/1 or with no
  valid token, NaN logits, ``temperature`` not a finite number > 0 (bools rejected);
* options: an unknown ``ties`` / ``rule`` / ``nan`` mode (of any type), thresholds that are not finite
  numbers (``threshold``, ``reward_threshold``, ``min_decline``; bools rejected), ``min_decline`` <= 0,
  ``noise_sigmas`` negative, window sizes not integers >= 1, ``steps`` not strictly increasing integers
  below 2**63, a non-floating ``dtype``.

Values: finite input gives finite results. Means, correlations and the step noise are computed on the
values divided by a power of two near their largest magnitude (exact), so values near 1e308 do not
overflow and values near 1e-308 do not underflow; only a result that itself exceeds the float range
is +-inf (``gt_gain``'s difference of two means, ``step_noise`` of steps near 1e308). ``pass_at_k``
takes time and memory linear in the number of problems for any ``n`` (no O(n) work per problem).

Not errors: statistics that are undefined on valid data (``point_biserial`` of a constant vector,
``step_noise`` of fewer than 3 values, no collapse) return ``None`` or NaN as each function documents.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from sharpen.answers import (
    _brief,
    _Canonical,
    _exact_plurality,
    _finite_float,
    canonicalize,
    majority_vote,
)

__all__ = [
    "CollapseStep",
    "trailing_mean",
    "exact_match",
    "label_accuracy",
    "majority_ratio",
    "ground_truth_ratio",
    "majority_voting_reward",
    "reward_accuracy",
    "pass_at_n",
    "pass_at_k",
    "pseudo_label_acc",
    "point_biserial",
    "mean_token_entropy",
    "response_length",
    "underflow_fraction",
    "ttrl_metrics",
    "step_noise",
    "model_collapse_step",
    "gt_gain",
]

Answer = Hashable | None
Equivalence = Callable[[Any, Any], bool]


# --------------------------------------------------------------------------------------------
# input validation helpers
# --------------------------------------------------------------------------------------------


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Array view of a list, numpy array or torch tensor (detached, on CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError, OverflowError) as exc:  # ragged or too deeply nested lists
        raise ValueError(f"{name}: must be a rectangular array of numbers") from exc


def _real(arr: np.ndarray, name: str, what: str = "numeric") -> np.ndarray:
    """``arr`` if it holds real numbers (bool, int, float); complex, str, object, dates raise."""
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: must be {what}, got dtype {arr.dtype}")
    return arr


def _pow2_scale(x: np.ndarray) -> float:
    """A power of two near ``max |x|`` (1 for an all-zero ``x``): dividing by it is exact and brings
    finite values into (-2, 2), so sums and squares of huge (or tiny) values neither overflow nor
    underflow."""
    top = float(np.max(np.abs(x), initial=0.0))
    return math.ldexp(1.0, math.frexp(top)[1] - 1) if top > 0 else 1.0


def _mean(x: np.ndarray) -> float:
    """Mean of finite float64 values, exact in scale: the mean of huge values does not overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        m = float(x.mean())
    if math.isfinite(m):
        return m
    s = _pow2_scale(x)
    return float((x / s).mean()) * s


def _number(v: Any, name: str) -> float:
    """``v`` as a finite float (bools and non-numbers raise)."""
    f = _finite_float(v)
    if f is None:
        raise ValueError(f"{name}: must be a finite number, got {_brief(v)}")
    return f


def _float_vector(x: Any, name: str, *, allow_nan: bool = False) -> np.ndarray:
    """1-D float64 array, non-empty, finite (NaN only if ``allow_nan``)."""
    arr = _to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name}: must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: is empty")
    arr = _real(arr, name).astype(np.float64)
    if not allow_nan and np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN")
    if np.isinf(arr).any():
        raise ValueError(f"{name}: contains inf")
    return arr


def _binary_vector(x: Any, name: str) -> np.ndarray:
    """1-D float64 array of 0/1 values (bools, ints or floats equal to 0 or 1)."""
    arr = _float_vector(x, name)
    bad = (arr != 0.0) & (arr != 1.0)
    if bad.any():
        raise ValueError(
            f"{name}: must be binary (0/1); found {arr[bad][:3].tolist()} at "
            f"positions {np.flatnonzero(bad)[:3].tolist()}"
        )
    return arr


def _same_length(a: np.ndarray | Sequence, b: np.ndarray | Sequence, na: str, nb: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{na}, {nb}: must have the same length, got {len(a)} and {len(b)}")


def _answer_list(answers: Any, name: str = "answers") -> list[Answer]:
    """Answers as a list; numpy/torch arrays are converted element-wise."""
    if isinstance(answers, str | bytes):
        raise ValueError(f"{name}: must be a sequence of answers, got a single string")
    if hasattr(answers, "tolist"):
        answers = answers.tolist()
    try:
        out = list(answers)
    except TypeError as exc:
        raise ValueError(f"{name}: must be a sequence of answers, got {type(answers)!r}") from exc
    if not out:
        raise ValueError(f"{name}: is empty")
    hashable = _all_hashable(out)  # then only a NaN can raise below
    for i, a in enumerate(out):
        if isinstance(a, float) and math.isnan(a):
            raise ValueError(f"{name}[{i}]: is NaN; use None for an unparseable answer")
        if not hashable:
            _check_hashable(a, f"{name}[{i}]")
    return out


def _all_hashable(items: list) -> bool:
    """Whether every item hashes, in one call (a False sends the caller to its per-item checks, which name
    the first offender as before)."""
    try:
        hash(tuple(items))
    except Exception:  # noqa: BLE001 - whatever an item's __hash__ raises, the per-item checks raise it
        return False
    return True


def _check_hashable(a: Any, name: str) -> None:
    try:
        hash(a)
    except TypeError:
        raise ValueError(
            f"{name}: is an unhashable {type(a).__name__} ({_brief(a, 40)}); "
            "use hashable values (str, int, tuple) or None"
        ) from None


def _item_list(x: Any, name: str) -> list:
    """``x`` as a list (arrays element-wise); a single string or a non-iterable raises."""
    if isinstance(x, str | bytes):
        raise ValueError(f"{name}: must be a sequence, got a single {type(x).__name__}")
    if hasattr(x, "tolist"):
        x = x.tolist()
    try:
        return list(x)
    except TypeError:
        raise ValueError(f"{name}: must be a sequence, got {type(x).__name__}") from None


def _group_index(groups: Any, n: int, name: str = "groups") -> list[np.ndarray]:
    """Indices of each group in first-seen order; ``None`` means one group."""
    if groups is None:
        return [np.arange(n)]
    ids = _item_list(groups, name)
    if len(ids) != n:
        raise ValueError(f"{name}: must have length {n} (one id per rollout), got {len(ids)}")
    order: dict[Any, list[int]] = {}
    if _all_hashable(ids) and not any(g is None for g in ids):
        for i, g in enumerate(ids):
            order.setdefault(g, []).append(i)
    else:
        for i, g in enumerate(ids):
            if g is None:
                raise ValueError(f"{name}[{i}]: is None; pass groups=None for a single group")
            _check_hashable(g, f"{name}[{i}]")
            order.setdefault(g, []).append(i)
    return [np.asarray(v, dtype=np.int64) for v in order.values()]


# --------------------------------------------------------------------------------------------
# per-group metrics
# --------------------------------------------------------------------------------------------


def exact_match(gold: Any, pred: Any) -> bool:
    """Default answer equivalence: equal canonical strings (ints compared via ``str``).

    ``None`` (unparseable) never matches.

    >>> exact_match(42, "42"), exact_match("1/2", None)
    (True, False)
    """
    if gold is None or pred is None:
        return False
    g, p = canonicalize(str(gold)), canonicalize(str(pred))
    return g is not None and g == p


def _exact_match(gold: Any, pred: Any, canon: _Canonical) -> bool:
    """:func:`exact_match` with the canonical strings taken from ``canon``."""
    if gold is None or pred is None:
        return False
    g = canon[str(gold)]
    return g is not None and g == canon[str(pred)]


def label_accuracy(
    answers: Sequence[Answer], label: Any, equivalent: Equivalence = exact_match
) -> float:
    """TTRL ``label_accuracy`` of one prompt: 1 if the majority answer equals the label.

    The majority answer is ``sharpen.answers.majority_vote(answers).answer`` (TTRL rule: unparseable
    ``None`` answers do not vote, ties go to the first-seen answer). If nothing parses the label is
    "None" and the accuracy 0.

    Parameters
    ----------
    answers : sequence of hashable or None, length N
    label : the ground-truth answer of the prompt (string or int)
    equivalent : ``fn(gold, pred) -> bool``; default :func:`exact_match`
        (``sharpen.answers.equivalent`` gives math-aware grading).

    >>> label_accuracy(["3", "4", "3", None], "3")
    1.0
    >>> label_accuracy(["4", "3"], "3")  # tie: the first-seen "4" wins
    0.0
    """
    answers = _answer_list(answers)
    _check_label(label, "label")
    if not callable(equivalent):
        raise ValueError(
            f"equivalent: must be callable fn(gold, pred) -> bool, got {_brief(equivalent)}"
        )
    winner = majority_vote(answers).answer
    if winner is None:
        return 0.0
    return 1.0 if equivalent(label, winner) else 0.0


def _check_label(label: Any, name: str) -> None:
    if label is None:
        raise ValueError(f"{name}: is None; a ground-truth label is required")
    if isinstance(label, float) and math.isnan(label):
        raise ValueError(f"{name}: is NaN; a ground-truth label is required")
    _check_hashable(label, name)


def majority_ratio(answers: Sequence[Answer]) -> float:
    """TTRL ``majority_ratio``: majority count / N, unparseable answers kept in N.

    .. math:: \\mathrm{ratio} = \\max_a \\#\\{j: \\mathrm{ans}_j = a\\} / N, \\quad 0 \\text{ if nothing parses}

    >>> majority_ratio(["3", "3", "5", None])
    0.5
    >>> majority_ratio([None, None])
    0.0
    """
    answers = _answer_list(answers)
    vote = majority_vote(answers)
    if vote.answer is None:
        return 0.0
    return float(vote.count) / len(answers)


def ground_truth_ratio(correct: Sequence[float]) -> float:
    """TTRL ``ground_truth_ratio``: the fraction of rollouts that are correct (the GT reward).

    ``correct`` : (N,) 0/1.

    >>> ground_truth_ratio([1, 0, 0, 1])
    0.5
    """
    return float(_binary_vector(correct, "correct").mean())


def majority_voting_reward(proxy_rewards: Sequence[float]) -> float:
    """TTRL ``majority_voting_reward``: the mean proxy reward of the group.

    ``proxy_rewards`` : (N,) finite floats (0/1 for majority voting, any real for other rewards).

    >>> majority_voting_reward([1, 1, 0, 1])
    0.75
    """
    return _mean(_float_vector(proxy_rewards, "proxy_rewards"))


def reward_accuracy(
    proxy_rewards: Sequence[float],
    gt_rewards: Sequence[float],
    *,
    threshold: float | None = None,
) -> float:
    """TTRL ``reward_accuracy``: fraction of rollouts whose 0/1 proxy reward equals the GT reward.

    .. math:: \\frac1N\\sum_j \\mathbb 1[\\hat r_j = r^{GT}_j]

    Continuous proxies are never binarised silently: with ``threshold=None`` the proxy must be
    0/1 (else ``ValueError``); with a threshold the proxy is binarised as ``proxy >= threshold``.
    For self-verification pass the verifier's 0/1 scores.

    >>> reward_accuracy([1, 1, 0, 0], [1, 0, 0, 0])  # a wrong answer rewarded by the vote
    0.75
    >>> reward_accuracy([0.9, 0.2], [1, 0], threshold=0.5)
    1.0
    """
    gt = _binary_vector(gt_rewards, "gt_rewards")
    if threshold is None:
        proxy = _binary_vector(proxy_rewards, "proxy_rewards")
    else:
        threshold = _number(threshold, "threshold")
        proxy = (_float_vector(proxy_rewards, "proxy_rewards") >= threshold).astype(np.float64)
    _same_length(proxy, gt, "proxy_rewards", "gt_rewards")
    return float((proxy == gt).mean())


def pass_at_n(correct: Sequence[float]) -> float:
    """TTRL ``pass@N``: 1 if any of the N rollouts is correct.

    >>> pass_at_n([0, 0, 1]), pass_at_n([0, 0])
    (1.0, 0.0)
    """
    return float(_binary_vector(correct, "correct").max())


def pass_at_k(n: Any, c: Any, k: Any) -> float | np.ndarray:
    """Unbiased pass@k estimator (Chen et al. 2021), vectorised over broadcast ``n, c, k``.

    .. math:: \\mathrm{pass@}k = 1 - \\binom{n-c}{k}\\Big/\\binom{n}{k}
              = 1 - \\prod_{i=n-c+1}^{n}\\Big(1 - \\frac{k}{i}\\Big)

    evaluated as ``-expm1(sum(log1p(-k / i)))`` (no large binomials, accurate when pass@k is
    tiny) over the ``min(c, k)`` factors of the shorter of the two equal products
    (:math:`\\prod_{i=n-c+1}^{n}(1-k/i) = \\prod_{i=n-k+1}^{n}(1-c/i)`); exactly 1 when ``n - c < k``.
    Where both ``c`` and ``k`` exceed 1024 the log-binomials are differenced with ``gammaln``
    instead (absolute error ~1e-16 n log n in the log), so time and memory stay linear in the
    number of problems for any ``n`` below 2**63.

    Parameters
    ----------
    n : int or int array -- samples drawn per problem, ``n >= 1``
    c : int or int array -- correct samples, ``0 <= c <= n``
    k : int or int array -- budget, ``1 <= k <= n``

    Returns
    -------
    float for scalar inputs, else a float64 array of the broadcast shape.

    >>> pass_at_k(4, 1, 2)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    0.5
    >>> pass_at_k([10, 10], [0, 10], 1).tolist()
    [0.0, 1.0]
    """
    arrs = {}
    for name, v in (("n", n), ("c", c), ("k", k)):
        a = _to_numpy(v, name)
        if a.size == 0:
            raise ValueError(f"{name}: is empty")
        if a.ndim > 32:  # numpy broadcasts at most 32 dimensions
            raise ValueError(f"{name}: has more than 32 dimensions ({a.ndim})")
        if a.dtype.kind not in "iuf":
            raise ValueError(f"{name}: must be integer, got dtype {a.dtype}")
        if a.dtype.kind == "f" and (not np.all(np.isfinite(a)) or not np.all(a == np.round(a))):
            raise ValueError(f"{name}: must hold integers")
        if a.dtype.kind == "u":
            too_big = a > np.iinfo(np.int64).max
        else:
            too_big = np.abs(a.astype(np.float64)) >= 2.0**63
        if a.dtype.kind in "uf" and np.any(too_big):
            raise ValueError(f"{name}: must hold integers below 2**63")
        arrs[name] = a.astype(np.int64)
    try:
        nn, cc, kk = np.broadcast_arrays(arrs["n"], arrs["c"], arrs["k"])
    except ValueError as exc:
        raise ValueError(f"n, c, k: do not broadcast ({exc})") from exc
    if np.any(nn < 1):
        raise ValueError("n: must be >= 1")
    if np.any(cc < 0) or np.any(cc > nn):
        raise ValueError("c: must satisfy 0 <= c <= n")
    if np.any(kk < 1) or np.any(kk > nn):
        raise ValueError("k: must satisfy 1 <= k <= n")

    flat_n, flat_c, flat_k = nn.ravel(), cc.ravel(), kk.ravel()
    out = np.ones(flat_n.shape, dtype=np.float64)
    live = (flat_n - flat_c) >= flat_k  # otherwise every k-subset holds a correct sample
    n_l, c_l, k_l = flat_n[live], flat_c[live], flat_k[live]
    width = np.minimum(c_l, k_l)  # factors of the shorter product; its terms use the other one
    other = np.maximum(c_l, k_l).astype(np.float64)
    log_ratio = np.zeros(n_l.shape)  # log C(n-c, k) / C(n, k)
    short = np.flatnonzero(width <= _PASS_AT_K_TERMS)
    w_max = int(width[short].max(initial=0))
    if w_max > 0:
        offs = np.arange(w_max)  # (W,)
        rows_per_chunk = max(1, (1 << 22) // w_max)  # at most ~4M terms at a time
        for start in range(0, short.size, rows_per_chunk):
            rows = short[start : start + rows_per_chunk]
            i = (n_l[rows] - width[rows] + 1)[:, None] + offs[None, :]  # (M, W): n-w+1 .. n
            used = offs[None, :] < width[rows, None]
            terms = np.where(used, np.log1p(-other[rows, None] / np.maximum(i, 1)), 0.0)
            log_ratio[rows] = terms.sum(axis=1)
    long = np.flatnonzero(width > _PASS_AT_K_TERMS)
    if long.size:
        from scipy import special  # here, not at the top: importing this module stays free of scipy

        n_g, c_g, k_g = (x[long].astype(np.float64) for x in (n_l, c_l, k_l))
        log_ratio[long] = np.minimum(
            0.0,
            special.gammaln(n_g - c_g + 1)
            - special.gammaln(n_g - c_g - k_g + 1)
            - special.gammaln(n_g + 1)
            + special.gammaln(n_g - k_g + 1),
        )
    out[live] = 0.0 - np.expm1(log_ratio)  # (0.0 - x, not -x: c = 0 gives 0.0, not -0.0)
    out = out.reshape(nn.shape)
    return float(out) if out.ndim == 0 else out


# pass_at_k: products of more factors than this are differenced with gammaln (bounded work)
_PASS_AT_K_TERMS = 1024


# --------------------------------------------------------------------------------------------
# batch-level metrics
# --------------------------------------------------------------------------------------------


def pseudo_label_acc(
    proxy_rewards: Sequence[float],
    correct: Sequence[float],
    groups: Sequence[Hashable] | None = None,
    *,
    ties: Literal["mean", "first"] = "mean",
) -> float:
    """Fraction of prompts whose top-proxy-reward rollout is correct (certainty rewards).

    For each prompt the rollouts with the largest proxy reward are the pseudo-label; the prompt
    scores 1 if it is correct. Ties among top rollouts: ``"mean"`` (default) scores the fraction of
    tied top rollouts that are correct -- the expectation under a uniform tie-break, independent of
    batch order; ``"first"`` takes the first top rollout in batch order (``argmax``).

    Parameters
    ----------
    proxy_rewards : (B,) finite floats
    correct : (B,) 0/1
    groups : (B,) prompt ids, or None for one group

    >>> pseudo_label_acc([0.1, 0.9, 0.5, 0.2], [0, 1, 1, 0], groups=[0, 0, 1, 1])
    1.0
    >>> pseudo_label_acc([1, 1, 0], [1, 0, 0])  # two rollouts tie for the top
    0.5
    """
    if not isinstance(ties, str) or ties not in ("mean", "first"):
        raise ValueError(f"ties: must be 'mean' or 'first', got {_brief(ties)}")
    proxy = _float_vector(proxy_rewards, "proxy_rewards")
    corr = _binary_vector(correct, "correct")
    _same_length(proxy, corr, "proxy_rewards", "correct")
    scores = []
    for idx in _group_index(groups, len(proxy)):
        p, c = proxy[idx], corr[idx]
        if ties == "first":
            scores.append(c[int(np.argmax(p))])
        else:
            scores.append(c[p == p.max()].mean())
    return float(np.mean(scores))


def point_biserial(proxy_rewards: Sequence[float], gt_rewards: Sequence[float]) -> float | None:
    """Point-biserial correlation: Pearson correlation of a continuous proxy with a 0/1 GT reward.

    .. math:: r = \\frac{\\sum_j (x_j-\\bar x)(g_j-\\bar g)}
                   {\\sqrt{\\sum_j (x_j-\\bar x)^2\\sum_j (g_j-\\bar g)^2}}

    Returns ``None`` (never NaN) when the correlation is undefined: fewer than two rollouts, a
    constant proxy, or a GT reward that is all 0 or all 1. Callers decide how to log a missing
    value.

    >>> point_biserial([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) > 0.9
    True
    >>> point_biserial([0.3, 0.5], [1, 1]) is None
    True
    """
    x = _float_vector(proxy_rewards, "proxy_rewards")
    g = _binary_vector(gt_rewards, "gt_rewards")
    _same_length(x, g, "proxy_rewards", "gt_rewards")
    if len(x) < 2:
        return None
    x = x / _pow2_scale(x)  # exact; the correlation is scale-free, and huge or tiny x stay in range
    dx, dg = x - x.mean(), g - g.mean()
    sxx, sgg = float(dx @ dx), float(dg @ dg)
    # Relative tolerance: a proxy that is constant up to rounding has no defined correlation.
    # Relative to the proxy's own magnitude, so tiny rewards (e.g. probabilities ~1e-40) still count.
    scale = float(np.max(np.abs(x)))
    if sgg == 0.0 or scale == 0.0 or sxx <= (1e-12 * scale) ** 2 * len(x):
        return None
    r = float(dx @ dg) / math.sqrt(sxx * sgg)
    return min(1.0, max(-1.0, r))


def mean_token_entropy(logits: Any, mask: Any, temperature: float = 1.0) -> float:
    """veRL ``actor/entropy``: token-mean entropy over all valid response tokens of a batch.

    .. math:: \\bar H = \\frac{\\sum_{b,t} m_{bt} H(\\mathrm{softmax}(z_{bt}/\\tau))}{\\sum_{b,t} m_{bt}}

    Parameters
    ----------
    logits : (B, T, V) numpy array or torch tensor (normalised log-probs work too, with
        ``temperature=1``)
    mask : (B, T) 0/1 (bool, int or float), at least one valid token in the batch
    temperature : rollout temperature, > 0

    Returns a float64 Python float (the token-mean, not the mean of per-sequence means).

    >>> import numpy as np
    >>> z = np.zeros((1, 2, 4)); m = np.array([[1, 0]])
    >>> round(mean_token_entropy(z, m), 6) == round(float(np.log(4)), 6)
    True
    """
    t = _finite_float(temperature)
    if t is None or not t > 0:
        raise ValueError(f"temperature: must be a finite number > 0, got {_brief(temperature)}")
    if not hasattr(logits, "shape"):
        logits = _to_numpy(logits, "logits")
    shape = tuple(logits.shape)
    if len(shape) != 3:
        raise ValueError(f"logits: must be (B, T, V), got shape {shape}")
    m = _binary_array(mask, "mask")
    if m.shape != shape[:2]:
        raise ValueError(f"mask: must be (B, T) = {shape[:2]}, got {m.shape}")
    if m.sum() == 0:
        raise ValueError("mask: has no valid token")
    if isinstance(logits, np.ndarray):
        _real(logits, "logits", "real numbers")
        if np.isnan(logits).any():
            raise ValueError("logits: contains NaN")
    elif hasattr(logits, "isnan") and bool(logits.isnan().any()):
        raise ValueError("logits: contains NaN")
    from sharpen.rewards import token_entropies  # torch: imported only when called

    ent = _to_numpy(token_entropies(logits, temperature=temperature), "logits")  # (B, T)
    ent = ent.astype(np.float64)
    # Masked positions may hold garbage (padding logits); select, do not multiply.
    return float(ent[m == 1].sum() / m.sum())


def response_length(mask: Any) -> float:
    """Mean number of valid response tokens per sequence (length collapse).

    ``mask`` : (B, T) 0/1 right-padded response mask.

    >>> response_length([[1, 1, 1, 0], [1, 0, 0, 0]])
    2.0
    """
    m = _to_numpy(mask, "mask")
    if m.ndim != 2:
        raise ValueError(f"mask: must be (B, T), got shape {m.shape}")
    if m.size == 0:
        raise ValueError("mask: is empty")
    m = _binary_array(m, "mask")
    return float(m.sum(axis=1).mean())


def _binary_array(x: Any, name: str) -> np.ndarray:
    """float64 array of 0/1 values (bool, int or float), any shape."""
    m = _real(_to_numpy(x, name), name, "binary (0/1)").astype(np.float64)
    if ((m != 0) & (m != 1)).any():
        raise ValueError(f"{name}: must be binary (0/1)")
    return m


def underflow_fraction(log_probs_sum: Any, dtype: Any = np.float32) -> float:
    """Share of sequences whose probability ``exp(sum_t log pi(y_t))`` is 0 in ``dtype``.

    The probability reward (RLSC) is ``exp`` of the summed log-probs; in float32 it is 0 below a
    sum of about -103.97 (subnormals included). ``dtype`` is a numpy floating dtype (float16,
    float32, float64) or a torch floating dtype (e.g. ``torch.bfloat16``, evaluated in torch).
    ``-inf`` counts as underflow (probability 0).

    ``log_probs_sum`` : (B,) summed log-probabilities (float; no NaN, no +inf).

    >>> underflow_fraction([-10.0, -120.0, -50.0, -200.0])
    0.5
    """
    arr = _to_numpy(log_probs_sum, "log_probs_sum")
    if arr.ndim != 1:
        raise ValueError(f"log_probs_sum: must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("log_probs_sum: is empty")
    arr = _real(arr, "log_probs_sum").astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError("log_probs_sum: contains NaN")
    if np.isposinf(arr).any():
        raise ValueError("log_probs_sum: contains +inf")
    if type(dtype).__module__ == "torch":
        import torch

        if not dtype.is_floating_point:
            raise ValueError(f"dtype: must be a floating type, got {dtype}")
        zero = torch.exp(torch.as_tensor(arr).to(dtype)) == 0
        return float(zero.double().mean())
    try:
        np_dtype = np.dtype(dtype)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # np.dtype parses many things
        raise ValueError(f"dtype: must be a floating dtype, got {_brief(dtype)}") from exc
    if not np.issubdtype(np_dtype, np.floating):
        raise ValueError(f"dtype: must be a floating dtype, got {np_dtype}")
    with np.errstate(under="ignore", over="ignore"):
        zero = np.exp(arr.astype(np_dtype)) == 0
    return float(zero.mean())


def ttrl_metrics(
    answers: Sequence[Answer],
    labels: Sequence[Any],
    groups: Sequence[Hashable] | None,
    proxy_rewards: Sequence[float] | None = None,
    correct: Sequence[float] | None = None,
    prefix: str = "",
    *,
    equivalent: Equivalence = exact_match,
    reward_threshold: float | None = None,
) -> dict[str, float]:
    """TTRL's per-prompt metrics for one batch, averaged over prompts.

    Parameters
    ----------
    answers : (B,) extracted answers, None = unparseable
    labels : (B,) ground-truth answer of each rollout's prompt (constant within a group)
    groups : (B,) prompt ids, or None for one group; groups must all have the same size N
    proxy_rewards : (B,) optional proxy rewards (0/1 unless ``reward_threshold`` is given)
    correct : (B,) optional 0/1 GT rewards; if None, ``equivalent(label, answer)`` is used
    prefix : prepended to every key, e.g. ``"train/"`` or ``"val-ttrl/"``
    equivalent : answer equivalence for the label and for ``correct`` when it is computed
    reward_threshold : passed to :func:`reward_accuracy` for continuous proxies

    Returns
    -------
    dict with keys ``label_accuracy``, ``majority_ratio``, ``ground_truth_ratio``, ``pass@{N}``,
    and, when ``proxy_rewards`` is given, ``majority_voting_reward`` and ``reward_accuracy``.

    >>> m = ttrl_metrics(["1", "1", "2", "3", "3", None], ["1"] * 3 + ["4"] * 3, [0, 0, 0, 1, 1, 1])
    >>> m["label_accuracy"], m["majority_ratio"], m["pass@3"]
    (0.5, 0.6666666666666666, 0.5)
    """
    if not isinstance(prefix, str):
        raise ValueError(f"prefix: must be a string, got {type(prefix)!r}")
    if not callable(equivalent):
        raise ValueError(
            f"equivalent: must be callable fn(gold, pred) -> bool, got {_brief(equivalent)}"
        )
    answers = _answer_list(answers)
    labels = _item_list(labels, "labels")
    _same_length(answers, labels, "answers", "labels")
    if not _all_hashable(labels) or any(
        lab is None or (isinstance(lab, float) and math.isnan(lab)) for lab in labels
    ):
        for i, lab in enumerate(labels):
            _check_label(lab, f"labels[{i}]")
    index = _group_index(groups, len(answers))
    sizes = {len(idx) for idx in index}
    if len(sizes) != 1:
        raise ValueError(f"groups: must all have the same size N, got sizes {sorted(sizes)}")
    (n,) = sizes

    # Each distinct answer and label string is canonicalised once for the batch (a rollout's answer was
    # canonicalised about four times: two votes, its correctness, the label check); the vote and the
    # default equivalence read the cache, with the same results as majority_vote and exact_match.
    canon = _Canonical()
    same = (
        (lambda gold, pred: _exact_match(gold, pred, canon))
        if equivalent is exact_match
        else equivalent
    )
    if correct is None:
        corr = np.array(
            [1.0 if same(lab, a) else 0.0 for lab, a in zip(labels, answers, strict=True)]
        )
    else:
        corr = _binary_vector(correct, "correct")
        _same_length(corr, answers, "correct", "answers")
    proxy = None
    if proxy_rewards is not None:
        proxy = _float_vector(proxy_rewards, "proxy_rewards")
        _same_length(proxy, answers, "proxy_rewards", "answers")

    label_acc, majority = [], []
    keys = [canon[a] if isinstance(a, str) else a for a in answers]
    for idx in index:
        rows = idx.tolist()
        label = labels[rows[0]]
        if any(labels[i] is not label and labels[i] != label for i in rows[1:]):
            raise ValueError(f"labels: must be constant within a group; group of rollout {rows[0]}")
        # majority_vote of the group's answers, its strings canonicalised from the cache: a vote at
        # the "exact" level on the canonical strings has the same classes and spellings
        winner, count = _exact_plurality([keys[i] for i in rows])
        parsed = winner is not None  # label_accuracy and majority_ratio are 0 if nothing parses
        label_acc.append(1.0 if parsed and same(label, winner) else 0.0)
        majority.append(float(count) / n if parsed else 0.0)
    # the per-group means of the 0/1 and proxy metrics, one row per group (G, N)
    order = np.concatenate(index)
    corr_g = corr[order].reshape(len(index), n)
    rows = {
        "label_accuracy": label_acc,
        "majority_ratio": majority,
        "ground_truth_ratio": corr_g.mean(axis=1),  # sums of 0/1: exact in any order
        f"pass@{n}": corr_g.max(axis=1),
    }
    if proxy is not None:
        proxy_g = proxy[order].reshape(len(index), n)
        # rows of 0/1 values (a binary proxy): their sums are exact in any order, so one reduction
        if ((proxy_g == 0.0) | (proxy_g == 1.0)).all():
            rows["majority_voting_reward"] = proxy_g.mean(axis=1)
        else:
            rows["majority_voting_reward"] = [_mean(row) for row in proxy_g]
        if reward_threshold is None:
            binary = _binary_vector(proxy, "proxy_rewards")
        else:
            binary = (proxy >= _number(reward_threshold, "reward_threshold")).astype(np.float64)
        rows["reward_accuracy"] = (binary[order].reshape(len(index), n) == corr_g).mean(axis=1)
    return {prefix + k: _mean(np.asarray(v, dtype=np.float64)) for k, v in rows.items()}


# --------------------------------------------------------------------------------------------
# run-level indicators
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollapseStep:
    """Result of :func:`model_collapse_step`.

    step : the training step declared as the collapse step
    rule : the rule that decided it
    evidence : the numbers that decided it (see :func:`model_collapse_step`)
    """

    step: int
    rule: Literal["threshold", "peak"]
    evidence: Mapping[str, float] = field(default_factory=dict)


def trailing_mean(x: Any, window: int) -> np.ndarray:
    """Causal moving average: mean of the last ``window`` values (fewer at the start).

    ``x`` is a non-empty 1-D vector of finite numbers; ``window`` an integer >= 1. Returns float64 of
    ``x``'s length. Computed from running sums of ``x`` scaled by a power of two (exact), so the sums of
    huge values do not overflow; the result is the same as unscaled wherever that does not overflow.

    A NaN is kept, and the running sum carries it on: the mean at the NaN and every later mean are NaN,
    also once the NaN has left the window (with ``window=1`` only the NaN entry itself, which is
    returned as it is). So drop unlogged entries first, as :func:`model_collapse_step` does.

    >>> trailing_mean([1.0, 3.0, 5.0], 2)
    array([1., 2., 4.])
    >>> trailing_mean([1.0, np.nan, 3.0, 5.0, 7.0], 2)  # the NaN blanks everything after it
    array([ 1., nan, nan, nan, nan])
    """
    x = _float_vector(x, "x", allow_nan=True)
    window = _positive_int(window, "window")
    window = min(window, len(x))  # the same mean; and a window past int64 is no numpy integer
    if window <= 1:
        return x.copy()
    scale = _pow2_scale(x)
    c = np.concatenate([[0.0], np.cumsum(x / scale)])
    hi = np.arange(1, len(x) + 1)
    lo = np.maximum(hi - window, 0)
    return (c[hi] - c[lo]) / (hi - lo) * scale


def _first_run(flags: np.ndarray, length: int) -> int | None:
    """First index starting ``length`` consecutive True flags, or None."""
    run = 0
    for i, f in enumerate(flags):
        run = run + 1 if f else 0
        if run == length:
            return i - length + 1
    return None


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
        raise ValueError(f"{name}: must be an integer >= 1, got {_brief(v)}")
    return int(v)


def step_noise(values: Sequence[float], smoothing: int = 1) -> float:
    r"""Robust step-to-step noise of a logged series, after a trailing mean over ``smoothing`` entries.

    With :math:`d_i = x_{i+1}-x_i` over the non-NaN entries,

    .. math:: \hat\sigma = \frac{1.4826\,\mathrm{median}_i|d_i-\mathrm{median}\,d|}
              {\sqrt2\,\sqrt{\text{smoothing}}}

    the standard deviation of one entry's independent noise, divided by :math:`\sqrt{\text{smoothing}}`
    (what a trailing mean over ``smoothing`` entries leaves of it). The MAD of successive differences
    ignores a trend's constant step and a few large jumps (a real collapse). NaN entries are dropped
    (as in :func:`model_collapse_step`); fewer than 3 remaining entries give NaN.

    Parameters
    ----------
    values : (S,) logged metric values (NaN = not logged; infinite values raise)
    smoothing : trailing-mean window, an integer >= 1

    >>> round(step_noise([0.1, 0.2, 0.3, 0.4]), 9)  # a clean trend has no noise
    0.0
    >>> x = np.random.default_rng(0).normal(0.5, 0.1, 4000)  # seeded example: sigma 0.1
    >>> round(step_noise(x), 2), round(step_noise(x, smoothing=4), 2)
    (0.1, 0.05)
    """
    smoothing = _positive_int(smoothing, "smoothing")
    arr = _to_numpy(values, "values")
    if arr.ndim != 1:
        raise ValueError(f"values: must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return math.nan
    x = _float_vector(arr, "values", allow_nan=True)
    x = x[~np.isnan(x)]
    if x.size < 3:
        return math.nan
    scale = _pow2_scale(x)  # exact; differences of huge values would overflow
    d = np.diff(x / scale)
    mad = float(np.median(np.abs(d - np.median(d))))
    # sqrt of an int beyond the float range (10**400) through its log: math.log takes any int
    root = math.sqrt(smoothing) if smoothing < 2**1000 else math.exp(0.5 * math.log(smoothing))
    return 1.4826 * mad / math.sqrt(2.0) / root * scale


def model_collapse_step(
    series: Sequence[float],
    rule: Literal["threshold", "peak"] = "threshold",
    *,
    steps: Sequence[int] | None = None,
    threshold: float = 0.01,
    consecutive: int = 1,
    smoothing: int = 1,
    min_decline: float = 0.05,
    patience: int = 3,
    noise_sigmas: float | None = None,
    nan: Literal["skip", "raise"] = "skip",
) -> CollapseStep | None:
    """Model Collapse Step (MCS) of a logged metric series, usually reward accuracy.

    Preprocessing, in order:

    1. **NaN** entries (steps where the metric was not logged) are dropped with ``nan="skip"``
       (default; the remaining entries are treated as consecutive) or raise with ``nan="raise"``.
       Infinite values always raise.
    2. **Smoothing**: a causal trailing mean over the last ``smoothing`` kept entries (fewer at
       the start); ``smoothing=1`` (default) uses the raw values. Causal, so the decision at a step
       uses no later data.

    Rules (``s`` the smoothed series, ``t`` the matching steps):

    * ``"threshold"`` (the paper's MCS, :math:`\\min\\{t: \\mathrm{RewardAcc}(t) < 0.01\\}`):
      the first ``t_i`` with ``s_i < threshold`` and the next ``consecutive - 1`` entries also
      below the threshold. Evidence: ``threshold``, ``value`` (``s_i``), ``consecutive``,
      ``run_max`` (largest value in the run).
    * ``"peak"`` (the looser reading: steps until performance peaks and declines): a *sustained
      decline* is ``patience`` consecutive entries each at least ``min_decline`` below the running
      maximum of all earlier entries, ``s_j <= max(s_0..s_{j-1}) - min_decline``. The result is
      the step of that running maximum (its first occurrence), i.e. the peak after which the
      decline began. Evidence: ``peak``, ``peak_step``, ``confirmed_step`` (the last entry of the
      declining run), ``confirmed_value``, ``min_decline``, ``patience``, ``required_decline``.

      **Noise-aware peak rule** (``noise_sigmas`` set): the running maximum of pure noise climbs
      about two noise standard deviations above the mean within tens of steps, so a fixed
      ``min_decline`` below the noise level "finds" a collapse in a flat noisy series. With
      ``noise_sigmas = k`` the required decline becomes

      .. math:: D = \\max\\big(\\texttt{min\\_decline},\\; k\\,\\hat\\sigma\\big),
                \\qquad \\hat\\sigma = \\texttt{step\\_noise}(\\text{series}, \\text{smoothing})

      (:func:`step_noise`; estimated once from the whole kept series -- a scale, not a decision
      time -- and ignored where it is NaN, i.e. fewer than 3 entries). Evidence adds ``noise``
      (:math:`\\hat\\sigma`) and ``noise_sigmas``. A larger ``D`` only removes declining entries,
      so the noise-aware rule never fires earlier than the plain one. ``noise_sigmas`` is ignored
      by the threshold rule (its level is absolute).

    A run cut off by the end of the series does not count. Returns ``None`` if no collapse.

    Parameters
    ----------
    series : (S,) metric values per logged step
    steps : (S,) strictly increasing step numbers; default ``0..S-1``
    noise_sigmas : None (plain peak rule, the default) or a finite number >= 0 (0 = plain rule)

    >>> model_collapse_step([0.9, 0.5, 0.005, 0.0], threshold=0.01).step
    2
    >>> model_collapse_step([0.5, 0.8, 0.9, 0.7, 0.6, 0.5], "peak", min_decline=0.1).step
    2
    >>> flat = 0.8 + 0.05 * np.random.default_rng(0).standard_normal(200)  # seeded pure noise
    >>> model_collapse_step(flat, "peak").step, model_collapse_step(flat, "peak", noise_sigmas=4)
    (6, None)
    """
    if not isinstance(rule, str) or rule not in ("threshold", "peak"):
        raise ValueError(f"rule: must be 'threshold' or 'peak', got {_brief(rule)}")
    if not isinstance(nan, str) or nan not in ("skip", "raise"):
        raise ValueError(f"nan: must be 'skip' or 'raise', got {_brief(nan)}")
    consecutive = _positive_int(consecutive, "consecutive")
    smoothing = _positive_int(smoothing, "smoothing")
    patience = _positive_int(patience, "patience")
    threshold = _number(threshold, "threshold")
    min_decline = _number(min_decline, "min_decline")
    if not min_decline > 0:
        raise ValueError(f"min_decline: must be finite and > 0, got {min_decline}")
    sigmas = None if noise_sigmas is None else _finite_float(noise_sigmas)
    if noise_sigmas is not None and (sigmas is None or sigmas < 0):
        raise ValueError(
            f"noise_sigmas: must be None or a finite number >= 0, got {_brief(noise_sigmas)}"
        )

    x = _float_vector(series, "series", allow_nan=(nan == "skip"))
    if steps is None:
        t = np.arange(len(x), dtype=np.int64)
    else:
        t_raw = _float_vector(steps, "steps")
        _same_length(t_raw, x, "steps", "series")
        if not np.all(t_raw == np.round(t_raw)) or np.any(np.abs(t_raw) >= 2.0**63):
            raise ValueError("steps: must hold integers (below 2**63)")
        t = t_raw.astype(np.int64)
        if np.any(np.diff(t) <= 0):
            raise ValueError("steps: must be strictly increasing")
    keep = ~np.isnan(x)
    x, t = x[keep], t[keep]
    if x.size == 0:
        return None
    s = trailing_mean(x, smoothing)

    if rule == "threshold":
        start = _first_run(s < threshold, consecutive)
        if start is None:
            return None
        run = s[start : start + consecutive]
        evidence = {
            "threshold": float(threshold),
            "value": float(s[start]),
            "consecutive": float(consecutive),
            "run_max": float(run.max()),
        }
        return CollapseStep(step=int(t[start]), rule="threshold", evidence=evidence)

    required = float(min_decline)
    noise = math.nan
    if noise_sigmas is not None:
        noise = step_noise(x, smoothing)
        if math.isfinite(noise):
            required = max(required, float(noise_sigmas) * noise)
    prior_max = np.concatenate([[-np.inf], np.maximum.accumulate(s)[:-1]])  # max(s_0..s_{j-1})
    start = _first_run(s <= prior_max - required, patience)
    if start is None:
        return None
    peak_idx = int(np.argmax(s[:start]))  # first occurrence of the running maximum
    end = start + patience - 1
    evidence = {
        "peak": float(s[peak_idx]),
        "peak_step": float(t[peak_idx]),
        "confirmed_step": float(t[end]),
        "confirmed_value": float(s[end]),
        "min_decline": float(min_decline),
        "patience": float(patience),
        "required_decline": required,
    }
    if noise_sigmas is not None:
        evidence["noise"] = noise
        evidence["noise_sigmas"] = float(noise_sigmas)
    return CollapseStep(step=int(t[peak_idx]), rule="peak", evidence=evidence)


def gt_gain(before: Any, after: Any) -> float:
    """GT Gain: accuracy after GT-reward RLVR minus accuracy before (He et al., section 5).

    ``before`` / ``after`` are accuracies (scalars) or per-problem scores (1-D arrays, averaged).
    The unit is the caller's (fractions or percent); nothing is rescaled.

    >>> round(gt_gain(0.10, 0.1708), 4)
    0.0708
    >>> gt_gain([0, 1, 0, 0], [1, 1, 0, 0])
    0.25
    """
    vals = []
    for name, v in (("before", before), ("after", after)):
        a = _to_numpy(v, name)
        if a.ndim == 0:
            a = a.reshape(1)
        vals.append(_mean(_float_vector(a, name)))
    # Python floats: +-inf only where the difference itself exceeds the float range
    return vals[1] - vals[0]
