r"""The answer layer: extraction, canonicalisation, equivalence and the majority vote.

Conventions (shared by the rewards, the metrics and the theory):

* **Extraction.** :func:`extract_answer` (``style="auto"``) takes the first of three sources that gives a
  value, in this order of precedence, and within each the *last* occurrence in the response:

  1. a box (:func:`extract_boxed`): ``\boxed{...}`` or ``\fbox{...}`` (braces may nest), ``\boxed 5``, or a
     number right after the command, ``\boxed5`` (one token);
  2. an answer label (:func:`extract_answer_line`, DAPO-Math's requested format ``Answer: ...``):
     ``Answer:``, ``Final Answer:`` (any case, ``**bold**`` allowed) or ``答案：``, not inside a word; its
     value is the rest of the line, up to the next label on the line, so the *last* label wins on a line as
     in the text (``Answer: 3. Answer: 5`` gives ``5``), and a value that opens with an answer phrase gives
     the phrase's value (``Final Answer: The final answer is $56$`` gives ``56``);
  3. an answer phrase (:func:`extract_answer_phrase`): ``... answer is X`` (``The answer is``, ``the final
     answer is $X$. I hope it is correct.``, any case, an optional colon) or ``答案是 X``; X runs to the end
     of its sentence (``". "``, ``"。"``) or line.

  The order goes from the most explicit to the least: a box is what MATH and AIME prompts ask for and is
  delimited; an ``Answer:`` label is what DAPO asks for and ends at the line end; a phrase is prose, and
  is read only when neither of the others is there. ``None`` means *unparseable*: there is no fallback to
  the last number of a response (a truncated response is unparseable, not the last number it reached).
  TTRL's extractor (the Qwen2.5-Math parser) checks Minerva's ``final answer is $X$. I hope`` first, then
  the last ``boxed`` (anything up to ``$`` when there are no braces), then the last ``he answer is``,
  ``final answer is``, the *first* ``答案是``, and finally the last number of the text. Math-Verify's
  ``parse`` ranks Minerva's form first, then ``final answer ... is`` and ``\boxed`` together, then
  ``answer:``, then ``answer``, then any LaTeX; within a rank the rightmost match wins.
* **Canonicalisation.** :func:`canonicalize` removes presentation only (whitespace, ``$``, ``\left``/``\right``,
  ``\dfrac`` -> ``\frac``, ``\text{..}`` wrappers, thousands separators, trailing zeros of decimals, a trailing
  period), so that votes are not split by spelling. It never evaluates mathematics.
  :func:`equivalence_key` goes one step further, and exactly: an answer that is a rational number (an
  integer, a decimal, ``a/b``, ``\frac{a}{b}``, ``\frac12``) is keyed by its value in lowest terms
  (``"1/2"``), anything else by its canonical string.
* **Equivalence.** :func:`equivalent` compares canonical strings; with ``math_verify=True`` it falls back to
  Math-Verify's symbolic check ``verify(gold, pred)`` (gold first: the check is not symmetric), run in a worker
  process under a deadline (see below).
* **Majority vote (TTRL's rule).** Unparseable answers are excluded from the vote but *counted in the
  denominator* of the majority ratio; ties go to the answer seen first. We keep TTRL's rule so that our
  ``majority_ratio`` and ``label_accuracy`` mean what TTRL's logs mean. For i.i.d. samples, first-seen
  tie-breaking is equal in law to uniform tie-breaking (the order of samples is exchangeable), which is the rule
  :func:`plurality_winners` and :func:`sharpen.theory.plurality_win_probs` use on counts. What counts as
  one answer is :func:`majority_vote`'s ``equivalence``: ``"exact"`` (as given), ``"presentation"``
  (:func:`canonicalize`; the default), ``"canonical"`` (:func:`equivalence_key`: ``\frac{1}{2}``, ``1/2``,
  ``0.5`` and ``\dfrac12`` are one answer) or ``"math_verify"`` (those classes, merged pairwise by
  Math-Verify).

  The default stays ``"presentation"``: it is the relation :func:`equivalent` grades with by default
  (so a response that agrees with the vote's winner is also graded equal to it, as the veRL pseudo-label
  path and the ground-truth reward do), it never merges two answers that grading tells apart, and it
  keeps the votes, rewards and TTRL metrics of every existing configuration as they were. Choose
  ``"canonical"`` (exact, cheap: a regex and a ``Fraction`` per answer) to stop numeric spellings from
  splitting the vote, and ``"math_verify"`` for symbolic equivalence at the cost stated in
  :func:`majority_vote`. TTRL's veRL port votes with ``Counter`` on exact strings after its own
  normalisation: each extracted (boxed) answer goes through sympy's ``simplify`` (``parse_expr`` with
  every transformation, which evaluates its input as Python, else ``latex2sympy``; a 10 s timeout each),
  which merges ``\frac{1}{2}``, ``1/2`` and ``0.5`` but leaves ``\dfrac12`` apart; its first release votes
  on the Qwen2.5-Math parser's strings, where an unparseable response votes as ``""``.

Bad input
---------
Model output is adversarial input: it can be megabytes long, nest braces thousands deep or repeat ``\boxed{``
without closing it. Every function here does bounded work on any string, and says what it returns:

Errors are ``ValueError`` with a one-line message ``name: problem`` naming the argument, except the one
``TypeError`` below.

* **Not a string.** ``extract_boxed``, ``extract_answer_line``, ``extract_answer_phrase``, ``extract_answer``
  and ``parse_verdict`` raise ``ValueError("text: expected a str, got int")``; ``canonicalize`` and
  ``equivalence_key`` the same with ``answer:`` (None they return unchanged). ``equivalent`` compares
  non-strings by ``==`` (so ``"3"`` and ``3`` differ) and is False when either side is None; where ``==`` does
  not give one bool (a numpy array, or a numpy scalar against a list) it raises ``gold, pred:``.
  ``majority_vote`` counts non-string hashables as they are, at every ``equivalence``; an unhashable answer
  (a list, an array) raises ``TypeError`` (Python's ``unhashable type``), and ``answers`` that is a str,
  bytes or not iterable raises ``answers:``.
* **Options.** ``style`` other than the three names (any type: an array too); ``math_verify`` and
  ``canonical`` not bools; ``equivalence`` not None or one of the four names, or other than ``"exact"`` with
  ``canonical=False`` (the two contradict); ``timeout`` not a finite number > 0 (bools, NaN, inf and strings
  included); ``max_classes`` not an int >= 1. ``plurality_winners``: ``counts`` not a (G, K) array of
  non-negative integer counts (bool, int or integral float; str, complex, NaN and fractions raise), ``rng``
  not a ``numpy.random.Generator``.
* **Empty or blank.** Extraction returns None (``\boxed{ }``, ``Answer: $ $``, ``the answer is .``);
  ``canonicalize`` and ``equivalence_key`` return None for a string that is empty once canonicalised (``""``,
  ``"$ $"``, ``"."``), so ``equivalent`` is False and the vote counts it as unparseable; ``parse_verdict``
  returns 0.
* **Huge.** Extraction searches only the last :data:`MAX_SEARCH_CHARS` characters of a response: a ``\boxed``,
  an ``Answer:`` label or an answer phrase that starts earlier is not seen. ``canonicalize`` returns None
  (unparseable) for an answer longer than :data:`MAX_ANSWER_CHARS` -- so ``equivalent`` is False even for two
  identical ones -- and a vote over N answers costs O(N * MAX_ANSWER_CHARS). ``equivalence_key`` keys a number
  of more than :data:`MAX_RATIONAL_DIGITS` digits by its canonical string. Everything is linear in what it
  reads (no regex here backtracks more than a bounded amount per character), and ``parse_verdict`` reads the
  whole text; a 1 MB string of any content returns in at most about 15 ms (measured on a shared 2-core
  machine; most in 1-3 ms). Labels and phrases cost at most about 1.4 times the slowest box search (1 MB of
  ``Answer: the answer is `` repeated: 79 ms against 57 ms for 1 MB of open boxes, measured together on
  that machine under heavy load).
* **Adversarial.** An unbalanced ``\boxed{`` is skipped for an earlier balanced one (``\boxed{1 and \boxed{2}``
  gives ``"2"``); a ``\text{`` that is never closed is kept as written.
* **Math-Verify** (``math_verify=True``, ``equivalence="math_verify"``). ``equivalent`` is False when
  Math-Verify cannot parse a side, raises, or has not answered within ``timeout`` seconds (default
  :data:`MATH_VERIFY_TIMEOUT`), power towers such as ``9^{9^{9}}`` and ``(10^7)!`` included, on the main thread
  and on any other; the vote then keeps the two classes apart. Math-Verify parses LaTeX into sympy and never
  evaluates an answer as Python (its plain-text fallback reads only digits and operators); it runs in a
  separate process anyway. Where it cannot parse an expression, Math-Verify falls back to the first number in
  it, so ``1+1+...+1`` with a thousand terms, or ``1+__import__(..)``, is "equivalent" to ``1``: its
  behaviour, kept here.

Math-Verify's own timeouts use ``signal.alarm``, which works only on the main thread and cannot interrupt a
computation in C. So :func:`equivalent` sends each symbolic check to a worker process, which stops itself at
80% of the deadline where it can; a worker still busy at the deadline is killed (and a replacement started).
Each concurrent caller gets its own worker; idle ones are reused. Starting a worker (about a second, to import
Math-Verify) is not counted in ``timeout``: the first check of a process, or the first after a kill, may wait
for it, up to two minutes before ``RuntimeError``. POSIX only (the deadline uses ``select``).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = [
    "EQUIVALENCES",
    "MATH_VERIFY_TIMEOUT",
    "MAX_ANSWER_CHARS",
    "MAX_RATIONAL_DIGITS",
    "MAX_SEARCH_CHARS",
    "MAX_VERIFY_CLASSES",
    "Vote",
    "canonicalize",
    "equivalence_key",
    "equivalent",
    "extract_answer",
    "extract_answer_line",
    "extract_answer_phrase",
    "extract_boxed",
    "majority_vote",
    "parse_verdict",
    "plurality_winners",
]

MAX_SEARCH_CHARS = 1 << 16
"""Extraction searches only the last 65,536 characters of a response (about 16k tokens).

