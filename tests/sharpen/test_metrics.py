"""Tests for sharpen.metrics: hand-computed cases per definition, brute-force pass@k, MCS rules."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sharpen import metrics as M

# --------------------------------------------------------------------------------------------
# label_accuracy / majority_ratio
# --------------------------------------------------------------------------------------------


def test_label_accuracy_majority_matches_label():
    assert M.label_accuracy(["3", "4", "3", None], "3") == 1.0
    assert M.label_accuracy(["3", "4", "4", None], "3") == 0.0


def test_label_accuracy_tie_goes_to_first_seen():
    # "4" and "3" both appear twice; "4" is seen first and wins.
    assert M.label_accuracy(["4", "3", "3", "4"], "3") == 0.0
    assert M.label_accuracy(["3", "4", "4", "3"], "3") == 1.0


def test_label_accuracy_unparseable_do_not_vote():
    # Three unparseable answers outnumber the single "7", but do not vote.
    assert M.label_accuracy([None, None, None, "7"], "7") == 1.0
    assert M.label_accuracy([None, None], "7") == 0.0


def test_label_accuracy_ints_and_canonical_strings():
    assert M.label_accuracy([42, 42, 7], 42) == 1.0
    assert M.label_accuracy(["42", "42"], 42) == 1.0  # int label vs string answers
    assert M.label_accuracy([r"$\dfrac{1}{2}$", r"\frac{1}{2}", "3"], r"\frac{1}{2}") == 1.0


def test_label_accuracy_custom_equivalence():
    def mod10(g, p):
        return int(g) % 10 == int(p) % 10

    assert M.label_accuracy(["13", "13", "5"], "3", equivalent=mod10) == 1.0
    assert M.label_accuracy(["13", "13", "5"], "3") == 0.0


def test_majority_ratio_hand_computed():
    assert M.majority_ratio(["3", "3", "5", None]) == 0.5
    assert M.majority_ratio([None, None, "1", None]) == 0.25  # unparseable stay in N
    assert M.majority_ratio([None, None]) == 0.0
    assert M.majority_ratio(["a", "b", "c"]) == pytest.approx(1 / 3)
    assert M.majority_ratio(["1,000", "1000"]) == 1.0  # canonical spellings share a vote


@pytest.mark.parametrize(
    "bad, match",
    [([], "answers: is empty"), ("333", "single string"), ([float("nan")], "NaN")],
)
def test_answer_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        M.majority_ratio(bad)
    with pytest.raises(ValueError, match=match):
        M.label_accuracy(bad, "3")


def test_label_accuracy_rejects_missing_label():
    with pytest.raises(ValueError, match="label"):
        M.label_accuracy(["3"], None)


def test_exact_match():
    assert M.exact_match(5, "5")
    assert not M.exact_match("5", None)
    assert not M.exact_match("", "")  # nothing canonical to compare


# --------------------------------------------------------------------------------------------
# ground_truth_ratio / majority_voting_reward / reward_accuracy / pass_at_n
# --------------------------------------------------------------------------------------------


def test_ground_truth_ratio_and_pass_at_n():
    assert M.ground_truth_ratio([1, 0, 0, 1]) == 0.5
    assert M.ground_truth_ratio([True, True, False]) == pytest.approx(2 / 3)
    assert M.pass_at_n([0, 0, 1]) == 1.0
    assert M.pass_at_n([0.0, 0.0]) == 0.0
    assert M.ground_truth_ratio(torch.tensor([1.0, 0.0])) == 0.5


def test_majority_voting_reward_is_mean():
    assert M.majority_voting_reward([1, 1, 0, 1]) == 0.75
    assert M.majority_voting_reward(np.array([-2.0, 0.5])) == -0.75


def test_reward_accuracy_lucky_hit():
    # Majority "5" is wrong (GT "3"): rollouts answering 5 get proxy 1 / GT 0; the "7" rollout
    # gets 0 under both labels (a "lucky hit"), the "3" rollout proxy 0 / GT 1.
    answers = ["5", "5", "7", "3"]
    proxy = [1, 1, 0, 0]
    gt = [1 if a == "3" else 0 for a in answers]
    assert M.reward_accuracy(proxy, gt) == 0.25


def test_reward_accuracy_threshold_for_continuous_proxy():
    assert M.reward_accuracy([0.9, 0.2, 0.5], [1, 0, 0], threshold=0.5) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="proxy_rewards: must be binary"):
        M.reward_accuracy([0.9, 0.2], [1, 0])
    with pytest.raises(ValueError, match="threshold"):
        M.reward_accuracy([0.9, 0.2], [1, 0], threshold=float("nan"))


@pytest.mark.parametrize(
    "fn",
    [M.ground_truth_ratio, M.pass_at_n],
)
def test_binary_validation(fn):
    with pytest.raises(ValueError, match="correct: is empty"):
        fn([])
    with pytest.raises(ValueError, match="binary"):
        fn([0, 2])
    with pytest.raises(ValueError, match="NaN"):
        fn([0, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        fn([[0, 1]])


def test_reward_accuracy_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        M.reward_accuracy([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="gt_rewards: must be binary"):
        M.reward_accuracy([1, 0], [1, 0.5])


def test_majority_voting_reward_validation():
    with pytest.raises(ValueError, match="proxy_rewards: contains NaN"):
        M.majority_voting_reward([1.0, float("nan")])
    with pytest.raises(ValueError, match="inf"):
        M.majority_voting_reward([1.0, float("inf")])


# --------------------------------------------------------------------------------------------
# pass@k
# --------------------------------------------------------------------------------------------


def _pass_at_k_brute(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (c correct) that contain a correct sample."""
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_subset_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert M.pass_at_k(n, c, k) == pytest.approx(_pass_at_k_brute(n, c, k), abs=1e-12)


