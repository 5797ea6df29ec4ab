"""Tests of sharpen.theory: Theorem 1 against its own recursion, the finite-N vote against brute
force and Monte Carlo, the tilts against iterated tilting, and the fit against synthetic data."""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import gammaln, xlogy

from sharpen import theory as th

probs01 = st.floats(min_value=1e-6, max_value=1 - 1e-6)
betas = st.floats(min_value=0.05, max_value=50.0)
steps = st.integers(min_value=0, max_value=40)


def test_docstring_examples_run():
    result = doctest.testmod(th, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 15 and result.failed == 0


# ---------------------------------------------------------------------------------------------
# Theorem 1
# ---------------------------------------------------------------------------------------------


@given(p0=probs01, beta=betas, k=steps)
def test_closed_form_equals_iterated_one_step(p0, beta, k):
    p = p0
    for _ in range(k):
        p = float(th.one_step(p, beta))
    assert th.majority_prob(p0, beta, k) == pytest.approx(p, rel=1e-9, abs=1e-12)


@given(p0=st.floats(min_value=0.0, max_value=1.0), beta=betas, k=steps)
def test_tail_bound_holds(p0, beta, k):
    gap = float(th.majority_gap(p0, beta, k))
    assert gap <= float(th.tail_bound(p0, beta, k)) * (1 + 1e-12)
    assert 1 - float(th.majority_prob(p0, beta, k)) <= float(th.tail_bound(p0, beta, k)) + 1e-15


@given(p0=probs01, beta=st.floats(min_value=0.2, max_value=20.0), k=steps)
def test_contraction_factor_is_the_gap_ratio(p0, beta, k):
    pk = th.majority_prob(p0, beta, k)
    ratio = th.majority_gap(p0, beta, k + 1) / th.majority_gap(p0, beta, k)
    assert th.contraction_factor(pk, beta) == pytest.approx(float(ratio), rel=1e-9)
    # Non-increasing along the trajectory, hence bounded by its first value, and >= rho.
    assert th.contraction_factor(pk, beta) <= th.contraction_factor(p0, beta) * (1 + 1e-12)
    assert th.contraction_factor(pk, beta) >= th.rho(beta) * (1 - 1e-12)


def test_contraction_factor_tends_to_rho():
    beta = np.array([0.3, 1.0, 5.0])
    pk = th.majority_prob(0.2, beta, 400)
    np.testing.assert_allclose(th.contraction_factor(pk, beta), th.rho(beta), rtol=1e-12)
    np.testing.assert_allclose(th.contraction_factor(1.0, beta), np.exp(-1 / beta), rtol=1e-15)


def test_boundaries_and_stability():
    assert th.majority_prob(0.0, 0.5, 1e6) == 0.0
    assert th.majority_prob(1.0, 0.5, 1e6) == 1.0
    assert th.majority_prob(0.3, 1e-3, 10) == 1.0  # huge k / beta, no overflow warning or NaN
    assert th.one_step(0.0, 1e-3) == 0.0 and th.one_step(1.0, 1e-3) == 1.0
    assert th.tail_bound(0.0, 1.0, 3) == np.inf and th.tail_bound(1.0, 1.0, 3) == 0.0
    assert th.contraction_factor(0.0, 1.0) == 1.0
    assert th.majority_gap(0.5, 1.0, 700) > 0  # full precision far past p_k == 1.0
    assert th.rho(np.inf) == 1.0 and th.majority_prob(0.3, np.inf, 50) == pytest.approx(0.3)


def test_broadcasting_shapes():
    out = th.majority_prob(np.array([0.2, 0.5])[:, None], np.array([0.5, 1.0, 2.0]), 3)
    assert out.shape == (2, 3) and out.dtype == np.float64
    assert th.tail_bound([0.2, 0.4], 1.0, np.arange(5)[:, None]).shape == (5, 2)


@given(p0=probs01, beta=betas, target=st.floats(min_value=1e-6, max_value=1 - 1e-9))
def test_steps_to_reach_is_the_first_crossing(p0, beta, target):
    k = th.steps_to_reach(p0, beta, target)
    assert np.isfinite(k) and k >= 0
    assert th.majority_prob(p0, beta, k) >= target * (1 - 1e-12)
    if k > 0:
        assert th.majority_prob(p0, beta, k - 1) < target
    real = th.steps_to_reach(p0, beta, target, integer=False)
    if real > 0:
        assert th.majority_prob(p0, beta, real) == pytest.approx(target, rel=1e-7)


def test_steps_to_reach_edge_cases():
    assert th.steps_to_reach(0.0, 1.0, 0.5) == np.inf
    assert th.steps_to_reach(0.4, 1.0, 1.0) == np.inf
    assert th.steps_to_reach(0.4, 1.0, 0.3) == 0.0
    assert th.steps_to_reach(1.0, 1.0, 1.0) == 0.0
    np.testing.assert_array_equal(th.steps_to_reach([0.3, 0.3], [0.5, 2.0], 0.99), [3.0, 11.0])


@given(p0=probs01, beta=betas, k=st.integers(min_value=1, max_value=20))
def test_fixed_reference_and_effective_beta(p0, beta, k):
    # With a fixed reference the optimum is one step, however long one trains ...
    assert th.fixed_reference_limit(p0, beta) == pytest.approx(float(th.majority_prob(p0, beta, 1)))
    # ... and k refreshed steps equal one fixed-reference step at beta / k.
    assert th.majority_prob(p0, beta, k) == pytest.approx(
        float(th.fixed_reference_limit(p0, th.effective_beta(beta, k))), rel=1e-9, abs=1e-12
    )


# ---------------------------------------------------------------------------------------------
# Finite N
# ---------------------------------------------------------------------------------------------


def brute_force_win_probs(probs, n):
    """Straight from the definition: enumerate every count vector (unparseable last)."""
    probs = list(probs)
    rest = max(0.0, 1.0 - sum(probs))
    wins = np.zeros(len(probs))
    for counts in itertools.product(range(n + 1), repeat=len(probs)):
        parsed = sum(counts)
        if parsed > n:
            continue
        weight = math.factorial(n) / math.factorial(n - parsed) * rest ** (n - parsed)
        for c, p in zip(counts, probs, strict=True):
            weight *= p**c / math.factorial(c)
        top = max(counts)
        if top == 0:
            continue  # nothing parseable: nobody wins
        tied = [a for a, c in enumerate(counts) if c == top]
        for a in tied:
            wins[a] += weight / len(tied)
    return wins


@st.composite
def answer_distributions(draw, max_k=4):
    k = draw(st.integers(min_value=1, max_value=max_k))
    raw = draw(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=k + 1, max_size=k + 1))
    raw = np.array(raw) + 1e-3
    return (raw / raw.sum())[:k]  # the last share is the unparseable mass


