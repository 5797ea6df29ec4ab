"""Hypothesis strategies for reward inputs and a property checker for user rewards.

Strategies (all ``hypothesis`` strategies; sizes may be ints or integer strategies):

* :func:`logits` -- (B, T, V) finite float32 logits, numpy or torch;
* :func:`masks` -- (B, T) right-padded response masks, at least ``min_valid`` valid tokens per row;
* :func:`token_ids` -- (B, T) int64 token ids in ``[0, V)``;
* :func:`answer_lists` -- answers from a few distinct values, with ``None`` (unparseable), so that
  vote ties and empty votes happen often;
* :func:`rollouts` -- whole :class:`sharpen.rewards.Rollouts` (logits or log-probs, tokens, mask,
  temperature, answers, interleaved groups, labels);
* :func:`rollout_groups` -- ``Rollouts`` made of G contiguous groups of N rollouts (GRPO layout).

:func:`check_reward` runs a reward with the registry's calling convention ``fn(rollouts) -> (B,)``
against the algebra's invariants and raises ``AssertionError`` naming the violated one::

    from sharpen.testing import check_reward

    def test_my_reward():
        check_reward(my_reward, level="token")
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sharpen.rewards import Rollouts

__all__ = [
    "answer_lists",
    "check_reward",
    "logits",
    "masks",
    "permute_rollouts",
    "rollout_groups",
    "rollouts",
    "token_ids",
]

Backend = Literal["numpy", "torch"]
IntLike = int | st.SearchStrategy[int]

_BACKENDS = ("numpy", "torch")

# default size strategies (hypothesis strategies are immutable, so module-level defaults are safe)
_BATCH = st.integers(1, 6)
_LENGTH = st.integers(1, 5)
_VOCAB = st.integers(2, 8)
_N_GROUPS = st.integers(1, 3)
_GROUP_SIZE = st.integers(1, 4)
_MASK_DTYPES = {"bool": np.bool_, "int": np.int64, "float": np.float32}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _check_backend(backend: str) -> None:
    if backend not in _BACKENDS:
        raise ValueError(f"backend: must be 'numpy' or 'torch', got {backend!r}")


def _check_size(value: IntLike, name: str, minimum: int) -> None:
    if isinstance(value, st.SearchStrategy):
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(
            f"{name}: must be an int >= {minimum} or an integer strategy, got {value!r}"
        )


def _draw_size(draw: Callable, value: IntLike, name: str, minimum: int) -> int:
    v = draw(value) if isinstance(value, st.SearchStrategy) else value
    if v < minimum:
        raise ValueError(f"{name}: the strategy produced {v}, below the minimum {minimum}")
    return int(v)


def _to_backend(arr: np.ndarray, backend: Backend) -> Any:
    return torch.from_numpy(np.ascontiguousarray(arr)) if backend == "torch" else arr


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_scale(scale: Any) -> None:
    """``scale`` must be a number from float32's smallest positive value to its max."""
    number = isinstance(scale, int | float | np.integer | np.floating) and not isinstance(
        scale, bool
    )
    if not number or not (0 < scale <= _FLOAT32_MAX) or _float32_at_most(scale) <= 0:
        raise ValueError(
            f"scale: must be a number in [1.4e-45, {_FLOAT32_MAX:.4g}] (float32), got {scale!r}"
        )


def _float32_at_most(x: float) -> float:
    """The largest float32 <= ``x`` (hypothesis needs float32-exact bounds at ``width=32``)."""
    f = np.float32(min(float(x), _FLOAT32_MAX))
    return float(np.nextafter(f, np.float32(0)) if float(f) > x else f)


def _float_elements(scale: float) -> st.SearchStrategy[float]:
    bound = _float32_at_most(min(scale, _FLOAT32_MAX))  # 0.1 -> 0.099999994
    return st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=32)


# --------------------------------------------------------------------------------------------
# array strategies
# --------------------------------------------------------------------------------------------


