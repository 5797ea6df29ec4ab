"""Tests of sharpen.collapse: the collapse step's prediction by Theorem 1 (the rules on whole runs are tested
through `sharpen fit` in test_run_analysis.py)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from sharpen import collapse
from sharpen.collapse import CollapsePrediction, predict_collapse, step_noise
from sharpen.fitting import fit_trajectories, trajectories_from_probes
from sharpen.records import ProbeRecord
from sharpen.theory import majority_prob

STEPS = np.arange(0, 201, 10)


def test_prediction_says_no_collapse_when_majorities_are_correct():
    recs = [
        ProbeRecord(
            step=int(k),
            question_id="q",
            n_samples=64,
            majority_answer="A",
            p_majority=float(p),
            initial_majority_answer="A",
            p_initial_majority=float(p),
            label="C",
            majority_correct=True,
            sample_accuracy=float(p),
        )
        for k, p in zip(STEPS, majority_prob(0.4, 30.0, STEPS), strict=True)
    ]
    traj, _ = trajectories_from_probes([r.__dict__ for r in recs])
    pred = predict_collapse(traj, 100)
    assert pred.predicted_step is None and pred.floor == 1.0
    assert "no collapse" in pred.note


def test_step_noise_is_reexported_from_metrics():
    from sharpen import metrics

    assert step_noise is metrics.step_noise and "step_noise" in collapse.__all__


def test_docstring_examples_run():
    result = doctest.testmod(collapse, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


# ----------------------------------------------------------------------------------------------
# the prediction's shortcuts equal the plain computation
# ----------------------------------------------------------------------------------------------


def reference_predict_collapse(traj, upto_step, *, threshold=0.01, horizon=100_000, observed_step=None,
                               fraction=math.nan, level=0.95):  # fmt: skip
    """The plain prediction: fit the early window, evaluate the predicted reward accuracy on the whole grid in
    one call, take its first step below the threshold."""
    early = traj.upto(upto_step)
    n_steps = int(early.steps.size)

    def result(pred, floor, note):
        err = (pred - observed_step) / observed_step if pred is not None and observed_step else None
        return CollapsePrediction(
            fraction, float(upto_step), n_steps, pred, floor, observed_step, err, note
        )

    if n_steps < 2:
        return result(None, math.nan, "fewer than two probe steps in the early window")
    if np.isnan(early.initial_correct).all():
        return result(None, math.nan, "probes carry no correctness (majority_correct)")
    fit = fit_trajectories(early, level=level)
    first = np.array(
        [row[~np.isnan(row)][0] if (~np.isnan(row)).any() else np.nan for row in early.p_initial]
    )
    c0 = np.array(
        [
            row[~np.isnan(row)][0] if (~np.isnan(row)).any() else np.nan
            for row in early.sample_accuracy
        ]
    )
    use = np.asarray(fit.valid) & ~np.isnan(traj.initial_correct)
    if not use.any():
        return result(None, math.nan, "no question with a valid early fit and known correctness")
    floor = float(np.mean(traj.initial_correct[use] > 0.5))
    grid = np.arange(0, horizon + 1, dtype=np.float64)
    ra = collapse.predicted_reward_accuracy(fit, traj.initial_correct, c0, first, grid)
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


def _random_trajectories(rng, n_questions, n_steps, correct_share):
    """Sampled probes of questions that sharpen, flip or stall, some with gaps and unknown correctness."""
    steps = np.sort(rng.choice(np.arange(0, 20 * n_steps), n_steps, replace=False))
    recs = []
    for q in range(n_questions):
        # the log-odds grow fast, slowly, hardly, or fall
        p0, slope = rng.uniform(0.2, 0.8), rng.choice([1 / 15, 1 / 60, 1 / 400, -1 / 80])
        p = 1 / (1 + np.exp(-(np.log(p0 / (1 - p0)) + slope * steps)))
        correct = None if rng.uniform() < 0.1 else bool(rng.uniform() < correct_share)
        for k, pk in zip(steps, p, strict=True):
            if rng.uniform() < 0.1:
                continue  # not probed at this step
            share = rng.binomial(16, pk) / 16
            recs.append({"step": int(k), "question_id": f"q{q}", "p_initial_majority": share, "p_majority": share,
                         "n_samples": 16, "majority_correct": correct,
                         "sample_accuracy": None if rng.uniform() < 0.05 else float(rng.uniform(0, 0.3))})  # fmt: skip
    return trajectories_from_probes(recs)[0]


@pytest.mark.parametrize("seed", range(8))
def test_predict_collapse_equals_the_whole_grid_computation(seed):
    """The floor shortcut, the block-wise search and the vectorised first values change no prediction: random
    runs whose floor lies above or below the threshold, windows of every size, horizons whose grid ends in a
    one-step block (1024 + 1 steps) or fits one block."""
    rng = np.random.default_rng(seed)
    traj = _random_trajectories(
        rng, int(rng.integers(1, 40)), int(rng.integers(2, 30)), rng.choice([0.0, 0.3, 0.9])
    )
    last = float(traj.steps[-1])
    for threshold in (0.01, 0.2, 0.6):
        for horizon in (1, 5, 1024, 2049, 3000):
            for upto in (traj.steps[0], traj.steps[min(2, traj.steps.size - 1)], last / 2, last):
                kw = dict(threshold=threshold, horizon=horizon, observed_step=40, fraction=0.5)
                assert predict_collapse(traj, upto, **kw) == reference_predict_collapse(
                    traj, upto, **kw
                )


@pytest.mark.parametrize("seed", range(4))
def test_first_below_equals_one_call_on_the_whole_grid(seed):
    """Block by block, the curve has the values of one call on the whole grid, bit for bit (also when the last
    block would hold one step), and the first crossing is the whole curve's."""
    rng = np.random.default_rng(seed)
    traj = _random_trajectories(rng, 30, 12, 0.0)
    fit = fit_trajectories(traj)
    first, c0 = (
        collapse._first_observed(traj.p_initial),
        collapse._first_observed(traj.sample_accuracy),
    )
    for size in (2, 3, 1024, 1025, 1026, 2049, 5000):
        grid = np.arange(size, dtype=np.float64) * 3.0
        whole = collapse.predicted_reward_accuracy(fit, traj.initial_correct, c0, first, grid)
        for threshold in (1e-9, float(np.nanmedian(whole)), 0.999):
            i, ra = collapse._first_below(fit, traj.initial_correct, c0, first, grid, threshold)
            below = np.flatnonzero(whole < threshold)
            assert i == (int(below[0]) if below.size else None)
            assert np.array_equal(ra, whole[: ra.size], equal_nan=True)
            assert ra.size == size or ra.size % collapse._GRID_BLOCK == 0