@given(probs=answer_distributions(), n=st.integers(min_value=1, max_value=6))
def test_plurality_matches_brute_force(probs, n):
    exact = th.plurality_win_probs(probs, n)
    np.testing.assert_allclose(exact, brute_force_win_probs(probs, n), rtol=1e-9, atol=1e-13)
    # Sum: 1 - P[nothing parseable].
    assert exact.sum() == pytest.approx(1 - (1 - probs.sum()) ** n, abs=1e-12)


def test_plurality_special_cases():
    np.testing.assert_allclose(th.plurality_win_probs([0.5, 0.5], 2), [0.5, 0.5])
    np.testing.assert_allclose(th.plurality_win_probs([0.6, 0.3], 1), [0.6, 0.3])
    np.testing.assert_allclose(th.plurality_win_probs([1.0, 0.0], 7), [1.0, 0.0])
    np.testing.assert_allclose(th.plurality_win_probs([0.0, 0.0], 3), [0.0, 0.0])
    # Symmetric answers win equally often.
    w = th.plurality_win_probs([0.2] * 4, 9)
    np.testing.assert_allclose(w, w[0])


def test_plurality_near_sure_wins_stay_probabilities():
    """A mode of mass 1 - 2e-7 wins almost surely: the rescaled sum rounded past 1 (1 + 5e-14 at n = 64) before
    the result was capped, and an exact probe's ``exact_vote_mode_prob`` outside [0, 1] stopped a run."""
    from sharpen.exact import answer_summary

    for e in (1e-5, 1e-7, 1e-9):
        for n in (8, 16, 32, 64):
            for k in (2, 3, 5):
                p = np.array([1 - e * (k - 1)] + [e] * (k - 1))
                w = th.plurality_win_probs(p, n)
                assert ((w >= 0) & (w <= 1)).all() and w[0] == pytest.approx(1.0, abs=1e-6)
                s = answer_summary(p[None], [str(i) for i in range(k)], n_votes=n)
                assert 0.0 <= float(s.vote_mode_prob[0]) <= 1.0


def test_unparseable_mass_counts_in_n_but_cannot_win():
    # One answer with probability q wins iff at least one sample parses.
    for q, n in [(0.3, 5), (0.05, 40)]:
        assert th.plurality_win_probs([q], n)[0] == pytest.approx(1 - (1 - q) ** n, rel=1e-12)
    # Scaling all answers down (more unparseable) changes the result: the unparseable draws
    # use up samples, so it is not a renormalisation.
    a = th.plurality_win_probs([0.4, 0.3], 6)
    b = th.plurality_win_probs([0.8, 0.2], 6)
    assert not np.allclose(a / a.sum(), b / b.sum())


def test_plurality_batch_equals_rows():
    rng = np.random.default_rng(3)
    batch = rng.dirichlet(np.ones(6), size=5)[:, :5]
    out = th.plurality_win_probs(batch, 11)
    assert out.shape == (5, 5)
    for row, expect in zip(batch, out, strict=True):
        np.testing.assert_allclose(th.plurality_win_probs(row, 11), expect, rtol=1e-12)


def test_plurality_matches_first_seen_monte_carlo():
    # Seeded Monte Carlo of TTRL's rule (ties to the answer seen first in the sample order):
    # the exact answer must lie within 4 standard errors for every answer.
    rng = np.random.default_rng(12345)
    probs = np.array([0.22, 0.2, 0.18, 0.15, 0.1, 0.05])  # 10% unparseable
    n, trials = 24, 40_000
    full = np.append(probs, 1 - probs.sum())
    draws = rng.choice(full.size, size=(trials, n), p=full)  # index 6 = unparseable
    counts = np.stack([(draws == a).sum(axis=1) for a in range(probs.size)], axis=1)
    first_seen = np.stack(
        [
            np.where((draws == a).any(axis=1), (draws == a).argmax(axis=1), n)
            for a in range(probs.size)
        ],
        axis=1,
    )
    top = counts.max(axis=1, keepdims=True)
    candidates = np.where((counts == top) & (top > 0), first_seen, n + 1)
    winner = np.where(top[:, 0] > 0, candidates.argmin(axis=1), -1)
    mc = np.array([(winner == a).mean() for a in range(probs.size)])
    se = np.sqrt(mc * (1 - mc) / trials)
    exact = th.plurality_win_probs(probs, n)
    assert np.all(np.abs(mc - exact) <= 4 * se + 1e-4)


