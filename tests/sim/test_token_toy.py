"""The token-level toy: sampling bookkeeping, rewards through sharpen.rewards, the chain rule, determinism, and
many runs trained at once equal to one run at a time, bit for bit (against a plain one-run loop)."""

from __future__ import annotations

import numpy as np
import pytest

from sharpen.grpo import group_advantages
from sharpen.rewards import Rollouts, get_reward, reward_info
from sim.core import Optimizer, softmax
from sim.token_toy import (
    TokenRuns,
    TokenToyConfig,
    _rewards,
    backward,
    batch_rewards,
    init_token_policy,
    sample_runs,
    sample_sequences,
    sequence_logit_grad,
    token_rewards,
    train_token_level,
    train_token_runs,
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


# ------------------------------------------------------------------------------------------------------------
# A plain one-run loop: the toy written directly from its definition, one run, one token position at a time
# ------------------------------------------------------------------------------------------------------------


def _ref_logits(pol, q, c, prev):
    d = pol.n_reasoning
    z = pol.params["theta"][c].copy()
    rows = np.arange(len(q))
    has_prev = prev >= 0
    z[rows[has_prev], prev[has_prev]] += pol.params["alpha"][0]
    z[:, d:] += pol.params["u"][q]
    solved = c >= pol.difficulty[q]
    z[rows[solved], d + pol.correct[q][solved]] += pol.kappa
    return z


def _ref_sample(pol, questions, n, rng):
    d, t_max, v = pol.n_reasoning, pol.max_len, pol.vocab
    qb = np.repeat(questions, n)
    b = len(qb)
    tokens = np.full((b, t_max), -1)
    logits = np.zeros((b, t_max, v))
    progress, prevs = np.zeros((b, t_max), dtype=int), np.full((b, t_max), -1)
    c, prev = np.zeros(b, dtype=int), np.full(b, -1)
    alive, answer, length = np.ones(b, dtype=bool), np.full(b, -1), np.full(b, t_max)
    for t in range(t_max):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        z = _ref_logits(pol, qb[idx], c[idx], prev[idx])
        cdf = np.cumsum(softmax(z), axis=1)
        cdf[:, -1] = np.inf
        y = (rng.random((idx.size, 1)) >= cdf).sum(axis=1)
        tokens[idx, t], logits[idx, t], progress[idx, t], prevs[idx, t] = y, z, c[idx], prev[idx]
        is_answer = y >= d
        answer[idx[is_answer]] = y[is_answer] - d
        length[idx[is_answer]] = t + 1
        alive[idx[is_answer]] = False
        go, yr = idx[~is_answer], y[~is_answer]
        c[go] = np.minimum(c[go] + (yr != prev[go]), d + 1)
        prev[go] = yr
    return dict(tokens=tokens, mask=tokens >= 0, logits=logits, progress=progress, prev=prevs,
                question=qb, answer=answer, length=length)  # fmt: skip


def _ref_stats(b, pol):
    d = pol.n_reasoning
    reasoning = b["mask"] & (b["tokens"] < d)
    repeats = reasoning & (b["tokens"] == b["prev"])
    p = softmax(b["logits"] - b["logits"].max(axis=-1, keepdims=True))
    ent = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=-1)
    return {
        "ground_truth_ratio": float((b["answer"] == pol.correct[b["question"]]).mean()),
        "response_length": float(b["length"].mean()),
        "repetition_rate": float(repeats.sum() / max(int(reasoning.sum()), 1)),
        "unparseable": float((b["answer"] < 0).mean()),
        "mean_token_entropy": float((ent * b["mask"]).sum() / b["mask"].sum()),
    }


