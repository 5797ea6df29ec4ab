r"""The Model Collapse Step of a run, and its prediction from the first part of the run by Theorem 1.

1. :func:`metric_series` reads a logged series by its name (:data:`sharpen.records.METRICS`);
2. :func:`detect_collapse` finds the Model Collapse Step with both rules of
   :func:`sharpen.metrics.model_collapse_step` (threshold and peak, the peak rule noise-aware by default) and the
   peak of held-out accuracy;
3. :func:`predict_collapse` fits Theorem 1 to the early probes (:mod:`sharpen.fitting`) and maps the fitted
   curves to the batch reward accuracy (:func:`predicted_reward_accuracy`); :func:`early_prediction` does so
   from growing early windows and says how much of the run the prediction needed.

Numbers in, frozen dataclasses out; :class:`AnalysisConfig` holds every setting of the fit and the rules.

Example
-------
>>> metric_series([{"step": 0, "reward_accuracy": 0.9}, {"step": 1, "reward_accuracy": 0.0}],
...               [REWARD_ACCURACY])
('reward_accuracy', array([0., 1.]), array([0.9, 0. ]))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sharpen.fitting import ProbeTrajectories, fit_trajectories
from sharpen.metrics import model_collapse_step, step_noise
from sharpen.records import HELDOUT_ACCURACY, REWARD_ACCURACY, Run, columns
from sharpen.theory import SharpeningFit

__all__ = [
    "NOISE_SIGMAS",
    "AnalysisConfig",
    "CollapseReport",
    "CollapsePrediction",
    "metric_series",
    "step_noise",
    "detect_collapse",
    "predicted_reward_accuracy",
    "predict_collapse",
    "early_prediction",
]

NOISE_SIGMAS = 6.0
"""Default noise-aware peak rule of ``sharpen fit``: a decline must be at least this many step-to-step noise
standard deviations (:func:`sharpen.metrics.step_noise`). Measured on pure Gaussian noise with ``patience=3``,
the plain rule fires in every series and 4 sigmas still fire in about a fifth of 200-step and most
1000-step series (the running maximum of noise keeps climbing); 6 sigmas fire in about 1% of 1000-step series."""


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
    collapse_metric: str = REWARD_ACCURACY
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
# collapse from the batch metrics, peak of held-out accuracy
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


def _last_step(steps: list[Any]) -> int | None:
    """The largest of ``steps`` that is a number (not a bool), as an int; None if there is none."""
    if set(map(type, steps)) <= {int}:  # what load_run gives: every step an int
        return max(steps, default=None)
    numbers = [int(s) for s in steps if isinstance(s, int | float) and not isinstance(s, bool)]
    return max(numbers) if numbers else None


def _heldout_series(run: Run) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """Per ``eval.jsonl`` split, its held-out accuracy series (:data:`sharpen.records.HELDOUT_ACCURACY`)."""
    out = {}
    splits = sorted({str(r.get("split", "heldout")) for r in run.evals})
    for split in splits:
        recs = [r for r in run.evals if str(r.get("split", "heldout")) == split]
        name, st, v = metric_series(recs, [HELDOUT_ACCURACY])
        if name is not None:
            out[split] = (name, st, v)
    return out


def detect_collapse(run: Run, config: AnalysisConfig = AnalysisConfig()) -> CollapseReport:
    """Model Collapse Step of ``config.collapse_metric`` by both rules, and held-out peaks.

    Uses :func:`sharpen.metrics.model_collapse_step` (never re-implemented); NaN entries are
    skipped, so a metric logged every few steps is fine.
    """
    if not isinstance(run, Run):
        raise ValueError(f"run: expected a sharpen.records.Run, got {type(run).__name__}")
    name, st, v = metric_series(run.metrics, [config.collapse_metric])
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
    last_step = _last_step(
        columns(run.metrics, ["step"])["step"] + columns(run.probes, ["step"])["step"]
    )
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
        last_step=last_step,
        heldout=heldout,
        noise=noise,
        peak_within_noise=bool(
            pk is not None and pk.evidence["required_decline"] < NOISE_SIGMAS * noise
        ),
    )


# ----------------------------------------------------------------------------------------------
# early prediction of the collapse step
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
    >>> from sharpen.theory import fit_sharpening, majority_prob
    >>> f = fit_sharpening(np.arange(5.0), majority_prob([0.5], 2.0, np.arange(5.0))[None])
    >>> float(predicted_reward_accuracy(f, np.array([0.0]), np.array([0.0]), np.array([0.5]), [0.0])[0])
    0.5
    """
    k = np.asarray(steps, dtype=np.float64)
    ic = np.asarray(initial_correct, dtype=np.float64)
    use = np.asarray(fit.valid) & ~np.isnan(ic)
    if not use.any():
        return np.full(k.shape, np.nan)
    from scipy import special  # here, not at the top: importing this module stays scipy-free

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
    fit: SharpeningFit | None = None,
) -> CollapsePrediction:
    """Predict the Model Collapse Step (threshold rule) from probes at steps ``<= upto_step``.

    Fits Theorem 1 on the early probes (:func:`fit_trajectories`), maps the fitted curves to the
    batch reward accuracy (:func:`predicted_reward_accuracy`) and returns the first integer step
    in ``[0, horizon]`` where it falls below ``threshold``. Assumes the probe questions stand
    for the training batch and that (A1) holds; majority flips are not predicted.

    ``fit``, where the caller has it already, is that early fit, ``fit_trajectories(traj.upto(upto_step),
    level=level)`` (:func:`early_prediction` passes the whole run's fit for a window that holds every
    probe step); without it the fit is computed here.

    The prediction never falls below its floor (the share of correct initial majorities: each question
    contributes at least 1 or at least 0 to the mean, and rounding keeps the order), so a floor at or above
    ``threshold`` answers "no collapse" without evaluating the curve; otherwise the curve is evaluated
    :data:`_GRID_BLOCK` steps at a time up to the first block that crosses (:func:`_first_below`).
    """
    if not (0 < threshold < 1):
        raise ValueError(f"threshold: must lie in (0, 1), got {threshold}")
    if horizon < 1:
        raise ValueError(f"horizon: must be >= 1, got {horizon}")
    if fit is not None and (np.shape(fit.slope) != (traj.n_questions,) or fit.level != level):
        raise ValueError(
            f"fit: expected the early window's fit, of shape ({traj.n_questions},) at level {level}"
        )
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
    if fit is None:
        fit = fit_trajectories(early, level=level)
    use = np.asarray(fit.valid) & ~np.isnan(traj.initial_correct)
    if not use.any():
        return result(None, math.nan, "no question with a valid early fit and known correctness")
    floor = float(np.mean(traj.initial_correct[use] > 0.5))
    if floor >= threshold:
        return result(
            None,
            floor,
            f"Theorem 1 predicts no collapse: {floor:.0%} of probe questions hold a correct initial "
            "majority, which (A1) keeps forever",
        )
    first = _first_observed(early.p_initial)
    c0 = _first_observed(early.sample_accuracy)
    grid = np.arange(0, horizon + 1, dtype=np.float64)
    below, ra = _first_below(fit, traj.initial_correct, c0, first, grid, threshold)
    if below is None:
        note = f"predicted reward accuracy stays above {threshold} (min {np.nanmin(ra):.3f}) within {horizon} steps"
        return result(None, floor, note)
    return result(int(grid[below]), floor, "")


