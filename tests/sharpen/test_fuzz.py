"""Fuzz profile: every public function of ``sharpen.answers``, ``rewards``, ``metrics``, ``theory`` and
``grpo`` on adversarial input, asserting only what each module's "Bad input" section documents.

Each call either returns a value that meets its documented postconditions (type, shape, range; no NaN;
finite where promised) or raises the documented error: a one-line ``ValueError`` whose message starts with
the argument at fault, ``name: problem`` (``sharpen.metrics`` writes ``name must ...``). Any other exception
fails the test, and so does a ``RuntimeWarning`` (an overflow or a NaN computed on the way): :func:`attempt`
turns warnings into errors. Documented exceptions to ``ValueError``: ``majority_vote`` raises ``TypeError``
for an unhashable answer, and user callables (``verifier``, ``reward_fn``, ``equivalent``) raise what they
raise. Where a valid input is easy to recognise, the test also checks that it is accepted.

Inputs: NaN, +-inf, subnormals, huge numbers, 0-d, empty and ragged arrays, odd dtypes (float16, bfloat16,
uint64, complex, str, bytes, datetime, object, big-endian), negative strides, torch tensors, deep nesting,
non-strings and long adversarial strings. Most inputs are a valid one with one part spoiled
(:func:`spoiled`), so that the checks deep inside a function are reached. Arrays come from a seeded numpy
generator (:func:`seeded_array`: one draw per array keeps an example cheap). Sizes are bounded (a few
elements, strings below ~80k characters), and counts that set how much work a call does (``k``, ``n``,
``max_iter``, ``batch_size``) are small valid values, bad values, or values over the documented limits --
never a huge valid count, which does that much work as asked.

Examples per test: the hypothesis profile ``fuzz`` of ``tests/conftest.py`` (the active profile's count;
10,000 under ``pytest --slow``; ``$FUZZ_EXAMPLES`` overrides both). Functions taking the same arguments
share a test, and each is called on every example. Not fuzzed: Math-Verify itself (a worker process per
check; ``test_answers_math_verify.py``), only ``equivalent``'s argument checks.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special

from sharpen import answers, grpo, metrics, rewards, theory

MODULES = (answers, rewards, metrics, theory, grpo)
RECORDS = {"sharpen.answers.Vote", "sharpen.metrics.CollapseStep", "sharpen.theory.SharpeningFit"}
"""Result records (no validation of their own), checked as the outputs of the functions that build them."""
_FUZZED: set[str] = set()


def fuzz(*functions: Callable, **strategies: st.SearchStrategy) -> Callable:
    """``@given(**strategies)`` under the ``fuzz`` profile, recorded as the fuzz test of ``functions``."""
    _FUZZED.update(f"{fn.__module__}.{fn.__qualname__}" for fn in functions)
    return lambda test: settings.get_profile("fuzz")(given(**strategies)(test))


# ----------------------------------------------------------------------------------------------------------
# Outcomes: a value, or a documented error
# ----------------------------------------------------------------------------------------------------------

_NEW_STYLE = re.compile(r"(?P<name>[A-Za-z_]\w*)(\[\d+\])?(, [A-Za-z_]\w*)*: \S")
_OLD_STYLE = re.compile(r"(?P<name>[A-Za-z_]\w*)(\[\d+\])?[ ,:]")


def attempt(
    fn: Callable,
    /,
    *args: Any,
    names: set[str] | frozenset[str],
    old_style: bool = False,
    errors: tuple[type[BaseException], ...] = (ValueError,),
    **kwargs: Any,
) -> tuple[bool, Any]:
    """``(True, fn(*args, **kwargs))``, or ``(False, exc)`` for a documented error.

    Only ``errors`` are caught; a ``ValueError`` must be one line starting with one of ``names``
    (``name: problem``; ``old_style``: ``name must ...``). RuntimeWarnings are raised as errors.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            return True, fn(*args, **kwargs)
        except errors as exc:
            if isinstance(exc, ValueError):
                message = str(exc)
                m = (_OLD_STYLE if old_style else _NEW_STYLE).match(message)
                assert m is not None, f"message not 'name: problem': {message!r}"
                assert m.group("name") in names, f"message names {m.group('name')!r}, not {names}"
                assert "\n" not in message.strip(), f"multi-line message: {message!r}"
            return False, exc


def real(x: Any, *, objects: bool = False) -> np.ndarray | None:
    """``x`` as float64 if it holds real numbers (bool, int, float dtypes; with ``objects``, also an object
    array of real numbers, as ``sharpen.theory`` accepts), else None."""
    if isinstance(x, torch.Tensor):
        return None if x.is_complex() else x.detach().double().numpy()
    if x is None or isinstance(x, str | bytes | dict | set | frozenset):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            a = np.asarray(x)
        except (TypeError, ValueError, OverflowError):  # ragged or too deep
            return None
    if a.dtype.kind == "O":
        if not (objects and all(isinstance(v, numbers.Real) for v in a.flat)):
            return None
    elif a.dtype.kind not in "biuf":
        return None
    try:
        return a.astype(np.float64)
    except OverflowError:  # a Python int beyond the float range
        return None


def numpy_of(x: Any) -> np.ndarray:
    return x.detach().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)


def no_nan(x: Any) -> bool:
    return not np.isnan(numpy_of(x)).any()


def positive_number(t: Any) -> bool:
    """A real number (not a bool), finite as a float and > 0: what every ``temperature`` / ``timeout`` is."""
    if isinstance(t, bool | np.bool_) or not isinstance(t, int | float | np.integer | np.floating):
        return False
    try:
        return math.isfinite(float(t)) and t > 0
    except OverflowError:
        return False


# ----------------------------------------------------------------------------------------------------------
# Strategies, one per kind of input
# ----------------------------------------------------------------------------------------------------------

SPECIALS = (0.0, -0.0, 1.0, -1.0, 0.5, math.nan, math.inf, -math.inf, 5e-324, 1e-308, 1e-300, 1e300, 1e308,
            1.7976931348623157e308, -1e308, 3e38, -3e38, 65504.0, 2.0**63, 1 - 2**-53, 2**-53)  # fmt: skip
SPECIAL_VALUES = st.sampled_from(SPECIALS)
FLOATS = st.floats() | SPECIAL_VALUES
NUMBERS = st.one_of(FLOATS, st.integers(-(2**70), 2**70), st.booleans())


def _deep(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


_SCALAR_JUNK = st.one_of(
    st.none(), NUMBERS, st.complex_numbers(), st.text(max_size=4), st.binary(max_size=3),
    st.sampled_from([np.float32(1.5), np.int64(3), np.bool_(True), np.float64("nan"), np.str_("1"), "1",
                     "nan", "", " ", Ellipsis, object, print]),
)  # fmt: skip
JUNK = st.one_of(
    _SCALAR_JUNK,
    st.lists(_SCALAR_JUNK, max_size=3),
    st.sampled_from([
        10**400, complex(math.nan, 1.0), "0.5", "\ud800", b"1", [], [[1], [1, 2]], [None], ["a", 1], [[[]]],
        (1, [2]), {}, {"a": 1}, set(), frozenset({1}), object(), range(3), np.array(3.0), np.array([]),
        np.array([[1, 2]]), np.array(["a"]), np.array([1 + 1j]), np.array([None], dtype=object),
        _deep(33, 0), _deep(65, 1.0), _deep(100, "a"), torch.tensor(1.0), torch.zeros(2, 0),
        torch.tensor([1 + 1j]),
    ]),
)  # fmt: skip
"""Anything: scalars of every kind, nested and ragged containers, 100-deep lists, odd arrays."""

NUMERIC_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int8, np.uint8, np.uint64,
                  np.bool_]  # fmt: skip
ODD_DTYPES = [np.complex128, np.dtype("<U2"), np.dtype("S2"), np.dtype(">f8"), np.dtype("m8[s]"),
              np.dtype("M8[D]"), np.dtype(object)]  # fmt: skip
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
SMALL_SHAPES = hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3)
VECTOR_SHAPES = st.tuples(st.integers(0, 6))
MODES = ("normal", "scaled", "ties", "unit", "binary", "special", "mixed")
SEEDS = st.integers(0, 2**32 - 1)
ANY_MODE = st.sampled_from(MODES)


def seeded_array(
    seed: int,
    shape: tuple,
    values: Any,
    dtype: Any = np.float64,
    view: int = 0,
    as_torch: bool = False,
) -> Any:
    """An array of ``shape`` from a seeded generator (cheap to draw).

    ``values``: a mode -- normal, scaled (times a random power of ten up to 1e+-300), ties (small
    integers), unit ([0, 1)), binary, special (:data:`SPECIALS`), mixed (normal with specials) -- or
    ``(lo, hi, specials, integers)``: uniform in [lo, hi] (integers if ``integers``), 30% ``specials``.
    ``view``: 0 as is, 1 reversed (negative strides), 2 transposed, 3 strided; ``as_torch``: a tensor
    where torch has the dtype.
    """
    rng = np.random.default_rng(seed)
    with np.errstate(all="ignore"):
        if isinstance(values, tuple):
            lo, hi, specials, integers = values
            base = (
                rng.integers(int(lo), int(hi) + 1, shape)
                if integers
                else rng.uniform(lo, hi, shape)
            )
            pick = rng.choice(np.asarray(specials, dtype=np.float64), shape)
            a = np.where(rng.random(shape) < 0.3, pick, base)
        elif values == "normal":
            a = rng.standard_normal(shape)
        elif values == "scaled":
            a = rng.uniform(-1, 1, shape) * 10.0 ** float(rng.integers(-320, 309))
        elif values == "ties":
            a = rng.integers(-2, 3, shape).astype(np.float64)
        elif values == "unit":
            a = rng.random(shape)
        elif values == "binary":
            a = rng.integers(0, 2, shape).astype(np.float64)
        elif values == "special":
            a = rng.choice(np.asarray(SPECIALS), shape)
        else:
            a = np.where(
                rng.random(shape) < 0.3,
                rng.choice(np.asarray(SPECIALS), shape),
                rng.standard_normal(shape),
            )
        dtype = np.dtype(dtype)
        if dtype.kind in "mM":
            a = rng.integers(-5, 5, shape).astype(dtype)
        elif dtype.kind == "O":
            a = np.array(a.tolist() if a.ndim else a.item(), dtype=object)
        else:
            a = np.asarray(a).astype(dtype)
    if a.ndim and view == 1:
        a = a[::-1]
    elif a.ndim > 1 and view == 2:
        a = a.T
    elif a.ndim and view == 3:
        a = np.repeat(a, 2, axis=0)[::2]
    return to_torch(a) if as_torch else a


