r"""Intrinsic rewards as one formula: the unified cross-entropy reward and its presets.

Every intrinsic reward of URLVR is an instance of

.. math::

    r_{\rm uni}(x, y) = \psi\Big(\frac{\sigma}{|\mathcal I|}\sum_{i\in\mathcal I}\mathbb H(q_i, \pi^i)\Big),
    \qquad \mathbb H(q, p) = -\sum_v q(v)\log p(v),

with aggregation units :math:`\mathcal I` (``unit``), anchor :math:`q_i` (``anchor``), direction
:math:`\sigma=\pm1` (``sign``) and monotone transform :math:`\psi` (``transform``). :class:`RewardSpec` holds
these knobs as data and :func:`score` evaluates any spec. The five named rewards are presets:

======================  =======  =========  ====  =====  =========================================================
preset                  unit     anchor      σ    ψ      reward
======================  =======  =========  ====  =====  =========================================================
``SELF_CERTAINTY``      token    uniform    +1    id     :math:`\frac1T\sum_t \mathbb H(U,\pi^t)` (Intuitor; = KL(U‖π)+log V)
``TOKEN_ENTROPY``       token    policy     -1    id     :math:`-\frac1T\sum_t H(\pi^t)` (RENT; EM-RL with ``aggregate="sum"``)
``TRAJECTORY_ENTROPY``  token    sampled    -1    id     :math:`\frac1T\sum_t\log\pi^t(y_t)` (EM-RL-sequence with ``"sum"``)
``PROBABILITY``         sequence sampled    -1    exp    :math:`\pi_\theta(y\mid x)=\prod_t\pi^t(y_t)` (RLSC)
``MAJORITY_VOTING``     answer   majority   -1    exp    :math:`\mathbb 1[\mathrm{ans}(y)=\mathrm{maj}(Y)]` (TTRL)
``VOTE_SHARE``          answer   sampled    -1    exp    :math:`\hat p(\mathrm{ans}(y))`, the soft reading of voting
======================  =======  =========  ====  =====  =========================================================

Anchors: ``uniform`` is :math:`U`; ``policy`` is :math:`\pi^t` itself (stop-gradient), so
:math:`\mathbb H(\pi^t,\pi^t)=H(\pi^t)`; ``sampled`` is the point mass on what was sampled (:math:`\delta_{y_t}`,
:math:`\delta_y` or :math:`\delta_{\mathrm{ans}(y)}`); ``majority`` is :math:`\delta_{\mathrm{maj}(Y)}`.
At the answer level the "policy" :math:`\pi^i` is the point mass :math:`\delta_{\mathrm{ans}(y)}` for the
``majority`` anchor (the hard reading: :math:`\mathbb H\in\{0,\infty\}`, so :math:`e^{-\mathbb H}\in\{0,1\}`) and
the group's empirical answer distribution :math:`\hat p` for the ``sampled`` anchor (the soft reading).

Numerics: log-probabilities come from ``log_softmax`` of the temperature-scaled logits, computed in float32 or
wider; :math:`\mathbb H(U,\pi)=\mathrm{LSE}(z)-\bar z` exactly. ``exp`` is applied last. The probability reward
underflows to 0 in float32 once the summed log-probability is below about -103 (-87 for normal floats), which long
responses reach easily: call :func:`score` with ``log_space=True`` (or ``get_reward("probability",
log_space=True)``) to get :math:`\log\pi_\theta(y\mid x)` instead.

The calling convention shared by every reward is ``fn(rollouts: Rollouts) -> (B,) array`` (see :func:`get_reward`).
The registry holds one :class:`RewardInfo` per reward -- its level (token / answer / external), its spec where it
has one, what it needs and a one-line description -- so every list of rewards elsewhere is read from it
(:func:`available_rewards`, :func:`reward_info`), and adding a reward is one :func:`register_reward` call.

Bad input
---------
Every check raises ``ValueError`` with a one-line message ``name: problem`` naming the field or argument:

* :class:`Rollouts`: ``temperature`` not a finite number > 0 (bools rejected); both ``logits`` and ``logprobs``;
  a list field given as one ``str`` (or bytes) or as something without a length (an int, a 0-d array); fields of
  different batch sizes (``Rollouts:``); no field; B = 0; array fields none of which has a batch axis.
  ``Rollouts.replace`` with a name that is not a field (``foo: not a field of Rollouts``).
* ``logits`` / ``logprobs``: not real numbers (str, object or complex dtype, ragged lists), NaN or inf, not
  (B, T, V) with V >= 1; ``logprobs`` rows that are not normalised (``logsumexp`` off 0 by more than 1e-3);
  neither given to a token-level reward (``logits:``). Any byte order and strides are accepted. ``h`` of
  :func:`aggregate_cross_entropies` likewise, (B, T) with B >= 1 (its ``mask`` None means all valid).
* ``tokens``: missing for the ``sampled`` anchor, not integers (float, bool, str dtype), not (B, T), ids outside
  ``[0, V)`` on valid positions. ``mask``: not numbers, values other than 0/1, not (B, T), a row with no valid
  token (T = 0 without a mask included).
* ``answers``: missing for an answer-level reward, an unhashable entry (a list, dict, array); ``groups``: an
  unhashable id, a length other than B. ``ground_truth`` needs ``answers`` and ``labels``, both hashable.
* ``spec``: not a :class:`RewardSpec`, or knobs outside their choices / an invalid combination (``unit``,
  ``anchor``, ``transform``, ``aggregate`` must be one of their strings, ``sign`` the number +1 or -1; bools and
  arrays rejected). ``log_space``: not a bool (:func:`score`, :func:`aggregate_cross_entropies`, the presets).
* :func:`group_indices`: ``batch_size`` not an int >= 0; ``groups`` a str or not iterable, an unhashable id, a
  length other than ``batch_size``.
* :func:`get_reward` / :func:`reward_info`: an unknown ``name:`` (the valid names are listed); an option the
  reward does not take (``foo: not an option of reward ...; accepted options: ...``); a bad option value
  (``aggregate``, ``log_space`` / ``math_verify`` not bools, ``verifier`` or ``check`` not callable, both
  ``math_verify`` and ``check``). A ``verifier`` returning something that is not (B,) numbers in {0, 1}, or a
  ``check`` returning something other than a bool, fails when the reward is called (``verifier:``,
  ``check:``). :func:`register_reward`: a ``name`` that is not a non-empty str or is taken, a ``factory`` that
  is not callable, a ``level`` outside its choices or contradicting the ``spec``, ``needs`` outside
  :data:`NEEDS` (or with ``logits`` for a reward that is not token-level, or without it for one that is), a
  ``spec`` that is not a :class:`RewardSpec`, a ``description`` that is not a str.
  :func:`available_rewards`: a ``level`` outside its choices.

Values: valid input never gives NaN. Rewards are finite while the scaled logits stay within
:math:`|z/\tau| \le 10^{30}` (log-probs within :math:`\pm 10^{30}`); beyond, a cross-entropy whose exact value
exceeds the float range (a probability that underflows to exactly 0, a sum past ~3e38 in float32) is
``+inf``, so a reward may be :math:`\pm\infty` (0 after ``exp``) -- never a wrong finite number. A temperature
below the logits' dtype's smallest normal number is applied in float64.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch

from sharpen import _array
from sharpen.answers import (
    _brief,
    _Canonical,
    _exact_plurality,
    _finite_float,
    canonicalize,
    equivalent,
)

__all__ = [
    "MAJORITY_VOTING",
    "PROBABILITY",
    "PRESETS",
    "RewardFn",
    "RewardSpec",
    "LEVELS",
    "NEEDS",
    "RewardInfo",
    "Rollouts",
    "SELF_CERTAINTY",
    "TOKEN_ENTROPY",
    "TRAJECTORY_ENTROPY",
    "VOTE_SHARE",
    "aggregate_cross_entropies",
    "available_rewards",
    "get_reward",
    "group_indices",
    "register_reward",
    "reward_info",
    "score",
    "token_cross_entropies",
    "token_entropies",
    "token_logprobs",
]

Unit = Literal["token", "sequence", "answer"]
Anchor = Literal["uniform", "policy", "sampled", "majority"]
Transform = Literal["identity", "exp"]
Aggregate = Literal["mean", "sum"]

_UNITS = ("token", "sequence", "answer")
_ANCHORS = ("uniform", "policy", "sampled", "majority")
_TRANSFORMS = ("identity", "exp")
_AGGREGATES = ("mean", "sum")


# ----------------------------------------------------------------------------------------------------------------
# The spec
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardSpec:
    r"""The knobs of :math:`r_{\rm uni}=\psi(\frac{\sigma}{|\mathcal I|}\sum_{i\in\mathcal I}\mathbb H(q_i,\pi^i))`.

    Attributes
    ----------
    unit : {"token", "sequence", "answer"}
        Aggregation units :math:`\mathcal I`: every valid response token, the whole sequence (one unit), or the
        extracted answer (one unit).
    anchor : {"uniform", "policy", "sampled", "majority"}
        The anchor :math:`q_i` (see the module docstring). ``sequence`` needs ``sampled``; ``answer`` needs
        ``sampled`` or ``majority``; ``majority`` needs ``answer``.
    sign : {+1, -1}
        The direction :math:`\sigma`.
    transform : {"identity", "exp"}
        The monotone transform :math:`\psi`.
    aggregate : {"mean", "sum"}
        Over tokens: ``"mean"`` divides by :math:`|\mathcal I|=T` (URLVR, RENT, Intuitor), ``"sum"`` does not
        (EM-RL). Irrelevant for one-unit specs.
    """

    unit: Unit
    anchor: Anchor
    sign: int
    transform: Transform = "identity"
    aggregate: Aggregate = "mean"

    def __post_init__(self) -> None:
        for name, choices in (
            ("unit", _UNITS),
            ("anchor", _ANCHORS),
            ("transform", _TRANSFORMS),
            ("aggregate", _AGGREGATES),
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:  # an array compares elementwise
                raise ValueError(f"{name}: must be one of {choices}, got {_brief(value)}")
        sign = self.sign
        number = isinstance(sign, int | float | np.integer | np.floating) and not isinstance(
            sign, bool | np.bool_
        )
        if not (number and sign in (1, -1)):
            raise ValueError(f"sign: must be +1 or -1, got {_brief(sign)}")
        if self.unit == "sequence" and self.anchor != "sampled":
            raise ValueError("anchor: a 'sequence' unit needs the 'sampled' anchor (delta_y)")
        if self.unit == "answer" and self.anchor not in ("sampled", "majority"):
            raise ValueError("anchor: an 'answer' unit needs the 'sampled' or 'majority' anchor")
        if self.anchor == "majority" and self.unit != "answer":
            raise ValueError("anchor: 'majority' is defined at the 'answer' unit only")

    @property
    def needs_logits(self) -> bool:
        """Token- and sequence-level specs read the policy's log-probabilities."""
        return self.unit in ("token", "sequence")