def test_pass_at_k_vectorised_equals_scalar():
    n = np.array([5, 8, 10, 3])
    c = np.array([0, 3, 10, 1])
    k = np.array([2, 4, 1, 3])
    out = M.pass_at_k(n, c, k)
    assert out.shape == (4,)
    assert out.tolist() == pytest.approx(
        [M.pass_at_k(*a) for a in zip(n, c, k, strict=True)], abs=1e-15
    )
    # broadcasting a scalar k over arrays, and a 2-D shape
    got = M.pass_at_k([[4, 4], [6, 6]], [[1, 2], [0, 6]], 1)
    np.testing.assert_allclose(got, [[0.25, 0.5], [0.0, 1.0]], atol=1e-15)


def test_pass_at_k_known_values_and_precision():
    assert M.pass_at_k(4, 1, 2) == 0.5
    assert M.pass_at_k(256, 0, 256) == 0.0
    assert M.pass_at_k(256, 1, 256) == 1.0
    assert M.pass_at_k(100, 100 - 5, 10) == 1.0  # n - c < k
    # pass@1 is c/n exactly; tiny values are not lost to cancellation.
    assert M.pass_at_k(10_000, 1, 1) == pytest.approx(1e-4, rel=1e-12)
    # large n where binomials overflow float64: compare with log-gamma closed form
    n, c, k = 2000, 3, 700
    logr = (
        math.lgamma(n - c + 1)
        - math.lgamma(n - c - k + 1)
        - math.lgamma(n + 1)
        + math.lgamma(n - k + 1)
    )
    assert M.pass_at_k(n, c, k) == pytest.approx(1 - math.exp(logr), rel=1e-10)


@given(
    n=st.integers(1, 60),
    data=st.data(),
)
def test_pass_at_k_monotone_in_k_and_c(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    p = M.pass_at_k(n, c, k)
    assert 0.0 <= p <= 1.0
    if k < n:
        assert M.pass_at_k(n, c, k + 1) >= p - 1e-12
    if c < n:
        assert M.pass_at_k(n, c + 1, k) >= p - 1e-12
    if k == 1:
        assert p == pytest.approx(c / n, abs=1e-12)


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, 0, 1), "n: must be >= 1"),
        ((4, 5, 1), "c: must satisfy"),
        ((4, -1, 1), "c: must satisfy"),
        ((4, 1, 0), "k: must satisfy"),
        ((4, 1, 5), "k: must satisfy"),
        ((4.5, 1, 1), "n: must hold integers"),
        (([3, 4], [1, 1, 1], 1), "broadcast"),
        (([], 1, 1), "n: is empty"),
    ],
)
def test_pass_at_k_validation(args, match):
    with pytest.raises(ValueError, match=match):
        M.pass_at_k(*args)