def to_torch(a: np.ndarray) -> Any:
    """``a`` as a torch tensor where torch has the dtype (else ``a`` unchanged)."""
    try:
        return torch.from_numpy(np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="))))
    except (TypeError, ValueError, RuntimeError):
        return a


def arrays(
    dtypes: list = NUMERIC_DTYPES + ODD_DTYPES,
    shape: st.SearchStrategy = SHAPES,
    values: st.SearchStrategy = ANY_MODE,
    torch_too: bool = True,
) -> st.SearchStrategy[Any]:
    """Arrays (numpy, strided views, or tensors) of ``dtypes`` and ``shape``; see :func:`seeded_array`."""
    return st.builds(
        seeded_array,
        SEEDS,
        shape,
        values,
        st.sampled_from(dtypes),
        st.integers(0, 3),
        st.booleans() if torch_too else st.just(False),
    )


def numeric(
    valid: st.SearchStrategy,
    values: Any = ANY_MODE,
    shape: st.SearchStrategy = SMALL_SHAPES,
) -> st.SearchStrategy[Any]:
    """An argument that takes numbers: a ``valid`` scalar, a list of them, an array of ``values`` (a
    strategy of modes, or a range ``(lo, hi, specials, integers)``), or anything (odd dtypes, junk)."""
    values = st.just(values) if isinstance(values, tuple) else values
    return st.one_of(
        valid,
        st.lists(valid, max_size=6),
        arrays(NUMERIC_DTYPES, shape, values),
        NUMBERS,
        arrays(shape=shape),
        JUNK,
    )


CASTS = {"str": str, "complex": np.complex128, "object": object, "bigendian": np.dtype(">f8"),
         "int64": np.int64, "bool": np.bool_, "float16": np.float16, "float64": np.float64}  # fmt: skip
RESHAPES = {
    "ndim": lambda a: a[None],
    "flat": lambda a: a.reshape(-1),
    "empty": lambda a: a[:0] if a.ndim else a.reshape(0),
    "last0": lambda a: a[..., :0],
    "scalar": lambda a: a.reshape(-1)[:1].reshape(()) if a.size else a,
    "reverse": lambda a: a[::-1],
}
SPOILS = ("value", "zero_row", "bfloat16", "numpy", "list", "none", "junk", *CASTS, *RESHAPES)


@st.composite
def spoiled(draw: Callable, x: Any, bad: st.SearchStrategy = SPECIAL_VALUES) -> Any:
    """``x`` (a valid array or tensor) with one thing wrong: an entry set to a ``bad`` value, the first
    row zeroed, another shape, dtype or container, or anything at all. A tensor stays a tensor where
    torch has the dtype."""
    how = draw(st.sampled_from(SPOILS))
    if how in ("none", "junk"):
        return None if how == "none" else draw(JUNK)
    if isinstance(x, torch.Tensor):
        a = (x.float() if x.dtype == torch.bfloat16 else x).detach().cpu().numpy().copy()
    else:
        a = np.array(x)
    with np.errstate(all="ignore"):
        if how == "value" and a.size:
            value = draw(bad)
            keep = a.dtype.kind == "f" or (a.dtype.kind in "iu" and isinstance(value, int))
            a = a if keep else a.astype(np.float64)
            a.flat[draw(st.integers(0, a.size - 1))] = value
        elif how == "zero_row" and a.ndim:
            a[0] = 0
        elif how in RESHAPES and a.ndim:
            a = RESHAPES[how](a)
        elif how in CASTS or how == "bfloat16":
            a = a.astype(CASTS.get(how, np.float32))
    if how == "bfloat16":
        return torch.from_numpy(a).to(torch.bfloat16)
    if how == "list":
        return a.tolist()
    return to_torch(a) if isinstance(x, torch.Tensor) and how != "numpy" else a


# ----------------------------------------------------------------------------------------------------------
# sharpen.answers
# ----------------------------------------------------------------------------------------------------------

PIECES = [
    "\\boxed{", "\\boxed ", "\\fbox{", "{", "}", "Answer:", "**Answer**: ", " answer :", "\n", " ", "\t",
    "$", "\\text{", "\\textbf{", "\\mathrm{", "\\left(", "\\right)", "\\dfrac", "\\frac{1}{2}", "1", "-0",
    "+3", "1,000", "0.50", ".", ",", "true", "False", "\\boxed{True}", "\\boxed{ false }", "\\,", "\\!",
    "^\\circ", "é", "\u200b", "\u3000", "\x00", "\x1c", "\U0001f600", "\ud800", "The answer is ",
    "Final Answer:", "答案是", "答案：", "。", ". ", "\\boxed5", "\\frac12", "1/2",
]  # fmt: skip
SHORT_TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=12).map("".join),
)
LONG_TEXT = st.tuples(
    st.sampled_from(PIECES + ["x" * 5000]).flatmap(
        lambda p: st.integers(0, 80_000 // len(p)).map(p.__mul__)
    ),
    st.lists(st.sampled_from(PIECES), max_size=6).map("".join),
).map("".join)
"""A piece repeated up to 80k characters (beyond MAX_SEARCH_CHARS: thousands of unclosed boxes), then a tail."""
TEXTS = SHORT_TEXT | LONG_TEXT
STYLES = ("auto", "boxed", "answer_line")


@fuzz(
    answers.extract_boxed,
    answers.extract_answer_line,
    answers.extract_answer_phrase,
    answers.extract_answer,
    answers.parse_verdict,
    answers.canonicalize,
    answers.equivalence_key,
    text=st.none() | TEXTS | JUNK,
    style=st.sampled_from(STYLES) | JUNK | arrays(torch_too=False),
)
def test_fuzz_text(text, style):
    """Extraction and canonicalisation of any text (model output: long, nested, unclosed)."""
    ok, canonical = attempt(answers.canonicalize, text, names={"answer"})
    assert ok == (text is None or isinstance(text, str))
    if ok and canonical is not None:
        assert (
            isinstance(canonical, str) and canonical and len(canonical) <= answers.MAX_ANSWER_CHARS
        )
        assert len(text) <= answers.MAX_ANSWER_CHARS and re.search(r"\s", canonical) is None
        if "\\" not in text:  # a normal form (removing a command may join its neighbours: one pass)
            assert answers.canonicalize(canonical) == canonical
    ok_k, key = attempt(answers.equivalence_key, text, names={"answer"})
    assert ok_k == ok and (not ok or (key is None) == (canonical is None))
    if ok_k and key is not None:  # the canonical string, or a rational in lowest terms
        assert key == canonical or re.fullmatch(r"-?[0-9]+(/[0-9]+)?", key)
    names = {"text", "style"}
    ok_b, boxed = attempt(answers.extract_boxed, text, names=names)
    ok_l, line = attempt(answers.extract_answer_line, text, names=names)
    ok_p, phrase = attempt(answers.extract_answer_phrase, text, names=names)
    ok_a, ans = attempt(answers.extract_answer, text, style, names=names)
    ok_v, verdict = attempt(answers.parse_verdict, text, names=names)
    if not isinstance(text, str):
        assert not (ok_b or ok_l or ok_p or ok_a or ok_v)  # "text: expected a str"
        return
    assert ok_b and ok_l and ok_p and ok_v
    for value in (boxed, line, phrase):
        assert value is None or (isinstance(value, str) and value and value == value.strip())
        assert value is None or value in text
    assert line is None or "\n" not in line
    assert phrase is None or "\n" not in phrase
    assert type(verdict) is int and verdict in (0, 1)
    assert ok_a == (isinstance(style, str) and style in STYLES)
    if ok_a:  # auto: the box, else the answer label, else the answer phrase
        auto = boxed if boxed is not None else line if line is not None else phrase
        assert ans == {"boxed": boxed, "answer_line": line, "auto": auto}[style]


ANSWER_VALUES = st.one_of(
    st.none(),
    SHORT_TEXT,
    st.sampled_from(
        ["1", " 1 ", "$1$", "1.0", "1,000", "1000", "\\dfrac{1}{2}", "\\frac{1}{2}", "x" * 5000]
    ),
    st.integers(),
    FLOATS,
    st.tuples(st.integers(0, 2)),
    st.lists(st.integers(0, 2), max_size=2),
    hnp.arrays(np.int64, st.integers(0, 3), elements=st.integers(0, 2)),
    st.sampled_from([np.int64(1), np.float64("nan"), np.str_("1"), b"1", {"a": 1}, True]),
)
"""One answer: None, a string, a number, or something unhashable or without a one-bool ``==``."""


@fuzz(
    answers.equivalent,
    gold=ANSWER_VALUES,
    pred=ANSWER_VALUES,
    math_verify=st.sampled_from([False, np.False_, True, np.True_]) | JUNK,
    timeout=st.floats(0.01, 100) | NUMBERS | JUNK,
)
def test_fuzz_equivalent(gold, pred, math_verify, timeout):
    valid_flag = isinstance(math_verify, bool | np.bool_)
    if valid_flag and math_verify and positive_number(timeout):
        math_verify = False  # a real Math-Verify check: see test_answers_math_verify.py
    names = {"gold", "pred", "math_verify", "timeout"}
    ok, out = attempt(
        answers.equivalent, gold, pred, math_verify=math_verify, timeout=timeout, names=names
    )
    if not (valid_flag and positive_number(timeout)):
        assert not ok
        return
    if not ok:  # only answers whose == is not one bool (arrays, a numpy scalar against a list)
        with pytest.raises((TypeError, ValueError)):
            bool(gold == pred)
        return
    assert type(out) is bool
    if gold is None or pred is None:
        assert out is False
    elif isinstance(gold, str) and isinstance(pred, str):
        g, p = answers.canonicalize(gold), answers.canonicalize(pred)
        assert out == (g is not None and g == p)


VOTE_GROUPS = st.one_of(
    st.lists(ANSWER_VALUES, max_size=8),
    st.lists(ANSWER_VALUES, max_size=8).map(tuple),
    st.lists(ANSWER_VALUES, max_size=5).map(iter),
    hnp.arrays(st.sampled_from([np.int64, "<U2", np.float64, np.bool_]), SHAPES),
    JUNK,
)


@fuzz(
    answers.majority_vote,
    group=VOTE_GROUPS,
    canonical=st.booleans() | JUNK,
    equivalence=st.none() | st.sampled_from(["exact", "presentation", "canonical"]) | JUNK,
    max_classes=st.integers(-1, 10) | JUNK,
)
def test_fuzz_majority_vote(group, canonical, equivalence, max_classes):
    """Every level but "math_verify", whose checks run in a worker (``test_answers_vote.py``)."""
    ok, vote = attempt(
        answers.majority_vote,
        group,
        canonical=canonical,
        equivalence=equivalence,
        max_classes=max_classes,
        names={"answers", "canonical", "equivalence", "canonical, equivalence", "max_classes"},
        errors=(ValueError, TypeError),
    )
    if not ok:
        if isinstance(vote, TypeError):
            assert "unhashable" in str(vote)  # documented: an unhashable answer raises TypeError
        return
    assert isinstance(vote, answers.Vote)
    assert 0 <= vote.count <= vote.n_parsed <= vote.n and vote.n >= 1
    assert (vote.answer is None) == (vote.count == 0) == (vote.n_parsed == 0)
    assert 0.0 <= vote.ratio <= 1.0
    assert len(vote.classes) == len(vote.agrees) == vote.n
    assert vote.n - vote.classes.count(None) == vote.n_parsed and sum(vote.agrees) == vote.count
    seen = [c for c in vote.classes if c is not None]
    firsts = [c for i, c in enumerate(seen) if c not in seen[:i]]
    assert firsts == list(range(len(firsts)))  # numbered 0, 1, ... in first-seen order


@fuzz(
    answers.plurality_winners,
    counts=numeric(
        st.integers(0, 4),
        (0, 4, (0.0, 4.0), True),
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=5),
    ),
    rng=SEEDS.map(np.random.default_rng) | JUNK,
)
def test_fuzz_plurality_winners(counts, rng):
    ok, winners = attempt(answers.plurality_winners, counts, rng, names={"counts", "rng"})
    if not ok:
        return
    c = real(counts)
    assert isinstance(rng, np.random.Generator) and c is not None and c.ndim == 2
    assert isinstance(winners, np.ndarray) and winners.dtype == np.int64
    assert winners.shape == (c.shape[0],)
    for g, w in enumerate(winners):
        if c[g].max() == 0:
            assert w == -1
        else:
            assert 0 <= w < c.shape[1] and c[g, w] == c[g].max()