SELF_CERTAINTY = RewardSpec("token", "uniform", +1, "identity", "mean")
TOKEN_ENTROPY = RewardSpec("token", "policy", -1, "identity", "mean")
TRAJECTORY_ENTROPY = RewardSpec("token", "sampled", -1, "identity", "mean")
PROBABILITY = RewardSpec("sequence", "sampled", -1, "exp")
MAJORITY_VOTING = RewardSpec("answer", "majority", -1, "exp")
VOTE_SHARE = RewardSpec("answer", "sampled", -1, "exp")

PRESETS: dict[str, RewardSpec] = {
    "self_certainty": SELF_CERTAINTY,
    "token_entropy": TOKEN_ENTROPY,
    "trajectory_entropy": TRAJECTORY_ENTROPY,
    "probability": PROBABILITY,
    "majority_voting": MAJORITY_VOTING,
    "vote_share": VOTE_SHARE,
}


# ----------------------------------------------------------------------------------------------------------------
# The batch
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollouts:
    r"""A batch of B sampled responses -- the one argument every reward takes.

    Only the fields a reward needs must be set: token-level rewards read ``logits`` (or ``logprobs``),
    ``tokens`` and ``mask``; answer-level rewards read ``answers`` (and ``groups``; ``labels`` for ground truth).

    Attributes
    ----------
    logits : (B, T, V) array or tensor, optional
        Raw logits :math:`z^t` aligned with the response tokens (logit t predicts ``tokens[:, t]``: for a prompt of
        length P use model positions P-1 .. P+T-2). Divided by ``temperature`` inside.
    logprobs : (B, T, V) array or tensor, optional
        Full-vocabulary log-probabilities :math:`\log\pi^t` with the temperature already applied. Give this or
        ``logits``, not both.
    tokens : (B, T) int array or tensor, optional
        Sampled token ids :math:`y_t`.
    mask : (B, T) 0/1 or bool, optional
        1 on response tokens, 0 on padding. Defaults to all ones. Every row needs a valid token.
    temperature : float
        Rollout temperature :math:`\tau` (> 0); :math:`\pi^t=\mathrm{softmax}(z^t/\tau)`.
    answers : sequence of B hashables or None, optional
        Extracted answers, ``None`` for unparseable (strings are canonicalised before voting).
    groups : sequence of B hashables, optional
        Prompt id of each rollout (the GRPO group); ``None`` means one group.
    labels : sequence of B, optional
        Ground truth of each rollout's prompt (measurement, or the ``ground_truth`` reward): its answer, or what
        that reward's ``check(gold, pred)`` reads (a trainer may pass the question itself).
    responses, prompts : sequence of B str, optional
        Decoded text, for verifiers.
    """

    logits: Any = None
    logprobs: Any = None
    tokens: Any = None
    mask: Any = None
    temperature: float = 1.0
    answers: Sequence[Hashable | None] | None = None
    groups: Sequence[Hashable] | Any | None = None
    labels: Sequence[Hashable | None] | None = None
    responses: Sequence[str] | None = None
    prompts: Sequence[str] | None = None

    def __post_init__(self) -> None:
        t = _finite_float(self.temperature)
        if t is None or not t > 0:
            raise ValueError(
                f"temperature: must be a finite number > 0, got {_brief(self.temperature)}"
            )
        if self.logits is not None and self.logprobs is not None:
            raise ValueError("logits, logprobs: give one of them, not both")
        sizes = {}
        for name in _ARRAY_FIELDS + _SEQUENCE_FIELDS:
            v = getattr(self, name)
            if v is not None:
                sizes[name] = _leading_size(v)
                if sizes[name] is None and name in _SEQUENCE_FIELDS:  # a str, a number
                    raise ValueError(
                        f"{name}: expected a sequence of length B, got {type(v).__name__}"
                    )
        distinct = {s for s in sizes.values() if s is not None}
        if len(distinct) > 1:
            raise ValueError(f"Rollouts: batch size mismatch between fields: {sizes}")
        if not sizes:
            raise ValueError("Rollouts: no field set")
        if not distinct:
            name = next(iter(sizes))
            raise ValueError(
                f"{name}: expected an array with a batch axis B, got {type(getattr(self, name)).__name__}"
            )
        if 0 in distinct:
            raise ValueError("Rollouts: empty batch (B = 0)")

    @property
    def batch_size(self) -> int:
        """B, from the first field that has a length (``ValueError`` if none has one)."""
        for name in _ARRAY_FIELDS + _SEQUENCE_FIELDS:
            v = getattr(self, name)
            size = None if v is None else _leading_size(v)
            if size is not None:
                return size
        raise ValueError("Rollouts: no field has a batch dimension (B)")

    def replace(self, **changes: Any) -> Rollouts:
        """A copy with some fields replaced (``dataclasses.replace``); checked like a new batch."""
        fields = {f.name for f in dataclasses.fields(self)}
        for name in changes:
            if name not in fields:
                raise ValueError(
                    f"{name}: not a field of Rollouts; fields: {', '.join(sorted(fields))}"
                )
        return dataclasses.replace(self, **changes)


