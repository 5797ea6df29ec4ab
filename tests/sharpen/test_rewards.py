"""The unified reward: each preset equals its original formula; the algebra's invariants hold.

Tolerance: presets are computed in float64 here (numpy float64 input) and compared with the float64 loop
references of :mod:`sharpen.reference` at rtol=1e-9, atol=1e-9; float32/torch inputs at rtol=atol=1e-5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sharpen import reference
from sharpen.rewards import (
    MAJORITY_VOTING,
    PROBABILITY,
    SELF_CERTAINTY,
    TOKEN_ENTROPY,
    TRAJECTORY_ENTROPY,
    VOTE_SHARE,
    RewardSpec,
    Rollouts,
    available_rewards,
    get_reward,
    score,
    token_entropies,
    token_logprobs,
)
from sharpen.testing import answer_lists, rollouts

TOL = dict(rtol=1e-9, atol=1e-9)

token_batches = rollouts(backend="numpy", fields="token").map(
    lambda r: r.replace(
        logits=np.asarray(r.logits, dtype=np.float64)
    )  # float64 for the 1e-9 comparison
)
temperatures = st.sampled_from([1.0, 0.6, 1.7])


def _parts(r: Rollouts):
    return np.asarray(r.logits, dtype=np.float64), np.asarray(r.tokens), np.asarray(r.mask)


# --------------------------------------------------------------------------------------------------------------
# Presets equal the original formulas
# --------------------------------------------------------------------------------------------------------------


@given(token_batches, temperatures)
def test_self_certainty_is_intuitor_kl_plus_log_v(r, tau):
    z, _, m = _parts(r)
    r = r.replace(temperature=tau)
    ours = score(SELF_CERTAINTY, r)
    ref = reference.intuitor_self_certainty(z, m, tau)
    np.testing.assert_allclose(ours - math.log(z.shape[-1]), ref, **TOL)


@given(token_batches, temperatures)
def test_token_entropy_mean_is_rent_and_sum_is_emrl(r, tau):
    z, _, m = _parts(r)
    r = r.replace(temperature=tau)
    np.testing.assert_allclose(score(TOKEN_ENTROPY, r), reference.rent_entropy(z, m, tau), **TOL)
    summed = get_reward("token_entropy", aggregate="sum")(r)
    np.testing.assert_allclose(summed, reference.emrl_token_entropy(z, m, tau), **TOL)


@given(token_batches, temperatures)
def test_trajectory_entropy_mean_and_sum(r, tau):
    z, y, m = _parts(r)
    r = r.replace(temperature=tau)
    np.testing.assert_allclose(
        score(TRAJECTORY_ENTROPY, r), reference.urlvr_trajectory(z, y, m, tau), **TOL
    )
    summed = get_reward("trajectory_entropy", aggregate="sum")(r)
    np.testing.assert_allclose(summed, reference.emrl_sequence_loglik(z, y, m, tau), **TOL)


@given(token_batches, temperatures)
def test_probability_is_rlsc_and_log_form_is_sequence_loglik(r, tau):
    z, y, m = _parts(r)
    r = r.replace(temperature=tau)
    np.testing.assert_allclose(
        score(PROBABILITY, r), reference.rlsc_probability(z, y, m, tau), rtol=1e-9, atol=1e-300
    )
    np.testing.assert_allclose(
        score(PROBABILITY, r, log_space=True), reference.emrl_sequence_loglik(z, y, m, tau), **TOL
    )


@given(answer_lists())
def test_majority_voting_is_ttrl(answers):
    np.testing.assert_array_equal(
        score(MAJORITY_VOTING, Rollouts(answers=answers)), reference.ttrl_majority_reward(answers)
    )


def test_vote_share_soft_reading():
    got = score(VOTE_SHARE, Rollouts(answers=["a", "b", "a", None]))
    np.testing.assert_allclose(got, [0.5, 0.25, 0.5, 0.0])


def test_torch_and_float32_inputs_match_float64_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 5, 7)) * 3
    y = rng.integers(0, 7, size=(3, 5))
    m = np.ones((3, 5), dtype=bool)
    m[1, 3:] = False
    for name in ("self_certainty", "token_entropy", "trajectory_entropy", "probability"):
        fn = get_reward(name)
        ref = fn(Rollouts(logits=z, tokens=y, mask=m, temperature=0.7))
        got_t = fn(
            Rollouts(
                logits=torch.tensor(z, dtype=torch.float32),
                tokens=torch.tensor(y),
                mask=torch.tensor(m),
                temperature=0.7,
            )
        )
        assert isinstance(got_t, torch.Tensor)
        np.testing.assert_allclose(got_t.numpy(), ref, rtol=1e-5, atol=1e-5)
        got_bf16 = fn(
            Rollouts(
                logits=torch.tensor(z, dtype=torch.bfloat16),
                tokens=torch.tensor(y),
                mask=torch.tensor(m),
                temperature=0.7,
            )
        )
        assert got_bf16.dtype == torch.float32  # computed in float32 or wider
        got_np32 = fn(Rollouts(logits=z.astype(np.float32), tokens=y, mask=m, temperature=0.7))
        assert isinstance(got_np32, np.ndarray)


def test_logprobs_input_equals_logits_input():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 4, 6))
    y = rng.integers(0, 6, size=(2, 4))
    lp = torch.log_softmax(torch.tensor(z) / 0.5, dim=-1).numpy()
    for spec in (SELF_CERTAINTY, TOKEN_ENTROPY, TRAJECTORY_ENTROPY, PROBABILITY):
        a = score(spec, Rollouts(logits=z, tokens=y, temperature=0.5))
        b = score(spec, Rollouts(logprobs=lp, tokens=y))
        np.testing.assert_allclose(a, b, **TOL)


def test_helpers_token_entropies_and_logprobs():
    z = np.log(np.array([[[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]]))
    h = token_entropies(z)
    np.testing.assert_allclose(h, [[1.5 * math.log(2), math.log(3)]], **TOL)
    lp = token_logprobs(z, np.array([[0, 2]]))
    np.testing.assert_allclose(lp, [[math.log(0.5), math.log(1 / 3)]], **TOL)


# --------------------------------------------------------------------------------------------------------------
# Invariants of the algebra
# --------------------------------------------------------------------------------------------------------------


@given(token_batches)
def test_self_certainty_at_least_log_v_and_kl_nonnegative(r):
    z, _, m = _parts(r)
    sc = score(SELF_CERTAINTY, r)
    assert np.all(sc >= math.log(z.shape[-1]) - 1e-12)
    assert np.all(reference.intuitor_self_certainty(z, m) >= -1e-12)


@given(token_batches)
def test_token_entropy_nonpositive(r):
    assert np.all(score(TOKEN_ENTROPY, r) <= 1e-12)


def test_token_entropy_zero_iff_one_hot():
    z = np.full((2, 3, 5), -1e4)
    z[:, :, 2] = 0.0  # one-hot policy
    assert np.allclose(score(TOKEN_ENTROPY, Rollouts(logits=z)), 0.0, atol=1e-12)
    z[1, 1, 3] = 0.0  # one non-degenerate position
    assert score(TOKEN_ENTROPY, Rollouts(logits=z))[1] < -0.1


@given(token_batches)
def test_probability_in_unit_interval(r):
    p = score(PROBABILITY, r)
    assert np.all((p >= 0) & (p <= 1))


@given(token_batches, st.integers(0, 2**31 - 1))
def test_padding_never_changes_a_reward(r, seed):
    rng = np.random.default_rng(seed)
    z, y, m = _parts(r)
    z2, y2 = z.copy(), y.copy()
    z2[~m] = rng.normal(size=z2[~m].shape) * 50
    y2[~m] = rng.integers(0, z.shape[-1], size=y2[~m].shape)
    r2 = r.replace(logits=z2, tokens=y2)
    for spec in (SELF_CERTAINTY, TOKEN_ENTROPY, TRAJECTORY_ENTROPY, PROBABILITY):
        np.testing.assert_array_equal(score(spec, r), score(spec, r2))


def test_padding_tokens_out_of_vocab_are_ignored():
    z = np.zeros((1, 3, 4))
    y = np.array([[1, -100, -100]])  # -100 is a common "ignore" label
    m = np.array([[1, 0, 0]])
    assert np.isclose(
        score(TRAJECTORY_ENTROPY, Rollouts(logits=z, tokens=y, mask=m))[0], -math.log(4)
    )


@given(answer_lists(), st.randoms(use_true_random=False))
def test_majority_reward_permutation_equivariant(answers, rnd):
    perm = list(range(len(answers)))
    rnd.shuffle(perm)
    base = score(MAJORITY_VOTING, Rollouts(answers=answers))
    shuffled = [answers[i] for i in perm]
    got = score(MAJORITY_VOTING, Rollouts(answers=shuffled))
    # ties are broken by first appearance, so only the tie-free case is exactly equivariant
    counts = {a: answers.count(a) for a in set(answers) if a is not None}
    if counts and list(counts.values()).count(max(counts.values())) == 1:
        np.testing.assert_array_equal(got, base[perm])


@given(answer_lists())
def test_majority_reward_invariant_under_renaming(answers):
    rename = {a: f"renamed-{a}" for a in set(answers) if a is not None}
    renamed = [None if a is None else rename[a] for a in answers]
    np.testing.assert_array_equal(
        score(MAJORITY_VOTING, Rollouts(answers=answers)),
        score(MAJORITY_VOTING, Rollouts(answers=renamed)),
    )


def test_majority_vote_groups_are_independent():
    r = Rollouts(answers=["1", "1", "2", "2", "2", "3"], groups=[0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(score(MAJORITY_VOTING, r), [1, 1, 0, 1, 1, 0])


def test_majority_vote_spelling_does_not_split_the_vote():
    r = Rollouts(answers=["1000", "1,000", "$1000$", "7"])
    np.testing.assert_array_equal(score(MAJORITY_VOTING, r), [1, 1, 1, 0])


def test_all_unparseable_group_gets_zero():
    np.testing.assert_array_equal(score(MAJORITY_VOTING, Rollouts(answers=[None, None])), [0, 0])


def test_log_space_of_majority_voting_is_zero_or_minus_inf():
    got = score(MAJORITY_VOTING, Rollouts(answers=["a", "b", "a"]), log_space=True)
    assert got.tolist() == [0.0, -math.inf, 0.0]


def test_probability_underflows_in_float32_but_log_form_does_not():
    z = np.zeros((1, 200, 50), dtype=np.float32)  # 200 tokens at p = 1/50: log p(y) = -782
    r = Rollouts(logits=z, tokens=np.zeros((1, 200), dtype=np.int64))
    assert score(PROBABILITY, r)[0] == 0.0
    assert np.isclose(score(PROBABILITY, r, log_space=True)[0], -200 * math.log(50), rtol=1e-5)


# --------------------------------------------------------------------------------------------------------------
# Registry, ground truth, self-verification
# --------------------------------------------------------------------------------------------------------------


def test_registry_lists_every_reward():
    assert set(available_rewards()) >= {
        "self_certainty",
        "token_entropy",
        "trajectory_entropy",
        "probability",
        "majority_voting",
        "vote_share",
        "ground_truth",
        "self_verification",
    }


def test_unknown_reward_lists_valid_names():
    with pytest.raises(ValueError, match="unknown reward 'entropyy'.*majority_voting"):
        get_reward("entropyy")


def test_ground_truth_reward():
    r = Rollouts(answers=["\\frac{1}{2}", "0.5", None, "2"], labels=["\\dfrac12", "1/2", "3", "2"])
    np.testing.assert_array_equal(get_reward("ground_truth")(r), [0, 0, 0, 1])
    np.testing.assert_array_equal(get_reward("ground_truth", math_verify=True)(r), [1, 1, 0, 1])


def test_self_verification_uses_the_verifier_and_validates_it():
    r = Rollouts(answers=["1", "2"], responses=["a", "b"])
    fn = get_reward(
        "self_verification", verifier=lambda ro: [len(x) == 1 and x == "a" for x in ro.responses]
    )
    np.testing.assert_array_equal(fn(r), [1, 0])
    with pytest.raises(ValueError, match="verifier"):
        get_reward("self_verification")
    with pytest.raises(ValueError, match="0/1"):
        get_reward("self_verification", verifier=lambda ro: [0.3, 1.0])(r)
    with pytest.raises(ValueError, match="shape"):
        get_reward("self_verification", verifier=lambda ro: [1.0])(r)


# --------------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------------


def test_bad_input_names_the_argument():
    z = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="logits: contains NaN"):
        score(TOKEN_ENTROPY, Rollouts(logits=np.full((1, 2, 3), np.nan)))
    with pytest.raises(ValueError, match="mask: expected shape"):
        score(TOKEN_ENTROPY, Rollouts(logits=z, mask=np.ones((2, 4))))
    with pytest.raises(ValueError, match=r"mask: rows \[1\] have no valid token"):
        score(TOKEN_ENTROPY, Rollouts(logits=z, mask=np.array([[1, 0, 0], [0, 0, 0]])))
    with pytest.raises(ValueError, match="tokens: ids must lie"):
        score(TRAJECTORY_ENTROPY, Rollouts(logits=z, tokens=np.full((2, 3), 9)))
    with pytest.raises(ValueError, match="tokens: required"):
        score(TRAJECTORY_ENTROPY, Rollouts(logits=z))
    with pytest.raises(ValueError, match="temperature"):
        Rollouts(logits=z, temperature=0.0)
    with pytest.raises(ValueError, match="batch size mismatch"):
        Rollouts(logits=z, answers=["a"])
    with pytest.raises(ValueError, match="logits: token-level rewards need"):
        score(TOKEN_ENTROPY, Rollouts(answers=["a"]))
    with pytest.raises(ValueError, match="answers: answer-level"):
        score(MAJORITY_VOTING, Rollouts(logits=z))
    with pytest.raises(ValueError, match="logits: expected shape"):
        score(TOKEN_ENTROPY, Rollouts(logits=np.zeros((2, 3))))
    with pytest.raises(ValueError, match="logprobs: rows must be normalised"):
        score(TOKEN_ENTROPY, Rollouts(logprobs=z))
    with pytest.raises(ValueError, match="sign"):
        RewardSpec("token", "uniform", 2)
    with pytest.raises(ValueError, match="anchor"):
        RewardSpec("sequence", "uniform", 1)
    with pytest.raises(ValueError, match="anchor"):
        RewardSpec("token", "majority", -1)
    with pytest.raises(ValueError, match="empty batch"):
        Rollouts(answers=[])


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        # Before the fix: TypeError from the factory ("got an unexpected keyword argument 'foo'").
        (
            "majority_voting",
            {"foo": 1},
            r"^foo: not an option of reward 'majority_voting'; accepted options: aggregate, log_space$",
        ),
        (
            "ground_truth",
            {"aggregate": "sum"},
            r"^aggregate: .* accepted options: math_verify, check$",
        ),
        (
            "self_verification",
            {"verifier": print, "log_space": True},
            r"^log_space: .* accepted options: verifier$",
        ),
        ("token_entropy", {"aggregate": "max"}, r"^aggregate: must be one of"),
        ("probability", {"log_space": "yes"}, r"^log_space: must be a bool"),
        ("ground_truth", {"math_verify": 1}, r"^math_verify: must be a bool"),
        (["majority_voting"], {}, r"^name: unknown reward"),
    ],
)
def test_get_reward_rejects_unknown_and_bad_options(name, options, match):
    with pytest.raises(ValueError, match=match):
        get_reward(name, **options)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logits", np.array([[["a", "b"]]])),
        ("logits", np.zeros((1, 1, 2), dtype=object)),
        ("logits", [[[0.0, 1.0], [2.0]]]),
        ("logits", torch.zeros(1, 1, 2, dtype=torch.complex64)),
        ("logprobs", np.array([[["a", "b"]]])),
        ("tokens", np.array([["a"]])),
        ("mask", np.array([["x"]])),
    ],
)
def test_non_numeric_arrays_name_the_field(field, value):
    # Before the fix: torch.from_numpy's TypeError ("can't convert np.ndarray of type numpy.str_").
    fields = {
        "logits": np.zeros((1, 1, 2)),
        "tokens": np.zeros((1, 1), dtype=np.int64),
        field: value,
    }
    if field == "logprobs":
        fields.pop("logits")
    with pytest.raises(ValueError, match=rf"^{field}: expected "):
        score(TRAJECTORY_ENTROPY, Rollouts(**fields))


@pytest.mark.parametrize("spec", [MAJORITY_VOTING, VOTE_SHARE])
def test_unhashable_answers_and_groups_name_the_field(spec):
    # Before the fix: TypeError("unhashable type: 'list'") from inside the vote.
    with pytest.raises(ValueError, match=r"^answers: entry 1 is an unhashable list"):
        score(spec, Rollouts(answers=["1", ["2"], None]))
    with pytest.raises(ValueError, match=r"^groups: entry 0 is an unhashable dict"):
        score(spec, Rollouts(answers=["1", "2"], groups=[{}, {}]))


@pytest.mark.parametrize("temperature", [float("inf"), float("nan"), True, "1.0", -1.0])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match=r"^temperature: must be a finite number > 0"):
        Rollouts(answers=["1"], temperature=temperature)


def test_numpy_scalar_temperature_is_accepted():
    z = np.zeros((1, 2, 3))
    got = score(TOKEN_ENTROPY, Rollouts(logits=z, temperature=np.float32(0.5)))
    assert np.isclose(got[0], -math.log(3))


def test_docstring_examples_run():
    import doctest

    from sharpen import rewards

    result = doctest.testmod(rewards)
    assert result.attempted >= 5 and result.failed == 0