def _ref_train(pol, reward, steps, rng, n, lr, optimizer, normalize_std, val, val_n):
    d, k = pol.n_reasoning, pol.params["u"].shape[1]
    qs, opt, out = np.arange(pol.n_questions), Optimizer(optimizer, lr), {}
    for step in range(steps + 1):
        b = _ref_sample(pol, qs, n, rng)
        ro = Rollouts(logits=b["logits"].astype(np.float32), tokens=np.maximum(b["tokens"], 0),
                      mask=b["mask"], answers=[None if a < 0 else int(a) for a in b["answer"]],
                      groups=b["question"], labels=pol.correct[b["question"]].tolist())  # fmt: skip
        r = np.asarray(get_reward(reward)(ro), dtype=np.float64)
        ans = b["answer"].reshape(-1, n)
        counts = np.stack([(ans == a).sum(axis=1) for a in range(k)], 1)
        stats = _ref_stats(b, pol)
        stats["reward_mean"] = float(r.mean())
        stats["label_accuracy"] = float(
            ((counts.argmax(axis=1) == pol.correct) & (counts.max(axis=1) > 0)).mean()
        )
        stats["majority_ratio"] = float(counts.max(axis=1).mean() / n)
        if val is not None:
            val.params["theta"], val.params["alpha"] = pol.params["theta"], pol.params["alpha"]
            stats.update(
                {f"val/{key}": v
                 for key, v in _ref_stats(_ref_sample(val, np.arange(val.n_questions), val_n, rng), val).items()}
            )  # fmt: skip
        for key, v in stats.items():
            out.setdefault(key, []).append(v)
        if step == steps:
            break
        adv = group_advantages(r.reshape(-1, n), normalize_std=normalize_std).ravel()
        p = softmax(b["logits"])
        onehot = np.zeros_like(p)
        bi, ti = np.nonzero(b["mask"])
        onehot[bi, ti, b["tokens"][bi, ti]] = 1.0
        w = (b["mask"] * adv[:, None]) / max(int(b["mask"].sum()), 1)
        g = (w[:, :, None] * (onehot - p))[b["mask"]]
        c, prev = b["progress"][b["mask"]], b["prev"][b["mask"]]
        theta, u = np.zeros_like(pol.params["theta"]), np.zeros_like(pol.params["u"])
        np.add.at(theta, c, g)
        np.add.at(u, np.broadcast_to(b["question"][:, None], b["mask"].shape)[b["mask"]], g[:, d:])
        alpha = np.array([g[np.flatnonzero(prev >= 0), prev[prev >= 0]].sum()])
        opt.step(pol.params, {"theta": theta, "alpha": alpha, "u": u})
    return {key: np.asarray(v) for key, v in out.items()}


SMALL = TokenToyConfig(n_questions=6, max_len=6)
SMALL_VAL = TokenToyConfig(n_questions=5, max_len=6)


@pytest.mark.parametrize(
    ("optimizer", "lr", "normalize_std"), [("adam", 0.05, True), ("sgd", 0.5, False)]
)
def test_runs_trained_at_once_equal_one_run_at_a_time(optimizer, lr, normalize_std):
    """Every reward x two seeds in one train_token_runs call: each run's series and final parameters equal the
    plain one-run loop's, bit for bit (each run draws from its own generator in one run's order)."""
    plan = [(reward, seed) for reward in token_rewards() for seed in (0, 7)]
    kw = dict(
        steps=6,
        n_rollouts=4,
        lr=lr,
        optimizer=optimizer,
        normalize_std=normalize_std,
        val_rollouts=3,
    )
    pols = [init_token_policy(SMALL, np.random.default_rng(s)) for _, s in plan]
    vals = [init_token_policy(SMALL_VAL, np.random.default_rng(s + 1)) for _, s in plan]
    got = train_token_runs(pols, rewards=[r for r, _ in plan],
                           rngs=[np.random.default_rng(s + 2) for _, s in plan], val_policies=vals, **kw)  # fmt: skip
    for (reward, seed), out, pol, val in zip(plan, got, pols, vals, strict=True):
        ref_pol = init_token_policy(SMALL, np.random.default_rng(seed))
        ref_val = init_token_policy(SMALL_VAL, np.random.default_rng(seed + 1))
        want = _ref_train(ref_pol, reward, kw["steps"], np.random.default_rng(seed + 2), kw["n_rollouts"], lr,
                          optimizer, normalize_std, ref_val, kw["val_rollouts"])  # fmt: skip
        assert list(out) == list(want)
        for key in want:
            np.testing.assert_array_equal(
                out[key], want[key], err_msg=f"{reward} seed {seed}: {key}"
            )
        for key in ("theta", "alpha", "u"):
            np.testing.assert_array_equal(pol.params[key], ref_pol.params[key])
        assert (
            val.params["theta"] is pol.params["theta"]
        )  # held-out questions share the trained habits
    # and one run alone (train_token_level) is the same run again
    pol = init_token_policy(SMALL, np.random.default_rng(7))
    alone = train_token_level(pol, reward=plan[1][0], rng=np.random.default_rng(9),
                              val_policy=init_token_policy(SMALL_VAL, np.random.default_rng(8)), **kw)  # fmt: skip
    for key, v in alone.items():
        np.testing.assert_array_equal(v, got[1][key])


