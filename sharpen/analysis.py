r"""Theory against measurement: fit Theorem 1 to a run's per-question trajectories (``sharpen fit``).

A run folder (:mod:`sharpen.records`) holds, per probe question and probe step, the share
:math:`p_k` of the *initial* majority answer. Theorem 1 predicts
:math:`\mathrm{logit}\,p_k = \mathrm{logit}\,p_0 + k/\beta` (Theorem 1; docs/theory.md). This module

1. gathers the probes into (Q, L) trajectories (:func:`trajectories_from_probes`);
2. fits every question with :func:`sharpen.theory.fit_sharpening` and pools the slopes
   (:func:`pool_slopes`);
3. classifies each question (:func:`classify_questions`): *sharpened* toward its initial
   majority (A1 and A2 held), *flipped* (A1 broke), *no learning* (A2 broke), *saturated*
   (already deterministic at the first probe) or *insufficient* (fewer than two probes);
4. maps the pooled :math:`\hat\beta` to the run's settings (learning rate, N, clip);
5. finds the Model Collapse Step with both rules of :func:`sharpen.metrics.model_collapse_step`
   and the peak of held-out accuracy (:func:`detect_collapse`);
6. predicts the collapse step from the first part of the run only (:func:`predict_collapse`,
   :func:`early_prediction`).

Everything above is pure (numbers in, frozen dataclasses out). :func:`analyze_run` runs it on a
folder, :func:`write_report` writes ``fit_summary.json``, ``fit_report.md`` and
``fit_overlay.png``; :func:`register` adds the ``sharpen fit`` command. Matplotlib is imported
only when a figure is drawn.

Example
-------
>>> import tempfile, numpy as np
>>> from sharpen.records import RunWriter, ProbeRecord
>>> from sharpen.theory import majority_prob
>>> w = RunWriter(tempfile.mkdtemp())
>>> w.log_probes(ProbeRecord(int(k), "q0", 64, "7", float(p), "7", float(p))
...              for k, p in zip(range(0, 50, 10), majority_prob(0.4, 20.0, np.arange(0, 50, 10))))
>>> res = analyze_run(w.run_dir)
>>> res.questions[0].label, round(res.questions[0].beta, 3)
('sharpened', 20.0)
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import special, stats

from sharpen._cli import fail
from sharpen.metrics import model_collapse_step, step_noise
from sharpen.records import Run, load_run
from sharpen.theory import SharpeningFit, fit_sharpening

PROBE_SOURCE_TEXT = {
    "exact": "Probes: the exact answer distribution of each probe question (teacher-forced over every "
    "candidate answer; no sampling noise), fitted by least squares on logit p.",
    "sampled": "Probes: shares of the sampled answers of each probe question, fitted by binomial maximum "
    "likelihood.",
}

MIN_FIT_POINTS = 4
"""Fewer probe steps than this make a per-question fit uninformative (two points always give R^2 = 1)."""

__all__ = [
    "AnalysisConfig",
    "ProbeTrajectories",
    "QuestionFit",
    "PooledFit",
    "CollapseReport",
    "CollapsePrediction",
    "RunAnalysis",
    "trajectories_from_probes",
    "fit_trajectories",
    "classify_questions",
    "pool_slopes",
    "run_settings",
    "beta_mapping",
    "metric_series",
    "eval_metric_names",
    "step_noise",
    "detect_collapse",
    "predicted_reward_accuracy",
    "predict_collapse",
    "early_prediction",
    "analyze",
    "analyze_run",
    "summary_dict",
    "markdown_report",
    "reading",
    "short_table",
    "draw_overlay",
    "draw_overlay_arrays",
    "write_report",
    "find_runs",
    "register",
]

QuestionClass = Literal["sharpened", "flipped", "no_learning", "saturated", "insufficient"]
CLASSES: tuple[str, ...] = ("sharpened", "flipped", "no_learning", "saturated", "insufficient")
CLASS_MEANING = {
    "sharpened": "sharpened toward the initial majority (A1 and A2 held)",
    "flipped": "majority flipped away from the initial answer (A1 broke)",
    "no_learning": "initial majority did not gain (A2 broke)",
    "saturated": "already deterministic at the first probe (nothing to sharpen)",
    "insufficient": "fewer than two probe steps",
}

# Names under which runs log the series this module reads, most specific first.
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "reward_accuracy": ("reward_accuracy", "train/reward_accuracy"),
    "label_accuracy": ("label_accuracy", "train/label_accuracy", "pseudo_label_acc"),
    "majority_reward": ("majority_voting_reward", "reward_mean", "reward", "train/reward"),
    "majority_ratio": ("majority_ratio", "train/majority_ratio"),
    "gt_reward": ("ground_truth_ratio", "gt_reward", "accuracy"),
    "entropy": ("entropy", "actor/entropy", "mean_token_entropy"),
    "response_length": ("response_length", "response_length/mean", "length"),
    "kl": ("kl", "kl_to_initial", "kl_to_init", "kl_to_ref"),
}
EVAL_ALIASES = ("accuracy", "val_accuracy", "greedy_accuracy", "majority_accuracy")

NOISE_SIGMAS = 6.0
"""Default noise-aware peak rule of ``sharpen fit``: a decline must be at least this many step-to-step noise
standard deviations (:func:`sharpen.metrics.step_noise`). Measured on pure Gaussian noise with ``patience=3``,
the plain rule fires in every series and 4 sigmas still fire in about a fifth of 200-step and most
1000-step series (the running maximum of noise keeps climbing); 6 sigmas fire in about 1% of 1000-step series."""


def eval_metric_names(records: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """Held-out accuracy names to try, best first: ``accuracy``, ``avg@k`` (any k), then
    :data:`EVAL_ALIASES`, then any other key containing "acc".

    >>> eval_metric_names([{"step": 0, "avg@8": 0.5, "maj@8": 0.6}])
    ('accuracy', 'avg@8', 'val_accuracy', 'greedy_accuracy', 'majority_accuracy')
    """
    keys = sorted({k for r in records for k in r})
    avg = [k for k in keys if k.startswith("avg@")]
    rest = [k for k in keys if "acc" in k.lower() and k not in EVAL_ALIASES]
    return (EVAL_ALIASES[0], *avg, *EVAL_ALIASES[1:], *rest)


SUMMARY_FILE = "fit_summary.json"
REPORT_FILE = "fit_report.md"
OVERLAY_FILE = "fit_overlay.png"


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of the fit, the classification and the collapse rules.

    Attributes
    ----------
    level : confidence level of the CIs, in (0, 1).
    collapse_metric : batch metric the Model Collapse Step is read from (paper: reward accuracy).
    threshold : MCS threshold rule: first step with the (smoothed) metric below this (paper: 0.01).
    consecutive : the threshold must hold for this many consecutive logged steps.
    smoothing : causal trailing-mean window applied to the metric before either rule.
    min_decline, patience : peak rule: ``patience`` consecutive entries at least ``min_decline``
        below the running maximum confirm a decline (see :func:`sharpen.metrics.model_collapse_step`).
    noise_sigmas : noise-aware peak rule on the collapse metric: the decline must also be at least
        ``noise_sigmas`` step-to-step noise standard deviations (:data:`NOISE_SIGMAS` = 6 by default;
        ``None`` or 0 gives the plain rule). Held-out accuracy, logged at a few steps only, keeps the
        plain rule: a handful of differences cannot tell noise from a rise-then-fall.
    early_fractions : fractions of the run given to the early predictor, increasing, in (0, 1].
    tolerance : relative error counted as a correct early prediction (0.2 = within +-20%).
    """

    level: float = 0.95
    collapse_metric: str = "reward_accuracy"
    threshold: float = 0.01
    consecutive: int = 1
    smoothing: int = 1
    min_decline: float = 0.05
    patience: int = 3
    noise_sigmas: float | None = NOISE_SIGMAS
    early_fractions: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
    tolerance: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level: must lie in (0, 1), got {self.level}")
        if not (math.isfinite(self.threshold) and 0.0 < self.threshold < 1.0):
            raise ValueError(f"threshold: must lie in (0, 1), got {self.threshold}")
        for name in ("consecutive", "smoothing", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        if not (math.isfinite(self.min_decline) and self.min_decline > 0):
            raise ValueError(f"min_decline: must be > 0, got {self.min_decline}")
        ns = self.noise_sigmas
        if ns is not None and (
            isinstance(ns, bool)
            or not isinstance(ns, int | float)
            or not math.isfinite(ns)
            or ns < 0
        ):
            raise ValueError(f"noise_sigmas: must be None or a finite number >= 0, got {ns!r}")
        fr = tuple(float(f) for f in self.early_fractions)
        if not fr or any(not 0.0 < f <= 1.0 for f in fr) or list(fr) != sorted(set(fr)):
            raise ValueError(
                f"early_fractions: must be strictly increasing values in (0, 1], got {self.early_fractions}"
            )
        object.__setattr__(self, "early_fractions", fr)
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise ValueError(f"tolerance: must be > 0, got {self.tolerance}")


# ----------------------------------------------------------------------------------------------
# 1. probe records -> (Q, L) trajectories
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
        return ProbeTrajectories(
            question_ids=self.question_ids,
            steps=self.steps[keep],
            p_initial=self.p_initial[:, keep],
            p_majority=self.p_majority[:, keep],
            n_samples=self.n_samples[:, keep],
            majority_answer=self.majority_answer[:, keep],
            initial_answer=self.initial_answer,
            initial_correct=self.initial_correct,
            majority_correct=self.majority_correct[:, keep],
            sample_accuracy=self.sample_accuracy[:, keep],
            source=self.source,
        )


# The exact answer distribution's fields, read instead of the sampled ones when every probe record has them.
_EXACT_FIELDS = {
    "p_initial_majority": "exact_p_initial_majority",
    "p_majority": "exact_p_majority",
    "majority_answer": "exact_majority_answer",
    "initial_majority_answer": "exact_initial_majority_answer",
    "sample_accuracy": "exact_accuracy",
}


def _exact_view(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    """A probe record with its exact values in the sampled fields' places (no sample count: noise-free)."""
    out = dict(rec)
    for sampled, exact in _EXACT_FIELDS.items():
        out[sampled] = rec.get(exact)
    out["n_samples"] = None
    label, answer = rec.get("label"), rec.get("exact_majority_answer")
    out["majority_correct"] = None if label is None or answer is None else str(answer) == str(label)
    return out


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


def trajectories_from_probes(
    records: Iterable[Mapping[str, Any]],
) -> tuple[ProbeTrajectories, tuple[str, ...]]:
    """Gather :class:`~sharpen.records.ProbeRecord` dicts into per-question trajectories.

    Records missing ``step``, ``question_id`` or a valid ``p_initial_majority`` are skipped and
    counted in the returned warnings (the readable part is still used). ``p_majority`` defaults
    to ``p_initial_majority`` and ``n_samples`` to NaN when absent. A repeated (question, step)
    keeps the last record (a resumed run re-logging a step). Questions are ordered by first
    appearance, steps ascending.

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
    warnings: list[str] = []
    records = list(records)
    exact = bool(records) and all(
        isinstance(r, Mapping) and r.get("exact_p_initial_majority") is not None for r in records
    )
    if exact:
        records = [_exact_view(r) for r in records]
    missing: dict[str, int] = {}
    rows: dict[tuple[str, int], Mapping[str, Any]] = {}
    order: dict[str, None] = {}
    n_dup = 0
    for rec in records:
        if not isinstance(rec, Mapping):
            missing["not a record"] = missing.get("not a record", 0) + 1
            continue
        bad = [k for k in ("step", "question_id", "p_initial_majority") if rec.get(k) is None]
        if not bad and _as_probability(rec["p_initial_majority"]) is None:
            bad = ["p_initial_majority (not a probability)"]
        if not bad:
            try:
                step = int(rec["step"])
            except (TypeError, ValueError):
                bad = ["step (not an integer)"]
        if bad:
            for b in bad:
                missing[b] = missing.get(b, 0) + 1
            continue
        key = (str(rec["question_id"]), step)
        n_dup += key in rows
        rows[key] = rec
        order.setdefault(key[0], None)
    for name, count in missing.items():
        warnings.append(f"probes: skipped {count} record(s) missing field {name}")
    if n_dup:
        warnings.append(f"probes: {n_dup} repeated (question, step) record(s); kept the last")
    if not rows:
        raise ValueError(
            "records: no usable probe record (each needs step, question_id and p_initial_majority)"
        )
    qids = tuple(order)
    steps = np.array(sorted({s for _, s in rows}), dtype=np.float64)
    q_index = {q: i for i, q in enumerate(qids)}
    s_index = {int(s): j for j, s in enumerate(steps)}
    shape = (len(qids), len(steps))
    p_init = np.full(shape, np.nan)
    p_maj = np.full(shape, np.nan)
    n_samp = np.full(shape, np.nan)
    maj_ans = np.full(shape, None, dtype=object)
    maj_cor = np.full(shape, np.nan)
    s_acc = np.full(shape, np.nan)
    init_ans: list[str | None] = [None] * len(qids)
    for (q, s), rec in sorted(rows.items(), key=lambda kv: kv[0][1]):
        i, j = q_index[q], s_index[s]
        p_init[i, j] = float(rec["p_initial_majority"])
        pm = _as_probability(rec.get("p_majority"))
        p_maj[i, j] = max(pm, p_init[i, j]) if pm is not None else p_init[i, j]
        try:
            n = float(rec.get("n_samples"))
            n_samp[i, j] = n if n >= 1 else np.nan
        except (TypeError, ValueError):
            pass
        maj_ans[i, j] = rec.get("majority_answer")
        maj_cor[i, j] = _as_bool_float(rec.get("majority_correct"))
        sa = _as_probability(rec.get("sample_accuracy"))
        s_acc[i, j] = np.nan if sa is None else sa
        if init_ans[i] is None and rec.get("initial_majority_answer") is not None:
            init_ans[i] = str(rec["initial_majority_answer"])
    # Initial correctness: majority_correct at the first probe where the majority is the initial one.
    init_cor = np.full(len(qids), np.nan)
    for i in range(len(qids)):
        obs = np.flatnonzero(~np.isnan(p_init[i]))
        for j in obs:
            if p_init[i, j] >= p_maj[i, j] and not np.isnan(maj_cor[i, j]):
                init_cor[i] = maj_cor[i, j]
                break
    traj = ProbeTrajectories(
        question_ids=qids,
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
# 2. per-question fits, classification, pooling
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
    z = float(stats.norm.ppf(0.5 + level / 2))
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
# 3. the run's settings and the effective beta
# ----------------------------------------------------------------------------------------------

_SETTING_KEYS: dict[str, tuple[str, ...]] = {
    "lr": ("lr", "learning_rate"),
    "n_rollouts": ("n_rollouts", "num_generations", "group_size", "rollouts", "n"),
    "clip_eps": ("clip_eps", "epsilon", "clip_range", "clip"),
    "batch_size": ("batch_size", "prompts_per_step", "train_batch_size"),
    "epochs": ("epochs", "ppo_epochs", "num_iterations"),
    "optimizer": ("optimizer",),
    "reward": ("reward",),
    "kl_coef": ("kl_coef", "beta_kl", "kl_loss_coef"),
}


def _find_key(d: Any, names: tuple[str, ...], depth: int = 0) -> Any:
    if not isinstance(d, Mapping) or depth > 4:
        return None
    for name in names:
        if name in d and not isinstance(d[name], Mapping | list):
            return d[name]
    for v in d.values():
        found = _find_key(v, names, depth + 1)
        if found is not None:
            return found
    return None


def run_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that set the effective step size, searched by name in a (nested) config.

    Returns ``{name: value}`` for those of ``lr``, ``n_rollouts``, ``clip_eps``, ``batch_size``,
    ``epochs``, ``optimizer``, ``reward``, ``kl_coef`` that the config holds (top level first).

    >>> run_settings({"grpo": {"lr": 0.1, "n_rollouts": 8}, "reward": "majority_voting"})
    {'lr': 0.1, 'n_rollouts': 8, 'reward': 'majority_voting'}
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config: expected a mapping, got {type(config).__name__}")
    out = {}
    for key, names in _SETTING_KEYS.items():
        v = _find_key(config, names)
        if v is not None:
            out[key] = v
    return out


def beta_mapping(pooled: PooledFit, settings: Mapping[str, Any]) -> dict[str, float | None]:
    r"""Express the pooled :math:`\hat\beta` in the run's units.

    The experiments use no KL, so :math:`\beta` is an implicit step size: the log-odds gain per
    step :math:`1/\hat\beta` should scale with the learning rate. Reported: ``beta_steps``
    (:math:`\hat\beta`, in training steps), ``log_odds_per_step`` (:math:`1/\hat\beta`),
    ``log_odds_per_step_per_lr`` (:math:`1/(\hat\beta\,\eta)`, comparable across learning rates),
    ``beta_times_lr`` and ``steps_per_e_fold`` (steps for the odds to grow e-fold, = :math:`\hat\beta`),
    ``steps_to_halve_minority`` (:math:`\hat\beta \ln 2`: the non-majority odds halve).
    """
    s = pooled.slope
    lr = settings.get("lr")
    try:
        lr = float(lr) if lr is not None else None
    except (TypeError, ValueError):
        lr = None
    finite = math.isfinite(s) and s > 0
    return {
        "beta_steps": pooled.beta if finite else None,
        "log_odds_per_step": s if math.isfinite(s) else None,
        "log_odds_per_step_per_lr": (s / lr) if (finite and lr) else None,
        "beta_times_lr": (pooled.beta * lr) if (finite and lr) else None,
        "steps_to_halve_minority": (pooled.beta * math.log(2)) if finite else None,
    }


# ----------------------------------------------------------------------------------------------
# 4. collapse from the batch metrics, peak of held-out accuracy
# ----------------------------------------------------------------------------------------------


def metric_series(
    records: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> tuple[str | None, np.ndarray, np.ndarray]:
    """The first of ``names`` logged in ``records``, as (name, steps (S,), values (S,)).

    Records without the metric or with a non-numeric value are skipped; a step logged twice keeps
    the last value; steps come out ascending. ``(None, [], [])`` if no name is present.

    >>> metric_series([{"step": 0, "reward": 1}, {"step": 1, "reward": 0.5}], ["reward_accuracy", "reward"])
    ('reward', array([0., 1.]), array([1. , 0.5]))
    """
    for name in names:
        by_step: dict[int, float] = {}
        for r in records:
            v, s = r.get(name), r.get("step")
            if v is None or s is None or isinstance(v, bool | str):
                continue
            try:
                by_step[int(s)] = float(v)
            except (TypeError, ValueError):
                continue
        if by_step:
            st = np.array(sorted(by_step), dtype=np.float64)
            return name, st, np.array([by_step[int(k)] for k in st])
    return None, np.zeros(0), np.zeros(0)


@dataclass(frozen=True)
class CollapseReport:
    """Model Collapse Step under both rules and the peak of held-out accuracy.

    ``threshold_step`` / ``peak_step`` are None where the rule found no collapse (or the metric
    is missing: ``metric`` None). ``heldout`` maps each split to ``{"metric", "peak_step",
    "peak_value", "first_value", "last_value", "decline_step"}`` (``decline_step`` = the peak
    rule on that split). ``noise`` is the metric's step-to-step noise after smoothing
    (:func:`sharpen.metrics.step_noise`); ``peak_within_noise`` is True when the peak rule fired
    although the decline it asked for (``peak_evidence["required_decline"]``) is under
    :data:`NOISE_SIGMAS` noise standard deviations, so a running maximum of pure noise would
    trigger it: the peak rule's step is then no evidence of collapse. With the default noise-aware
    rule (``AnalysisConfig.noise_sigmas = NOISE_SIGMAS``) this cannot happen.
    """

    metric: str | None
    threshold_step: int | None
    threshold_evidence: dict[str, float]
    peak_step: int | None
    peak_evidence: dict[str, float]
    last_step: int | None
    heldout: dict[str, dict[str, Any]]
    noise: float = math.nan
    peak_within_noise: bool = False


def _heldout_series(run: Run) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    out = {}
    splits = sorted({str(r.get("split", "heldout")) for r in run.evals})
    for split in splits:
        recs = [r for r in run.evals if str(r.get("split", "heldout")) == split]
        name, st, v = metric_series(recs, eval_metric_names(recs))
        if name is not None:
            out[split] = (name, st, v)
    # Simulated runs log held-out sets as metrics named eval/<split>/accuracy.
    sim_keys = sorted(
        {k for r in run.metrics for k in r if k.startswith("eval/") and k.endswith("accuracy")}
    )
    for key in sim_keys:
        split = key.split("/")[1] if key.count("/") >= 2 else key
        if split in out and out[split][0].endswith("greedy_accuracy") is False:
            continue
        name, st, v = metric_series(run.metrics, [key])
        out.setdefault(split, (name, st, v))
    if not out:  # sim result folders log held-out accuracy as the batch metric "val_accuracy"
        name, st, v = metric_series(run.metrics, ["val_accuracy"])
        if name is not None:
            out["heldout"] = (name, st, v)
    return out


def detect_collapse(run: Run, config: AnalysisConfig = AnalysisConfig()) -> CollapseReport:
    """Model Collapse Step of ``config.collapse_metric`` by both rules, and held-out peaks.

    Uses :func:`sharpen.metrics.model_collapse_step` (never re-implemented); NaN entries are
    skipped, so a metric logged every few steps is fine.
    """
    if not isinstance(run, Run):
        raise ValueError(f"run: expected a sharpen.records.Run, got {type(run).__name__}")
    aliases = METRIC_ALIASES.get(config.collapse_metric, (config.collapse_metric,))
    name, st, v = metric_series(run.metrics, aliases)
    thr = pk = None
    noise = step_noise(v, config.smoothing) if name is not None else math.nan
    if name is not None and v.size:
        thr = model_collapse_step(
            v,
            "threshold",
            steps=st.astype(int),
            threshold=config.threshold,
            consecutive=config.consecutive,
            smoothing=config.smoothing,
        )
        pk = model_collapse_step(
            v,
            "peak",
            steps=st.astype(int),
            smoothing=config.smoothing,
            min_decline=config.min_decline,
            patience=config.patience,
            noise_sigmas=config.noise_sigmas,
        )
    all_steps = [r.get("step") for r in run.metrics] + [r.get("step") for r in run.probes]
    all_steps = [
        int(s) for s in all_steps if isinstance(s, int | float) and not isinstance(s, bool)
    ]
    heldout = {}
    for split, (hname, hst, hv) in _heldout_series(run).items():
        j = int(np.nanargmax(hv))
        dec = model_collapse_step(
            hv,
            "peak",
            steps=hst.astype(int),
            min_decline=config.min_decline,
            patience=min(config.patience, max(1, hv.size // 3)),
        )
        heldout[split] = {
            "metric": hname,
            "peak_step": int(hst[j]),
            "peak_value": float(hv[j]),
            "first_value": float(hv[0]),
            "last_value": float(hv[-1]),
            "decline_step": None if dec is None else dec.step,
        }
    return CollapseReport(
        metric=name,
        threshold_step=None if thr is None else thr.step,
        threshold_evidence={} if thr is None else dict(thr.evidence),
        peak_step=None if pk is None else pk.step,
        peak_evidence={} if pk is None else dict(pk.evidence),
        last_step=max(all_steps) if all_steps else None,
        heldout=heldout,
        noise=noise,
        peak_within_noise=bool(
            pk is not None and pk.evidence["required_decline"] < NOISE_SIGMAS * noise
        ),
    )


# ----------------------------------------------------------------------------------------------
# 5. early prediction of the collapse step
# ----------------------------------------------------------------------------------------------


def predicted_reward_accuracy(
    fit: SharpeningFit, initial_correct: np.ndarray, c0: np.ndarray, p0_obs: np.ndarray, steps
) -> np.ndarray:
    r"""Reward accuracy of the majority-vote reward predicted by Theorem 1, averaged over questions.

    Under (A1) each question keeps its initial majority answer with mass
    :math:`p_k = \mathrm{sigmoid}(\hat\eta_0 + \hat s k)` (the fit), and every other answer keeps
    its share of the rest, so the correct answer's share is
    :math:`c_k = c_0 (1 - p_k)/(1 - p_0)`. A rollout's proxy reward (1 iff it gives the
    majority answer) agrees with its ground-truth reward unless it gives the majority answer or
    the correct one, so per question

    .. math:: \mathrm{RA}_k = 1 \text{ if the majority is correct, else } 1 - p_k - c_k
              = (1 - p_k)\Big(1 - \frac{c_0}{1 - p_0}\Big).

    Parameters
    ----------
    fit : SharpeningFit of batch shape (Q,); questions with an invalid fit are left out.
    initial_correct : (Q,) 1/0 (NaN = unknown, left out).
    c0 : (Q,) initial share of correct samples (NaN is read as 0 for a wrong majority).
    p0_obs : (Q,) observed initial share of the majority (the :math:`p_0` of the :math:`c_k` formula).
    steps : (S,) steps to predict at.

    Returns
    -------
    (S,) mean predicted reward accuracy (NaN where no question is usable).

    Example
    -------
    >>> from sharpen.theory import majority_prob
    >>> f = fit_sharpening(np.arange(5.0), majority_prob([0.5], 2.0, np.arange(5.0))[None])
    >>> float(predicted_reward_accuracy(f, np.array([0.0]), np.array([0.0]), np.array([0.5]), [0.0])[0])
    0.5
    """
    k = np.asarray(steps, dtype=np.float64)
    ic = np.asarray(initial_correct, dtype=np.float64)
    use = np.asarray(fit.valid) & ~np.isnan(ic)
    if not use.any():
        return np.full(k.shape, np.nan)
    pk = special.expit(fit.intercept[use, None] + fit.slope[use, None] * k[None, :])  # (Q', S)
    c = np.nan_to_num(np.asarray(c0, dtype=np.float64)[use], nan=0.0)
    p0 = np.asarray(p0_obs, dtype=np.float64)[use]
    share = np.clip(np.where(p0 < 1, c / np.maximum(1 - p0, 1e-12), 0.0), 0.0, 1.0)
    ra = np.where(ic[use, None] > 0.5, 1.0, (1 - pk) * (1 - share[:, None]))
    return ra.mean(axis=0)


@dataclass(frozen=True)
class CollapsePrediction:
    """A collapse step predicted from the probes up to ``upto_step`` (``fraction`` of the run).

    ``predicted_step`` is None when Theorem 1 predicts no crossing within ``horizon`` steps;
    ``floor`` is the predicted reward accuracy's limit (the share of probe questions whose
    initial majority is correct): a threshold below it is never crossed under (A1).
    ``relative_error`` = (predicted - observed) / observed where both exist.
    """

    fraction: float
    upto_step: float
    n_probe_steps: int
    predicted_step: int | None
    floor: float
    observed_step: int | None
    relative_error: float | None
    note: str = ""


def predict_collapse(
    traj: ProbeTrajectories,
    upto_step: float,
    *,
    threshold: float = 0.01,
    horizon: int = 100_000,
    observed_step: int | None = None,
    fraction: float = math.nan,
    level: float = 0.95,
) -> CollapsePrediction:
    """Predict the Model Collapse Step (threshold rule) from probes at steps ``<= upto_step``.

    Fits Theorem 1 on the early probes (:func:`fit_trajectories`), maps the fitted curves to the
    batch reward accuracy (:func:`predicted_reward_accuracy`) and returns the first integer step
    in ``[0, horizon]`` where it falls below ``threshold``. Assumes the probe questions stand
    for the training batch and that (A1) holds; majority flips are not predicted.
    """
    if not (0 < threshold < 1):
        raise ValueError(f"threshold: must lie in (0, 1), got {threshold}")
    if horizon < 1:
        raise ValueError(f"horizon: must be >= 1, got {horizon}")
    early = traj.upto(upto_step)
    n_steps = int(early.steps.size)

    def result(pred: int | None, floor: float, note: str) -> CollapsePrediction:
        err = None
        if pred is not None and observed_step:
            err = (pred - observed_step) / observed_step
        return CollapsePrediction(
            fraction, float(upto_step), n_steps, pred, floor, observed_step, err, note
        )

    if n_steps < 2:
        return result(None, math.nan, "fewer than two probe steps in the early window")
    if np.isnan(early.initial_correct).all():
        return result(None, math.nan, "probes carry no correctness (majority_correct)")
    fit = fit_trajectories(early, level=level)
    first = np.array(
        [
            row[np.flatnonzero(~np.isnan(row))[0]] if (~np.isnan(row)).any() else np.nan
            for row in early.p_initial
        ]
    )
    c0 = np.array(
        [
            row[np.flatnonzero(~np.isnan(row))[0]] if (~np.isnan(row)).any() else np.nan
            for row in early.sample_accuracy
        ]
    )
    use = np.asarray(fit.valid) & ~np.isnan(traj.initial_correct)
    if not use.any():
        return result(None, math.nan, "no question with a valid early fit and known correctness")
    floor = float(np.mean(traj.initial_correct[use] > 0.5))
    grid = np.arange(0, horizon + 1, dtype=np.float64)
    ra = predicted_reward_accuracy(fit, traj.initial_correct, c0, first, grid)
    below = np.flatnonzero(ra < threshold)
    if below.size == 0:
        note = (
            f"Theorem 1 predicts no collapse: {floor:.0%} of probe questions hold a correct initial "
            "majority, which (A1) keeps forever"
            if floor >= threshold
            else f"predicted reward accuracy stays above {threshold} (min {np.nanmin(ra):.3f}) within {horizon} steps"
        )
        return result(None, floor, note)
    return result(int(grid[below[0]]), floor, "")


def early_prediction(
    traj: ProbeTrajectories,
    last_step: float,
    observed_step: int | None,
    config: AnalysisConfig = AnalysisConfig(),
) -> tuple[tuple[CollapsePrediction, ...], float | None]:
    """Predictions from growing early windows, and the fraction of the run the prediction needed.

    For each ``f`` in ``config.early_fractions`` the window is steps ``<= first + f (last - first)``.
    The needed fraction is the smallest ``f`` from which every prediction (for ``f`` and all larger
    fractions) lies within ``config.tolerance`` of the observed step; None if there is no observed
    collapse or no such ``f``.
    """
    start = float(traj.steps[0]) if traj.steps.size else 0.0
    preds = []
    for f in config.early_fractions:
        upto = start + f * (float(last_step) - start)
        preds.append(
            predict_collapse(
                traj,
                upto,
                threshold=config.threshold,
                horizon=max(int(10 * last_step), 1000),
                observed_step=observed_step,
                fraction=f,
                level=config.level,
            )
        )
    needed = None
    if observed_step:
        ok = [
            p.relative_error is not None and abs(p.relative_error) <= config.tolerance
            for p in preds
        ]
        for i in range(len(ok)):
            if all(ok[i:]):
                needed = preds[i].fraction
                break
    return tuple(preds), needed


# ----------------------------------------------------------------------------------------------
# 6. the whole analysis
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunAnalysis:
    """Everything ``sharpen fit`` reports on one run (see :func:`analyze`)."""

    run_dir: str
    kind: str
    settings: dict[str, Any]
    trajectories: ProbeTrajectories | None
    fit: SharpeningFit | None
    questions: tuple[QuestionFit, ...]
    class_summary: dict[str, dict[str, float]]
    pooled: dict[str, PooledFit]
    beta_mapping: dict[str, float | None]
    collapse: CollapseReport
    predictions: tuple[CollapsePrediction, ...]
    needed_fraction: float | None
    warnings: tuple[str, ...] = field(default=())


def _class_summary(questions: Sequence[QuestionFit]) -> dict[str, dict[str, float]]:
    total = len(questions)
    out = {}
    for c in CLASSES:
        qs = [q for q in questions if q.label == c]
        if not qs:
            out[c] = {"count": 0, "share": 0.0}
            continue
        med = lambda xs: float(np.nanmedian(xs)) if np.isfinite(xs).any() else math.nan  # noqa: E731
        out[c] = {
            "count": len(qs),
            "share": len(qs) / total,
            "median_r2_logit": med(np.array([q.r2_logit for q in qs])),
            "median_r2_p": med(np.array([q.r2_p for q in qs])),
            "median_beta": med(np.array([q.beta for q in qs])),
            "median_first_flip_step": med(np.array([q.first_flip_step for q in qs])),
            "mean_flips": float(np.mean([q.n_flips for q in qs])),
        }
    return out


def analyze(run: Run, config: AnalysisConfig = AnalysisConfig()) -> RunAnalysis:
    """Fit, classify, pool, map beta, detect and predict collapse for a loaded run."""
    if not isinstance(run, Run):
        raise ValueError(f"run: expected a sharpen.records.Run, got {type(run).__name__}")
    if not isinstance(config, AnalysisConfig):
        raise ValueError(f"config: expected AnalysisConfig, got {type(config).__name__}")
    warnings = list(run.warnings)
    settings = run_settings(run.config)
    collapse = detect_collapse(run, config)
    if collapse.metric is None:
        warnings.append(f"metrics: no {config.collapse_metric} series; no Model Collapse Step")
    traj = fit = None
    questions: tuple[QuestionFit, ...] = ()
    pooled: dict[str, PooledFit] = {}
    predictions: tuple[CollapsePrediction, ...] = ()
    needed = None
    if run.probes:
        try:
            traj, w = trajectories_from_probes(run.probes)
            warnings.extend(w)
        except ValueError as exc:
            warnings.append(f"probes: {exc}")
    else:
        warnings.append("probes.jsonl: no probe records; no per-question fit")
    if traj is not None:
        fit = fit_trajectories(traj, level=config.level)
        questions = classify_questions(traj, fit)
        few = int((np.asarray(fit.n_points) < MIN_FIT_POINTS).sum())
        if few:
            warnings.append(
                f"fit: {few} of {len(questions)} question(s) have fewer than {MIN_FIT_POINTS} probe steps; "
                "their R^2 (1 for two points) says nothing: probe more often (probe_every)"
            )
        se = np.asarray(fit.slope_se)
        for name, members in (
            ("sharpened", [q.label == "sharpened" for q in questions]),
            ("all", [q.label not in ("insufficient", "saturated") for q in questions]),
        ):
            m = np.array(members, dtype=bool)
            pooled[name] = pool_slopes(np.asarray(fit.slope)[m], se[m], level=config.level)
        last = collapse.last_step if collapse.last_step is not None else float(traj.steps[-1])
        predictions, needed = early_prediction(traj, last, collapse.threshold_step, config)
    main = pooled.get("sharpened") or PooledFit(
        0,
        math.nan,
        math.nan,
        (math.nan,) * 2,
        math.nan,
        (math.nan,) * 2,
        math.nan,
        math.nan,
        math.nan,
    )
    return RunAnalysis(
        run_dir=str(run.run_dir),
        kind=str(run.config.get("kind", "unknown")),
        settings=settings,
        trajectories=traj,
        fit=fit,
        questions=questions,
        class_summary=_class_summary(questions),
        pooled=pooled,
        beta_mapping=beta_mapping(main, settings),
        collapse=collapse,
        predictions=predictions,
        needed_fraction=needed,
        warnings=tuple(warnings),
    )


def analyze_run(
    run_dir: str | os.PathLike, config: AnalysisConfig = AnalysisConfig()
) -> RunAnalysis:
    """Load a run folder (:func:`sharpen.records.load_run`) and :func:`analyze` it.

    Raises ``ValueError`` (with the folder named) for a missing folder or one with no logs.
    """
    return analyze(load_run(run_dir), config)


# ----------------------------------------------------------------------------------------------
# 7. reports: JSON, Markdown, overlay figure
# ----------------------------------------------------------------------------------------------


def _clean(x: Any) -> Any:
    """JSON-safe: NaN -> None, inf -> "inf", tuples -> lists, numpy -> python."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    return x