# ----------------------------------------------------------------------------------------------------------
# sharpen.rewards
# ----------------------------------------------------------------------------------------------------------


def one_of_or_junk(options: tuple) -> st.SearchStrategy:
    return st.sampled_from(options) | JUNK | arrays(torch_too=False)


@fuzz(
    rewards.RewardSpec,
    unit=one_of_or_junk(rewards._UNITS),
    anchor=one_of_or_junk(rewards._ANCHORS),
    sign=st.sampled_from([1, -1, 1.0, -1.0, np.int64(-1)])
    | NUMBERS
    | JUNK
    | arrays(torch_too=False),
    transform=one_of_or_junk(rewards._TRANSFORMS),
    aggregate=one_of_or_junk(rewards._AGGREGATES),
)
def test_fuzz_reward_spec(unit, anchor, sign, transform, aggregate):
    names = {"unit", "anchor", "sign", "transform", "aggregate"}
    ok, spec = attempt(rewards.RewardSpec, unit, anchor, sign, transform, aggregate, names=names)

    def member(x: Any, options: tuple) -> bool:
        return isinstance(x, str) and x in options

    valid = (
        member(unit, rewards._UNITS)
        and member(anchor, rewards._ANCHORS)
        and member(transform, rewards._TRANSFORMS)
        and member(aggregate, rewards._AGGREGATES)
        and isinstance(sign, int | float | np.integer | np.floating)
        and not isinstance(sign, bool | np.bool_)
        and sign in (1, -1)
        and not (unit == "sequence" and anchor != "sampled")
        and not (unit == "answer" and anchor not in ("sampled", "majority"))
        and not (anchor == "majority" and unit != "answer")
    )
    assert ok == valid
    if ok:
        assert spec.needs_logits == (unit in ("token", "sequence"))


FIELDS = (
    "logits",
    "logprobs",
    "tokens",
    "mask",
    "answers",
    "groups",
    "labels",
    "responses",
    "prompts",
)
FIELD_VALUES = st.one_of(
    st.none(),
    arrays(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
    st.lists(st.integers(0, 2) | st.none() | SHORT_TEXT, max_size=4),
    SHORT_TEXT,
    JUNK,
)


@fuzz(
    rewards.Rollouts,
    fields=st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, FIELD_VALUES)),
    temperature=st.floats(0.1, 10.0) | NUMBERS | JUNK,
    change=st.tuples(st.sampled_from(FIELDS + ("temperature", "foo", "batch_size")), FIELD_VALUES),
)
def test_fuzz_rollouts(fields, temperature, change):
    names = set(FIELDS) | {"temperature", "Rollouts"}
    ok, r = attempt(rewards.Rollouts, temperature=temperature, **fields, names=names)
    if not ok:
        return
    assert type(r.batch_size) is int and r.batch_size >= 1
    key, value = change
    ok, r2 = attempt(r.replace, **{key: value}, names=names | {key})
    if ok:
        assert key in FIELDS + ("temperature",)
        assert type(r2.batch_size) is int and r2.batch_size >= 1


@st.composite
def token_batches(draw: Callable) -> tuple[rewards.Rollouts, dict[str, Any], str]:
    """A valid token-level batch (logits at extreme scales and temperatures, or log-probs; numpy or
    torch) and changes that may spoil one field: ``(rollouts, changes, what)``."""
    inputs = draw(st.sampled_from(("logits", "logprobs")))
    b, t, v = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(SEEDS))
    if inputs == "logits":
        temperature = draw(
            st.sampled_from((1.0, 1e-300, 1e-30, 1e-3, 1e3, 1e300)) | st.floats(0.01, 100)
        )
        scale = draw(st.sampled_from((8.0, 1e4, 1e30, 3e38)))
    else:
        temperature, scale = draw(st.sampled_from((1.0, 1e-3, 1e3))), 8.0
    if draw(st.booleans()):
        z = (rng.uniform(-1, 1, (b, t, v)) * scale).astype(np.float32)
    else:
        z = rng.integers(-1, 2, (b, t, v)).astype(np.float32)  # ties
    lengths = rng.integers(1, t + 1, b)
    mask_dtype = draw(st.sampled_from((bool, np.int64, np.float32)))
    fields = {
        "tokens": rng.integers(0, v, (b, t)),
        "mask": (np.arange(t) < lengths[:, None]).astype(mask_dtype),
    }
    if inputs == "logits":
        fields["logits"] = z
    else:
        zz = z.astype(np.float64) / temperature
        fields["logprobs"] = (zz - special.logsumexp(zz, axis=-1, keepdims=True)).astype(np.float32)
    if draw(st.booleans()):
        fields = {k: torch.from_numpy(np.ascontiguousarray(x)) for k, x in fields.items()}
    r = rewards.Rollouts(temperature=float(temperature), **fields)
    what = draw(
        st.sampled_from(("nothing", "nothing", inputs, "tokens", "mask", "temperature", "drop"))
    )
    bad = {"tokens": st.sampled_from((-1, v)), "mask": st.sampled_from((2, 0.5, math.nan))}
    if what in (inputs, "tokens", "mask"):
        changes = {what: draw(spoiled(getattr(r, what), bad.get(what, SPECIAL_VALUES)))}
    elif what == "temperature":
        changes = {"temperature": draw(NUMBERS | JUNK)}
    elif what == "drop":
        changes = {inputs: None, "answers": ["x"] * b}
    else:
        changes = {}
    return r, changes, what


def source(r: rewards.Rollouts) -> Any:
    return r.logits if r.logits is not None else r.logprobs


def moderate(r: rewards.Rollouts) -> bool:
    """Rewards are promised finite here: finite |z / temperature| <= 1e30 (log-probs: |lp| <= 1e30)."""
    a = real(source(r))
    if a is None or a.ndim != 3 or a.size == 0 or not np.isfinite(a).all():
        return False
    return float(np.abs(a).max()) / (1.0 if r.logits is None else r.temperature) <= 1e30


