"""The equivalence-aware majority vote: its classes against a plain reference, its tie and abstain rules, the
Math-Verify merge and its cost bound."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sharpen.answers as answers_module
from sharpen.answers import (
    MAX_VERIFY_CLASSES,
    canonicalize,
    equivalence_key,
    majority_vote,
)

HALVES = [r"\frac{1}{2}", "1/2", "0.5", r"\dfrac12"]


def plain_vote(answers, same):
    """The vote written plainly: classes are the connected components of ``same`` over the parsed answers'
    spellings (checked on every pair); the largest class wins, ties to the one whose first answer comes
    first; its representative is its most frequent spelling, ties to the first seen.

    Returns ``(answer, count, n_parsed, classes)`` with classes numbered in order of first appearance."""
    spellings = [canonicalize(a) if isinstance(a, str) else a for a in answers]
    parsed = [i for i, s in enumerate(spellings) if s is not None]
    component = {i: i for i in parsed}
    for i, j in itertools.combinations(parsed, 2):
        if same(spellings[i], spellings[j]):
            old, new = component[j], component[i]
            for k in parsed:
                if component[k] == old:
                    component[k] = new
    first = {}
    for i in parsed:
        first.setdefault(component[i], len(first))
    classes = tuple(first[component[i]] if i in component else None for i in range(len(answers)))
    if not parsed:
        return None, 0, 0, classes
    sizes = {c: classes.count(c) for c in set(first.values())}
    winner = min(sizes, key=lambda c: (-sizes[c], c))
    members = [spellings[i] for i in parsed if classes[i] == winner]
    answer = min(members, key=lambda s: (-members.count(s), members.index(s)))
    return answer, sizes[winner], len(parsed), classes


def as_tuple(vote):
    return vote.answer, vote.count, vote.n_parsed, vote.classes


SPELLINGS = st.sampled_from(
    HALVES + ["3", "3.0", "6/2", r"\frac{6}{2}", "-3", r"\sqrt{2}", "x", " x ", "$ $", "", "1/0"]
)
GROUPS = st.lists(st.none() | SPELLINGS, min_size=1, max_size=9)


@given(GROUPS)
def test_the_canonical_vote_equals_the_plain_reference(group):
    vote = majority_vote(group, equivalence="canonical")
    assert as_tuple(vote) == plain_vote(
        group, lambda a, b: equivalence_key(a) == equivalence_key(b)
    )
    assert vote.n == len(group)


@given(GROUPS)
def test_the_default_vote_is_the_presentation_vote_and_unchanged(group):
    vote = majority_vote(group)
    assert as_tuple(vote) == plain_vote(group, lambda a, b: a == b)
    assert as_tuple(vote) == as_tuple(majority_vote(group, equivalence="presentation"))
    assert as_tuple(majority_vote(group, canonical=False)) == as_tuple(
        majority_vote(group, equivalence="exact")
    )


def test_equivalent_spellings_no_longer_split_the_vote():
    # was: four answers of one each, so "3" won with 2 of 6
    group = HALVES + ["3", "3"]
    assert (majority_vote(group).answer, majority_vote(group).count) == ("3", 2)
    vote = majority_vote(group, equivalence="canonical")
    assert (vote.answer, vote.count, vote.ratio) == (r"\frac{1}{2}", 4, 4 / 6)
    assert vote.classes == (0, 0, 0, 0, 1, 1)
    assert vote.agrees == (True, True, True, True, False, False)


def test_the_representative_is_the_most_frequent_spelling_ties_to_the_first():
    assert majority_vote(["1/2", "0.5", "0.5", "3"], equivalence="canonical").answer == "0.5"
    assert majority_vote(["1/2", "0.5", "3"], equivalence="canonical").answer == "1/2"
    assert majority_vote([" 0.50 ", "$0.5$", "1/2"], equivalence="canonical").answer == "0.5"


def test_ties_go_to_the_class_seen_first_and_unparseable_answers_abstain():
    vote = majority_vote(["3", "1/2", None, "3.0", "0.5", "$ $"], equivalence="canonical")
    assert (vote.answer, vote.count, vote.n, vote.n_parsed) == ("3", 2, 6, 4)
    assert vote.classes == (0, 1, None, 0, 1, None)
    assert vote.agrees == (True, False, False, True, False, False)
    nothing = majority_vote([None, "", "$ $"], equivalence="canonical")
    assert (nothing.answer, nothing.count, nothing.ratio) == (None, 0, 0.0)
    assert nothing.classes == (None, None, None) and nothing.agrees == (False, False, False)
    # non-strings are counted as they are at every level: 3 and "3" differ
    assert majority_vote([3, "3", "3.0"], equivalence="canonical").classes == (0, 1, 1)


def test_the_options_are_checked():
    with pytest.raises(ValueError, match="^equivalence: must be None or one of"):
        majority_vote(["1"], equivalence="sympy")
    with pytest.raises(ValueError, match="^canonical, equivalence: canonical=False"):
        majority_vote(["1"], canonical=False, equivalence="canonical")
    assert majority_vote(["1"], canonical=False, equivalence="exact").count == 1
    for bad in (0, -1, 2.0, True, "8"):
        with pytest.raises(ValueError, match="^max_classes: must be an int >= 1"):
            majority_vote(["1"], max_classes=bad)
    with pytest.raises(ValueError, match="^timeout:"):
        majority_vote(["1"], timeout=0)


# --- math_verify: the merge and its cost, with a stand-in for Math-Verify -------------------------------------


@pytest.fixture
def fake_math_verify(monkeypatch):
    """Math-Verify replaced by a relation on strings; records every check."""
    calls = []

    def install(relation):
        def check(gold, pred, timeout):
            calls.append((gold, pred))
            return relation(gold, pred)

        monkeypatch.setattr(answers_module, "_math_verify_equal", check)
        return calls

    return install


def same_letter(a, b):
    return a[0] == b[0]  # "a1" ~ "a2": a relation the canonical keys do not see


LETTERED = st.sampled_from(["a1", "a2", "a3", "b1", "b2", "c1", "2", "4/2"])


@given(st.lists(st.none() | LETTERED, min_size=1, max_size=9))
def test_the_math_verify_classes_are_the_components_of_the_accepted_pairs(group):
    calls = []

    def check(gold, pred, timeout):
        calls.append((gold, pred))
        return same_letter(gold, pred)

    saved = (
        answers_module._math_verify_equal
    )  # not monkeypatch: a function-scoped fixture under @given
    answers_module._math_verify_equal = check
    try:
        vote = majority_vote(group, equivalence="math_verify", max_classes=100)
    finally:
        answers_module._math_verify_equal = saved

    def same(a, b):
        return equivalence_key(a) == equivalence_key(b) or same_letter(a, b)

    assert as_tuple(vote) == plain_vote(group, same)
    k = len({equivalence_key(a) for a in group if a is not None})
    assert len(calls) <= k * (k - 1) // 2
    assert ("2", "4/2") not in calls  # one class already; two rationals are never checked


def test_the_math_verify_cost_bound_and_the_cap(fake_math_verify):
    calls = fake_math_verify(lambda g, p: False)
    group = [f"x{i}" for i in range(20)] + ["1", "2", "3/4"]
    majority_vote(group, equivalence="math_verify")
    k = MAX_VERIFY_CLASSES
    assert len(calls) == k * (k - 1) // 2  # nothing merges: every pair of the k largest is checked
    assert {g for g, _ in calls} | {p for _, p in calls} == {f"x{i}" for i in range(k)}
    calls.clear()
    majority_vote(["1", "2", "0.5", "1/2", "7"], equivalence="math_verify")
    assert calls == []  # only rationals: exact already
    majority_vote(["y", "y", "z"], equivalence="math_verify", max_classes=1)
    assert calls == []


def test_the_larger_class_is_gold_and_classes_beyond_the_cap_are_not_merged(fake_math_verify):
    calls = fake_math_verify(same_letter)
    vote = majority_vote(
        ["b1", "a1", "a1", "a2", "c1", "c2"], equivalence="math_verify", max_classes=3
    )
    # ranked: a1 (2), b1, a2 (1 each, first seen first); c1 and c2 are beyond the cap of 3
    assert calls[0] == ("a1", "b1") and ("a1", "a2") in calls
    assert all("c1" not in pair and "c2" not in pair for pair in calls)
    assert (vote.answer, vote.count) == ("a1", 3)
    assert vote.classes == (0, 1, 1, 1, 2, 3)


def test_math_verify_merges_symbolically_equal_answers():
    group = ["1", r"\sqrt{2}", "1", "2^{1/2}", r"\frac{\sqrt{8}}{2}"]
    assert majority_vote(group, equivalence="canonical").answer == "1"
    vote = majority_vote(group, equivalence="math_verify")
    assert (vote.answer, vote.count) == (r"\sqrt{2}", 3)
    assert vote.agrees == (False, True, False, True, True)
