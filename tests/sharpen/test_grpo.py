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
    np.testing.assert_allclose(
        group_advantages(r, normalize_std=False), r - r.mean(1, keepdims=True), atol=1e-12
    )
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


# ---------------------------------------------------------------------------------------------
# Zero-variance groups and bad input
# ---------------------------------------------------------------------------------------------

_DTYPES = [
    ("numpy", np.float16),
    ("numpy", np.float32),
    ("numpy", np.float64),
    ("torch", torch.float16),
    ("torch", torch.bfloat16),
    ("torch", torch.float32),
    ("torch", torch.float64),
]


def _table(values: np.ndarray, library: str, dtype):
    if library == "numpy":
        return values.astype(dtype)
    return torch.from_numpy(values).to(dtype)


@pytest.mark.parametrize(("library", "dtype"), _DTYPES)
@pytest.mark.parametrize("eps", [0.0, 1e-6, 1e-4])
@pytest.mark.parametrize("normalize_std", [True, False])
@given(
    value=st.floats(-1e4, 1e4, allow_nan=False, width=32),
    n=st.integers(2, 64),
    g=st.integers(1, 3),
)
def test_constant_groups_get_exactly_zero_in_every_dtype(
    library, dtype, eps, normalize_std, value, n, g
):
    # Before the fix: eps=0 gave NaN, and in float32 the mean of equal values could differ from them,
    # so e.g. 16 x 57.79988 got advantages of 0.86.
    r = _table(np.full((g, n), value), library, dtype)
    adv = group_advantages(r, eps=eps, normalize_std=normalize_std)
    assert type(adv) is type(r) and adv.dtype == r.dtype and tuple(adv.shape) == (g, n)
    assert (np.asarray(adv.float() if library == "torch" else adv) == 0).all()


def test_the_float32_reproducer_is_zero():
    assert (group_advantages(np.full((1, 16), 57.79988, np.float32)) == 0).all()
    assert (group_advantages(np.ones((1, 4)), eps=0) == 0).all()


@pytest.mark.parametrize(("library", "dtype"), _DTYPES)
@given(r=reward_tables)
def test_every_dtype_matches_the_float64_formula(library, dtype, r):
    # Rows may be constant (hypothesis repeats values): those are exactly 0, the others the formula
    # on the values as stored in the dtype, rounded to it.
    stored = np.asarray(
        _table(r, library, dtype).double() if library == "torch" else _table(r, library, dtype)
    )
    stored = stored.astype(np.float64)
    expected = np.zeros_like(stored)
    for i, row in enumerate(stored):
        if row.max() > row.min():
            expected[i] = (row - row.mean()) / (row.std(ddof=1) + 1e-4)
    adv = group_advantages(_table(r, library, dtype), eps=1e-4)
    got = np.asarray(adv.double() if library == "torch" else adv, dtype=np.float64)
    rtol = {np.float16: 1e-3, torch.float16: 1e-3, torch.bfloat16: 1e-2}.get(dtype, 1e-6)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)


def test_integer_and_bool_rewards_give_float64():
    adv = group_advantages(np.array([[1, 0, 1, 1]]))
    assert adv.dtype == np.float64 and adv.round(3).tolist() == [[0.5, -1.5, 0.5, 0.5]]
    assert group_advantages(torch.tensor([[True, False]])).dtype == torch.float64


@pytest.mark.parametrize("eps", [-1e-6, float("nan"), float("inf"), "1e-6", True, None])
def test_bad_eps_is_rejected(eps):
    with pytest.raises(ValueError, match=r"^eps: must be a finite number >= 0"):
        group_advantages(np.array([[1.0, 0.0]]), eps=eps)


@pytest.mark.parametrize(
    "rewards",
    [
        np.array([["a", "b"]]),
        np.array([[1.0, None]], dtype=object),
        [[1.0, 2.0], [3.0]],
        None,
        np.array([[1 + 1j, 0]]),
        np.array([[1.0, np.inf]]),
    ],
)
def test_bad_rewards_name_the_argument(rewards):
    with pytest.raises(ValueError, match=r"^rewards: "):
        group_advantages(rewards)


def _loss_inputs():
    logp = torch.zeros(2, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    return {"logp": logp, "old_logp": logp.clone(), "advantages": torch.ones(2), "mask": mask}


@pytest.mark.parametrize("name", ["logp", "old_logp", "advantages"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_policy_loss_rejects_non_finite_inputs(name, bad):
    # Before the fix the NaN went through into the loss (and the gradient).
    args = _loss_inputs()
    args[name] = args[name].clone()
    args[name].view(-1)[0] = bad
    with pytest.raises(ValueError, match=rf"^{name}: contains NaN or inf"):
        policy_loss(args["logp"], args["old_logp"], args["advantages"], args["mask"])


def test_policy_loss_rejects_a_nan_under_the_mask_too():
    args = _loss_inputs()
    args["mask"] = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    args["logp"] = args["logp"].clone()
    args["logp"][0, 2] = float("nan")  # padding: would still make the masked sum NaN
    with pytest.raises(ValueError, match=r"^logp: contains NaN"):
        policy_loss(**args)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"logp": np.zeros((2, 3))}, r"^logp: expected a torch.Tensor"),
        (
            {"advantages": torch.ones(2, dtype=torch.long)},
            r"^advantages: expected a floating tensor",
        ),
        ({"mask": torch.full((2, 3), 2)}, r"^mask: must hold only 0/1"),
        ({"mask": np.ones((2, 3))}, r"^mask: expected a torch.Tensor"),
        ({"clip_eps": -0.1}, r"^clip_eps: "),
        ({"clip_eps": float("nan")}, r"^clip_eps: "),
        ({"clip_eps_high": -1.0}, r"^clip_eps_high: "),
        ({"agg": "sum"}, r"^mode: "),
    ],
)
def test_policy_loss_bad_arguments(change, match):
    args = {**_loss_inputs(), **change}
    with pytest.raises(ValueError, match=match):
        policy_loss(**args)


def test_docstring_examples_run():
    import doctest

    from sharpen import grpo

    result = doctest.testmod(grpo)
    assert result.attempted >= 2 and result.failed == 0
