r"""Multi-digit addition with a carry scratchpad: a reasoning task of free length for the tiny model.

The arithmetic task ``a+b=`` has no reasoning and a 6-token cap, so its responses cannot grow, shrink or
repeat. Here the response is a worked solution of tens of tokens, one fixed-width step per column from the
right, then the final answer::

    prompt    q: 47+385=
    response  7+5+0=12 4+8+1=13 0+3+1=04 a:432

Each step ``x+y+c=zz`` adds the column's digits ``x``, ``y`` of the operands (zero-padded to ``digits``) and
the carry-in ``c``; ``zz`` is the two-digit column sum (carry-out, result digit). The final answer follows the
last ``a:``. A response is ``9 * digits + 2 + len(str(a + b))`` characters -- 33 for 3 digits when the sum
has 4 -- plus the end token; the tokenizer (:mod:`empirical.tiny`) spends one token per character.

* :func:`worked_solution`, :func:`reasoning_prompt` -- the format above;
* :func:`parse_final_answer` -- the integer after the last ``a:`` *if the response ends there* (a truncated
  or rambling response is unparseable), canonical (``a:0432`` -> ``432``); anything may precede it, so the
  policy is free to lengthen, shorten or repeat its reasoning;
* :func:`scratchpad_answer` -- the sum the response's own steps imply, to tell wrong steps from a final
  answer that does not read them (``parse_final_answer(r) != scratchpad_answer(r)``);
* :func:`reasoning_task` -- the :class:`~empirical.tasks.Task` (``task="reason"`` in a run's config);
* :func:`reasoning_corpus`, :func:`reasoning_check` -- the pretraining corpus and the fixed check set of the
  pretraining stopping rule (``PretrainConfig(corpus="reason")`` in :mod:`empirical.tiny`);
* :func:`answer_candidates`, :func:`final_answer_logprobs` -- what is exact here (below).

What is exact, and what is not
------------------------------
The answer distribution :math:`\pi(a\mid q)=\sum_s\pi(s\mid q)\,\pi(a\mid q,s)` sums over every scratchpad
:math:`s` the policy can write -- exponentially many -- so it cannot be enumerated, and teacher-forcing
``a <eos>`` as the whole response (what :mod:`empirical.exact` does for ``arith``) would score a response the
policy never writes. The task therefore sets ``candidates=None``: the trainer's exact probes are off and
probes are sampled. What *is* exact is the final answer *given* a scratchpad: :func:`final_answer_logprobs`
scores every candidate :math:`a` (:func:`answer_candidates`, all sums) after ``prompt + s + " a:"`` for a
given :math:`s` -- the gold worked solution (teacher forcing), or the policy's greedy one -- giving
:math:`\pi(a\mid q,s)` without sampling noise. It measures whether the policy reads its own scratchpad
correctly, not how likely each answer is overall.

Example
-------
>>> reasoning_prompt(47, 385), worked_solution(47, 385, digits=3)
('q: 47+385=', '7+5+0=12 4+8+1=13 0+3+1=04 a:432')
>>> parse_final_answer("7+5+0=12 4+8+1=13 0+3+1=04 a:0432"), parse_final_answer("7+5+0=12 4+8+1=1")
('432', None)
>>> task = reasoning_task(n_train=4, n_heldout=2, digits=3, seed=0)
>>> q = task.train[0]
>>> task.correct(q, q.get("solution")), task.candidates is None
(True, True)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from empirical.tasks import Question, Task

__all__ = [
    "ANSWER_MARKER",
    "answer_candidates",
    "final_answer_logprobs",
    "max_sequence_tokens",
    "parse_final_answer",
    "reasoning_check",
    "reasoning_corpus",
    "reasoning_prompt",
    "reasoning_task",
    "response_tokens",
    "scratchpad_answer",
    "worked_solution",
]

ANSWER_MARKER = "a:"
"""Precedes the final answer; the last one in a response counts."""

MAX_DIGITS = 9
"""Longest operands: the longest sequence, ``12 digits + 10`` tokens, then fits the tiny model's 128 positions."""

