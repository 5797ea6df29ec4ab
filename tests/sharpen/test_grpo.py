"""GRPO math against plain formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sharpen.grpo import agg_loss, group_advantages, kl_k3, masked_mean, policy_loss

reward_tables = arrays(
    np.float64,
    st.tuples(st.integers(1, 5), st.integers(2, 9)),
    elements=st.floats(-5, 5, allow_nan=False),
)


@given(reward_tables)
def test_group_advantages_equal_the_formula(r):
    eps = 1e-6
    expected = np.empty_like(r)
    for g, row in enumerate(r):
        expected[g] = (row - row.mean()) / (row.std(ddof=1) + eps)
    np.testing.assert_allclose(group_advantages(r, eps=eps), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(group_advantages(r, normalize_std=False), r - r.mean(1, keepdims=True), atol=1e-12)
    ok = r.std(1) > 1e-9
    if not ok.any():
        return
    biased = group_advantages(r[ok], unbiased=False, eps=0.0)
    centred = r[ok] - r[ok].mean(1, keepdims=True)
    np.testing.assert_allclose(biased, centred / r[ok].std(1, keepdims=True), rtol=1e-9, atol=1e-9)


def test_binary_rewards_closed_form():
    """m of N rewarded: advantages (1 - m/N)/s_u and -(m/N)/s_u with the unbiased std."""
    n, m = 8, 7
    r = np.array([[1.0] * m + [0.0] * (n - m)])
    rbar = m / n
    s_u = np.sqrt(rbar * (1 - rbar)) * np.sqrt(n / (n - 1))
    adv = group_advantages(r, eps=0.0)
    assert np.allclose(adv[0, :m], (1 - rbar) / s_u)
    assert np.allclose(adv[0, m:], -rbar / s_u)
    assert adv[0, -1] == pytest.approx(-2.475, abs=1e-3)


def test_zero_variance_group_gets_zero_advantage_and_torch_roundtrip():
    adv = group_advantages(torch.ones(2, 4))
    assert isinstance(adv, torch.Tensor) and torch.all(adv == 0)
    assert np.allclose(group_advantages(np.array([[2.0]])), 2.0 / (1 + 1e-6))
    with pytest.raises(ValueError, match="rewards"):
        group_advantages(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="rewards: expected a non-empty"):
        group_advantages(np.zeros((0, 4)))


def test_policy_loss_on_policy_is_minus_mean_advantage_and_gradient():
    torch.manual_seed(0)
    logp = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    adv = torch.tensor([1.0, -2.0, 0.5])
    loss, stats = policy_loss(logp, logp.detach(), adv, mask)
    expected = -(adv[:, None] * mask).sum() / mask.sum()
    assert torch.isclose(loss, expected)
    assert stats["clip_frac"] == 0.0 and abs(stats["approx_kl"]) < 1e-12
    loss.backward()
    # d/dlogp of -A * exp(logp - old) at ratio 1 is -A / n_tokens on valid tokens, 0 on padding
    np.testing.assert_allclose(logp.grad, -(adv[:, None] * mask) / mask.sum(), atol=1e-7)


def test_policy_loss_clips():
    logp = torch.log(torch.tensor([[2.0, 0.5]]))  # ratios 2 and 0.5 against old log-prob 0
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, stats = policy_loss(logp, old, torch.tensor([1.0]), mask, clip_eps=0.2)
    # A > 0: min(2*1, 1.2*1) = 1.2 and min(0.5, 0.8) = 0.5
    assert torch.isclose(loss, torch.tensor(-(1.2 + 0.5) / 2))
    assert stats["clip_frac"] == 0.5


def test_kl_k3_nonnegative_and_zero_at_equality():
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    assert torch.all(kl_k3(a, b) >= 0)
    assert torch.allclose(kl_k3(a, a), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="ref_logp"):
        kl_k3(a, b[:, :3])


def test_agg_modes_and_masked_mean():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 0.0, 0.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    assert agg_loss(x, m, "token-mean") == pytest.approx(2.0)
    assert agg_loss(x, m, "seq-mean-token-mean") == pytest.approx((1.5 + 3.0) / 2)
    assert agg_loss(x, m, "seq-mean-token-sum") == pytest.approx((3.0 + 3.0) / 2)
    with pytest.raises(ValueError, match="mode"):
        agg_loss(x, m, "sum")
    with pytest.raises(ValueError, match="mask"):
        masked_mean(x, torch.zeros_like(m))
