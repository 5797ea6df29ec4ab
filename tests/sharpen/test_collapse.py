"""Tests of sharpen.collapse: the collapse step's prediction by Theorem 1 (the rules on whole runs are tested
through `sharpen fit` in test_run_analysis.py)."""

from __future__ import annotations

import doctest

import numpy as np

from sharpen import collapse
from sharpen.collapse import predict_collapse, step_noise
from sharpen.fitting import trajectories_from_probes
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
