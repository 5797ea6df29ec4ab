"""The token-level toy: sampling bookkeeping, rewards through sharpen.rewards, the chain rule, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from sim.core import softmax
from sim.token_toy import (
    TokenToyConfig,
    backward,
    batch_rewards,
    init_token_policy,
    sample_sequences,
    sequence_logit_grad,
    token_rewards,
    train_token_level,
)

CFG = TokenToyConfig(n_questions=6, max_len=6)


def _batch(seed=0, n=5):
    pol = init_token_policy(CFG, np.random.default_rng(seed))
    return pol, sample_sequences(
        pol, np.arange(CFG.n_questions), n, np.random.default_rng(seed + 1)
    )


def test_sampled_sequences_are_consistent():
    pol, b = _batch()
    d = CFG.n_reasoning
    assert b.tokens.shape == (30, CFG.max_len) and b.logits.shape == (30, CFG.max_len, pol.vocab)
    np.testing.assert_array_equal(b.mask.sum(axis=1), b.length)
    for i in range(len(b.length)):
        toks = b.tokens[i, : b.length[i]]
        assert (b.tokens[i, b.length[i] :] == -1).all()
        assert (toks[:-1] < d).all()  # only the last token may be an answer
        if b.answer[i] >= 0:
            assert toks[-1] == d + b.answer[i]
        else:
            assert b.length[i] == CFG.max_len and toks[-1] < d
        # progress: a reasoning token counts iff it differs from the previous one
        c, prev = 0, -1
        for t, y in enumerate(toks):
            assert b.progress[i, t] == c and b.prev[i, t] == prev
            if y < d:
                c = min(c + int(y != prev), d + 1)
                prev = y
        # the logits recorded are the policy's logits in that state
        z = pol.step_logits(np.array([b.question[i]]), b.progress[i, :1], b.prev[i, :1])
        np.testing.assert_allclose(b.logits[i, 0], z[0])


def test_probability_reward_is_the_sequence_probability():
    """sharpen.rewards' probability reward on the toy's batch = prod_t pi(y_t) computed here."""
    pol, b = _batch()
    r = batch_rewards("probability", b, pol)
    p = softmax(b.logits)
    rows, cols = np.nonzero(b.mask)
    logp = np.zeros(b.mask.shape)
    logp[rows, cols] = np.log(p[rows, cols, b.tokens[rows, cols]])
    np.testing.assert_allclose(r, np.exp(logp.sum(axis=1)), rtol=1e-4)
    gt = batch_rewards("ground_truth", b, pol)
    np.testing.assert_array_equal(gt, (b.answer == pol.correct[b.question]).astype(float))


def test_backward_matches_finite_differences():
    """Chain rule: d/dparams of sum_{b,t} G_bt . z_bt(params) equals backward(G)."""
    pol, b = _batch(3, n=3)
    g = np.random.default_rng(9).standard_normal(b.logits.shape) * b.mask[:, :, None]
    grads = backward(pol, b, g)

    def objective(policy):
        total = 0.0
        for i in range(len(b.length)):
            for t in range(b.length[i]):
                z = policy.step_logits(
                    np.array([b.question[i]]), b.progress[i, t : t + 1], b.prev[i, t : t + 1]
                )[0]
                total += float(g[i, t] @ z)
        return total

    h = 1e-6
    for key in ("theta", "alpha", "u"):
        flat = pol.params[key].reshape(-1)
        for j in np.random.default_rng(1).choice(flat.size, size=min(4, flat.size), replace=False):
            old = flat[j]
            flat[j] = old + h
            up = objective(pol)
            flat[j] = old - h
            down = objective(pol)
            flat[j] = old
            assert grads[key].reshape(-1)[j] == pytest.approx((up - down) / (2 * h), abs=1e-5)


def test_token_mean_gradient_sums_to_zero_over_vocab():
    pol, b = _batch()
    adv = np.random.default_rng(0).standard_normal(len(b.length))
    g = sequence_logit_grad(b, adv)
    np.testing.assert_allclose(g.sum(axis=2), 0.0, atol=1e-12)
    assert np.abs(g[~b.mask]).max() == 0.0


@pytest.mark.parametrize("reward", token_rewards())
def test_training_runs_and_is_deterministic(reward):
    def go():
        pol = init_token_policy(CFG, np.random.default_rng(0))
        val = init_token_policy(CFG, np.random.default_rng(5))
        return train_token_level(
            pol, reward=reward, steps=4, rng=np.random.default_rng(1), n_rollouts=4, val_policy=val
        )

    a, b = go(), go()
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].shape == (5,)
    assert ((a["ground_truth_ratio"] >= 0) & (a["ground_truth_ratio"] <= 1)).all()
    assert ((a["response_length"] >= 1) & (a["response_length"] <= CFG.max_len)).all()


def test_bad_input():
    with pytest.raises(ValueError, match="n_answers"):
        TokenToyConfig(n_answers=1)
    with pytest.raises(ValueError, match="n_questions"):
        TokenToyConfig(n_questions=0)
    pol = init_token_policy(CFG, np.random.default_rng(0))
    with pytest.raises(ValueError, match="reward"):
        train_token_level(pol, reward="nope", steps=1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="n"):
        sample_sequences(pol, np.arange(2), 0, np.random.default_rng(0))
