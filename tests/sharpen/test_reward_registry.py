"""The reward registry: entries carry level, spec, needs and a description; a reward registered in one call reaches
every caller (``sharpen train --help``, the simulator, the TRL and veRL adapters) with no other edit."""

from __future__ import annotations

import numpy as np
import pytest

from sharpen import rewards
from sharpen.rewards import (
    LEVELS,
    TRAJECTORY_ENTROPY,
    RewardInfo,
    RewardSpec,
    Rollouts,
    available_rewards,
    get_reward,
    register_reward,
    reward_info,
)

NEW = "sum_logprob_test"
"""A reward defined by this test only: the summed log-probability of the sampled tokens."""
NEW_SPEC = RewardSpec("token", "sampled", -1, "identity", "sum")
ANSWER_NEW = "first_answer_test"
"""An answer-level reward defined by this test only: 1 for rollouts that give their group's first answer."""


@pytest.fixture
def new_reward():
    """Registers :data:`NEW` with one call; removes it afterwards so no other test sees it."""
    info = register_reward(
        NEW, spec=NEW_SPEC, description="summed log-probability of the sampled tokens"
    )
    yield info
    rewards._REGISTRY.pop(NEW, None)


@pytest.fixture
def answer_reward():
    """Registers :data:`ANSWER_NEW` through the decorator form; removes it afterwards."""

    @register_reward(
        ANSWER_NEW, level="answer", needs={"answers"}, description="first answer of the group"
    )
    def _make():
        def reward(r: Rollouts) -> np.ndarray:
            groups = r.groups if r.groups is not None else [0] * len(r.answers)
            first: dict = {}
            for g, a in zip(groups, r.answers, strict=True):
                first.setdefault(g, a)
            hits = [a is not None and a == first[g] for g, a in zip(groups, r.answers, strict=True)]
            return np.asarray(hits, dtype=np.float64)

        return reward

    yield _make
    rewards._REGISTRY.pop(ANSWER_NEW, None)


# ----------------------------------------------------------------------------------------------------------
# entries and levels
# ----------------------------------------------------------------------------------------------------------


def test_levels_partition_the_registry_and_match_the_builtin_rewards():
    by_level = {level: set(available_rewards(level=level)) for level in LEVELS}
    assert set().union(*by_level.values()) == set(available_rewards())
    assert sum(len(v) for v in by_level.values()) == len(available_rewards())  # disjoint
    assert by_level["token"] == {
        "self_certainty",
        "token_entropy",
        "trajectory_entropy",
        "probability",
    }
    assert by_level["answer"] == {"majority_voting", "vote_share", "ground_truth"}
    assert by_level["external"] == {"self_verification"}
    for level, names in by_level.items():
        assert list(available_rewards(level=level)) == sorted(names)
        assert all(reward_info(n).level == level for n in names)


def test_entries_carry_spec_needs_and_description():
    for name, spec in rewards.PRESETS.items():
        info = reward_info(name)
        assert isinstance(info, RewardInfo) and info.name == name and info.spec == spec
        assert ("logits" in info.needs) == spec.needs_logits
        assert info.options == ("aggregate", "log_space")
    assert reward_info("trajectory_entropy").needs == {"logits", "tokens"}
    assert reward_info("self_certainty").needs == {"logits"}
    assert reward_info("majority_voting").needs == {"answers"}
    assert reward_info("ground_truth").needs == {"answers", "labels"}
    assert reward_info("ground_truth").spec is None
    assert reward_info("self_verification").needs == {"verifier"}
    for name in available_rewards():
        text = reward_info(name).description
        assert text and "\n" not in text


def test_bad_levels_and_names_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^level: must be one of"):
        available_rewards(level="sequence")
    with pytest.raises(
        ValueError, match=r"^name: unknown reward 'entropyy'; valid names: .*majority_voting"
    ):
        reward_info("entropyy")
    with pytest.raises(ValueError, match=r"^name: reward 'majority_voting' is already registered"):
        register_reward("majority_voting", spec=rewards.MAJORITY_VOTING)
    with pytest.raises(
        ValueError, match=r"^level: the spec's unit 'token' makes it 'token', got 'answer'"
    ):
        register_reward("never_registered", spec=NEW_SPEC, level="answer")
    with pytest.raises(ValueError, match=r"^needs: unknown 'weights'"):
        register_reward("never_registered", needs={"answers", "weights"})
    with pytest.raises(ValueError, match=r"^needs: expected a set"):
        register_reward("never_registered", needs="answers")
    with pytest.raises(ValueError, match=r"^level: must be one of"):
        register_reward("never_registered", level="sequence")
    with pytest.raises(ValueError, match=r"^spec: expected a RewardSpec"):
        register_reward("never_registered", spec="token")
    with pytest.raises(ValueError, match=r"^needs: a token-level reward needs 'logits'"):
        register_reward("never_registered", level="token", needs={"mask"})
    with pytest.raises(ValueError, match=r"^needs: a token-level reward needs 'logits'"):
        register_reward("never_registered", level="answer", needs={"logits", "answers"})
    with pytest.raises(ValueError, match=r"^description: must be a str"):
        register_reward("never_registered", description=3)
    assert "never_registered" not in available_rewards()


def test_a_spec_registration_is_score_of_the_spec_with_the_presets_options(new_reward):
    assert new_reward is reward_info(NEW)
    assert (new_reward.level, new_reward.needs, new_reward.spec) == (
        "token",
        {"logits", "tokens"},
        NEW_SPEC,
    )
    assert NEW in available_rewards(level="token") and NEW not in available_rewards(level="answer")
    rng = np.random.default_rng(0)
    r = Rollouts(logits=rng.normal(size=(3, 4, 5)), tokens=rng.integers(0, 5, (3, 4)),
                 mask=np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]))  # fmt: skip
    np.testing.assert_array_equal(
        get_reward(NEW)(r), get_reward("trajectory_entropy", aggregate="sum")(r)
    )
    np.testing.assert_array_equal(
        get_reward(NEW, aggregate="mean")(r), get_reward("trajectory_entropy")(r)
    )