_FINAL = re.compile(r"a:(\d{1,12})\s*\Z")
_STEP = re.compile(r"\d\+\d\+\d=(\d)(\d)")


def _check_digits(digits: int) -> None:
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= MAX_DIGITS:
        raise ValueError(f"digits: must be an int in 1..{MAX_DIGITS}, got {digits!r}")


def reasoning_prompt(a: int, b: int) -> str:
    """``q: {a}+{b}=``."""
    return f"q: {a}+{b}="


def worked_solution(a: int, b: int, *, digits: int) -> str:
    """The gold response to ``a + b``: one ``x+y+c=zz`` step per column from the right, then ``a:{a+b}``.

    Operands must lie in ``0 .. 10**digits - 1``; they are zero-padded to ``digits`` columns, so every
    response to a ``digits``-digit question has the same steps whatever the operands' lengths.
    """
    _check_digits(digits)
    if not (0 <= a < 10**digits and 0 <= b < 10**digits):
        raise ValueError(f"a, b: must lie in 0..{10**digits - 1}, got {a}, {b}")
    da, db = f"{a:0{digits}d}", f"{b:0{digits}d}"
    carry, steps = 0, []
    for i in reversed(range(digits)):
        x, y = int(da[i]), int(db[i])
        total = x + y + carry
        steps.append(f"{x}+{y}+{carry}={total:02d}")
        carry = total // 10
    return " ".join(steps) + f" {ANSWER_MARKER}{a + b}"


def response_tokens(digits: int) -> tuple[int, int]:
    """Shortest and longest gold response in tokens, end token included: ``9 d + 3 + len(sum)``.

    >>> response_tokens(3)
    (31, 34)
    """
    _check_digits(digits)
    return 9 * digits + 4, 10 * digits + 4


def max_sequence_tokens(digits: int) -> int:
    """Longest ``<bos> prompt response <eos>`` of the pretraining corpus in tokens, ``12 digits + 10``."""
    _check_digits(digits)
    return 1 + len("q: +=") + 2 * digits + response_tokens(digits)[1]


def parse_final_answer(response: str) -> str | None:
    """The integer after the last ``a:`` when the response ends with it (trailing spaces allowed), else None.

    The reasoning before it is free (never checked): a policy that lengthens, shortens or repeats its steps
    still gets its answer read, while a response cut off by the length cap -- or one that keeps writing after
    its answer -- has none.

    >>> parse_final_answer("junk a:12 a:007"), parse_final_answer("a:12 then more"), parse_final_answer("")
    ('7', None, None)
    """
    m = _FINAL.search(response)
    return None if m is None else str(int(m.group(1)))


def scratchpad_answer(response: str) -> str | None:
    """The sum that the steps before the last ``a:`` imply, read as written: the result digits of the steps
    (``x+y+c=zz``, taken in order as columns from the right) under the last step's carry, canonical; None when
    there is no step. Whether each step's own arithmetic is right is not checked -- this is what a policy that
    reads its scratchpad would answer.

    >>> scratchpad_answer("7+5+0=12 4+8+1=13 0+3+1=04 a:432"), scratchpad_answer("9+3+0=13 a:99")
    ('432', '13')
    """
    head = response.rsplit(ANSWER_MARKER, 1)[0] if ANSWER_MARKER in response else response
    steps = _STEP.findall(head)
    if not steps:
        return None
    return str(int(steps[-1][0] + "".join(unit for _, unit in reversed(steps))))


def answer_candidates(digits: int) -> tuple[str, ...]:
    """Every sum of two ``digits``-digit operands, ``0 .. 2 (10^digits - 1)``, canonical."""
    _check_digits(digits)
    return tuple(str(k) for k in range(2 * (10**digits - 1) + 1))


def _question(a: int, b: int, digits: int) -> Question:
    return Question(
        qid=f"{a}+{b}",
        prompt=reasoning_prompt(a, b),
        label=str(a + b),
        meta=(
            ("a", a),
            ("b", b),
            ("digits", digits),
            ("solution", worked_solution(a, b, digits=digits)),
        ),
    )


