"""The answer layer: extraction, canonicalisation, equivalence, the vote and its tie rule."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import stats

from sharpen.answers import (
    canonicalize,
    equivalence_key,
    equivalent,
    extract_answer,
    extract_answer_line,
    extract_answer_phrase,
    extract_boxed,
    majority_vote,
    parse_verdict,
    plurality_winners,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The answer is \boxed{42}.", "42"),
        (r"\boxed{1} then \boxed{\frac{a}{b^{2}}}", r"\frac{a}{b^{2}}"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"nested \boxed{\sqrt{\frac{1}{2}}} end", r"\sqrt{\frac{1}{2}}"),
        (r"\boxed 7$", "7"),
        (r"\fbox{x}", "x"),
        (r"unbalanced \boxed{1 and \boxed{2}", "2"),
        ("nothing here", None),
        (r"\boxed{}", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Let me think.\nAnswer: 17", "17"),
        ("Answer: 3\nwait, no.\nAnswer: $5$", "5"),
        ("**Answer**: 12", "12"),
        ("answer : -4 ", "-4"),
        ("The answer is 5", None),
        ("Answer:", None),
    ],
)
def test_extract_answer_line(text, expected):
    assert extract_answer_line(text) == expected


# was: each of these gave None (or, with two labels on a line, the first one's value)
@pytest.mark.parametrize(
    ("text", "expected", "source"),
    [
        ("6 * 7 = 42. The answer is 42", "42", extract_answer_phrase),
        ("So the answer is $\\frac{1}{2}$.", r"\frac{1}{2}", extract_answer_phrase),
        ("the answer is: **-3**.", "-3", extract_answer_phrase),
        ("Thus the final answer is $7$. I hope it is correct.", "7", extract_answer_phrase),
        ("Final Answer: 56", "56", extract_answer_line),
        ("**Final Answer:** 56", "56", extract_answer_line),
        ("Final Answer: The final answer is $56$", "56", extract_answer_line),
        (
            "Final Answer: The final answer is $56$. I hope it is correct.",
            "56",
            extract_answer_line,
        ),
        (r"so the result is \boxed5", "5", extract_boxed),
        (r"\boxed12.", "12.", extract_boxed),
        ("所以答案是 5", "5", extract_answer_phrase),
        ("答案是5。", "5", extract_answer_phrase),
        ("答案：5", "5", extract_answer_line),
        ("答案: 5", "5", extract_answer_line),
        ("Answer: 3. Wait, no. Answer: 5", "5", extract_answer_line),
        ("Answer: 3\nHmm, 3 is wrong. Answer: 5", "5", extract_answer_line),
    ],
)
def test_extract_answer_formats(text, expected, source):
    assert extract_answer(text) == expected
    assert source(text) == expected  # the source that gives it


def test_extract_answer_precedence_box_then_label_then_phrase():
    text = "The answer is 3.\nAnswer: 4\nso \\boxed{5}"
    assert extract_answer(text) == "5"
    assert extract_answer(text.replace("\\boxed{5}", "")) == "4"
    assert extract_answer("The answer is 3.\nno box, no label") == "3"
    # precedence goes by source, not by position: a box anywhere beats a later label
    assert extract_answer("\\boxed{5}\nAnswer: 4. The answer is 3.") == "5"
    assert extract_answer("The answer is 3.", style="answer_line") is None
    assert extract_answer("The answer is 3.", style="boxed") is None


def test_extract_answer_prefers_boxed_then_answer_line():
    assert extract_answer("Answer: 3\n\\boxed{4}") == "4"
    assert extract_answer("Answer: 3") == "3"
    assert extract_answer("Answer: 3\n\\boxed{4}", style="answer_line") == "3"
    with pytest.raises(ValueError, match="style"):
        extract_answer("x", style="last")
    with pytest.raises(ValueError, match="text"):
        extract_answer(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "canon"),
    [
        (" 42 ", "42"),
        ("$42$.", "42"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\left(1, 2\right)", "(1,2)"),
        (r"\text{(B)}", "(B)"),
        ("1,234,567", "1234567"),
        ("2.500", "2.5"),
        ("3.0", "3"),
        ("+7", "7"),
        ("90^\\circ", "90"),
        ("$ $", None),
        (None, None),
    ],
)
def test_canonicalize(raw, canon):
    assert canonicalize(raw) == canon


@pytest.mark.parametrize(
    ("answers", "key"),
    [
        (
            [
                r"\frac{1}{2}",
                "1/2",
                "0.5",
                r"\dfrac12",
                r"\tfrac{1}{2}",
                "2/4",
                ".5",
                r"\frac{0.5}{1}",
            ],
            "1/2",
        ),
        (["3", "3.0", "+3", "003", "6/2", r"\frac{6}{2}", "3.", "$3$."], "3"),
        ([r"-\frac{3}{4}", r"\frac{-3}{4}", "-0.75", "-3/4"], "-3/4"),
        (["0", "-0", "0.000", "0/5"], "0"),
        (["1,000", "1000", "1000.00"], "1000"),
    ],
)
def test_equivalence_key_merges_spellings_of_one_rational(answers, key):
    assert {equivalence_key(a) for a in answers} == {key}


def test_equivalence_key_keeps_everything_else_as_its_canonical_string():
    for a in (
        r"\sqrt{2}",
        "x+1",
        r"50\%",
        "1/0",
        r"\frac{1}{0}",
        "(1,2)",
        "1e3",
        r"\frac{a}{2}",
        "1/2/3",
    ):
        assert equivalence_key(a) == canonicalize(a)
    assert equivalence_key(None) is None and equivalence_key("$ $") is None
    assert equivalence_key("1" * 201) == "1" * 201 and equivalence_key("0" + "1" * 199) == "1" * 199
    assert (
        equivalence_key("0" + "1" * 200) == "0" + "1" * 200
    )  # over MAX_RATIONAL_DIGITS: its string
    with pytest.raises(ValueError, match="^answer: expected a str"):
        equivalence_key(3)  # type: ignore[arg-type]


def test_equivalent_exact_and_symbolic():
    assert equivalent("1,000", "1000")
    assert not equivalent("1/2", "0.5")
    assert equivalent("1/2", "0.5", math_verify=True)
    assert not equivalent("1/2", "0.6", math_verify=True)
    assert not equivalent(None, "1") and not equivalent("1", None)
    assert equivalent(3, 3) and not equivalent(3, 4)


def test_math_verify_off_the_main_thread():
    out = []
    t = threading.Thread(
        target=lambda: out.append(equivalent(r"\frac{1}{2}", "0.5", math_verify=True))
    )
    t.start()
    t.join(timeout=60)
    assert out == [True]


def test_majority_vote_ttrl_rule():
    v = majority_vote(["2", None, "3", "3", "2", None])
    # tie between "2" and "3" -> first seen; unparseable stay in the denominator
    assert (v.answer, v.count, v.n, v.n_parsed) == ("2", 2, 6, 4)
    assert v.ratio == pytest.approx(2 / 6)
    nothing = majority_vote([None, None])
    assert nothing.answer is None and nothing.ratio == 0.0
    assert majority_vote(["1/2", "\\frac{1}{2}", "\\dfrac{1}{2}"]).count == 2
    with pytest.raises(ValueError, match="answers: empty"):
        majority_vote([])


def test_plurality_winners_rows_and_ties():
    rng = np.random.default_rng(0)
    counts = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 0]])
    wins = np.stack([plurality_winners(counts, rng) for _ in range(4000)])
    assert (wins[:, 0] == 0).all()
    assert (wins[:, 1] == -1).all()
    assert set(np.unique(wins[:, 2])) == {0, 1}
    # ties split uniformly: a binomial test at level 1e-3
    k = int((wins[:, 2] == 0).sum())
    assert stats.binomtest(k, 4000, 0.5).pvalue > 1e-3
    with pytest.raises(ValueError, match="counts"):
        plurality_winners(np.array([1, 2]), rng)
    with pytest.raises(ValueError, match="non-negative"):
        plurality_winners(np.array([[1, -2]]), rng)


def test_first_seen_tie_rule_equals_uniform_in_law():
    """For i.i.d. samples the first-seen rule picks each tied answer equally often."""
    rng = np.random.default_rng(1)
    wins = {"a": 0, "b": 0}
    n_ties = 0
    for _ in range(6000):
        sample = list(rng.choice(["a", "b"], size=4))
        if sample.count("a") == 2:
            n_ties += 1
            wins[majority_vote(sample).answer] += 1
    assert stats.binomtest(wins["a"], n_ties, 0.5).pvalue > 1e-3


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        (r"\boxed{True}", 1),
        (r"\boxed{false}", 0),
        (r"\boxed{TRUE} hmm \boxed{False}", 0),
        ("it is true", 1),
        ("true or false?", 0),
        ("no idea", 0),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict
