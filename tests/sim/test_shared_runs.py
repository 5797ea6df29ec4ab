"""Shared-task runs advanced together (sim.train.train_shared_runs, sim.shared_task.shared_runs) equal the same
runs trained one at a time by train_answer_level / shared_run, bit for bit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sim.core import GRPOConfig, SharedPolicy
from sim.shared_task import SharedTaskConfig, make_shared_task, shared_run, shared_runs
from sim.train import answer_rewards, train_answer_level, train_shared_runs

TASKS = [
    SharedTaskConfig(n_answers=5, n_features=6),
    SharedTaskConfig(n_answers=5, n_features=6, strength=2.0),
    SharedTaskConfig(n_answers=5, n_features=6, shortcut_bonus=0.25),
]
SEEDS = [0, 1000, 7]
ACCS = [0.6, 0.9, 0.75]


def _assert_same(got: dict, want: dict, what: str) -> None:
    assert list(got) == list(want), what
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{what}: {key}")


@pytest.mark.parametrize("reward", answer_rewards())
def test_shared_runs_equal_one_run_at_a_time(reward):
    """Three runs (different priors, shortcut bonuses, seeds and verifier accuracies) in one call, each equal to
    its own shared_run: every series, the probes and the training labels."""
    grpo = GRPOConfig(4, 0.05, "adam", batch_size=8)
    kw = dict(n_questions=24, n_heldout=10, reward=reward, grpo=grpo, steps=12)
    probe = np.array([0, 5])
    got = shared_runs(TASKS, SEEDS, probe=probe, verifier_accuracies=ACCS, **kw)
    for r, (out, correct) in enumerate(got):
        want, want_correct = shared_run(
            TASKS[r], seed=SEEDS[r], probe=probe, verifier_accuracy=ACCS[r], **kw
        )
        _assert_same(out, want, f"{reward} run {r}")
        np.testing.assert_array_equal(correct, want_correct)


@pytest.mark.parametrize(
    ("reward", "optimizer", "batch_size", "per_question"),
    [
        ("majority_voting", "sgd", None, True),
        ("ground_truth", "adam", 8, True),
        ("self_verification", "sgd", 8, True),
        ("probability", "adam", None, False),
    ],
)
def test_trained_parameters_equal_one_run_at_a_time(reward, optimizer, batch_size, per_question):
    """train_shared_runs writes each run's final w (and per-question delta) back; they equal train_answer_level's,
    with the whole set per step (batch_size None) or a batch, and the held-out set reads the trained w."""

    def build():
        pols, held, corr, hcorr = [], [], [], []
        for task, seed in zip(TASKS, SEEDS, strict=True):
            rng = np.random.default_rng(seed)
            b, c, f = make_shared_task(task, 16, rng)
            hb, hc, hf = make_shared_task(task, 6, rng)
            pols.append(SharedPolicy(b, f, per_question=per_question))
            held.append(SharedPolicy(hb, hf))
            held[-1].params["w"] = pols[-1].params["w"]
            corr.append(c)
            hcorr.append(hc)
        return pols, held, corr, hcorr

    grpo = GRPOConfig(6, 0.1, optimizer, batch_size=batch_size)
    pols, held, corr, hcorr = build()
    got = train_shared_runs(pols, corr, reward=reward, grpo=grpo, steps=9,
                            rngs=[np.random.default_rng(s + 1) for s in SEEDS], verifier_accuracies=ACCS,
                            eval_questions={"heldout": (held, hcorr)})  # fmt: skip
    ref_pols, ref_held, ref_corr, ref_hcorr = build()
    for r in range(len(SEEDS)):
        want = train_answer_level(ref_pols[r], ref_corr[r], reward=reward, grpo=grpo, steps=9,
                                  rng=np.random.default_rng(SEEDS[r] + 1), verifier_accuracy=ACCS[r],
                                  eval_questions={"heldout": (ref_held[r], ref_hcorr[r])})  # fmt: skip
        _assert_same(got[r], want, f"{reward} run {r}")
        assert sorted(pols[r].params) == sorted(ref_pols[r].params)
        for key, value in ref_pols[r].params.items():
            np.testing.assert_array_equal(pols[r].params[key], value, err_msg=key)
        assert held[r].params["w"] is pols[r].params["w"]
    # training moved the policies (the comparison is not between untouched arrays)
    assert all(np.abs(p.params["w"]).max() > 0 for p in pols)


def test_one_run_batch_equals_shared_run():
    grpo = GRPOConfig(8, 0.01, "adam", batch_size=16)
    kw = dict(n_questions=40, n_heldout=12, reward="majority_voting", grpo=grpo, steps=15)
    task = replace(SharedTaskConfig(), strength=0.5)
    [(out, correct)] = shared_runs([task], [3], per_question=True, **kw)
    want, want_correct = shared_run(task, seed=3, per_question=True, **kw)
    _assert_same(out, want, "one run")
    np.testing.assert_array_equal(correct, want_correct)


def test_bad_runs():
    task = SharedTaskConfig(n_answers=4, n_features=4)
    kw = dict(n_questions=8, n_heldout=4, grpo=GRPOConfig(4, 0.1), steps=1)
    with pytest.raises(ValueError, match="tasks, seeds"):
        shared_runs([task], [0, 1], reward="ground_truth", **kw)
    with pytest.raises(ValueError, match="tasks, seeds"):
        shared_runs([], [], reward="ground_truth", **kw)
    with pytest.raises(ValueError, match="reward: unknown"):
        shared_runs([task], [0], reward="nope", **kw)
    with pytest.raises(ValueError, match="grpo: batched runs need epochs = 1"):
        shared_runs(
            [task], [0], reward="ground_truth", **{**kw, "grpo": GRPOConfig(4, 0.1, epochs=2)}
        )
    with pytest.raises(ValueError, match="grpo: batched runs need"):
        shared_runs(
            [task], [0], reward="ground_truth", **{**kw, "grpo": GRPOConfig(4, 0.1, kl_coef=0.1)}
        )
    with pytest.raises(ValueError, match="verifier_accuracies"):
        shared_runs([task] * 2, [0, 1], reward="self_verification", verifier_accuracies=[0.9], **kw)
    rng = np.random.default_rng(0)
    b, c, f = make_shared_task(task, 8, rng)
    b2, c2, f2 = make_shared_task(task, 6, rng)
    one, other = SharedPolicy(b, f), SharedPolicy(b2, f2)
    with pytest.raises(ValueError, match="policies: every run needs one shape"):
        train_shared_runs([one, other], [c, c2], reward="ground_truth", grpo=kw["grpo"], steps=1,
                          rngs=[rng, rng])  # fmt: skip
    with pytest.raises(ValueError, match="policies: every run needs one shape"):
        train_shared_runs([one, SharedPolicy(b, f, per_question=True)], [c, c], reward="ground_truth",
                          grpo=kw["grpo"], steps=1, rngs=[rng, rng])  # fmt: skip
    with pytest.raises(ValueError, match="corrects: expected"):
        train_shared_runs(
            [one], [c[:3]], reward="ground_truth", grpo=kw["grpo"], steps=1, rngs=[rng]
        )
    with pytest.raises(ValueError, match="eval_questions: 'heldout' policies must share"):
        train_shared_runs([one], [c], reward="ground_truth", grpo=kw["grpo"], steps=1, rngs=[rng],
                          eval_questions={"heldout": ([SharedPolicy(b2, f2)], [c2])})  # fmt: skip
    with pytest.raises(ValueError, match="policies: need at least one run"):
        train_shared_runs([], [], reward="ground_truth", grpo=kw["grpo"], steps=1, rngs=[])