def _check(question: Question, answer: str | None) -> bool:
    return answer is not None and answer == question.label


def reasoning_task(
    *, n_train: int = 2000, n_heldout: int = 200, digits: int = 3, seed: int = 0
) -> Task:
    """``q: a+b=`` questions over ``0 .. 10^digits - 1``, distinct pairs split into disjoint train / held-out.

    Graded by :func:`parse_final_answer` and string equality with the sum; ``meta`` holds ``a``, ``b``,
    ``digits`` and the gold ``solution``. ``candidates`` is None (see the module docstring); ``implied`` is
    :func:`scratchpad_answer`.
    """
    _check_digits(digits)
    n_pairs = 10 ** (2 * digits)
    if n_train < 1 or n_heldout < 0 or n_train + n_heldout > n_pairs:
        raise ValueError(
            f"n_train, n_heldout: need 1 <= n_train and n_train + n_heldout <= {n_pairs}, "
            f"got {n_train}, {n_heldout}"
        )
    rng = np.random.default_rng(seed)
    picked = rng.choice(n_pairs, size=n_train + n_heldout, replace=False)
    qs = [_question(*divmod(int(i), 10**digits), digits) for i in picked]
    return Task(
        name="reason",
        train=tuple(qs[:n_train]),
        heldout=tuple(qs[n_train:]),
        parse=parse_final_answer,
        check=_check,
        candidates=None,
        implied=scratchpad_answer,
    )


def reasoning_corpus(
    batch_size: int, rng: np.random.Generator, *, digits: int = 3
) -> tuple[list[str], list[str]]:
    """``batch_size`` (prompt, worked solution) pairs with operands uniform on ``0 .. 10^digits - 1``."""
    _check_digits(digits)
    pairs = rng.integers(0, 10**digits, size=(batch_size, 2))
    prompts = [reasoning_prompt(int(a), int(b)) for a, b in pairs]
    return prompts, [worked_solution(int(a), int(b), digits=digits) for a, b in pairs]


def reasoning_check(n: int, *, digits: int = 3, seed: int = 1) -> tuple[list[str], list[str]]:
    """The fixed check set of the pretraining stopping rule: ``n`` prompts and their worked solutions."""
    return reasoning_corpus(n, np.random.default_rng(seed), digits=digits)


def final_answer_logprobs(
    model,
    tokenizer,
    prompts: Sequence[str],
    scratchpads: Sequence[str],
    candidates: Sequence[str],
    *,
    temperature: float = 1.0,
    eos_id: int,
    pad_id: int = 0,
) -> np.ndarray:
    r"""``(Q, C)`` exact :math:`\log\pi(a\mid q, s)` of each candidate final answer given a scratchpad.

    Row ``i`` teacher-forces ``candidates[j] <eos>`` after ``prompts[i] + scratchpads[i] + " a:"`` (raw
    prompt text, ``<bos>`` prepended) at ``temperature``, through :func:`empirical.exact.candidate_logprobs`.
    ``scratchpads[i]`` is the response before its final answer, without the trailing space: for the gold one,
    ``worked_solution(...).rsplit(" a:", 1)[0]``. Exact given the scratchpad; *not* the marginal answer
    distribution (see the module docstring). Cost: ``Q * C`` rows of ``len(answer) + 1`` tokens each.
    """
    from empirical.exact import candidate_ids, candidate_logprobs

    if len(prompts) != len(scratchpads):
        raise ValueError(f"scratchpads: expected {len(prompts)}, got {len(scratchpads)}")
    prefix = [
        list(tokenizer(p)["input_ids"])
        + list(tokenizer(f"{s} {ANSWER_MARKER}", add_special_tokens=False)["input_ids"])
        for p, s in zip(prompts, scratchpads, strict=True)
    ]
    return candidate_logprobs(
        model,
        prefix,
        candidate_ids(tokenizer, candidates, eos_id),
        temperature=temperature,
        pad_id=pad_id,
    )
