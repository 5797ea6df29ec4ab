"""Tests for sharpen.testing: the strategies build valid objects; check_reward passes the registry
rewards and names the invariant that deliberately broken rewards violate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import find, given
from hypothesis import strategies as st

from sharpen.rewards import Rollouts, available_rewards, get_reward, score
from sharpen.testing import (
    answer_lists,
    check_reward,
    logits,
    masks,
    permute_rollouts,
    rollout_groups,
    rollouts,
    token_ids,
)

# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------


@given(logits(batch=st.integers(1, 4), length=3, vocab=st.integers(2, 5), scale=4.0))
def test_logits_strategy(z):
    assert isinstance(z, np.ndarray) and z.dtype == np.float32
    assert z.ndim == 3 and z.shape[1] == 3 and 1 <= z.shape[0] <= 4 and 2 <= z.shape[2] <= 5
    assert np.isfinite(z).all() and np.abs(z).max() <= 4.0


@given(logits(2, 3, 4, backend="torch"))
def test_logits_strategy_torch(z):
    assert isinstance(z, torch.Tensor) and tuple(z.shape) == (2, 3, 4)
    assert z.dtype == torch.float32


@given(masks(batch=st.integers(1, 5), length=st.integers(1, 6), min_valid=1))
def test_masks_right_padded_with_a_valid_token(m):
    assert m.dtype == np.bool_
    lengths = m.sum(axis=1)
    assert (lengths >= 1).all()
    # right padding: row b is exactly lengths[b] ones followed by zeros
    expected = np.arange(m.shape[1])[None, :] < lengths[:, None]
    np.testing.assert_array_equal(m, expected)


def test_masks_options():
    empty = find(masks(3, 4, min_valid=0), lambda m: not m.any(axis=1).all())
    assert (~empty.any(axis=1)).any()  # min_valid=0 can produce an all-padding row
    full = find(masks(2, 3, min_valid=3, dtype="int"), lambda m: True)
    assert full.dtype == np.int64 and (full == 1).all()
    tm = find(masks(2, 3, backend="torch", dtype="float"), lambda m: True)
    assert isinstance(tm, torch.Tensor) and tm.dtype == torch.float32


@given(token_ids(batch=3, length=st.integers(1, 4), vocab=5))
def test_token_ids_strategy(y):
    assert y.dtype == np.int64 and y.shape[0] == 3
    assert y.min() >= 0 and y.max() < 5


@given(answer_lists(2, 6, n_values=2))
def test_answer_lists_strategy(answers):
    assert 2 <= len(answers) <= 6
    assert set(answers) <= {None, "0", "1"}


def test_answer_lists_produce_ties_and_unparseable():
    tie = find(answer_lists(4, 4), lambda a: a.count("0") == a.count("1") == 2)
    assert sorted(tie) == ["0", "0", "1", "1"]
    ints = find(answer_lists(3, 3, kind="int", allow_none=False), lambda a: True)
    assert all(isinstance(a, int) for a in ints)
    assert find(answer_lists(3, 3), lambda a: a == [None, None, None]) == [None, None, None]


@given(rollouts(fields="all"))
def test_rollouts_strategy_builds_valid_batches(r):
    b = r.batch_size
    assert r.logits.shape[0] == r.tokens.shape[0] == r.mask.shape[0] == len(r.answers) == b
    assert r.mask[:, 0].all()  # every row has a valid token
    assert 0.25 <= r.temperature <= 2.0
    label_of = {}
    for g, lab in zip(r.groups, r.labels, strict=True):
        assert label_of.setdefault(g, lab) == lab  # labels constant within a group
    # every intrinsic preset accepts the batch
    for name in ("self_certainty", "token_entropy", "probability", "majority_voting"):
        out = get_reward(name)(r)
        assert np.shape(out) == (b,)


@given(rollouts(inputs="logprobs", backend="torch", fields="token"))
def test_rollouts_strategy_logprobs(r):
    assert r.logits is None and r.answers is None
    assert isinstance(r.logprobs, torch.Tensor)
    total = torch.logsumexp(r.logprobs.double(), dim=-1)
    assert torch.allclose(total, torch.zeros_like(total), atol=1e-5)
    assert tuple(score(get_reward("token_entropy").spec, r).shape) == (r.batch_size,)


@given(rollout_groups(n_groups=st.integers(1, 3), group_size=st.integers(1, 4), fields="answer"))
def test_rollout_groups_contiguous_equal_size(r):
    g = max(r.groups) + 1
    n = r.batch_size // g
    assert r.groups == [i for i in range(g) for _ in range(n)]
    assert r.logits is None
    assert all(r.labels[i * n] == r.labels[i * n + j] for i in range(g) for j in range(n))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: logits(0, 2, 2), "batch"),
        (lambda: logits(2, 2, 2, backend="jax"), "backend"),
        (lambda: logits(2, 2, 2, scale=float("inf")), "scale"),
        (lambda: masks(2, 2, min_valid=-1), "min_valid"),
        (lambda: masks(2, 2, dtype="half"), "dtype"),
        (lambda: token_ids(2, True, 3), "length"),
        (lambda: answer_lists(3, 2), "max_size"),
        (lambda: answer_lists(n_values=0), "n_values"),
        (lambda: rollouts(inputs="probs"), "inputs"),
        (lambda: rollout_groups(fields="text"), "fields"),
    ],
)
def test_strategy_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_permute_rollouts():
    r = Rollouts(
        logits=torch.arange(12.0).reshape(3, 2, 2),
        tokens=torch.zeros(3, 2, dtype=torch.long),
        mask=np.array([[1, 1], [1, 0], [1, 0]]),
        answers=["a", None, "b"],
        groups=[0, 0, 1],
        labels=["a", "a", "c"],
    )
    p = permute_rollouts(r, [2, 0, 1])
    assert p.answers == ["b", "a", None] and p.groups == [1, 0, 0]
    assert torch.equal(p.logits[0], r.logits[2])
    np.testing.assert_array_equal(p.mask, [[1, 0], [1, 1], [1, 0]])
    back = permute_rollouts(p, [1, 2, 0])  # inverse permutation
    assert back.answers == r.answers and torch.equal(back.logits, r.logits)
    with pytest.raises(ValueError, match="perm"):
        permute_rollouts(r, [0, 0, 1])


# --------------------------------------------------------------------------------------------
# check_reward passes the registry's rewards
# --------------------------------------------------------------------------------------------

_LEVEL = {
    "self_certainty": "token",
    "token_entropy": "token",
    "trajectory_entropy": "token",
    "probability": "token",
    "majority_voting": "answer",
    "vote_share": "answer",
    "ground_truth": "answer",
}
_NEEDS_OPTIONS = {"self_verification"}


def test_every_registry_reward_is_covered():
    assert set(available_rewards()) - _NEEDS_OPTIONS <= set(_LEVEL)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", sorted(set(available_rewards()) - _NEEDS_OPTIONS))
def test_check_reward_passes_registry_rewards(name, backend):
    check_reward(get_reward(name), level=_LEVEL[name], backend=backend, examples=25)


@pytest.mark.parametrize("name", ["self_certainty", "token_entropy", "trajectory_entropy"])
def test_check_reward_passes_on_logprob_inputs_and_sum_aggregate(name):
    check_reward(get_reward(name, aggregate="sum"), inputs="logprobs", examples=15)


def test_check_reward_options_of_registry_rewards():
    # log-space probability is finite; log-space vote share is -inf on unparseable answers
    check_reward(get_reward("probability", log_space=True), examples=15)
    with pytest.raises(AssertionError, match="'finite output'"):
        check_reward(get_reward("vote_share", log_space=True), level="answer", shrink=False)
    check_reward(
        get_reward("vote_share", log_space=True), level="answer", require_finite=False, examples=15
    )

    def verifier(r):
        return get_reward("ground_truth")(r)

    check_reward(get_reward("self_verification", verifier=verifier), level="answer", examples=15)


# --------------------------------------------------------------------------------------------
# check_reward catches broken rewards
# --------------------------------------------------------------------------------------------

_entropy = get_reward("token_entropy")
_vote = get_reward("majority_voting")


def _reads_padding(r):
    """Mean logit over *all* positions, padding included."""
    return np.asarray(r.logits, dtype=np.float64).mean(axis=(1, 2))


def _batch_order(r):
    """Adds the rollout's index: depends on where it sits in the batch."""
    return _entropy(r) + np.arange(r.batch_size)