def test_plurality_large_case_is_consistent():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(32)) * 0.9
    w = th.plurality_win_probs(probs, 64)
    assert w.sum() == pytest.approx(1 - 0.1**64, abs=1e-10)
    assert np.all(w >= 0)
    order = np.argsort(probs)
    assert np.all(np.diff(w[order]) >= -1e-12)  # more likely answers win more often


@given(probs=answer_distributions(max_k=5), n=st.integers(min_value=1, max_value=30))
def test_hoeffding_bounds_the_flip_probability(probs, n):
    mode = int(np.argmax(probs))
    flip = 1 - th.plurality_win_probs(probs, n)[mode]
    assert flip <= th.hoeffding_flip_bound(probs, n) + 1e-12


def test_stability_prob_is_a_product_along_the_tilted_path():
    probs = np.array([0.35, 0.25, 0.2, 0.1])
    n, beta, k = 6, 1.5, 4
    current, expect = probs.copy(), 1.0
    for _ in range(k):
        expect *= th.plurality_win_probs(current, n)[0]
        full = np.append(current, 1 - current.sum())
        tilted = full * np.exp(np.eye(full.size)[0] / beta)
        current = (tilted / tilted.sum())[:-1]
    assert th.stability_prob(probs, n, beta, k) == pytest.approx(expect, rel=1e-12)
    curve = th.stability_curve(probs, n, beta, k)
    assert curve[0] == 1.0 and np.all(np.diff(curve) <= 0)
    assert th.stability_prob(probs, n, beta, 0) == 1.0


def test_stability_prob_matches_simulated_chain():
    # Seeded Monte Carlo of the full process (vote, tilt toward the winner, repeat): the fraction
    # of runs whose first k winners are all the initial mode.
    rng = np.random.default_rng(7)
    probs, n, beta, k, runs = np.array([0.3, 0.25, 0.2, 0.15]), 5, 2.0, 3, 20_000
    full = np.tile(np.append(probs, 1 - probs.sum()), (runs, 1))
    alive = np.ones(runs, dtype=bool)
    for _ in range(k):
        counts = np.stack([rng.multinomial(n, row) for row in full])[:, :-1]
        top = counts.max(axis=1, keepdims=True)
        tied = (counts == top) & (top > 0)
        noise = rng.random(tied.shape)
        winner = np.where(top[:, 0] > 0, np.where(tied, noise, -1).argmax(axis=1), -1)
        alive &= winner == 0
        onehot = np.zeros_like(full)
        onehot[np.arange(runs), np.maximum(winner, 0)] = winner >= 0
        full = full * np.exp(onehot / beta)
        full /= full.sum(axis=1, keepdims=True)
    mc = alive.mean()
    exact = float(th.stability_prob(probs, n, beta, k))
    assert abs(mc - exact) <= 4 * math.sqrt(exact * (1 - exact) / runs)


def test_larger_n_is_more_stable():
    probs = np.array([0.3, 0.25, 0.25])
    s = [float(th.stability_prob(probs, n, 3.0, 10)) for n in (4, 16, 64)]
    assert s[0] < s[1] < s[2]


# ---------------------------------------------------------------------------------------------
# Iterated tilts
# ---------------------------------------------------------------------------------------------

distributions = st.lists(st.floats(min_value=1e-3, max_value=1.0), min_size=2, max_size=8).map(
    lambda v: np.array(v) / np.sum(v)
)


@given(pi0=distributions, beta=st.floats(min_value=0.3, max_value=10.0), k=st.integers(0, 6))
def test_power_sharpen_equals_iterated_log_prob_tilt(pi0, beta, k):
    fast = th.power_sharpen(pi0, beta, k)
    assert fast.shape == (k + 1, pi0.size)
    current = pi0
    for j in range(k):
        with np.errstate(divide="ignore"):  # a mass that underflowed to 0 has reward -inf
            current = th.tilt(current, np.log(current), beta)  # summed log-prob reward
        np.testing.assert_allclose(fast[j + 1], current, rtol=1e-8, atol=1e-300)
    # Closed form pi0^{(1 + 1/beta)^k}, normalised (in log space: the plain power underflows).
    log_expo = (1 + 1 / beta) ** k * np.log(pi0)
    closed = np.exp(log_expo - np.logaddexp.reduce(log_expo))
    np.testing.assert_allclose(fast[-1], closed, rtol=1e-8, atol=1e-300)


def test_power_sharpen_reaches_the_argmax_without_nan():
    traj = th.power_sharpen([0.2, 0.5, 0.3], 0.1, 400)
    assert np.isfinite(traj).all()
    np.testing.assert_array_equal(traj[-1], [0.0, 1.0, 0.0])


@given(pi0=distributions, beta=st.floats(min_value=0.3, max_value=10.0), length=st.integers(1, 9))
def test_mean_logprob_with_equal_lengths_is_power_sharpening(pi0, beta, length):
    np.testing.assert_allclose(
        th.mean_logprob_tilt(pi0, np.full(pi0.size, length), beta, 4),
        th.power_sharpen(pi0, beta * length, 4),
        rtol=1e-8,
        atol=1e-300,
    )


