r"""Theorem 1 of He et al. (2026) and its extensions: geometric sharpening under majority voting.

All functions are pure numpy (float64), broadcast over their array arguments and raise ``ValueError``
naming the offending argument. Nothing here samples, prints or writes files.

Sections
--------
1. **Theorem 1** (refreshed reference, majority reward). With the KL reference set to the current
   iterate, one KL-regularised step maps the majority mass :math:`p_k` to

   .. math:: p_{k+1} = \frac{p_k e^{1/\beta}}{p_k e^{1/\beta} + 1 - p_k},

   so the odds grow by :math:`e^{1/\beta}` per step and
   :math:`p_k = \mathrm{sigmoid}(\mathrm{logit}\,p_0 + k/\beta)`: a straight line of slope
   :math:`1/\beta` on the logit scale. :func:`rho`, :func:`one_step`, :func:`majority_prob`,
   :func:`majority_gap`, :func:`tail_bound`, :func:`contraction_factor`, :func:`steps_to_reach`,
   :func:`fixed_reference_limit`, :func:`effective_beta`.
2. **Finite N** (majority stability, assumption A1). :func:`plurality_win_probs` (exact),
   :func:`stability_curve`, :func:`stability_prob`, :func:`hoeffding_flip_bound`.
3. **Iterated tilts** on explicit finite sets of sequences, for the certainty rewards:
   :func:`tilt`, :func:`iterate_tilt` and its instances :func:`power_sharpen`,
   :func:`mean_logprob_tilt`, :func:`probability_tilt`.
4. **Fitting** observed majority-probability trajectories: :func:`fit_sharpening` ->
   :class:`SharpeningFit`.

Derivations: docs/theory.md (the closed form, the bound, the finite-N extension and the
iterated tilts are reconstructions, checked numerically by ``tests/sharpen/test_theory.py``).

Bad input
---------
Every check raises ``ValueError`` with a one-line message ``name: problem`` (never a bare numpy
``TypeError`` or ``RuntimeError``, a ``RuntimeWarning`` or a silent NaN):

* any numeric argument: not real numbers (str -- ``"0.5"`` too --, bytes, complex, dates, objects that
  are not numbers, ragged lists), more than 32 dimensions (numpy's broadcasting limit), or NaN
  (``fit_sharpening``'s ``p_maj`` and ``steps`` excepted: there NaN marks a missing point);
* probabilities (``p``, ``p0``, ``target``, ``p_maj``) outside [0, 1]; ``beta`` <= 0 (``inf`` is
  allowed: no tilt); steps ``k`` negative or infinite (``-0.0`` counts as 0); arguments whose shapes do
  not broadcast (the message names them all); ``beta`` not a scalar where one is required (finite-N
  and tilts);
* integers (``n``, ``k`` of the tilts and ``stability_*``, ``max_iter``) not integers or below
  their minimum (bools rejected; Python ints beyond the float range are fine);
* answer distributions ``probs``: inf, negative, a row summing to more than 1, not (K,) / (G, K);
  :func:`plurality_win_probs` over its documented cost limit (``n:``; checked before allocating);
* sequence distributions ``pi``: negative, inf, zero total mass; ``reward`` / ``lengths`` / a
  ``reward_fn`` output of the wrong shape, not real numbers, NaN or +inf on a sequence with mass, or
  ``-inf`` on every sequence with mass (``lengths:`` when ``log pi / lengths`` overflows there);
* :func:`fit_sharpening`: ``steps`` of the wrong length or infinite, ``n_samples`` outside [1, 2**53] or not
  broadcasting to ``p_maj``'s shape, ``level`` not in (0, 1), ``method`` unknown, ``boundary_eps`` not a
  number in (0, 0.5). Data that cannot determine a fit is not an error: ``valid`` is False and the
  estimates NaN (an empty trajectory too); an estimate that is a fallback (IRLS did not converge, or a
  continuity correction biased it) has ``converged`` False. Steps of any magnitude are fitted (rescaled
  by a power of two inside). :meth:`SharpeningFit.predict`: ``steps`` NaN, inf or not broadcasting.

Edge values that are *not* errors are stated per function (``p = 0`` or 1, ``beta = inf``,
``k = 0``) and give exact results, also where ``k / beta`` overflows (a subnormal ``beta``): ``p0 = 0``
and 1 stay fixed, :func:`tail_bound` of ``p0 = 0`` is ``inf``, and :func:`steps_to_reach` is ``inf``
where the target is never reached (``beta = inf``) or the step count exceeds the float range.
:func:`effective_beta` underflows to 0 only for a subnormal ``beta``. The tilts use the reward relative
to its maximum, so a tiny ``beta`` moves all the mass to the best sequences instead of overflowing, and a
``-inf`` reward removes its sequence even at ``beta = inf``. Work and memory are bounded before anything is
allocated: :func:`stability_curve` costs ``k`` exact votes per row and the tilts hold ``k + 1``
distributions, and a ``k`` over the limits of :func:`plurality_win_probs` (1.5e10 multiply-adds, 3.2e7 floats,
256 MB) raises ``k:``.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sharpen.answers import _brief

# scipy.special is imported inside the functions that use it, so that importing this module (and the modules
# and command-line help that import it) does not pay its ~0.3 s; scipy.stats (~1 s more) is not needed.

__all__ = [
    "SharpeningFit",
    "contraction_factor",
    "effective_beta",
    "fit_sharpening",
    "fixed_reference_limit",
    "hoeffding_flip_bound",
    "iterate_tilt",
    "majority_gap",
    "majority_prob",
    "mean_logprob_tilt",
    "one_step",
    "plurality_win_probs",
    "power_sharpen",
    "probability_tilt",
    "rho",
    "stability_curve",
    "stability_prob",
    "steps_to_reach",
    "tail_bound",
    "tilt",
]

FitMethod = Literal["binomial", "logit_wls"]

# Tolerance for "the answer probabilities sum to at most one".
_SUM_TOL = 1e-9
# Memory budget (float64 elements) of one chunk of the exact plurality computation.
_PLURALITY_CHUNK_ELEMENTS = 16_000_000
# Largest n_samples of fit_sharpening: sample counts are exact in float64 up to here, and the binomial
# weights n p (1 - p) and log-likelihoods cannot overflow.
_MAX_SAMPLES = 2.0**53
# Most multiply-adds one row of the exact plurality computation may cost (a few seconds).
_PLURALITY_MAX_COST = 1.5e10
# Most float64 numbers one row of the exact plurality computation may hold (256 MB).
_PLURALITY_MAX_ELEMENTS = 32_000_000
# From this n on, the plurality polynomials are multiplied row by row with np.convolve.
_ROW_CONVOLVE_MIN_N = 64
# Coefficients below this are set to 0 in the plurality computation (no subnormals).
_TINY = 1e-280
# Float64 elements of one (rows, L) temporary of fit_sharpening's blocks (1 MiB: they stay in cache).
_FIT_BLOCK_ELEMENTS = 2**17
# Largest 2n + 1 grid of half counts on which fit_sharpening looks its logits up (see _logit_of_fractions).
_LOGIT_GRID_MAX = 4097


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------


def _as_float(name: str, x) -> np.ndarray:
    a = _as_float_allow_nan(name, x)
    if np.isnan(a).any():
        raise ValueError(f"{name}: contains NaN")
    return a


def _as_float_allow_nan(name: str, x) -> np.ndarray:
    """``x`` as float64 if it holds real numbers: str, bytes, complex, dates and non-numeric objects
    raise (``np.asarray(.., dtype=float)`` would parse ``"0.5"`` and drop imaginary parts)."""
    try:
        a = np.asarray(x)
    except (TypeError, ValueError, OverflowError) as exc:  # ragged or too deeply nested lists
        raise ValueError(f"{name}: expected numbers, got {type(x).__name__}") from exc
    if a.ndim > 32:  # numpy broadcasts (np.where, ufuncs of several arrays) at most 32 dimensions
        raise ValueError(f"{name}: at most 32 dimensions, got {a.ndim}")
    if a.dtype.kind == "O":
        if not all(isinstance(v, numbers.Real) for v in a.flat):
            raise ValueError(f"{name}: expected real numbers, got {type(x).__name__}")
    elif a.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected real numbers, got dtype {a.dtype}")
    try:
        return a.astype(np.float64)
    except OverflowError as exc:  # a Python int beyond the float range
        raise ValueError(f"{name}: a number beyond the float64 range") from exc


def _as_prob(name: str, x) -> np.ndarray:
    a = _as_float(name, x)
    if ((a < 0) | (a > 1)).any():
        raise ValueError(
            f"{name}: probabilities must lie in [0, 1], got min {a.min()}, max {a.max()}"
        )
    return a


def _as_beta(name: str, x) -> np.ndarray:
    a = _as_float(name, x)
    if (a <= 0).any():
        raise ValueError(f"{name}: must be > 0 (inf allowed: no tilt), got min {a.min()}")
    return a


def _as_steps(name: str, x) -> np.ndarray:
    a = _as_float(name, x)
    if (~np.isfinite(a)).any() or (a < 0).any():
        raise ValueError(f"{name}: steps must be finite and >= 0")
    return a + 0.0  # -0.0 -> 0.0 (beta / -0.0 would be -inf)


def _as_int(name: str, x, minimum: int) -> int:
    if isinstance(x, bool | np.bool_):
        raise ValueError(f"{name}: must be an integer >= {minimum}, got a bool")
    try:
        v = operator.index(x)
    except TypeError as exc:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {_brief(x)}") from exc
    if v < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {v}")
    return v


def _count_as_float(n: int) -> float:
    """A count as a float; a Python int beyond the float range is ``inf``."""
    return float(n) if n < 2**1000 else math.inf


def _as_scalar_beta(x) -> float:
    b = _as_beta("beta", x)
    if b.ndim != 0:
        raise ValueError(f"beta: must be a scalar here, got shape {b.shape}")
    return float(b)


def _check_broadcast(**arrays: np.ndarray) -> None:
    """Raise ``ValueError`` naming the arguments when their shapes do not broadcast together."""
    try:
        np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(str(a.shape) for a in arrays.values())
        raise ValueError(
            f"{', '.join(arrays)}: shapes {shapes} do not broadcast together"
        ) from None


def _as_level(x) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
        raise ValueError(f"level: must be a number in (0, 1), got {_brief(x)}")
    if not (0.0 < x < 1.0):
        raise ValueError(f"level: must lie in (0, 1), got {x}")
    return float(x)


def _as_answer_probs(name: str, x) -> np.ndarray:
    """(..., K) answer probabilities: finite, >= 0, each row summing to at most 1."""
    a = _as_float(name, x)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError(f"{name}: expected shape (K,) or (G, K) with K >= 1, got {a.shape}")
    if (~np.isfinite(a)).any():
        raise ValueError(f"{name}: contains inf")
    if (a < 0).any():
        raise ValueError(f"{name}: probabilities must be >= 0, got min {a.min()}")
    with np.errstate(over="ignore"):  # a sum of huge entries is inf: over 1, reported below
        total = a.sum(axis=-1)
    if (total > 1 + _SUM_TOL).any():
        raise ValueError(
            f"{name}: each row must sum to <= 1 (the rest is unparseable), got {total.max()}"
        )
    return a


# ----------------------------------------------------------------------------------------------
# 1. Theorem 1
# ----------------------------------------------------------------------------------------------


def rho(beta) -> np.ndarray:
    r"""Geometric rate of Theorem 1, :math:`\rho = e^{-1/\beta}`.

    Parameters
    ----------
    beta : array_like, > 0
        KL coefficient (an implicit step size when training without KL). ``inf`` gives 1.

    Examples
    --------
    >>> float(rho(0.5))  # e^{-2}
    0.1353352832366127
    """
    b = _as_beta("beta", beta)
    with np.errstate(over="ignore", divide="ignore"):  # a subnormal beta: 1 / beta = inf, rho = 0
        return np.exp(-1.0 / b)


def one_step(p, beta) -> np.ndarray:
    r"""One KL-regularised step with the reference refreshed to the current iterate.

    .. math:: p_{k+1} = \frac{p_k e^{1/\beta}}{p_k e^{1/\beta} + 1 - p_k}
                      = \frac{p_k}{p_k + (1 - p_k)\,e^{-1/\beta}}

    (the second form is used: it cannot overflow). ``p = 0`` stays 0 and ``p = 1`` stays 1.

    Parameters
    ----------
    p : array_like in [0, 1]
        Mass of the (initial) majority answer.
    beta : array_like, > 0
        Broadcast against ``p``.

    Examples
    --------
    >>> round(float(one_step(0.3, 0.5)), 6)
    0.760004
    """
    q = _as_prob("p", p)
    r = rho(beta)
    _check_broadcast(p=q, beta=r)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = q / (q + (1.0 - q) * r)
    return np.where(q == 0, 0.0, out)


def majority_prob(p0, beta, k) -> np.ndarray:
    r"""Closed form of Theorem 1: :math:`p_k = \mathrm{sigmoid}(\mathrm{logit}\,p_0 + k/\beta)`.

    Equal to ``k`` applications of :func:`one_step` (the odds gain a factor :math:`e^{1/\beta}`
    per step). Stable for large ``k / beta``; ``p0 = 0`` stays 0 and ``p0 = 1`` stays 1.
    ``k`` may be real (a continuous-time reading).

    Parameters
    ----------
    p0 : array_like in [0, 1]
    beta : array_like, > 0
    k : array_like, finite, >= 0
        All three broadcast together.

    Returns
    -------
    ndarray, float64, the broadcast shape.

    Examples
    --------
    >>> np.round(majority_prob(0.3, 0.5, [0, 1, 2]), 4)
    array([0.3  , 0.76 , 0.959])
    """
    q = _as_prob("p0", p0)
    b = _as_beta("beta", beta)
    kk = _as_steps("k", k)
    _check_broadcast(p0=q, beta=b, k=kk)
    from scipy import special

    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        out = special.expit(special.logit(q) + kk / b)
    # p_0 = 0 and 1 are fixed points (logit(0) + inf would be NaN); k = 0 gives p_0 exactly
    out = np.where(q == 0, 0.0, np.where(q == 1, 1.0, out))
    return np.where(kk == 0, q, out)


def majority_gap(p0, beta, k) -> np.ndarray:
    r"""The minority mass :math:`1 - p_k = \mathrm{sigmoid}(-\mathrm{logit}\,p_0 - k/\beta)`.

    Computed directly, so it keeps full relative precision where :math:`p_k` rounds to 1
    (use it for log-scale plots). Same arguments as :func:`majority_prob`.

    Examples
    --------
    >>> float(majority_gap(0.5, 1.0, 50))  # e^{-50} / (1 + e^{-50})
    1.928749847963918e-22
    """
    q = _as_prob("p0", p0)
    b = _as_beta("beta", beta)
    kk = _as_steps("k", k)
    _check_broadcast(p0=q, beta=b, k=kk)
    from scipy import special

    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        out = special.expit(-special.logit(q) - kk / b)
    out = np.where(q == 0, 1.0, np.where(q == 1, 0.0, out))
    return np.where(kk == 0, 1.0 - q, out)


def tail_bound(p0, beta, k) -> np.ndarray:
    r"""Theorem 1's geometric bound :math:`1 - p_k \le \frac{1 - p_0}{p_0}\,\rho^k`.

    It follows from :math:`1 - p_k = \frac{1-p_0}{1-p_0+p_0 e^{k/\beta}} \le
    \frac{1-p_0}{p_0 e^{k/\beta}}`. Computed in log space; ``p0 = 0`` gives ``inf`` (no bound),
    ``p0 = 1`` gives 0. The bound exceeds 1 (and says nothing) while
    :math:`p_0 e^{k/\beta} < 1 - p_0`.

    Examples
    --------
    >>> round(float(tail_bound(0.3, 0.5, 2)), 6)  # (0.7 / 0.3) e^{-4}
    0.042736
    """
    q = _as_prob("p0", p0)
    b = _as_beta("beta", beta)
    kk = _as_steps("k", k)
    _check_broadcast(p0=q, beta=b, k=kk)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        out = np.exp(np.log1p(-q) - np.log(q) - kk / b)
    return np.where(q == 0, np.inf, out)  # inf - inf would be NaN where k / beta = inf


def contraction_factor(p, beta) -> np.ndarray:
    r"""Per-step contraction of the minority mass, :math:`\frac{1-p_{k+1}}{1-p_k}`.

    .. math:: \frac{1 - p_{k+1}}{1 - p_k} = \frac{1}{1 + p_k\,(e^{1/\beta} - 1)}

    It is below 1 for :math:`p_k > 0`, decreases as :math:`p_k` grows and tends to
    :math:`\rho = e^{-1/\beta}` as :math:`p_k \to 1`. ``p = 0`` gives 1.

    Examples
    --------
    >>> round(float(contraction_factor(0.3, 0.5)), 6)  # 1 / (1 + 0.3 (e^2 - 1))
    0.342851
    >>> bool(np.isclose(contraction_factor(1.0, 0.5), rho(0.5)))
    True
    """
    q = _as_prob("p", p)
    b = _as_beta("beta", beta)
    _check_broadcast(p=q, beta=b)
    # Written as rho / (rho + p (1 - rho)) so that a tiny beta cannot overflow e^{1/beta}.
    r = rho(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = r / (r + q * (1.0 - r))
    return np.where(q == 0, 1.0, out)


def steps_to_reach(p0, beta, target, *, integer: bool = True) -> np.ndarray:
    r"""Steps until the majority mass reaches ``target``.

    The real-valued solution of :math:`\mathrm{sigmoid}(\mathrm{logit}\,p_0 + k/\beta) = t` is
    :math:`k^* = \beta\,(\mathrm{logit}\,t - \mathrm{logit}\,p_0)`; with ``integer=True`` (default)
    the answer is the smallest integer :math:`k \ge 0` with :math:`p_k \ge t`, i.e.
    :math:`\max(0, \lceil k^* \rceil)` (checked against :func:`majority_prob` so rounding in
    :math:`k^*` cannot add a step). ``target <= p0`` gives 0; an unreachable target
    (``p0 = 0 < target``, or ``target = 1 > p0``) gives ``inf``. With ``integer=False`` the real
    :math:`k^*` is returned (negative when the target is already passed).

    Returns
    -------
    ndarray, float64 (``inf`` where never reached).

    Examples
    --------
    >>> float(steps_to_reach(0.3, 0.5, 0.99))
    3.0
    >>> round(float(steps_to_reach(0.3, 0.5, 0.99, integer=False)), 4)
    2.7212
    """
    q = _as_prob("p0", p0)
    b = _as_beta("beta", beta)
    t = _as_prob("target", target)
    _check_broadcast(p0=q, beta=b, target=t)
    q, b, t = np.broadcast_arrays(q, b, t)
    from scipy import special

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k_real = b * (special.logit(t) - special.logit(q))
    # never: no tilt (beta = inf), nothing to tilt (p0 = 0) or a target of exactly 1; or k* is
    # beyond the float range (a huge beta)
    never = (t > q) & ((q == 0) | (t == 1) | np.isinf(b) | np.isposinf(k_real))
    if not integer:
        return np.where(never, np.inf, np.where(t == q, 0.0, k_real))
    reached = t <= q
    k_real = np.where(never | reached | ~np.isfinite(k_real), 0.0, k_real)
    k_int = np.maximum(np.ceil(k_real), 0.0)
    # Guard against k* rounding just above an integer that already reaches the target.
    km1 = np.maximum(k_int - 1.0, 0.0)
    k_int = np.where((k_int >= 1) & (majority_prob(q, b, km1) >= t), km1, k_int)
    # ... and just below one that does not.
    k_int = np.where(majority_prob(q, b, k_int) >= t, k_int, k_int + 1.0)
    out = np.where(reached, 0.0, np.where(never, np.inf, k_int))
    return out[()] if out.ndim == 0 else out


def fixed_reference_limit(p0, beta) -> np.ndarray:
    r"""Where majority-vote training stops when the KL reference stays fixed at :math:`\pi_0`.

    The optimum of :math:`\max_\pi \mathbb E[r] - \beta\,\mathrm{KL}(\pi \Vert \pi_0)` is
    :math:`\pi^* \propto \pi_0 e^{r/\beta}`, whose majority mass is

    .. math:: p^* = \frac{p_0 e^{1/\beta}}{p_0 e^{1/\beta} + 1 - p_0},

    i.e. *one* application of :func:`one_step`, however long one trains: with a fixed reference
    the process does not converge to 1. Convergence to 1 needs the reference refreshed every
    step (mirror descent / trust region). Conversely, :math:`k` refreshed steps at :math:`\beta`
    reach exactly the fixed-reference optimum at :math:`\beta_{\rm eff} = \beta / k`
    (:func:`effective_beta`): ``majority_prob(p0, beta, k) == fixed_reference_limit(p0, beta / k)``.

    Examples
    --------
    >>> round(float(fixed_reference_limit(0.3, 0.5)), 6)
    0.760004
    >>> bool(np.isclose(majority_prob(0.3, 0.5, 4), fixed_reference_limit(0.3, 0.5 / 4)))
    True
    """
    return one_step(p0, beta)


def effective_beta(beta, k) -> np.ndarray:
    r""":math:`\beta_{\rm eff} = \beta / k`: ``k`` refreshed-reference steps equal one step at it.

    Since the odds gain :math:`e^{1/\beta}` per step, :math:`k` steps multiply them by
    :math:`e^{k/\beta} = e^{1/(\beta/k)}`. ``k = 0`` gives ``inf`` (no tilt).

    Examples
    --------
    >>> float(effective_beta(0.5, 4))
    0.125
    """
    b = _as_beta("beta", beta)
    kk = _as_steps("k", k)
    _check_broadcast(beta=b, k=kk)
    with np.errstate(divide="ignore", over="ignore"):
        return b / kk


# ----------------------------------------------------------------------------------------------
# 2. Finite N: majority stability
# ----------------------------------------------------------------------------------------------


def plurality_win_probs(probs, n) -> np.ndarray:
    r"""Exact probability that each answer wins the plurality vote of ``n`` i.i.d. samples.

    Answer counts :math:`c \sim \mathrm{Mult}(n; P_1..P_K, P_0)` where
    :math:`P_0 = 1 - \sum_a P_a` is the mass of unparseable outputs: they count in ``n`` but
    cannot win. Ties are split uniformly (equal in law to TTRL's first-seen rule, by
    exchangeability); if nothing parses nobody wins.

    .. math:: \Pr[\hat m = a] = \sum_c \mathrm{Mult}(c; n, P)\,
              \frac{\mathbb 1[c_a = \max c \ge 1]}{\#\{b : c_b = \max c\}}

    **Method (exact, no enumeration).** Write the multinomial with exponential generating
    functions and the tie weight as :math:`1/(1+s) = \int_0^1 u^s\,du`. For a winner at count
    :math:`m`,

    .. math:: \Pr[\hat m = a, c_a = m] = n!\,[x^n]\int_0^1 \frac{(P_a x)^m}{m!}\,e^{P_0 x}
              \prod_{b \ne a}\Big(\sum_{c<m}\frac{(P_b x)^c}{c!} + u\frac{(P_b x)^m}{m!}\Big)du .

    The integrand is a polynomial of degree :math:`\le K-1` in :math:`u`, so Gauss-Legendre
    with :math:`\lceil K/2 \rceil` nodes is exact. The leave-one-out products over :math:`b \ne a`
    are prefix x suffix products of polynomials truncated at degree :math:`n`, all terms positive
    (no cancellation).

    **Scaling.** Each factor's coefficient :math:`(P_b x)^c/c!` is stored at :math:`x = n` times
    :math:`e^{-P_b n}`, i.e. as the Poisson(:math:`P_b n`) probability of :math:`c`; products of
    such factors are (truncated) Poisson probabilities, so every intermediate number lies in
    [0, 1] and nothing overflows for any ``n``; the result is multiplied back by
    :math:`n!\,e^{n}/n^n \approx \sqrt{2\pi n}`. (Terms below ~1e-280 underflow to 0: absolute
    error < 1e-270.)

    **Exact shortcuts.** Answers with :math:`P_a = 0` never win and are dropped. A row with a
    single answer of positive mass :math:`P_a` gives :math:`1 - (1 - P_a)^n` (it wins iff one
    sample parses): ``[1.0]`` gives exactly ``[1.0]`` for every ``n``.

    **Cost.** With :math:`K'` answers of positive mass (:math:`K' \ge 2`), one row takes
    :math:`2\lceil K'/2 \rceil (K'-1)` polynomial products of ~:math:`n^3/6` multiply-adds
    (from :math:`n = 64` on one ``np.convolve`` per polynomial row, ~2e9 per second; below,
    vectorised over the batch) and holds about :math:`(K'+4)\,n\,(n+1)` float64 numbers; rows
    are processed in chunks of at most 16e6 numbers (128 MB) where a row fits, and a batch of G
    rows costs G times one row. A row whose work (``_plurality_cost``: the multiply-adds plus the
    per-call overhead) exceeds ``1.5e10`` (about 10 s on one core) or that needs more than
    ``3.2e7`` numbers (256 MB) raises ``ValueError`` before anything is allocated: the largest
    ``n`` is 2308 at :math:`K' = 2`, 1521 at 5, 950 at 10, 340 at 32, 59 at 100, 15 at 200.

    Parameters
    ----------
    probs : array_like, shape (K,) or (G, K)
        Answer probabilities, >= 0, each row summing to <= 1.
    n : int >= 1
        Number of samples voting.

    Returns
    -------
    ndarray, shape like ``probs``; each row sums to :math:`1 - P_0^n`.

    Raises
    ------
    ValueError
        ``probs:`` not finite, negative, a row summing to more than 1, or not (K,) / (G, K);
        ``n:`` not an integer >= 1, or a row over the cost limit.

    Examples
    --------
    >>> np.round(plurality_win_probs([0.5, 0.5], 2), 6)  # a 1-1 tie half the time, split evenly
    array([0.5, 0.5])
    >>> np.round(plurality_win_probs([0.6, 0.2], 1), 6)  # one sample: the answer drawn wins
    array([0.6, 0.2])
    >>> plurality_win_probs([1.0], 10**6)  # one answer with all the mass always wins
    array([1.])
    """
    p = _as_answer_probs("probs", probs)
    n = _as_int("n", n, 1)
    if p.ndim > 2:
        raise ValueError(f"probs: expected shape (K,) or (G, K), got {p.shape}")
    flat = p.reshape(-1, p.shape[-1])  # (G, K)
    k_pos = (flat > 0).sum(axis=1)  # (G,) answers that can win
    worst = int(k_pos.max(initial=0))
    if worst >= 2:
        n_cost = min(n, 10**9)  # far past the limits already; keeps the float arithmetic finite
        cost, size = _plurality_cost(worst, n_cost), (worst + 4) * n_cost * (n_cost + 1)
        if cost > _PLURALITY_MAX_COST or size > _PLURALITY_MAX_ELEMENTS:
            raise ValueError(
                f"n: the exact vote of {n} samples over {worst} answers with positive mass needs "
                f"~{cost:.1e} multiply-adds and {size:.1e} floats per row, over the limits "
                f"{_PLURALITY_MAX_COST:.2g} and {_PLURALITY_MAX_ELEMENTS:.2g}; use fewer samples "
                "or merge rare answers"
            )
    out = np.zeros_like(flat)
    single = k_pos == 1
    n_float = _count_as_float(n)
    with np.errstate(divide="ignore", invalid="ignore"):  # log1p(-1) = -inf: P_a = 1 wins surely
        wins = -np.expm1(n_float * np.log1p(-flat[single]))
    out[single] = np.where(flat[single] > 0, wins, 0.0)  # zero-mass entries give 0 (inf * 0 = NaN)
    for kk in np.unique(k_pos[k_pos >= 2]):
        rows = np.flatnonzero(k_pos == kk)
        block = flat[rows]
        # The kk positive answers first (stable: their order is kept), then compute on them only.
        pos = np.argsort(block == 0, axis=1, kind="stable")[:, :kk]
        sub = np.take_along_axis(block, pos, axis=1)  # (G', kk)
        chunk = max(1, _PLURALITY_CHUNK_ELEMENTS // ((kk + 4) * n * (n + 1)))
        wins = np.concatenate(
            [_plurality_exact(sub[s : s + chunk], n) for s in range(0, rows.size, chunk)]
        )
        res = np.zeros_like(block)
        # a probability: the rescaling by n! e^n / n^n can round a sure win past 1 by an ulp or two
        np.put_along_axis(res, pos, np.minimum(wins, 1.0), axis=1)
        out[rows] = res
    return out.reshape(p.shape)


def _plurality_cost(n_answers: int, n: int) -> float:
    """Work of one row of :func:`_plurality_exact`, in multiply-adds (see :func:`plurality_win_probs`).

    ``ceil(K/2)`` quadrature nodes x ``2 (K - 1)`` polynomial products, each ~``n^3 / 6``
    multiply-adds plus ~``n`` numpy calls (~10 us each, counted as 2.5e4 multiply-adds).
    """
    return math.ceil(n_answers / 2) * (n_answers - 1) * (float(n) ** 3 / 3.0 + 5e4 * n)


def _poly_mul_truncated(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product of per-row polynomials, keeping only the coefficients the vote needs.

    ``a``, ``b``: (G, M, D) with row ``r`` (winner count ``m = r + 1``) and coefficient ``d``
    (degree, ``D = n + 1``). ``b``'s coefficient ``c`` is zero for ``c > m`` (that answer's count
    stays <= m), and only degrees ``d <= n - m`` of row ``m`` are ever read (the other samples
    number ``n - m``); the cells of higher degree are left finite but meaningless. Small ``n``:
    one vectorised update per coefficient ``c`` (rows ``c - 1 .. n - 1 - c``, degrees
    ``c .. n - c``); large ``n``: one direct ``np.convolve`` per row (C speed, same sums).
    """
    n_groups, n, d = a.shape
    if n < _ROW_CONVOLVE_MIN_N:
        out = a * b[..., :1]
        for c in range(1, n // 2 + 1):
            r0, r1 = c - 1, n - c
            out[..., r0:r1, c : d - c] += b[..., r0:r1, c : c + 1] * a[..., r0:r1, : d - 2 * c]
    else:
        out = np.zeros_like(a)
        for g in range(n_groups):
            for r in range(n):
                top = n - r  # degrees 0 .. n - m of row m = r + 1
                kernel = b[g, r, : min(r + 1, n - r - 1) + 1]
                out[g, r, :top] = np.convolve(a[g, r, :top], kernel)[:top]
    np.putmask(out, out < _TINY, 0.0)  # keep subnormals (slow, and < 1e-280) out of the sums
    return out


def _plurality_exact(p: np.ndarray, n: int) -> np.ndarray:
    """Core of :func:`plurality_win_probs` for a validated (G, K) block with every P > 0."""
    from scipy import special

    n_groups, n_answers = p.shape
    total = p.sum(axis=1)
    p0 = np.clip(1.0 - total, 0.0, None)  # (G,) unparseable mass
    s = float(n)  # evaluation point of the generating functions
    deg = np.arange(n + 1)  # (D,) polynomial degrees, D = n + 1
    log_fact = special.gammaln(deg + 1.0)

    def poisson(q: np.ndarray) -> np.ndarray:  # (..., D): e^{-qs} (q s)^c / c!
        c = np.exp(special.xlogy(deg, q[..., None] * s) - log_fact - q[..., None] * s)
        return np.where(c < _TINY, 0.0, c)

    coef = poisson(p)  # (G, K, D)
    unparse = poisson(p0)  # (G, D)
    # n! / s^n, times e^{s (sum P + P0)} for the Poisson factors (sum = 1 unless rows sum to 1+tol)
    log_norm = special.gammaln(n + 1.0) - n * math.log(s) + s * (total + p0)  # (G,)

    nodes, weights = np.polynomial.legendre.leggauss(max(1, math.ceil(n_answers / 2)))
    m = np.arange(1, n + 1)  # (M,) the winner's count, M = n
    below = (deg[None, :] < m[:, None]).astype(np.float64)  # (M, D)
    at = (deg[None, :] == m[:, None]).astype(np.float64)
    # [x^{n-m}] prefix * suffix via a gather: pair prefix coefficient i with suffix n-m-i.
    idx = n - m[:, None] - deg[None, :]  # (M, D)
    valid = idx >= 0
    shape = (n_groups, n, n + 1)
    idx = np.broadcast_to(np.where(valid, idx, 0), shape)
    win_coef = coef[:, :, 1:]  # (G, K, M): the winner's own factor at count m

    out = np.zeros((n_groups, n_answers))
    for node, weight in zip(nodes, weights, strict=True):
        u = (node + 1.0) / 2.0  # Gauss-Legendre on [0, 1]
        # factor[m, c] = 1 (c < m), u (c == m), 0 (c > m): the per-answer truncated EGF.
        factor = below + u * at  # (M, D)

        def answer_poly(b: int, factor=factor) -> np.ndarray:
            return coef[:, b, None, :] * factor[None]  # (G, M, D)

        # suffix[b] = e^{P0 x} * prod_{b' >= b} G_{b'}   (suffix[K] = e^{P0 x})
        suffix = [None] * (n_answers + 1)
        suffix[n_answers] = np.broadcast_to(unparse[:, None, :], shape).copy()
        for b in range(n_answers - 1, 0, -1):
            suffix[b] = _poly_mul_truncated(suffix[b + 1], answer_poly(b))
        prefix = np.zeros(shape)
        prefix[..., 0] = 1.0
        for a in range(n_answers):
            partner = np.take_along_axis(suffix[a + 1], idx, axis=-1)
            h = np.einsum("gmd,gmd->gm", prefix * valid, partner)  # (G, M)
            out[:, a] += (weight / 2.0) * np.einsum("gm,gm->g", h, win_coef[:, a, :])
            if a + 1 < n_answers:
                prefix = _poly_mul_truncated(prefix, answer_poly(a))
            suffix[a + 1] = None  # free memory early
    return out * np.exp(log_norm)[:, None]


def stability_curve(probs, n, beta, k) -> np.ndarray:
    r"""Probability that majority stability (A1) holds through steps 0..j, for j = 0..k.

    Start from answer marginals :math:`P_0` (``probs``; the rest of the mass is unparseable) with
    mode :math:`m = \arg\max P_0` (the first one if tied). While the winner is :math:`m` the
    policy tilts

    .. math:: P_{j+1}(a) \propto P_j(a)\,e^{\mathbb 1[a = m]/\beta}

    (unparseable mass is "not m" and is renormalised with the other answers), so
    :math:`P_j(m)` follows Theorem 1, :math:`P_j(m) = \mathrm{sigmoid}(\mathrm{logit}\,P_0(m) +
    j/\beta)`, and every other answer keeps its share of the rest. Entry ``j`` of the result is
    :math:`\prod_{i<j} \Pr[\hat m_i = m \mid P_i]` with the exact :func:`plurality_win_probs`
    at ``n`` samples per step: the probability that the first ``j`` votes all returned the
    initial mode. Entry 0 is 1.

    Parameters
    ----------
    probs : array_like, (K,) or (G, K)
    n : int >= 1
    beta : float > 0
    k : int >= 0

    Returns
    -------
    ndarray, (k + 1,) or (G, k + 1), non-increasing along the last axis.

    Examples
    --------
    >>> np.round(stability_curve([0.4, 0.3, 0.2], 8, 1.0, 3), 4)
    array([1.    , 0.5548, 0.514 , 0.5121])
    """
    p = _as_answer_probs("probs", probs)
    n = _as_int("n", n, 1)
    b = _as_scalar_beta(beta)
    k = _as_int("k", k, 0)
    if p.ndim > 2:
        raise ValueError(f"probs: expected shape (K,) or (G, K), got {p.shape}")
    flat = p.reshape(-1, p.shape[-1])  # (G, K)
    # k votes per row: bound the whole computation by plurality_win_probs's limits, before allocating
    worst = int((flat > 0).sum(axis=1).max(initial=0))
    per_vote = _plurality_cost(worst, min(n, 10**9)) if worst >= 2 else 0.0
    kf = _count_as_float(k)
    # (k + 1) * max(G K, 1): the k steps are held even for G = 0 rows
    work, size = kf * flat.shape[0] * per_vote, (kf + 1.0) * max(flat.size, 1)
    if work > _PLURALITY_MAX_COST or size > _PLURALITY_MAX_ELEMENTS:
        raise ValueError(
            f"k: {k} steps of the exact vote ({flat.shape[0]} rows) need ~{work:.1e} multiply-adds and "
            f"{size:.1e} floats, over the limits {_PLURALITY_MAX_COST:.2g} and "
            f"{_PLURALITY_MAX_ELEMENTS:.2g}; use fewer steps or samples"
        )
    rows = np.arange(flat.shape[0])
    mode = np.argmax(flat, axis=1)
    pm0 = flat[rows, mode]  # (G,)
    steps = np.arange(k)
    pm = majority_prob(pm0[:, None], b, steps)  # (G, k): P_j(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        shrink = np.where(
            pm0[:, None] < 1, majority_gap(pm0[:, None], b, steps) / (1 - pm0[:, None]), 0.0
        )
    path = flat[:, None, :] * shrink[..., None]  # (G, k, K): the other answers
    path[rows, :, mode] = pm
    win = plurality_win_probs(path.reshape(-1, flat.shape[1]), n).reshape(path.shape)
    out = np.ones((flat.shape[0], k + 1))
    out[:, 1:] = np.cumprod(win[rows, :, mode], axis=1)
    return out.reshape(p.shape[:-1] + (k + 1,))


def stability_prob(probs, n, beta, k) -> np.ndarray:
    r"""Probability that majority stability (A1) holds for ``k`` consecutive steps.

    The last entry of :func:`stability_curve`:
    :math:`\prod_{j=0}^{k-1} \Pr[\hat m_j = m \mid P_j]`, the chance that the first ``k``
    plurality votes of ``n`` samples all return the initial mode while the policy tilts toward
    it with :math:`P_{j+1}(a) \propto P_j(a) e^{\mathbb 1[a=m]/\beta}`.

    Returns
    -------
    ndarray, shape () or (G,).

    Examples
    --------
    >>> round(float(stability_prob([0.4, 0.3, 0.2], 8, 1.0, 3)), 4)
    0.5121
    """
    return stability_curve(probs, n, beta, k)[..., -1]


def hoeffding_flip_bound(probs, n) -> np.ndarray:
    r"""Hoeffding bound on the chance that the mode :math:`a^\star` loses the plurality vote.

    .. math:: \Pr[\hat m \ne a^\star] \le \sum_{b \ne a^\star} e^{-n (P(a^\star) - P(b))^2 / 2}
              \le (K - 1)\,e^{-n \Delta^2 / 2}

    (each term bounds :math:`\Pr[c_b \ge c_{a^\star}]`, a sum of ``n`` i.i.d. variables in
    [-1, 1] with mean :math:`-(P(a^\star) - P(b))`; the event "nothing parses" is inside
    :math:`c_b \ge c_{a^\star}`). The raw sum is returned; it can exceed 1, where it says
    nothing. Unparseable mass does not enter: it cannot win. With a single answer (K = 1) the
    bound is :math:`e^{-nP(a^\star)^2/2}` (a virtual rival of probability 0).

    Parameters
    ----------
    probs : array_like, (K,) or (G, K)
    n : int >= 1

    Returns
    -------
    ndarray, shape () or (G,).

    Examples
    --------
    >>> round(float(hoeffding_flip_bound([0.5, 0.3, 0.2], 100)), 6)  # e^{-2} + e^{-4.5}
    0.146444
    """
    p = _as_answer_probs("probs", probs)
    n = _count_as_float(_as_int("n", n, 1))
    if p.shape[-1] == 1:
        # The only way to lose is that nothing parses: a virtual rival with P = 0 bounds it,
        # (1 - P)^n <= e^{-nP} <= e^{-nP^2/2}.
        gap2 = p[..., 0] ** 2
        with np.errstate(under="ignore", invalid="ignore"):
            return np.where(gap2 > 0, np.exp(-n * gap2 / 2.0), 1.0)
    top = p.max(axis=-1, keepdims=True)
    mode = np.argmax(p, axis=-1)
    gap2 = (top - p) ** 2
    with np.errstate(under="ignore", invalid="ignore"):
        terms = np.where(gap2 > 0, np.exp(-n * gap2 / 2.0), 1.0)
    np.put_along_axis(terms, mode[..., None], 0.0, axis=-1)
    return terms.sum(axis=-1)


# ----------------------------------------------------------------------------------------------
# 3. Iterated tilts on explicit finite sets of sequences
# ----------------------------------------------------------------------------------------------


def _log_normalise(logp: np.ndarray) -> np.ndarray:
    from scipy import special

    return logp - special.logsumexp(logp, axis=-1, keepdims=True)


def _as_distribution_log(name: str, pi) -> np.ndarray:
    a = _as_float(name, pi)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError(f"{name}: expected shape (..., S) with S >= 1, got {a.shape}")
    if (~np.isfinite(a)).any() or (a < 0).any():
        raise ValueError(f"{name}: must be finite and >= 0")
    if not (a > 0).any(axis=-1).all():  # (not a sum: huge masses would overflow it)
        raise ValueError(f"{name}: every distribution needs positive total mass")
    with np.errstate(divide="ignore"):
        return _log_normalise(np.log(a))


def tilt(pi, reward, beta) -> np.ndarray:
    r"""One exponential tilt :math:`\pi' \propto \pi\,e^{r/\beta}`, computed in log space.

    This is the optimum of :math:`\max_{\pi'} \mathbb E_{\pi'}[r] - \beta\,\mathrm{KL}(\pi'\Vert\pi)`
    over a finite set of S sequences.

    Parameters
    ----------
    pi : array_like, (..., S), >= 0
        Probabilities of the sequences (renormalised over the set; zeros stay zero).
    reward : array_like, broadcastable to ``pi``
        Finite, or ``-inf`` (the sequence gets zero mass).
    beta : float > 0

    Returns
    -------
    ndarray, (..., S), each row summing to 1.

    Examples
    --------
    >>> np.round(tilt([0.5, 0.5], [1.0, 0.0], 1.0), 4)  # e / (e + 1)
    array([0.7311, 0.2689])
    """
    logp = _as_distribution_log("pi", pi)
    r = _as_float("reward", reward)
    if (r == np.inf).any():
        raise ValueError("reward: +inf is not allowed")
    b = _as_scalar_beta(beta)
    try:
        r = np.broadcast_to(r, logp.shape)
    except ValueError as exc:
        raise ValueError(
            f"reward: shape {r.shape} does not broadcast to pi's {logp.shape}"
        ) from exc
    return np.exp(_tilt_log(logp, r, b, "reward"))


def _tilt_log(logp: np.ndarray, r: np.ndarray, beta: float, name: str) -> np.ndarray:
    r"""Log of :math:`\pi e^{r/\beta}` normalised. The reward enters relative to its maximum over the
    sequences with mass (the tilt is shift-invariant), so ``r / beta`` cannot overflow to ``+inf``
    (a tiny ``beta``: the mass goes to the best sequences); ``-inf`` rewards always get zero mass."""
    keep = ~np.isneginf(logp) & ~np.isneginf(r)  # NaN rewards on zero-mass sequences: dropped
    if not keep.any(axis=-1).all():
        raise ValueError(f"{name}: the reward is -inf on every sequence that has mass")
    if math.isinf(beta):
        step = np.zeros(r.shape)  # no tilt (an -inf reward still removes its sequence)
    else:
        top = np.where(keep, r, -np.inf).max(axis=-1, keepdims=True)  # finite
        with np.errstate(over="ignore", invalid="ignore"):
            step = (r - top) / beta  # <= 0 where kept; -inf where r / beta underflows the range
    with np.errstate(invalid="ignore", over="ignore"):  # logp + step below -max: -inf, no mass
        new = np.where(keep, logp + step, -np.inf)
    return _log_normalise(new)


def iterate_tilt(pi0, reward_fn: Callable[[np.ndarray], np.ndarray], beta, k: int) -> np.ndarray:
    r"""Iterate :math:`\pi_{j+1} \propto \pi_j\,e^{r_j/\beta}` where :math:`r_j` depends on :math:`\pi_j`.

    The reference is refreshed every step (as in Theorem 1). :func:`power_sharpen`,
    :func:`mean_logprob_tilt` and :func:`probability_tilt` are instances.

    Parameters
    ----------
    pi0 : array_like, (..., S), >= 0
    reward_fn : callable
        ``reward_fn(log_pi) -> reward``: receives the current *log*-probabilities (..., S)
        (``-inf`` where the mass is zero) and returns rewards broadcastable to them.
    beta : float > 0
    k : int >= 0

    Returns
    -------
    ndarray, (k + 1, ..., S): the trajectory :math:`\pi_0, \dots, \pi_k`.

    Examples
    --------
    >>> traj = iterate_tilt([0.5, 0.5], lambda logp: np.array([1.0, 0.0]), 1.0, 2)
    >>> np.round(traj[-1], 4)  # two steps of a fixed reward = one step at beta / 2
    array([0.8808, 0.1192])
    """
    logp = _as_distribution_log("pi0", pi0)
    b = _as_scalar_beta(beta)
    k = _as_int("k", k, 0)
    if not callable(reward_fn):
        raise ValueError("reward_fn: must be callable")
    return _iterate_tilt(logp, reward_fn, b, k, "pi0")


def _check_trajectory(k: int, shape: tuple) -> None:
    """A trajectory of ``k + 1`` distributions of ``shape`` must fit the memory limit (256 MB)."""
    size = (_count_as_float(k) + 1.0) * max(math.prod(shape), 1)  # (k + 1, 0) is no array either
    if size > _PLURALITY_MAX_ELEMENTS:
        raise ValueError(
            f"k: a trajectory of {k} + 1 distributions of shape {shape} needs {size:.1e} floats, "
            f"over the limit {_PLURALITY_MAX_ELEMENTS:.2g}"
        )


def _iterate_tilt(
    logp: np.ndarray, reward_fn: Callable, b: float, k: int, name: str, culprit: str = "reward_fn"
) -> np.ndarray:
    """:func:`iterate_tilt` on validated arguments; ``name`` is the caller's distribution argument,
    ``culprit`` the argument named when the reward is -inf on every sequence with mass."""
    _check_trajectory(k, logp.shape)
    out = np.empty((k + 1, *logp.shape))
    out[0] = np.exp(logp)
    for j in range(k):
        r = _as_float_allow_nan("reward_fn", reward_fn(logp))
        try:
            r = np.broadcast_to(r, logp.shape)
        except ValueError as exc:
            raise ValueError(f"reward_fn: its output does not broadcast to {name}'s shape") from exc
        if (np.isnan(r) & ~np.isneginf(logp)).any() or (r == np.inf).any():
            raise ValueError("reward_fn: returned NaN or +inf on a sequence with mass")
        logp = _tilt_log(logp, r, b, culprit)
        out[j + 1] = np.exp(logp)
    return out


def power_sharpen(pi0, beta, k: int) -> np.ndarray:
    r"""Summed log-prob reward :math:`r = \log\pi_j(y)`: :math:`\pi_k \propto \pi_0^{(1+1/\beta)^k}`.

    Each step is :math:`\pi_{j+1} \propto \pi_j e^{\log\pi_j/\beta} = \pi_j^{1+1/\beta}`, so the
    exponents compound (power sharpening toward :math:`\arg\max \pi_0`). Evaluated in closed
    form in log space (relative to the maximum, so large exponents cannot give NaN).

    Parameters
    ----------
    pi0 : array_like, (..., S), >= 0
    beta : float > 0
    k : int >= 0

    Returns
    -------
    ndarray, (k + 1, ..., S).

    Examples
    --------
    >>> np.round(power_sharpen([0.6, 0.4], 1.0, 1)[1], 4)  # 0.36 / (0.36 + 0.16)
    array([0.6923, 0.3077])
    """
    logp = _as_distribution_log("pi0", pi0)
    b = _as_scalar_beta(beta)
    k = _as_int("k", k, 0)
    _check_trajectory(k, logp.shape)
    rel = logp - logp.max(axis=-1, keepdims=True)  # <= 0, exactly 0 at the argmax
    with np.errstate(over="ignore", divide="ignore"):
        power = (1.0 + 1.0 / b) ** np.arange(k + 1, dtype=np.float64)
    power = power.reshape((k + 1,) + (1,) * logp.ndim)
    with np.errstate(invalid="ignore", over="ignore"):  # rel * power below -max: -inf, no mass
        scaled = np.where(rel == 0, 0.0, rel * power)
    return np.exp(_log_normalise(scaled))


def mean_logprob_tilt(pi, lengths, beta, k: int) -> np.ndarray:
    r"""Mean log-prob reward :math:`r = \log\pi_j(y)/|y|`: :math:`\pi_{j+1} \propto \pi_j^{1 + 1/(\beta|y|)}`.

    The reward is the per-token log-probability, so at equal sequence probability the
    *longer* sequence gains (its exponent :math:`1 + 1/(\beta|y|)` is closer to 1): long runs of
    confident tokens win, the repetition-collapse direction of the token-mean reward.

    Parameters
    ----------
    pi : array_like, (..., S), >= 0
    lengths : array_like, broadcastable to ``pi``, > 0
        Token lengths :math:`|y|` of the sequences.
    beta : float > 0
    k : int >= 0

    Returns
    -------
    ndarray, (k + 1, ..., S).

    Examples
    --------
    >>> np.round(mean_logprob_tilt([0.5, 0.5], [1, 2], 1.0, 1)[1], 4)  # 0.5^2 vs 0.5^1.5
    array([0.4142, 0.5858])
    """
    logp = _as_distribution_log("pi", pi)
    lens = _as_float("lengths", lengths)
    if (~np.isfinite(lens)).any() or (lens <= 0).any():
        raise ValueError("lengths: must be finite and > 0")
    try:
        np.broadcast_to(lens, logp.shape)
    except ValueError as exc:
        raise ValueError(
            f"lengths: shape {lens.shape} does not broadcast to pi's {logp.shape}"
        ) from exc
    b = _as_scalar_beta(beta)
    k = _as_int("k", k, 0)

    def reward(lp: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # a subnormal length: -inf, that sequence loses its mass
            return lp / lens

    return _iterate_tilt(logp, reward, b, k, "pi", "lengths")


def probability_tilt(pi, beta, k: int) -> np.ndarray:
    r"""Probability reward :math:`r = \pi_j(y)`: :math:`\pi_{j+1} \propto \pi_j\,e^{\pi_j/\beta}`.

    The RLSC reward; on real sequence sets the most probable sequences are the short ones
    (length collapse).

    Parameters
    ----------
    pi : array_like, (..., S), >= 0
    beta : float > 0
    k : int >= 0

    Returns
    -------
    ndarray, (k + 1, ..., S).

    Examples
    --------
    >>> np.round(probability_tilt([0.6, 0.4], 1.0, 1)[1], 4)
    array([0.6469, 0.3531])
    """
    logp = _as_distribution_log("pi", pi)
    b = _as_scalar_beta(beta)
    k = _as_int("k", k, 0)
    return _iterate_tilt(logp, np.exp, b, k, "pi")


# ----------------------------------------------------------------------------------------------
# 4. Fitting observed majority-probability trajectories
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharpeningFit:
    r"""Fit of :math:`p_k = \mathrm{sigmoid}(\mathrm{logit}\,p_0 + k/\beta)` to M trajectories.

    Every field is an array of the batch shape (``(M,)`` for ``p_maj`` of shape (M, L)); the CIs
    have a trailing axis of 2 (lower, upper). Where ``valid`` is False every estimate is NaN.

    Attributes
    ----------
    slope : 1/beta, the per-step gain in log-odds. Negative: the initial majority is losing mass
        (it flipped, or effective learning (A2) broke) -- real information, not an error.
    intercept : logit p0 (the fitted log-odds at step 0).
    beta : 1/slope where slope > 0, else ``inf`` (see ``sharpening``).
    rho : exp(-slope); equals e^{-1/beta} when sharpening, >= 1 when not.
    p0 : sigmoid(intercept).
    slope_se : standard error of the slope (dispersion included).
    slope_ci, beta_ci : (..., 2) confidence intervals at ``level``. beta_ci maps the slope CI
        through 1/slope: [1/hi, 1/lo], with ``inf`` for any end at slope <= 0.
    r2_logit : weighted R^2 of the (continuity-corrected) empirical logits, the fit's scale.
    r2_p : plain R^2 on the probability scale (NaN for a constant series).
    dispersion : Pearson chi^2 / (n_points - 2) on the logit scale (see :func:`fit_sharpening`).
    n_points : points used.
    valid : at least two distinct steps observed.
    sharpening : valid and slope > 0.
    converged : valid and the estimate is the method's own, not a fallback. ``binomial``: the
        IRLS converged (else the estimates are the ``logit_wls`` ones). ``logit_wls``: no
        continuity-corrected 0/1 value entered the fit (else the slope is biased flat).
    level : the CI level.
    method : the fitting method.
    """

    slope: np.ndarray
    intercept: np.ndarray
    beta: np.ndarray
    rho: np.ndarray
    p0: np.ndarray
    slope_se: np.ndarray
    slope_ci: np.ndarray
    beta_ci: np.ndarray
    r2_logit: np.ndarray
    r2_p: np.ndarray
    dispersion: np.ndarray
    n_points: np.ndarray
    valid: np.ndarray
    sharpening: np.ndarray
    converged: np.ndarray
    level: float
    method: FitMethod

    def predict(self, steps) -> np.ndarray:
        """Fitted :math:`p_k` at ``steps`` (finite, broadcastable against the batch shape + (L,));
        NaN where the fit is not ``valid``."""
        k = _as_float("steps", steps)
        if np.isinf(k).any():
            raise ValueError("steps: contains inf")
        _check_broadcast(steps=k, fit=self.slope[..., None])
        from scipy import special

        with np.errstate(over="ignore", invalid="ignore"):  # slope * step beyond the float range
            eta = self.intercept[..., None] + self.slope[..., None] * k
        return special.expit(eta)


def fit_sharpening(
    steps,
    p_maj,
    *,
    n_samples=None,
    level: float = 0.95,
    method: FitMethod = "binomial",
    boundary_eps: float = 1e-3,
    max_iter: int = 30,
) -> SharpeningFit:
    r"""Fit :math:`\beta` and :math:`p_0` of Theorem 1 to observed majority-probability trajectories.

    Model: :math:`\mathrm{logit}\,p_k = \mathrm{logit}\,p_0 + k/\beta`, i.e. a logistic
    regression of the majority probability on the step, fitted independently (but vectorised,
    in closed-form steps) for every trajectory.

    * ``method="logit_wls"``: weighted least squares of the empirical logits on the steps, with
      delta-method weights :math:`n\,\hat p(1-\hat p)`
      (:math:`\mathrm{Var}(\mathrm{logit}\,\hat p) \approx 1/(n p(1-p))`), then one refit with
      weights from the fitted :math:`p`. Observed values of exactly 0 or 1 have infinite logits
      and are moved half a count inward (**continuity correction**): to :math:`1/(2n)` and
      :math:`1 - 1/(2n)` with ``n_samples``, else to ``boundary_eps`` and ``1 - boundary_eps``.
      Interior values are used as they are (noiseless data is fitted exactly). A 0/1 value is
      censored ("at least this extreme"): when the fit to the interior points alone (two or more
      distinct steps) already puts every 0/1 point beyond its corrected value, the 0/1 points
      are left out and that fit is kept, so a noiseless series that rounds to exactly 1.0 is
      still recovered (to the precision its last values below 1 carry). Otherwise the
      corrected fit is biased toward flat slopes and ``converged`` is False.
    * ``method="binomial"`` (default): starts from ``logit_wls`` and runs iteratively
      reweighted least squares to the (quasi-)binomial maximum-likelihood estimate, which
      uses the 0/1 points as they are (no correction, no saturation bias). Each iteration is
      a closed-form WLS of the working response :math:`\eta + (\hat p - \mu)/(\mu(1-\mu))` with
      weights :math:`n\mu(1-\mu)`. Where it does not converge within ``max_iter`` iterations
      (a separated 0...0,1...1 series has no finite MLE) the ``logit_wls`` estimate is kept and
      ``converged`` is False.

    **Uncertainty.** :math:`\mathrm{SE}(\hat s)^2 = \phi / \sum_k w_k (k - \bar k_w)^2` with the
    Pearson dispersion :math:`\hat\phi = \sum_k w_k r_k^2 / (L - 2)` (``r`` the residuals on the
    fitted scale). With ``n_samples`` the binomial variance is known and
    :math:`\phi = \max(1, \hat\phi)` (extra noise only widens the CI) with normal quantiles;
    without it :math:`\phi = \hat\phi` with Student-t quantiles on :math:`L - 2` degrees of
    freedom, and with only two points the slope CI is :math:`(-\infty, \infty)`.

    **Missing data.** NaN in ``p_maj`` (or ``steps``) marks a missing point. Fewer than two
    distinct observed steps: ``valid`` False and NaN estimates (never a silent number).

    The majority probability is measured relative to the *initial* majority answer, so a
    decreasing trajectory gives a negative slope, ``beta = inf`` and ``sharpening`` False.

    Parameters
    ----------
    steps : array_like, (L,) or the shape of ``p_maj``
        Training steps (any real numbers, e.g. epochs).
    p_maj : array_like, (..., L)
        Observed majority probabilities in [0, 1]; NaN = missing.
    n_samples : None or array_like broadcastable to ``p_maj``, in [1, 2**53]
        Samples behind each observed probability (the weights' scale and the correction).
    level : float in (0, 1)
        Confidence level of the intervals.
    method : "binomial" or "logit_wls"
    boundary_eps : float in (0, 0.5)
        Continuity correction for exact 0/1 when ``n_samples`` is None.
    max_iter : int >= 1
        IRLS iterations for ``method="binomial"``.

    Returns
    -------
    SharpeningFit

    Examples
    --------
    >>> k = np.arange(10)
    >>> fit = fit_sharpening(k, majority_prob(0.3, 2.0, k))
    >>> round(float(fit.beta), 6), round(float(fit.p0), 6)
    (2.0, 0.3)
    """
    # ---- validation -------------------------------------------------------------------------
    p = _as_float_allow_nan("p_maj", p_maj)
    if p.ndim == 0:
        raise ValueError("p_maj: expected shape (..., L), got a scalar")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("p_maj: probabilities must lie in [0, 1] (NaN marks missing)")
    k = _as_float_allow_nan("steps", steps)
    if k.ndim == 0:
        raise ValueError("steps: expected shape (L,) or p_maj's shape, got a scalar")
    if k.ndim == 1 and k.shape[0] != p.shape[-1]:
        raise ValueError(
            f"steps: length {k.shape[0]} does not match p_maj's last axis {p.shape[-1]}"
        )
    if k.ndim > 1 and k.shape != p.shape:
        raise ValueError(f"steps: shape {k.shape} must be (L,) or p_maj's shape {p.shape}")
    if np.isinf(k).any():
        raise ValueError("steps: contains inf")
    level = _as_level(level)
    if not isinstance(method, str) or method not in ("binomial", "logit_wls"):
        raise ValueError(f"method: must be 'binomial' or 'logit_wls', got {_brief(method)}")
    real = isinstance(boundary_eps, int | float | np.integer | np.floating) and not isinstance(
        boundary_eps, bool | np.bool_
    )
    if not (real and 0.0 < boundary_eps < 0.5):
        raise ValueError(f"boundary_eps: must lie in (0, 0.5), got {_brief(boundary_eps)}")
    max_iter = _as_int("max_iter", max_iter, 1)
    if n_samples is None:
        n = np.ones((1,) * p.ndim)
        edge = np.full((1,) * p.ndim, boundary_eps)
    else:
        n = _as_float("n_samples", n_samples)
        if (~np.isfinite(n)).any() or (n < 1).any() or (n > _MAX_SAMPLES).any():
            raise ValueError("n_samples: must lie in [1, 2**53] (sample counts, exact in float64)")
        try:
            fits = n.ndim <= p.ndim and np.broadcast_shapes(n.shape, p.shape) == p.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"n_samples: shape {n.shape} does not broadcast to p_maj's {p.shape}")
        edge = 0.5 / n

    # A fit that floating point cannot carry out (weights x steps^2 underflowing to 0, a slope beyond
    # the float range) ends in valid = False or converged = False, the documented signals: no warnings.
    with np.errstate(all="ignore"):
        batch_shape, length = p.shape[:-1], p.shape[-1]
        if length == 0:  # no step at all: one missing point (valid is then False)
            length, p, k = 1, np.full(batch_shape + (1,), np.nan), np.zeros(k.shape[:-1] + (1,))
            n = n if n.shape[-1:] != (0,) else np.ones(n.shape[:-1] + (1,))
            edge = (
                edge if edge.shape[-1:] != (0,) else np.full(edge.shape[:-1] + (1,), boundary_eps)
            )
        # Steps beyond 2^200 (or below 2^-200) in size would overflow (underflow) the sums of squares:
        # fit on steps / 2^e (exact) and scale the slope back.
        top = float(np.max(np.abs(k[~np.isnan(k)]), initial=0.0))
        k_scale = 1.0
        if top > 2.0**200 or 0 < top < 2.0**-200:
            k_scale = math.ldexp(1.0, math.frexp(top)[1] - 1)
            k = k / k_scale
        p = p.reshape(math.prod(batch_shape), length)
        k, n, edge = (
            np.broadcast_to(x, batch_shape + (length,)).reshape(-1, length) for x in (k, n, edge)
        )

        # Every row is fitted on its own, so the rows are fitted in blocks: the (rows, L) temporaries
        # of one block stay in cache and their memory is reused by the next block, so the first call
        # costs what later calls do and memory stays bounded for any number of trajectories.
        # Results do not depend on the block size (tests/sharpen/test_theory.py checks it bit for bit).
        block = max(1, _FIT_BLOCK_ELEMENTS // length)
        parts = [
            _fit_rows(
                p[s : s + block],
                k[s : s + block],
                n[s : s + block],
                edge[s : s + block],
                method,
                max_iter,
            )
            for s in range(0, max(p.shape[0], 1), block)
        ]
        slope, intercept, sxx, phi_hat, r2_logit, r2_p, n_points, valid, converged = (
            np.concatenate(column) for column in zip(*parts, strict=True)
        )

        # ---- uncertainty (per row) ----------------------------------------------------------------
        from scipy import special  # the quantiles below are what scipy.stats' t and norm ppf return

        dof = n_points - 2
        slope = slope / k_scale  # per unit of the caller's steps
        if n_samples is None:
            phi = phi_hat
            quant = np.where(dof > 0, special.stdtrit(np.maximum(dof, 1), 0.5 + level / 2), np.inf)
        else:
            phi = np.where(dof > 0, np.maximum(1.0, phi_hat), 1.0)
            quant = np.full(phi.shape, special.ndtri(0.5 + level / 2))
        se = np.sqrt(phi / sxx) / k_scale
        half = np.where(np.isinf(quant), np.inf, quant * se)
        slope_ci = np.stack([slope - half, slope + half], axis=-1)
        lo, hi = slope_ci[:, 0], slope_ci[:, 1]
        beta_ci = np.stack(
            [np.where(hi > 0, 1.0 / hi, np.inf), np.where(lo > 0, 1.0 / lo, np.inf)], axis=-1
        )
        beta = np.where(slope > 0, 1.0 / slope, np.inf)
        rho = np.exp(-slope)  # a slope below -709: rho = e^{-slope} is +inf

        def out(x: np.ndarray) -> np.ndarray:
            mask = valid if x.ndim == 1 else valid[:, None]
            return np.where(mask, x, np.nan).reshape(batch_shape + x.shape[1:])

        return SharpeningFit(
            slope=out(slope),
            intercept=out(intercept),
            beta=out(beta),
            rho=out(rho),
            p0=out(special.expit(intercept)),
            slope_se=out(se),
            slope_ci=out(slope_ci),
            beta_ci=out(beta_ci),
            r2_logit=out(r2_logit),
            r2_p=out(r2_p),
            dispersion=out(phi_hat),
            n_points=n_points.reshape(batch_shape),
            valid=valid.reshape(batch_shape),
            sharpening=(valid & (slope > 0)).reshape(batch_shape),
            converged=(converged & valid).reshape(batch_shape),
            level=float(level),
            method=method,
        )


def _shared_row(x: np.ndarray) -> np.ndarray:
    """``x (R, L)`` as one row ``(1, L)`` when every row is the same view (a broadcast), else ``x``: the
    arithmetic broadcasts it back, and gathering rows of it costs nothing."""
    return x[:1] if x.shape[0] > 1 and x.strides[0] == 0 else x


def _take_rows(x, idx: np.ndarray):
    """Rows ``idx`` (indices or a boolean mask) of ``x``, to read. ``x`` itself where that is the same: one
    row shared by all rows (see :func:`_shared_row`), ``None`` (a mask that keeps every point), or indices
    that name every row (they come from ``np.flatnonzero``, so in order)."""
    if x is None or x.shape[0] == 1 or (idx.dtype != bool and idx.size == x.shape[0]):
        return x
    return x[idx] if idx.dtype == bool else np.take(x, idx, axis=0)  # take: faster than x[idx]


def _at(x: np.ndarray, ri: np.ndarray, ci: np.ndarray) -> np.ndarray:
    """The points ``(ri, ci)`` of ``x (R, L)`` or of one shared row ``x (1, L)``, as a flat array."""
    return x[0, ci] if x.shape[0] == 1 else x[ri, ci]


def _keep(mask, x: np.ndarray, fill: float) -> np.ndarray:
    """``x`` where ``mask`` holds, else ``fill``; ``mask=None`` keeps every point (and skips the pass)."""
    return x if mask is None else np.where(mask, x, fill)


def _affine(intercept: np.ndarray, slope: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``intercept[:, None] + slope[:, None] * k``, (R, L): the same two roundings, the sum taken in place
    (numpy adds a column to a fresh temporary several times slower than into it)."""
    out = np.multiply(slope[:, None], k)
    out += intercept[:, None]
    return out


def _one_minus_times(x: np.ndarray) -> np.ndarray:
    """``x * (1 - x)`` elementwise, into one new array (the same rounding: the product commutes)."""
    out = np.subtract(1.0, x)
    out *= x
    return out


def _logit_of_fractions(pc: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``scipy.special.logit(pc)`` of the corrected fractions ``pc (R, L)``. Where every point has the same
    whole number n of samples and every ``pc`` lies on the grid ``j / (2n)`` (observed fractions and their
    half-count corrections: the usual case), the logits of the 2n + 1 grid values are computed once and
    looked up, one logarithm per grid value instead of per point. The same numbers: the grid test is exact
    (``pc == j / (2n)`` as floats), and the table holds the logits of those floats."""
    from scipy import special

    if n.shape[0] == 1 and pc.size > 0:
        n0 = float(n.flat[0])
        m = 2.0 * n0
        small = m + 1 <= min(pc.size / 4, _LOGIT_GRID_MAX)  # a table far smaller than the block
        if small and n0 == math.floor(n0) and (n == n0).all():
            j = np.rint(np.multiply(pc, m))
            if (j / m == pc).all():
                return np.take(special.logit(np.arange(m + 1.0) / m), j.astype(np.intp))
    return special.logit(pc)


def _fit_rows(p, k, n, edge, method: FitMethod, max_iter: int):
    """The (R, L) part of :func:`fit_sharpening` on validated rows ``p, k, n, edge (R, L)``: per-row
    ``(slope, intercept, S_kk, dispersion, r2_logit, r2_p, n_points, valid, converged)``, each ``(R,)``,
    the slope per unit of ``k``. Floating-point warnings are the caller's to silence.

    Masks are ``None`` where they keep every point of the block (the usual case: nothing missing), and
    rows shared by every row (``k``, ``n``, ``edge`` broadcast from one row) stay one row; both only skip
    work, the arithmetic on every point is the same. Every row's numbers depend on that row alone (so on
    no block size). The passes are written to move little memory, each giving the numbers of the plain
    expression it replaces: products with a mask or sums in place of ``np.where`` where the values are
    finite, in-place sums, row gathers only of few rows (else every row is computed), rows that have
    converged dropped once an eighth of them have, logits looked up on the grid of sample fractions.
    """
    from scipy import special

    rows_total = p.shape[0]
    n, edge = _shared_row(n), _shared_row(edge)
    # ---- logit-scale WLS ------------------------------------------------------------------------
    missing = np.isnan(p) | np.isnan(_shared_row(k))
    if missing.any():
        observed = ~missing
        kz, pz = np.where(observed, k, 0.0), np.where(observed, p, 0.5)
    else:  # every point observed
        observed, kz, pz = None, _shared_row(k), p
    interior = (pz > 0) & (pz < 1)
    pc = np.clip(pz, edge, 1.0 - edge)  # moves only exact 0/1 when edge = 1/(2n)
    moved = (pc != pz) & interior  # interior points are never moved
    if moved.any():
        pc[moved] = pz[moved]
    y = _logit_of_fractions(pc, n)  # 0 where unobserved (pz = 0.5 there)
    w0 = np.multiply(n, pc)
    w0 *= np.subtract(1.0, pc, out=pc)  # n pc (1 - pc); pc is not needed again
    # 0/1 points are censored values ("at least this extreme"). The fit to the interior points alone
    # comes first; where it already puts every 0/1 point of its row beyond the correction, those points
    # carry no further information and it is kept (a saturated noiseless series is then fitted exactly);
    # otherwise the continuity-corrected fit to all observed points replaces it. A row without 0/1 points
    # has the same fit both ways.
    censored = ~interior if observed is None else observed & ~interior
    has_censored = censored.any(axis=1)
    inner = interior if observed is None else observed & interior
    if observed is None and not has_censored.any():
        inner = None  # every point observed and interior
    slope, intercept, sxx, w = _logit_wls(kz, y, w0, inner, n)
    # logit_wls "converges" where no continuity-corrected value entered the fit
    converged = ~has_censored
    rows = np.flatnonzero(has_censored)
    if rows.size:
        # The interior fit at the 0/1 points only (the same arithmetic, point by point, as on whole rows).
        ri, ci = np.nonzero(censored)
        i_fit = special.expit(intercept[ri] + slope[ri] * _at(kz, ri, ci))
        e_c = _at(edge, ri, ci)
        beyond = np.where(pz[ri, ci] >= 1, i_fit >= 1.0 - e_c, i_fit <= e_c)
        short = np.zeros(rows_total, dtype=bool)
        short[ri[~beyond]] = True  # a 0/1 point the interior fit does not put beyond its correction
        use_inner = (
            np.isfinite(slope[rows]) & np.isfinite(intercept[rows]) & (sxx[rows] > 0) & ~short[rows]
        )
        converged[rows[use_inner]] = True
        redo = rows[~use_inner]
        if 2 * redo.size > rows_total:
            # Refitting every row costs less than gathering most of them. A row without 0/1 points gets
            # the fit it has (its inner and observed points are the same); the kept interior fits stay.
            kept = rows[use_inner]
            fit = _logit_wls(kz, y, w0, observed, n)
            for new, old in zip(fit, (slope, intercept, sxx, w), strict=True):
                new[kept] = old[kept]
            slope, intercept, sxx, w = fit
        elif redo.size:
            slope[redo], intercept[redo], sxx[redo], w[redo] = _logit_wls(
                *(_take_rows(x, redo) for x in (kz, y, w0, observed, n))
            )

    # ---- binomial maximum likelihood (IRLS) on the trajectories that need it ---------------------
    if method == "logit_wls":
        resid = y - intercept[:, None]
        resid -= slope[:, None] * kz
    else:
        converged[:] = False
        resid = np.empty_like(y)  # written row by row as the rows converge; the rest below
        if observed is None:
            span = kz.max(axis=1) - kz.min(axis=1)
            n_obs = np.full(rows_total, p.shape[1])
        else:
            span = np.where(observed, kz, -np.inf).max(axis=1) - np.where(observed, kz, np.inf).min(
                axis=1
            )
            n_obs = observed.sum(axis=1)
        span = np.broadcast_to(span, p.shape[:1])
        k_abs = np.broadcast_to(np.abs(kz).max(axis=1), p.shape[:1])  # kz is 0 where unobserved
        active = np.flatnonzero((n_obs >= 2) & (span > 0))
        a_slope, a_int = slope[active], intercept[active]
        a_span, a_kabs = span[active], k_abs[active]
        ka, pa, na, oa = (_take_rows(x, active) for x in (kz, pz, n, observed))
        # the fitted logits, probabilities and binomial variances at (a_int, a_slope), carried from
        # iteration to iteration
        eta = _affine(a_int, a_slope, ka)
        mu = special.expit(eta)
        var = _one_minus_times(mu)  # 0 where mu rounds to 0 or 1: such a point carries no weight
        a_ll = np.full(active.size, np.nan)  # log-likelihood at (a_int, a_slope) where known
        p_fit = np.empty_like(y)  # sigma of the fitted logits, written as the rows converge
        # Rows that leave (converged or failed) are dropped from the active arrays once an eighth of them
        # have left; until then they are carried along, not alive (a copy of the rest costs more).
        alive = None  # None: every active row is alive
        for _ in range(max_iter):
            if active.size == 0:
                break
            # every point weighs (the usual case); a NaN fails the test and takes the mask below
            if oa is None and var.min() > 0:
                use = None
            else:
                use = var > 0 if oa is None else oa & (var > 0)
                if use.all():
                    use = None
            wa = _keep(use, na * var, 0.0)
            p_mu = pa - mu
            z = np.divide(p_mu, var)
            z += eta  # the working response eta + (p - mu) / var
            if use is not None:
                np.copyto(z, 0.0, where=~use)
            new_slope, new_int, new_sxx = _wls(ka, z, wa)
            finite = np.isfinite(new_slope) & np.isfinite(new_int) & (new_sxx > 0)
            if not finite.all():
                new_slope = np.where(finite, new_slope, a_slope)
                new_int = np.where(finite, new_int, a_int)
            eta_new = _affine(new_int, new_slope, ka)
            mu_new = special.expit(eta_new)
            var_new = _one_minus_times(mu_new)  # the next iteration's var, and _sure_ascent's
            # Step halving: a Newton step from far away can overshoot; never lower the likelihood.
            # Only steps that move some fitted logit by more than 0.5 are checked (near the
            # optimum Newton is safe); the likelihood is evaluated only where a cheap bound cannot
            # show that it does not fall (_sure_ascent), which decides as the likelihood would.
            far = np.abs(new_int - a_int) + np.abs(new_slope - a_slope) * a_kabs > 0.5
            risky = np.flatnonzero(far if alive is None else far & alive)
            new_ll = np.full(active.size, np.nan)
            if risky.size:
                # (mu, mu_new and p are not needed where var_new and p_mu are given)
                if 2 * risky.size > active.size:  # bounding every row costs less than gathering
                    sure = _sure_ascent(
                        eta, None, var, eta_new, None, None, na, oa, var_new=var_new, p_mu=p_mu
                    )[risky]
                else:
                    r_eta, r_var, r_eta_new, r_var_new, r_p_mu = (
                        np.take(x, risky, axis=0) for x in (eta, var, eta_new, var_new, p_mu)
                    )
                    sure = _sure_ascent(
                        r_eta, None, r_var, r_eta_new, None, None, _take_rows(na, risky),
                        _take_rows(oa, risky), var_new=r_var_new, p_mu=r_p_mu,
                    )  # fmt: skip
                check = np.flatnonzero(~sure)
                if check.size:
                    rows_c = risky[check]
                    c_ka, c_pa, c_na, c_oa = (_take_rows(x, rows_c) for x in (ka, pa, na, oa))
                    old_ll = a_ll[rows_c]
                    unknown = np.flatnonzero(np.isnan(old_ll))
                    old_ll[unknown] = _loglik(
                        eta[rows_c[unknown]], c_pa[unknown], _take_rows(c_na, unknown),
                        _take_rows(c_oa, unknown),
                    )  # fmt: skip
                    new_slope[rows_c], new_int[rows_c], new_ll[rows_c] = _halve_steps(
                        a_int[rows_c], a_slope[rows_c], old_ll, new_int[rows_c], new_slope[rows_c],
                        c_ka, c_pa, c_na, c_oa,
                    )  # fmt: skip
                    eta_new[rows_c] = _affine(new_int[rows_c], new_slope[rows_c], c_ka)
                    mu_new[rows_c] = special.expit(eta_new[rows_c])
                    var_new[rows_c] = _one_minus_times(mu_new[rows_c])
            step = np.abs(new_slope - a_slope) * (1.0 + a_span) + np.abs(new_int - a_int)
            # A separated series (no finite MLE) runs off: its slope keeps growing until max_iter.
            done = finite & (step < 1e-9 * (1.0 + np.abs(new_slope) + np.abs(new_int)))
            if alive is not None:
                done &= alive
            if done.any():
                d = np.flatnonzero(done)
                idx = active[d]
                slope[idx], intercept[idx], sxx[idx] = new_slope[d], new_int[d], new_sxx[d]
                w[idx], p_fit[idx] = _take_rows(wa, d), _take_rows(mu_new, d)
                r = _take_rows(z, d) - new_int[d, None]
                r -= new_slope[d, None] * _take_rows(ka, d)  # z - intercept - slope k
                resid[idx] = _keep(_take_rows(oa, d), r, 0.0)
                converged[idx] = True
            keep = finite & ~done
            if alive is not None:
                keep &= alive
            if not keep.all() and 8 * np.count_nonzero(keep) > 7 * active.size:
                alive = keep  # too few have left to be worth copying the rest
            elif not keep.all():
                kk = np.flatnonzero(keep)
                active, a_span, a_kabs = active[kk], a_span[kk], a_kabs[kk]
                ka, pa, na, oa = (_take_rows(x, kk) for x in (ka, pa, na, oa))
                eta_new, mu_new, var_new = (_take_rows(x, kk) for x in (eta_new, mu_new, var_new))
                new_slope, new_int, new_ll = new_slope[kk], new_int[kk], new_ll[kk]
                alive = None
            a_slope, a_int, a_ll = new_slope, new_int, new_ll
            eta, mu, var = eta_new, mu_new, var_new
        stale = np.flatnonzero(~converged)  # the logit_wls estimates stand there
        k_stale = _take_rows(kz, stale)
        resid[stale] = y[stale] - intercept[stale, None] - slope[stale, None] * k_stale

    # ---- validity, goodness of fit ----------------------------------------------------------------
    if observed is None:
        n_points = np.full(rows_total, p.shape[1])
        k_min, k_max = kz.min(axis=1), kz.max(axis=1)
    else:
        n_points = observed.sum(axis=1)
        k_min = np.where(observed, kz, np.inf).min(axis=1)
        k_max = np.where(observed, kz, -np.inf).max(axis=1)
    valid = (n_points >= 2) & (k_max > k_min) & np.isfinite(slope) & (sxx > 0)
    dof = n_points - 2
    t = np.square(_keep(observed, resid, 0.0))
    t *= w
    phi_hat = np.where(dof > 0, t.sum(axis=1) / np.maximum(dof, 1), np.nan)
    eta_fit = _keep(observed, _affine(intercept, slope, kz), 0.0)
    ybar = np.multiply(w, y, out=t).sum(axis=1) / w.sum(axis=1)  # y is 0 where unobserved
    tss = _weighted_square_sum(w, np.subtract(y, ybar[:, None], out=t))
    rss = _weighted_square_sum(w, np.subtract(y, eta_fit, out=t))
    r2_logit = np.where(tss > 0, 1.0 - rss / tss, np.nan)
    p_obs = _keep(observed, p, 0.0)
    pbar = p_obs.sum(axis=1) / n_points
    if method == "binomial":  # sigma(eta_fit) is known where IRLS converged
        p_fit[stale] = special.expit(eta_fit[stale])
    else:
        p_fit = special.expit(eta_fit, out=eta_fit)
    rss_p = np.square(_keep(observed, np.subtract(p_obs, p_fit, out=t), 0.0)).sum(axis=1)
    tss_p = np.square(_keep(observed, np.subtract(p_obs, pbar[:, None], out=t), 0.0)).sum(axis=1)
    r2_p = np.where(tss_p > 0, 1.0 - rss_p / tss_p, np.nan)
    return slope, intercept, sxx, phi_hat, r2_logit, r2_p, n_points, valid, converged


def _weighted_square_sum(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``(w * x**2).sum(axis=1)``, squaring ``x`` in place (a scratch array)."""
    np.square(x, out=x)
    x *= w
    return x.sum(axis=1)


def _sure_ascent(
    eta, mu, var, eta_new, mu_new, p, n, observed, *, var_new=None, p_mu=None
) -> np.ndarray:
    r"""Rows ``(R,)`` where moving the fitted logits from ``eta`` to ``eta_new (R, L)`` provably does not
    lower the binomial log-likelihood :math:`\ell` (so step halving would keep the step); ``mu`` and
    ``var`` are :math:`\sigma(\eta)` and :math:`\sigma(\eta)(1 - \sigma(\eta))`, ``mu_new`` is
    :math:`\sigma(\eta_{new})`.

    Along the segment :math:`\eta + t d`, :math:`d = \eta_{new} - \eta`,
    :math:`\ell'' = -\sum n \sigma'(\eta + t d) d^2` with :math:`\sigma' = \sigma(1 - \sigma)`, which
    peaks at 0 and falls off on either side, so on the segment it is at most
    :math:`c = 1/4` where the segment crosses 0, else the larger of its end values. Taylor's theorem
    then gives :math:`\ell(\eta_{new}) - \ell(\eta) \ge \sum n (p - \mu) d - \frac12 \sum n c d^2`.
    A row is sure where this bound is positive by more than its rounding error (``c`` is raised by
    rounding slack, the margin is 1e-12 of the terms' size, far above their float error, and below the
    1e-12 relative tolerance of the halving check, which computes :math:`\ell` to ~1e-14).
    ``var_new`` (:math:`\sigma(\eta_{new})(1 - \sigma(\eta_{new}))`) and ``p_mu`` (``p - mu``) may be passed
    where the caller has them (the same values, not computed again); ``mu_new``, and ``mu`` and ``p``, are
    then not read (they may be None).
    """
    d = eta_new - eta
    curv = np.maximum(var, _one_minus_times(mu_new) if var_new is None else var_new)
    curv *= 1.0 + 1e-9
    curv += 1e-15  # the larger end value, with rounding slack ...
    same_side = np.multiply(eta, eta_new) > 0
    if not same_side.all():
        np.copyto(curv, 0.25, where=~same_side)  # ... or 1/4 where the segment may cross 0
    nd = n * d
    t = np.multiply(nd, p - mu if p_mu is None else p_mu)
    gain = _keep(observed, t, 0.0).sum(axis=1)
    np.multiply(nd, d, out=t)
    t *= curv
    quad = 0.5 * _keep(observed, t, 0.0).sum(axis=1)
    size = _keep(observed, np.abs(nd, out=t), 0.0).sum(axis=1)
    bound = gain - quad
    return np.isfinite(bound) & (bound > 1e-12 * (size + np.abs(gain) + quad))


def _halve_steps(old_i, old_s, old_ll, new_i, new_s, k, p, n, observed):
    """Halve the steps from ``(old_i, old_s)`` to ``(new_i, new_s)`` (R,) of the rows ``k, p, n, observed``
    until the log-likelihood is not lower than ``old_ll`` (up to 1e-12 relative; at most 40 halvings):
    ``(slope, intercept, log-likelihood)`` at the accepted points, (R,) each."""
    new_ll = _binomial_loglik(new_i, new_s, k, p, n, observed)
    for _ in range(40):
        worse = np.flatnonzero(~(new_ll >= old_ll - 1e-12 * np.abs(old_ll)))
        if worse.size == 0:
            break
        new_s[worse] = (new_s[worse] + old_s[worse]) / 2
        new_i[worse] = (new_i[worse] + old_i[worse]) / 2
        new_ll[worse] = _binomial_loglik(
            new_i[worse], new_s[worse], *(_take_rows(x, worse) for x in (k, p, n, observed))
        )
    return new_s, new_i, new_ll


def _binomial_loglik(intercept, slope, k, p, n, observed) -> np.ndarray:
    """Binomial log-likelihood (up to a constant) of observed fractions p under logit = a + s k."""
    return _loglik(intercept[:, None] + slope[:, None] * k, p, n, observed)


def _loglik(eta, p, n, observed) -> np.ndarray:
    r""":func:`_binomial_loglik` of the fitted logits ``eta (R, L)``:
    :math:`\sum n\,(p \log\sigma(\eta) + (1 - p) \log\sigma(-\eta))` over the observed points.

    One logarithm serves both terms: with :math:`t = \log\sigma(|\eta|) = -\log(1 + e^{-|\eta|})`,
    :math:`\log\sigma(\pm\eta) = \min(\pm\eta, 0) + t`, which is how ``scipy.special.log_expit``
    evaluates each of them (the same values, signed zeros aside) at half the cost.
    """
    from scipy import special

    t = special.log_expit(np.abs(eta))
    ll = n * (p * (np.minimum(eta, 0.0) + t) + (1.0 - p) * (np.minimum(-eta, 0.0) + t))
    return _keep(observed, ll, 0.0).sum(axis=1)


def _logit_wls(k: np.ndarray, y: np.ndarray, w0: np.ndarray, use, n: np.ndarray):
    r"""Two-pass WLS of logits ``y`` on ``k`` over the points ``use`` (``None``: all): first with the
    weights ``w0``, then with :math:`n\hat p(1-\hat p)` from the first fit. (slope, intercept, S_kk, w),
    ``w`` a new array. Floating-point warnings are the caller's to silence."""
    from scipy import special

    # Weights are finite and >= 0 (w0 = n pc (1 - pc); n fitted (1 - fitted) where the first fit is finite),
    # so masking is a product with the mask and "w_fit, else w where w_fit is 0" a sum: the same numbers as
    # np.where, in cheaper passes. Rows whose first fit is not finite may hold NaN weights: np.where there.
    w = w0 if use is None else w0 * use
    slope, intercept, _ = _wls(k, y, w)
    fitted = special.expit(_affine(intercept, slope, k))
    w_fit = np.multiply(n, fitted)
    w_fit *= np.subtract(1.0, fitted, out=fitted)  # n fitted (1 - fitted)
    rough = np.flatnonzero(~(np.isfinite(slope) & np.isfinite(intercept)))
    if rough.size:
        w_rough = _keep(_take_rows(use, rough), w_fit[rough], 0.0)
        w_rough = np.where(w_rough > 0, w_rough, w[rough])
    if use is not None:
        w_fit *= use
    unfit = w_fit == 0
    if unfit.any():
        w_fit += w * unfit  # a fitted p rounding to 0/1 keeps its first weight
    if rough.size:
        w_fit[rough] = w_rough
    slope, intercept, sxx = _wls(k, y, w_fit)
    return slope, intercept, sxx, w_fit


def _wls(k: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted least squares of y on k along the last axis: (slope, intercept, S_kk). Floating-point
    warnings are the caller's to silence."""
    # kbar = sum(w k) / sum(w), ybar = sum(w y) / sum(w), dk = k - kbar, S_kk = sum(w dk^2),
    # S_ky = sum(w dk (y - ybar)), written with two scratch arrays (fresh temporaries cost page faults).
    sw = w.sum(axis=-1)
    t = w * k
    kbar = t.sum(axis=-1) / sw
    ybar = np.multiply(w, y, out=t).sum(axis=-1) / sw
    dk = k - kbar[..., None]
    np.multiply(dk, dk, out=t)
    sxx = np.multiply(w, t, out=t).sum(axis=-1)
    np.multiply(w, dk, out=t)
    sxy = np.multiply(t, np.subtract(y, ybar[..., None], out=dk), out=t).sum(axis=-1)
    slope = sxy / sxx
    intercept = ybar - slope * kbar
    return slope, intercept, sxx
