"""The trainer builds its reward from the registry: the options a reward takes, the task's check for ground truth
(no branch on task or reward names), and the rollout backend from the backends' table."""

from __future__ import annotations

import typing
from types import SimpleNamespace

import numpy as np
import pytest

from empirical.config import Backend, preset
from empirical.measure import grade
from empirical.rollout import BACKENDS, HFBackend, VLLMBackend
from empirical.tasks import Question, arithmetic_task, countdown_task
from empirical.train import Trainer


def _trainer(cfg, task, verdicts=None):
    """What :meth:`Trainer.reward_function` and :meth:`Trainer.score_batch` read, without a model."""
    return SimpleNamespace(cfg=cfg, task=task, verify=lambda questions, texts: np.asarray(verdicts))


def _score(trainer, questions, answers):
    fn = Trainer.reward_function(trainer, questions, list(answers))
    return Trainer.score_batch(trainer, fn, questions, list(answers), list(answers), old=None)


def test_ground_truth_grades_with_the_tasks_check_on_every_task():
    cfg = preset("tiny-arith-ttrl").replace(
        reward="ground_truth", n_rollouts=2, rollout_batch_size=8
    )
    countdown = countdown_task(n_train=4, n_heldout=0, seed=3)
    q = Question("c", "n3 2 t6:", "3*2", meta=(("numbers", (3, 2)), ("target", 6)))
    # another expression reaching the target is right although it differs from the reference solution
    answers = ["3*2", "2*3", "3+2", None]
    rewards = _score(_trainer(cfg.replace(task="countdown"), countdown), [q] * 4, answers)
    np.testing.assert_array_equal(rewards, [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(rewards, grade(countdown, [q] * 4, answers))

    arith = arithmetic_task(n_train=4, n_heldout=0)
    questions = [arith.train[0]] * 2 + [arith.train[1]] * 2
    answers = [arith.train[0].label, "x", None, arith.train[1].label]
    rewards = _score(_trainer(cfg, arith), questions, answers)
    np.testing.assert_array_equal(rewards, [1.0, 0.0, 0.0, 1.0])


def test_rewards_get_the_options_they_take():
    cfg = preset("tiny-countdown-selfverify").replace(n_rollouts=2, rollout_batch_size=8)
    task = countdown_task(n_train=2, n_heldout=0)
    questions = [task.train[0]] * 2
    rewards = _score(_trainer(cfg, task, verdicts=[1.0, 0.0]), questions, ["1", "2"])
    np.testing.assert_array_equal(
        rewards, [1.0, 0.0]
    )  # the policy's verdicts, through the verifier option

    arith = arithmetic_task(n_train=2, n_heldout=0)
    questions = [arith.train[0]] * 2
    for aggregate in (None, "sum"):  # majority voting takes aggregate; a no-op at the answer level
        vote = preset("tiny-arith-ttrl").replace(
            reward_aggregate=aggregate, n_rollouts=2, rollout_batch_size=8
        )
        np.testing.assert_array_equal(
            _score(_trainer(vote, arith), questions, ["7", "7"]), [1.0, 1.0]
        )


def test_backends_come_from_one_table():
    assert BACKENDS == {"hf": HFBackend, "vllm": VLLMBackend}
    assert typing.get_args(Backend) == tuple(BACKENDS)
    for name, cls in BACKENDS.items():
        assert cls.name == name and isinstance(cls, type)
        assert all(
            callable(getattr(cls, m)) for m in ("from_run", "generate", "sync")
        )  # RolloutBackend
    with pytest.raises(ValueError, match=r"^backend: "):
        preset("tiny-arith-ttrl").replace(backend="sglang")