def test_mean_logprob_favours_long_sequences_at_equal_probability():
    # Same sequence probability, higher per-token log-prob for the longer one: it pulls ahead.
    traj = th.mean_logprob_tilt([0.25, 0.25, 0.5], [2, 8, 8], 1.0, 5)
    assert traj[-1, 1] > traj[-1, 0]
    assert traj[0, 1] == traj[0, 0]


@given(pi0=distributions, beta=st.floats(min_value=0.3, max_value=10.0))
def test_probability_tilt_steps(pi0, beta):
    traj = th.probability_tilt(pi0, beta, 3)
    current = pi0
    for j in range(3):
        current = current * np.exp(current / beta)
        current /= current.sum()
        np.testing.assert_allclose(traj[j + 1], current, rtol=1e-10)


def test_tilts_compose():
    pi = np.array([0.1, 0.6, 0.3])
    r1, r2 = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.0, -1.0])
    np.testing.assert_allclose(th.tilt(th.tilt(pi, r1, 0.7), r2, 0.7), th.tilt(pi, r1 + r2, 0.7))
    np.testing.assert_allclose(
        th.iterate_tilt(pi, lambda lp: r1, 0.7, 3)[-1], th.tilt(pi, r1, 0.7 / 3)
    )
    # Zero mass stays zero; -inf reward removes a sequence.
    np.testing.assert_allclose(th.tilt([0.0, 0.5, 0.5], [5.0, 0.0, 0.0], 1.0), [0.0, 0.5, 0.5])
    np.testing.assert_allclose(th.tilt([0.2, 0.8], [0.0, -np.inf], 1.0), [1.0, 0.0])


# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["binomial", "logit_wls"])
def test_fit_recovers_noiseless_parameters(method):
    rng = np.random.default_rng(0)
    p0 = rng.uniform(0.05, 0.9, size=200)
    beta = rng.uniform(2.0, 50, size=200)  # p_k stays below 1 - 1e-6: no exact 1.0 to correct
    k = np.arange(0, 30, 3.0)
    fit = th.fit_sharpening(k, th.majority_prob(p0[:, None], beta[:, None], k), method=method)
    assert fit.valid.all() and fit.converged.all() and fit.sharpening.all()
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-8)
    np.testing.assert_allclose(fit.p0, p0, rtol=1e-8)
    np.testing.assert_allclose(fit.rho, np.exp(-1 / beta), rtol=1e-8)
    np.testing.assert_allclose(fit.r2_logit, 1.0, atol=1e-10)
    assert fit.slope.shape == (200,) and fit.slope_ci.shape == (200, 2)


def test_binomial_fit_uses_saturated_points():
    # p_k rounds to exactly 1.0 after step ~40: the ML fit still recovers the truth.
    k = np.arange(60.0)
    p = th.majority_prob(0.3, 1.0, k)
    assert (p == 1.0).any()
    fit = th.fit_sharpening(k, p, n_samples=64)
    assert fit.beta == pytest.approx(1.0, rel=1e-6) and fit.p0 == pytest.approx(0.3, rel=1e-6)


@pytest.mark.parametrize(
    ("beta", "p0", "n"),
    [(5.0, 0.2, 200), (2.0, 0.3, 64), (3.0, 0.4, 16)],
)
def test_fit_ci_coverage_on_binomial_noise(beta, p0, n):
    # Seeded statistical test: 400 noisy replicates (binomial with n samples per point); the 95%
    # CI must contain the true beta in >= 85% of them, and the median estimate be near the truth.
    rng = np.random.default_rng(2024)
    k = np.arange(20.0)
    p = th.majority_prob(p0, beta, k)
    obs = rng.binomial(n, np.broadcast_to(p, (400, k.size))) / n
    fit = th.fit_sharpening(k, obs, n_samples=n)
    inside = (fit.beta_ci[:, 0] <= beta) & (beta <= fit.beta_ci[:, 1])
    assert inside.mean() >= 0.85
    assert np.median(fit.beta) == pytest.approx(beta, rel=0.1)
    unknown_n = th.fit_sharpening(k, obs)  # dispersion estimated from the residuals
    assert (
        (unknown_n.slope_ci[:, 0] <= 1 / beta) & (1 / beta <= unknown_n.slope_ci[:, 1])
    ).mean() >= 0.85


def test_fit_vectorised_equals_one_at_a_time():
    rng = np.random.default_rng(5)
    k = np.arange(15.0)
    obs = rng.binomial(32, th.majority_prob(rng.uniform(0.2, 0.6, (6, 1)), 4.0, k)) / 32
    obs[2, 3:6] = np.nan
    batch = th.fit_sharpening(k, obs, n_samples=32)
    for i in range(6):
        one = th.fit_sharpening(k, obs[i], n_samples=32)
        assert one.slope.shape == ()
        np.testing.assert_allclose(one.slope, batch.slope[i], rtol=1e-10)
        np.testing.assert_allclose(one.slope_ci, batch.slope_ci[i], rtol=1e-10)


def _hard_fit_batch(rng):
    """Trajectories that take every path of fit_sharpening: noisy, saturated, separated, missing points."""
    k = np.arange(25.0)
    p = th.majority_prob(rng.uniform(0.05, 0.9, (60, 1)), rng.uniform(0.5, 20.0, (60, 1)), k)
    obs = rng.binomial(8, p) / 8
    obs[:10] = rng.choice([0.0, 1.0, 0.5, 0.125], size=(10, k.size), p=[0.4, 0.4, 0.1, 0.1])
    obs[10:15] = np.sort(obs[10:15], axis=1)  # separated or nearly so
    obs[15:25][rng.random((10, k.size)) < 0.3] = np.nan
    n = rng.integers(1, 40, size=obs.shape).astype(float)
    return k, obs, n