_GRID_BLOCK = 1024
"""Steps of the prediction grid evaluated at a time by :func:`_first_below`."""


def _first_observed(x: np.ndarray) -> np.ndarray:
    """(Q,) the first non-NaN value of each row of ``x`` (Q, L), NaN for a row without one."""
    seen = ~np.isnan(x)
    j = np.argmax(seen, axis=1)
    return np.where(seen.any(axis=1), x[np.arange(x.shape[0]), j], np.nan)


def _first_below(
    fit: SharpeningFit,
    initial_correct: np.ndarray,
    c0: np.ndarray,
    p0_obs: np.ndarray,
    grid: np.ndarray,
    threshold: float,
) -> tuple[int | None, np.ndarray]:
    """``(i, ra)``: the first index ``i`` of ``grid`` (S,) where :func:`predicted_reward_accuracy` is below
    ``threshold`` (None if nowhere) and the curve ``ra`` up to the end of the block that holds it (the whole
    (S,) curve when there is none).

    The curve is evaluated :data:`_GRID_BLOCK` steps at a time, stopping after the first block that crosses;
    its values are those of one call on the whole grid: every step's value is computed on its own, and a
    mean over questions (axis 0) of blocks at least two steps wide adds the questions in the same order
    (numpy sums pairwise only along the contiguous axis, which a one-step block would make axis 0)."""
    bounds = list(range(0, grid.size, _GRID_BLOCK)) + [grid.size]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 2:  # no one-step last block
        del bounds[-2]
    parts = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        parts.append(predicted_reward_accuracy(fit, initial_correct, c0, p0_obs, grid[a:b]))
        below = np.flatnonzero(parts[-1] < threshold)
        if below.size:
            return a + int(below[0]), np.concatenate(parts)
    return None, np.concatenate(parts)


def early_prediction(
    traj: ProbeTrajectories,
    last_step: float,
    observed_step: int | None,
    config: AnalysisConfig = AnalysisConfig(),
    *,
    fit: SharpeningFit | None = None,
) -> tuple[tuple[CollapsePrediction, ...], float | None]:
    """Predictions from growing early windows, and the fraction of the run the prediction needed.

    For each ``f`` in ``config.early_fractions`` the window is steps ``<= first + f (last - first)``.
    The needed fraction is the smallest ``f`` from which every prediction (for ``f`` and all larger
    fractions) lies within ``config.tolerance`` of the observed step; None if there is no observed
    collapse or no such ``f``. ``fit``, where the caller has it, is the whole run's fit
    (``fit_trajectories(traj, level=config.level)``), used for the windows that hold every probe step
    instead of fitting them again.
    """
    start = float(traj.steps[0]) if traj.steps.size else 0.0
    preds = []
    for f in config.early_fractions:
        upto = start + f * (float(last_step) - start)
        whole = fit is not None and traj.steps.size > 0 and upto >= traj.steps[-1]
        preds.append(
            predict_collapse(
                traj,
                upto,
                threshold=config.threshold,
                horizon=max(int(10 * last_step), 1000),
                observed_step=observed_step,
                fraction=f,
                level=config.level,
                fit=fit if whole else None,
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