def test_ground_truth_takes_the_tasks_check():
    r = Rollouts(answers=["3", "4", None], labels=[(1, 2), (1, 2), (1, 2)])

    def adds_up(gold, pred):
        return pred is not None and int(pred) == sum(gold)

    np.testing.assert_array_equal(get_reward("ground_truth", check=adds_up)(r), [1.0, 0.0, 0.0])
    # the default check is the equivalence of sharpen.answers
    same = Rollouts(answers=["0.50", "1/2"], labels=["0.5", "0.5"])
    np.testing.assert_array_equal(get_reward("ground_truth")(same), [1.0, 0.0])
    with pytest.raises(ValueError, match=r"^check: must be callable"):
        get_reward("ground_truth", check="equal")
    with pytest.raises(ValueError, match=r"^math_verify, check: give one"):
        get_reward("ground_truth", check=adds_up, math_verify=True)
    with pytest.raises(ValueError, match=r"^check: returned 1, expected a bool"):
        get_reward("ground_truth", check=lambda gold, pred: 1)(r)


# ----------------------------------------------------------------------------------------------------------
# one registration call reaches every caller
# ----------------------------------------------------------------------------------------------------------


def test_a_new_reward_shows_in_sharpen_train_help_and_config(new_reward, capsys):
    from empirical.config import preset
    from empirical.train import reads_logits
    from sharpen.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert NEW in help_text and "training reward: ground_truth, majority_voting" in help_text
    assert preset("tiny-arith-ttrl").replace(reward=NEW).reward == NEW
    assert reads_logits(NEW) and not reads_logits("majority_voting")


def test_a_new_reward_is_a_simulator_choice(new_reward, answer_reward, tmp_path, capsys):
    from sim.core import GRPOConfig, PriorConfig, TabularPolicy, sample_prior
    from sim.experiments.grid import GridConfig, grid_rewards
    from sim.experiments.single_question import SingleQuestionConfig
    from sim.token_toy import (
        TokenToyConfig,
        batch_rewards,
        init_token_policy,
        sample_sequences,
        token_rewards,
    )
    from sim.train import answer_rewards, train_answer_level

    assert {NEW, ANSWER_NEW} <= set(answer_rewards()) and {NEW, ANSWER_NEW} <= set(token_rewards())
    assert (
        NEW in grid_rewards() and ANSWER_NEW not in grid_rewards()
    )  # the grid scores one-token logits
    assert "self_verification" in answer_rewards() and "self_verification" not in token_rewards()
    SingleQuestionConfig(rewards=(NEW, ANSWER_NEW))
    GridConfig(rewards=(NEW,))

    # a one-token response: the summed log-probability is the mean one, so training is the same run
    prior = sample_prior(PriorConfig(n_questions=16, n_answers=4), np.random.default_rng(0))
    runs = {}
    for name in (NEW, "trajectory_entropy"):
        runs[name] = train_answer_level(TabularPolicy(prior.logits), prior.correct, reward=name,
                                        grpo=GRPOConfig(n_rollouts=4, lr=0.1), steps=3,
                                        rng=np.random.default_rng(1))  # fmt: skip
    for key in runs[NEW]:
        np.testing.assert_array_equal(runs[NEW][key], runs["trajectory_entropy"][key])

    # the token toy: the sum is the mean times each response's length
    toy = TokenToyConfig(n_questions=4, max_len=6)
    pol = init_token_policy(toy, np.random.default_rng(0))
    batch = sample_sequences(pol, np.arange(4), 3, np.random.default_rng(1))
    total, mean = batch_rewards(NEW, batch, pol), batch_rewards("trajectory_entropy", batch, pol)
    np.testing.assert_allclose(total, mean * batch.mask.sum(axis=1), rtol=1e-5)

    # and the command line runs it
    from sharpen.cli import main

    code = main(["sim", "single_question", "--quick", "--rewards", f"{NEW},{ANSWER_NEW}", "--steps", "2",
                 "--seeds", "1", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0 and (tmp_path / "single_question" / "single_question.png").exists()
    assert f"{NEW}: " in capsys.readouterr().out


def test_a_new_reward_reaches_the_verl_adapter(new_reward):
    from sharpen.integrations.verl import (
        VerlRecipe,
        actor_rewards,
        certainty_from_actor,
        verl_rewards,
    )

    assert NEW in actor_rewards() and NEW in verl_rewards()
    assert "self_certainty" not in actor_rewards()  # its anchor needs the full logits
    assert VerlRecipe(reward=NEW).reward == NEW
    log_probs = np.log(np.array([[0.5, 0.25, 1.0], [0.2, 0.9, 0.9]]))
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(
        certainty_from_actor(NEW, log_probs, None, mask), (log_probs * mask).sum(axis=1), rtol=1e-12
    )
    with pytest.raises(ValueError, match=r"^reward: must be one of .* \(it needs the full logits"):
        VerlRecipe(reward="self_certainty")


def test_a_new_reward_reaches_the_trl_adapter(new_reward):
    strl = pytest.importorskip("sharpen.integrations.trl")

    assert NEW in strl.certainty_rewards() and NEW not in strl.CERTAINTY_REWARDS
    assert strl.CertaintyReward(NEW).spec == NEW_SPEC
    assert strl.CertaintyReward(NEW, aggregate="mean").spec == TRAJECTORY_ENTROPY
    with pytest.raises(ValueError, match=r"^name: must be one of"):
        strl.CertaintyReward("majority_voting")
