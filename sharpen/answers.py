r"""The answer layer: extraction, canonicalisation, equivalence and the majority vote.

Conventions (shared by the rewards, the metrics and the theory):

* **Extraction.** :func:`extract_boxed` returns the content of the *last* ``\boxed{...}`` (braces may nest),
  :func:`extract_answer_line` the value of the last ``Answer: ...`` line (DAPO-Math's format).
  :func:`extract_answer` tries ``\boxed`` first, then the ``Answer:`` line. ``None`` means *unparseable*.
* **Canonicalisation.** :func:`canonicalize` removes presentation only (whitespace, ``$``, ``\left``/``\right``,
  ``\dfrac`` -> ``\frac``, ``\text{..}`` wrappers, thousands separators, trailing zeros of decimals, a trailing
  period), so that votes are not split by spelling. It never evaluates mathematics.
* **Equivalence.** :func:`equivalent` compares canonical strings; with ``math_verify=True`` it falls back to
  Math-Verify's symbolic check ``verify(gold, pred)`` (gold first: the check is not symmetric). Math-Verify's
  timeouts use ``signal.alarm``, which only works on the main thread: off the main thread they are disabled.
* **Majority vote (TTRL's rule).** Unparseable answers are excluded from the vote but *counted in the
  denominator* of the majority ratio; ties go to the answer seen first. We keep TTRL's rule so that our
  ``majority_ratio`` and ``label_accuracy`` mean what TTRL's logs mean. For i.i.d. samples, first-seen
  tie-breaking is equal in law to uniform tie-breaking (the order of samples is exchangeable), which is the rule
  :func:`plurality_winners` and :func:`sharpen.theory.plurality_win_probs` use on counts.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Vote",
    "canonicalize",
    "equivalent",
    "extract_answer",
    "extract_answer_line",
    "extract_boxed",
    "majority_vote",
    "parse_verdict",
    "plurality_winners",
]

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


def _check_text(text: object, name: str = "text") -> str:
    if not isinstance(text, str):
        raise ValueError(f"{name}: expected a str, got {type(text).__name__}")
    return text


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, braces balanced; None if absent.

    ``\boxed 5`` (no braces) yields the token after the space.

    >>> extract_boxed(r"so \boxed{1} or rather \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> extract_boxed("no box") is None
    True
    """
    _check_text(text)
    matches = list(_BOXED.finditer(text))
    for m in reversed(matches):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        content = text[i + 1 : j].strip()
                        return content if content else None
            continue  # unbalanced: try an earlier box
        if m.group(0).endswith(" ") and i < len(text):
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


_ANSWER_LINE = re.compile(r"(?im)^[^\S\n]*\**answer\**[^\S\n]*:[^\S\n]*(.+?)[^\S\n]*$")


def extract_answer_line(text: str) -> str | None:
    """Value of the last ``Answer: ...`` line (DAPO-Math-17k's requested format); None if absent.

    >>> extract_answer_line("work...\\nAnswer: 42")
    '42'
    """
    _check_text(text)
    matches = _ANSWER_LINE.findall(text)
    for value in reversed(matches):
        value = value.strip().strip("$").strip()
        if value:
            return value
    return None


def extract_answer(text: str, style: str = "auto") -> str | None:
    r"""Extract the final answer of a response.

    Parameters
    ----------
    text : str
        The decoded response.
    style : {"auto", "boxed", "answer_line"}
        ``"auto"`` tries the last ``\boxed{}`` first, then the last ``Answer:`` line.

    Returns
    -------
    str or None
        The raw answer string (not canonicalised), or None if unparseable.
    """
    _check_text(text)
    if style == "boxed":
        return extract_boxed(text)
    if style == "answer_line":
        return extract_answer_line(text)
    if style == "auto":
        boxed = extract_boxed(text)
        return boxed if boxed is not None else extract_answer_line(text)
    raise ValueError(f"style: must be one of 'auto', 'boxed', 'answer_line', got {style!r}")


_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")


def canonicalize(answer: str | None) -> str | None:
    r"""Presentation-only normal form of an answer string (None stays None).

    >>> canonicalize(r" $\dfrac{1}{2}$. ")
    '\\frac{1}{2}'
    >>> canonicalize("1,000.50")
    '1000.5'
    """
    if answer is None:
        return None
    s = _check_text(answer, "answer")
    prev = None
    while prev != s:  # outer whitespace, $...$ and a trailing period, in any order
        prev = s
        s = s.strip().strip("$").rstrip(".")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "")
    prev = None
    while prev != s:
        prev = s
        s = _TEXT_WRAP.sub(r"\1", s)
    s = re.sub(r"\s+", "", s)
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if re.fullmatch(r"[+-]?\d+\.\d+", s):
        s = s.rstrip("0").rstrip(".")
    if s.startswith("+") and re.fullmatch(r"\+\d+(\.\d+)?", s):
        s = s[1:]
    if s in ("-0",):
        s = "0"
    return s if s else None