def logits(
    batch: IntLike = _BATCH,
    length: IntLike = _LENGTH,
    vocab: IntLike = _VOCAB,
    *,
    backend: Backend = "numpy",
    scale: float = 8.0,
) -> st.SearchStrategy[Any]:
    """(B, T, V) finite float32 logits with entries in ``[-scale, scale]``.

    ``scale`` is any number in (0, float32 max]; the bound used is the largest float32 not above
    it (``0.1`` gives entries within +-0.099999994).

    Repeated values are common (hypothesis fills arrays), so flat rows and exact ties appear.

    >>> from hypothesis import find
    >>> z = find(logits(2, 3, 4), lambda z: True)
    >>> z.shape, z.dtype
    ((2, 3, 4), dtype('float32'))
    """
    _check_backend(backend)
    for name, v, lo in (("batch", batch, 1), ("length", length, 1), ("vocab", vocab, 1)):
        _check_size(v, name, lo)
    _check_scale(scale)

    @st.composite
    def build(draw: Callable) -> Any:
        b = _draw_size(draw, batch, "batch", 1)
        t = _draw_size(draw, length, "length", 1)
        v = _draw_size(draw, vocab, "vocab", 1)
        arr = draw(hnp.arrays(np.float32, (b, t, v), elements=_float_elements(scale)))
        return _to_backend(arr, backend)

    return build()


def masks(
    batch: IntLike = _BATCH,
    length: IntLike = _LENGTH,
    *,
    min_valid: int = 1,
    backend: Backend = "numpy",
    dtype: Literal["bool", "int", "float"] = "bool",
) -> st.SearchStrategy[Any]:
    """(B, T) right-padded masks: row b is ``[1]*L_b + [0]*(T-L_b)`` with ``min_valid <= L_b <= T``.

    ``min_valid=0`` allows all-padding rows (which the rewards reject).

    >>> from hypothesis import find
    >>> m = find(masks(3, 4), lambda m: True)
    >>> bool(m[:, 0].all())  # right padding: the first token of every row is valid
    True
    """
    _check_backend(backend)
    _check_size(batch, "batch", 1)
    _check_size(length, "length", 1)
    if isinstance(min_valid, bool) or not isinstance(min_valid, int) or min_valid < 0:
        raise ValueError(f"min_valid: must be an int >= 0, got {min_valid!r}")
    if dtype not in _MASK_DTYPES:
        raise ValueError(f"dtype: must be one of {sorted(_MASK_DTYPES)}, got {dtype!r}")

    @st.composite
    def build(draw: Callable) -> Any:
        b = _draw_size(draw, batch, "batch", 1)
        t = _draw_size(draw, length, "length", 1)
        if min_valid > t:
            raise ValueError(f"min_valid: {min_valid} exceeds the drawn length {t}")
        lengths = draw(st.lists(st.integers(min_valid, t), min_size=b, max_size=b))
        m = np.arange(t)[None, :] < np.asarray(lengths)[:, None]  # (B, T)
        return _to_backend(m.astype(_MASK_DTYPES[dtype]), backend)

    return build()


def token_ids(
    batch: IntLike = _BATCH,
    length: IntLike = _LENGTH,
    vocab: IntLike = _VOCAB,
    *,
    backend: Backend = "numpy",
) -> st.SearchStrategy[Any]:
    """(B, T) int64 token ids in ``[0, vocab)``.

    >>> from hypothesis import find
    >>> y = find(token_ids(2, 3, 5), lambda y: y.max() == 4)
    >>> y.dtype, int(y.max())
    (dtype('int64'), 4)
    """
    _check_backend(backend)
    for name, v in (("batch", batch), ("length", length), ("vocab", vocab)):
        _check_size(v, name, 1)

    @st.composite
    def build(draw: Callable) -> Any:
        b = _draw_size(draw, batch, "batch", 1)
        t = _draw_size(draw, length, "length", 1)
        v = _draw_size(draw, vocab, "vocab", 1)
        arr = draw(hnp.arrays(np.int64, (b, t), elements=st.integers(0, v - 1)))
        return _to_backend(arr, backend)

    return build()


def _answer_values(n_values: int, kind: Literal["str", "int"]) -> list[Hashable]:
    # Canonical strings ("0", "1", ...) so that canonicalisation never merges or splits them.
    return [str(i) for i in range(n_values)] if kind == "str" else list(range(n_values))


def answer_lists(
    min_size: int = 1,
    max_size: int = 8,
    *,
    n_values: int = 3,
    kind: Literal["str", "int"] = "str",
    allow_none: bool = True,
) -> st.SearchStrategy[list[Hashable | None]]:
    """Lists of answers drawn from ``n_values`` distinct values (``"0"``, ``"1"``, ... or ints),
    plus ``None`` for unparseable responses when ``allow_none``.

    Few distinct values make vote ties and all-``None`` groups common.

    >>> from hypothesis import find
    >>> find(answer_lists(4, 4), lambda a: a.count(None) == 2 and len(set(a)) == 3)
    [None, None, '0', '1']
    """
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
        raise ValueError(f"min_size: must be an int >= 0, got {min_size!r}")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < min_size:
        raise ValueError(f"max_size: must be an int >= min_size, got {max_size!r}")
    if isinstance(n_values, bool) or not isinstance(n_values, int) or n_values < 1:
        raise ValueError(f"n_values: must be an int >= 1, got {n_values!r}")
    if kind not in ("str", "int"):
        raise ValueError(f"kind: must be 'str' or 'int', got {kind!r}")
    element: st.SearchStrategy = st.sampled_from(_answer_values(n_values, kind))
    if allow_none:
        element = st.none() | element
    return st.lists(element, min_size=min_size, max_size=max_size)


# --------------------------------------------------------------------------------------------
# Rollouts strategies
# --------------------------------------------------------------------------------------------


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _build_rollouts(
    draw: Callable,
    b: int,
    group_ids: list[int],
    *,
    length: IntLike,
    vocab: IntLike,
    backend: Backend,
    inputs: Literal["logits", "logprobs"],
    fields: Literal["all", "token", "answer"],
    temperature: float | st.SearchStrategy[float],
    n_values: int,
    kind: Literal["str", "int"],
    scale: float,
) -> Rollouts:
    kwargs: dict[str, Any] = {}
    temp = draw(temperature) if isinstance(temperature, st.SearchStrategy) else temperature
    kwargs["temperature"] = float(temp)
    if fields in ("all", "token"):
        t = _draw_size(draw, length, "length", 1)
        v = _draw_size(draw, vocab, "vocab", 1)
        z = draw(logits(b, t, v, scale=scale))  # numpy (B, T, V)
        if inputs == "logprobs":
            # log-probs carry the temperature already (Rollouts convention)
            kwargs["logprobs"] = _to_backend(_log_softmax(z / temp).astype(np.float32), backend)
        else:
            kwargs["logits"] = _to_backend(z, backend)
        kwargs["tokens"] = draw(token_ids(b, t, v, backend=backend))
        kwargs["mask"] = draw(masks(b, t, backend=backend))
    if fields in ("all", "answer"):
        values = _answer_values(n_values, kind)
        kwargs["answers"] = draw(answer_lists(b, b, n_values=n_values, kind=kind))
        label_of = {g: draw(st.sampled_from(values)) for g in dict.fromkeys(group_ids)}
        kwargs["groups"] = list(group_ids)
        kwargs["labels"] = [label_of[g] for g in group_ids]
    return Rollouts(**kwargs)


def _check_rollout_options(
    backend: str, inputs: str, fields: str, n_values: int, kind: str, scale: float
) -> None:
    _check_backend(backend)
    if inputs not in ("logits", "logprobs"):
        raise ValueError(f"inputs: must be 'logits' or 'logprobs', got {inputs!r}")
    if fields not in ("all", "token", "answer"):
        raise ValueError(f"fields: must be 'all', 'token' or 'answer', got {fields!r}")
    if isinstance(n_values, bool) or not isinstance(n_values, int) or n_values < 1:
        raise ValueError(f"n_values: must be an int >= 1, got {n_values!r}")
    if kind not in ("str", "int"):
        raise ValueError(f"kind: must be 'str' or 'int', got {kind!r}")
    _check_scale(scale)


_DEFAULT_TEMPERATURE = st.floats(0.25, 2.0, allow_nan=False, width=32)