def summary_dict(res: RunAnalysis) -> dict[str, Any]:
    """The JSON summary: settings, pooled fits, classes, per-question fits, collapse, predictions."""
    return _clean(
        {
            "run_dir": res.run_dir,
            "kind": res.kind,
            "settings": res.settings,
            "n_questions": len(res.questions),
            "probe_steps": [] if res.trajectories is None else res.trajectories.steps.tolist(),
            "probe_source": None if res.trajectories is None else res.trajectories.source,
            "pooled": {k: asdict(v) for k, v in res.pooled.items()},
            "beta_mapping": res.beta_mapping,
            "classes": res.class_summary,
            "questions": [asdict(q) for q in res.questions],
            "collapse": asdict(res.collapse),
            "early_prediction": {
                "predictions": [asdict(p) for p in res.predictions],
                "needed_fraction": res.needed_fraction,
            },
            "warnings": list(res.warnings),
        }
    )


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        if math.isinf(x):
            return "inf"
        return f"{x:.{digits}g}"
    return str(x)


def _peak_text(c: CollapseReport) -> str:
    """The peak rule's step, flagged when the decline it asks for is within the metric's noise."""
    if c.peak_step is None or not c.peak_within_noise:
        return _fmt(c.peak_step)
    return f"{c.peak_step} (within noise: step-to-step sigma {_fmt(c.noise, 2)})"