def _nan_on_last(r):
    out = np.array(_entropy(r), dtype=np.float64)
    out[-1] = np.nan
    return out


def _wrong_shape(r):
    return np.asarray(_entropy(r))[:, None]


def _global_rng(r):
    return _entropy(r) + np.random.random(r.batch_size)


def _raises(r):
    raise RuntimeError("boom")


def _vote_times_index(r):
    return _vote(r) * (1.0 + np.arange(r.batch_size))


def _likes_zero(r):
    """Rewards the literal answer "0": not invariant under renaming answers."""
    return np.array([1.0 if a == "0" else 0.0 for a in r.answers])


@pytest.mark.parametrize(
    "fn, level, invariant",
    [
        (_reads_padding, "token", "masked positions ignored"),
        (_batch_order, "token", "permutation equivariance"),
        (_nan_on_last, "token", "finite output"),
        (_wrong_shape, "token", r"output shape \(B,\)"),
        (_global_rng, "token", "deterministic"),
        (_raises, "token", "accepts valid rollouts"),
        (_vote_times_index, "answer", "permutation equivariance"),
        (_likes_zero, "answer", "invariance under renaming answers"),
    ],
)
def test_check_reward_names_the_violated_invariant(fn, level, invariant):
    with pytest.raises(AssertionError, match=f"invariant '{invariant}' violated"):
        check_reward(fn, level=level, shrink=False)


