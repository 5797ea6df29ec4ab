r"""Tasks: questions, answer parsing and ground truth for the GRPO runs.

A :class:`Task` is a list of :class:`Question` split into ``train`` / ``heldout`` plus two functions:
``parse(response) -> answer | None`` (the string the majority vote counts; ``None`` = unparseable) and
``check(question, answer) -> bool`` (ground truth of a parsed answer, for measurement unless training on it is
asked for); ``correct(question, response)`` combines the two.

* ``arith`` -- synthetic ``a+b=`` sums, embedded; the response is the digits of the sum.
* ``reason`` -- multi-digit ``q: a+b=`` with a carry scratchpad, free length (:mod:`empirical.reasoning`).
* ``countdown`` -- generated locally: reach a target with each given number once; checked by :func:`safe_eval`,
  a character and AST whitelist over decimal integers, computed in exact fractions with bounded numbers (never
  ``eval``).
* ``dapo`` -- DAPO-Math-17k parquet (veRL schema, deduplicated by prompt, ``Answer:`` last line).
* ``math-jsonl`` -- MATH500 / AIME24 / AMC23 style JSONL (``problem``/``question`` and ``answer`` keys).

:func:`build_task` makes the task a :class:`~empirical.config.TrainConfig` names; :class:`DataCursor` walks its
training questions epoch by epoch.

Example
-------
>>> import numpy as np
>>> task = arithmetic_task(n_train=4, n_heldout=2, seed=0)
>>> q = task.train[0]
>>> task.correct(q, q.label), task.parse("x1")
(True, None)
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sharpen.answers import canonicalize, equivalent, extract_answer, extract_boxed

if TYPE_CHECKING:
    from empirical.config import TrainConfig

DAPO_INSTRUCTION = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{problem}\n\n"
    'Remember to put your answer on its own line after "Answer:".'
)


@dataclass(frozen=True)
class Question:
    """One prompt with its ground truth.

    ``prompt`` is the raw text for a model without a chat template, or the user message when ``chat`` is True
    (the rollout backend then applies the tokenizer's chat template). ``meta`` carries task data such as
    Countdown's numbers and target.
    """

    qid: str
    prompt: str
    label: str | None
    chat: bool = False
    meta: tuple[tuple[str, object], ...] = ()

    def get(self, key: str, default: object = None) -> object:
        """Value of ``key`` in ``meta``."""
        return dict(self.meta).get(key, default)


@dataclass(frozen=True)
class Task:
    """Questions and grading of one task (see the module docstring)."""

    name: str
    train: tuple[Question, ...]
    heldout: tuple[Question, ...]
    parse: Callable[[str], str | None] = field(repr=False)
    check: Callable[[Question, str | None], bool] = field(repr=False)
    candidates: tuple[str, ...] | None = field(default=None, repr=False)
    """Every answer the task can have, in canonical spelling, when they can be listed (exact probes score
    each; ``empirical.exact``); None when the answers are open-ended."""
    implied: Callable[[str], str | None] | None = field(default=None, repr=False)
    """For tasks whose responses show their steps: the answer a response's own steps imply (None where they
    imply none), so a metric can ask whether the final answer follows the reasoning
    (``empirical.behaviour``); None for tasks without checkable steps."""

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError(f"task {self.name!r}: the train split is empty")

    def correct(self, question: Question, response: str) -> bool:
        """Ground truth of one response: ``check(question, parse(response))``."""
        return bool(self.check(question, self.parse(response)))


# ----------------------------------------------------------------------------------------------------------
# safe arithmetic evaluation
# ----------------------------------------------------------------------------------------------------------

_ARITHMETIC_TEXT = re.compile(r"[0-9+\-*/() ]*")

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def safe_eval(
    expression: str, *, max_abs: int = 10**9, max_exponent: int = 8, max_length: int = 256
) -> Fraction:
    """Exact value of an arithmetic expression over integers: ``+ - * / **``, unary ``-``/``+``, parentheses.

    The text may hold only ASCII digits, ``+ - * / ( )`` and spaces, so integers are decimal literals and
    nothing hides from the parser (``#`` starts a comment Python would ignore; ``0x3``, ``1_0`` and ``1e3``
    are literals Python would accept). Anything else -- names, calls, attribute access, subscripts, floats,
    strings, comments, other bases -- raises ``ValueError``, as do exponents above ``max_exponent`` in
    absolute value, any number or intermediate value whose numerator or denominator exceeds ``max_abs``,
    division by zero and texts longer than ``max_length``.

    >>> safe_eval("(3+5)*2/4")
    Fraction(4, 1)
    """
    if not isinstance(expression, str):
        raise ValueError(f"expression: expected str, got {type(expression).__name__}")
    if len(expression) > max_length:
        raise ValueError(f"expression: longer than {max_length} characters")
    expression = expression.strip()
    if not _ARITHMETIC_TEXT.fullmatch(expression):
        raise ValueError(
            "expression: only decimal integers, + - * / ( ) and spaces are allowed, got "
            f"{expression[:40]!r}"
        )
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"expression: not valid arithmetic ({err.msg})") from None

    def bounded(value: Fraction) -> Fraction:
        if abs(value.numerator) > max_abs or value.denominator > max_abs:
            raise ValueError(f"expression: a value exceeds the bound {max_abs}")
        return value

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            if type(node.value) is not int:
                raise ValueError(
                    f"expression: only integer literals are allowed, got {node.value!r}"
                )
            return bounded(Fraction(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow):
                if right.denominator != 1 or abs(right) > max_exponent:
                    raise ValueError(
                        f"expression: exponent {right} is not an integer within ±{max_exponent}"
                    )
                if left == 0 and right < 0:
                    raise ValueError("expression: division by zero")
                return bounded(left ** int(right))
            if isinstance(node.op, ast.Div) and right == 0:
                raise ValueError("expression: division by zero")
            return bounded(_BINOPS[type(node.op)](left, right))
        raise ValueError(f"expression: {type(node).__name__} is not allowed")

    return walk(tree)


def expression_numbers(expression: str) -> list[int]:
    """The integer literals of an expression that :func:`safe_eval` accepts (raises ``ValueError`` otherwise)."""
    safe_eval(expression)
    return [
        n.value
        for n in ast.walk(ast.parse(expression.strip(), mode="eval"))
        if isinstance(n, ast.Constant)
    ]


def countdown_correct(expression: str | None, numbers: Sequence[int], target: int) -> bool:
    """Whether ``expression`` uses each of ``numbers`` exactly once and equals ``target`` (TinyZero's rule).

    False for anything :func:`safe_eval` rejects (comments, ``0x3``, names, ...), for an equation and for a
    non-string (None included).
    """
    if not isinstance(expression, str) or "=" in expression:
        return False
    try:
        used = expression_numbers(expression)
        value = safe_eval(expression)
    except ValueError:
        return False
    return Counter(used) == Counter(numbers) and value == target


# ----------------------------------------------------------------------------------------------------------
# synthetic arithmetic
# ----------------------------------------------------------------------------------------------------------

_INT = re.compile(r"-?\d+")


def parse_integer(response: str) -> str | None:
    """The response as a canonical integer string if it is exactly one integer, else None."""
    text = response.strip()
    return str(int(text)) if _INT.fullmatch(text) and len(text) < 12 else None


def arithmetic_task(
    *, n_train: int = 2000, n_heldout: int = 200, max_operand: int = 99, seed: int = 0
) -> Task:
    """``a+b=`` questions over ``0..max_operand``, shuffled by ``seed`` and split into disjoint train/held-out."""
    n_pairs = (max_operand + 1) ** 2
    if n_train < 1 or n_heldout < 0 or n_train + n_heldout > n_pairs:
        raise ValueError(
            f"n_train, n_heldout: need 1 <= n_train and n_train + n_heldout <= {n_pairs}, got {n_train}, {n_heldout}"
        )
    order = np.random.default_rng(seed).permutation(n_pairs)[: n_train + n_heldout]
    qs = []
    for idx in order:
        a, b = divmod(int(idx), max_operand + 1)
        qs.append(Question(qid=f"{a}+{b}", prompt=f"{a}+{b}=", label=str(a + b)))
    return Task(
        name="arith",
        train=tuple(qs[:n_train]),
        heldout=tuple(qs[n_train:]),
        parse=parse_integer,
        check=lambda q, answer: equivalent(q.label, answer),
        candidates=tuple(str(k) for k in range(2 * max_operand + 1)),
    )


# ----------------------------------------------------------------------------------------------------------
# Countdown
# ----------------------------------------------------------------------------------------------------------


def _random_expression(numbers: Sequence[int], rng: np.random.Generator) -> str:
    """A random expression using every number once with ``+ - *`` (fully parenthesised)."""
    terms = [str(n) for n in numbers]
    while len(terms) > 1:
        i, j = rng.choice(len(terms), size=2, replace=False)
        op = "+-*"[rng.integers(3)]
        combined = f"({terms[i]}{op}{terms[j]})"
        terms = [t for k, t in enumerate(terms) if k not in (i, j)] + [combined]
    expr = terms[0]
    return expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr


def countdown_problem(
    rng: np.random.Generator, *, n_numbers: int = 3, max_number: int = 9
) -> tuple[tuple[int, ...], int, str]:
    """Numbers, a positive target reachable with them, and one solution."""
    while True:
        numbers = tuple(int(x) for x in rng.integers(1, max_number + 1, size=n_numbers))
        solution = _random_expression(numbers, rng)
        target = safe_eval(solution)
        if target.denominator == 1 and 0 < target <= 999:
            return numbers, int(target), solution


def countdown_prompt(numbers: Sequence[int], target: int, style: str) -> str:
    """``tiny``: ``n3 5 2 t16:``; ``chat``: the TinyZero-style instruction (answer in ``\\boxed{}``)."""
    if style == "tiny":
        return f"n{' '.join(map(str, numbers))} t{target}:"
    return (
        f"Using the numbers {list(numbers)}, create an expression that equals {target}. You can use +, -, * and /, "
        "and each number must be used exactly once. Put the final expression in \\boxed{}."
    )


def verification_prompt(question: Question, response: str, style: str) -> str:
    """Prompt asking the policy itself whether ``response`` solves ``question`` (self-verification)."""
    numbers, target = question.get("numbers"), question.get("target")
    if style == "tiny":
        return f"v{' '.join(map(str, numbers))} t{target} e{response.strip()[:40]}?"
    return (
        f"Check this solution. Numbers: {list(numbers)}; target: {target}. Proposed expression: {response}\n"
        "It must use only the given numbers, each exactly once, be an expression (not an equation) and equal the "
        "target. Reply with \\boxed{True} or \\boxed{False}."
    )


def countdown_task(
    *,
    n_train: int = 2000,
    n_heldout: int = 200,
    n_numbers: int = 3,
    max_number: int = 9,
    style: str = "tiny",
    seed: int = 0,
) -> Task:
    """Locally generated Countdown problems (``style`` ``tiny`` for the character model, ``chat`` otherwise)."""
    if style not in ("tiny", "chat"):
        raise ValueError(f"style: must be 'tiny' or 'chat', got {style!r}")
    if n_train < 1 or n_heldout < 0:
        raise ValueError(f"n_train, n_heldout: must be >= 1 and >= 0, got {n_train}, {n_heldout}")
    rng = np.random.default_rng(seed)
    qs = []
    for i in range(n_train + n_heldout):
        numbers, target, solution = countdown_problem(
            rng, n_numbers=n_numbers, max_number=max_number
        )
        qs.append(
            Question(
                qid=f"cd{i}",
                prompt=countdown_prompt(numbers, target, style),
                label=solution,
                chat=style == "chat",
                meta=(("numbers", numbers), ("target", target)),
            )
        )

    def parse(response: str) -> str | None:
        text = extract_boxed(response) if style == "chat" else response
        if text is None:
            return None
        text = text.replace(" ", "").strip()
        return text or None

    def check(q: Question, answer: str | None) -> bool:
        return countdown_correct(answer, q.get("numbers"), q.get("target"))

    return Task("countdown", tuple(qs[:n_train]), tuple(qs[n_train:]), parse, check)


# ----------------------------------------------------------------------------------------------------------
# pretraining corpus of the tiny model
# ----------------------------------------------------------------------------------------------------------


def pretraining_corpus(
    corpus: str,
    batch_size: int,
    rng: np.random.Generator,
    *,
    max_operand: int = 99,
    digits: int = 3,
) -> tuple[list[str], list[str]]:
    """``batch_size`` (prompt, completion) pairs of the tiny model's pretraining corpus.

    ``arith``: ``a+b=`` -> sum. ``countdown``: a third sums, a third Countdown problems with a correct solution,
    a third verification examples (half right, half a random wrong expression) answered ``true``/``false``.
    ``reason``: ``q: a+b=`` -> the worked solution, ``digits``-digit operands
    (:func:`empirical.reasoning.reasoning_corpus`; ``max_operand`` unused).
    """
    if corpus == "reason":
        from empirical.reasoning import reasoning_corpus

        return reasoning_corpus(batch_size, rng, digits=digits)
    prompts, completions = [], []
    for _ in range(batch_size):
        kind = 0 if corpus == "arith" else int(rng.integers(3))
        if kind == 0:
            a, b = (int(x) for x in rng.integers(0, max_operand + 1, size=2))
            prompts.append(f"{a}+{b}=")
            completions.append(str(a + b))
            continue
        numbers, target, solution = countdown_problem(rng)
        if kind == 1:
            prompts.append(countdown_prompt(numbers, target, "tiny"))
            completions.append(solution)
            continue
        candidate = solution if rng.random() < 0.5 else _random_expression(numbers, rng)
        q = Question("v", "", None, meta=(("numbers", numbers), ("target", target)))
        prompts.append(verification_prompt(q, candidate, "tiny"))
        completions.append("true" if countdown_correct(candidate, numbers, target) else "false")
    return prompts, completions


# ----------------------------------------------------------------------------------------------------------
# math data from local files
# ----------------------------------------------------------------------------------------------------------


def _math_grader(math_verify: bool) -> tuple[Callable, Callable]:
    def parse(response: str) -> str | None:
        return canonicalize(extract_answer(response, style="auto"))

    def check(q: Question, answer: str | None) -> bool:
        return equivalent(q.label, answer, math_verify=math_verify)

    return parse, check


def _is_null(value: object) -> bool:
    """Whether a value read from a data file is missing: None, NaN (JSON's ``NaN``, pandas' null in some string
    columns) or ``pandas.NA`` (which no value can be unless pandas is loaded)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    pandas = sys.modules.get("pandas")
    return pandas is not None and value is pandas.NA


def _not_null(value: object, field: str, where: str) -> object:
    """``value``, or ``ValueError("path: {where}: field '{field}' is null")``: str(None) would be "None"."""
    if _is_null(value):
        raise ValueError(f"path: {where}: field {field!r} is null")
    return value


def load_dapo(path: str | Path, *, limit: int | None = None) -> list[Question]:
    """Questions of a DAPO-Math-17k parquet file in veRL's schema, deduplicated by prompt (first kept).

    Required columns: ``prompt`` (a list of ``{"role", "content"}`` messages, the user message last) and
    ``reward_model`` (``{"ground_truth": ...}``). Raises ``ValueError`` for a missing file, a wrong schema or a
    null prompt, message or ground truth (naming the file and the row, counted from 0).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such DAPO parquet file: {path}")
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - pandas is in the data extra
        raise ValueError(
            "reading parquet needs pandas and pyarrow: pip install 'sharpen[data]'"
        ) from err
    frame = pd.read_parquet(path)
    missing = {"prompt", "reward_model"} - set(frame.columns)
    if missing:
        raise ValueError(
            f"path: {path} is not in the DAPO/veRL schema: missing column(s) {sorted(missing)} "
            f"(found {list(frame.columns)})"
        )
    questions, seen = [], set()
    for i, row in enumerate(frame.itertuples(index=False)):
        where = f"row {i} of {path}"
        messages = _not_null(row.prompt, "prompt", where)
        reward_model = _not_null(row.reward_model, "reward_model", where)
        try:
            content = str(_not_null(list(messages)[-1]["content"], "prompt[-1].content", where))
            label = str(_not_null(reward_model["ground_truth"], "reward_model.ground_truth", where))
        except (TypeError, KeyError, IndexError) as err:
            raise ValueError(
                f"path: row {i} of {path} does not match the DAPO schema (prompt = list of messages, "
                f"reward_model = {{'ground_truth': ...}}): {err!r}"
            ) from None
        if content in seen:
            continue
        seen.add(content)
        extra = getattr(row, "extra_info", None)
        index = extra.get("index", i) if isinstance(extra, dict) else i
        questions.append(Question(qid=f"dapo-{index}", prompt=content, label=label, chat=True))
        if limit is not None and len(questions) >= limit:
            break
    if not questions:
        raise ValueError(f"path: {path} holds no rows")
    return questions


def load_math_jsonl(path: str | Path, *, limit: int | None = None) -> list[Question]:
    """MATH500 / AIME24 / AMC23 JSONL: one object a line with ``problem`` (or ``question``) and ``answer``.

    Keys are matched case-insensitively; the prompt is wrapped in the DAPO instruction (``Answer:`` line).
    Raises ``ValueError`` for a missing file, a line that is not a JSON object, missing keys or a null problem or
    answer (naming the file and the line, counted from 1).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no such JSONL file: {path}")
    questions = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = {str(k).lower(): v for k, v in json.loads(line).items()}
        except (json.JSONDecodeError, AttributeError):
            raise ValueError(f"path: line {lineno} of {path} is not a JSON object") from None
        key = "problem" if "problem" in obj else "question"
        if key not in obj or "answer" not in obj:
            raise ValueError(
                f"path: line {lineno} of {path} needs 'problem' (or 'question') and 'answer' keys, "
                f"found {sorted(obj)}"
            )
        where = f"line {lineno} of {path}"
        problem = _not_null(obj[key], key, where)
        answer = _not_null(obj["answer"], "answer", where)
        qid = str(obj.get("unique_id", obj.get("id", lineno)))
        questions.append(
            Question(
                qid=qid,
                prompt=DAPO_INSTRUCTION.format(problem=problem),
                label=str(answer),
                chat=True,
            )
        )
        if limit is not None and len(questions) >= limit:
            break
    if not questions:
        raise ValueError(f"path: {path} holds no rows")
    return questions


def math_task(
    train: Sequence[Question],
    heldout: Sequence[Question] = (),
    *,
    name: str = "math",
    math_verify: bool = False,
) -> Task:
    """A task from loaded math questions, graded by :func:`sharpen.answers.equivalent`."""
    parse, check = _math_grader(math_verify)
    return Task(name, tuple(train), tuple(heldout), parse, check)


# ----------------------------------------------------------------------------------------------------------
# the training run's data: the configured task and the order of its questions
# ----------------------------------------------------------------------------------------------------------


def build_task(cfg: TrainConfig) -> Task:
    """The questions of ``cfg.task`` (generated, or read from ``cfg.data_path`` / ``cfg.heldout_path``)."""
    if cfg.task == "arith":
        return arithmetic_task(n_train=cfg.n_train, n_heldout=cfg.n_heldout, seed=cfg.data_seed)
    if cfg.task == "countdown":
        style = "tiny" if cfg.model == "tiny" else "chat"
        return countdown_task(
            n_train=cfg.n_train, n_heldout=cfg.n_heldout, style=style, seed=cfg.data_seed
        )
    if cfg.task == "reason":
        from empirical.reasoning import reasoning_task

        return reasoning_task(n_train=cfg.n_train, n_heldout=cfg.n_heldout, seed=cfg.data_seed)
    limit = cfg.n_train or None
    load = load_dapo if cfg.task == "dapo" else load_math_jsonl
    train = load(cfg.data_path, limit=limit)
    heldout = (
        load_math_jsonl(cfg.heldout_path, limit=cfg.n_heldout or None) if cfg.heldout_path else []
    )
    return math_task(train, heldout, name=cfg.task, math_verify=cfg.math_verify)


@dataclass
class DataCursor:
    """Order of the training questions and the position in it; reshuffled (or not) each epoch."""

    order: list[int]
    position: int = 0

    def take(self, k: int, rng: np.random.Generator, shuffle: bool) -> list[int]:
        out = []
        while len(out) < k:
            if self.position == len(self.order):
                self.order = rng.permutation(len(self.order)).tolist() if shuffle else self.order
                self.position = 0
            out.append(self.order[self.position])
            self.position += 1
        return out