TOKEN_SPECS = (
    rewards.SELF_CERTAINTY,
    rewards.TOKEN_ENTROPY,
    rewards.TRAJECTORY_ENTROPY,
    rewards.PROBABILITY,
)
TOKEN_NAMES = frozenset(
    {"logits", "logprobs", "tokens", "mask", "temperature", "spec", "h", "log_space", "Rollouts"}
)


@fuzz(
    rewards.score,
    rewards.token_cross_entropies,
    rewards.token_entropies,
    rewards.token_logprobs,
    rewards.aggregate_cross_entropies,
    metrics.mean_token_entropy,
    metrics.response_length,
    case=token_batches(),
    spec=st.sampled_from(TOKEN_SPECS),
    log_space=st.sampled_from([False, True, np.True_]) | JUNK,
    data=st.data(),
)
def test_fuzz_token_rewards(case, spec, log_space, data):
    """The token-level rewards, and the token metrics of sharpen.metrics on the same batches."""
    r0, changes, what = case
    ok, r = attempt(r0.replace, **changes, names=TOKEN_NAMES)
    if what == "temperature":
        assert ok == positive_number(changes["temperature"])
    # a spoiled field that Rollouts refused: the functions taking Rollouts get the valid batch
    r = r if ok else r0
    b, src, finite_case = r.batch_size, source(r), moderate(r)
    valid_flag = isinstance(log_space, bool | np.bool_)

    ok, out = attempt(rewards.score, spec, r, log_space=log_space, names=TOKEN_NAMES)
    if ok:
        assert valid_flag and out.shape == (b,) and no_nan(out), spec
        assert isinstance(out, torch.Tensor) == isinstance(src, torch.Tensor)
    if ok and finite_case:
        v = numpy_of(out)
        assert np.isfinite(v).all(), f"{spec}: non-finite reward on moderate input"
        tol = 5e-3 + 1e-5 * np.abs(v)
        log_v = math.log(np.shape(src)[-1])
        if spec is rewards.TOKEN_ENTROPY:
            assert (v >= -log_v - tol).all() and (v <= tol).all()
        elif spec is rewards.SELF_CERTAINTY:
            assert (v >= log_v - tol).all()
        elif spec is rewards.TRAJECTORY_ENTROPY or log_space:
            assert (v <= tol).all()
        else:
            assert ((v >= 0) & (v <= 1 + 1e-6)).all()

    ok, hm = attempt(rewards.token_cross_entropies, spec, r, names=TOKEN_NAMES)
    if ok:
        h, m = hm
        assert h.shape == m.shape == (b, np.shape(src)[1]) and m.dtype == torch.bool
        assert no_nan(h) and (h[~m] == 0).all() and (numpy_of(h) >= -5e-3).all()
    if ok and data.draw(st.booleans(), label="aggregate the h above"):
        h2, mask2, spec2 = h, r.mask, spec
    else:  # per-token cross-entropies from elsewhere (veRL): any array, any mask
        h2 = data.draw(
            arrays(values=st.sampled_from(("unit", "scaled", "special", "mixed"))) | JUNK, label="h"
        )
        mask2 = data.draw(
            st.none() | arrays(dtypes=[np.bool_, np.int64, np.float64]) | JUNK, label="mask"
        )
        spec2 = data.draw(st.sampled_from(tuple(rewards.PRESETS.values())) | JUNK, label="spec")
    ok, agg = attempt(
        rewards.aggregate_cross_entropies, spec2, h2, mask2, log_space=log_space, names=TOKEN_NAMES
    )
    if ok:
        assert isinstance(spec2, rewards.RewardSpec) and spec2.needs_logits and valid_flag
        assert agg.shape == (np.shape(h2)[0],) and no_nan(agg)

    # token_entropies / token_logprobs take the raw (maybe spoiled) arrays
    raw = changes.get("logits", changes.get("logprobs", source(r0)))
    tokens, temperature = (
        changes.get("tokens", r0.tokens),
        changes.get("temperature", r0.temperature),
    )
    ok, ent = attempt(rewards.token_entropies, raw, temperature, names=TOKEN_NAMES)
    if ok:
        assert ent.shape == np.shape(raw)[:2] and no_nan(ent)
        if finite_case and raw is src:
            assert (numpy_of(ent) >= -5e-3).all() and (
                numpy_of(ent) <= math.log(np.shape(raw)[-1]) + 5e-3
            ).all()
    ok, lp = attempt(rewards.token_logprobs, raw, tokens, temperature, names=TOKEN_NAMES)
    if ok:
        assert lp.shape == np.shape(raw)[:2] and no_nan(lp) and (numpy_of(lp) <= 5e-3).all()
    a = real(raw)
    if a is not None and a.size and not np.isfinite(a).all():
        assert not ok, "NaN or inf logits are accepted"

    # sharpen.metrics on the same batch, maybe with another mask or temperature
    mask = data.draw(st.none() | arrays() | JUNK, label="metrics mask")
    t = data.draw(st.none() | NUMBERS | JUNK, label="metrics temperature")
    m, t = (r.mask if mask is None else mask), (r.temperature if t is None else t)
    ok, v = attempt(
        metrics.mean_token_entropy,
        src,
        m,
        t,
        names={"logits", "mask", "temperature"},
        old_style=True,
    )
    if ok:
        assert type(v) is float and not math.isnan(v)
        if moderate(r.replace(temperature=t)):
            assert -5e-3 <= v <= math.log(np.shape(src)[-1]) + 5e-3
    ok, v = attempt(metrics.response_length, m, names={"mask"}, old_style=True)
    if ok:
        assert type(v) is float and 0.0 <= v <= np.shape(m)[1]


VERIFIERS = {
    "ones": lambda r: np.ones(r.batch_size),
    "bools": lambda r: [True] * r.batch_size,
    "torch": lambda r: torch.zeros(r.batch_size),
    "twos": lambda r: np.full(r.batch_size, 2.0),
    "nan": lambda r: np.full(r.batch_size, np.nan),
    "shape": lambda r: np.ones(r.batch_size + 1),
    "str": lambda r: ["yes"] * r.batch_size,
    "none": lambda r: None,
    "ragged": lambda r: [[1], [1, 2]],
    "complex": lambda r: np.ones(r.batch_size) * 1j,
    "dict": lambda r: {},
}


@st.composite
def answer_batches(draw: Callable) -> rewards.Rollouts:
    """Answer-level Rollouts (answers with None, interleaved groups, labels constant per group), maybe
    with one field spoiled."""
    b = draw(st.integers(1, 6))
    group_ids = draw(st.lists(st.integers(0, 2), min_size=b, max_size=b))
    answers_ = draw(st.lists(st.none() | st.sampled_from(("0", "1", "2")), min_size=b, max_size=b))
    r = rewards.Rollouts(answers=answers_, groups=group_ids, labels=[str(g) for g in group_ids])
    entries = st.lists(ANSWER_VALUES, min_size=b, max_size=b)
    what = draw(st.sampled_from(("nothing", "answers", "groups", "labels", "all_none")))
    if what in ("answers", "labels"):
        r = r.replace(**{what: draw(entries)})
    elif what == "groups":
        groups = draw(
            st.lists(
                st.integers(0, 2) | st.sampled_from(([0], None, "g", math.nan)),
                min_size=b,
                max_size=b,
            )
        )
        as_array = draw(st.booleans()) and all(isinstance(g, int) for g in groups)
        r = r.replace(groups=np.asarray(groups) if as_array else groups)
    elif what == "all_none":
        r = r.replace(answers=[None] * b)
    return r


@fuzz(
    rewards.get_reward,
    r=answer_batches(),
    log_space=st.booleans(),
    verifier=st.sampled_from(sorted(VERIFIERS)),
)
def test_fuzz_answer_rewards(r, log_space, verifier):
    names = {"answers", "groups", "labels", "verifier", "log_space", "answers, labels"}
    b = r.batch_size
    parsed = np.array(
        [
            a is not None and not (isinstance(a, str) and answers.canonicalize(a) is None)
            for a in r.answers
        ]
    )
    for name in ("majority_voting", "vote_share"):
        ok, out = attempt(rewards.get_reward(name, log_space=log_space), r, names=names)
        if not ok:
            continue
        assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (b,)
        assert no_nan(out)
        if log_space:
            assert (out <= 0).all() and np.isneginf(out[~parsed]).all()
        else:
            assert ((out >= 0) & (out <= 1)).all() and (out[~parsed] == 0).all()
        if name == "majority_voting":
            assert np.isin(out, (0.0, -np.inf) if log_space else (0.0, 1.0)).all()
    ok, out = attempt(rewards.get_reward("ground_truth"), r, names=names)
    if ok:
        assert out.shape == (b,) and np.isin(out, (0.0, 1.0)).all()
    reward = rewards.get_reward("self_verification", verifier=VERIFIERS[verifier])
    ok, out = attempt(reward, r, names=names)
    assert ok == (verifier in ("ones", "bools", "torch"))
    if ok:
        assert out.shape == (b,) and np.isin(out, (0.0, 1.0)).all()


NOT_SIZES = (0, -1, 1.0, 2.5, True, np.int64(-2), math.nan, None, "3", [3], b"", print)
"""Bad values for an integer that sets how much work a call does (a step or batch count)."""