def test_check_reward_catches_padding_reads_with_torch():
    def reads_padding_torch(r):
        return r.logits.double().mean(dim=(1, 2))

    with pytest.raises(AssertionError, match="'masked positions ignored'"):
        check_reward(reads_padding_torch, backend="torch", shrink=False)


def test_check_reward_shrinks_to_a_small_counterexample():
    with pytest.raises(AssertionError, match="'finite output'") as info:
        check_reward(_nan_on_last)
    assert "rollouts [0]" in str(info.value)  # shrunk to a batch of one


def test_check_reward_validation():
    with pytest.raises(ValueError, match="fn"):
        check_reward(42)
    with pytest.raises(ValueError, match="level"):
        check_reward(_entropy, level="sequence")
    with pytest.raises(ValueError, match="examples"):
        check_reward(_entropy, examples=0)
    with pytest.raises(ValueError, match="rtol"):
        check_reward(_entropy, rtol=-1.0)


@pytest.mark.parametrize("scale", [0.1, 1e-3, 1 / 3, 8.0, 1e30, 3.4e38])
def test_logits_accept_any_positive_float32_scale(scale):
    # Before the fix scale=0.1 raised hypothesis' InvalidArgument (0.1 is not a float32).
    z = find(logits(2, 3, 4, scale=scale), lambda z: np.abs(z).max() > 0)
    assert z.dtype == np.float32 and np.abs(z).max() <= scale


def test_rollouts_accept_a_non_float32_scale():
    r = find(rollouts(batch=2, fields="token", scale=0.1), lambda r: True)
    assert np.abs(np.asarray(r.logits)).max() <= 0.1


@pytest.mark.parametrize(
    "scale", [0.0, -1.0, 1e-50, 1e39, float("inf"), float("nan"), "8", True, None]
)
def test_bad_scale_is_a_clear_error(scale):
    for make in (lambda: logits(scale=scale), lambda: rollouts(scale=scale)):
        with pytest.raises(
            ValueError, match=r"^scale: must be a number in \[1.4e-45, 3.403e\+38\]"
        ):
            make()


def test_strategy_errors_use_name_colon_problem():
    with pytest.raises(ValueError, match=r"^batch: must be an int >= 1"):
        logits(0, 2, 2)
    with pytest.raises(ValueError, match=r"^min_valid: 3 exceeds the drawn length 2"):
        find(masks(2, 2, min_valid=3), lambda m: True)
    with pytest.raises(ValueError, match=r"^rtol: must be finite and >= 0"):
        check_reward(get_reward("token_entropy"), rtol=-1.0)