Final answers come at the end, and the bound caps the work on a runaway generation: the whole search is
linear in this tail, whatever the length of the response."""

MAX_ANSWER_CHARS = 4096
""":func:`canonicalize` treats a longer answer as unparseable (None): no final answer is that long, and the
bound caps the cost of canonicalising, voting over and Math-Verifying model output."""

MATH_VERIFY_TIMEOUT = 5.0
"""Default deadline, in seconds, of one Math-Verify check in :func:`equivalent` (Math-Verify's own default)."""

MAX_RATIONAL_DIGITS = 200
""":func:`equivalence_key` reads a number as an exact rational only up to this many digits (a longer one is
keyed by its canonical string): it bounds the integers a key builds, far above any final answer's size."""

MAX_VERIFY_CLASSES = 8
"""Default ``max_classes`` of :func:`majority_vote` with ``equivalence="math_verify"``: only the 8 largest
classes are compared, at most 8 * 7 / 2 = 28 Math-Verify checks per vote (30-80 ms each, measured on a
shared 2-core machine; 2.2 s for all 28 under heavy load)."""

EQUIVALENCES = ("exact", "presentation", "canonical", "math_verify")
"""What :func:`majority_vote` counts as one answer, from the finest relation to the coarsest."""

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_BRACE = re.compile(r"[{}]")
_TOKEN = re.compile(r"[^\s$]+")


def _brief(value: object, width: int = 60) -> str:
    """``repr(value)`` on one line and at most ``width`` characters, for error messages."""
    text = " ".join(repr(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _finite_float(x: object) -> float | None:
    """``x`` as a finite float if it is a real number (not a bool), else None (an int beyond the float
    range too), for checks of numeric options."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, int | float | np.integer | np.floating):
        return None
    try:
        v = float(x)
    except OverflowError:
        return None
    return v if math.isfinite(v) else None


def _check_text(text: object, name: str = "text") -> str:
    if not isinstance(text, str):
        raise ValueError(f"{name}: expected a str, got {type(text).__name__}")
    return text


def _search_start(text: str) -> int:
    """Index where the searched tail of ``text`` begins (see :data:`MAX_SEARCH_CHARS`)."""
    return max(0, len(text) - MAX_SEARCH_CHARS)


def _closing_braces(text: str, start: int) -> dict[int, int]:
    """``{index of "{": index of its matching "}"}`` over ``text[start:]``, in one pass with a stack.

    The match of a ``{`` depends only on the text after it, so starting late changes no match. Unmatched
    braces get no entry.
    """
    opened: list[int] = []
    closing: dict[int, int] = {}
    for m in _BRACE.finditer(text, start):
        if m.group() == "{":
            opened.append(m.start())
        elif opened:
            closing[opened.pop()] = m.start()
    return closing


_BARE_NUMBER = re.compile(r"[+-]?[0-9][^\s$]*")


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, braces balanced; None if absent.

    Without braces, ``\boxed 5`` yields the token after the space, and ``\boxed5`` (a number right after the
    command; ``\boxed-3`` too) the token that starts there: a run of characters other than whitespace and
    ``$``. A letter right after the command makes it another command (``\boxedx``), not a box. A box whose
    ``{`` is never closed is skipped for an earlier one. Only the last :data:`MAX_SEARCH_CHARS` characters are
    searched; braces are matched in one pass over them, so the cost is linear in that tail (before, each
    unclosed box rescanned the text).

    >>> extract_boxed(r"so \boxed{1} or rather \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> extract_boxed(r"so \boxed5"), extract_boxed("no box") is None
    ('5', True)
    """
    _check_text(text)
    markers = list(_BOXED.finditer(text, _search_start(text)))
    if not markers:
        return None
    closing = _closing_braces(text, markers[0].end())
    for m in reversed(markers):
        i = m.end()
        if i < len(text) and text[i] == "{":
            j = closing.get(i)
            if j is None:
                continue  # unbalanced: try an earlier box
            content = text[i + 1 : j].strip()
            return content if content else None
        if m.group(0).endswith(" ") and i < len(text):
            token = _TOKEN.match(text, i)
            if token:
                return token.group(0)
        elif not m.group(0)[-1].isspace():  # nothing between the command and text[i]
            token = _BARE_NUMBER.match(text, i)
            if token:
                return token.group(0)
    return None


# An answer label, not inside a word: "Answer:", "Final Answer:", "**Answer**:", "答案：" (any case; ":" or
# the full-width "："). No leading "\**": tried at every position of a run of stars, it would read the rest
# of the run each time (quadratic); stars before a label stay at the end of the value before it, and are
# stripped from there.
_LABEL = re.compile(r"(?i)(?:(?<!\w)(?:final[^\S\n]+)?answer\**|答案)[^\S\n]*[:：]")
# An answer phrase: "... answer is X" (an optional colon) or "答案是 X"
_PHRASE = re.compile(r"(?i)(?:(?<!\w)answer[^\S\n]+is(?!\w)|答案是)[^\S\n]*[:：]?")
# A label's value that opens with an answer phrase ("The final answer is $56$")
_OPENING_PHRASE = re.compile(
    r"(?i)[\s*]*(?:(?:the|my)[^\S\n]+)?(?:final[^\S\n]+)?(?:answer[^\S\n]+is(?!\w)|答案是)"
)
_SENTENCE_END = re.compile(r"\.\s|。")


def _strip_value(s: str, trailing: str = "$*") -> str:
    """``s`` without a leading run of whitespace, ``$`` and ``*`` and a trailing run of whitespace and
    ``trailing``, in one pass (it costs only the characters removed)."""
    i, j = 0, len(s)
    while i < j and (s[i] in "$*" or s[i].isspace()):
        i += 1
    while j > i and (s[j - 1] in trailing or s[j - 1].isspace()):
        j -= 1
    return s[i:j]


def _last_value(text: str, start: int, marker: re.Pattern, phrase: bool) -> str | None:
    """Value of the last ``marker`` that starts at or after ``start`` and has a non-empty value.

    A marker's value runs to the end of its line or the next marker, whichever comes first; a phrase's
    (``phrase=True``) also stops at the first sentence end, and loses a final ``.``. A label's value that
    opens with an answer phrase gives the phrase's value. Each character is read by at most one value, so
    the search is linear in ``len(text) - start``.
    """
    stop = len(text)
    for m in reversed(list(marker.finditer(text, start))):
        end = text.find("\n", m.end(), stop)
        end = stop if end < 0 else end
        stop = m.start()
        if phrase:
            cut = _SENTENCE_END.search(text, m.end(), end)
            value = _strip_value(text[m.end() : cut.start() if cut else end], "$*.")
        elif _OPENING_PHRASE.match(text, m.end(), end):
            value = _last_value(text[m.end() : end], 0, _PHRASE, phrase=True)
        else:
            value = _strip_value(text[m.end() : end])
        if value:
            return value
    return None


def extract_answer_line(text: str) -> str | None:
    """Value of the last answer label, ``Answer: ...`` (DAPO-Math-17k's requested format); None if absent.

    A label is ``Answer:``, ``Final Answer:``, ``**Answer**:`` or ``答案：`` (any case; ``:`` or ``：``), not
    inside a word (``myanswer:`` is none). Its value is the rest of the line, up to the next label if one
    follows on the line (``Answer: 3. Answer: 5`` gives ``5``); whitespace, ``$`` and ``*`` around it are
    stripped, and a value that opens with an answer phrase (``The final answer is $56$. I hope it is
    correct.``) gives the phrase's value (:func:`extract_answer_phrase`). A label with no value is skipped
    for an earlier one. Only labels that start in the last :data:`MAX_SEARCH_CHARS` characters are searched,
    in linear time.

    >>> extract_answer_line("work...\\nAnswer: 42"), extract_answer_line("Answer: 3. Answer: 5")
    ('42', '5')
    >>> extract_answer_line("Final Answer: The final answer is $56$. I hope it is correct.")
    '56'
    """
    _check_text(text)
    return _last_value(text, _search_start(text), _LABEL, phrase=False)


def extract_answer_phrase(text: str) -> str | None:
    r"""Value of the last answer phrase, ``... answer is X`` or ``答案是 X``; None if absent.

    The phrase is ``answer is`` as a word pair in any case (``The answer is``, ``the final answer is``), with
    an optional colon, or ``答案是``. Its value X runs to the first sentence end (``". "``, ``"。"``), the end of
    the line or the next phrase; whitespace, ``$`` and ``*`` around it and a final ``.`` are stripped
    (``the final answer is $\frac{1}{2}$. I hope it is correct.`` gives ``\frac{1}{2}``). A phrase with no
    value is skipped for an earlier one. Only phrases that start in the last :data:`MAX_SEARCH_CHARS`
    characters are searched, in linear time.

    >>> extract_answer_phrase("So the answer is 42."), extract_answer_phrase("答案是 5")
    ('42', '5')
    """
    _check_text(text)
    return _last_value(text, _search_start(text), _PHRASE, phrase=True)


_STYLES = ("auto", "boxed", "answer_line")


def extract_answer(text: str, style: str = "auto") -> str | None:
    r"""Extract the final answer of a response.

    Parameters
    ----------
    text : str
        The decoded response. Only its last :data:`MAX_SEARCH_CHARS` characters are searched.
    style : {"auto", "boxed", "answer_line"}
        ``"auto"`` takes the last box (:func:`extract_boxed`), else the last answer line
        (:func:`extract_answer_line`), else the last answer phrase (:func:`extract_answer_phrase`): the
        precedence of the module docstring. ``"boxed"`` and ``"answer_line"`` read only the one source.

    Returns
    -------
    str or None
        The raw answer string (not canonicalised), or None if unparseable.

    >>> extract_answer("Answer: 3\\n\\\\boxed{4}"), extract_answer("The answer is $7$.")
    ('4', '7')
    """
    _check_text(text)
    if not isinstance(style, str) or style not in _STYLES:  # an array would compare elementwise
        raise ValueError(
            f"style: must be one of 'auto', 'boxed', 'answer_line', got {_brief(style)}"
        )
    if style == "boxed":
        return extract_boxed(text)
    if style == "answer_line":
        return extract_answer_line(text)
    for extract in (extract_boxed, extract_answer_line, extract_answer_phrase):
        answer = extract(text)
        if answer is not None:
            return answer
    return None


def _strip_ends(s: str) -> str:
    """``s.strip().strip("$").rstrip(".")`` repeated until nothing changes, in one pass.

    The repetition removes exactly a leading run of whitespace and ``$`` and a trailing run of whitespace,
    ``$`` and ``.``; walking in from both ends costs only the characters removed.
    """
    i, j = 0, len(s)
    while i < j and (s[i] == "$" or s[i].isspace()):
        i += 1
    while j > i and (s[j - 1] in "$." or s[j - 1].isspace()):
        j -= 1
    return s[i:j]


_WRAP_TOKEN = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{|[{}]")


def _unwrap_text(s: str) -> str:
    r"""Remove ``\text{..}``, ``\textbf``, ``\mathrm`` and ``\mathbf`` wrappers whose content holds no braces
    once its own wrappers are removed: ``\text{\text{a}b}`` -> ``ab``, ``\text{a{b}}`` unchanged.

    One pass with a stack of open braces, linear in ``len(s)``. (Before, a regex removed the innermost wrappers
    and was repeated until nothing changed: quadratic in the nesting depth. The two agree except where removing
    a wrapper would join the text around it into a new one, as in ``\te\text{}xt{a}``; that one is kept.)
    """
    pieces: list[str] = []
    # one frame per open brace: [is a wrapper, index of its opener in pieces, a brace survives inside]
    frames: list[list] = []
    pos = 0
    for m in _WRAP_TOKEN.finditer(s):
        pieces.append(s[pos : m.start()])
        pos = m.end()
        token = m.group()
        if token != "}":
            frames.append([token != "{", len(pieces), False])
            pieces.append(token)
        elif not frames:
            pieces.append(token)  # an unmatched "}"
        else:
            wrapper, opener, braced = frames.pop()
            if wrapper and not braced:
                pieces[opener] = ""  # drop the wrapper and its closing brace
            else:
                pieces.append(token)
                if frames:
                    frames[-1][2] = True
    pieces.append(s[pos:])
    return "".join(pieces)


def canonicalize(answer: str | None) -> str | None:
    r"""Presentation-only normal form of an answer string (None stays None).

    Returns None for an answer that is empty once canonicalised, or longer than :data:`MAX_ANSWER_CHARS`
    (treated as unparseable). Linear time in the length of the answer. Canonical strings are fixed points
    (``canonicalize(canonicalize(a)) == canonicalize(a)``), except where removing a command joins its
    neighbours into a new one (``\le\leftft``, ``\\,,``): only one pass is made.

    >>> canonicalize(r" $\dfrac{1}{2}$. ")
    '\\frac{1}{2}'
    >>> canonicalize("1,000.50")
    '1000.5'
    """
    if answer is None:
        return None
    s = _check_text(answer, "answer")
    if len(s) > MAX_ANSWER_CHARS:
        return None
    if type(s) is str and s.isascii() and s.isdigit():  # a plain integer >= 0: its own normal form
        return s
    return _canonicalize_text(s)


class _Canonical(dict):
    """``str -> canonicalize(str)``, computed once per distinct string (a cache for one batch)."""

    def __missing__(self, text: str) -> str | None:
        value = self[text] = canonicalize(text)
        return value


def _canonicalize_text(s: str) -> str | None:
    """:func:`canonicalize` of a string of at most :data:`MAX_ANSWER_CHARS` characters, every rule applied."""
    s = _strip_ends(s)  # outer whitespace, $...$ and a trailing period, in any order
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "")
    s = _unwrap_text(s)
    s = _strip_ends(re.sub(r"\s+", "", s))  # again: removing a command can expose an end "$" or "."
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    if re.fullmatch(r"[+-]?\d+\.\d+", s):
        s = s.rstrip("0").rstrip(".")
    if s.startswith("+") and re.fullmatch(r"\+\d+(\.\d+)?", s):
        s = s[1:]
    if s in ("-0",):
        s = "0"
    return s if s else None


_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_FRAC_ARG = r"(?:\{([+-]?" + _NUMBER + r")\}|([0-9]))"  # {number}, or one digit as in \frac12
_RATIONAL = re.compile(
    r"([+-]?)(?:(" + _NUMBER + r")(?:/(" + _NUMBER + r"))?|\\frac" + _FRAC_ARG + _FRAC_ARG + ")"
)


def _exact(number: str) -> Fraction:
    """A signed decimal string (``-0.25``, ``3.``, ``.5``) as an exact fraction."""
    sign = -1 if number.startswith("-") else 1
    whole, _, decimals = number.lstrip("+-").partition(".")
    return Fraction(sign * int((whole or "0") + decimals), 10 ** len(decimals))


def _rational(canonical: str) -> Fraction | None:
    """The exact value of a canonical string that writes a rational number, else None."""
    m = _RATIONAL.fullmatch(canonical)
    if m is None or sum(c.isdigit() for c in canonical) > MAX_RATIONAL_DIGITS:
        return None
    sign, num, den, frac_num, frac_digit, frac_den, den_digit = m.groups()
    if num is not None:
        top, bottom = _exact(num), _exact(den) if den is not None else Fraction(1)
    else:
        top, bottom = _exact(frac_num or frac_digit), _exact(frac_den or den_digit)
    if bottom == 0:
        return None
    value = top / bottom
    return -value if sign == "-" else value


def equivalence_key(answer: str | None) -> str | None:
    r"""The key :func:`majority_vote` counts answers by under ``equivalence="canonical"`` (None stays None).

    The canonical string (:func:`canonicalize`), except that an answer writing a rational number is keyed
    by its exact value in lowest terms, ``"p/q"`` (or ``"p"`` for an integer): integers, decimals, ``a/b``
    and ``\frac{a}{b}`` (``\dfrac``, ``\tfrac`` and brace-less digits, ``\frac12``, included), signed, with
    decimal parts allowed in each number. Two answers get the same key exactly when their canonical strings
    are equal or they are the same rational number; nothing else is evaluated (``\sqrt{4}`` and ``2``
    differ, as do ``50\%`` and ``0.5``). A number of more than :data:`MAX_RATIONAL_DIGITS` digits, or over
    a zero denominator, keeps its canonical string. Linear time in the length of the answer.

    >>> [equivalence_key(a) for a in (r"\frac{1}{2}", "1/2", "0.5", r"\dfrac12", "2/4")]
    ['1/2', '1/2', '1/2', '1/2', '1/2']
    >>> equivalence_key("3.0"), equivalence_key("-06"), equivalence_key(r"\sqrt{2}")
    ('3', '-6', '\\sqrt{2}')
    """
    canonical = canonicalize(answer)
    return None if canonical is None else _canonical_key(canonical)


def _canonical_key(canonical: str) -> str:
    """:func:`equivalence_key` of an answer already canonicalised."""
    value = _rational(canonical)
    if value is None:
        return canonical
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


# ----------------------------------------------------------------------------------------------------------
# Math-Verify in worker processes, under a deadline
# ----------------------------------------------------------------------------------------------------------

# seconds for a new worker to import Math-Verify (about one on an idle machine)
_WORKER_START_TIMEOUT = 120.0
_WORKER_COMMAND = "from sharpen.answers import _math_verify_worker; _math_verify_worker()"


def _math_verify_worker() -> None:  # pragma: no cover - runs in the worker process
    """Main loop of a worker process: one JSON request ``[gold, pred, seconds]`` a line on stdin, ``1`` or ``0``
    a line on stdout.

    The worker runs Math-Verify on its main thread, under its own ``setitimer`` deadline of ``seconds``. The
    deadline raises Math-Verify's ``TimeoutException``, a ``BaseException`` that Math-Verify's ``except
    Exception`` blocks let through: a plain exception could be swallowed mid-parse and leave a partial parse.
    A computation in C ignores the timer; the parent then kills this process.
    """
    import logging
    import signal

    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    # timeouts are expected here: keep Math-Verify's warnings off stderr
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutException("sharpen: Math-Verify deadline")

    def check(gold: str, pred: str, seconds: float) -> bool:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            g = parse(f"${gold}$", parsing_timeout=None)
            p = parse(f"${pred}$", parsing_timeout=None)
            return bool(g and p and verify(g, p, timeout_seconds=None))
        except Exception:
            return False
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    signal.signal(signal.SIGALRM, on_alarm)
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the replies
    replies.write(b"ready\n")
    replies.flush()
    for line in sys.stdin.buffer:
        try:
            ok = check(*json.loads(line))
        except TimeoutException:  # the timer fired after check's own handler, e.g. in its finally
            ok = False
        replies.write(b"1\n" if ok else b"0\n")
        replies.flush()


class _Worker:
    """A worker process running :func:`_math_verify_worker`, and whether it has said ``ready`` yet."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_COMMAND],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env={**os.environ, "PYTHONPATH": path},
        )
        self.ready = False

    def read_line(self, timeout: float) -> bytes | None:
        """One line of the worker's output, stripped; None if none comes within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.proc.stdout], [], [], remaining)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 64)
            if not chunk:
                return None  # the worker died
            line += chunk
        return line.strip()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


_idle_workers: list[_Worker] = []  # started workers waiting for a request, the newest last
_idle_lock = threading.Lock()


def _take_worker() -> _Worker:
    """An idle worker, or a new one, ready for a request (a start may take up to ``_WORKER_START_TIMEOUT``)."""
    with _idle_lock:
        worker = _idle_workers.pop() if _idle_workers else None
    if worker is not None and worker.proc.poll() is not None:
        worker.kill()  # it died while idle
        worker = None
    if worker is None:
        worker = _Worker()
    if not worker.ready:
        if worker.read_line(_WORKER_START_TIMEOUT) != b"ready":
            worker.kill()
            raise RuntimeError(
                "math_verify: the Math-Verify worker process did not start (its error is on stderr)"
            )
        worker.ready = True
    return worker


def _math_verify_equal(gold: str, pred: str, timeout: float) -> bool:
    """Math-Verify's ``verify(parse(gold), parse(pred))`` in a worker process; False after ``timeout`` seconds."""
    if os.name != "posix":  # pragma: no cover - platform
        raise NotImplementedError("math_verify: the deadline on Math-Verify needs a POSIX system")
    if importlib.util.find_spec("math_verify") is None:  # pragma: no cover - environment
        raise ImportError(
            "math_verify=True needs the 'math-verify' package: pip install 'sharpen[math]'"
        )
    worker = _take_worker()
    try:
        worker.proc.stdin.write(json.dumps([gold, pred, 0.8 * timeout]).encode() + b"\n")
        reply = worker.read_line(timeout)
    except OSError:  # the worker died between requests
        reply = None
    if reply is None:  # past the deadline (or dead): kill it, and start its replacement now
        worker.kill()
        worker = _Worker()
    with _idle_lock:
        _idle_workers.append(worker)
    return reply == b"1"


def _stop_workers() -> None:
    with _idle_lock:
        workers = list(_idle_workers)
        _idle_workers.clear()
    for worker in workers:
        worker.kill()


def _forget_workers() -> None:
    """In a forked child: the parent's workers and lock are the parent's; start afresh."""
    global _idle_lock
    _idle_lock = threading.Lock()
    _idle_workers.clear()


atexit.register(_stop_workers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def equivalent(
    gold: Hashable | None,
    pred: Hashable | None,
    *,
    math_verify: bool = False,
    timeout: float = MATH_VERIFY_TIMEOUT,
) -> bool:
    """Whether ``pred`` answers ``gold``.

    Strings are compared after :func:`canonicalize`; other hashables (e.g. integer answer ids of the simulator)
    by ``==``. ``None`` (unparseable) is never equivalent to anything. With ``math_verify=True``, string pairs that
    differ canonically are checked symbolically by Math-Verify (``verify(gold, pred)``, gold first) in a worker
    process; the check is False if it does not finish within ``timeout`` seconds, on any thread (the first
    check of a process also waits about a second for the worker to start; see the module docstring).
    """
    if not isinstance(math_verify, bool | np.bool_):
        raise ValueError(f"math_verify: must be a bool, got {_brief(math_verify)}")
    seconds = _finite_float(timeout)
    if seconds is None or not seconds > 0:
        raise ValueError(f"timeout: must be a finite number > 0 (seconds), got {_brief(timeout)}")
    if gold is None or pred is None:
        return False
    if isinstance(gold, str) and isinstance(pred, str):
        g, p = canonicalize(gold), canonicalize(pred)
        if g is None or p is None:
            return False
        if g == p:
            return True
        return _math_verify_equal(g, p, seconds) if math_verify else False
    try:
        return bool(gold == pred)  # numpy scalars give np.bool_; arrays have no single truth value
    except (TypeError, ValueError):
        raise ValueError(
            f"gold, pred: a {type(gold).__name__} and a {type(pred).__name__} do not compare to "
            "one bool by ==; use hashable answers (str, int, tuple) or None"
        ) from None


@dataclass(frozen=True)
class Vote:
    r"""Result of :func:`majority_vote` over N answers.

    Attributes
    ----------
    answer : hashable or None
        The representative of the winning class (None if nothing parsed): its most frequent spelling, ties
        to the one seen first. A spelling is the canonical string (:func:`canonicalize`) at every
        ``equivalence`` but ``"exact"``, where it is the answer as given; non-strings are as given.
    count : int
        How many of the N answers are in the winning class.
    n : int
        N, the number of rollouts, unparseable ones included.
    n_parsed : int
        How many answers parsed.
    classes : tuple of N (int or None)
        The class of each answer, numbered 0, 1, ... in the order the classes are first seen; None for an
        unparseable answer. The winning class is the largest, ties to the lowest number (the first seen).
    """

    answer: Hashable | None
    count: int
    n: int
    n_parsed: int
    classes: tuple[int | None, ...] = ()

    @property
    def ratio(self) -> float:
        """``count / n`` -- TTRL's ``majority_ratio`` (unparseable answers stay in the denominator)."""
        return self.count / self.n

    @property
    def agrees(self) -> tuple[bool, ...]:
        r"""Whether each answer is in the winning class: the majority-voting reward
        :math:`\mathbb 1[\mathrm{ans}(y_i) \sim \mathrm{maj}(Y)]` of each rollout (all False if nothing parsed)."""
        sizes = Counter(c for c in self.classes if c is not None)
        if not sizes:
            return (False,) * len(self.classes)
        best = max(sizes.values())
        winner = min(c for c, k in sizes.items() if k == best)
        return tuple(c == winner for c in self.classes)


def _merge_by_math_verify(
    labels: list[int | None], keys: list[Hashable], timeout: float, max_classes: int
) -> list[int | None]:
    """``labels`` (a class per answer, ``keys[c]`` the key of class c) with classes that Math-Verify finds
    equal merged: the ``max_classes`` largest string classes (ties to the first seen), compared pairwise,
    the larger class as gold; pairs already merged and pairs of two rational numbers are not checked."""
    sizes = Counter(c for c in labels if c is not None)
    strings = (c for c in range(len(keys)) if isinstance(keys[c], str))
    ranked = sorted(strings, key=lambda c: (-sizes[c], c))[:max_classes]
    rational = {c: _rational(keys[c]) is not None for c in ranked}
    parent = list(range(len(keys)))

    def root(c: int) -> int:
        while parent[c] != c:
            c = parent[c]
        return c

    for x, gold in enumerate(ranked):
        for pred in ranked[x + 1 :]:
            if root(gold) == root(pred) or (rational[gold] and rational[pred]):
                continue  # distinct rationals are never equal
            if _math_verify_equal(keys[gold], keys[pred], timeout):
                parent[root(pred)] = root(gold)
    return [None if c is None else root(c) for c in labels]


def majority_vote(
    answers: Sequence[Hashable | None],
    *,
    canonical: bool = True,
    equivalence: str | None = None,
    timeout: float = MATH_VERIFY_TIMEOUT,
    max_classes: int = MAX_VERIFY_CLASSES,
) -> Vote:
    r"""Plurality vote over one group of N answers (TTRL's rule, see the module docstring).

    Parameters
    ----------
    answers : sequence of length N
        Answers (strings, ints, ...) with ``None`` for unparseable responses.
    canonical : bool
        The older switch, kept: True (default) is ``equivalence="presentation"``, False is ``"exact"``.
    equivalence : {"exact", "presentation", "canonical", "math_verify"}, optional
        What counts as one answer, for strings (other hashables are counted as they are, by ``==``):

        * ``"exact"``: equal strings.
        * ``"presentation"`` (the default, from ``canonical=True``): equal :func:`canonicalize` strings.
        * ``"canonical"``: equal :func:`equivalence_key`; ``\frac{1}{2}``, ``1/2``, ``0.5`` and ``\dfrac12``
          are one answer. Exact, and cheap: a regex and a ``Fraction`` per answer.
        * ``"math_verify"``: the ``"canonical"`` classes, merged where Math-Verify finds two of them equal.

        The module docstring says why the default is ``"presentation"``.
    timeout : float
        Seconds allowed to one Math-Verify check (``"math_verify"`` only; :data:`MATH_VERIFY_TIMEOUT`).
    max_classes : int
        How many classes Math-Verify compares (``"math_verify"`` only; :data:`MAX_VERIFY_CLASSES`).

    Returns
    -------
    Vote
        The winner's representative, its class size, N, the number parsed and each answer's class.

    Notes
    -----
    **Abstaining.** An unparseable answer (None, or a string that canonicalises to None) is in no class and
    stays in N: ``ratio = count / n``. If nothing parsed, the answer is None and the count 0.

    **Ties** go to the class seen first (the one whose earliest answer comes first), TTRL's rule.

    **Cost of "math_verify".** Of the K distinct string classes, the k = min(K, ``max_classes``) largest
    (ties to the first seen) are compared pairwise, the larger of the two as gold (``verify(gold, pred)``:
    the check is not symmetric), skipping pairs already merged and pairs of two rational numbers (distinct
    rationals are never equal): at most k (k - 1) / 2 checks, each within ``timeout`` seconds (the first of
    a process also waits for its worker to start), so at most 28 checks and 140 s with the defaults,
    30-80 ms a check in practice. Classes beyond the k largest are not merged. The merged classes are the
    connected components of the pairs Math-Verify accepts, whatever the order of the checks; a check that
    fails or runs out of time keeps the two classes apart.

    >>> v = majority_vote(["2", None, "3", "3", "2"])
    >>> v.answer, v.count, v.ratio
    ('2', 2, 0.4)
    >>> spellings = [r"\frac{1}{2}", "3", "1/2", "3", "0.5", r"\dfrac12"]
    >>> majority_vote(spellings).answer, majority_vote(spellings, equivalence="canonical").answer
    ('3', '\\frac{1}{2}')
    >>> majority_vote(spellings, equivalence="canonical").agrees
    (True, False, True, False, True, True)
    """
    if not isinstance(canonical, bool | np.bool_):
        raise ValueError(f"canonical: must be a bool, got {_brief(canonical)}")
    if equivalence is not None and (
        not isinstance(equivalence, str) or equivalence not in EQUIVALENCES
    ):
        raise ValueError(
            "equivalence: must be None or one of 'exact', 'presentation', 'canonical', 'math_verify', "
            f"got {_brief(equivalence)}"
        )
    if not canonical and equivalence not in (None, "exact"):
        raise ValueError(
            f"canonical, equivalence: canonical=False (exact strings) contradicts "
            f"equivalence={equivalence!r}; give one of the two"
        )
    seconds = _finite_float(timeout)
    if seconds is None or not seconds > 0:
        raise ValueError(f"timeout: must be a finite number > 0 (seconds), got {_brief(timeout)}")
    if (
        not isinstance(max_classes, int | np.integer)
        or isinstance(max_classes, bool | np.bool_)
        or max_classes < 1
    ):
        raise ValueError(f"max_classes: must be an int >= 1, got {_brief(max_classes)}")
    level = equivalence or ("presentation" if canonical else "exact")
    if isinstance(answers, str | bytes):
        raise ValueError(f"answers: expected a sequence of answers, got a {type(answers).__name__}")
    if not isinstance(answers, Sequence):
        try:
            answers = list(answers)
        except TypeError:
            raise ValueError(
                f"answers: expected a sequence of answers, got {type(answers).__name__}"
            ) from None
    n = len(answers)
    if n == 0:
        raise ValueError("answers: empty group")
    if level == "math_verify" and importlib.util.find_spec("math_verify") is None:
        raise ImportError(  # pragma: no cover - environment
            "equivalence: 'math_verify' needs the 'math-verify' package: pip install 'sharpen[math]'"
        )
    spellings: list[Hashable | None] = []
    class_of: dict[Hashable, int] = {}  # key -> class, in first-seen order
    labels: list[int | None] = []
    for a in answers:
        spelling = key = a
        if isinstance(a, str) and level != "exact":
            spelling = key = canonicalize(a)
            if level != "presentation" and spelling is not None:
                key = _canonical_key(spelling)
        spellings.append(spelling)
        labels.append(None if key is None else class_of.setdefault(key, len(class_of)))
    if level == "math_verify" and len(class_of) > 1:
        labels = _merge_by_math_verify(labels, list(class_of), seconds, int(max_classes))
    renumbered: dict[int, int] = {}
    classes = tuple(
        None if c is None else renumbered.setdefault(c, len(renumbered)) for c in labels
    )
    sizes = Counter(c for c in classes if c is not None)
    if not sizes:
        return Vote(answer=None, count=0, n=n, n_parsed=0, classes=classes)
    best = max(sizes.values())
    winner = min(c for c, k in sizes.items() if k == best)  # first seen among the tied
    tally: dict[Hashable, int] = {}  # spellings of the winning class, in first-seen order
    for spelling, c in zip(spellings, classes, strict=True):
        if c == winner:
            tally[spelling] = tally.get(spelling, 0) + 1
    top = max(tally.values())
    answer = next(s for s, k in tally.items() if k == top)
    return Vote(answer=answer, count=best, n=n, n_parsed=sum(sizes.values()), classes=classes)


def _exact_plurality(answers: Sequence[Hashable | None]) -> tuple[Hashable | None, int]:
    """``(vote.answer, vote.count)`` of ``majority_vote(answers, equivalence="exact")`` for a non-empty group
    of hashable answers, without its checks (for callers that checked them): the first-seen answer of the
    largest class of equal answers (ties to the class seen first); ``(None, 0)`` if every answer is None."""
    counts: dict[Hashable, int] = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    if not counts:
        return None, 0
    best = max(counts.values())
    return next(a for a, k in counts.items() if k == best), best


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
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    try:
        c = np.asarray(counts)
    except (TypeError, ValueError, OverflowError):  # ragged or too deeply nested lists
        raise ValueError("counts: expected a rectangular (G, K) array of counts") from None
    if c.ndim != 2:
        raise ValueError(f"counts: expected shape (G, K), got {c.shape}")
    if c.dtype.kind not in "biuf":
        raise ValueError(f"counts: expected integer counts, got dtype {c.dtype}")
    if c.dtype.kind == "f" and not (np.isfinite(c).all() and (c == np.round(c)).all()):
        raise ValueError("counts: expected integer counts, got non-integer or non-finite floats")
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