def rollouts(
    batch: IntLike = _BATCH,
    length: IntLike = _LENGTH,
    vocab: IntLike = _VOCAB,
    *,
    n_groups: IntLike = _N_GROUPS,
    backend: Backend = "numpy",
    inputs: Literal["logits", "logprobs"] = "logits",
    fields: Literal["all", "token", "answer"] = "all",
    temperature: float | st.SearchStrategy[float] = _DEFAULT_TEMPERATURE,
    n_values: int = 3,
    kind: Literal["str", "int"] = "str",
    scale: float = 8.0,
) -> st.SearchStrategy[Rollouts]:
    """Whole :class:`~sharpen.rewards.Rollouts` batches.

    ``fields="token"`` sets logits (or log-probs) ``(B, T, V)``, tokens ``(B, T)`` and a
    right-padded mask; ``fields="answer"`` sets answers (with ``None``), groups and labels;
    ``"all"`` both. Group ids are ints in ``[0, n_groups)`` assigned per rollout, so groups may be
    interleaved and of unequal sizes; labels are constant within a group. Use
    :func:`rollout_groups` for the contiguous equal-size GRPO layout.

    >>> from hypothesis import find
    >>> r = find(rollouts(batch=4, fields="answer"), lambda r: len(set(r.groups)) > 1)
    >>> r.batch_size, r.logits is None
    (4, True)
    """
    _check_rollout_options(backend, inputs, fields, n_values, kind, scale)
    for name, v in (("batch", batch), ("length", length), ("vocab", vocab), ("n_groups", n_groups)):
        _check_size(v, name, 1)

    @st.composite
    def build(draw: Callable) -> Rollouts:
        b = _draw_size(draw, batch, "batch", 1)
        g = _draw_size(draw, n_groups, "n_groups", 1)
        group_ids = draw(st.lists(st.integers(0, g - 1), min_size=b, max_size=b))
        return _build_rollouts(
            draw,
            b,
            group_ids,
            length=length,
            vocab=vocab,
            backend=backend,
            inputs=inputs,
            fields=fields,
            temperature=temperature,
            n_values=n_values,
            kind=kind,
            scale=scale,
        )

    return build()


def rollout_groups(
    n_groups: IntLike = _N_GROUPS,
    group_size: IntLike = _GROUP_SIZE,
    length: IntLike = _LENGTH,
    vocab: IntLike = _VOCAB,
    *,
    backend: Backend = "numpy",
    inputs: Literal["logits", "logprobs"] = "logits",
    fields: Literal["all", "token", "answer"] = "all",
    temperature: float | st.SearchStrategy[float] = _DEFAULT_TEMPERATURE,
    n_values: int = 3,
    kind: Literal["str", "int"] = "str",
    scale: float = 8.0,
) -> st.SearchStrategy[Rollouts]:
    """``Rollouts`` of G prompts with N rollouts each, contiguous: ``groups = [0]*N + [1]*N + ...``.

    >>> from hypothesis import find
    >>> r = find(rollout_groups(2, 3, fields="answer"), lambda r: True)
    >>> r.groups
    [0, 0, 0, 1, 1, 1]
    """
    _check_rollout_options(backend, inputs, fields, n_values, kind, scale)
    for name, v in (
        ("n_groups", n_groups),
        ("group_size", group_size),
        ("length", length),
        ("vocab", vocab),
    ):
        _check_size(v, name, 1)

    @st.composite
    def build(draw: Callable) -> Rollouts:
        g = _draw_size(draw, n_groups, "n_groups", 1)
        n = _draw_size(draw, group_size, "group_size", 1)
        group_ids = [i for i in range(g) for _ in range(n)]
        return _build_rollouts(
            draw,
            g * n,
            group_ids,
            length=length,
            vocab=vocab,
            backend=backend,
            inputs=inputs,
            fields=fields,
            temperature=temperature,
            n_values=n_values,
            kind=kind,
            scale=scale,
        )

    return build()


# --------------------------------------------------------------------------------------------
# transformations of a batch
# --------------------------------------------------------------------------------------------

