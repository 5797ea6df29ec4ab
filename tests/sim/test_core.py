"""Policies, samplers, update rules and the fast path: equivalence with slow, obvious implementations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from sharpen.answers import plurality_winners
from sharpen.theory import majority_prob
from sim.core import (
    GRPOConfig,
    PriorConfig,
    SharedPolicy,
    TabularPolicy,
    check_probs,
    exact_tilt,
    expected_gradient,
    grpo_logit_grad,
    sample_counts,
    sample_prior,
    sample_rollouts,
    softmax,
)
from sim.fast import _plurality_winners_t, sample_counts_t, tabular_majority_step
from sim.train import train_answer_level

ALPHA = 1e-3  # level of every statistical test below


@given(
    beta=st.floats(0.2, 5.0),
    p0=st.floats(0.05, 0.95),
    k=st.integers(2, 6),
)
def test_exact_tilt_equals_closed_form(beta, p0, k):
    """The theorem itself: k tilts toward the majority give sigmoid(logit p0 + k/beta)."""
    p = np.full(k, (1 - p0) / (k - 1))
    p[0] = p0
    z = np.log(p)[None, :]
    r = np.zeros_like(z)
    r[0, 0] = 1.0
    for step in range(1, 8):
        z = exact_tilt(z, r, beta)
        assert softmax(z)[0, 0] == pytest.approx(float(majority_prob(p0, beta, step)), abs=1e-12)


def test_sample_counts_matches_slow_sampler_in_law():
    """Fast count sampler vs explicit rollouts: chi-square on the count of answer 0 (level 1e-3)."""
    p = np.array([[0.5, 0.3, 0.15, 0.05]])
    rng = np.random.default_rng(0)
    t = 20000
    fast = sample_counts(np.repeat(p, t, axis=0), 5, rng)[:, 0]
    slow = (sample_rollouts(np.repeat(p, t, axis=0), 5, rng) == 0).sum(axis=1)
    table = np.array([np.bincount(fast, minlength=6), np.bincount(slow, minlength=6)])
    table = table[:, table.sum(axis=0) > 0]
    assert stats.chi2_contingency(table).pvalue > ALPHA
    assert (sample_counts(np.repeat(p, 10, axis=0), 5, rng).sum(axis=1) == 5).all()


def test_transposed_counts_equal_row_counts_bit_for_bit():
    """The transposed float32 sampler applies the same rule: identical counts from identical uniforms."""
    rng = np.random.default_rng(3)
    e = rng.random((6, 500)).astype(np.float32) + 0.01
    a = sample_counts_t(e, 8, np.random.default_rng(5))
    u = np.random.default_rng(5).random((8, 500), dtype=np.float32) * np.cumsum(e, axis=0)[-1]
    cdf = np.cumsum(e, axis=0)
    cdf[-1] = np.inf
    idx = (u[:, None, :] >= cdf[None, :, :]).sum(axis=1)  # (N, Q) answer of each draw
    b = np.stack([(idx == k).sum(axis=0) for k in range(6)])
    np.testing.assert_array_equal(a, b)


def test_fast_winners_equal_sharpen_plurality_in_law():
    counts = np.tile(np.array([[3, 3, 1, 3, 0]]), (30000, 1))
    rng = np.random.default_rng(1)
    ours = np.bincount(_plurality_winners_t(np.ascontiguousarray(counts.T), rng), minlength=5)
    ref = np.bincount(plurality_winners(counts, rng), minlength=5)
    assert ours[[2, 4]].sum() == 0 and ref[[2, 4]].sum() == 0
    assert stats.chi2_contingency(np.array([ours[[0, 1, 3]], ref[[0, 1, 3]]])).pvalue > ALPHA
    unique = np.array([[1, 5, 2], [0, 0, 8]])
    np.testing.assert_array_equal(_plurality_winners_t(unique.T.copy(), rng), [1, 2])


def test_fast_step_deterministic_and_matches_general_path_in_expectation():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 4))
    a = np.ascontiguousarray(np.repeat(z, 4000, axis=0).T, dtype=np.float32)
    b = a.copy()
    tabular_majority_step(a, 8, 0.1, np.random.default_rng(9))
    tabular_majority_step(b, 8, 0.1, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    # mean update of the fast path vs the rollout path of train_answer_level (same law): within 5 SE
    fast_delta = (a.T - np.repeat(z, 4000, axis=0)).reshape(2, 4000, 4)
    pol = TabularPolicy(np.repeat(z, 4000, axis=0))
    train_answer_level(
        pol,
        np.zeros(8000, dtype=int),
        reward="majority_voting",
        grpo=GRPOConfig(lr=0.1),
        steps=1,
        rng=np.random.default_rng(2),
        force_rollouts=True,
    )
    slow_delta = (pol.logits() - np.repeat(z, 4000, axis=0)).reshape(2, 4000, 4)
    se = np.sqrt(fast_delta.var(axis=1) / 4000 + slow_delta.var(axis=1) / 4000) + 1e-9
    assert (np.abs(fast_delta.mean(axis=1) - slow_delta.mean(axis=1)) / se).max() < 5


def test_count_path_equals_rollout_path_in_expectation_ground_truth():
    z = np.array([[0.3, -0.2, 0.5]])
    zz = np.repeat(z, 6000, axis=0)
    corr = np.zeros(6000, dtype=int)
    outs = []
    for force in (False, True):
        pol = TabularPolicy(zz)
        train_answer_level(
            pol,
            corr,
            reward="ground_truth",
            grpo=GRPOConfig(lr=0.1),
            steps=1,
            rng=np.random.default_rng(4),
            force_rollouts=force,
        )
        outs.append(pol.logits() - zz)
    se = np.sqrt(outs[0].var(axis=0) / 6000 + outs[1].var(axis=0) / 6000)
    assert (np.abs(outs[0].mean(axis=0) - outs[1].mean(axis=0)) / se).max() < 5


def test_grpo_gradient_is_unbiased_for_expected_gradient():
    """E[(1/N) sum_i A_i (e_y - pi)] with A = r - mean (no std) equals (1 - 1/N) grad E[r]."""
    z = np.array([[0.2, -0.4, 0.1]])
    r_cls = np.array([1.0, 0.0, 0.5])
    n, t = 4, 40000
    rng = np.random.default_rng(0)
    p = softmax(np.repeat(z, t, axis=0))
    ys = sample_rollouts(p, n, rng)
    r = r_cls[ys]
    adv = r - r.mean(axis=1, keepdims=True)
    g = grpo_logit_grad(p, ys, adv)
    expected = (1 - 1 / n) * expected_gradient(z, r_cls[None, :])[0]
    se = g.std(axis=0) / np.sqrt(t)
    assert (np.abs(g.mean(axis=0) - expected) / se).max() < 5


def test_shared_policy_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    pol = SharedPolicy(
        rng.standard_normal((3, 4)), rng.standard_normal((3, 4, 2)), per_question=True
    )
    g_logits = rng.standard_normal((3, 4))
    grads = pol.backward(None, g_logits)
    h = 1e-6
    for i in range(2):
        w = pol.params["w"].copy()
        pol.params["w"][i] += h
        up = (pol.logits() * g_logits).sum()
        pol.params["w"] = w
        base = (pol.logits() * g_logits).sum()
        assert (up - base) / h == pytest.approx(grads["w"][i], rel=1e-4)


def test_tabular_training_bookkeeping_and_determinism():
    pr = sample_prior(PriorConfig(16, 4), np.random.default_rng(0))
    runs = []
    for _ in range(2):
        pol = TabularPolicy(pr.logits)
        runs.append(
            train_answer_level(
                pol,
                pr.correct,
                reward="probability",
                grpo=GRPOConfig(lr=0.3, batch_size=8, epochs=2, kl_coef=0.1),
                steps=10,
                rng=np.random.default_rng(1),
            )
        )
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])
    assert (runs[0]["kl"] >= 0).all() and runs[0]["kl"][0] == 0
    assert ((runs[0]["accuracy"] >= 0) & (runs[0]["accuracy"] <= 1)).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda: PriorConfig(n_answers=1),
        lambda: PriorConfig(n_questions=0),
        lambda: GRPOConfig(n_rollouts=0),
        lambda: GRPOConfig(optimizer="rmsprop"),
        lambda: exact_tilt(np.zeros((1, 2)), np.zeros((1, 2)), 0.0),
        lambda: check_probs(np.array([0.5, 0.4])),
        lambda: TabularPolicy(np.zeros((0, 3))),
        lambda: TabularPolicy(np.zeros((2, 1))),
        lambda: sample_counts(np.full((1, 2), 0.5), 0, np.random.default_rng()),
        lambda: train_answer_level(
            TabularPolicy(np.zeros((2, 3))),
            np.zeros(2, int),
            reward="nope",
            grpo=GRPOConfig(),
            steps=1,
            rng=np.random.default_rng(),
        ),
    ],
)
def test_bad_input_raises_value_error(make):
    with pytest.raises(ValueError):
        make()
