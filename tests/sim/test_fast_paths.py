"""The simulator's fast paths give the numbers of their plain formulas, bit for bit: softmax in two halves and its
row maximum, the counts of many runs at once, binary advantages looked up in a table, Adam in place, the
measured series asked for (and measured a few runs at a time), and the token toy's state table."""

from __future__ import annotations

import numpy as np
import pytest

import sim.train
from sharpen.grpo import group_advantages
from sim.core import (
    GRPOConfig,
    Optimizer,
    SharedPolicy,
    binary_count_advantages,
    row_max,
    sample_counts,
    sample_counts_runs,
    softmax,
    softmax_parts,
)
from sim.shared_task import SharedTaskConfig, make_shared_task
from sim.token_toy import TokenRuns, TokenToyConfig, _sample_runs, init_token_policy
from sim.train import measured_series, train_shared_runs


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _plain_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(
    "shape", [(5,), (7, 1), (9, 2), (64, 7), (3, 40, 8), (2, 3, 4, 31), (6, 33)]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_halves_and_row_max_equal_the_plain_formula(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    z = (rng.standard_normal(shape) * rng.choice([0.1, 3.0, 300.0], shape)).astype(dtype)
    z.reshape(-1)[:: max(1, z.size // 5)] = z.max()  # ties for the largest entry
    if z.shape[-1] > 2:
        z[..., 1] = -np.inf  # a probability of exactly 0
    assert _same_bits(row_max(z), z.max(axis=-1, keepdims=True))
    p = _plain_softmax(z)
    assert _same_bits(softmax(z), p)
    e, total = softmax_parts(z)
    assert _same_bits(e / total, p)
    # one probability per row, and the largest one, from the halves
    flat_e, flat_t, flat_p = (
        e.reshape(-1, z.shape[-1]),
        total.reshape(-1),
        p.reshape(-1, z.shape[-1]),
    )
    pick = rng.integers(0, z.shape[-1], len(flat_e))
    rows = np.arange(len(flat_e))
    assert _same_bits(flat_e[rows, pick] / flat_t, flat_p[rows, pick])
    assert _same_bits(1.0 / flat_t, flat_p.max(axis=1))


def _plain_counts(p, n, rng):
    cdf = np.cumsum(p, axis=1)
    total = cdf[:, -1:].copy()
    cdf[:, -1] = np.inf
    u = rng.random((p.shape[0], n)) * total
    return np.diff(
        (u[:, :, None] < cdf[:, None, :]).sum(axis=1).astype(np.int32), axis=1, prepend=0
    )


def test_counts_of_many_runs_equal_each_run_counted_alone():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6), size=(4, 50))
    p[1, :3] = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # sure rows
    for n in (1, 8, 300):
        got = sample_counts_runs(p, n, [np.random.default_rng(s) for s in range(4)])
        assert got.shape == p.shape and (got.sum(axis=2) == n).all()
        for r in range(4):
            want = _plain_counts(p[r], n, np.random.default_rng(r))
            assert _same_bits(got[r], want)
            assert _same_bits(sample_counts(p[r], n, np.random.default_rng(r)), want)
    with pytest.raises(ValueError, match="rngs"):
        sample_counts_runs(p, 2, [rng])
    with pytest.raises(ValueError, match="probs"):
        sample_counts_runs(p[0], 2, [rng])


@pytest.mark.parametrize("n", [1, 2, 3, 8, 17])
@pytest.mark.parametrize("normalize_std", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_binary_advantages_from_the_table_equal_group_advantages(n, normalize_std, dtype):
    rng = np.random.default_rng(n)
    n_pos = rng.integers(-1, n + 2, 500).astype(dtype)  # beyond 0..n too: all zeros / all ones
    for eps in (1e-6, 0.0):
        a_pos, a_neg = binary_count_advantages(n_pos, n, normalize_std=normalize_std, eps=eps)
        rows = (np.arange(n)[None, :] < n_pos[:, None]).astype(dtype)
        adv = group_advantages(rows, normalize_std=normalize_std, eps=eps, unbiased=True)
        assert _same_bits(a_pos, np.ascontiguousarray(adv[:, 0]))
        assert _same_bits(a_neg, np.ascontiguousarray(adv[:, -1]))
    with pytest.raises(ValueError, match="eps"):
        binary_count_advantages(n_pos, n, normalize_std=normalize_std, eps=-1.0)
    with pytest.raises(ValueError, match="normalize_std"):
        binary_count_advantages(n_pos, n, normalize_std=[True], eps=0.0)


def test_adam_in_place_equals_its_formula():
    rng = np.random.default_rng(0)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for lr in (0.01, np.full((3, 4), 0.02)):  # an array of rates takes the plain path
        params = {"a": rng.standard_normal((3, 4))}
        if not np.ndim(lr):
            params["w"] = rng.standard_normal(5)
        mine = {k: v.copy() for k, v in params.items()}
        m = {k: np.zeros_like(v) for k, v in params.items()}
        v2 = {k: np.zeros_like(v) for k, v in params.items()}
        opt = Optimizer("adam", lr)
        for t in range(1, 8):
            grads = {
                k: rng.standard_normal(v.shape) * 10.0 ** rng.integers(-8, 3)
                for k, v in params.items()
            }
            grads["a"][0] = 0.0
            opt.step(mine, grads)
            for k, g in grads.items():
                m[k] = b1 * m[k] + (1 - b1) * g
                v2[k] = b2 * v2[k] + (1 - b2) * g * g
                mhat, vhat = m[k] / (1 - b1**t), v2[k] / (1 - b2**t)
                params[k] = params[k] + lr * mhat / (np.sqrt(vhat) + eps)
            for k in params:
                assert _same_bits(mine[k], params[k]), (k, t)


def _shared_runs(n_runs: int, series, **kw):
    task = SharedTaskConfig(n_answers=5, n_features=6)
    pols, corrects, held, held_c = [], [], [], []
    for s in range(n_runs):
        data = np.random.default_rng(s)
        base, correct, feats = make_shared_task(task, 30, data)
        hb, hc, hf = make_shared_task(task, 20, data)
        pol = SharedPolicy(base, feats, per_question=kw.pop("per_question", False))
        h = SharedPolicy(hb, hf)
        h.params["w"] = pol.params["w"]
        pols.append(pol), corrects.append(correct), held.append(h), held_c.append(hc)
    return train_shared_runs(
        pols,
        corrects,
        reward=kw.pop("reward", "majority_voting"),
        grpo=GRPOConfig(4, 0.05, "adam", batch_size=8),
        steps=12,
        rngs=[np.random.default_rng(100 + s) for s in range(n_runs)],
        eval_questions={"heldout": (held, held_c)},
        probe=np.arange(3),
        series=series,
        **kw,
    )


@pytest.mark.parametrize("reward", ["majority_voting", "self_certainty"])
def test_measured_series_asked_for_equal_those_of_a_full_run(reward, monkeypatch):
    full = _shared_runs(3, None, reward=reward)
    every = measured_series(["heldout"])
    assert [k for k in full[0] if k in every] == list(every)
    for series in (("p_max",), ("eval/heldout/accuracy",), ("kl", "accuracy"), every[1::2]):
        part = _shared_runs(3, series, reward=reward)
        for got, want in zip(part, full, strict=True):
            assert [k for k in got if k in every] == [k for k in every if k in series]
            for key, v in got.items():
                assert _same_bits(v, want[key]), (series, key)
    # a run at a time, two at a time: the same numbers as all runs in one block
    for limit in (1, 2):
        monkeypatch.setattr(
            sim.train,
            "_chunks",
            lambda n, size, limit=limit: [slice(i, min(i + limit, n)) for i in range(0, n, limit)],
        )
        for got, want in zip(_shared_runs(3, None, reward=reward), full, strict=True):
            for key, v in want.items():
                assert _same_bits(got[key], v), (limit, key)
    with pytest.raises(ValueError, match="series"):
        _shared_runs(1, ("eval/other/accuracy",))


def test_chunks_cover_the_runs_in_order():
    assert sim.train._chunks(5, 40_000) == [slice(i, i + 1) for i in range(5)]
    assert sim.train._chunks(5, 20_000) == [slice(0, 3), slice(3, 5)]
    assert sim.train._chunks(3, 10**9) == [slice(0, 1), slice(1, 2), slice(2, 3)]


def test_state_table_sampler_keeps_what_it_is_asked_for():
    """Without logits the batch is the same and holds no logits; with them, the kept next-token distributions
    are the softmax of the logits at the valid positions, in their order (the toy with more reasoning tokens)."""
    toy = TokenToyConfig(n_questions=5, n_reasoning=5, max_len=9, max_difficulty=6)
    runs = TokenRuns.stack([init_token_policy(toy, np.random.default_rng(s)) for s in (0, 1)])
    qs = np.array([3, 0, 3, 1])

    def rngs():
        return [np.random.default_rng(5), np.random.default_rng(6)]

    batch, probs = _sample_runs(runs, qs, 3, rngs())
    bare, none = _sample_runs(runs, qs, 3, rngs(), keep_logits=False)
    assert none is None and bare.logits is None
    for name in ("tokens", "mask", "progress", "prev", "question", "answer", "length", "entropy"):
        assert _same_bits(getattr(bare, name), getattr(batch, name)), name
    assert _same_bits(probs, softmax(batch.logits[np.nonzero(batch.mask)]))
    assert (batch.progress[batch.mask] <= toy.n_reasoning + 1).all() and (batch.length > 1).any()


def test_kl_in_place_equals_its_formula():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(6) * 0.3, size=400)
    p[:50, 2] = 0.0  # zero probabilities give zero terms
    log_q = np.log(np.maximum(rng.dirichlet(np.ones(6), size=400), 1e-300))

    def plain(p, log_q):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.maximum(np.where(p > 0, p * (np.log(p) - log_q), 0.0).sum(axis=-1), 0.0)

    assert _same_bits(sim.train._kl_from_log(p, log_q), plain(p, log_q))
    assert _same_bits(
        sim.train._kl_from_log(p[0], log_q), plain(p[0], log_q)
    )  # broadcast: plain path