_ARRAY_FIELDS = ("logits", "logprobs", "tokens", "mask")
_SEQUENCE_FIELDS = ("answers", "groups", "labels", "responses", "prompts")


def _leading_size(v: Any) -> int | None:
    """Length of the first axis of an array, tensor or sequence; None if it has none (a scalar)."""
    shape = getattr(v, "shape", None)
    if isinstance(shape, tuple | torch.Size):
        return int(shape[0]) if len(shape) else None
    if isinstance(v, str | bytes):
        return None
    try:
        return len(v)
    except TypeError:
        return None


# ----------------------------------------------------------------------------------------------------------------
# Token-level building blocks
# ----------------------------------------------------------------------------------------------------------------


def _numeric(x: Any, name: str) -> Any:
    """``x`` unchanged (torch) or as a numpy array, if it holds real numbers; else ``ValueError``.

    ``_array`` converts with ``torch.from_numpy``, whose error for str/object arrays names neither the
    argument nor the problem.
    """
    if x is None or isinstance(x, torch.Tensor):
        if x is not None and x.is_complex():
            raise ValueError(f"{name}: expected real numbers, got dtype {x.dtype}")
        return x
    try:
        a = np.asarray(x)
    except (TypeError, ValueError, OverflowError) as exc:  # ragged or too deeply nested lists
        raise ValueError(f"{name}: expected a rectangular array of numbers") from exc
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected real numbers, got dtype {a.dtype}")
    if not a.dtype.isnative:  # torch.from_numpy takes native byte order only
        a = a.astype(a.dtype.newbyteorder("="))
    if any(stride < 0 for stride in a.strides):  # ... and no negative strides
        a = a.copy()
    if a.dtype.kind == "u" and a.dtype.itemsize == 8:  # Python ints past int64 give uint64 'Q',
        a = a.astype(np.uint64)  # which torch does not take (its uint64 is 'L')
    return a


def _scaled_logits(rollouts: Rollouts) -> torch.Tensor:
    """(B, T, V) logits divided by the temperature (``rollouts.logits`` must be set), float32 or wider."""
    z = _array.as_float_tensor(_numeric(rollouts.logits, "logits"), "logits")
    if z.ndim != 3 or z.shape[-1] == 0:
        raise ValueError(f"logits: expected shape (B, T, V) with V >= 1, got {tuple(z.shape)}")
    tau = float(rollouts.temperature)  # a Python int beyond int64 is no torch scalar
    if tau == 1.0:  # z / 1 is z, exactly
        return z
    if tau < torch.finfo(z.dtype).tiny:  # tau would round to 0 in z's dtype: 0 / 0 = NaN
        z = z.to(torch.float64)
    scaled = z / tau
    if tau < 1 and not bool(torch.isfinite(scaled).all()):
        # z / tau overflowed (log_softmax would give NaN): shift first, the result is the same
        scaled = (z - z.amax(dim=-1, keepdim=True)).div_(tau)
    return scaled


