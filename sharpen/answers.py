r"""The answer layer: extraction, canonicalisation, equivalence and the majority vote.

Conventions (shared by the rewards, the metrics and the theory):

* **Extraction.** :func:`extract_boxed` returns the content of the *last* ``\boxed{...}`` (braces may nest),
  :func:`extract_answer_line` the value of the last ``Answer: ...`` line (DAPO-Math's format).
  :func:`extract_answer` tries ``\boxed`` first, then the ``Answer:`` line. ``None`` means *unparseable*.
* **Canonicalisation.** :func:`canonicalize` removes presentation only (whitespace, ``$``, ``\left``/``\right``,
  ``\dfrac`` -> ``\frac``, ``\text{..}`` wrappers, thousands separators, trailing zeros of decimals, a trailing
  period), so that votes are not split by spelling. It never evaluates mathematics.
* **Equivalence.** :func:`equivalent` compares canonical strings; with ``math_verify=True`` it falls back to
  Math-Verify's symbolic check ``verify(gold, pred)`` (gold first: the check is not symmetric), run in a worker
  process under a deadline (see below).
* **Majority vote (TTRL's rule).** Unparseable answers are excluded from the vote but *counted in the
  denominator* of the majority ratio; ties go to the answer seen first. We keep TTRL's rule so that our
  ``majority_ratio`` and ``label_accuracy`` mean what TTRL's logs mean. For i.i.d. samples, first-seen
  tie-breaking is equal in law to uniform tie-breaking (the order of samples is exchangeable), which is the rule
  :func:`plurality_winners` and :func:`sharpen.theory.plurality_win_probs` use on counts.

Bad input
---------
Model output is adversarial input: it can be megabytes long, nest braces thousands deep or repeat ``\boxed{``
without closing it. Every function here does bounded work on any string, and says what it returns:

Errors are ``ValueError`` with a one-line message ``name: problem`` naming the argument, except the one
``TypeError`` below.

* **Not a string.** ``extract_boxed``, ``extract_answer_line``, ``extract_answer`` and ``parse_verdict`` raise
  ``ValueError("text: expected a str, got int")``; ``canonicalize`` the same with ``answer:`` (None it returns
  unchanged). ``equivalent`` compares non-strings by ``==`` (so ``"3"`` and ``3`` differ) and is False when
  either side is None; where ``==`` does not give one bool (a numpy array, or a numpy scalar against a list)
  it raises ``gold, pred:``. ``majority_vote`` counts non-string hashables as they are; an unhashable answer
  (a list, an array) raises ``TypeError`` (Python's ``unhashable type``), and ``answers`` that is a str,
  bytes or not iterable raises ``answers:``.
* **Options.** ``style`` other than the three names (any type: an array too); ``math_verify`` and
  ``canonical`` not bools; ``timeout`` not a finite number > 0 (bools, NaN, inf and strings included). ``plurality_winners``:
  ``counts`` not a (G, K) array of non-negative integer counts (bool, int or integral float; str, complex,
  NaN and fractions raise), ``rng`` not a ``numpy.random.Generator``.
* **Empty or blank.** Extraction returns None (``\boxed{ }``, ``Answer: $ $``); ``canonicalize`` returns None
  for a string that is empty once canonicalised (``""``, ``"$ $"``, ``"."``), so ``equivalent`` is False and the
  vote counts it as unparseable; ``parse_verdict`` returns 0.
* **Huge.** Extraction searches only the last :data:`MAX_SEARCH_CHARS` characters of a response: a ``\boxed``
  or an ``Answer:`` line that starts earlier is not seen. ``canonicalize`` returns None (unparseable) for an
  answer longer than :data:`MAX_ANSWER_CHARS` -- so ``equivalent`` is False even for two identical ones -- and
  a vote over N answers costs O(N * MAX_ANSWER_CHARS). Everything is linear in what it reads, and
  ``parse_verdict`` reads the whole text; a 1 MB string of any content returns in at most about 15 ms
  (measured on a shared 2-core machine; most in 1-3 ms).
* **Adversarial.** An unbalanced ``\boxed{`` is skipped for an earlier balanced one (``\boxed{1 and \boxed{2}``
  gives ``"2"``); a ``\text{`` that is never closed is kept as written.
* **Math-Verify** (``math_verify=True``). ``equivalent`` is False when Math-Verify cannot parse a side, raises,
  or has not answered within ``timeout`` seconds (default :data:`MATH_VERIFY_TIMEOUT`), power towers such as
  ``9^{9^{9}}`` and ``(10^7)!`` included, on the main thread and on any other. Math-Verify parses LaTeX into
  sympy and never evaluates an answer as Python (its plain-text fallback reads only digits and operators); it
  runs in a separate process anyway. Where it cannot parse an expression, Math-Verify falls back to the first
  number in it, so ``1+1+...+1`` with a thousand terms, or ``1+__import__(..)``, is "equivalent" to ``1``: its
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
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "MATH_VERIFY_TIMEOUT",
    "MAX_ANSWER_CHARS",
    "MAX_SEARCH_CHARS",
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

MAX_SEARCH_CHARS = 1 << 16
"""Extraction searches only the last 65,536 characters of a response (about 16k tokens).