# found by the fuzzing: an option named like attempt()'s own parameter (the test's bug)
@example("ground_truth", {"fn": None}, "good", None, 0)
@fuzz(
    rewards.get_reward,
    rewards.available_rewards,
    rewards.register_reward,
    rewards.group_indices,
    name=st.sampled_from(rewards.available_rewards()) | SHORT_TEXT | JUNK,
    options=st.dictionaries(
        st.sampled_from(["aggregate", "log_space", "math_verify", "verifier", "foo"])
        | st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
        st.sampled_from(["mean", "sum", True, False, np.True_, None, print, lambda r: 0]) | JUNK,
        max_size=3,
    ),
    factory=st.sampled_from(["good", "none", "int", "str"]),
    groups=st.none()
    | st.lists(st.integers(0, 2) | JUNK, max_size=6)
    | arrays()
    | SHORT_TEXT
    | JUNK,
    batch_size=st.integers(-2, 6) | st.sampled_from(NOT_SIZES + (2**63, 2**70)),
)
def test_fuzz_registry(name, options, factory, groups, batch_size):
    names = {"name", "factory", "verifier"} | set(options)  # self_verification requires a verifier
    valid = rewards.available_rewards()
    assert isinstance(valid, tuple) and list(valid) == sorted(valid)
    ok, fn = attempt(lambda: rewards.get_reward(name, **options), names=names)  # options: any names
    if ok:
        assert callable(fn) and name in valid
    else:
        assert not (
            isinstance(name, str) and name in valid and not options and name != "self_verification"
        )

    fresh = isinstance(name, str) and name and name not in rewards._REGISTRY
    make = {"good": lambda: lambda r: np.zeros(r.batch_size), "none": None, "int": 3, "str": "f"}[
        factory
    ]
    try:
        ok, decorator = attempt(rewards.register_reward, name, names=names)
        assert ok == (isinstance(name, str) and bool(name))
        if ok:
            ok, returned = attempt(decorator, make, names=names)
            assert ok == (bool(fresh) and factory == "good")
            if ok:
                assert returned is make and callable(rewards.get_reward(name))
    finally:
        if fresh:
            rewards._REGISTRY.pop(name, None)

    ok, idx = attempt(rewards.group_indices, groups, batch_size, names={"groups", "batch_size"})
    if ok:
        assert isinstance(batch_size, int | np.integer) and not isinstance(batch_size, bool)
        assert all(isinstance(i, np.ndarray) and i.dtype == np.int64 for i in idx)
        flat = np.sort(np.concatenate(idx)) if idx else np.zeros(0, dtype=np.int64)
        assert (flat == np.arange(batch_size)).all()


@fuzz(
    rewards.register_reward,
    rewards.reward_info,
    rewards.available_rewards,
    rewards.RewardInfo,
    name=st.sampled_from(rewards.available_rewards()) | SHORT_TEXT | JUNK,
    level=st.none() | st.sampled_from([*rewards.LEVELS, "sequence"]) | JUNK,
    needs=st.none()
    | st.lists(st.sampled_from([*rewards.NEEDS, "weights"]), max_size=3)
    | SHORT_TEXT
    | JUNK,
    spec=st.none() | st.sampled_from(list(rewards.PRESETS.values())) | JUNK,
    description=st.sampled_from(["", "a reward"]) | JUNK,
)
def test_fuzz_registry_metadata(name, level, needs, spec, description):
    known = isinstance(name, str) and name in rewards.available_rewards()
    ok, info = attempt(rewards.reward_info, name, names={"name"})
    assert ok == known and (not ok or (isinstance(info, rewards.RewardInfo) and info.name == name))
    ok, listed = attempt(rewards.available_rewards, level, names={"level"})
    assert ok == (level is None or (isinstance(level, str) and level in rewards.LEVELS))
    if ok and level is not None:
        assert all(rewards.reward_info(n).level == level for n in listed)

    fresh = isinstance(name, str) and bool(name) and not known
    names = {"name", "level", "needs", "spec", "description", "factory"}
    try:
        ok, out = attempt(rewards.register_reward, name, level=level, needs=needs, spec=spec,
                          description=description, names=names)  # fmt: skip
        if ok and spec is None:  # the decorator form
            ok, _ = attempt(out, lambda: lambda r: np.zeros(r.batch_size), names=names)
            out = rewards.reward_info(name) if ok else None
        if ok:
            assert (
                fresh and out is rewards.reward_info(name) and isinstance(out, rewards.RewardInfo)
            )
            assert out.level in rewards.LEVELS and out.needs <= set(rewards.NEEDS)
            assert out.spec is None or out.level == ("token" if out.spec.needs_logits else "answer")
            assert name in rewards.available_rewards(level=out.level)
    finally:
        if fresh:
            rewards._REGISTRY.pop(name, None)


# ----------------------------------------------------------------------------------------------------------
# sharpen.metrics
# ----------------------------------------------------------------------------------------------------------

BINARY = st.sampled_from([0, 1, 0.0, 1.0, True, False])
BINARY_VECTORS = numeric(
    BINARY | NUMBERS, st.sampled_from(("binary", "binary", "mixed")), VECTOR_SHAPES
)
PROXY_VECTORS = numeric(st.floats(-2, 2) | NUMBERS, ANY_MODE, VECTOR_SHAPES)


def vector(x: Any, *, binary: bool = False) -> np.ndarray | None:
    """``x`` as a non-empty finite 1-D float64 vector (0/1 if ``binary``), as sharpen.metrics takes it."""
    a = real(x)
    ok = a is not None and a.ndim == 1 and a.size and np.isfinite(a).all()
    return a if ok and (not binary or np.isin(a, (0.0, 1.0)).all()) else None


