"""The failure-mode metrics against plain loops written from their definitions, and their edge cases."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharpen import failure_metrics as fm

# ----------------------------------------------------------------------------------------------------------
# reference implementations: one response at a time, Python lists, straight from the docstrings' definitions
# ----------------------------------------------------------------------------------------------------------


def ref_rep_n(seq: list[int], n: int) -> float:
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def ref_longest_repeat(seq: list[int], max_period: int) -> int:
    """Every window, every period: the window is periodic with period p and holds two full copies."""
    best = 0
    for start in range(len(seq)):
        for stop in range(start + 1, len(seq) + 1):
            window = seq[start:stop]
            for p in range(1, max_period + 1):
                if len(window) >= 2 * p and all(
                    window[t] == window[t - p] for t in range(p, len(window))
                ):
                    best = max(best, len(window))
    return best


def ref_sequence_kl(logp: list[float], ref: list[float], estimator: str) -> float:
    total = 0.0
    for a, r in zip(logp, ref, strict=True):
        ratio = math.exp(r - a)  # pi_ref / pi at the sampled token
        total += (ratio - 1 - math.log(ratio)) if estimator == "k3" else (a - r)
    return total


def rows_of(tokens: np.ndarray, mask: np.ndarray) -> list[list[int]]:
    return [list(t[m.astype(bool)]) for t, m in zip(tokens, mask, strict=True)]


@st.composite
def batches(draw, vocab: int = 4):
    """Right-padded (tokens, mask): few distinct tokens, so repeats are common."""
    b = draw(st.integers(1, 5))
    width = draw(st.integers(1, 12))
    tokens = np.array(
        draw(st.lists(st.lists(st.integers(0, vocab - 1), min_size=width, max_size=width),
                      min_size=b, max_size=b))
    )  # fmt: skip
    lengths = draw(st.lists(st.integers(0, width), min_size=b, max_size=b))
    mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    return tokens, mask


# ----------------------------------------------------------------------------------------------------------
# fast == plain
# ----------------------------------------------------------------------------------------------------------


@given(batches(), st.integers(1, 5))
def test_repeated_ngram_share_equals_the_definition(batch, n):
    tokens, mask = batch
    want = [ref_rep_n(r, n) for r in rows_of(tokens, mask)]
    np.testing.assert_allclose(fm.repeated_ngram_share(tokens, mask, n=n), want, atol=1e-12)


@given(batches(vocab=3), st.integers(1, 6))
def test_longest_repeat_equals_a_search_over_every_window(batch, max_period):
    tokens, mask = batch
    want = [ref_longest_repeat(r, max_period) for r in rows_of(tokens, mask)]
    assert fm.longest_repeat(tokens, mask, max_period=max_period).tolist() == want


@given(batches())
def test_lengths_and_truncation_equal_the_definition(batch):
    tokens, mask = batch
    rows = rows_of(tokens, mask)
    assert fm.response_lengths(mask).tolist() == [len(r) for r in rows]
    want = [not r or r[-1] != 2 for r in rows]
    assert fm.truncated(tokens, mask, eos_id=2).tolist() == want


@given(st.lists(st.sampled_from(["1", "2", "3", None]), min_size=1, max_size=24), st.integers(1, 4))
def test_answer_metrics_equal_the_definition(answers, n):
    answers = answers[: len(answers) // n * n] or [None] * n
    groups = [answers[i : i + n] for i in range(0, len(answers), n)]
    want = [len(Counter(a for a in g if a is not None)) for g in groups]
    assert fm.distinct_answers(answers, n=n).tolist() == want
    assert fm.parse_rate(answers) == pytest.approx(np.mean([a is not None for a in answers]))


@given(
    batches(),
    st.sampled_from(["k3", "k1"]),
    st.lists(st.floats(-6, 0), min_size=24, max_size=24),
    st.lists(st.floats(-6, 0), min_size=24, max_size=24),
)
def test_sequence_kl_equals_the_definition(batch, estimator, lp, rp):
    _, mask = batch
    b, width = mask.shape
    logp = np.resize(np.array(lp), (b, width))
    ref = np.resize(np.array(rp), (b, width))
    want = [
        ref_sequence_kl(list(a[m == 1]), list(r[m == 1]), estimator)
        for a, r, m in zip(logp, ref, mask, strict=True)
    ]
    got = fm.sequence_kl(logp, ref, mask, estimator=estimator)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if estimator == "k3":
        assert (got >= 0).all()
        np.testing.assert_allclose(fm.kl_k3(logp, ref)[mask == 1].sum(), got.sum(), rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# the estimator against the analytical KL (theory, not self-agreement)
# ----------------------------------------------------------------------------------------------------------


def test_sequence_kl_estimates_the_true_kl_of_a_two_step_policy():
    """Two independent tokens over 3 symbols: the exact KL is twice the one-step KL; the k3 and k1 estimates
    from 200k samples of pi agree with it within a few standard errors."""
    rng = np.random.default_rng(0)
    pi, ref = np.array([0.6, 0.3, 0.1]), np.array([0.3, 0.3, 0.4])
    exact = 2 * float(np.sum(pi * np.log(pi / ref)))
    y = rng.choice(3, size=(200_000, 2), p=pi)
    for estimator in ("k3", "k1"):
        est = fm.sequence_kl(np.log(pi[y]), np.log(ref[y]), estimator=estimator)
        se = est.std() / math.sqrt(len(est))
        assert abs(est.mean() - exact) < 4 * se, (estimator, est.mean(), exact, se)


# ----------------------------------------------------------------------------------------------------------
# edge cases and bad input
# ----------------------------------------------------------------------------------------------------------


def test_documented_values():
    # "988888": unit 8 over 5 tokens; "abcabca": unit abc, partial last copy included
    assert fm.longest_repeat([[9, 8, 8, 8, 8, 8]], [[1] * 6]).tolist() == [5]
    assert fm.longest_repeat([[1, 2, 3, 1, 2, 3, 1]], [[1] * 7]).tolist() == [7]
    # a period longer than max_period is not seen
    assert fm.longest_repeat([[1, 2, 3, 1, 2, 3]], [[1] * 6], max_period=2).tolist() == [0]
    # padding never repeats: an all-pad tail is outside the mask
    assert fm.longest_repeat([[1, 0, 0, 0]], [[1, 0, 0, 0]]).tolist() == [0]
    assert fm.repeated_ngram_share([[1, 1, 1, 1]], [[1, 1, 1, 1]], n=1).tolist() == [0.75]
    assert fm.repeated_ngram_share([[1, 2]], [[1, 1]], n=4).tolist() == [0.0]  # no 4-gram
    assert fm.truncated([[5, 0]], [[0, 0]], eos_id=2).tolist() == [True]  # empty: no end token
    assert fm.distinct_answers([None, None], n=2).tolist() == [0]
    assert fm.sequence_kl([[-1.0]], [[-1.0]]).tolist() == [0.0]
    assert fm.kl_k3([[-800.0]], [[0.0]]).tolist() == [[math.inf]]  # e^800 overflows: +inf, not NaN


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fm.response_lengths([1, 0]), "mask: must be a \\(B, T\\)"),
        (lambda: fm.response_lengths([[0, 1]]), "right-padded"),
        (lambda: fm.response_lengths([[2, 0]]), "0/1"),
        (lambda: fm.repeated_ngram_share([[1.0, 2.0]], [[1, 1]]), "integer"),
        (lambda: fm.repeated_ngram_share([[1, 2]], [[1, 1, 0]]), "differs"),
        (lambda: fm.repeated_ngram_share([[1, 2]], [[1, 1]], n=0), "n: must be an int"),
        (lambda: fm.longest_repeat([[1, 2]], [[1, 1]], max_period=True), "max_period"),
        (lambda: fm.parse_rate([]), "answers: is empty"),
        (lambda: fm.parse_rate("12"), "sequence"),
        (lambda: fm.distinct_answers(["1", "2", "3"], n=2), "groups of n=2"),
        (lambda: fm.distinct_answers([["1"], ["2"]], n=1), "hashable"),
        (lambda: fm.sequence_kl([[-1.0]], [[-1.0, -2.0]]), "one shape"),
        (lambda: fm.sequence_kl([[0.5]], [[-1.0]]), "logp: log-probabilities"),
        (lambda: fm.sequence_kl([[-1.0]], [[float("nan")]]), "ref_logp: log-probabilities"),
        (lambda: fm.sequence_kl([[-1.0]], [[-1.0]], estimator="k2"), "estimator"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_masked_log_probabilities_are_ignored():
    got = fm.sequence_kl([[-1.0, float("nan")]], [[-2.0, 5.0]], [[1, 0]])
    assert got.tolist() == pytest.approx([math.exp(-1)])  # delta = -1: e^-1 - 1 + 1