_ARRAY_FIELDS = ("logits", "logprobs", "tokens", "mask")
_LIST_FIELDS = ("answers", "groups", "labels", "responses", "prompts")


def _take(x: Any, perm: np.ndarray) -> Any:
    if isinstance(x, torch.Tensor):
        return x[torch.as_tensor(perm, dtype=torch.long)]
    return np.asarray(x)[perm]


def permute_rollouts(r: Rollouts, perm: Sequence[int]) -> Rollouts:
    """The batch reordered: rollout ``i`` of the result is rollout ``perm[i]`` of ``r``."""
    p = np.asarray(perm, dtype=np.int64)
    if sorted(p.tolist()) != list(range(r.batch_size)):
        raise ValueError(f"perm: must be a permutation of range({r.batch_size})")
    changes: dict[str, Any] = {}
    for name in _ARRAY_FIELDS:
        v = getattr(r, name)
        if v is not None:
            changes[name] = _take(v, p)
    for name in _LIST_FIELDS:
        v = getattr(r, name)
        if v is not None:
            items = v.tolist() if hasattr(v, "tolist") else list(v)
            changes[name] = [items[i] for i in p]
    return r.replace(**changes)


def _where(mask: Any, keep: Any, new: np.ndarray) -> Any:
    """``keep`` where ``mask`` (broadcast over trailing dims), else ``new``; same library."""
    if isinstance(keep, torch.Tensor):
        m = torch.from_numpy(np.asarray(mask, dtype=bool))
        while m.ndim < keep.ndim:
            m = m.unsqueeze(-1)
        return torch.where(m, keep, torch.from_numpy(new).to(keep.dtype))
    m = np.asarray(mask).astype(bool)
    while m.ndim < np.ndim(keep):
        m = m[..., None]
    return np.where(m, keep, new.astype(np.asarray(keep).dtype))


def _padding_mask(r: Rollouts, shape: tuple[int, int]) -> np.ndarray:
    if r.mask is None:
        return np.ones(shape, dtype=bool)
    m = r.mask.detach().cpu().numpy() if isinstance(r.mask, torch.Tensor) else np.asarray(r.mask)
    return m.astype(bool)


def _scramble_padding(r: Rollouts, data: st.DataObject, scale: float) -> Rollouts | None:
    """New logits / log-probs / tokens at mask == 0 positions; None if nothing is masked."""
    source = r.logits if r.logits is not None else r.logprobs
    if source is None:
        return None
    b, t, v = (int(s) for s in source.shape)
    valid = _padding_mask(r, (b, t))
    if valid.all():
        return None
    # Garbage under the mask, ten times the usual range: a reward reading padding should notice.
    z = data.draw(hnp.arrays(np.float32, (b, t, v), elements=_float_elements(10 * scale)))
    changes: dict[str, Any] = {}
    if r.logits is not None:
        changes["logits"] = _where(valid, r.logits, z)
    else:
        changes["logprobs"] = _where(valid, r.logprobs, _log_softmax(z))
    if r.tokens is not None:
        y = data.draw(hnp.arrays(np.int64, (b, t), elements=st.integers(0, v - 1)))
        changes["tokens"] = _where(valid, r.tokens, y)
    return r.replace(**changes)


def _rename_answers(r: Rollouts, data: st.DataObject) -> Rollouts:
    """Apply one random bijection to the answer values (and labels); None stays None."""
    seen = [a for a in list(r.answers) + list(r.labels or []) if a is not None]
    distinct = list(dict.fromkeys(seen))
    order = data.draw(st.permutations(range(len(distinct))))
    if all(isinstance(a, str) for a in distinct):
        mapping = {a: f"x{100 + j}" for a, j in zip(distinct, order, strict=True)}
    else:
        mapping = {a: 1000 + j for a, j in zip(distinct, order, strict=True)}
    changes: dict[str, Any] = {"answers": [None if a is None else mapping[a] for a in r.answers]}
    if r.labels is not None:
        changes["labels"] = [None if a is None else mapping[a] for a in r.labels]
    return r.replace(**changes)