def _logprobs(rollouts: Rollouts) -> torch.Tensor:
    """(B, T, V) validated ``rollouts.logprobs`` (which must be set), float32 or wider."""
    if rollouts.logprobs is not None:
        lp = _array.as_float_tensor(_numeric(rollouts.logprobs, "logprobs"), "logprobs")
        if lp.ndim != 3 or lp.shape[-1] == 0:
            raise ValueError(
                f"logprobs: expected shape (B, T, V) with V >= 1, got {tuple(lp.shape)}"
            )
        total = torch.logsumexp(lp, dim=-1)
        if not bool((total.abs() < 1e-3).all()):
            raise ValueError("logprobs: rows must be normalised log-probabilities (logsumexp = 0)")
        return lp
    raise ValueError("logits: token-level rewards need rollouts.logits or rollouts.logprobs")


def _mask(rollouts: Rollouts, shape: tuple[int, int]) -> torch.Tensor:
    return _mask_tensor(rollouts.mask, shape)


def _mask_tensor(mask: Any, shape: tuple[int, int]) -> torch.Tensor:
    """(B, T) bool mask (None: all valid); every row needs a valid token."""
    if mask is None:
        if shape[1] == 0:
            raise ValueError("mask: no valid token in any row (T = 0)")
        return torch.ones(shape, dtype=torch.bool)
    m = _array.as_mask_tensor(_numeric(mask, "mask"), "mask")
    if tuple(m.shape) != shape:
        raise ValueError(f"mask: expected shape {shape} (B, T), got {tuple(m.shape)}")
    empty = ~m.any(dim=1)
    if bool(empty.any()):
        rows = torch.nonzero(empty).flatten().tolist()[:5]
        raise ValueError(f"mask: rows {rows} have no valid token (all masked)")
    return m


def _tokens(rollouts: Rollouts, shape: tuple[int, int]) -> torch.Tensor:
    y = _array.as_index_tensor(_numeric(rollouts.tokens, "tokens"), "tokens")
    if tuple(y.shape) != shape:
        raise ValueError(f"tokens: expected shape {shape} (B, T), got {tuple(y.shape)}")
    return y


def _sampled_tokens(rollouts: Rollouts, m: torch.Tensor, vocab: int) -> torch.Tensor:
    """(B, T) token ids, checked to lie in ``[0, vocab)`` on the valid positions of ``m``."""
    y = _tokens(rollouts, (m.shape[0], m.shape[1]))
    bad = m & ((y < 0) | (y >= vocab))
    if bool(bad.any()):
        raise ValueError(f"tokens: ids must lie in [0, {vocab}) on valid positions")
    return y


def _row_cross_entropies(
    spec: RewardSpec, logp: torch.Tensor, y: torch.Tensor | None
) -> torch.Tensor:
    r""":math:`\mathbb H(q, \pi)` of each row of log-probabilities ``logp (..., V)`` (``y (...)``: the sampled ids,
    for the ``sampled`` anchor). Row by row: a row's value does not depend on the other rows."""
    if spec.anchor == "uniform":
        return -logp.mean(dim=-1)
    if spec.anchor == "policy":
        p = logp.exp()
        # p log p = 0 where p underflowed to 0 (logp = -inf would give 0 * -inf = NaN, also in backward)
        return -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(dim=-1)
    return -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)


def token_cross_entropies(
    spec: RewardSpec, rollouts: Rollouts
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per-token cross-entropies :math:`\mathbb H(q_t, \pi^t)` for a token- or sequence-level spec.

    Returns
    -------
    h : (B, T) float tensor
        ``uniform``: :math:`-\frac1V\sum_v\log\pi^t(v)`; ``policy``: :math:`H(\pi^t)`;
        ``sampled``: :math:`-\log\pi^t(y_t)`. Zero on masked positions.
    mask : (B, T) bool tensor

    From logits on the CPU without autograd, with padding, :math:`\pi^t` is formed at the valid positions only:
    ``log_softmax`` and the cross-entropies work row by row, so these are the numbers the whole tensor gives.
    """
    if not spec.needs_logits:
        raise ValueError(f"spec: unit {spec.unit!r} has no token cross-entropies")
    source = _scaled_logits(rollouts) if rollouts.logits is not None else _logprobs(rollouts)
    shape = (source.shape[0], source.shape[1])
    m = _mask(rollouts, shape)
    vocab = source.shape[-1]
    y = _sampled_tokens(rollouts, m, vocab) if spec.anchor == "sampled" else None
    if (
        rollouts.logits is not None
        and source.device.type == "cpu"
        and not source.requires_grad
        and not bool(m.all())
    ):
        h = torch.zeros(shape, dtype=source.dtype)
        h[m] = _row_cross_entropies(
            spec, torch.log_softmax(source[m], dim=-1), None if y is None else y[m]
        )
        return h, m
    logp = torch.log_softmax(source, dim=-1) if rollouts.logits is not None else source
    safe = None if y is None else torch.where(m, y, torch.zeros_like(y))
    h = _row_cross_entropies(spec, logp, safe)
    return torch.where(m, h, torch.zeros_like(h)), m


def token_entropies(logits: Any, temperature: float = 1.0) -> Any:
    r"""Entropy :math:`H(\pi^t)=\mathrm{LSE}(z/\tau)-\sum_v\pi^t(v)z_v/\tau` of every position.

    Parameters
    ----------
    logits : (B, T, V) array or tensor
    temperature : float

    Returns
    -------
    (B, T), same library as ``logits``, float32 or wider.
    """
    if logits is None:
        raise ValueError("logits: required, got None")
    r = Rollouts(logits=logits, temperature=temperature)
    h, _ = token_cross_entropies(TOKEN_ENTROPY, r)
    return _array.like_input(h, logits)


def token_logprobs(logits: Any, tokens: Any, temperature: float = 1.0) -> Any:
    r""":math:`\log\pi^t(y_t)` of the sampled tokens.

    Parameters
    ----------
    logits : (B, T, V) array or tensor (aligned: position t predicts ``tokens[:, t]``)
    tokens : (B, T) int
    temperature : float

    Returns
    -------
    (B, T), same library as ``logits``.
    """
    if logits is None:
        raise ValueError("logits: required, got None")
    r = Rollouts(logits=logits, tokens=tokens, temperature=temperature)
    h, _ = token_cross_entropies(TRAJECTORY_ENTROPY, r)
    return _array.like_input(-h, logits)


# ----------------------------------------------------------------------------------------------------------------
# Answer-level building blocks
# ----------------------------------------------------------------------------------------------------------------


def group_indices(groups: Sequence[Hashable] | Any | None, batch_size: int) -> list[np.ndarray]:
    """Indices of each group's rollouts, groups in first-seen order.

    Parameters
    ----------
    groups : sequence of B hashables, array, or None (one group)
    batch_size : int
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or not 0 <= batch_size < 2**63
    ):
        raise ValueError(f"batch_size: must be an int >= 0 (below 2**63), got {_brief(batch_size)}")
    if groups is None:
        return [np.arange(batch_size)]
    if isinstance(groups, str | bytes):
        raise ValueError(f"groups: expected a sequence of length B, got a {type(groups).__name__}")
    keys = groups.tolist() if hasattr(groups, "tolist") else groups
    try:
        keys = list(keys)
    except TypeError:
        raise ValueError(
            f"groups: expected a sequence of length {batch_size}, got {type(groups).__name__}"
        ) from None
    if len(keys) != batch_size:
        raise ValueError(f"groups: expected length {batch_size}, got {len(keys)}")
    _check_hashable(keys, "groups")
    index: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        index.setdefault(k, []).append(i)
    return [np.asarray(v, dtype=np.int64) for v in index.values()]


