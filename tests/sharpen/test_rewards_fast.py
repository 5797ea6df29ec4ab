"""The rewards' fast paths give the numbers of their general paths, bit for bit: token-level rewards formed at the
valid positions only (CPU, no autograd) against the whole-tensor computation (the path taken with autograd), and
the answer-level rewards of Python-int answer ids against the general per-group loop (taken for numpy ints)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sharpen.rewards import PRESETS, Rollouts, available_rewards, get_reward, token_cross_entropies

TOKEN_REWARDS = available_rewards(level="token")


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _batch(rng, dtype):
    b, t, v = int(rng.integers(1, 30)), int(rng.integers(1, 13)), int(rng.choice([2, 7, 8, 33]))
    z = (rng.standard_normal((b, t, v)) * rng.choice([0.1, 1.0, 50.0])).astype(dtype)
    if rng.random() < 0.5:
        mask = np.arange(t)[None, :] < rng.integers(1, t + 1, b)[:, None]  # right padding
    else:
        mask = rng.random((b, t)) < 0.5
        mask[np.arange(b), rng.integers(0, t, b)] = True  # a valid token in every row
    tokens = np.where(mask, rng.integers(0, v, (b, t)), -1)  # padding ids out of range: never read
    return z, tokens, mask


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_token_rewards_at_the_valid_positions_equal_the_whole_tensor(dtype):
    rng = np.random.default_rng(0)
    for trial in range(25):
        z, tokens, mask = _batch(rng, dtype)
        tau = float(rng.choice([1.0, 0.7, 2.5]))
        ref = torch.from_numpy(z).requires_grad_(True)  # autograd: the whole-tensor path
        for name in TOKEN_REWARDS:
            for options in ({}, {"log_space": True}, {"aggregate": "sum"}):
                fn = get_reward(name, **options)
                fast = fn(Rollouts(logits=z, tokens=tokens, mask=mask, temperature=tau))
                full = fn(Rollouts(logits=ref, tokens=tokens, mask=mask, temperature=tau))
                assert _same_bits(fast, full.detach().numpy()), (trial, name, options)
            h_fast, m = token_cross_entropies(
                PRESETS[name], Rollouts(logits=z, tokens=tokens, mask=mask, temperature=tau)
            )
            h_full, _ = token_cross_entropies(
                PRESETS[name], Rollouts(logits=ref, tokens=tokens, mask=mask, temperature=tau)
            )
            assert _same_bits(h_fast, h_full.detach()) and not h_fast[~m].any()


def test_token_reward_errors_are_the_same_on_both_paths():
    z = np.zeros((2, 3, 4), dtype=np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)
    for logits in (z, torch.from_numpy(z).requires_grad_(True)):
        with pytest.raises(ValueError, match="tokens: ids must lie"):
            get_reward("trajectory_entropy")(
                Rollouts(logits=logits, tokens=np.array([[0, 4, 0], [0, 0, 0]]), mask=mask)
            )
        with pytest.raises(ValueError, match="mask: rows"):
            get_reward("token_entropy")(Rollouts(logits=logits, mask=np.zeros((2, 3), bool)))


@pytest.mark.parametrize("name", ["majority_voting", "vote_share", "ground_truth"])
def test_answer_ids_give_the_general_loop_numbers(name):
    rng = np.random.default_rng(1)
    for trial in range(200):
        n, g = int(rng.choice([1, 2, 5, 8])), int(rng.integers(1, 12))
        k = int(rng.integers(1, 5))
        ids = rng.integers(0, k, n * g)
        none = rng.random(n * g) < 0.2
        answers = [None if u else int(a) for a, u in zip(ids, none, strict=True)]
        labels = [int(x) for x in rng.integers(0, k, n * g)]
        groups = [
            np.repeat(np.arange(g), n),  # one size, consecutive
            np.tile(np.arange(g), n),  # one size, interleaved
            rng.integers(0, g, n * g),  # sizes differ
            None,  # one group
        ][trial % 4]
        slow = [None if a is None else np.int64(a) for a in answers]  # numpy ints: the loop
        for options in ({}, {"log_space": True}) if name != "ground_truth" else ({},):
            fn = get_reward(name, **options)
            fast = fn(Rollouts(answers=answers, groups=groups, labels=labels))
            want = fn(Rollouts(answers=slow, groups=groups, labels=[np.int64(x) for x in labels]))
            assert _same_bits(fast, want), (trial, options)
