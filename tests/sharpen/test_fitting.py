"""Tests of sharpen.fitting: per-question Theorem 1 fits, classes, pooled slopes and the run's settings."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharpen import fitting
from sharpen.fitting import (
    classify_questions,
    fit_trajectories,
    pool_slopes,
    run_settings,
    trajectories_from_probes,
)
from sharpen.theory import majority_prob

STEPS = np.arange(0, 201, 10)


@given(beta=st.floats(5.0, 200.0), p0=st.floats(0.2, 0.8))
def test_classification_of_closed_form_is_sharpened(beta, p0):
    recs = [
        {"step": int(k), "question_id": "q", "p_initial_majority": float(p), "n_samples": 1000}
        for k, p in zip(STEPS, majority_prob(p0, beta, STEPS), strict=True)
    ]
    traj, warns = trajectories_from_probes(recs)
    fit = fit_trajectories(traj)
    q = classify_questions(traj, fit)[0]
    assert not warns
    assert q.label in ("sharpened", "saturated")
    if q.label == "sharpened":
        assert q.beta_ci[0] <= beta * (1 + 1e-6) and beta * (1 - 1e-6) <= q.beta_ci[1]


def test_pool_slopes_weights_and_heterogeneity():
    p = pool_slopes([0.1, 0.3], [0.01, 0.01])
    assert p.slope == pytest.approx(0.2)
    assert p.i2 > 0.9  # two slopes 14 SE apart: not one common beta
    q = pool_slopes([0.1, 0.3, math.nan], [0.001, 1.0, 0.1])
    assert q.n_questions == 2 and q.slope == pytest.approx(0.1, abs=1e-3)
    with pytest.raises(ValueError, match="ses"):
        pool_slopes([0.1], [0.1, 0.2])


def test_run_settings_finds_nested_keys():
    s = run_settings({"kind": "empirical", "optim": {"learning_rate": 3e-5}, "num_generations": 8})
    assert s == {"lr": 3e-5, "n_rollouts": 8}
    with pytest.raises(ValueError, match="config"):
        run_settings([1, 2])


def test_docstring_examples_run():
    result = doctest.testmod(fitting, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_rows_and_upto_select_questions_and_steps_of_every_field():
    records = [
        {"step": s, "question_id": q, "p_initial_majority": p, "majority_answer": a, "initial_majority_answer": "7",
         "p_majority": p, "majority_correct": q == "b", "sample_accuracy": p / 2, "n_samples": 8}
        for s in (0, 10, 20)
        for q, p, a in (("a", 0.5 + s / 100, "7"), ("b", 0.6, "7"), ("c", 0.3, "7"))
    ]  # fmt: skip
    traj, _ = trajectories_from_probes(records)
    sub = traj.rows([2, 0, 0])
    assert sub.question_ids == ("c", "a", "a")
    for name in ("p_initial", "p_majority", "n_samples", "majority_correct", "sample_accuracy"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(traj, name)[[2, 0, 0]])
    assert list(sub.majority_answer[:, 0]) == ["7", "7", "7"]
    np.testing.assert_array_equal(sub.initial_correct, traj.initial_correct[[2, 0, 0]])
    early = traj.upto(10)
    assert early.steps.tolist() == [0, 10] and early.p_initial.shape == (3, 2)
    np.testing.assert_array_equal(early.p_initial, traj.p_initial[:, :2])
    assert early.question_ids == traj.question_ids and early.source == traj.source