def _check_hashable(items: Sequence[Any], name: str) -> None:
    """Vote keys must be hashable: name the first offending entry (dict's TypeError names neither)."""
    for i, a in enumerate(items):
        try:
            hash(a)
        except TypeError:
            raise ValueError(
                f"{name}: entry {i} is an unhashable {type(a).__name__} ({_brief(a, 40)}); "
                "use hashable values (str, int, tuple) or None"
            ) from None


def _canonical_answers(answers: Sequence[Any]) -> list[Any]:
    """Each string answer as :func:`~sharpen.answers.canonicalize` writes it, other answers as they are; each
    distinct plain ``str`` canonicalised once (:class:`~sharpen.answers._Canonical`; a group's samples mostly repeat
    a few answers)."""
    canon = _Canonical()
    return [
        canon[a] if type(a) is str else canonicalize(a) if isinstance(a, str) else a
        for a in answers
    ]


def _answer_log_values(spec: RewardSpec, rollouts: Rollouts) -> np.ndarray:
    r""":math:`\sigma\,\mathbb H(q, \pi)` per rollout at the answer level, in float64 (may be ``-inf``)."""
    if rollouts.answers is None:
        raise ValueError("answers: answer-level rewards need rollouts.answers")
    _check_hashable(rollouts.answers, "answers")
    answers = _canonical_answers(rollouts.answers)
    groups = group_indices(rollouts.groups, len(answers))
    if spec.anchor == "majority":
        fast = _int_majority(answers, groups)
        if fast is not None:
            return fast if spec.sign == -1 else -fast
    out = np.full(len(answers), -np.inf)
    for idx in groups:
        group = [answers[i] for i in idx]
        if spec.anchor == "majority":
            winner = _exact_plurality(group)[0]  # majority_vote(group, canonical=False).answer
            for i, a in zip(idx, group, strict=True):
                # H(delta_maj, delta_ans) = 0 if ans == maj else +inf
                if a is not None and a == winner:
                    out[i] = 0.0
        else:  # sampled: -H(delta_ans, p_hat) = log p_hat(ans); unparseable counts in N
            n = len(group)
            counts: dict[Hashable, int] = {}
            for a in group:
                if a is not None:
                    counts[a] = counts.get(a, 0) + 1
            for i, a in zip(idx, group, strict=True):
                if a is not None:
                    out[i] = math.log(counts[a] / n)
    # sigma * H with sigma = -1 gives log-values; sigma = +1 gives the negated ones
    return out if spec.sign == -1 else -out


def _ints_or_none(values: Sequence[Any]) -> bool:
    """Whether every entry is a Python int (not a bool) or None: answer ids, compared by ``==``."""
    return all(type(a) is int or a is None for a in values)


def _int_majority(answers: list[Any], groups: list[np.ndarray]) -> np.ndarray | None:
    r"""The ``majority`` anchor's log-values (0 for the group's vote, ``-inf`` otherwise) when every answer is a
    Python int or None and the groups share one size of at most 64 (a simulator's answer ids), all groups at
    once; None otherwise. The vote is :func:`sharpen.answers.majority_vote`'s: the largest class, ties to the
    class seen first, which is the class of the group's first answer whose class is of the largest size."""
    size = len(groups[0]) if groups else 0
    if not 0 < size <= 64 or any(len(g) != size for g in groups):
        return None
    if not _ints_or_none(answers):
        return None
    try:
        values = np.fromiter((0 if a is None else a for a in answers), np.int64, len(answers))
    except OverflowError:  # beyond int64
        return None
    idx = np.stack(groups)  # (G, N), each group's rollouts in order
    parsed = np.asarray([a is not None for a in answers])[idx]
    v = values[idx]
    same = (v[:, :, None] == v[:, None, :]) & parsed[:, :, None] & parsed[:, None, :]
    size_of = same.sum(axis=2)  # the size of each answer's class (0: unparseable)
    top = size_of.max(axis=1)
    winner = v[np.arange(len(v)), (size_of == top[:, None]).argmax(axis=1)]
    out = np.full(len(answers), -np.inf)
    out[idx[parsed & (v == winner[:, None]) & (top[:, None] > 0)]] = 0.0
    return out