# --------------------------------------------------------------------------------------------
# pseudo_label_acc / point_biserial
# --------------------------------------------------------------------------------------------


def test_pseudo_label_acc_hand_computed():
    proxy = [0.1, 0.9, 0.5, 0.7, 0.2, 0.3]
    correct = [0, 1, 1, 0, 0, 1]
    groups = ["a", "a", "b", "b", "c", "c"]
    # a: top 0.9 correct; b: top 0.7 wrong; c: top 0.3 correct -> 2/3
    assert M.pseudo_label_acc(proxy, correct, groups) == pytest.approx(2 / 3)


def test_pseudo_label_acc_tie_rules():
    proxy, correct = [1, 1, 1, 0], [0, 1, 1, 1]
    assert M.pseudo_label_acc(proxy, correct) == pytest.approx(2 / 3)  # mean over tied top
    assert M.pseudo_label_acc(proxy, correct, ties="first") == 0.0  # argmax -> first
    with pytest.raises(ValueError, match="ties"):
        M.pseudo_label_acc(proxy, correct, ties="random")


def test_pseudo_label_acc_interleaved_groups_and_validation():
    # groups need not be contiguous
    assert M.pseudo_label_acc([0.9, 0.1, 0.2, 0.8], [1, 1, 0, 0], [0, 1, 0, 1]) == 0.5
    with pytest.raises(ValueError, match="groups: must have length"):
        M.pseudo_label_acc([0.9, 0.1], [1, 0], [0])
    with pytest.raises(ValueError, match="same length"):
        M.pseudo_label_acc([0.9, 0.1], [1, 0, 1])
    with pytest.raises(ValueError, match="correct: must be binary"):
        M.pseudo_label_acc([0.9, 0.1], [1, 2])


def test_point_biserial_hand_computed():
    # x = [1, 2, 3, 4], g = [0, 0, 1, 1]: r = (M1 - M0)/s * sqrt(pq) with population s
    x, g = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 1])
    s = x.std()  # population std, sqrt(1.25)
    expected = (3.5 - 1.5) / s * math.sqrt(0.5 * 0.5)
    assert M.point_biserial(x, g) == pytest.approx(expected, rel=1e-12)
    assert M.point_biserial(-x, g) == pytest.approx(-expected, rel=1e-12)
    # scale-free: tiny probability-reward values correlate just the same
    assert M.point_biserial(x * 1e-44, g) == pytest.approx(expected, rel=1e-9)


@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=3, max_size=20),
    st.data(),
)
def test_point_biserial_equals_pearson(xs, data):
    g = data.draw(st.lists(st.integers(0, 1), min_size=len(xs), max_size=len(xs)))
    r = M.point_biserial(xs, g)
    x = np.asarray(xs)
    if len(set(g)) < 2 or np.ptp(x) == 0:
        assert r is None
    elif r is not None:
        assert -1.0 <= r <= 1.0
        if np.std(x) > 1e-6 * max(1.0, np.abs(x).max()):
            assert r == pytest.approx(np.corrcoef(x, g)[0, 1], abs=1e-9)


def test_point_biserial_undefined_returns_none():
    assert M.point_biserial([0.3, 0.5], [1, 1]) is None  # constant GT
    assert M.point_biserial([0.3, 0.3, 0.3], [1, 0, 1]) is None  # constant proxy
    assert M.point_biserial([0.1] * 7, [1, 0] * 3 + [1]) is None  # constant up to rounding
    assert M.point_biserial([0.0, 0.0], [1, 0]) is None
    assert M.point_biserial([0.3], [1]) is None  # one rollout
    with pytest.raises(ValueError, match="gt_rewards: must be binary"):
        M.point_biserial([0.3, 0.5], [1, 0.5])


# --------------------------------------------------------------------------------------------
# mean_token_entropy / response_length / underflow_fraction
# --------------------------------------------------------------------------------------------


def _entropy_plain(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)


def test_mean_token_entropy_is_token_mean_over_valid_tokens():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 6)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    logits[mask == 0] = 1e4  # garbage under padding must not matter
    ent = _entropy_plain(logits, 0.7)
    expected = ent[mask == 1].mean()  # 7 valid tokens, not the mean of row means
    assert M.mean_token_entropy(logits, mask, temperature=0.7) == pytest.approx(expected, rel=1e-5)
    got_t = M.mean_token_entropy(torch.from_numpy(logits), torch.from_numpy(mask), 0.7)
    assert got_t == pytest.approx(expected, rel=1e-5)


