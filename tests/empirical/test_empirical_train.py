"""The GRPO loop end to end on the tiny model (CPU), and the exactness of the certainty rewards."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from empirical.train import build_trainer, train
from sharpen.records import load_run
from sharpen.rewards import Rollouts, get_reward


def test_end_to_end_run_sharpens_and_records(tiny_config):
    # An aggressive learning rate so that 30 steps sharpen far beyond the probes' sampling noise. Measured on
    # the tests' prior (greedy 0.6) over seeds 0-3, under torch's default and plain (ATEN_CPU_CAPABILITY=default)
    # kernels: the probe majority probability rose by 0.19-0.45 and the token entropy fell by 0.13-0.37 (at
    # lr 1e-4 the rise was -0.02..0.19: too weak to assert across CPUs).
    cfg = tiny_config.replace(steps=30, lr=1e-3, probe_every=10, eval_every=30, checkpoint_every=15)
    trainer_before = build_trainer(cfg)
    initial = {k: v.clone() for k, v in trainer_before.model.state_dict().items()}
    run_dir = train(cfg)
    run = load_run(run_dir)

    # records: one metrics line per step, probes at 0/10/20/30, held-out evals at 0 and 30, config and env
    assert [m["step"] for m in run.metrics] == list(range(1, 31))
    assert sorted({p["step"] for p in run.probes}) == [0, 10, 20, 30]
    assert len(run.probes) == 4 * cfg.n_probe
    assert [e["step"] for e in run.evals] == [0, 30]
    assert run.config["train"]["lr"] == 1e-3 and "packages" in run.env and not run.warnings
    h = run.header  # the typed header that sharpen fit and the figures read
    assert (h.kind, h.reward, h.lr, h.n_rollouts, h.clip_eps, h.seed, h.steps, h.task) == (
        "empirical", cfg.reward, 1e-3, cfg.n_rollouts, cfg.clip_eps, cfg.seed, 30, cfg.task,
    )  # fmt: skip
    assert all(e["accuracy"] == e[f"avg@{cfg.eval_samples}"] for e in run.evals)
    for m in run.metrics:
        for key in (
            "label_accuracy",
            "reward_accuracy",
            "majority_ratio",
            "majority_voting_reward",
            "ground_truth_ratio",
            "pass@8",
            "entropy",
            "response_length",
            "kl_to_initial",
            "lr",
        ):
            assert key in m and math.isfinite(m[key]), (key, m.get(key))

    # parameters changed (final checkpoint vs initial weights)
    from safetensors.torch import load_file

    final = load_file(run_dir / "checkpoints" / "step-000030" / "model.safetensors")
    assert any(not torch.equal(final[k], initial[k]) for k in final)
    assert len(list((run_dir / "checkpoints").glob("step-*"))) == 2

    # sharpening: the majority probability of the probe questions rises (trend with a margin)
    p = {s: np.mean([r["p_majority"] for r in run.probes if r["step"] == s]) for s in (0, 30)}
    assert p[30] > p[0] + 0.1, p
    entropy = [m["entropy"] for m in run.metrics]
    assert np.mean(entropy[-5:]) < np.mean(entropy[:5]) - 0.05, entropy
    kl = [m["kl_to_initial"] for m in run.metrics]
    assert kl[-1] > kl[0]


@pytest.mark.parametrize(
    "reward", ["self_certainty", "token_entropy", "trajectory_entropy", "probability"]
)
def test_certainty_rewards_are_exact_full_vocabulary_values(tiny_config, reward):
    """The loop's reward equals the formula on logits from an independent, unpadded forward pass."""
    tau = 0.7
    cfg = tiny_config.replace(reward=reward, temperature=tau, rollout_batch_size=32, log_kl=False)
    trainer = build_trainer(cfg)
    before = copy.deepcopy(trainer.model).eval()
    trainer.train_step()
    batch, rewards = trainer.last_batch
    plain, via_sharpen = [], []
    full_ids, full_mask = batch.sequences()  # (B, P+T): prompt then response
    for i in range(batch.tokens.shape[0]):
        keep = full_mask[i].bool()
        ids = full_ids[i][keep][None]  # the sequence alone: no padding, positions 0..L-1
        n_resp = int(batch.mask[i].sum())
        p_len = ids.shape[1] - n_resp
        with torch.no_grad():
            z = (
                before(input_ids=ids).logits[0, p_len - 1 : -1].double()
            )  # (T_i, V), predicts response
        y = ids[0, p_len:]
        logp = torch.log_softmax(z / tau, -1)
        token_lp = logp[torch.arange(n_resp), y]
        if reward == "self_certainty":  # H(U, pi) = LSE(z/tau) - mean(z/tau), token mean
            value = (torch.logsumexp(z / tau, -1) - (z / tau).mean(-1)).mean()
        elif reward == "token_entropy":  # -mean_t H(pi^t)
            value = (logp.exp() * logp).sum(-1).mean()
        elif reward == "trajectory_entropy":  # mean_t log pi(y_t)
            value = token_lp.mean()
        else:  # probability: pi(y|x)
            value = token_lp.sum().exp()
        plain.append(float(value))
        r = Rollouts(logits=z[None], tokens=y[None], temperature=tau)
        via_sharpen.append(float(get_reward(reward)(r)[0]))
    np.testing.assert_allclose(rewards, plain, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rewards, via_sharpen, rtol=1e-4, atol=1e-5)