def test_sampled_runs_equal_each_run_sampled_alone():
    pols = [init_token_policy(CFG, np.random.default_rng(s)) for s in (0, 1, 2)]
    pols[1].params["theta"][:, CFG.n_reasoning :] -= (
        2.0  # longer responses in one run than the others
    )
    questions = np.array([4, 0, 0, 2])  # any questions, repeats included
    both = sample_runs(
        TokenRuns.stack(pols), questions, 3, [np.random.default_rng(10 + s) for s in (0, 1, 2)]
    )
    for r, pol in enumerate(pols):
        one = sample_sequences(pol, questions, 3, np.random.default_rng(10 + r))
        ref = _ref_sample(pol, questions, 3, np.random.default_rng(10 + r))
        for key, want in ref.items():
            np.testing.assert_array_equal(getattr(one, key), want)
            np.testing.assert_array_equal(getattr(both.run(r), key), want)
        # the entropy of the sampled next-token distribution at each position, 0 on padding
        p = softmax(one.logits)
        want = np.where(one.mask, -(p * np.log(np.maximum(p, 1e-300))).sum(axis=-1), 0.0)
        np.testing.assert_array_equal(one.entropy, want)


def _counting(reward, seen):
    """``reward``, noting the batch size of every call in ``seen``."""

    def fn(ro):
        seen.append(ro.batch_size)
        return reward(ro)

    return fn


def test_an_answer_reward_is_called_once_per_distinct_group():
    """A sure policy answers at once and correctly: every group of a question is the same, so the answer-level
    rewards see one group per distinct (answers, labels) and give what the full batch gives."""
    sure = TokenToyConfig(n_questions=8, strength=30.0, answer_logit=30.0)
    pols = [init_token_policy(sure, np.random.default_rng(s)) for s in (0, 1)]
    runs = TokenRuns.stack(pols)
    batch = sample_runs(runs, np.arange(8), 4, [np.random.default_rng(3), np.random.default_rng(4)])
    assert (batch.length == 1).all()
    for name in token_rewards():
        seen: list[int] = []
        fn = _counting(get_reward(name), seen)
        full = _rewards(name, fn, batch, runs, [0, 1])
        grouped = _rewards(name, fn, batch, runs, [0, 1], group_size=4)
        np.testing.assert_array_equal(grouped, full)
        for r in (0, 1):
            np.testing.assert_array_equal(full[r], batch_rewards(name, batch.run(r), pols[r]))
        distinct = len(np.unique(runs.correct))  # a group is its question's correct answer, 4 times
        assert seen == ([64, 4 * distinct] if reward_info(name).level == "answer" else [64, 64])


def test_bad_runs():
    pol = init_token_policy(CFG, np.random.default_rng(0))
    other = init_token_policy(TokenToyConfig(n_questions=3), np.random.default_rng(0))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="policies: run 1"):
        TokenRuns.stack([pol, other])
    with pytest.raises(ValueError, match="policies"):
        TokenRuns.stack([])
    twin = init_token_policy(CFG, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rewards, rngs"):
        train_token_runs([pol, twin], rewards=["probability"], steps=1, rngs=[rng, rng])
    with pytest.raises(ValueError, match="policies: the same policy object appears twice"):
        train_token_runs([pol, pol], rewards=["probability"] * 2, steps=1, rngs=[rng, rng])
    with pytest.raises(ValueError, match="rewards: unknown"):
        train_token_runs([pol], rewards=["nope"], steps=1, rngs=[rng])
    with pytest.raises(ValueError, match="val_policies"):
        train_token_runs(
            [pol], rewards=["probability"], steps=1, rngs=[rng], val_policies=[pol, pol]
        )
    with pytest.raises(ValueError, match="rngs"):
        sample_runs(TokenRuns.stack([pol, pol]), np.arange(2), 2, [rng])