def _aggregate(spec: RewardSpec, h: torch.Tensor, m: torch.Tensor, log_space: bool) -> torch.Tensor:
    valid = torch.where(m, h, torch.zeros_like(h))
    total = valid.sum(dim=1)
    mean = spec.unit == "token" and spec.aggregate == "mean"
    if mean:
        total = total / m.sum(dim=1).to(h.dtype)
    if not bool(torch.isfinite(total).all()):
        # a sum of huge values overflowed (or met another overflow: inf - inf = NaN): sum them scaled
        # by a power of two (exact), so only a result beyond the float range overflows, to +-inf
        top = valid.abs().amax(dim=1, keepdim=True)
        top = torch.where(torch.isfinite(top) & (top > 0), top, torch.ones_like(top))
        scale = torch.ldexp(torch.ones_like(top), torch.frexp(top)[1] - 1)  # 2^(e-1), exact
        scaled = (valid / scale).sum(dim=1)
        if mean:
            scaled = scaled / m.sum(dim=1).to(h.dtype)
        total = scaled * scale.squeeze(1)
    value = spec.sign * total
    if not log_space and spec.transform == "exp":
        value = value.exp()
    return value


def aggregate_cross_entropies(
    spec: RewardSpec, h: Any, mask: Any, *, log_space: bool = False
) -> Any:
    r"""The outer part of :math:`r_{\rm uni}` from per-token cross-entropies computed elsewhere.

    For engines that return per-token quantities but not full logits (veRL's actor gives
    :math:`\log\pi^t(y_t)` and :math:`H(\pi^t)`): pass :math:`\mathbb H(q_t,\pi^t)` -- ``-log_probs`` for the
    ``sampled`` anchor, the entropies for ``policy`` -- and get
    :math:`\psi(\frac{\sigma}{|\mathcal I|}\sum_t\mathbb H_t)` exactly as :func:`score` computes it.

    Parameters
    ----------
    spec : RewardSpec with a token or sequence unit
    h : (B, T) array or tensor of per-token cross-entropies (finite)
    mask : (B, T) 0/1 or bool; every row needs a valid token
    log_space : bool
        Skip :math:`\psi` (see :func:`score`).

    Returns
    -------
    (B,), same library as ``h``.
    """
    if not isinstance(spec, RewardSpec) or not spec.needs_logits:
        raise ValueError("spec: needs a RewardSpec with a 'token' or 'sequence' unit")
    _check_bool(log_space, "log_space")
    ht = _array.as_float_tensor(_numeric(h, "h"), "h")
    if ht.ndim != 2 or ht.shape[0] == 0:
        raise ValueError(f"h: expected shape (B, T) with B >= 1, got {tuple(ht.shape)}")
    m = _mask_tensor(mask, (ht.shape[0], ht.shape[1]))
    return _array.like_input(_aggregate(spec, ht, m, log_space), h)


# ----------------------------------------------------------------------------------------------------------------
# The one scoring function
# ----------------------------------------------------------------------------------------------------------------


def score(spec: RewardSpec, rollouts: Rollouts, *, log_space: bool = False) -> Any:
    r"""Evaluate :math:`r_{\rm uni}` for every rollout.

    Parameters
    ----------
    spec : RewardSpec
    rollouts : Rollouts
        See :class:`Rollouts` for which fields each unit reads.
    log_space : bool
        Return the value *before* :math:`\psi`, i.e. :math:`\frac{\sigma}{|\mathcal I|}\sum_i\mathbb H(q_i,\pi^i)`
        (for ``PROBABILITY``: :math:`\log\pi_\theta(y\mid x)`, which never underflows).

    Returns
    -------
    (B,) array
        Torch if the logits/log-probs were torch, numpy otherwise (answer-level rewards: numpy float64).

    Examples
    --------
    >>> import numpy as np
    >>> z = np.zeros((1, 3, 4))  # uniform policy over V=4 tokens
    >>> bool(np.isclose(score(TOKEN_ENTROPY, Rollouts(logits=z))[0], -np.log(4)))
    True
    >>> score(MAJORITY_VOTING, Rollouts(answers=["1", "2", "1", None])).tolist()
    [1.0, 0.0, 1.0, 0.0]
    """
    if not isinstance(spec, RewardSpec):
        raise ValueError(f"spec: expected a RewardSpec, got {type(spec).__name__}")
    if not isinstance(rollouts, Rollouts):
        raise ValueError(f"rollouts: expected a Rollouts, got {type(rollouts).__name__}")
    _check_bool(log_space, "log_space")
    if spec.needs_logits:
        h, m = token_cross_entropies(spec, rollouts)
        source = rollouts.logits if rollouts.logits is not None else rollouts.logprobs
        return _array.like_input(_aggregate(spec, h, m, log_space), source)
    value = _answer_log_values(spec, rollouts)
    if not log_space and spec.transform == "exp":
        value = np.exp(value)
    return value


# ----------------------------------------------------------------------------------------------------------------
# The registry: one signature for every reward, and what each one needs
# ----------------------------------------------------------------------------------------------------------------

RewardFn = Callable[[Rollouts], Any]
"""Every reward: ``fn(rollouts) -> (B,) array``."""

Level = Literal["token", "answer", "external"]
LEVELS: tuple[str, ...] = get_args(Level)
NEEDS: tuple[str, ...] = (*_ARRAY_FIELDS, *_SEQUENCE_FIELDS, "verifier")
"""What a reward may need: the :class:`Rollouts` fields it reads (``logits`` stands for ``logits`` or
``logprobs``) and ``verifier``, an option its caller must supply."""


@dataclass(frozen=True)
class RewardInfo:
    r"""A registered reward: what a caller reads before building it with :func:`get_reward`.

    Attributes
    ----------
    name : str
    level : {"token", "answer", "external"}
        ``token``: reads the policy's logits (computed from the trainer's forward pass); ``answer``: a function of
        the extracted answers (and their groups or labels); ``external``: a judge outside the policy's numbers
        (a verifier).
    factory : callable
        ``factory(**options) -> RewardFn``.
    spec : RewardSpec or None
        The :math:`r_{\rm uni}` instance the reward evaluates, when it is one (the presets and any reward
        registered with ``spec=``); a caller that scores specs itself (e.g. from per-token quantities) reads it.
    needs : frozenset of str
        Its required inputs, names from :data:`NEEDS`: e.g. ``{"logits", "tokens"}``, ``{"answers", "labels"}``,
        ``{"verifier"}``. Optional fields (``mask``, ``groups``) are not listed.
    description : str
        One line: what the reward is.
    """

    name: str
    level: Level
    factory: Callable[..., RewardFn] = dataclasses.field(repr=False)
    spec: RewardSpec | None = None
    needs: frozenset[str] = frozenset()
    description: str = ""

    @property
    def options(self) -> tuple[str, ...] | None:
        """The keyword options ``factory`` accepts (None when it takes any: ``**options``)."""
        params = inspect.signature(self.factory).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