def _math_verify_equal(gold: str, pred: str) -> bool:
    try:
        from math_verify import parse, verify
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "math_verify=True needs the 'math-verify' package: pip install 'sharpen[math]'"
        ) from exc
    on_main = threading.current_thread() is threading.main_thread()
    # signal.alarm-based timeouts only work on the main thread; elsewhere disable them.
    parse_timeout = 5 if on_main else None
    verify_timeout = 5 if on_main else None
    g = parse(f"${gold}$", parsing_timeout=parse_timeout)
    p = parse(f"${pred}$", parsing_timeout=parse_timeout)
    if not g or not p:
        return False
    return bool(verify(g, p, timeout_seconds=verify_timeout))


def equivalent(gold: Hashable | None, pred: Hashable | None, *, math_verify: bool = False) -> bool:
    """Whether ``pred`` answers ``gold``.

    Strings are compared after :func:`canonicalize`; other hashables (e.g. integer answer ids of the simulator)
    by ``==``. ``None`` (unparseable) is never equivalent to anything. With ``math_verify=True``, string pairs that
    differ canonically are checked symbolically by Math-Verify (``verify(gold, pred)``, gold first), with its
    signal-based timeouts disabled off the main thread.
    """
    if gold is None or pred is None:
        return False
    if isinstance(gold, str) and isinstance(pred, str):
        g, p = canonicalize(gold), canonicalize(pred)
        if g is None or p is None:
            return False
        if g == p:
            return True
        return _math_verify_equal(g, p) if math_verify else False
    return gold == pred


@dataclass(frozen=True)
class Vote:
    """Result of :func:`majority_vote`.

    Attributes
    ----------
    answer : hashable or None
        The plurality answer (None if nothing parsed).
    count : int
        How many of the N answers equal it.
    n : int
        N, the number of rollouts, unparseable ones included.
    n_parsed : int
        How many answers parsed.
    """

    answer: Hashable | None
    count: int
    n: int
    n_parsed: int

    @property
    def ratio(self) -> float:
        """``count / n`` -- TTRL's ``majority_ratio`` (unparseable answers stay in the denominator)."""
        return self.count / self.n


def majority_vote(answers: Sequence[Hashable | None], *, canonical: bool = True) -> Vote:
    """Plurality vote over one group of N answers (TTRL's rule, see the module docstring).

    Parameters
    ----------
    answers : sequence of length N
        Answers (strings, ints, ...) with ``None`` for unparseable responses.
    canonical : bool
        Canonicalise string answers before counting (default), so ``1/2`` spellings do not split the vote.

    >>> v = majority_vote(["2", None, "3", "3", "2"])
    >>> v.answer, v.count, v.ratio
    ('2', 2, 0.4)
    """
    if isinstance(answers, str) or not isinstance(answers, Sequence):
        answers = list(answers) if not isinstance(answers, str) else None
        if answers is None:
            raise ValueError("answers: expected a sequence of answers, got a str")
    n = len(answers)
    if n == 0:
        raise ValueError("answers: empty group")
    counts: dict[Hashable, int] = {}
    for a in answers:
        if canonical and isinstance(a, str):
            a = canonicalize(a)
        if a is None:
            continue
        counts[a] = counts.get(a, 0) + 1  # dicts keep first-seen order
    if not counts:
        return Vote(answer=None, count=0, n=n, n_parsed=0)
    best = max(counts.values())
    winner = next(a for a, c in counts.items() if c == best)  # first seen among the tied
    return Vote(answer=winner, count=best, n=n, n_parsed=sum(counts.values()))


def plurality_winners(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Plurality winner of each row of answer counts, ties broken uniformly at random.

    Parameters
    ----------
    counts : (G, K) int array
        ``counts[g, a]`` = how many of group g's rollouts gave answer a (unparseable ones not included).
    rng : numpy.random.Generator

    Returns
    -------
    (G,) int64 array
        The winning answer index, or -1 for a row with no parsed answer.

    Uniform tie-breaking on counts equals TTRL's first-seen rule in law, since i.i.d. samples are exchangeable.
    """
    c = np.asarray(counts)
    if c.ndim != 2:
        raise ValueError(f"counts: expected shape (G, K), got {c.shape}")
    if c.size and (c.min() < 0):
        raise ValueError("counts: must be non-negative")
    if c.shape[1] == 0:
        raise ValueError("counts: needs at least one answer column")
    is_max = c == c.max(axis=1, keepdims=True)
    # random key per cell; argmax over tied cells picks one tied answer uniformly
    keys = np.where(is_max, rng.random(c.shape), -1.0)
    winners = keys.argmax(axis=1).astype(np.int64)
    winners[c.max(axis=1) == 0] = -1
    return winners


_VERDICT_BOXED = re.compile(r"\\boxed\{\s*(true|false)\s*\}", re.IGNORECASE)


def parse_verdict(text: str) -> int:
    r"""A verifier's verdict as 0/1: the last ``\boxed{True}``/``\boxed{False}`` (any case); otherwise 1 if the text
    says "true" and never "false"; otherwise 0.

    >>> parse_verdict(r"checks out: \boxed{True}"), parse_verdict("false"), parse_verdict("hmm")
    (1, 0, 0)
    """
    _check_text(text)
    boxed = _VERDICT_BOXED.findall(text)
    if boxed:
        return int(boxed[-1].lower() == "true")
    lower = text.lower()
    return int("true" in lower and "false" not in lower)