@fuzz(
    metrics.ground_truth_ratio,
    metrics.pass_at_n,
    metrics.majority_voting_reward,
    metrics.reward_accuracy,
    metrics.pseudo_label_acc,
    metrics.point_biserial,
    metrics.gt_gain,
    metrics.underflow_fraction,
    correct=BINARY_VECTORS,
    proxy=PROXY_VECTORS,
    groups=st.none()
    | st.lists(st.integers(0, 2), max_size=6)
    | numeric(st.integers(0, 2) | JUNK, shape=VECTOR_SHAPES),
    threshold=st.none() | NUMBERS | JUNK,
    ties=st.sampled_from(["mean", "first"]) | JUNK,
    dtype=st.sampled_from(
        [
            np.float32,
            np.float16,
            np.float64,
            np.longdouble,
            "float32",
            torch.bfloat16,
            torch.float32,
            torch.int32,
            np.int32,
            "x",
            None,
            5,
            object,
            {"a": 1},
            [("a", float)],
        ]
    ),
)
def test_fuzz_vector_metrics(correct, proxy, groups, threshold, ties, dtype):
    def run(fn: Callable, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        return attempt(
            fn, *args, names=set(inspect.signature(fn).parameters), old_style=True, **kwargs
        )

    corr, prox = vector(correct, binary=True), vector(proxy)
    ok, v = run(metrics.ground_truth_ratio, correct)
    assert ok == (corr is not None)
    if ok:
        assert type(v) is float and 0.0 <= v <= 1.0
    ok, v = run(metrics.pass_at_n, correct)
    assert ok == (corr is not None) and (not ok or v in (0.0, 1.0))
    ok, v = run(metrics.majority_voting_reward, proxy)
    assert ok == (prox is not None)
    if ok:
        with np.errstate(over="ignore"):
            ulps = 4 * np.spacing(
                np.abs(prox).max()
            )  # a mean may round past the extremes by an ulp
        assert type(v) is float and math.isfinite(v) and prox.min() - ulps <= v <= prox.max() + ulps
    ok, v = run(metrics.reward_accuracy, proxy, correct, threshold=threshold)
    assert not ok or 0.0 <= v <= 1.0
    ok, v = run(metrics.pseudo_label_acc, proxy, correct, groups, ties=ties)
    assert not ok or 0.0 <= v <= 1.0
    ok, v = run(metrics.point_biserial, proxy, correct)
    if prox is not None and corr is not None and len(prox) == len(corr):
        assert ok
    if (
        ok and v is None
    ):  # undefined only for fewer than two rollouts, a constant proxy or a constant GT
        assert len(prox) < 2 or np.ptp(corr) == 0 or np.ptp(prox) <= 1e-12 * np.abs(prox).max()
    elif ok:
        assert type(v) is float and -1.0 <= v <= 1.0
    ok, v = run(metrics.gt_gain, proxy, correct)
    assert not ok or (type(v) is float and not math.isnan(v))
    ok, v = run(metrics.underflow_fraction, proxy, dtype)
    assert not ok or (type(v) is float and 0.0 <= v <= 1.0)


# found by the fuzzing: sqrt(smoothing) of an int beyond the float range raised OverflowError
@example(np.array([0.1, -0.1, 0.6]), None, "threshold", {"smoothing": 10**400})
@fuzz(
    metrics.trailing_mean,
    metrics.step_noise,
    metrics.model_collapse_step,
    series=numeric(st.floats(0, 1) | NUMBERS, ANY_MODE, VECTOR_SHAPES),
    steps=st.none()
    | numeric(st.integers(-3, 20) | NUMBERS, (-3, 20, (0.0, 1e300, 2.0**63), True), VECTOR_SHAPES),
    rule=st.sampled_from(["threshold", "peak"]) | JUNK,
    options=st.fixed_dictionaries(
        {},
        optional={
            "threshold": st.floats(0, 1) | NUMBERS | JUNK,
            "consecutive": st.integers(1, 3) | NUMBERS | JUNK,
            "smoothing": st.integers(1, 4) | NUMBERS | JUNK,
            "min_decline": st.floats(0.01, 0.5) | NUMBERS | JUNK,
            "patience": st.integers(1, 3) | NUMBERS | JUNK,
            "noise_sigmas": st.none() | st.floats(0, 8) | NUMBERS | JUNK,
            "nan": st.sampled_from(["skip", "raise"]) | JUNK,
        },
    ),
)
def test_fuzz_run_indicators(series, steps, rule, options):
    smoothing = options.get("smoothing", 1)
    ok, s = attempt(metrics.trailing_mean, series, smoothing, names={"x", "window"}, old_style=True)
    if ok:
        x = real(series)
        assert s.dtype == np.float64 and s.shape == x.shape
        assert s[0] == x[0] or np.isnan(x[0])
        if not np.isnan(x).any():
            with np.errstate(over="ignore"):
                ulps = 4 * np.spacing(np.abs(x).max())  # a mean may round past the extremes
                assert (
                    np.isfinite(s).all()
                    and (x.min() - ulps <= s).all()
                    and (s <= x.max() + ulps).all()
                )
    ok, v = attempt(
        metrics.step_noise, series, smoothing, names={"values", "smoothing"}, old_style=True
    )
    if ok:
        assert type(v) is float and (math.isnan(v) or v >= 0)
        x = real(series)  # None: an empty array of another dtype
        kept = 0 if x is None else int((~np.isnan(x)).sum())
        assert math.isnan(v) == (kept < 3), "NaN exactly when fewer than 3 values are logged"
    names = {"series", "rule", "steps"} | set(options)
    ok, out = attempt(
        metrics.model_collapse_step,
        series,
        rule,
        steps=steps,
        **options,
        names=names,
        old_style=True,
    )
    if ok and out is not None:
        assert isinstance(out, metrics.CollapseStep) and out.rule == rule and type(out.step) is int
        assert out.step in (np.arange(len(series)) if steps is None else numpy_of(steps))
        for key, value in out.evidence.items():
            assert type(value) is float and (not math.isnan(value) or key == "noise"), key


ANSWER_LISTS = st.one_of(
    st.lists(ANSWER_VALUES, max_size=6),
    hnp.arrays(st.sampled_from(["<U1", np.int64]), SHAPES),
    JUNK,
)


@fuzz(
    metrics.exact_match,
    metrics.label_accuracy,
    metrics.majority_ratio,
    metrics.ttrl_metrics,
    group=ANSWER_LISTS,
    label=ANSWER_VALUES | JUNK,
    labels=st.none() | st.lists(ANSWER_VALUES, max_size=6) | JUNK,
    groups=st.none()
    | st.lists(st.integers(0, 1) | st.sampled_from([None, [0], "a"]), max_size=6)
    | JUNK,
    proxy=st.none() | BINARY_VECTORS,
    correct=st.none() | BINARY_VECTORS,
    prefix=st.sampled_from(["", "train/"]) | JUNK,
    equivalent=st.sampled_from([metrics.exact_match, lambda g, p: str(g) == str(p), 3, "exact"]),
    reward_threshold=st.none() | NUMBERS | JUNK,
)
def test_fuzz_answer_metrics(
    group, label, labels, groups, proxy, correct, prefix, equivalent, reward_threshold
):
    ok, v = attempt(metrics.exact_match, label, group, names=set())
    assert ok and type(v) is bool
    names = {
        "answers",
        "label",
        "labels",
        "equivalent",
        "groups",
        "proxy_rewards",
        "correct",
        "prefix",
        "reward_threshold",
        "threshold",
        "gt_rewards",
    }
    ok, v = attempt(metrics.majority_ratio, group, names=names, old_style=True)
    assert not ok or (type(v) is float and 0.0 <= v <= 1.0)
    ok, v = attempt(metrics.label_accuracy, group, label, equivalent, names=names, old_style=True)
    assert not ok or v in (0.0, 1.0)
    if labels is None:  # a batch of the group with one label
        labels = [label] * len(group) if isinstance(group, list) else label
    ok, v = attempt(
        metrics.ttrl_metrics,
        group,
        labels,
        groups,
        proxy,
        correct,
        prefix,
        equivalent=equivalent,
        reward_threshold=reward_threshold,
        names=names,
        old_style=True,
    )
    if ok:
        assert isinstance(v, dict) and all(k.startswith(prefix) for k in v)
        for key, value in v.items():
            assert type(value) is float and math.isfinite(value), key
            assert key.endswith("majority_voting_reward") or 0.0 <= value <= 1.0, key


@st.composite
def pass_at_k_args(draw: Callable) -> tuple[Any, Any, Any]:
    """Valid ``(n, c, k)`` (scalars or arrays, small or huge n), sometimes with one spoiled."""
    big = draw(st.sampled_from((60, 10**6, 10**12, 2**62)))
    size = draw(st.sampled_from((None, 1, 3)))
    rows = []
    for _ in range(1 if size is None else size):
        n = draw(st.integers(1, big))
        rows.append((n, draw(st.integers(0, n)), draw(st.integers(1, n))))
    args = (
        list(rows[0])
        if size is None
        else [np.array(col, dtype=np.int64) for col in zip(*rows, strict=True)]
    )
    if draw(st.booleans()):
        args[draw(st.integers(0, 2))] = draw(
            NUMBERS
            | JUNK
            | arrays()
            | st.sampled_from([2**70, 1e19, -1, 0, 0.5, np.uint64(2**63 + 5)])
        )
    return tuple(args)


# found by the fuzzing: the product over c factors allocated (rows, c) arrays (3.4 GB here)
@example((10**9, 10**8, 10))
@fuzz(metrics.pass_at_k, args=pass_at_k_args())
def test_fuzz_pass_at_k(args):
    ok, v = attempt(metrics.pass_at_k, *args, names={"n", "c", "k"}, old_style=True)
    if not ok:
        return
    p_all = np.asarray(v, dtype=np.float64)
    assert no_nan(p_all) and ((p_all >= 0) & (p_all <= 1)).all()
    nn, cc, kk = np.broadcast_arrays(*(np.asarray(a) for a in args))
    assert p_all.shape == nn.shape and (type(v) is float) == (nn.ndim == 0)
    for n, c, k, p in zip(nn.ravel(), cc.ravel(), kk.ravel(), p_all.ravel(), strict=True):
        n, c, k = int(n), int(c), int(k)
        if n <= 60:
            assert abs(p - (1.0 - math.comb(n - c, k) / math.comb(n, k))) <= 1e-12, (n, c, k, p)
        assert (n - c >= k or p == 1.0) and (c > 0 or p == 0.0), (n, c, k, p)


# ----------------------------------------------------------------------------------------------------------
# sharpen.theory
# ----------------------------------------------------------------------------------------------------------

PROB_SPECIALS = (0.0, 1.0, 5e-324, 1e-300, 0.5, 1 - 2**-53, 1e-16)
BETA_SPECIALS = (5e-324, 1e-300, 1e-30, 1e30, 1e300, 1.7e308, math.inf)
STEP_SPECIALS = (0.0, -0.0, 1e-300, 1e30, 1e308)
BETAS = st.floats(1e-3, 1e3) | st.sampled_from(BETA_SPECIALS)
P_ARG = numeric(st.floats(0, 1) | st.sampled_from(PROB_SPECIALS), (0, 1, PROB_SPECIALS, False))
BETA_ARG = numeric(BETAS, (1e-3, 1e3, BETA_SPECIALS, False))
STEP_ARG = numeric(
    st.integers(0, 50) | st.floats(0, 1e3) | st.sampled_from(STEP_SPECIALS),
    (0, 50, STEP_SPECIALS, True),
)


def theory_value(x: Any) -> np.ndarray | None:
    """``x`` as sharpen.theory reads a numeric argument (real numbers, object arrays of them, at most 32
    dimensions, no NaN)."""
    a = real(x, objects=True)
    return None if a is None or a.ndim > 32 or np.isnan(a).any() else a


def broadcast(*arrays_: np.ndarray | None) -> tuple | None:
    """The broadcast shape of ``arrays_``, None if one is None or they do not broadcast."""
    if any(a is None for a in arrays_):
        return None
    try:
        return np.broadcast_shapes(*(a.shape for a in arrays_))
    except ValueError:
        return None


@fuzz(
    theory.rho,
    theory.one_step,
    theory.contraction_factor,
    theory.fixed_reference_limit,
    theory.effective_beta,
    theory.majority_prob,
    theory.majority_gap,
    theory.tail_bound,
    theory.steps_to_reach,
    p0=P_ARG,
    beta=BETA_ARG,
    k=STEP_ARG,
    target=P_ARG,
    integer=st.booleans(),
)
def test_fuzz_theorem1(p0, beta, k, target, integer):
    """Theorem 1's closed forms on scalars and arrays of any values."""
    names = {
        "p",
        "p0",
        "beta",
        "k",
        "target",
        "p0, beta",
        "beta, k",
        "p, beta",
        "p0, beta, k",
        "p0, beta, target",
    }
    pa, ba, ka, ta = (theory_value(x) for x in (p0, beta, k, target))
    pa, ta = (a if a is not None and ((a >= 0) & (a <= 1)).all() else None for a in (pa, ta))
    ba = ba if ba is not None and (ba > 0).all() else None
    ka = ka if ka is not None and np.isfinite(ka).all() and (ka >= 0).all() else None

    ok, r = attempt(theory.rho, beta, names=names)
    assert ok == (ba is not None)
    if ok:
        assert r.shape == ba.shape and ((r >= 0) & (r <= 1)).all()
    for fn in (theory.one_step, theory.fixed_reference_limit, theory.contraction_factor):
        ok, out = attempt(fn, p0, beta, names=names)
        assert ok == (broadcast(pa, ba) is not None), fn.__name__
        if ok:
            assert (
                out.shape == broadcast(pa, ba) and no_nan(out) and ((out >= 0) & (out <= 1)).all()
            )
            pb = np.broadcast_to(pa, out.shape)
            if fn is theory.contraction_factor:
                assert (out[pb == 0] == 1).all()
            else:
                assert (
                    (out >= pb * (1 - 1e-15)).all()
                    and (out[pb == 0] == 0).all()
                    and (out[pb == 1] == 1).all()
                )
    ok, out = attempt(theory.effective_beta, beta, k, names=names)
    assert ok == (broadcast(ba, ka) is not None)
    assert not ok or (no_nan(out) and (out >= 0).all())  # beta / k: 0 only where it underflows

    shape = broadcast(pa, ba, ka)
    results = {}
    for fn in (theory.majority_prob, theory.majority_gap, theory.tail_bound):
        ok, out = attempt(fn, p0, beta, k, names=names)
        assert ok == (shape is not None), fn.__name__
        if ok:
            assert out.shape == shape and no_nan(out), fn.__name__
            results[fn.__name__] = out
    if shape is not None:
        mp, mg, tb = results["majority_prob"], results["majority_gap"], results["tail_bound"]
        assert ((mp >= 0) & (mp <= 1) & (mg >= 0) & (mg <= 1)).all()
        assert np.allclose(mp + mg, 1.0, rtol=0, atol=1e-12)
        pb, kb = np.broadcast_to(pa, shape), np.broadcast_to(ka, shape)
        assert (
            (mp[pb == 0] == 0).all()
            and (mp[pb == 1] == 1).all()
            and (mp[kb == 0] == pb[kb == 0]).all()
        )
        assert (tb >= 0).all() and (tb >= mg * (1 - 1e-9)).all(), "Theorem 1's bound fails"

    shape = broadcast(pa, ba, ta)
    ok, s = attempt(theory.steps_to_reach, p0, beta, target, integer=integer, names=names)
    assert ok == (shape is not None)
    if ok:
        s = np.asarray(s)
        assert no_nan(s)
        if integer:
            assert (s >= 0).all() and ((s == np.floor(s)) | np.isinf(s)).all()
            pb, bb, tb = (np.broadcast_to(a, s.shape) for a in (pa, ba, ta))
            f = np.isfinite(s) & (s < 1e15)
            assert (theory.majority_prob(pb[f], bb[f], s[f]) >= tb[f]).all(), (
                "the target is not reached"
            )
            before = theory.majority_prob(pb[f], bb[f], np.maximum(s[f] - 1, 0))
            assert ((s[f] == 0) | (before < tb[f])).all(), "not the first step"


def _normalised(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(1.0, a.sum(axis=-1, keepdims=True) * 1.0000001)


ANSWER_PROBS = st.one_of(
    arrays(
        [np.float64],
        st.tuples(st.integers(1, 4)),
        st.just((0, 1, (0.0, 1.0, 5e-324), False)),
        False,
    ).map(lambda a: _normalised(a).tolist()),
    arrays(
        [np.float64],
        st.tuples(st.integers(1, 3), st.integers(1, 4)),
        st.just((0, 1, (0.0, 1.0, 1e-300), False)),
        False,
    ).map(_normalised),
    P_ARG,
)
"""Answer distributions (K,) or (G, K), rows summing to at most 1, or anything."""
COUNTS = st.integers(0, 2) | st.sampled_from(NOT_SIZES + (2**70, 10**400))  # (over the limits)


# found by the fuzzing: k = 2**70 steps of an empty batch (G = 0) reached np.arange(k)
@example(np.zeros((0, 1)), 1, 1.0, 2**70)
@example([1e300, 1.7976931348623157e308], 1, 1.0, 2)  # the row sum overflowed (RuntimeWarning)
@fuzz(
    theory.plurality_win_probs,
    theory.hoeffding_flip_bound,
    theory.stability_curve,
    theory.stability_prob,
    probs=ANSWER_PROBS,
    n=st.integers(1, 6)
    | st.sampled_from([10**6, 10**30, 10**400, 0, -1, True, 2.0, np.int64(3)])
    | JUNK,
    beta=BETAS | NUMBERS | JUNK | st.just(np.ones(2)),
    k=COUNTS,
)
def test_fuzz_finite_n(probs, n, beta, k):
    names = {"probs", "n", "beta", "k"}
    ok, win = attempt(theory.plurality_win_probs, probs, n, names=names)
    if ok:
        p = np.asarray(probs, dtype=np.float64)
        assert win.shape == p.shape and no_nan(win) and ((win >= 0) & (win <= 1 + 1e-9)).all()
        parsed = np.clip(p.sum(axis=-1), 0.0, 1.0)  # 1 - P0: some sample parses
        with np.errstate(divide="ignore", invalid="ignore"):
            n_float = float(n) if n < 2**1000 else math.inf
            expected = np.where(parsed > 0, -np.expm1(n_float * np.log1p(-parsed)), 0.0)
        assert np.allclose(win.sum(axis=-1), expected, rtol=1e-9, atol=1e-9)
    ok, bound = attempt(theory.hoeffding_flip_bound, probs, n, names=names)
    if ok:
        assert bound.shape == np.shape(probs)[:-1] and no_nan(bound) and (bound >= 0).all()
    ok, curve = attempt(theory.stability_curve, probs, n, beta, k, names=names)
    ok2, prob = attempt(theory.stability_prob, probs, n, beta, k, names=names)
    assert ok == ok2
    if ok:
        assert curve.shape[-1] == k + 1 and no_nan(curve) and (curve[..., 0] == 1).all()
        assert ((curve >= 0) & (curve <= 1 + 1e-9)).all() and (
            np.diff(curve, axis=-1) <= 1e-12
        ).all()
        assert np.array_equal(prob, curve[..., -1])


REWARD_FNS = {
    "fixed": lambda logp: np.arange(logp.shape[-1], dtype=np.float64),
    "logp": lambda logp: logp,
    "neg_inf": lambda logp: np.full(logp.shape, -np.inf),
    "nan": lambda logp: np.full(logp.shape, np.nan),
    "pos_inf": lambda logp: np.full(logp.shape, np.inf),
    "shape": lambda logp: np.ones(logp.shape[-1] + 1),
    "str": lambda logp: "a",
    "dict": lambda logp: {},
    "complex": lambda logp: np.ones(logp.shape) * 1j,
    "huge": lambda logp: np.where(np.isfinite(logp), 1e308, 0.0),
}


# found by the fuzzing: the total mass of huge masses overflowed (RuntimeWarning)
@example([1e300, 1.7976931348623157e308], 0.0, 1.0, 0, None, None)
@fuzz(
    theory.tilt,
    theory.iterate_tilt,
    theory.power_sharpen,
    theory.mean_logprob_tilt,
    theory.probability_tilt,
    pi=numeric(
        st.floats(0, 1) | st.sampled_from([0.0, 5e-324, 1e-300]),
        (0, 10, (0.0, 5e-324, 1e300), False),
    ),
    reward=numeric(
        st.floats(-10, 10) | st.sampled_from((-math.inf, 1e308, -1e308)),
        (-10, 10, (-math.inf, 1e308, -1e308, 0.0), False),
    ),
    beta=BETAS | NUMBERS | JUNK,
    k=COUNTS,
    reward_fn=st.sampled_from(sorted(REWARD_FNS)).map(REWARD_FNS.get) | JUNK,
    lengths=numeric(
        st.floats(1e-3, 50) | st.sampled_from([1.0, 5e-324, 1e-300]), (1, 50, (1.0, 5e-324), False)
    ),
)
def test_fuzz_tilts(pi, reward, beta, k, reward_fn, lengths):
    names = {"pi", "pi0", "reward", "beta", "k", "reward_fn", "lengths"}
    p = theory_value(pi)

    def check(out: np.ndarray, trajectory: bool) -> None:
        assert no_nan(out) and (out >= 0).all()
        assert np.allclose(out.sum(axis=-1), 1.0, rtol=0, atol=1e-9)
        last = out[-1] if trajectory else out
        assert (last[np.broadcast_to(p == 0, last.shape)] == 0).all(), "mass appeared from nothing"
        assert not trajectory or out.shape[0] == k + 1

    ok, out = attempt(theory.tilt, pi, reward, beta, names=names)
    if ok:
        check(out, trajectory=False)
    # a callable from JUNK (``object``, ``print``) may raise what it raises
    user_errors = () if any(reward_fn is f for f in REWARD_FNS.values()) else (TypeError,)
    ok, out = attempt(
        theory.iterate_tilt, pi, reward_fn, beta, k, names=names, errors=(ValueError, *user_errors)
    )
    if ok:
        check(out, trajectory=True)
    for fn, args in (
        (theory.power_sharpen, (pi, beta, k)),
        (theory.mean_logprob_tilt, (pi, lengths, beta, k)),
        (theory.probability_tilt, (pi, beta, k)),
    ):
        ok, out = attempt(fn, *args, names=names)
        if ok:
            check(out, trajectory=True)


FIT_P_VALUES = (0, 1, (0.0, 1.0, math.nan, 1e-300, 1 - 1e-16), False)
FIT_STEP_VALUES = (-5, 30, (math.nan, 1e150, 1e300, -1e300, 1e-300), True)
REFERENCE_FIT = theory.fit_sharpening(
    np.arange(6.0), theory.majority_prob(0.3, 2.0, np.arange(6.0))
)


@fuzz(
    theory.fit_sharpening,
    theory.SharpeningFit.predict,
    length=st.integers(0, 6),
    batch=st.sampled_from([(), (2,)]),
    data=st.data(),
    level=st.floats(0.5, 0.99) | NUMBERS | JUNK,
    method=st.sampled_from(["binomial", "logit_wls"]) | JUNK,
    boundary_eps=st.floats(1e-6, 0.4) | NUMBERS | JUNK,
    max_iter=st.integers(1, 40) | st.sampled_from(NOT_SIZES),
)
def test_fuzz_fit_sharpening(length, batch, data, level, method, boundary_eps, max_iter):
    shaped = {"p_maj": st.just(batch + (length,)), "steps": st.just((length,))}
    p_maj = data.draw(
        arrays([np.float64], shaped["p_maj"], st.just(FIT_P_VALUES), False)
        | numeric(st.floats(0, 1), FIT_P_VALUES),
        label="p_maj",
    )
    steps = data.draw(
        st.just(np.arange(length, dtype=np.float64))
        | arrays([np.float64], shaped["steps"], st.just(FIT_STEP_VALUES), False)
        | numeric(st.integers(-5, 30) | st.floats(-1e3, 1e3), FIT_STEP_VALUES),
        label="steps",
    )
    n_samples = data.draw(
        st.none() | numeric(st.integers(1, 64) | st.floats(1, 1e6), (1, 64, (1.0, 1e6), True)),
        label="n_samples",
    )
    names = {"steps", "p_maj", "n_samples", "level", "method", "boundary_eps", "max_iter"}
    ok, fit = attempt(
        theory.fit_sharpening,
        steps,
        p_maj,
        n_samples=n_samples,
        level=level,
        method=method,
        boundary_eps=boundary_eps,
        max_iter=max_iter,
        names=names,
    )
    query = data.draw(
        numeric(st.floats(-50, 50), (-50, 50, (0.0, 1e300), False)), label="predict steps"
    )
    ok_p, pred = attempt(
        (fit if ok else REFERENCE_FIT).predict, query, names={"steps", "steps, fit"}
    )
    if ok_p:
        pv = np.asarray(pred)
        assert ((pv[~np.isnan(pv)] >= 0) & (pv[~np.isnan(pv)] <= 1)).all()
    if not ok:
        return
    assert isinstance(fit, theory.SharpeningFit)
    valid = np.asarray(fit.valid)
    for field in ("slope", "intercept", "beta", "rho", "p0", "slope_se"):
        value = np.asarray(getattr(fit, field))
        assert value.shape == valid.shape and np.isnan(value[~valid]).all(), field
    slope, intercept, p0 = (np.asarray(getattr(fit, f)) for f in ("slope", "intercept", "p0"))
    assert np.isfinite(slope[valid]).all() and np.isfinite(intercept[valid]).all()
    assert ((p0[valid] >= 0) & (p0[valid] <= 1)).all()
    assert (np.asarray(fit.sharpening) == (valid & (slope > 0))).all()
    assert not (np.asarray(fit.converged) & ~valid).any(), "a fallback reported as converged"
    ci = np.asarray(fit.slope_ci)
    assert (ci[valid][..., 0] <= ci[valid][..., 1]).all()


# ----------------------------------------------------------------------------------------------------------
# sharpen.grpo
# ----------------------------------------------------------------------------------------------------------


# found by the fuzzing: a group's variance overflowed (NaN) / underflowed (+-inf); 33 dimensions
@example(np.array([[1e308, 1e308, -1e308]]), False, True, 1e-6, True)
@example(np.array([[1e-200, 2e-200]]), False, True, 0.0, True)
@example(_deep(33, 0), False, False, 1e-6, False)
@example(2**63, False, False, None, None)  # numpy's uint64 'Q', which torch.from_numpy refused
@fuzz(
    grpo.group_advantages,
    rewards_=arrays(
        [np.float64, np.float64, np.float32, np.float16, np.int64, np.bool_],
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
        st.sampled_from(("normal", "ties", "binary", "scaled", "unit", "mixed")),
    )
    | arrays()
    | JUNK,
    as_bf16=st.booleans(),
    normalize_std=st.booleans() | JUNK,
    eps=st.sampled_from([1e-6, 1e-4, 0.0]) | NUMBERS | JUNK,
    unbiased=st.booleans() | JUNK,
)
def test_fuzz_group_advantages(rewards_, as_bf16, normalize_std, eps, unbiased):
    if as_bf16 and isinstance(rewards_, torch.Tensor) and rewards_.is_floating_point():
        rewards_ = rewards_.to(torch.bfloat16)
    names = {"rewards", "normalize_std", "eps", "unbiased"}
    ok, adv = attempt(
        grpo.group_advantages,
        rewards_,
        normalize_std=normalize_std,
        eps=eps,
        unbiased=unbiased,
        names=names,
    )
    if not ok:
        return
    r = real(rewards_)
    assert r is not None and r.ndim >= 1 and r.size and np.isfinite(r).all()
    assert isinstance(adv, torch.Tensor) == isinstance(rewards_, torch.Tensor)
    a = numpy_of(adv)
    assert a.shape == r.shape and no_nan(a)
    constant = (r.max(axis=-1) == r.min(axis=-1)) & (r.shape[-1] > 1)
    assert (a[constant] == 0).all(), "a constant group gets exactly 0"
    n = r.shape[-1]
    if normalize_std:
        assert (
            np.isfinite(a).all()
            and (np.abs(a) <= math.sqrt(n) * 1.01 + 1e-3 + np.abs(r) * (n == 1)).all()
        )
    elif np.abs(r).max() < (3e4 if "float16" in str(getattr(rewards_, "dtype", "")) else 1e300):
        assert np.isfinite(a).all()


@st.composite
def policy_batches(draw: Callable) -> tuple[list[Any], float]:
    """``[logp, old_logp, advantages, mask]`` as valid tensors, maybe one spoiled; and ``B T max|A|``
    (inf for non-finite advantages): the loss is NaN-free while that times ``1 + clip`` is in range."""
    b, t = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from((torch.float32, torch.float64, torch.float16, torch.bfloat16)))
    rng = np.random.default_rng(draw(SEEDS))
    extremes = np.array([0.0, -1e-3, -100.0, -1e4, -3e38, 3e38, 100.0])

    def logps() -> torch.Tensor:
        a = -rng.exponential(draw(st.sampled_from((0.1, 3.0, 30.0))), (b, t))
        share = draw(st.sampled_from((0.0, 0.2)))
        return torch.from_numpy(
            np.where(rng.random((b, t)) < share, rng.choice(extremes, (b, t)), a)
        ).to(dtype)

    adv_shape = (b,) if draw(st.booleans()) else (b, t)
    adv = rng.standard_normal(adv_shape) * draw(st.sampled_from((0.0, 1.0, 5.0, 1e6, 1e30)))
    args = [
        logps(),
        logps(),
        torch.from_numpy(adv).to(dtype),
        torch.from_numpy(rng.random((b, t)) < 0.7),
    ]
    if draw(st.booleans()):
        args[3][:, 0] = True
    if draw(st.integers(0, 3)) == 0:
        i = draw(st.integers(0, 3))
        args[i] = draw(spoiled(args[i], st.sampled_from((math.nan, math.inf, 2.0))))
    a = args[2]
    finite = isinstance(a, torch.Tensor) and a.is_floating_point() and bool(torch.isfinite(a).all())
    adv_scale = float(a.double().abs().max()) * b * t if finite and a.numel() else math.inf
    return args, adv_scale


@fuzz(
    grpo.policy_loss,
    grpo.agg_loss,
    grpo.masked_mean,
    grpo.kl_k3,
    batch=policy_batches(),
    clip_eps=st.sampled_from([0.2, 0.0, 0.28, 10.0]) | NUMBERS | JUNK,
    clip_eps_high=st.none() | st.floats(0, 1) | NUMBERS | JUNK,
    agg=st.sampled_from(grpo._LOSS_AGGS) | JUNK,
    dim=st.none() | st.integers(-3, 2) | JUNK,
)
def test_fuzz_policy_loss(batch, clip_eps, clip_eps_high, agg, dim):
    (logp, old, adv, mask), adv_scale = batch
    names = {
        "logp",
        "old_logp",
        "advantages",
        "mask",
        "clip_eps",
        "clip_eps_high",
        "mode",
    }  # a bad agg: "mode:"
    ok, out = attempt(
        grpo.policy_loss,
        logp,
        old,
        adv,
        mask,
        clip_eps=clip_eps,
        clip_eps_high=clip_eps_high,
        agg=agg,
        names=names,
    )
    if ok:
        loss, stats = out
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0
        assert set(stats) == {"clip_frac", "approx_kl"} and all(
            type(v) is float for v in stats.values()
        )
        assert 0.0 <= stats["clip_frac"] <= 1.0 and stats["approx_kl"] >= -1e-3
        hi = float(clip_eps if clip_eps_high is None else clip_eps_high)
        if adv_scale * (1.0 + hi) < torch.finfo(logp.dtype).max:
            assert not torch.isnan(loss), "NaN loss from finite inputs"
    names = {"x", "mask", "dim", "loss_mat", "mode", "logp", "ref_logp"}
    ok, out = attempt(grpo.kl_k3, logp, old, names=names)
    if ok:
        assert out.shape == logp.shape
        if torch.isfinite(logp).all() and torch.isfinite(old).all():
            assert not torch.isnan(out).any() and (out.double() >= -1e-3).all()
    ok, out = attempt(grpo.masked_mean, logp, mask, dim, names=names)
    if ok:
        assert isinstance(out, torch.Tensor) and (dim is not None or out.ndim == 0)
        values = logp.double()[mask.bool()]
        if dim is None and logp.dtype == torch.float64 and torch.isfinite(values).all():
            assert values.min() - 1e-9 <= out <= values.max() + 1e-9
    ok, out = attempt(grpo.agg_loss, logp, mask, agg, names=names)
    assert not ok or (isinstance(out, torch.Tensor) and out.ndim == 0)


# ----------------------------------------------------------------------------------------------------------
# Coverage: every public function of the five modules has a fuzz test
# ----------------------------------------------------------------------------------------------------------


def test_every_public_function_is_fuzzed():
    public = {
        f"{module.__name__}.{name}"
        for module in MODULES
        for name in module.__all__
        if inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name))
    }
    assert RECORDS <= public
    assert not public - _FUZZED - RECORDS, "public functions without a fuzz test"
