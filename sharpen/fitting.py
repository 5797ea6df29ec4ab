r"""Theorem 1 fitted to a run's probe questions: trajectories, per-question fits, classes, pooling, beta in the run's units.

A run folder (:mod:`sharpen.records`) holds, per probe question and probe step, the share :math:`p_k` of the
*initial* majority answer. Theorem 1 predicts :math:`\mathrm{logit}\,p_k = \mathrm{logit}\,p_0 + k/\beta`
(docs/theory.md). This module

1. gathers the probes into (Q, L) trajectories (:func:`trajectories_from_probes`);
2. fits every question with :func:`sharpen.theory.fit_sharpening` (:func:`fit_trajectories`);
3. classifies each question (:func:`classify_questions`): *sharpened* toward its initial majority (A1 and A2
   held), *flipped* (A1 broke), *no learning* (A2 broke), *saturated* (already deterministic at the first probe)
   or *insufficient* (fewer than two probes);
4. pools the slopes (:func:`pool_slopes`) and maps the pooled :math:`\hat\beta` to the run's learning
   rate (:func:`beta_mapping`, with ``RunHeader.lr`` of :mod:`sharpen.records`).

Numbers in, frozen dataclasses out. :mod:`sharpen.collapse` finds and predicts the collapse step;
:mod:`sharpen.run_analysis` runs both on a run folder.

Example
-------
>>> from sharpen.theory import majority_prob
>>> k = np.arange(0, 50, 10)
>>> t, _ = trajectories_from_probes({"step": int(s), "question_id": "q0", "p_initial_majority": float(p)}
...                                 for s, p in zip(k, majority_prob(0.4, 20.0, k)))
>>> q = classify_questions(t, fit_trajectories(t))[0]
>>> q.label, round(q.beta, 3)
('sharpened', 20.0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

import numpy as np

from sharpen.records import columns
from sharpen.theory import SharpeningFit, fit_sharpening

__all__ = [
    "CLASSES",
    "CLASS_MEANING",
    "MIN_FIT_POINTS",
    "ProbeTrajectories",
    "QuestionFit",
    "PooledFit",
    "trajectories_from_probes",
    "fit_trajectories",
    "classify_questions",
    "pool_slopes",
    "beta_mapping",
]

MIN_FIT_POINTS = 4
"""Fewer probe steps than this make a per-question fit uninformative (two points always give R^2 = 1)."""

QuestionClass = Literal["sharpened", "flipped", "no_learning", "saturated", "insufficient"]
CLASSES: tuple[str, ...] = ("sharpened", "flipped", "no_learning", "saturated", "insufficient")
CLASS_MEANING = {
    "sharpened": "sharpened toward the initial majority (A1 and A2 held)",
    "flipped": "majority flipped away from the initial answer (A1 broke)",
    "no_learning": "initial majority did not gain (A2 broke)",
    "saturated": "already deterministic at the first probe (nothing to sharpen)",
    "insufficient": "fewer than two probe steps",
}


# ----------------------------------------------------------------------------------------------
# probe records -> (Q, L) trajectories
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeTrajectories:
    """Per-question probe trajectories on a common step grid (NaN / None where not probed).

    Attributes
    ----------
    question_ids : (Q,) question identifiers, in first-seen order.
    steps : (L,) sorted union of the probe steps.
    p_initial : (Q, L) share of the initial majority answer -- Theorem 1's :math:`p_k`.
    p_majority : (Q, L) share of the current majority answer (>= ``p_initial``).
    n_samples : (Q, L) samples behind each probe (NaN where missing).
    majority_answer : (Q, L) object array of the current majority answer.
    initial_answer : (Q,) the initial majority answer.
    initial_correct : (Q,) 1.0 / 0.0 whether the initial majority is correct, NaN if unknown.
    majority_correct : (Q, L) 1.0 / 0.0 / NaN.
    sample_accuracy : (Q, L) share of correct samples, NaN if unknown.
    source : "exact" (the probes' exact answer distributions: ``exact_*`` fields, no sampling noise) or
        "sampled" (shares of the M samples).
    """

    question_ids: tuple[str, ...]
    steps: np.ndarray
    p_initial: np.ndarray
    p_majority: np.ndarray
    n_samples: np.ndarray
    majority_answer: np.ndarray
    initial_answer: tuple[str | None, ...]
    initial_correct: np.ndarray
    majority_correct: np.ndarray
    sample_accuracy: np.ndarray
    source: Literal["exact", "sampled"] = "sampled"

    @property
    def n_questions(self) -> int:
        return len(self.question_ids)

    def upto(self, step: float) -> ProbeTrajectories:
        """The same trajectories restricted to probe steps ``<= step``."""
        keep = self.steps <= step
        return dataclasses.replace(
            self,
            steps=self.steps[keep],
            **{name: getattr(self, name)[:, keep] for name in _PER_STEP},
        )

    def rows(self, index: Sequence[int]) -> ProbeTrajectories:
        """The questions ``index`` (repeats allowed, e.g. a bootstrap resample), in that order."""
        idx = np.asarray(index, dtype=np.int64)
        return dataclasses.replace(
            self,
            question_ids=tuple(self.question_ids[i] for i in idx),
            initial_answer=tuple(self.initial_answer[i] for i in idx),
            initial_correct=self.initial_correct[idx],
            **{name: getattr(self, name)[idx] for name in _PER_STEP},
        )


_PER_STEP = (
    "p_initial",
    "p_majority",
    "n_samples",
    "majority_answer",
    "majority_correct",
    "sample_accuracy",
)
"""The (Q, L) fields of :class:`ProbeTrajectories`."""


# The exact answer distribution's fields, read instead of the sampled ones when every probe record has them.
_EXACT_FIELDS = {
    "p_initial_majority": "exact_p_initial_majority",
    "p_majority": "exact_p_majority",
    "majority_answer": "exact_majority_answer",
    "initial_majority_answer": "exact_initial_majority_answer",
    "sample_accuracy": "exact_accuracy",
}
_SAMPLED_FIELDS = (
    "step",
    "question_id",
    "p_initial_majority",
    "p_majority",
    "n_samples",
    "majority_answer",
    "majority_correct",
    "sample_accuracy",
    "initial_majority_answer",
)
_REQUIRED = ("step", "question_id", "p_initial_majority")
# why a record is skipped, in the order a record is checked (the warnings follow first occurrences)
_REASONS = (
    "not a record",
    *_REQUIRED,
    "p_initial_majority (not a probability)",
    "step (not an integer)",
)


def _as_probability(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if 0.0 <= x <= 1.0 else None


def _as_bool_float(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool | int | float | np.bool_):
        return float(bool(v)) if not (isinstance(v, float) and math.isnan(v)) else math.nan
    return math.nan


def _numbers(values: Sequence[Any]) -> np.ndarray | None:
    """(R,) float64 of a column of plain numbers and None (None -> NaN), or None for any other column."""
    if not set(map(type, values)) <= {float, int, type(None)}:
        return None
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        return None


def _probability_column(values: Sequence[Any]) -> np.ndarray:
    """:func:`_as_probability` of each value, NaN for None (one numpy pass when the values are numbers)."""
    x = _numbers(values)
    if x is None:
        return np.array([math.nan if (p := _as_probability(v)) is None else p for v in values])
    with np.errstate(invalid="ignore"):
        return np.where((x >= 0.0) & (x <= 1.0), x, math.nan)


def _count_column(values: Sequence[Any]) -> np.ndarray:
    """``n_samples``: the value as a float where it is >= 1, else NaN."""
    x = _numbers(values)
    if x is None:
        out = []
        for v in values:
            try:
                out.append(float(v))
            except (TypeError, ValueError, OverflowError):
                out.append(math.nan)
        x = np.array(out, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(x >= 1, x, math.nan)


def _bool_column(values: Sequence[Any]) -> np.ndarray:
    """:func:`_as_bool_float` of each value (one numpy pass when the values are bools and None)."""
    if set(map(type, values)) <= {bool, type(None)}:  # True -> 1.0, False -> 0.0, None -> NaN
        return np.array(values, dtype=np.float64)
    return np.array([_as_bool_float(v) for v in values], dtype=np.float64)


def _is_none(values: Sequence[Any]) -> np.ndarray:
    """(R,) True where a value is None (one C pass, ``None in values``, where there is none)."""
    if None not in values:  # `in` tries identity first, so this finds every None
        return np.zeros(len(values), dtype=bool)
    return np.array([v is None for v in values], dtype=bool)


def _step_column(values: Sequence[Any]) -> list[int | None]:
    """``int(step)`` of each value, None where that fails (the step is then not an integer)."""
    if set(map(type, values)) <= {int}:
        return list(values)
    out: list[int | None] = []
    for v in values:
        try:
            out.append(int(v))
        except (TypeError, ValueError, OverflowError):
            out.append(None)
    return out


def _taker(index: np.ndarray, n: int) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """``take(values) = [values[i] for i in index]`` for columns of length ``n``, in one C call per column;
    ``values`` itself where ``index`` is all of ``0 .. n-1`` (it is sorted and without repeats)."""
    if index.size == n:
        return lambda values: values
    if index.size == 0:
        return lambda values: []
    get = itemgetter(*index.tolist())
    if index.size == 1:
        return lambda values: [get(values)]
    return lambda values: list(get(values))


def trajectories_from_probes(
    records: Iterable[Mapping[str, Any]],
) -> tuple[ProbeTrajectories, tuple[str, ...]]:
    """Gather :class:`~sharpen.records.ProbeRecord` dicts into per-question trajectories.

    Records missing ``step``, ``question_id`` or a valid ``p_initial_majority`` are skipped and
    counted in the returned warnings (the readable part is still used). ``p_majority`` defaults
    to ``p_initial_majority`` and ``n_samples`` to NaN when absent. A repeated (question, step)
    keeps the last record (a resumed run re-logging a step). Questions are ordered by first
    appearance, steps ascending. Where every record carries ``exact_p_initial_majority``, the exact
    fields are read instead of the sampled ones (``source = "exact"``).

    One pass turns the records into columns (:func:`sharpen.records.columns`); the checks, the
    question and step indices and the (Q, L) arrays are numpy operations on them, so a run of a few
    hundred thousand probes converts in a fraction of a second.

    Parameters
    ----------
    records : iterable of mappings (``Run.probes``)

    Returns
    -------
    (ProbeTrajectories, warnings)

    Raises
    ------
    ValueError
        If no record is usable.

    Example
    -------
    >>> t, w = trajectories_from_probes([{"step": 0, "question_id": "a", "p_initial_majority": 0.5},
    ...                                  {"step": 5, "question_id": "a", "p_initial_majority": 0.7}])
    >>> t.p_initial.tolist(), w
    ([[0.5, 0.7]], ())
    """
    records = records if isinstance(records, list) else list(records)
    n = len(records)
    if set(map(type, records)) <= {dict}:  # what load_run gives: skip the slower ABC check
        is_record = np.ones(n, dtype=bool)
    else:
        is_record = np.array([isinstance(r, Mapping) for r in records], dtype=bool)
    flag = columns(records, ["exact_p_initial_majority"])["exact_p_initial_majority"]
    exact = n > 0 and bool(is_record.all()) and None not in flag
    if exact:
        raw = columns(records, ["step", "question_id", *_EXACT_FIELDS.values(), "label"])
        col = {"step": raw["step"], "question_id": raw["question_id"], "n_samples": [None] * n}
        col.update({sampled: raw[name] for sampled, name in _EXACT_FIELDS.items()})
        col["majority_correct"] = [
            None if lab is None or ans is None else str(ans) == str(lab)
            for lab, ans in zip(raw["label"], raw["exact_majority_answer"], strict=True)
        ]
    else:
        col = columns(records, _SAMPLED_FIELDS)

    # which records are usable, and why not
    reasons = {"not a record": ~is_record}
    for name in _REQUIRED:
        reasons[name] = is_record & _is_none(col[name])
    present = is_record & ~(
        reasons["step"] | reasons["question_id"] | reasons["p_initial_majority"]
    )
    p_all = _probability_column(col["p_initial_majority"])
    reasons["p_initial_majority (not a probability)"] = present & np.isnan(p_all)
    steps_int = _step_column(col["step"])
    no_int = _is_none(steps_int)
    reasons["step (not an integer)"] = present & ~np.isnan(p_all) & no_int
    use = present & ~np.isnan(p_all) & ~no_int
    firsts = {r: int(np.argmax(m)) for r, m in reasons.items() if m.any()}
    warnings = [
        f"probes: skipped {int(reasons[r].sum())} record(s) missing field {r}"
        for r in sorted(firsts, key=lambda r: (firsts[r], _REASONS.index(r)))
    ]
    idx = np.flatnonzero(use)
    if idx.size == 0:
        raise ValueError(
            "records: no usable probe record (each needs step, question_id and p_initial_majority)"
        )

    # question and step indices of the usable records; a repeated (question, step) keeps the last
    take = _taker(idx, n)
    qcol = take(col["question_id"])
    if not set(map(type, qcol)) <= {str}:
        qcol = [str(q) for q in qcol]
    q_order = {q: i for i, q in enumerate(dict.fromkeys(qcol))}
    qi = np.fromiter(map(q_order.__getitem__, qcol), dtype=np.int64, count=idx.size)
    step_values = take(steps_int)
    try:
        step_arr = np.array(step_values, dtype=np.int64)
        steps, sj = np.unique(step_arr, return_inverse=True)
        steps = steps.astype(np.float64)
    except OverflowError:  # steps beyond int64: index them exactly in Python
        grid = sorted(set(step_values))
        position = {s: j for j, s in enumerate(grid)}
        sj = np.fromiter(map(position.__getitem__, step_values), dtype=np.int64, count=idx.size)
        steps = np.array(grid, dtype=np.float64)
    shape = (len(q_order), steps.size)
    key = qi * shape[1] + sj
    _, from_end = np.unique(key[::-1], return_index=True)
    last = np.sort(idx.size - 1 - from_end)  # positions in idx of the kept records
    n_dup = idx.size - last.size
    if n_dup:
        warnings.append(f"probes: {n_dup} repeated (question, step) record(s); kept the last")
    rows, qk, sk = idx[last], qi[last], sj[last]

    def grid(values: np.ndarray, fill: Any = math.nan, dtype: Any = np.float64) -> np.ndarray:
        out = np.full(shape, fill, dtype=dtype)
        out[qk, sk] = values
        return out

    pick = _taker(rows, n)

    def picked(name: str) -> list[Any]:
        return pick(col[name])

    p_init = grid(p_all[rows])
    pm = _probability_column(picked("p_majority"))
    p_maj = grid(np.where(np.isnan(pm), p_all[rows], np.maximum(pm, p_all[rows])))
    n_samp = grid(_count_column(picked("n_samples")))
    answers = np.empty(rows.size, dtype=object)
    answers[:] = picked("majority_answer")
    maj_ans = grid(answers, None, object)
    maj_cor = grid(_bool_column(picked("majority_correct")))
    s_acc = grid(_probability_column(picked("sample_accuracy")))
    # the initial answer: the first (by step) non-None initial_majority_answer of the question
    init_ans: list[str | None] = [None] * shape[0]
    initial = picked("initial_majority_answer")
    g = np.flatnonzero(~_is_none(initial))
    if g.size:
        order = np.lexsort((sk[g], qk[g]))
        g = g[order]
        first = np.concatenate([[True], qk[g][1:] != qk[g][:-1]])
        for i in g[first]:
            init_ans[int(qk[i])] = str(initial[i])
    # Initial correctness: majority_correct at the first probe where the majority is the initial one.
    with np.errstate(invalid="ignore"):
        hit = ~np.isnan(p_init) & (p_init >= p_maj) & ~np.isnan(maj_cor)
    first_hit = np.argmax(hit, axis=1)
    init_cor = np.where(hit.any(axis=1), maj_cor[np.arange(shape[0]), first_hit], math.nan)
    traj = ProbeTrajectories(
        question_ids=tuple(q_order),
        steps=steps,
        p_initial=p_init,
        p_majority=p_maj,
        n_samples=n_samp,
        majority_answer=maj_ans,
        initial_answer=tuple(init_ans),
        initial_correct=init_cor,
        majority_correct=maj_cor,
        sample_accuracy=s_acc,
        source="exact" if exact else "sampled",
    )
    return traj, tuple(warnings)


# ----------------------------------------------------------------------------------------------
# per-question fits, classification, pooling
# ----------------------------------------------------------------------------------------------


def fit_trajectories(traj: ProbeTrajectories, *, level: float = 0.95) -> SharpeningFit:
    r"""Fit Theorem 1 to every question: :func:`sharpen.theory.fit_sharpening` on ``p_initial``.

    Exact probes (``traj.source == "exact"``) carry no sampling noise: least squares on
    :math:`\mathrm{logit}\,p_k` (``method="logit_wls"`` without sample counts; the weights
    :math:`p(1-p)` are the logit's sensitivity, not binomial counts). Sampled probes: the binomial
    fit, weighted by ``n_samples`` where every probe logged it; otherwise the dispersion is
    estimated from the residuals. Returns a fit of batch shape (Q,).
    """
    if not isinstance(traj, ProbeTrajectories):
        raise ValueError(f"traj: expected ProbeTrajectories, got {type(traj).__name__}")
    if traj.source == "exact":
        return fit_sharpening(traj.steps, traj.p_initial, method="logit_wls", level=level)
    observed = ~np.isnan(traj.p_initial)
    n_known = bool(np.all(~np.isnan(traj.n_samples[observed])))
    n = np.where(np.isnan(traj.n_samples), 1.0, traj.n_samples) if n_known else None
    if n is not None and n.shape[0] > 1 and (n == n[:1]).all():
        # every question probed with the same counts (the usual case): pass the one (1, L) row, which
        # fit_sharpening broadcasts and fits with less work (the same numbers: tests/sharpen/test_fitting.py)
        n = n[:1]
    return fit_sharpening(traj.steps, traj.p_initial, n_samples=n, level=level)


@dataclass(frozen=True)
class QuestionFit:
    """One question: its Theorem 1 fit and its class.

    ``beta``/``beta_ci``/``p0``/``r2_*`` are NaN where the fit is not valid; ``beta`` is ``inf``
    for a non-positive slope. ``first_flip_step`` is the first probe step where another answer
    held strictly more samples than the initial majority (NaN if never); ``n_flips`` counts
    changes of the leading answer between consecutive probes; ``flip_share`` is the share of
    probes after the first at which the initial majority was not leading.
    """

    question_id: str
    label: QuestionClass
    slope: float
    slope_ci: tuple[float, float]
    beta: float
    beta_ci: tuple[float, float]
    p0: float
    r2_logit: float
    r2_p: float
    n_points: int
    first_flip_step: float
    n_flips: int
    flip_share: float
    initial_correct: float
    final_p_initial: float


def _flip_stats(
    p_init: np.ndarray, p_maj: np.ndarray, steps: np.ndarray
) -> tuple[float, int, float]:
    obs = ~np.isnan(p_init)
    pi, pm, st = p_init[obs], p_maj[obs], steps[obs]
    if pi.size == 0:
        return math.nan, 0, math.nan
    lost = pm > pi + 1e-12  # another answer strictly ahead of the initial majority
    first = float(st[np.argmax(lost)]) if lost.any() else math.nan
    n_changes = int(np.count_nonzero(lost[1:] != lost[:-1])) if lost.size > 1 else 0
    share = float(lost[1:].mean()) if lost.size > 1 else math.nan
    return first, n_changes, share


def classify_questions(traj: ProbeTrajectories, fit: SharpeningFit) -> tuple[QuestionFit, ...]:
    r"""Classify each question by which of Theorem 1's assumptions held.

    Rules, applied in order (``p`` = share of the initial majority, ``M`` = samples per probe):

    1. **insufficient** -- fewer than two probe steps (the fit is not valid).
    2. **flipped** (A1 broke) -- at the last probe another answer holds strictly more samples than
       the initial majority.
    3. **saturated** -- every sample agreed at the first probe (:math:`p \ge 1 - 1/(2M)`, or
       :math:`p = 1` without M) and the initial majority still leads: nothing left to sharpen.
    4. **sharpened** (A1, A2 held) -- the slope's confidence interval lies above 0 (with an
       unbounded CI, e.g. two probes without M: the slope itself is > 0).
    5. **no_learning** (A2 broke) -- otherwise: the log-odds of the initial majority did not
       grow significantly.

    Example
    -------
    >>> from sharpen.theory import majority_prob
    >>> k = np.arange(0, 50, 10.0)
    >>> t, _ = trajectories_from_probes(
    ...     {"step": s, "question_id": "q", "p_initial_majority": p} for s, p in
    ...     zip(k, majority_prob(0.3, 10.0, k)))
    >>> classify_questions(t, fit_trajectories(t))[0].label
    'sharpened'
    """
    if not isinstance(fit, SharpeningFit) or np.shape(fit.slope) != (traj.n_questions,):
        raise ValueError(f"fit: expected a SharpeningFit of shape ({traj.n_questions},)")
    out = []
    for i, q in enumerate(traj.question_ids):
        pi, pm, n = traj.p_initial[i], traj.p_majority[i], traj.n_samples[i]
        obs = np.flatnonzero(~np.isnan(pi))
        first_flip, n_flips, share = _flip_stats(pi, pm, traj.steps)
        lo, hi = (float(x) for x in fit.slope_ci[i])
        slope = float(fit.slope[i])
        if not bool(fit.valid[i]):
            label: QuestionClass = "insufficient"
        elif pm[obs[-1]] > pi[obs[-1]] + 1e-12:
            label = "flipped"
        elif pi[obs[0]] >= (1.0 - 0.5 / n[obs[0]] if not np.isnan(n[obs[0]]) else 1.0):
            label = "saturated"
        elif lo > 0 or (not math.isfinite(lo) and slope > 0):
            label = "sharpened"
        else:
            label = "no_learning"
        out.append(
            QuestionFit(
                question_id=q,
                label=label,
                slope=slope,
                slope_ci=(lo, hi),
                beta=float(fit.beta[i]),
                beta_ci=(float(fit.beta_ci[i, 0]), float(fit.beta_ci[i, 1])),
                p0=float(fit.p0[i]),
                r2_logit=float(fit.r2_logit[i]),
                r2_p=float(fit.r2_p[i]),
                n_points=int(fit.n_points[i]),
                first_flip_step=first_flip,
                n_flips=n_flips,
                flip_share=share,
                initial_correct=float(traj.initial_correct[i]),
                final_p_initial=float(pi[obs[-1]]) if obs.size else math.nan,
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class PooledFit:
    r"""Inverse-variance pooled slope :math:`1/\beta` over a set of questions.

    Each question has its own intercept (:math:`\mathrm{logit}\,p_0`); the common slope is the
    fixed-effect estimate :math:`\hat s = \sum_i w_i s_i / \sum_i w_i` with
    :math:`w_i = 1/\mathrm{SE}_i^2` and :math:`\mathrm{SE}(\hat s) = (\sum_i w_i)^{-1/2}`.
    ``i2`` is Higgins' :math:`I^2 = \max(0, (Q_C - (m-1))/Q_C)` with Cochran's
    :math:`Q_C = \sum_i w_i (s_i - \hat s)^2`: the share of slope variation beyond sampling noise
    (0 = one common :math:`\beta` explains every question).
    """

    n_questions: int
    slope: float
    slope_se: float
    slope_ci: tuple[float, float]
    beta: float
    beta_ci: tuple[float, float]
    rho: float
    i2: float
    median_beta: float


def _slope_to_beta(s: float) -> float:
    return 1.0 / s if s > 0 else math.inf


def pool_slopes(slopes: Sequence[float], ses: Sequence[float], *, level: float = 0.95) -> PooledFit:
    """Pool per-question slopes (see :class:`PooledFit`); non-finite entries are dropped.

    A standard error of 0 (noiseless data) is floored at 1e-9 so such questions share equal,
    large weights.

    Example
    -------
    >>> round(pool_slopes([0.1, 0.1, 0.1], [0.01, 0.02, 0.01]).beta, 6)
    10.0
    """
    s = np.asarray(slopes, dtype=np.float64).ravel()
    se = np.asarray(ses, dtype=np.float64).ravel()
    if s.shape != se.shape:
        raise ValueError(f"ses: shape {se.shape} does not match slopes {s.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must lie in (0, 1), got {level}")
    ok = np.isfinite(s) & np.isfinite(se)
    s, se = s[ok], se[ok]
    nan2 = (math.nan, math.nan)
    if s.size == 0:
        return PooledFit(0, math.nan, math.nan, nan2, math.nan, nan2, math.nan, math.nan, math.nan)
    w = 1.0 / np.maximum(se, 1e-9) ** 2
    mean = float((w * s).sum() / w.sum())
    pse = float(1.0 / math.sqrt(w.sum()))
    from scipy import special  # here, not at the top; ndtri is what scipy.stats.norm.ppf returns

    z = float(special.ndtri(0.5 + level / 2))
    lo, hi = mean - z * pse, mean + z * pse
    q = float((w * (s - mean) ** 2).sum())
    i2 = max(0.0, (q - (s.size - 1)) / q) if q > 0 else 0.0
    betas = np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), np.inf)
    return PooledFit(
        n_questions=int(s.size),
        slope=mean,
        slope_se=pse,
        slope_ci=(lo, hi),
        beta=_slope_to_beta(mean),
        beta_ci=(_slope_to_beta(hi), _slope_to_beta(lo)),
        rho=math.exp(-mean),
        i2=i2,
        median_beta=float(np.median(betas)),
    )


# ----------------------------------------------------------------------------------------------
# the effective beta in the run's units
# ----------------------------------------------------------------------------------------------


def beta_mapping(pooled: PooledFit, lr: float | None) -> dict[str, float | None]:
    r"""Express the pooled :math:`\hat\beta` in the run's units, given the run's learning rate ``lr``
    (``RunHeader.lr``; None where unknown).

    The experiments use no KL, so :math:`\beta` is an implicit step size: the log-odds gain per
    step :math:`1/\hat\beta` should scale with the learning rate. Reported: ``beta_steps``
    (:math:`\hat\beta`, in training steps), ``log_odds_per_step`` (:math:`1/\hat\beta`),
    ``log_odds_per_step_per_lr`` (:math:`1/(\hat\beta\,\eta)`, comparable across learning rates),
    ``beta_times_lr`` and ``steps_per_e_fold`` (steps for the odds to grow e-fold, = :math:`\hat\beta`),
    ``steps_to_halve_minority`` (:math:`\hat\beta \ln 2`: the non-majority odds halve).
    """
    s = pooled.slope
    if lr is not None and not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        lr = None
    finite = math.isfinite(s) and s > 0
    return {
        "beta_steps": pooled.beta if finite else None,
        "log_odds_per_step": s if math.isfinite(s) else None,
        "log_odds_per_step_per_lr": (s / lr) if (finite and lr) else None,
        "beta_times_lr": (pooled.beta * lr) if (finite and lr) else None,
        "steps_to_halve_minority": (pooled.beta * math.log(2)) if finite else None,
    }