_REGISTRY: dict[str, RewardInfo] = {}


def _spec_needs(spec: RewardSpec) -> frozenset[str]:
    """The inputs :func:`score` reads for ``spec``."""
    if spec.unit == "answer":
        return frozenset({"answers"})
    return frozenset({"logits", "tokens"} if spec.anchor == "sampled" else {"logits"})


def _check_needs(needs: Any) -> frozenset[str]:
    problem = f"needs: expected a set of names from {NEEDS}, got {_brief(needs)}"
    if isinstance(needs, str | bytes) or not isinstance(needs, Iterable):
        raise ValueError(problem)
    try:
        items = list(needs)
    except TypeError:  # a 0-d array or tensor
        raise ValueError(problem) from None
    unknown = [n for n in items if not isinstance(n, str) or n not in NEEDS]
    if unknown:
        raise ValueError(f"needs: unknown {_brief(unknown[0])}; valid: {', '.join(NEEDS)}")
    return frozenset(items)


def register_reward(
    name: str,
    *,
    level: Level | None = None,
    needs: Iterable[str] | None = None,
    spec: RewardSpec | None = None,
    description: str = "",
) -> Any:
    r"""Register a reward under ``name``: every caller (training loops, the simulator, the TRL and veRL adapters,
    the command lines' choices) finds it through :func:`reward_info` / :func:`available_rewards`.

    Two forms:

    * ``register_reward(name, spec=SPEC, description=...)`` registers :math:`r_{\rm uni}` of ``SPEC`` now, with
      the presets' options (``aggregate``, ``log_space``); ``level`` and ``needs`` follow from the spec. Returns
      the :class:`RewardInfo`.
    * ``@register_reward(name, level=..., needs=..., description=...)`` decorates a *factory*
      ``factory(**options) -> RewardFn`` and returns it unchanged. ``level`` defaults to ``"external"`` and
      ``needs`` to nothing: declare them, so callers hand the reward what it reads.

    Raises ``ValueError`` for a ``name`` that is not a non-empty str or is taken, a ``level`` outside
    :data:`LEVELS` (or contradicting the spec), ``needs`` outside :data:`NEEDS` (``logits`` among them exactly
    for a token-level reward), a ``spec`` that is not a :class:`RewardSpec`, a ``description`` that is not a
    str, or a factory that is not callable.

    >>> register_reward("sum_logprob", spec=RewardSpec("token", "sampled", -1, aggregate="sum"))  # doctest: +SKIP
    >>> @register_reward("parses", level="answer", needs={"answers"})  # doctest: +SKIP
    ... def _make(bonus=1.0):
    ...     return lambda r: bonus * np.array([a is not None for a in r.answers], dtype=float)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: must be a non-empty str, got {_brief(name)}")
    if spec is not None and not isinstance(spec, RewardSpec):
        raise ValueError(f"spec: expected a RewardSpec or None, got {type(spec).__name__}")
    if level is not None and (not isinstance(level, str) or level not in LEVELS):
        raise ValueError(f"level: must be one of {LEVELS}, got {_brief(level)}")
    if spec is not None:
        implied = "token" if spec.needs_logits else "answer"
        if level is not None and level != implied:
            raise ValueError(
                f"level: the spec's unit {spec.unit!r} makes it {implied!r}, got {level!r}"
            )
        level = implied
    needs = (
        _check_needs(needs)
        if needs is not None
        else (_spec_needs(spec) if spec is not None else frozenset())
    )
    if (level == "token") != ("logits" in needs):  # callers choose the token path by either
        raise ValueError(
            f"needs: a token-level reward needs 'logits', and only a token-level one; got level "
            f"{level or 'external'!r} and needs {sorted(needs)}"
        )
    if not isinstance(description, str):
        raise ValueError(f"description: must be a str, got {_brief(description)}")

    def add(factory: Callable[..., RewardFn]) -> RewardInfo:
        if not callable(factory):
            raise ValueError(
                f"factory: must be callable factory(**options) -> RewardFn, got {type(factory).__name__}"
            )
        if name in _REGISTRY:
            raise ValueError(f"name: reward {name!r} is already registered")
        info = RewardInfo(name, level or "external", factory, spec, needs, description)
        _REGISTRY[name] = info
        return info

    if spec is not None:
        return add(_preset_factory(spec))

    def decorator(factory: Callable[..., RewardFn]) -> Callable[..., RewardFn]:
        add(factory)
        return factory

    return decorator


def available_rewards(level: Level | None = None) -> tuple[str, ...]:
    """Names accepted by :func:`get_reward`, sorted; only those of ``level`` ("token", "answer", "external")
    when given.

    >>> available_rewards(level="external")
    ('self_verification',)
    """
    if level is not None and (not isinstance(level, str) or level not in LEVELS):
        raise ValueError(f"level: must be one of {LEVELS} or None, got {_brief(level)}")
    return tuple(sorted(n for n, info in _REGISTRY.items() if level is None or info.level == level))


def reward_info(name: str) -> RewardInfo:
    """The :class:`RewardInfo` of reward ``name`` (``ValueError`` listing the valid names if unknown).

    >>> info = reward_info("trajectory_entropy")
    >>> info.level, sorted(info.needs), info.spec == TRAJECTORY_ENTROPY
    ('token', ['logits', 'tokens'], True)
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"name: unknown reward {_brief(name)}; valid names: {', '.join(available_rewards())}"
        )
    return _REGISTRY[name]