def _split_name(split: str, metric: str) -> str:
    return f"held-out ({metric})" if split == "heldout" else f"held-out '{split}' ({metric})"


def reading(res: RunAnalysis) -> list[str]:
    """The run in a few plain sentences (the report's first section)."""
    out = []
    n = len(res.questions)
    cs = res.class_summary
    if n:
        p = res.pooled.get("sharpened")
        sharp = cs["sharpened"]["count"]
        text = f"Theorem 1 describes {sharp} of {n} probe questions (sharpened toward their initial majority"
        if p is not None and p.n_questions and math.isfinite(p.beta):
            text += (
                f"; pooled beta = {_fmt(p.beta)} steps: the odds of the initial majority grow e-fold every "
                f"{_fmt(p.beta)} steps"
            )
        text += ")."
        other = [
            f"{cs[c]['count']} {what}"
            for c, what in (
                ("flipped", "switched to another majority answer (A1 broke)"),
                ("no_learning", "did not gain (A2 broke)"),
                ("saturated", "were already deterministic at the first probe"),
                ("insufficient", "had fewer than two probes"),
            )
            if cs[c]["count"]
        ]
        if other:
            text += " Of the others, " + ", ".join(other) + "."
        out.append(text)
    else:
        out.append("The run has no probe trajectories, so Theorem 1 was not fitted.")
    c = res.collapse
    if c.metric is None:
        out.append("No collapse metric (reward accuracy) was logged.")
    else:
        if c.threshold_step is None:
            text = (
                f"No collapse by the paper's threshold rule: `{c.metric}` stayed at or above the threshold "
                f"for all {_fmt(c.last_step)} steps."
            )
        else:
            text = f"`{c.metric}` fell below the threshold at step {c.threshold_step} (the Model Collapse Step)."
        if c.peak_step is not None and c.peak_within_noise:
            text += (
                f" The peak rule fires at step {c.peak_step}, but its decline is within the metric's "
                f"step-to-step noise (sigma {_fmt(c.noise, 2)}): keep `--noise-sigmas` at its default "
                f"({NOISE_SIGMAS:g}) or raise `--smoothing` or `--min-decline` before reading it as a collapse."
            )
        elif c.peak_step is not None:
            text += (
                f" By the peak rule, `{c.metric}` peaked at step {c.peak_step} and then declined"
            )
            ns = c.peak_evidence.get("noise_sigmas")
            if ns:
                text += (
                    f" by at least {_fmt(c.peak_evidence['required_decline'], 2)} "
                    f"(the larger of min_decline and {ns:g} step-to-step noise sigmas)"
                )
            text += "."
        out.append(text)
    for split, h in c.heldout.items():
        trend = (
            "then fell" if h["decline_step"] is not None else "and did not fall by the peak rule"
        )
        out.append(
            f"{_split_name(split, h['metric']).capitalize()} went {h['first_value']:.3f} -> "
            f"{h['peak_value']:.3f} (peak, step {h['peak_step']}) -> {h['last_value']:.3f} at the end, {trend}."
        )
    if res.predictions:
        if res.needed_fraction is not None and math.isfinite(res.needed_fraction):
            out.append(
                f"Fitted to the first {res.needed_fraction:.0%} of the run, Theorem 1 predicts the collapse "
                "step within 20%."
            )
        else:
            last = res.predictions[-1]
            head = (
                "No collapse was observed, so there is no step to predict"
                if last.observed_step is None
                else "Early prediction: no fraction of the run predicts the collapse step within 20%"
            )
            out.append(head + (f"; {last.note}." if last.note else "."))
    return out