def test_mean_token_entropy_uniform_and_validation():
    z = np.zeros((2, 3, 5))
    m = np.array([[1, 1, 0], [1, 0, 0]])
    assert M.mean_token_entropy(z, m) == pytest.approx(math.log(5))
    with pytest.raises(ValueError, match="no valid token"):
        M.mean_token_entropy(z, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="mask: must be"):
        M.mean_token_entropy(z, np.ones((2, 4)))
    with pytest.raises(ValueError, match="logits: must be"):
        M.mean_token_entropy(np.zeros((2, 3)), m)
    with pytest.raises(ValueError, match="temperature"):
        M.mean_token_entropy(z, m, temperature=0.0)
    with pytest.raises(ValueError, match="binary"):
        M.mean_token_entropy(z, m * 2)


def test_response_length():
    assert M.response_length([[1, 1, 1, 0], [1, 0, 0, 0]]) == 2.0
    assert M.response_length(torch.ones(3, 5, dtype=torch.bool)) == 5.0
    with pytest.raises(ValueError, match="mask: must be"):
        M.response_length([1, 1])
    with pytest.raises(ValueError, match="binary"):
        M.response_length([[1, 3]])


def test_underflow_fraction_float32_boundary():
    # float32: exp(x) is 0 below about -103.97 (smallest subnormal 1.4e-45);
    # float64 reaches about -745.
    x = [-10.0, -103.0, -105.0, -200.0, -float("inf")]
    assert M.underflow_fraction(x) == pytest.approx(3 / 5)
    assert M.underflow_fraction(x, dtype=np.float64) == pytest.approx(1 / 5)
    assert M.underflow_fraction(x, dtype="float16") == pytest.approx(4 / 5)
    # bfloat16 keeps float32's exponent but 7 mantissa bits: smallest subnormal 2**-133, so it
    # underflows below about -92.2 and -103 already gives 0.
    assert M.underflow_fraction(torch.tensor(x), dtype=torch.bfloat16) == pytest.approx(4 / 5)
    assert M.underflow_fraction([-92.0, -93.0], dtype=torch.bfloat16) == 0.5


def test_underflow_fraction_validation():
    with pytest.raises(ValueError, match="NaN"):
        M.underflow_fraction([float("nan")])
    with pytest.raises(ValueError, match=r"\+inf"):
        M.underflow_fraction([float("inf")])
    with pytest.raises(ValueError, match="empty"):
        M.underflow_fraction([])
    with pytest.raises(ValueError, match="floating"):
        M.underflow_fraction([-1.0], dtype=np.int32)


# --------------------------------------------------------------------------------------------
# ttrl_metrics
# --------------------------------------------------------------------------------------------