def get_reward(name: str, **options: Any) -> RewardFn:
    """The reward registered as ``name``, as a callable ``fn(rollouts: Rollouts) -> (B,) array``.

    Options per reward: the presets take ``aggregate`` ("mean"/"sum") and ``log_space`` (bool);
    ``ground_truth`` takes ``math_verify`` (bool) or ``check`` (``check(gold, pred) -> bool``);
    ``self_verification`` requires ``verifier`` (``fn(rollouts) -> (B,)`` scores in {0, 1}).
    :attr:`RewardInfo.options` lists a reward's options.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names), an option the reward does not take
        (the message names it and lists the accepted ones) or a bad option value.

    >>> fn = get_reward("majority_voting")
    >>> fn(Rollouts(answers=["a", "b", "a"])).tolist()
    [1.0, 0.0, 1.0]
    >>> get_reward("majority_voting", foo=1)
    Traceback (most recent call last):
    ValueError: foo: not an option of reward 'majority_voting'; accepted options: aggregate, log_space
    """
    info = reward_info(name)
    accepted = info.options
    if accepted is not None:
        for option in options:
            if option not in accepted:
                raise ValueError(
                    f"{option}: not an option of reward {name!r}; accepted options: "
                    f"{', '.join(accepted) or 'none'}"
                )
    return info.factory(**options)


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name}: must be a bool, got {_brief(value)}")


def _preset_factory(preset: RewardSpec) -> Callable[..., RewardFn]:
    def factory(*, aggregate: Aggregate | None = None, log_space: bool = False) -> RewardFn:
        _check_bool(log_space, "log_space")
        spec = preset if aggregate is None else dataclasses.replace(preset, aggregate=aggregate)

        def reward(rollouts: Rollouts) -> Any:
            return score(spec, rollouts, log_space=log_space)

        reward.spec = spec  # type: ignore[attr-defined]  # the spec with the options applied, for inspection
        return reward

    return factory


register_reward(
    "self_certainty",
    spec=SELF_CERTAINTY,
    description="mean cross-entropy H(U, pi^t) of the uniform distribution (Intuitor; KL(U||pi) + log V)",
)
register_reward(
    "token_entropy",
    spec=TOKEN_ENTROPY,
    description="minus the mean token entropy H(pi^t) (RENT, EM-RL)",
)
register_reward(
    "trajectory_entropy",
    spec=TRAJECTORY_ENTROPY,
    description="mean log-probability of the sampled tokens (EM-RL-sequence)",
)
register_reward(
    "probability", spec=PROBABILITY, description="the response's probability pi(y|x) (RLSC)"
)
register_reward(
    "majority_voting",
    spec=MAJORITY_VOTING,
    description="1 when the answer is its group's majority answer (TTRL)",
)
register_reward(
    "vote_share", spec=VOTE_SHARE, description="the share of its group that gave the same answer"
)


@register_reward(
    "ground_truth",
    level="answer",
    needs={"answers", "labels"},
    description="oracle: 1 when the answer is equivalent to the label (the control, not an intrinsic reward)",
)
def _ground_truth(
    *, math_verify: bool = False, check: Callable[[Any, Any], Any] | None = None
) -> RewardFn:
    r"""Oracle reward :math:`\mathbb 1[\mathrm{ans}(y)\equiv\mathrm{label}]` (never used for training unless asked).

    Equivalence is :func:`sharpen.answers.equivalent` (``math_verify`` for its symbolic fallback), or the task's
    own ``check(gold, pred) -> bool`` (``gold`` a ``labels`` entry, ``pred`` an ``answers`` entry, possibly None):
    a task whose truth is not string equality with one reference (Countdown: any expression reaching the target)
    supplies it, so callers need not know which task they train on.
    """
    _check_bool(math_verify, "math_verify")
    if check is not None and not callable(check):
        raise ValueError(
            f"check: must be callable check(gold, pred) -> bool, got {type(check).__name__}"
        )
    if check is not None and math_verify:
        raise ValueError("math_verify, check: give one: check replaces the equivalence test")

    def same(gold: Any, pred: Any) -> float:
        if check is None:
            return float(equivalent(gold, pred, math_verify=math_verify))
        verdict = check(gold, pred)
        if not isinstance(verdict, bool | np.bool_):
            raise ValueError(f"check: returned {_brief(verdict)}, expected a bool")
        return float(verdict)

    def reward(rollouts: Rollouts) -> np.ndarray:
        if rollouts.answers is None or rollouts.labels is None:
            raise ValueError("answers, labels: the ground_truth reward needs both")
        _check_hashable(rollouts.answers, "answers")
        _check_hashable(rollouts.labels, "labels")
        if check is None and _ints_or_none(rollouts.answers) and _ints_or_none(rollouts.labels):
            # answer ids: equivalent() is ==, and None is never right
            return np.asarray(
                [
                    float(a is not None and g is not None and a == g)
                    for a, g in zip(rollouts.answers, rollouts.labels, strict=True)
                ],
                dtype=np.float64,
            )
        return np.asarray(
            [same(g, a) for a, g in zip(rollouts.answers, rollouts.labels, strict=True)],
            dtype=np.float64,
        )

    return reward


@register_reward(
    "self_verification",
    level="external",
    needs={"verifier"},
    description="a verifier's 0/1 judgement of each rollout (e.g. the policy itself, asked to check)",
)
def _self_verification(*, verifier: Callable[[Rollouts], Any] | None = None) -> RewardFn:
    """External reward: a verifier callable scores each rollout 0/1 (e.g. the policy itself, asked to check)."""
    if verifier is None or not callable(verifier):
        raise ValueError(
            "verifier: self_verification needs a callable verifier(rollouts) -> (B,) scores in {0, 1}"
        )

    def reward(rollouts: Rollouts) -> np.ndarray:
        raw = verifier(rollouts)
        if isinstance(raw, torch.Tensor):
            raw = raw.detach().cpu().to(torch.float64)
        try:
            scores = np.asarray(raw)
        except (TypeError, ValueError) as exc:  # ragged
            raise ValueError(f"verifier: returned {type(raw).__name__}, not (B,) numbers") from exc
        if scores.dtype.kind not in "biuf":
            raise ValueError(f"verifier: returned dtype {scores.dtype}, expected (B,) numbers")
        scores = scores.astype(np.float64)
        if scores.shape != (rollouts.batch_size,):
            raise ValueError(
                f"verifier: returned shape {scores.shape}, expected ({rollouts.batch_size},)"
            )
        if not np.isin(scores, (0.0, 1.0)).all():
            raise ValueError("verifier: scores must be 0/1 (or booleans)")
        return scores

    return reward