def short_table(res: RunAnalysis) -> str:
    """A few lines for the terminal: classes, pooled beta, collapse, early prediction."""
    source = res.trajectories.source if res.trajectories is not None else None
    how = {"exact": "exact answer distributions, least squares on logit p",
           "sampled": "sampled shares, binomial fit"}.get(source, "no probes")  # fmt: skip
    lines = [f"run {res.run_dir} ({res.kind}), {len(res.questions)} probe questions ({how})"]
    if res.questions:
        lines.append(f"{'class':<13}{'n':>5}{'share':>8}{'med beta':>10}{'med R2(logit)':>15}")
        for c in CLASSES:
            s = res.class_summary[c]
            if s["count"]:
                lines.append(
                    f"{c:<13}{s['count']:>5}{s['share']:>8.0%}{_fmt(s['median_beta']):>10}"
                    f"{_fmt(s['median_r2_logit']):>15}"
                )
        p = res.pooled.get("sharpened")
        if p is not None and p.n_questions:
            lines.append(
                f"pooled beta (sharpened) = {_fmt(p.beta)} steps  CI [{_fmt(p.beta_ci[0])}, "
                f"{_fmt(p.beta_ci[1])}]  rho = {_fmt(p.rho, 5)}  I2 = {_fmt(p.i2, 2)}"
            )
    c = res.collapse
    lines.append(
        f"collapse ({c.metric or 'no metric'}): threshold rule step {_fmt(c.threshold_step)}, "
        f"peak rule step {_peak_text(c)}, last step {_fmt(c.last_step)}"
    )
    for split, h in c.heldout.items():
        lines.append(
            f"{_split_name(split, h['metric'])}: {h['first_value']:.3f} -> peak {h['peak_value']:.3f} "
            f"at step {h['peak_step']} -> {h['last_value']:.3f}"
        )
    if res.predictions and all(p.observed_step is None for p in res.predictions):
        last = reading(res)[-1]  # the sentence on prediction: nothing observed to predict
        lines.append("early prediction: " + last[0].lower() + last[1:])
    elif res.predictions:
        best = next((p for p in res.predictions if p.fraction == res.needed_fraction), None)
        shown = best or res.predictions[-1]
        lines.append(
            f"early prediction from {shown.fraction:.0%} of the run: step {_fmt(shown.predicted_step)}"
            f" vs observed {_fmt(shown.observed_step)}; within +-20% from fraction "
            f"{_fmt(res.needed_fraction)}" + (f" ({shown.note})" if shown.note else "")
        )
    for w in res.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def markdown_report(res: RunAnalysis) -> str:
    """The Markdown report written next to the run's logs."""
    out = [f"# Theorem 1 fit: `{res.run_dir}`", ""]
    out.append(
        f"Run kind: **{res.kind}**. Settings: "
        + (", ".join(f"{k}={v}" for k, v in res.settings.items()) or "none found")
        + "."
    )
    if res.trajectories is not None:
        out += ["", PROBE_SOURCE_TEXT[res.trajectories.source]]
    out += ["", "## Reading", ""]
    out += [f"- {line}" for line in reading(res)]
    out.append("")
    out.append("## Question classes")
    out.append("")
    if res.questions:
        out += [
            "| class | meaning | n | share | median beta | median R² (logit) | median R² (p) |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in CLASSES:
            s = res.class_summary[c]
            if s["count"]:
                out.append(
                    f"| {c} | {CLASS_MEANING[c]} | {s['count']} | {s['share']:.0%} | {_fmt(s['median_beta'])}"
                    f" | {_fmt(s['median_r2_logit'])} | {_fmt(s['median_r2_p'])} |"
                )
        flips = res.class_summary["flipped"]
        if flips["count"]:
            out.append("")
            out.append(
                f"Flipped questions: median first flip at step {_fmt(flips['median_first_flip_step'])}, "
                f"{_fmt(flips['mean_flips'])} leader changes on average."
            )
        out += ["", "## Pooled fit (inverse-variance, one slope, per-question intercepts)", ""]
        out += [
            "| questions | n | beta (steps) | beta CI | rho | I² |",
            "|---|---|---|---|---|---|",
        ]
        for name, p in res.pooled.items():
            out.append(
                f"| {name} | {p.n_questions} | {_fmt(p.beta)} | [{_fmt(p.beta_ci[0])}, {_fmt(p.beta_ci[1])}]"
                f" | {_fmt(p.rho, 5)} | {_fmt(p.i2, 2)} |"
            )
        out += [
            "",
            "Effective beta in the run's units: "
            + ", ".join(f"{k} = {_fmt(v)}" for k, v in res.beta_mapping.items())
            + ".",
        ]
    else:
        out.append("No probe trajectories in this run: nothing to fit.")
    c = res.collapse
    out += ["", "## Model Collapse Step", ""]
    out.append(
        f"Metric `{c.metric}`; threshold rule: step {_fmt(c.threshold_step)}; peak rule: step "
        f"{_peak_text(c)}; run length {_fmt(c.last_step)} steps."
    )
    for split, h in c.heldout.items():
        out.append(
            f"- {_split_name(split, h['metric'])}: {h['first_value']:.3f} at start, peak {h['peak_value']:.3f}"
            f" at step {h['peak_step']}, {h['last_value']:.3f} at the end; decline confirmed after step "
            f"{_fmt(h['decline_step'])}."
        )
    if res.predictions:
        out += ["", "## Early prediction (threshold rule, from the first part of the run)", ""]
        out += [
            "| fraction | up to step | probes | predicted | observed | error | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in res.predictions:
            err = "-" if p.relative_error is None else f"{p.relative_error:+.0%}"
            out.append(
                f"| {p.fraction:.0%} | {p.upto_step:.0f} | {p.n_probe_steps} | {_fmt(p.predicted_step)}"
                f" | {_fmt(p.observed_step)} | {err} | {p.note} |"
            )
        out.append("")
        out.append(
            f"Fraction of the run needed for a prediction within ±20%: {_fmt(res.needed_fraction)}."
        )
    if res.warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in res.warnings]
    return "\n".join(out) + "\n"


THEORY_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.4}
CLASS_COLORS = {
    "sharpened": "#1f77b4",
    "flipped": "#d62728",
    "no_learning": "#7f7f7f",
    "saturated": "#2ca02c",
    "insufficient": "#bcbd22",
}