def test_ttrl_metrics_hand_computed():
    answers = ["1", "1", "2", "3", "3", None]
    labels = ["1"] * 3 + ["4"] * 3
    groups = [0, 0, 0, 1, 1, 1]
    proxy = [1, 1, 0, 1, 1, 0]
    m = M.ttrl_metrics(answers, labels, groups, proxy_rewards=proxy, prefix="train/")
    assert set(m) == {
        "train/label_accuracy",
        "train/majority_ratio",
        "train/ground_truth_ratio",
        "train/pass@3",
        "train/majority_voting_reward",
        "train/reward_accuracy",
    }
    assert m["train/label_accuracy"] == 0.5  # group 0 right, group 1 wrong
    assert m["train/majority_ratio"] == pytest.approx(2 / 3)
    assert m["train/ground_truth_ratio"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["train/pass@3"] == 0.5
    assert m["train/majority_voting_reward"] == pytest.approx(2 / 3)
    # group 0: proxy == GT for all 3; group 1: GT all 0, proxy [1,1,0] -> 1/3
    assert m["train/reward_accuracy"] == pytest.approx((1 + 1 / 3) / 2)


def test_ttrl_metrics_given_correct_and_single_group():
    m = M.ttrl_metrics(["7", "7", "8", "8"], [7] * 4, None, correct=[1, 1, 0, 0])
    assert set(m) == {"label_accuracy", "majority_ratio", "ground_truth_ratio", "pass@4"}
    assert m["label_accuracy"] == 1.0  # tie 7/8, 7 seen first
    assert m["ground_truth_ratio"] == 0.5


def test_ttrl_metrics_matches_per_group_functions():
    rng = np.random.default_rng(3)
    g, n = 5, 6
    answers = [str(v) if v < 3 else None for v in rng.integers(0, 4, size=g * n)]
    labels = [str(v) for v in np.repeat(rng.integers(0, 3, size=g), n)]
    groups = np.repeat(np.arange(g), n)
    m = M.ttrl_metrics(answers, labels, groups)
    per = [M.label_accuracy(answers[i * n : (i + 1) * n], labels[i * n]) for i in range(g)]
    assert m["label_accuracy"] == pytest.approx(np.mean(per))


def _ttrl_reference(answers, labels, groups, proxy=None, correct=None, threshold=None, eq=None):
    """ttrl_metrics written plainly: the per-group functions, group by group, then a mean over groups."""
    eq = eq or M.exact_match
    ids = list(dict.fromkeys(groups))
    rows = []
    for g in ids:
        idx = [i for i, h in enumerate(groups) if h == g]
        a, lab = [answers[i] for i in idx], labels[idx[0]]
        c = [correct[i] for i in idx] if correct is not None else [eq(lab, x) for x in a]
        row = {
            "label_accuracy": M.label_accuracy(a, lab, eq),
            "majority_ratio": M.majority_ratio(a),
            "ground_truth_ratio": M.ground_truth_ratio(c),
            f"pass@{len(idx)}": M.pass_at_n(c),
        }
        if proxy is not None:
            p = [proxy[i] for i in idx]
            row["majority_voting_reward"] = M.majority_voting_reward(p)
            row["reward_accuracy"] = M.reward_accuracy(p, c, threshold=threshold)
        rows.append(row)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def test_ttrl_metrics_equals_the_per_group_functions_exactly():
    rng = np.random.default_rng(8)
    spellings = [
        "12",
        "12.0",
        "1,000",
        "1000",
        r"\frac{1}{2}",
        r"\dfrac{1}{2}",
        "$7$",
        "7",
        None,
        "",
        7,
        12,
    ]
    for trial in range(60):
        g, n = int(rng.integers(1, 7)), int(rng.integers(1, 9))
        answers = [spellings[i] for i in rng.integers(0, len(spellings), g * n)]
        groups = [int(x) for x in rng.permutation(np.repeat(np.arange(g), n))]
        label_of = {
            h: ["12", 12, "7", "1000", r"\frac12"][int(rng.integers(0, 5))] for h in range(g)
        }
        labels = [label_of[h] for h in groups]
        kw, ref = {}, {}
        if trial % 3 == 1:
            kw["proxy_rewards"] = ref["proxy"] = rng.integers(0, 2, g * n).astype(float)
        if trial % 3 == 2:
            kw["proxy_rewards"] = ref["proxy"] = rng.normal(0, 1, g * n)
            kw["reward_threshold"] = ref["threshold"] = 0.2
        if trial % 4 == 3:
            kw["correct"] = ref["correct"] = rng.integers(0, 2, g * n)
        if trial % 5 == 4:
            kw["equivalent"] = ref["eq"] = lambda gold, pred: str(gold)[:1] == str(pred)[:1]
        # exactly equal, not approximately: the same numbers in the same order
        assert M.ttrl_metrics(answers, labels, groups, **kw) == _ttrl_reference(
            answers, labels, groups, **ref
        )


def test_ttrl_metrics_canonicalises_each_distinct_string_once(monkeypatch):
    calls = []

    def counting(text):
        calls.append(text)
        return canonicalize(text)

    from sharpen.answers import canonicalize

    monkeypatch.setattr(M, "canonicalize", counting)
    answers = ["1,000", "1000", r"\frac{1}{2}", None] * 8  # 4 groups of 8, 3 distinct strings
    m = M.ttrl_metrics(answers, ["1000"] * 32, np.repeat(np.arange(4), 8))
    assert m["label_accuracy"] == 1.0 and m["majority_ratio"] == 0.5
    assert (
        len(calls) == len(set(calls)) <= 3 + 1 + 1
    )  # the answers, the label, the winner's spelling


def test_trailing_mean_keeps_a_nan_from_there_on():
    # documented: the running sum carries a NaN, so every mean from the NaN on is NaN
    x = [1.0, 3.0, np.nan, 5.0, 7.0, 9.0]
    np.testing.assert_array_equal(M.trailing_mean(x, 2), [1.0, 2.0, np.nan, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(M.trailing_mean(x, 1), x)  # window 1: the values as they are


def test_ttrl_metrics_validation():
    with pytest.raises(ValueError, match="same size"):
        M.ttrl_metrics(["1", "1", "2"], ["1"] * 3, [0, 0, 1])
    with pytest.raises(ValueError, match="constant within a group"):
        M.ttrl_metrics(["1", "1"], ["1", "2"], [0, 0])
    with pytest.raises(ValueError, match="same length"):
        M.ttrl_metrics(["1", "1"], ["1"], None)
    with pytest.raises(ValueError, match="proxy_rewards: must be binary"):
        M.ttrl_metrics(["1", "1"], ["1", "1"], None, proxy_rewards=[0.3, 0.2])
    with pytest.raises(ValueError, match="groups.*None"):
        M.ttrl_metrics(["1", "1"], ["1", "1"], [None, None])
    m = M.ttrl_metrics(["1", "2"], ["1", "1"], None, proxy_rewards=[0.9, 0.2], reward_threshold=0.5)
    assert m["reward_accuracy"] == 1.0


# --------------------------------------------------------------------------------------------
# model_collapse_step / gt_gain
# --------------------------------------------------------------------------------------------


def test_mcs_threshold_clean_collapse():
    series = [0.9, 0.85, 0.6, 0.2, 0.005, 0.0, 0.0]
    out = M.model_collapse_step(series, steps=range(0, 70, 10))
    assert out.step == 40 and out.rule == "threshold"
    assert out.evidence["value"] == 0.005 and out.evidence["threshold"] == 0.01


def test_mcs_threshold_noisy_dip_needs_consecutive():
    series = [0.9, 0.8, 0.0, 0.7, 0.6, 0.005, 0.004, 0.0, 0.0]
    assert M.model_collapse_step(series, consecutive=1).step == 2  # the dip counts
    out = M.model_collapse_step(series, consecutive=3)
    assert out.step == 5  # the lone dip does not
    assert out.evidence["run_max"] == 0.005
    # a run cut off by the end of the series does not count
    assert M.model_collapse_step([0.9, 0.5, 0.0, 0.0], consecutive=3) is None


def test_mcs_threshold_no_collapse_and_smoothing():
    assert M.model_collapse_step([0.9, 0.8, 0.5, 0.2, 0.02]) is None
    # trailing mean over 2: [0.9, 0.45, 0.0, 0.0]; the raw dip at index 1 alone is hidden.
    out = M.model_collapse_step([0.9, 0.0, 0.0, 0.0], smoothing=2)
    assert out.step == 2


def test_mcs_nan_handling():
    series = [0.9, float("nan"), 0.005, float("nan"), 0.0]
    out = M.model_collapse_step(series, steps=[0, 10, 20, 30, 40], consecutive=2)
    assert out.step == 20  # NaN entries skipped; 0.005 and 0.0 are consecutive kept entries
    with pytest.raises(ValueError, match="series: contains NaN"):
        M.model_collapse_step(series, nan="raise")
    assert M.model_collapse_step([float("nan")] * 3) is None
    with pytest.raises(ValueError, match="inf"):
        M.model_collapse_step([0.5, float("inf")])


def test_mcs_peak_clean_collapse():
    series = [0.5, 0.6, 0.8, 0.9, 0.85, 0.7, 0.6, 0.4]
    out = M.model_collapse_step(series, "peak", steps=range(100, 900, 100), min_decline=0.1)
    assert out.step == 400  # peak 0.9 at index 3
    # 0.85 is not 0.1 below; 0.7, 0.6, 0.4 are -> confirmed at the third of them
    assert out.evidence["peak"] == 0.9
    assert out.evidence["confirmed_step"] == 800.0


def test_mcs_peak_noisy_dip_and_no_collapse():
    # a one-step dip below peak - min_decline, then recovery: not sustained with patience 3
    dip = [0.5, 0.7, 0.8, 0.6, 0.8, 0.85, 0.84, 0.86]
    assert M.model_collapse_step(dip, "peak", min_decline=0.1, patience=3) is None
    assert M.model_collapse_step(dip, "peak", min_decline=0.1, patience=1).step == 2
    rising = np.linspace(0.1, 0.9, 20)
    assert M.model_collapse_step(rising, "peak") is None
    # a decline smaller than min_decline is not a collapse
    assert M.model_collapse_step([0.9, 0.88, 0.87, 0.86, 0.86], "peak", min_decline=0.05) is None


def test_mcs_peak_rise_then_fall_with_smoothing():
    rng = np.random.default_rng(0)
    t = np.arange(200)
    clean = np.where(t < 100, 0.5 + 0.004 * t, 0.9 - 0.008 * (t - 100))
    noisy = clean + rng.normal(0, 0.05, size=t.size)  # seeded noise
    out = M.model_collapse_step(noisy, "peak", smoothing=10, min_decline=0.1, patience=5)
    # The causal 10-step mean lags by ~5 steps; the detected peak must sit near the true one.
    assert 90 <= out.step <= 120


def test_mcs_validation():
    with pytest.raises(ValueError, match="rule"):
        M.model_collapse_step([0.5], rule="drop")
    with pytest.raises(ValueError, match="consecutive"):
        M.model_collapse_step([0.5], consecutive=0)
    with pytest.raises(ValueError, match="smoothing"):
        M.model_collapse_step([0.5], smoothing=1.5)
    with pytest.raises(ValueError, match="min_decline"):
        M.model_collapse_step([0.5], "peak", min_decline=0.0)
    with pytest.raises(ValueError, match="patience"):
        M.model_collapse_step([0.5], "peak", patience=True)
    with pytest.raises(ValueError, match="strictly increasing"):
        M.model_collapse_step([0.5, 0.4], steps=[3, 3])
    with pytest.raises(ValueError, match="same length"):
        M.model_collapse_step([0.5, 0.4], steps=[3])
    with pytest.raises(ValueError, match="series: is empty"):
        M.model_collapse_step([])
    with pytest.raises(ValueError, match="nan"):
        M.model_collapse_step([0.5], nan="zero")


@given(st.lists(st.floats(0, 1), min_size=1, max_size=40), st.integers(1, 4))
def test_mcs_threshold_definition_property(series, consecutive):
    out = M.model_collapse_step(series, consecutive=consecutive)
    x = np.asarray(series)
    below = x < 0.01
    starts = [i for i in range(len(x) - consecutive + 1) if below[i : i + consecutive].all()]
    if not starts:
        assert out is None
    else:
        assert out.step == starts[0]


def _noise(rng, n, sigma=0.05, level=0.8):
    return level + sigma * rng.standard_normal(n)


def test_mcs_noise_aware_peak_ignores_pure_noise():
    # Seeded example: the plain rule's running maximum of pure noise "collapses" within a few steps.
    flat = _noise(np.random.default_rng(0), 200)
    assert M.model_collapse_step(flat, "peak") is not None
    assert M.model_collapse_step(flat, "peak", noise_sigmas=4) is None
    # Over many noise series (seeded; rates measured at 100% / ~0.1%), the plain rule always fires and
    # the 6-sigma rule almost never: the running maximum is ~2.9 sigma above the mean at n = 200.
    rng = np.random.default_rng(1)
    series = [_noise(rng, 200) for _ in range(100)]
    assert all(M.model_collapse_step(x, "peak") is not None for x in series)
    assert sum(M.model_collapse_step(x, "peak", noise_sigmas=6) is not None for x in series) <= 3


def test_mcs_noise_aware_peak_finds_a_real_collapse_and_records_the_noise():
    rng = np.random.default_rng(2)
    t = np.arange(300)
    clean = np.where(t < 100, 0.5 + 0.004 * t, np.maximum(0.9 - 0.02 * (t - 100), 0.0))
    x = clean + 0.05 * rng.standard_normal(t.size)  # seeded noise around a rise-then-fall
    out = M.model_collapse_step(x, "peak", steps=t, noise_sigmas=6)
    assert out is not None and 80 <= out.step <= 110
    ev = out.evidence
    assert ev["noise"] == pytest.approx(M.step_noise(x)) and ev["noise"] == pytest.approx(
        0.05, rel=0.3
    )
    assert ev["noise_sigmas"] == 6.0
    assert ev["required_decline"] == pytest.approx(max(0.05, 6 * ev["noise"]))
    assert ev["peak"] - ev["confirmed_value"] >= ev["required_decline"]
    # a large min_decline still wins over a small noise term; the plain rule records its own decline
    assert M.model_collapse_step(x, "peak", min_decline=0.5, noise_sigmas=1).evidence[
        "required_decline"
    ] == pytest.approx(0.5)
    plain = M.model_collapse_step(x, "peak").evidence
    assert plain["required_decline"] == 0.05 and "noise" not in plain


def test_mcs_noise_aware_edge_cases_and_validation():
    # fewer than 3 entries: no noise estimate (NaN), min_decline alone decides
    out = M.model_collapse_step([0.9, 0.5], "peak", patience=1, noise_sigmas=4)
    assert out.step == 0 and math.isnan(out.evidence["noise"])
    assert out.evidence["required_decline"] == 0.05
    # noise_sigmas = 0 is the plain rule; the threshold rule ignores it
    x = _noise(np.random.default_rng(3), 50)
    assert (
        M.model_collapse_step(x, "peak", noise_sigmas=0).step
        == M.model_collapse_step(x, "peak").step
    )
    assert M.model_collapse_step([0.9, 0.0], noise_sigmas=4).step == 1
    for bad in (-1.0, float("nan"), float("inf"), True, "4"):
        with pytest.raises(ValueError, match="noise_sigmas"):
            M.model_collapse_step([0.5, 0.4], "peak", noise_sigmas=bad)


@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=60),
    st.floats(0.0, 10.0),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_mcs_noise_aware_never_fires_earlier_than_plain(series, sigmas, smoothing, patience):
    kw = {"smoothing": smoothing, "patience": patience}
    plain = M.model_collapse_step(series, "peak", **kw)
    aware = M.model_collapse_step(series, "peak", noise_sigmas=sigmas, **kw)
    if plain is None:
        assert aware is None
    elif aware is not None:
        assert aware.step >= plain.step
        assert aware.evidence["confirmed_step"] >= plain.evidence["confirmed_step"]
        assert aware.evidence["required_decline"] >= plain.evidence["required_decline"]


@given(st.floats(0.01, 1.0), st.floats(-0.01, 0.01), st.integers(1, 9))
def test_step_noise_scales_with_sigma_and_ignores_a_trend(sigma, slope, window):
    # Gaussian noise (seeded) around a linear trend: the estimate is sigma / sqrt(window) within
    # the MAD estimator's sampling error at n = 4000 (about 3% relative; 15% allowed).
    rng = np.random.default_rng(0)
    x = slope * np.arange(4000) + rng.normal(0.0, sigma, 4000)
    assert M.step_noise(x, window) == pytest.approx(sigma / math.sqrt(window), rel=0.15)


def test_step_noise_nan_short_and_validation():
    assert math.isnan(M.step_noise([0.1, 0.2])) and math.isnan(M.step_noise([]))
    assert math.isnan(M.step_noise([0.1, float("nan"), 0.3]))  # two kept entries
    assert M.step_noise([0.1, 0.2, float("nan"), 0.3, 0.4]) == pytest.approx(
        0.0, abs=1e-12
    )  # NaN dropped
    with pytest.raises(ValueError, match="smoothing"):
        M.step_noise([0.1, 0.2, 0.3], 0)
    with pytest.raises(ValueError, match="smoothing"):
        M.step_noise([0.1, 0.2, 0.3], 1.5)
    with pytest.raises(ValueError, match="values: must be 1-D"):
        M.step_noise([[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="inf"):
        M.step_noise([0.1, float("inf"), 0.3])


def test_gt_gain():
    assert M.gt_gain(0.10, 0.1708) == pytest.approx(0.0708)
    assert M.gt_gain([0, 1, 0, 0], [1, 1, 0, 0]) == 0.25
    assert M.gt_gain(0.3, 0.2) == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="before"):
        M.gt_gain(float("nan"), 0.2)
    with pytest.raises(ValueError, match="after: is empty"):
        M.gt_gain(0.1, [])
