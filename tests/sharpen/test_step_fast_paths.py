"""The per-step fast paths of answers, rewards and TTRL metrics equal their slow references exactly.

Each fast path skips work whose result is known (a plain integer string is canonical; a distinct string is
canonicalised once; a vote at the exact level needs none of majority_vote's checks; all items hash in one
call); each test runs the slow computation beside it on varied inputs -- ties, unparseable and empty answers,
one group, ints, bad inputs -- and asserts equal results (``==`` on floats) and equal errors.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from sharpen import metrics as M
from sharpen.answers import (
    MAX_ANSWER_CHARS,
    _canonicalize_text,
    _exact_plurality,
    canonicalize,
    majority_vote,
)
from sharpen.rewards import MAJORITY_VOTING, VOTE_SHARE, Rollouts, _canonical_answers, score

# answers as a policy writes them: integers, spellings of one number, unparseable and empty ones
POOL = ["12", "012", "12 ", " $12$.", "+12", "12.0", "1,000", "1000", "-0", "0", "00", "", "   ", "$", "7",
        "\\text{7}", "\\dfrac{1}{2}", "\\frac{1}{2}", "١٢", "²", "x", None, None]  # fmt: skip


class Str(str):
    """A str subclass: answers of this type take the general path."""


def batches(seed: int, n_groups: int, n: int, pool=POOL):
    rng = random.Random(seed)
    k = rng.randint(1, len(pool))  # few distinct answers: ties and repeats are common
    sub = rng.sample(pool, k)
    return [rng.choice(sub) for _ in range(n_groups * n)]


# ------------------------------------------------------------------------------------------------ canonicalize


def reference_canonicalize(answer):
    """canonicalize with every rule applied to every string (no integer shortcut)."""
    if answer is None:
        return None
    return None if len(answer) > MAX_ANSWER_CHARS else _canonicalize_text(answer)


@pytest.mark.parametrize(
    "text",
    [*[p for p in POOL if p is not None], "0" * MAX_ANSWER_CHARS, "9" * (MAX_ANSWER_CHARS + 1),
     "123456789012345678901234567890", "1 2", "12\n", "\t3", "३", Str("12"), Str(" 12 ")],
)  # fmt: skip
def test_canonicalize_equals_the_full_rules(text):
    got, want = canonicalize(text), reference_canonicalize(text)
    assert got == want and type(got) is type(want)


def test_canonicalize_of_digit_strings_equals_the_full_rules():
    rng = random.Random(0)
    for _ in range(2000):
        s = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12)))
        assert canonicalize(s) == reference_canonicalize(s)


# --------------------------------------------------------------------------------------------- the exact vote


@pytest.mark.parametrize("seed", range(40))
def test_exact_plurality_equals_majority_vote(seed):
    rng = random.Random(seed)
    pool = [["a", "b", "c", None], [1, 2, True, 1.0, None], ["x", None]][seed % 3]
    group = [rng.choice(pool) for _ in range(rng.randint(1, 9))]
    vote = majority_vote(group, equivalence="exact")
    answer, count = _exact_plurality(group)
    assert (answer, count) == (vote.answer, vote.count)
    assert type(answer) is type(vote.answer)


def test_exact_plurality_ties_and_abstentions():
    assert (
        _exact_plurality(["b", "a", "a", "b"])
        == ("b", 2)
        == (lambda v: (v.answer, v.count))(majority_vote(["b", "a", "a", "b"], equivalence="exact"))
    )
    assert _exact_plurality([None, None]) == (None, 0)
    assert _exact_plurality(["x"]) == ("x", 1)


# ------------------------------------------------------------------------------------------ answer-level rewards


def reference_answer_rewards(spec, answers, groups):
    """The answer-level reward, slowly: every answer canonicalised, one majority_vote per group."""
    answers = [canonicalize(a) if isinstance(a, str) else a for a in answers]
    index: dict = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    out = np.zeros(len(answers))
    for idx in index.values():
        group = [answers[i] for i in idx]
        winner = majority_vote(group, canonical=False).answer
        for i, a in zip(idx, group, strict=True):
            if a is None:
                continue
            if spec is MAJORITY_VOTING:
                out[i] = 1.0 if a == winner else 0.0
            else:
                out[i] = math.exp(math.log(sum(b == a for b in group) / len(group)))
    return out


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("spec", [MAJORITY_VOTING, VOTE_SHARE], ids=["majority", "vote_share"])
def test_answer_rewards_equal_the_slow_reference(seed, spec):
    n_groups, n = [(1, 8), (4, 8), (3, 5), (16, 8)][seed % 4]
    answers = batches(seed, n_groups, n)
    if seed % 5 == 0:
        answers = [Str(a) if isinstance(a, str) and i % 2 else a for i, a in enumerate(answers)]
    groups = [i // n for i in range(len(answers))]
    got = score(spec, Rollouts(answers=answers, groups=groups))
    want = reference_answer_rewards(spec, answers, groups)
    assert got.tolist() == want.tolist()
    assert _canonical_answers(answers) == [
        canonicalize(a) if isinstance(a, str) else a for a in answers
    ]


def test_canonical_answers_keeps_non_strings_and_subclasses():
    answers = ["5", 5, None, Str(" 5 "), "5", (1, 2)]
    got = _canonical_answers(answers)
    assert got == ["5", 5, None, "5", "5", (1, 2)]
    assert [type(a) for a in got] == [str, int, type(None), str, str, tuple]


# ------------------------------------------------------------------------------------------------ TTRL metrics


def reference_ttrl_metrics(
    answers,
    labels,
    groups,
    proxy_rewards=None,
    correct=None,
    *,
    equivalent=None,
    reward_threshold=None,
):
    """TTRL's per-prompt metrics, slowly: each check per item, one majority_vote per group."""
    same = equivalent or M.exact_match
    for i, lab in enumerate(labels):
        M._check_label(lab, f"labels[{i}]")
    index: dict = {}
    for i, g in enumerate(groups if groups is not None else [0] * len(answers)):
        index.setdefault(g, []).append(i)
    n = len(next(iter(index.values())))
    corr = [1.0 if same(lab, a) else 0.0 for lab, a in zip(labels, answers, strict=True)]
    if correct is not None:
        corr = [float(c) for c in correct]
    rows: dict[str, list[float]] = {"label_accuracy": [], "majority_ratio": [],
                                    "ground_truth_ratio": [], f"pass@{n}": []}  # fmt: skip
    if proxy_rewards is not None:
        rows["majority_voting_reward"], rows["reward_accuracy"] = [], []
    for idx in index.values():
        vote = majority_vote([answers[i] for i in idx])
        label = labels[idx[0]]
        parsed = vote.answer is not None
        rows["label_accuracy"].append(1.0 if parsed and same(label, vote.answer) else 0.0)
        rows["majority_ratio"].append(vote.count / n if parsed else 0.0)
        rows["ground_truth_ratio"].append(float(np.mean([corr[i] for i in idx])))
        rows[f"pass@{n}"].append(max(corr[i] for i in idx))
        if proxy_rewards is not None:
            rows["majority_voting_reward"].append(float(np.mean([proxy_rewards[i] for i in idx])))
            thr = reward_threshold
            said = [
                float(proxy_rewards[i] if thr is None else proxy_rewards[i] >= thr) for i in idx
            ]
            agree = [float(p == corr[i]) for p, i in zip(said, idx, strict=True)]
            rows["reward_accuracy"].append(float(np.mean(agree)))
    return {k: float(np.asarray(v, dtype=np.float64).mean()) for k, v in rows.items()}