@pytest.mark.parametrize("method", ["binomial", "logit_wls"])
def test_fit_blocks_do_not_change_results(method, monkeypatch):
    # Rows are fitted in blocks of rows; a block of 1 row, of 7 rows and one block for all must agree
    # bit for bit (every row is fitted on its own).
    k, obs, n = _hard_fit_batch(np.random.default_rng(11))
    for kw in ({"n_samples": n}, {"n_samples": 8}, {}):
        fits = []
        for rows in (1, 7, 10**6):
            monkeypatch.setattr(th, "_FIT_BLOCK_ELEMENTS", rows * k.size)
            fits.append(th.fit_sharpening(k, obs, method=method, max_iter=12, **kw))
        for other in fits[1:]:
            for name in ("slope", "intercept", "slope_se", "slope_ci", "r2_logit", "r2_p",
                         "dispersion", "n_points", "valid", "converged"):  # fmt: skip
                np.testing.assert_array_equal(getattr(other, name), getattr(fits[0], name))


def test_fit_memory_does_not_grow_with_the_rows():
    # The (rows, L) temporaries live one block at a time: 4x the trajectories, not 4x the peak.
    import tracemalloc

    k = np.arange(20.0)
    rng = np.random.default_rng(3)
    peaks = []
    for m in (20_000, 80_000):
        obs = rng.binomial(8, th.majority_prob(rng.uniform(0.1, 0.6, (m, 1)), 10.0, k)) / 8
        tracemalloc.start()
        th.fit_sharpening(k, obs, n_samples=8)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # what grows is the (M,) results (a few hundred bytes per row), not the (M, L) work arrays
    assert peaks[1] - peaks[0] < 60_000 * 400


def _loglik_reference(eta, p, n):
    """Binomial log-likelihood with one log_expit per term (the plain formula)."""
    from scipy.special import log_expit

    return (n * (p * log_expit(eta) + (1.0 - p) * log_expit(-eta))).sum(axis=1)


def test_fit_loglik_equals_the_plain_formula():
    rng = np.random.default_rng(4)
    eta = np.concatenate([rng.normal(0, s, (50, 40)) for s in (1e-3, 1.0, 10.0, 400.0)])
    p = rng.choice([0.0, 1.0, 0.25, 0.5, 0.875], size=eta.shape)
    n = rng.integers(1, 100, size=eta.shape).astype(float)
    np.testing.assert_array_equal(th._loglik(eta, p, n, None), _loglik_reference(eta, p, n))


def test_fit_step_bound_only_vouches_for_steps_that_do_not_lower_the_likelihood():
    # _sure_ascent replaces likelihood evaluations in the step control: wherever it says a step is
    # sure, the likelihood (plain formula) must not fall; and it must say so for ordinary steps.
    rng = np.random.default_rng(6)
    rows, length = 4000, 30
    k = np.arange(length, dtype=float)
    a, s = rng.normal(0, 2, (rows, 1)), rng.normal(0, 0.3, (rows, 1))
    da, ds = (
        rng.normal(0, 1, (rows, 1)) * rng.choice([1e-3, 0.1, 1.0, 5.0], (rows, 1)),
        rng.normal(0, 0.1, (rows, 1)),
    )
    eta, eta_new = a + s * k, (a + da) + (s + ds) * k
    p = rng.binomial(8, th.majority_prob(rng.uniform(0.05, 0.95, (rows, 1)), 5.0, k)) / 8
    n = np.full((1, length), 8.0)
    from scipy.special import expit

    mu, mu_new = expit(eta), expit(eta_new)
    sure = th._sure_ascent(eta, mu, mu * (1 - mu), eta_new, mu_new, p, n, None)
    gain = _loglik_reference(eta_new, p, n) - _loglik_reference(eta, p, n)
    assert sure.sum() > 200 and (~sure).sum() > 200  # both outcomes occur
    assert (gain[sure] >= 0).all()


def test_fit_missing_and_short_series():
    k = np.arange(5.0)
    p = th.majority_prob(0.3, 2.0, k)
    data = np.stack([p, p, p, p])
    data[1, 1:] = np.nan  # one point: invalid
    data[2, 2:] = np.nan  # two points: valid, exact, but no CI without n_samples
    data[3, [1, 3]] = np.nan  # missing inside
    fit = th.fit_sharpening(k, data)
    np.testing.assert_array_equal(fit.valid, [True, False, True, True])
    np.testing.assert_array_equal(fit.n_points, [5, 1, 2, 3])
    assert np.isnan(fit.beta[1]) and np.isnan(fit.slope_ci[1]).all()
    np.testing.assert_allclose(fit.beta[[0, 2, 3]], 2.0, rtol=1e-8)
    assert fit.slope_ci[2, 0] == -np.inf and fit.slope_ci[2, 1] == np.inf
    # Repeated steps only: slope undefined.
    assert not th.fit_sharpening([3.0, 3.0], [0.4, 0.5]).valid


def test_fit_decreasing_trajectory_is_flagged():
    k = np.arange(10.0)
    fit = th.fit_sharpening(k, th.majority_prob(0.9, 2.0, k)[::-1], n_samples=64)
    assert fit.valid and not fit.sharpening
    assert fit.slope < 0 and fit.beta == np.inf and fit.rho > 1
    assert fit.slope == pytest.approx(-0.5, rel=1e-6)