def draw_overlay(res: RunAnalysis, axes=None, *, max_questions: int = 12):
    """Measured p_k (markers) with the fitted Theorem 1 curves (dashed): probability, logit, residuals.

    Parameters
    ----------
    res : RunAnalysis with trajectories.
    axes : None or a sequence of 3 matplotlib axes (probability, logit, residuals).
    max_questions : at most this many questions are drawn, taken in turn from each class.

    Returns
    -------
    matplotlib Figure
    """
    if res.trajectories is None or res.fit is None:
        raise ValueError("res: the run has no probe trajectories to draw")
    pooled = res.pooled.get("sharpened")
    return draw_overlay_arrays(
        res.trajectories.steps,
        res.trajectories.p_initial,
        res.trajectories.n_samples,
        np.asarray(res.fit.intercept),
        np.asarray(res.fit.slope),
        [q.label for q in res.questions],
        pooled_beta=None if pooled is None or not pooled.n_questions else pooled.beta,
        n_pooled=0 if pooled is None else pooled.n_questions,
        axes=axes,
        max_questions=max_questions,
    )


def draw_overlay_arrays(
    steps,
    p_initial,
    n_samples,
    intercept,
    slope,
    labels: Sequence[str],
    *,
    pooled_beta: float | None = None,
    n_pooled: int = 0,
    axes=None,
    max_questions: int = 12,
):
    """:func:`draw_overlay` from plain arrays (steps (L,), p_initial and n_samples (Q, L), intercept,
    slope (Q,) with NaN for no fit, labels (Q,) question classes), so cached data can be redrawn."""
    import matplotlib.pyplot as plt

    k = np.asarray(steps, dtype=np.float64)
    p_all = np.asarray(p_initial, dtype=np.float64)
    n_all = np.asarray(n_samples, dtype=np.float64)
    a, b = np.asarray(intercept, dtype=np.float64), np.asarray(slope, dtype=np.float64)
    if p_all.ndim != 2 or p_all.shape[1] != k.size or len(labels) != p_all.shape[0]:
        raise ValueError(
            f"p_initial: expected shape (Q, {k.size}) with Q = len(labels), got {p_all.shape}"
        )
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), constrained_layout=True)
    else:
        fig = axes[0].figure
    ax_p, ax_l, ax_r = axes
    by_class: dict[str, list[int]] = {}
    for c in CLASSES:
        if c != "insufficient":
            by_class[c] = [i for i, lab in enumerate(labels) if lab == c]
    chosen: list[int] = []
    while len(chosen) < max_questions and any(by_class.values()):
        for c in by_class:
            if by_class[c] and len(chosen) < max_questions:
                chosen.append(by_class[c].pop(0))
    kk = np.linspace(k.min(), k.max(), 200)
    seen: set[str] = set()
    for i in chosen:
        color = CLASS_COLORS[labels[i]]
        obs = ~np.isnan(p_all[i])
        label = None if labels[i] in seen else f"measured: {labels[i]}"
        seen.add(labels[i])
        p, n = p_all[i, obs], n_all[i, obs]
        eps = np.where(np.isnan(n), 1e-3, 0.5 / np.where(np.isnan(n), 1.0, n))
        ax_p.plot(k[obs], p, "o", color=color, ms=3.5, alpha=0.8, label=label)
        ax_l.plot(
            k[obs], special.logit(np.clip(p, eps, 1 - eps)), "o", color=color, ms=3.5, alpha=0.8
        )
        if np.isfinite(a[i]) and np.isfinite(b[i]):
            eta = a[i] + b[i] * kk
            ax_p.plot(kk, special.expit(eta), **THEORY_STYLE, alpha=0.8)
            ax_l.plot(kk, eta, **THEORY_STYLE, alpha=0.8)
            resid = p - special.expit(a[i] + b[i] * k[obs])
            ax_r.plot(k[obs], resid, "o-", color=color, ms=3, lw=0.6, alpha=0.7)
    # Keep the logit axis on the data: a near-separated fit's line would otherwise set the scale.
    shown = [special.logit(np.clip(p_all[i], 0.5 / 1000, 1 - 0.5 / 1000)) for i in chosen]
    if shown:
        vals = np.concatenate(shown)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            ax_l.set_ylim(vals.min() - 1.0, vals.max() + 1.0)
    ax_p.plot([], [], **THEORY_STYLE, label="Theorem 1 fit: sigmoid(logit p0 + k/beta)")
    sampled = bool(
        np.isfinite(n_all).any()
    )  # sample counts: shares of M samples; none: exact probabilities
    ax_p.set(
        xlabel="training step",
        ylabel=f"{'share' if sampled else 'probability'} of the initial majority answer p_k",
        ylim=(-0.02, 1.02),
    )
    ax_p.set_title("probability view")
    moved = "; 0/1 moved in by 1/(2M)" if sampled else ""
    ax_l.set(xlabel="training step", ylabel=f"logit p_k (log-odds{moved})")
    ax_l.set_title("logit view: Theorem 1 is a line of slope 1/beta")
    ax_r.axhline(0, color="black", lw=0.8)
    ax_r.set(xlabel="training step", ylabel="residual p_k - fitted p_k")
    ax_r.set_title("residuals of the fit")
    handles, names = ax_p.get_legend_handles_labels()
    ax_r.legend(handles, names, fontsize=7, loc="lower right", framealpha=0.9)
    if pooled_beta is not None and math.isfinite(pooled_beta):
        ax_l.text(
            0.02,
            0.97,
            f"pooled beta = {_fmt(pooled_beta)} steps (rho = e^(-1/beta) = {_fmt(math.exp(-1 / pooled_beta), 4)}),"
            f" {n_pooled} sharpened questions",
            transform=ax_l.transAxes,
            va="top",
            fontsize=7,
            bbox={"facecolor": "white", "alpha": 0.9, "edgecolor": "none"},
        )
    return fig


