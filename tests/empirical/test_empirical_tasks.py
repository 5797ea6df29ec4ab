"""Tasks: the safe evaluator, Countdown, answer parsing and the local-file loaders."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from empirical.tasks import (
    arithmetic_task,
    countdown_correct,
    countdown_problem,
    countdown_task,
    load_dapo,
    load_math_jsonl,
    math_task,
    parse_integer,
    pretraining_corpus,
    safe_eval,
)

FIXTURES = Path(__file__).parent / "fixtures"


# ---------------------------------------------------------------------------------------------- safe_eval
@st.composite
def expressions(draw, depth=3):
    """(text, exact value) of random integer expressions built from + - * and parentheses."""
    if depth == 0 or draw(st.booleans()):
        n = draw(st.integers(0, 50))
        return str(n), Fraction(n)
    (lt, lv), (rt, rv) = draw(expressions(depth=depth - 1)), draw(expressions(depth=depth - 1))
    op = draw(st.sampled_from("+-*"))
    value = {"+": lv + rv, "-": lv - rv, "*": lv * rv}[op]
    return f"({lt}{op}{rt})", value


@given(expressions())
def test_safe_eval_matches_exact_arithmetic(expr):
    text, value = expr
    assert safe_eval(text) == value


def test_safe_eval_divides_exactly():
    assert safe_eval("7/2") == Fraction(7, 2)
    assert safe_eval("-(3+5)*2/4") == -4
    assert safe_eval("2**3") == 8


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",  # a call and a name
        "(1).__class__",  # attribute access
        "x + 1",  # a name
        "2**99999",  # huge exponent
        "9**8**8",  # nested exponent, huge
        "10**9 * 10**9",  # intermediate value out of bounds
        "1/0",
        "1.5 + 1",  # float literal
        "[1, 2][0]",  # subscript
        "'a' * 3",  # string
        "1 if 1 else 2",
        "lambda: 1",
        "1 +",  # syntax error
        "1" * 300,  # too long
    ],
)
def test_safe_eval_rejects(text):
    with pytest.raises(ValueError):
        safe_eval(text)


def test_safe_eval_rejects_non_strings():
    with pytest.raises(ValueError, match="expression"):
        safe_eval(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- Countdown
def test_countdown_rules():
    assert countdown_correct("(3+5)*2", [3, 5, 2], 16)
    assert countdown_correct("2*(5+3)", [2, 3, 5], 16)
    assert not countdown_correct("(3+5)*2", [3, 5, 2], 15)  # wrong value
    assert not countdown_correct("3+5+2+2", [3, 5, 2], 12)  # a number used twice
    assert not countdown_correct("8*2", [3, 5, 2], 16)  # numbers not given
    assert not countdown_correct("(3+5)*2=16", [3, 5, 2], 16)  # an equation, not an expression
    assert not countdown_correct("__import__('os')", [3], 3)
    assert not countdown_correct(None, [3], 3)


@given(st.integers(0, 2**32 - 1), st.integers(3, 4))
def test_generated_countdown_problems_are_solvable(seed, k):
    numbers, target, solution = countdown_problem(np.random.default_rng(seed), n_numbers=k)
    assert len(numbers) == k
    assert countdown_correct(solution, numbers, target)


def test_countdown_task_grades_with_the_evaluator():
    task = countdown_task(n_train=5, n_heldout=2, seed=1)
    q = task.train[0]
    assert task.correct(q, q.label)
    assert task.correct(q, " " + q.label + " ")
    assert not task.correct(q, "1+")
    chat = countdown_task(n_train=2, n_heldout=0, style="chat")
    c = chat.train[0]
    assert chat.correct(c, f"so \\boxed{{{c.label}}}")
    assert not chat.correct(c, c.label)  # chat style needs the box
    with pytest.raises(ValueError, match="style"):
        countdown_task(style="latex")


# ---------------------------------------------------------------------------------------------- arithmetic
def test_arithmetic_splits_are_disjoint_and_graded():
    task = arithmetic_task(n_train=300, n_heldout=100, seed=3)
    assert not {q.qid for q in task.train} & {q.qid for q in task.heldout}
    q = task.train[0]
    a, b = map(int, q.prompt.rstrip("=").split("+"))
    assert task.correct(q, str(a + b)) and task.correct(q, f"0{a + b}")
    assert not task.correct(q, str(a + b + 1))
    assert (
        parse_integer("12a") is None and parse_integer("") is None and parse_integer(" 7 ") == "7"
    )
    with pytest.raises(ValueError, match="n_train"):
        arithmetic_task(n_train=10_001, n_heldout=0)


def test_pretraining_corpus_is_correct_by_construction():
    prompts, completions = pretraining_corpus("countdown", 60, np.random.default_rng(0))
    kinds = {p[0] for p in prompts}
    assert {"n", "v"} <= kinds
    for p, c in zip(prompts, completions, strict=True):
        if p[0].isdigit():
            a, b = map(int, p.rstrip("=").split("+"))
            assert int(c) == a + b
        elif p[0] == "n":
            nums, target = p[1:].rstrip(":").split(" t")
            assert countdown_correct(c, [int(x) for x in nums.split()], int(target))
        else:
            assert c in ("true", "false")


# ---------------------------------------------------------------------------------------------- math data
@pytest.mark.parametrize(
    "response, answer",
    [
        ("Let me think.\n2+2=4\nAnswer: 4", "4"),
        ("The sum is 55.\nAnswer: $55$", "55"),
        ("... so the result is \\boxed{\\dfrac{1}{2}}.", "\\frac{1}{2}"),
        ("first \\boxed{3} then \\boxed{12}", "12"),
        ("Answer: 1,000", "1000"),
        ("I do not know.", None),
    ],
)
def test_math_answer_extraction(response, answer):
    task = math_task(load_math_jsonl(FIXTURES / "math500_tiny.jsonl"))
    assert task.parse(response) == answer


def test_dapo_loader_deduplicates_and_grades():
    questions = load_dapo(FIXTURES / "dapo_tiny.parquet")
    assert len(questions) == 5  # ten rows, each duplicated
    assert all(q.chat and "Answer:" in q.prompt for q in questions)
    task = math_task(questions)
    q = questions[0]
    assert task.correct(q, f"work\nAnswer: {q.label}")
    assert not task.correct(q, "work\nAnswer: -1")
    assert len(load_dapo(FIXTURES / "dapo_tiny.parquet", limit=2)) == 2


def test_jsonl_loader_accepts_math500_and_aime_keys():
    math500 = load_math_jsonl(FIXTURES / "math500_tiny.jsonl")
    aime = load_math_jsonl(FIXTURES / "aime_tiny.jsonl")
    assert [q.label for q in aime] == [q.label for q in math500[:3]]
    assert aime[0].qid == "F-0"


def test_loaders_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no such DAPO parquet"):
        load_dapo(tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match="schema"):
        load_dapo(FIXTURES / "wrong_schema.parquet")
    with pytest.raises(ValueError, match="no such JSONL"):
        load_math_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_text": "1+1", "solution": "2"}\n')
    with pytest.raises(ValueError, match="'problem'"):
        load_math_jsonl(bad)
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match="not a JSON object"):
        load_math_jsonl(bad)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "expression",
    [
        "3+5+2#any text",  # a comment Python's parser drops
        "3+5+2 # 16",
        "0x3+5+2",  # other bases
        "0b11+5+2",
        "0o3+5+2",
        "3+5+2_0",  # digit separators
        "3+\n5+2",  # a line break inside
        "3+5+\u0662",  # a non-ASCII digit
        "3+5+2.0",
        "3e0+5+2",
        "3+5+2;",
    ],
)
def test_countdown_accepts_only_decimal_integer_arithmetic(expression):
    assert not countdown_correct(expression, [3, 5, 2], 10)
    with pytest.raises(ValueError, match="expression"):
        safe_eval(expression)


def test_countdown_still_accepts_spaces_and_powers():
    assert countdown_correct(" 3 + 5 + 2\n", [3, 5, 2], 10)  # surrounding whitespace is stripped
    assert countdown_correct("(3+5)*2**1", [3, 5, 2, 1], 16)
    assert countdown_correct("-(3-5)*8/2", [3, 5, 8, 2], 8)


@pytest.mark.parametrize("expression", [3, 10.0, b"3+5+2", ["3+5+2"], object()])
def test_countdown_grades_non_strings_false(expression):
    assert countdown_correct(expression, [3, 5, 2], 10) is False  # type: ignore[arg-type]


def _dapo_rows(n=3):
    return [
        {
            "data_source": "math_dapo",
            "prompt": [{"role": "user", "content": f"question {i}"}],
            "ability": "MATH",
            "reward_model": {"style": "rule", "ground_truth": str(i)},
            "extra_info": {"index": str(i)},
        }
        for i in range(n)
    ]


def _write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            ("extra_info", pa.struct([("index", pa.string())])),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("reward_model.ground_truth", lambda row: row["reward_model"].update(ground_truth=None)),
        ("reward_model", lambda row: row.update(reward_model=None)),
        ("prompt[-1].content", lambda row: row["prompt"][-1].update(content=None)),
        ("prompt", lambda row: row.update(prompt=None)),
    ],
)
def test_dapo_loader_rejects_nulls(tmp_path, field, edit):
    rows = _dapo_rows()
    edit(rows[1])
    path = _write_parquet(tmp_path / "nulls.parquet", rows)
    with pytest.raises(ValueError) as err:
        load_dapo(path)
    assert str(err.value) == f"path: row 1 of {path}: field {field!r} is null"
    assert len(load_dapo(_write_parquet(tmp_path / "fine.parquet", _dapo_rows()))) == 3


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"problem": "1+1?", "answer": null}', "answer"),
        ('{"problem": "1+1?", "answer": NaN}', "answer"),
        ('{"Problem": null, "Answer": 2}', "problem"),
        ('{"problem": null, "question": "1+1?", "answer": "2"}', "problem"),
        ('{"question": null, "answer": "2"}', "question"),
    ],
)
def test_jsonl_loader_rejects_nulls(tmp_path, line, field):
    path = tmp_path / "nulls.jsonl"
    path.write_text('{"problem": "2+2?", "answer": 4}\n\n' + line + "\n")
    with pytest.raises(ValueError) as err:
        load_math_jsonl(path)
    assert str(err.value) == f"path: line 3 of {path}: field {field!r} is null"


def test_jsonl_loader_keeps_falsy_answers(tmp_path):
    path = tmp_path / "zero.jsonl"
    path.write_text('{"problem": "1-1?", "answer": 0}\n{"problem": "2-2?", "answer": "0"}\n')
    assert [q.label for q in load_math_jsonl(path)] == ["0", "0"]