def test_fit_handles_exact_zeros_and_ones():
    k = np.arange(6.0)
    fit = th.fit_sharpening(k, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0], n_samples=8, method="logit_wls")
    assert fit.valid and np.isfinite(fit.beta) and fit.sharpening
    separated = th.fit_sharpening(k, [0, 0, 0, 1, 1, 1.0], n_samples=8)
    assert separated.valid and not separated.converged and np.isfinite(separated.slope)


def test_fit_logits_looked_up_on_the_count_grid_are_the_logits(monkeypatch):
    # fit_sharpening looks the logits of sample fractions up on the grid of half counts j / (2n): bit for
    # bit scipy's logit of every point, on the grid and (falling back) off it or with counts per point.
    from scipy import special

    rng = np.random.default_rng(9)
    for n0 in (1, 7, 8, 10, 64, 1000):
        counts = rng.integers(0, n0 + 1, size=(300, 40))
        pc = np.where(counts == 0, 0.5 / n0, np.where(counts == n0, 1.0 - 0.5 / n0, counts / n0))
        n = np.full((1, 40), float(n0))
        np.testing.assert_array_equal(th._logit_of_fractions(pc, n), special.logit(pc))
    off_grid = np.where(pc == 0.5, 0.12345678, pc)  # not a multiple of 1 / 2000
    per_point = rng.integers(990, 1001, size=pc.shape).astype(float)
    real, sizes = special.logit, []
    monkeypatch.setattr(special, "logit", lambda x: sizes.append(np.size(x)) or real(x))
    assert np.array_equal(th._logit_of_fractions(pc, n), real(pc)) and sizes == [2001]
    for x, counts_ in ((off_grid, n), (pc, per_point), (pc, n + 0.5)):
        sizes.clear()
        assert np.array_equal(th._logit_of_fractions(x, counts_), real(x)) and sizes == [x.size]


def _binomial_mle_reference(k, p, n):
    """The binomial MLE of logit p = a + s k for one trajectory, plainly: Newton's method on the score
    sum n (p - sigma) (1, k) = 0 with the 2 x 2 system solved by hand, sums by math.fsum, a halved step
    wherever the log-likelihood would fall, until a step is below 1e-12 (Newton's next one would be at the
    rounding level of ~1e-16). Returns (a, s) or None."""

    def sig(x):
        return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))

    def loglik(a, s):
        return math.fsum(
            ni * (pi * -math.log1p(math.exp(-(a + s * ki))) if pi else 0.0)
            + ni * ((1 - pi) * -math.log1p(math.exp(a + s * ki)) if pi < 1 else 0.0)
            for ki, pi, ni in zip(k, p, n, strict=True)
        )

    a, s = 0.0, 0.0
    for _ in range(200):
        mu = [sig(a + s * ki) for ki in k]
        r = [ni * (pi - mi) for pi, mi, ni in zip(p, mu, n, strict=True)]
        v = [ni * mi * (1 - mi) for mi, ni in zip(mu, n, strict=True)]
        g0, g1 = math.fsum(r), math.fsum(ri * ki for ri, ki in zip(r, k, strict=True))
        h00, h01 = math.fsum(v), math.fsum(vi * ki for vi, ki in zip(v, k, strict=True))
        h11 = math.fsum(vi * ki * ki for vi, ki in zip(v, k, strict=True))
        det = h00 * h11 - h01 * h01
        da, ds = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        old = loglik(a, s)
        while loglik(a + da, s + ds) < old and abs(da) + abs(ds) > 1e-300:
            da, ds = da / 2, ds / 2
        a, s = a + da, s + ds
        if abs(da) + abs(ds) * (1 + max(k)) < 1e-12 * (1 + abs(a) + abs(s)):
            return a, s
    return None