def write_report(
    res: RunAnalysis, out_dir: str | os.PathLike | None = None, *, figure: bool = True
) -> dict[str, Path]:
    """Write ``fit_summary.json``, ``fit_report.md`` and (with probes) ``fit_overlay.png``.

    ``out_dir`` defaults to the run folder. Returns ``{"summary", "report", "overlay"}`` paths.
    """
    out = Path(out_dir) if out_dir is not None else Path(res.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / SUMMARY_FILE, "report": out / REPORT_FILE}
    paths["summary"].write_text(json.dumps(summary_dict(res), indent=2) + "\n", encoding="utf-8")
    paths["report"].write_text(markdown_report(res), encoding="utf-8")
    if figure and res.trajectories is not None:
        from matplotlib.figure import Figure  # no pyplot: works under any backend, headless

        fig = Figure(figsize=(14, 4.6), layout="constrained")
        draw_overlay(res, fig.subplots(1, 3))
        fig.suptitle(
            f"Theorem 1 fitted to the measured per-question majority-probability trajectories of "
            f"{res.kind} run '{Path(res.run_dir).name}' (markers = probes, dashed = fit)",
            fontsize=9,
        )
        fig.savefig(out / OVERLAY_FILE, dpi=110)
        paths["overlay"] = out / OVERLAY_FILE
    return paths


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Run folders at or below ``root``: folders holding ``metrics.jsonl`` or ``probes.jsonl``."""
    r = Path(root)
    if not r.is_dir():
        return []
    found = {p.parent for name in ("metrics.jsonl", "probes.jsonl") for p in r.rglob(name)}
    return sorted(found)


# ----------------------------------------------------------------------------------------------
# 8. the `sharpen fit` command
# ----------------------------------------------------------------------------------------------


def _cli(args: argparse.Namespace) -> int:
    try:
        config = AnalysisConfig(
            threshold=args.threshold,
            consecutive=args.consecutive,
            smoothing=args.smoothing,
            min_decline=args.min_decline,
            patience=args.patience,
            noise_sigmas=args.noise_sigmas if args.noise_sigmas != 0 else None,
        )
    except ValueError as exc:
        return fail("sharpen fit", str(exc))
    status = 0
    for run_dir in args.run_dirs:
        try:
            res = analyze_run(run_dir, config)
        except ValueError as exc:
            status = fail("sharpen fit", f"{run_dir}: {exc}")
            continue
        out = (
            Path(args.out) / Path(run_dir).name if args.out and len(args.run_dirs) > 1 else args.out
        )
        paths = write_report(res, out, figure=not args.no_figure)
        print(short_table(res))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        print()
    return status


def register(subparsers) -> None:
    """Add ``sharpen fit RUN_DIR [RUN_DIR ...]`` (entry point of group ``sharpen.commands``)."""
    d = AnalysisConfig()
    p = subparsers.add_parser(
        "fit",
        help="fit Theorem 1 to a run's probe trajectories, classify questions, find and predict collapse",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s) written by sharpen.records"
    )
    p.add_argument(
        "--out", default=None, help="write the report here instead of into the run folder"
    )
    p.add_argument(
        "--threshold", type=float, default=d.threshold, help="MCS threshold (default 0.01)"
    )
    p.add_argument(
        "--consecutive", type=int, default=d.consecutive, help="MCS: consecutive steps below"
    )
    p.add_argument(
        "--smoothing", type=int, default=d.smoothing, help="trailing-mean window of the metric"
    )
    p.add_argument(
        "--min-decline", type=float, default=d.min_decline, help="peak rule: decline size"
    )
    p.add_argument("--patience", type=int, default=d.patience, help="peak rule: declining entries")
    p.add_argument(
        "--noise-sigmas",
        type=float,
        default=d.noise_sigmas,
        help=f"peak rule: the decline must also be this many step-to-step noise sigmas "
        f"(default {d.noise_sigmas:g}; 0 = plain rule)",
    )
    p.add_argument("--no-figure", action="store_true", help="skip the overlay figure")
    p.set_defaults(func=_cli)