def test_micro_batches_accumulate_to_the_full_batch_gradient(tiny_config):
    """Gradient accumulation over micro-batches gives the same update as one pass (token-mean loss)."""
    cfg = tiny_config.replace(rollout_batch_size=32, log_kl=False, lr=1e-3)
    states = []
    for micro in (None, 8):
        trainer = build_trainer(cfg.replace(micro_batch_size=micro))
        trainer.train_step()
        states.append(trainer.model.state_dict())
    for k in states[0]:
        torch.testing.assert_close(
            states[0][k], states[1][k], rtol=1e-3, atol=2e-5
        )  # lr 1e-3 steps


def test_self_verification_on_countdown_runs(tiny_cache, tmp_path):
    from empirical.config import preset

    cfg = preset("tiny-countdown-selfverify").replace(
        pretrain_steps=20,
        steps=2,
        rollout_batch_size=16,
        n_probe=4,
        probe_samples=4,
        probe_every=2,
        eval_every=0,
        checkpoint_every=0,
        progress=False,
        out_dir=str(tmp_path / "cd"),
        n_train=40,
        n_heldout=8,
    )
    run = load_run(train(cfg))
    assert len(run.metrics) == 2
    assert 0.0 <= run.metrics[-1]["reward_accuracy"] <= 1.0  # verifier score vs the safe evaluator


def test_bad_inputs(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="no such model folder"):
        build_trainer(tiny_config.replace(model=str(tmp_path / "missing-model")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        build_trainer(tiny_config.replace(model=str(tmp_path / "empty")))
    run_dir = train(tiny_config.replace(steps=1, probe_every=0))
    with pytest.raises(ValueError, match="already holds a run"):
        train(tiny_config.replace(steps=1, probe_every=0))
    with pytest.raises(ValueError, match=r"different configuration \(lr: "):
        train(tiny_config.replace(steps=1, probe_every=0, lr=1e-4), resume=True)
    assert run_dir.exists()


@pytest.mark.parametrize(
    ("reward", "micro"),
    [("majority_voting", None), ("self_certainty", None), ("majority_voting", 32)],
)
def test_one_pass_equals_the_separate_old_logprob_pass(tiny_config, reward, micro):
    """One on-policy update per batch: old log-probs and certainty rewards taken from the gradient pass give
    the same parameters after k steps as a separate no-grad pass (same seed)."""
    cfg = tiny_config.replace(reward=reward, micro_batch_size=micro, rollout_batch_size=64, lr=1e-3,
                              log_kl=False, probe_every=0)  # fmt: skip
    states, rewards = [], []
    for reuse in (True, False):
        trainer = build_trainer(cfg.replace(reuse_forward=reuse))
        for _ in range(3):
            trainer.train_step()
        states.append(trainer.model.state_dict())
        rewards.append(trainer.last_batch[1])
    np.testing.assert_allclose(rewards[0], rewards[1], rtol=1e-6, atol=1e-7)
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=1e-5, atol=1e-6)
    assert any(
        not torch.equal(states[0][k], build_trainer(cfg).model.state_dict()[k]) for k in states[0]
    )