def test_binomial_fit_equals_a_plain_reference():
    # Noisy trajectories with 0/1 points, missing points and per-point sample counts: every converged fit is
    # the binomial MLE of a plain Newton solver, and its dispersion and R^2 are the plain formulas there.
    rng = np.random.default_rng(8)
    k = np.arange(25.0)
    p = th.majority_prob(rng.uniform(0.1, 0.8, (40, 1)), rng.uniform(2.0, 30.0, (40, 1)), k)
    n = rng.integers(2, 20, size=p.shape).astype(float)
    obs = rng.binomial(n.astype(int), p) / n
    obs[5:10][rng.random((5, k.size)) < 0.3] = np.nan
    assert ((obs == 0) | (obs == 1)).any(axis=1).mean() > 0.5  # most rows have censored points
    fit = th.fit_sharpening(k, obs, n_samples=n)
    assert fit.converged.sum() >= 35
    for i in np.flatnonzero(fit.converged):
        seen = ~np.isnan(obs[i])
        ki, pi, ni = k[seen].tolist(), obs[i, seen].tolist(), n[i, seen].tolist()
        a, s = _binomial_mle_reference(ki, pi, ni)
        assert fit.slope[i] == pytest.approx(s, rel=1e-9, abs=1e-12)
        assert fit.intercept[i] == pytest.approx(a, rel=1e-9, abs=1e-12)
        mu = [1 / (1 + math.exp(-(a + s * kj))) for kj in ki]
        pearson = math.fsum(
            nj * (pj - mj) ** 2 / (mj * (1 - mj)) for pj, mj, nj in zip(pi, mu, ni, strict=True)
        )
        assert fit.dispersion[i] == pytest.approx(pearson / (len(ki) - 2), rel=1e-6)
        rss = math.fsum((pj - mj) ** 2 for pj, mj in zip(pi, mu, strict=True))
        tss = math.fsum((pj - sum(pi) / len(pi)) ** 2 for pj in pi)
        assert fit.r2_p[i] == pytest.approx(1 - rss / tss, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: th.rho(0.0), "beta"),
        (lambda: th.one_step(0.5, -1.0), "beta"),
        (lambda: th.one_step(1.5, 1.0), "p"),
        (lambda: th.majority_prob(-0.1, 1.0, 2), "p0"),
        (lambda: th.majority_prob(0.5, 1.0, -1), "k"),
        (lambda: th.majority_prob(np.nan, 1.0, 1), "p0"),
        (lambda: th.tail_bound(0.5, 1.0, np.inf), "k"),
        (lambda: th.steps_to_reach(0.5, 1.0, 1.2), "target"),
        (lambda: th.plurality_win_probs([0.5, -0.1], 3), "probs"),
        (lambda: th.plurality_win_probs([0.7, 0.6], 3), "probs"),
        (lambda: th.plurality_win_probs([0.5, 0.2], 0), "n"),
        (lambda: th.plurality_win_probs([0.5, 0.2], 2.5), "n"),
        (lambda: th.plurality_win_probs(np.ones((2, 2, 2)) / 8, 2), "probs"),
        (lambda: th.stability_prob([0.5, 0.2], 4, 0.0, 2), "beta"),
        (lambda: th.stability_prob([0.5, 0.2], 4, 1.0, -1), "k"),
        (lambda: th.hoeffding_flip_bound([0.5, 0.2], 0), "n"),
        (lambda: th.tilt([0.5, 0.5], [1.0, 2.0, 3.0], 1.0), "reward"),
        (lambda: th.tilt([-0.5, 0.5], [1.0, 2.0], 1.0), "pi"),
        (lambda: th.tilt([0.5, 0.5], [1.0, 2.0], 0.0), "beta"),
        (lambda: th.mean_logprob_tilt([0.5, 0.5], [1, 0], 1.0, 2), "lengths"),
        (lambda: th.mean_logprob_tilt([0.5, 0.5], [1, 2, 3], 1.0, 2), "lengths"),
        (lambda: th.fit_sharpening([0, 1, 2], [0.1, 0.2]), "steps"),
        (lambda: th.fit_sharpening([0, 1], [0.1, 1.2]), "p_maj"),
        (lambda: th.fit_sharpening([0, 1], [0.1, 0.2], n_samples=0), "n_samples"),
        (lambda: th.fit_sharpening([0, 1], [0.1, 0.2], level=1.0), "level"),
        (lambda: th.fit_sharpening([0, 1], [0.1, 0.2], method="ols"), "method"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()


# ---------------------------------------------------------------------------------------------
# Plurality vote at large N: scaling, exact shortcuts, the cost limit
# ---------------------------------------------------------------------------------------------


def enumerated_win_probs(probs, n):
    """Plain enumeration of the count vectors of K <= 3 answers, in log space (any n)."""
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.size
    rest = max(0.0, 1.0 - probs.sum())
    grids = np.meshgrid(*[np.arange(n + 1)] * k, indexing="ij")
    counts = np.stack([g.ravel() for g in grids], axis=1)  # (C, K)
    counts = counts[counts.sum(axis=1) <= n]
    left = n - counts.sum(axis=1)
    logw = gammaln(n + 1.0) - gammaln(counts + 1.0).sum(axis=1) - gammaln(left + 1.0)
    logw = logw + xlogy(counts, probs).sum(axis=1) + xlogy(left, rest)
    weight = np.exp(logw)
    top = counts.max(axis=1)
    tied = (counts == top[:, None]) & (top[:, None] > 0)
    share = np.where(tied, 1.0 / np.maximum(tied.sum(axis=1, keepdims=True), 1), 0.0)
    return (weight[:, None] * share).sum(axis=0)


@pytest.mark.parametrize(
    ("probs", "n"),
    [
        ([0.5, 0.45], 150),  # row-convolve path (n >= 64), a close race
        ([0.3, 0.3], 200),  # exact tie in P: the answers split evenly
        ([0.4, 0.35, 0.2], 70),
        ([0.2, 0.1, 0.05], 40),  # vectorised path, much unparseable mass
        ([0.6, 1e-3], 120),  # one answer almost never wins
    ],
)
def test_plurality_matches_enumeration_beyond_brute_force_sizes(probs, n):
    np.testing.assert_allclose(
        th.plurality_win_probs(probs, n), enumerated_win_probs(probs, n), rtol=1e-9, atol=1e-14
    )


def test_plurality_both_multiplication_paths_agree(monkeypatch):
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(6), size=3)[:, :5]
    fast = th.plurality_win_probs(probs, 40)
    monkeypatch.setattr(th, "_ROW_CONVOLVE_MIN_N", 1)  # force np.convolve per row
    np.testing.assert_allclose(th.plurality_win_probs(probs, 40), fast, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n", [1, 2, 1941, 2050, 2800, 10**6, 10**12])
def test_plurality_one_answer_with_all_the_mass_wins_exactly(n):
    # Before the fix: NaN (with an overflow RuntimeWarning) from n = 1941 on; n = 10**6 ran out of memory.
    assert th.plurality_win_probs([1.0], n).tolist() == [1.0]
    assert th.plurality_win_probs([1.0, 0.0, 0.0], n).tolist() == [1.0, 0.0, 0.0]
    assert th.plurality_win_probs([0.0, 1.0], n).tolist() == [0.0, 1.0]
    np.testing.assert_allclose(th.plurality_win_probs([0.3], n), [1 - 0.7**n], rtol=1e-12)


def test_plurality_zero_mass_answers_are_dropped_exactly():
    a = th.plurality_win_probs([0.4, 0.0, 0.35, 0.0, 0.2], 50)
    b = th.plurality_win_probs([0.4, 0.35, 0.2], 50)
    np.testing.assert_allclose(a[[0, 2, 4]], b, rtol=1e-13)
    assert a[1] == 0.0 and a[3] == 0.0
    # Batches mixing rows of different numbers of positive answers.
    batch = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.2, 0.3, 0.4]])
    out = th.plurality_win_probs(batch, 9)
    for row, expect in zip(batch, out, strict=True):
        np.testing.assert_allclose(th.plurality_win_probs(row, 9), expect, rtol=1e-13)