@pytest.mark.parametrize("seed", range(40))
def test_ttrl_metrics_equal_the_slow_reference(seed):
    rng = random.Random(seed)
    n_groups, n = [(1, 8), (16, 8), (3, 4), (5, 1)][seed % 4]
    answers = batches(seed, n_groups, n)
    golds = [rng.choice(["12", "7", "1000", "0", "\\frac{1}{2}", 12]) for _ in range(n_groups)]
    labels = [golds[i // n] for i in range(len(answers))]
    groups = (
        None if n_groups == 1 and seed % 8 == 0 else [f"q{i // n}" for i in range(len(answers))]
    )
    kw = {}
    if seed % 2:
        kw["proxy_rewards"] = [float(rng.random() < 0.5) for _ in answers]
    elif seed % 4 == 2:  # a continuous proxy, graded by a threshold
        kw["proxy_rewards"] = [rng.choice([0.1, 0.7, 1 / 3, 1e-300, 2.5, 1.0]) for _ in answers]
        kw["reward_threshold"] = 0.5
    if seed % 3 == 0:
        kw["correct"] = [float(rng.random() < 0.5) for _ in answers]
    if seed % 4 == 1:  # an equivalence of the caller's: called on the vote's canonical spelling
        kw["equivalent"] = lambda gold, pred: pred is not None and str(gold) in str(pred)
    got = M.ttrl_metrics(answers, labels, groups, **kw)
    assert got == reference_ttrl_metrics(answers, labels, groups, **kw)


@pytest.mark.parametrize(
    ("answers", "labels", "groups", "message"),
    [
        ([["1"], float("nan")], ["1", "1"], None, r"answers\[0\]: is an unhashable list"),
        ([float("nan"), ["1"]], ["1", "1"], None, r"answers\[0\]: is NaN"),
        (["1", {"a": 1}], ["1", "1"], None, r"answers\[1\]: is an unhashable dict"),
        (["1", "2"], ["1", None], None, r"labels\[1\]: is None"),
        (["1", "2"], [float("nan"), "1"], None, r"labels\[0\]: is NaN"),
        (["1", "2"], ["1", ["1"]], None, r"labels\[1\]: is an unhashable list"),
        (["1", "2"], ["1", "1"], [0, None], r"groups\[1\]: is None"),
        (["1", "2"], ["1", "1"], [[0], None], r"groups\[0\]: is an unhashable list"),
        (["1", "2"], ["1", "1"], [None, [0]], r"groups\[0\]: is None"),
        (["1", "2", "3", "4"], ["1", "1", "2", "1"], [0, 0, 1, 1], "labels: must be constant"),
    ],
)
def test_ttrl_metrics_errors_name_the_first_bad_item(answers, labels, groups, message):
    with pytest.raises(ValueError, match=message):
        M.ttrl_metrics(answers, labels, groups)