Final answers come at the end, and the bound caps the work on a runaway generation: the whole search is
linear in this tail, whatever the length of the response."""

MAX_ANSWER_CHARS = 4096
""":func:`canonicalize` treats a longer answer as unparseable (None): no final answer is that long, and the
bound caps the cost of canonicalising, voting over and Math-Verifying model output."""

MATH_VERIFY_TIMEOUT = 5.0
"""Default deadline, in seconds, of one Math-Verify check in :func:`equivalent` (Math-Verify's own default)."""

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


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, braces balanced; None if absent.

    ``\boxed 5`` (no braces) yields the token after the space. A box whose ``{`` is never closed is skipped
    for an earlier one. Only the last :data:`MAX_SEARCH_CHARS` characters are searched; braces are matched in
    one pass over them, so the cost is linear in that tail (before, each unclosed box rescanned the text).

    >>> extract_boxed(r"so \boxed{1} or rather \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> extract_boxed("no box") is None
    True
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
    return None


# The value is the rest of the line, stripped afterwards: a lazy ``(.+?)`` followed by ``\s*$`` would be
# quadratic in a run of trailing spaces.
_ANSWER_LINE = re.compile(r"(?im)^[^\S\n]*\**answer\**[^\S\n]*:(.*)$")


def extract_answer_line(text: str) -> str | None:
    """Value of the last ``Answer: ...`` line (DAPO-Math-17k's requested format); None if absent.

    Surrounding whitespace and ``$`` are stripped; a line with no value is skipped for an earlier one. Only
    lines that start in the last :data:`MAX_SEARCH_CHARS` characters are searched, in linear time.

    >>> extract_answer_line("work...\\nAnswer: 42")
    '42'
    """
    _check_text(text)
    # pos= keeps "^" honest: it matches at the tail's start only if a line really starts there
    matches = list(_ANSWER_LINE.finditer(text, _search_start(text)))
    for m in reversed(matches):
        value = m.group(1).strip().strip("$").strip()
        if value:
            return value
    return None


_STYLES = ("auto", "boxed", "answer_line")


def extract_answer(text: str, style: str = "auto") -> str | None:
    r"""Extract the final answer of a response.

    Parameters
    ----------
    text : str
        The decoded response. Only its last :data:`MAX_SEARCH_CHARS` characters are searched.
    style : {"auto", "boxed", "answer_line"}
        ``"auto"`` tries the last ``\boxed{}`` first, then the last ``Answer:`` line.

    Returns
    -------
    str or None
        The raw answer string (not canonicalised), or None if unparseable.
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
    boxed = extract_boxed(text)
    return boxed if boxed is not None else extract_answer_line(text)


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
    if not isinstance(canonical, bool | np.bool_):
        raise ValueError(f"canonical: must be a bool, got {_brief(canonical)}")
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