def _has_tied_vote(r: Rollouts) -> bool:
    """Whether some group's plurality (over non-None answers) is tied."""
    groups = r.groups if r.groups is not None else [0] * r.batch_size
    by_group: dict[Hashable, list[Hashable]] = {}
    for g, a in zip(groups, r.answers, strict=True):
        if a is not None:
            by_group.setdefault(g, []).append(a)
    for answers in by_group.values():
        counts = sorted(Counter(answers).values(), reverse=True)
        if len(counts) > 1 and counts[0] == counts[1]:
            return True
    return False


def _order_preserving_perm(r: Rollouts, data: st.DataObject) -> list[int]:
    """A random interleaving of the groups that keeps each group's internal order."""
    groups = r.groups if r.groups is not None else [0] * r.batch_size
    queues: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        queues.setdefault(g, []).append(i)
    slots = [g for g, idx in queues.items() for _ in idx]
    slots = data.draw(st.permutations(slots))
    heads = {g: iter(idx) for g, idx in queues.items()}
    return [next(heads[g]) for g in slots]


# --------------------------------------------------------------------------------------------
# the checker
# --------------------------------------------------------------------------------------------


def _fail(invariant: str, detail: str) -> AssertionError:
    return AssertionError(f"check_reward: invariant '{invariant}' violated: {detail}")


def _call(fn: Callable[[Rollouts], Any], r: Rollouts, what: str) -> np.ndarray:
    try:
        out = fn(r)
    except Exception as exc:  # noqa: BLE001 - any failure on valid input is a violation
        raise _fail(
            "accepts valid rollouts", f"fn raised {type(exc).__name__}: {exc} (on the {what} batch)"
        ) from exc
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu()
        if out.dtype == torch.bfloat16:
            out = out.float()
        out = out.numpy()
    try:
        arr = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail("output shape (B,)", f"output is not numeric: {type(out).__name__}") from exc
    if arr.shape != (r.batch_size,):
        raise _fail(
            "output shape (B,)",
            f"expected shape ({r.batch_size},), got {arr.shape} (on the {what} batch)",
        )
    return arr


def _assert_close(
    invariant: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float, how: str
) -> None:
    if np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
        return
    diff = np.abs(got - want)
    diff = np.where(np.isnan(diff), np.inf, diff)
    rows = np.flatnonzero(~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True))
    raise _fail(
        invariant,
        f"{how}; rollouts {rows[:5].tolist()} differ, largest change {float(diff.max()):.3g} "
        f"(expected {want[rows[:5]].tolist()}, got {got[rows[:5]].tolist()})",
    )