def test_early_prediction_with_the_whole_fit_equals_fitting_every_window():
    rng = np.random.default_rng(7)
    traj = _random_trajectories(rng, 25, 20, 0.2)
    config = collapse.AnalysisConfig(threshold=0.3, early_fractions=(0.1, 0.5, 0.99, 1.0))
    last = float(traj.steps[-1])
    plain = collapse.early_prediction(traj, last, 50, config)
    reused = collapse.early_prediction(
        traj, last, 50, config, fit=fit_trajectories(traj, level=config.level)
    )
    assert reused == plain
    with pytest.raises(ValueError, match="fit: expected"):
        predict_collapse(traj, last, fit=fit_trajectories(traj, level=0.9))


def test_first_observed_and_last_step_equal_plain_loops():
    x = np.array([[np.nan, 0.2, 0.3], [np.nan, np.nan, np.nan], [0.5, np.nan, 0.1]])
    assert np.array_equal(collapse._first_observed(x), [0.2, np.nan, 0.5], equal_nan=True)
    assert collapse._first_observed(np.zeros((0, 3))).shape == (0,)
    for steps in ([3, 9, 2], [], [True, 4.7, "8", None, 2], [1.0, 2], [False]):
        plain = [int(s) for s in steps if isinstance(s, int | float) and not isinstance(s, bool)]
        assert collapse._last_step(steps) == (max(plain) if plain else None)