def test_plurality_is_exact_past_the_old_overflow():
    # The old scaling overflowed e^{n/e} from n ~ 1930 for every K; now all numbers stay in [0, 1].
    w = th.plurality_win_probs([0.5, 0.4999], 2000)
    np.testing.assert_allclose(w, enumerated_win_probs([0.5, 0.4999], 2000), rtol=1e-8)
    assert w.sum() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize(
    ("probs", "n"), [([0.005] * 200, 200), ([0.5, 0.5], 10**6), ([0.5, 0.3], 3000)]
)
def test_plurality_over_the_cost_limit_raises_before_allocating(probs, n):
    # Before the fix: > 20 s for K = n = 200, memory exhausted for n = 10**6.
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"^n: the exact vote of .* over the limits"):
        th.plurality_win_probs(probs, n)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------------------------
# Fitting saturated noiseless series
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["binomial", "logit_wls"])
@pytest.mark.parametrize("n_samples", [None, 64])
def test_fit_recovers_saturated_noiseless_series(method, n_samples):
    # beta in [0.03, 0.05]: p_k reaches exactly 1.0 from k = 2, only p_0 and p_1 lie below 1.
    # Before the fix 3 of these 55 series were recovered (binomial); logit_wls recovered none but
    # reported converged=True for all of them.
    beta, p0 = (
        g.ravel() for g in np.meshgrid(np.linspace(0.03, 0.05, 11), [0.1, 0.3, 0.5, 0.7, 0.9])
    )
    k = np.arange(61.0)
    p = th.majority_prob(p0[:, None], beta[:, None], k)
    assert ((p == 1.0).sum(axis=1) >= 59).all()
    fit = th.fit_sharpening(k, p, method=method, n_samples=n_samples)
    assert fit.valid.all() and fit.converged.all() and fit.sharpening.all()
    np.testing.assert_allclose(fit.p0, p0, rtol=1e-12)
    # The slope is only as precise as 1 - p_1 (~1e-14..1e-16) is in float64: a relative error
    # of up to ulp(1) / (1 - p_1) (0.5% here), which the fit must not exceed by much.
    last = np.where(p < 1, p, 0.0).max(axis=1)
    bound = 2 * np.finfo(float).eps / (1 - last)
    assert (np.abs(fit.beta / beta - 1) <= bound).all()
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-2)


def test_fit_with_one_unsaturated_point_is_not_reported_converged():
    # p0 = 0.5, beta = 0.02: everything after step 0 is exactly 1.0, so the slope is not identified.
    k = np.arange(10.0)
    p = th.majority_prob(0.5, 0.02, k)
    assert (p[1:] == 1.0).all()
    for method in ("binomial", "logit_wls"):
        fit = th.fit_sharpening(k, p, method=method)
        assert not fit.converged, method  # a fallback estimate, flagged as one


def test_fit_censoring_keeps_the_continuity_correction_for_noisy_zeros_and_ones():
    # The interior points alone predict 0.1 and 0.9 at the ends: inconsistent with the observed 0
    # and 1 at n = 8, so the corrected fit stands (and is flagged as not converged).
    k = np.arange(5.0)
    fit = th.fit_sharpening(k, [0.0, 0.25, 0.5, 0.75, 1.0], n_samples=8, method="logit_wls")
    interior = th.fit_sharpening(k[1:4], [0.25, 0.5, 0.75], n_samples=8, method="logit_wls")
    assert fit.valid and not fit.converged and fit.slope > interior.slope


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: th.majority_prob([0.1, 0.2], [1.0, 2.0, 3.0], 1), "p0, beta, k"),
        (lambda: th.one_step([0.1, 0.2], [1.0, 2.0, 3.0]), "p, beta"),
        (lambda: th.steps_to_reach([0.1, 0.2], [1.0, 2.0, 3.0], 0.5), "p0, beta, target"),
        (lambda: th.effective_beta([1.0, 2.0], [1, 2, 3]), "beta, k"),
        (lambda: th.stability_curve([0.5, 0.3], 8, [1.0, 2.0], 3), "beta"),
        (lambda: th.tilt([0.5, 0.5], [1.0, 2.0], [1.0, 2.0]), "beta"),
        (lambda: th.fit_sharpening([0, 1], [0.1, 0.2], level="x"), "level"),
        (lambda: th.one_step("a", 1.0), "p"),
        (lambda: th.plurality_win_probs([0.5, 0.5], 10**4), "n"),
    ],
)
def test_more_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()