def check_reward(
    fn: Callable[[Rollouts], Any],
    *,
    examples: int = 40,
    level: Literal["token", "answer"] = "token",
    backend: Backend = "numpy",
    inputs: Literal["logits", "logprobs"] = "logits",
    max_batch: int = 6,
    max_length: int = 5,
    max_vocab: int = 8,
    require_finite: bool = True,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    derandomize: bool = True,
    shrink: bool = True,
) -> None:
    """Check a reward ``fn(rollouts) -> (B,)`` against the invariants of the reward algebra.

    Runs ``examples`` hypothesis-generated batches (shrinking a failure to a small one) and raises
    ``AssertionError("check_reward: invariant '<name>' violated: ...")`` on the first violation.

    Invariants, on every batch:

    * ``accepts valid rollouts`` -- ``fn`` does not raise on a valid batch;
    * ``output shape (B,)`` -- one numeric reward per rollout (numpy or torch);
    * ``finite output`` -- finite inputs give finite rewards (skip with ``require_finite=False``,
      e.g. for log-space rewards that are ``-inf`` on unparseable answers);
    * ``deterministic`` -- calling twice gives the same rewards (no hidden global RNG);
    * ``permutation equivariance`` -- reordering the batch (every field together, group ids
      included) reorders the rewards the same way. At ``level="answer"`` TTRL's first-seen tie
      rule makes rewards of a tied vote order-dependent by design, so full permutations are checked
      on batches whose votes have no tie, and on every batch only permutations that interleave the
      groups while keeping each group's internal order;

    at ``level="token"`` (batches with logits or log-probs, tokens, a right-padded mask, plus
    answers, groups and labels):

    * ``masked positions ignored`` -- replacing logits / log-probs and tokens where ``mask == 0``
      by arbitrary values leaves the rewards unchanged;

    at ``level="answer"`` (batches with answers, groups and labels only):

    * ``invariance under renaming answers`` -- applying one bijection to all answer values and
      labels (``None`` stays unparseable) leaves the rewards unchanged.

    Parameters
    ----------
    fn : the reward, e.g. ``sharpen.rewards.get_reward("token_entropy")``
    examples : number of generated batches (hypothesis ``max_examples``)
    level : which family of inputs and invariants applies (see above)
    backend : arrays handed to ``fn`` as numpy arrays or torch tensors
    inputs : token-level batches carry ``logits`` or normalised ``logprobs``
    max_batch, max_length, max_vocab : size limits of the generated batches
    rtol, atol : tolerance for "unchanged"
    derandomize : repeatable example generation (recommended in CI)
    shrink : shrink a failing batch to a minimal one (clearer report, can take seconds)

    >>> from sharpen.rewards import get_reward
    >>> check_reward(get_reward("token_entropy"), examples=5)
    >>> check_reward(lambda r: np.zeros(2), examples=5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    AssertionError: check_reward: invariant 'output shape (B,)' violated: ...
    """
    if not callable(fn):
        raise ValueError(f"fn: must be callable fn(rollouts) -> (B,), got {type(fn).__name__}")
    if level not in ("token", "answer"):
        raise ValueError(f"level: must be 'token' or 'answer', got {level!r}")
    _check_backend(backend)
    if inputs not in ("logits", "logprobs"):
        raise ValueError(f"inputs: must be 'logits' or 'logprobs', got {inputs!r}")
    for name, v in (
        ("examples", examples),
        ("max_batch", max_batch),
        ("max_length", max_length),
        ("max_vocab", max_vocab),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: must be an int >= 1, got {v!r}")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name}: must be finite and >= 0, got {v!r}")

    scale = 8.0
    strategy = rollouts(
        batch=st.integers(1, max_batch),
        length=st.integers(1, max_length),
        vocab=st.integers(2, max(2, max_vocab)),
        n_groups=st.integers(1, 3),
        backend=backend,
        inputs=inputs,
        fields="all" if level == "token" else "answer",
        scale=scale,
    )

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        phases=tuple(p for p in Phase if shrink or p not in (Phase.shrink, Phase.explain)),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(r=strategy, data=st.data())
    def run(r: Rollouts, data: st.DataObject) -> None:
        out = _call(fn, r, "generated")
        if require_finite and not np.isfinite(out).all():
            bad = np.flatnonzero(~np.isfinite(out))
            raise _fail(
                "finite output",
                f"rewards {out[bad[:5]].tolist()} at rollouts {bad[:5].tolist()} on finite input",
            )
        _assert_close(
            "deterministic",
            _call(fn, r, "same"),
            out,
            rtol,
            atol,
            "a second call on the same batch",
        )

        if level == "token":
            scrambled = _scramble_padding(r, data, scale)
            if scrambled is not None:
                _assert_close(
                    "masked positions ignored",
                    _call(fn, scrambled, "padding-scrambled"),
                    out,
                    rtol,
                    atol,
                    "changing logits/tokens where mask == 0 changed the reward",
                )

        perms: list[tuple[str, list[int]]] = []
        if level == "token" or not _has_tied_vote(r):
            perms.append(("a permutation", data.draw(st.permutations(range(r.batch_size)))))
        if level == "answer":
            perms.append(("a group-order-preserving permutation", _order_preserving_perm(r, data)))
        for how, perm in perms:
            _assert_close(
                "permutation equivariance",
                _call(fn, permute_rollouts(r, perm), "permuted"),
                out[np.asarray(perm)],
                rtol,
                atol,
                f"reordering the batch by {how} {list(perm)} did not reorder the rewards",
            )

        if level == "answer":
            _assert_close(
                "invariance under renaming answers",
                _call(fn, _rename_answers(r, data), "renamed"),
                out,
                rtol,
                atol,
                "renaming the answer values (a bijection, labels renamed too) changed the reward",
            )

    run()
