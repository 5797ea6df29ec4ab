"""Answer-level toy policies and the three update rules of the simulator.

A *question* q has K answers, one of them correct (``correct[q]``); a *policy* gives logits ``(Q, K)``.

Update rules (all act on logits ``z``, :math:`\\pi=\\mathrm{softmax}(z)`):

* **exact tilt** -- Theorem 1's KL-regularised optimum with the reference refreshed each step,
  :math:`\\pi_{k+1}\\propto\\pi_k e^{r/\\beta}`, i.e. ``z += r / beta`` for a per-answer reward ``r (Q, K)``;
* **expected gradient** -- :math:`z \\mathrel{+}= \\eta\\,\\pi\\odot(r-\\mathbb E_\\pi r)`, the exact policy gradient
  of :math:`\\mathbb E_{a\\sim\\pi}[r(a)]` in the logits;
* **sampled GRPO** -- N rollouts per question, rewards from :mod:`sharpen.rewards` (or from answer counts for
  the answer-level rewards), advantages from :func:`sharpen.grpo.group_advantages`, optional PPO clip over
  several epochs and an exact KL penalty, SGD or Adam.

The GRPO objective per step is :math:`\\sum_q \\frac1N\\sum_i A_{qi}\\log\\pi(y_{qi})` (the group mean per question,
summed over the questions of the batch), so a tabular question moves by the same amount whatever the batch size.
Its gradient in question q's logits is :math:`\\frac1N\\sum_i A_{qi}(e_{y_{qi}}-\\pi_q)`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sharpen.answers import plurality_winners
from sharpen.grpo import group_advantages

__all__ = [
    "PriorConfig",
    "Prior",
    "sample_prior",
    "TabularPolicy",
    "SharedPolicy",
    "softmax",
    "softmax_parts",
    "row_max",
    "exact_tilt",
    "onehot_argmax",
    "expected_gradient",
    "sample_counts",
    "sample_counts_runs",
    "sample_rollouts",
    "GRPOConfig",
    "Optimizer",
    "grpo_logit_grad",
]


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``z (..., K)`` (max-shifted, same dtype)."""
    e, total = softmax_parts(z)
    return e / total


def softmax_parts(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""The two halves of :func:`softmax`: ``e = exp(z - max_k z)`` ``(..., K)`` and its row sums ``(..., 1)``.

    ``softmax(z) == e / total`` exactly, and so is any entry taken out first (``e[i, k] / total[i]``), which
    lets a caller that needs a few probabilities per row skip the rest; the largest probability of a row is
    exactly ``1 / total`` (its ``e`` is ``exp(0) = 1``, and dividing by ``total`` keeps the order).
    """
    z = np.asarray(z)
    e = np.exp(z - row_max(z))
    return e, e.sum(axis=-1, keepdims=True)


def row_max(z: np.ndarray) -> np.ndarray:
    """``z.max(axis=-1, keepdims=True)``, exactly (a maximum does not round), computed for a few columns as a
    running ``np.maximum`` over them, which is several times faster than numpy's reduction over a short axis."""
    k = z.shape[-1] if z.ndim else 0
    if not 1 < k <= 32 or z.size == 0:
        return z.max(axis=-1, keepdims=True)
    cols = z.reshape(-1, k).T  # (K, rows): column j is row j, a strided view
    m = cols[0].copy()
    for j in range(1, k):
        np.maximum(m, cols[j], out=m)
    return m.reshape(*z.shape[:-1], 1)


def check_probs(p: np.ndarray, name: str = "p") -> np.ndarray:
    """Validate a ``(..., K)`` array of distributions (K >= 2, non-negative, rows sum to 1)."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim < 1 or p.shape[-1] < 2:
        raise ValueError(f"{name}: needs K >= 2 answers, got shape {p.shape}")
    if p.size == 0:
        raise ValueError(f"{name}: empty")
    if not np.all(np.isfinite(p)) or (p < 0).any():
        raise ValueError(f"{name}: probabilities must be finite and >= 0")
    if not np.allclose(p.sum(axis=-1), 1.0, atol=1e-6):
        raise ValueError(
            f"{name}: each row must sum to 1 (got sums {p.sum(axis=-1).ravel()[:3]} ...)"
        )
    return p


# ------------------------------------------------------------------------------------------------------------
# Priors
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriorConfig:
    r"""The prior family of initial answer distributions.

    Logits :math:`z_{qk}=\mathrm{spread}\cdot\varepsilon_{qk}+\mathrm{strength}\cdot\mathbb 1[k=c_q]`, with
    :math:`\varepsilon\sim N(0,1)` i.i.d. and the correct answer :math:`c_q` uniform over the K slots.
    ``strength`` is how strongly (and so how often) the correct answer is the mode: at 0 it is the mode for
    1/K of the questions; ``spread`` sets how peaked the distributions are.

    Attributes
    ----------
    n_questions : int
        Q >= 1.
    n_answers : int
        K >= 2.
    strength : float
        Logit bonus of the correct answer (any real; negative makes it rarer than chance).
    spread : float
        Std of the logit noise, > 0.
    """

    n_questions: int = 64
    n_answers: int = 8
    strength: float = 1.0
    spread: float = 1.0

    def __post_init__(self) -> None:
        if int(self.n_questions) < 1:
            raise ValueError(f"n_questions: the dataset must not be empty, got {self.n_questions}")
        if int(self.n_answers) < 2:
            raise ValueError(f"n_answers: K must be >= 2, got {self.n_answers}")
        if not np.isfinite(self.strength):
            raise ValueError(f"strength: must be finite, got {self.strength}")
        if not (np.isfinite(self.spread) and self.spread > 0):
            raise ValueError(f"spread: must be > 0, got {self.spread}")


@dataclass(frozen=True)
class Prior:
    """Initial logits ``(Q, K)`` and correct answers ``(Q,)`` drawn from a :class:`PriorConfig`."""

    logits: np.ndarray
    correct: np.ndarray

    @property
    def probs(self) -> np.ndarray:
        return softmax(self.logits)


def sample_prior(config: PriorConfig, rng: np.random.Generator) -> Prior:
    """Draw a :class:`Prior`.

    >>> pr = sample_prior(PriorConfig(n_questions=3, n_answers=4), np.random.default_rng(0))
    >>> pr.logits.shape, pr.correct.shape
    ((3, 4), (3,))
    """
    _check_rng(rng)
    q, k = int(config.n_questions), int(config.n_answers)
    z = config.spread * rng.standard_normal((q, k))
    correct = rng.integers(0, k, size=q)
    z[np.arange(q), correct] += config.strength
    return Prior(logits=z, correct=correct.astype(np.int64))


# ------------------------------------------------------------------------------------------------------------
# Policies
# ------------------------------------------------------------------------------------------------------------


class TabularPolicy:
    """One free logit vector per question: ``params = {"z": (Q, K)}``.

    Mutable on purpose (its parameters are what training changes); copy with :meth:`copy`.
    """

    def __init__(self, logits: np.ndarray, dtype: type = np.float64) -> None:
        z = np.array(logits, dtype=dtype)
        if z.ndim != 2 or z.shape[1] < 2 or z.shape[0] < 1:
            raise ValueError(f"logits: expected shape (Q >= 1, K >= 2), got {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("logits: must be finite")
        self.params = {"z": z}

    @property
    def n_questions(self) -> int:
        return self.params["z"].shape[0]

    @property
    def n_answers(self) -> int:
        return self.params["z"].shape[1]

    def logits(self, idx: np.ndarray | None = None) -> np.ndarray:
        z = self.params["z"]
        return z if idx is None else z[idx]

    def backward(self, idx: np.ndarray | None, grad_logits: np.ndarray) -> dict[str, np.ndarray]:
        """Gradient of the objective in the parameters, given its gradient in ``logits(idx)``."""
        if idx is None:
            return {"z": grad_logits}
        g = np.zeros_like(self.params["z"])
        np.add.at(g, idx, grad_logits)
        return {"z": g}

    def copy(self) -> TabularPolicy:
        return TabularPolicy(self.params["z"].copy(), dtype=self.params["z"].dtype)


class SharedPolicy:
    r"""Logits with parameters shared across questions, so training some questions moves others.

    :math:`z_{qk}=b^0_{qk}+\phi_{qk}\cdot w+\delta_{qk}`, with fixed ``base`` :math:`b^0` (Q, K), fixed answer
    features :math:`\phi` (Q, K, D), trainable shared weights :math:`w` (D,) and, if ``per_question``, a trainable
    tabular term :math:`\delta` (Q, K) (starts at 0).
    """

    def __init__(
        self,
        base: np.ndarray,
        features: np.ndarray,
        w0: np.ndarray | None = None,
        *,
        per_question: bool = False,
    ) -> None:
        base = np.asarray(base, dtype=np.float64)
        features = np.asarray(features, dtype=np.float64)
        if base.ndim != 2 or base.shape[1] < 2 or base.shape[0] < 1:
            raise ValueError(f"base: expected shape (Q >= 1, K >= 2), got {base.shape}")
        if features.ndim != 3 or features.shape[:2] != base.shape:
            raise ValueError(
                f"features: expected shape {base.shape + ('D',)}, got {features.shape}"
            )
        d = features.shape[2]
        w = np.zeros(d) if w0 is None else np.array(w0, dtype=np.float64)
        if w.shape != (d,):
            raise ValueError(f"w0: expected shape ({d},), got {w.shape}")
        self.base, self.features = base, features
        self.params = {"w": w}
        if per_question:
            self.params["delta"] = np.zeros_like(base)

    @property
    def n_questions(self) -> int:
        return self.base.shape[0]

    @property
    def n_answers(self) -> int:
        return self.base.shape[1]

    def logits(self, idx: np.ndarray | None = None) -> np.ndarray:
        sl = slice(None) if idx is None else idx
        z = self.base[sl] + self.features[sl] @ self.params["w"]
        if "delta" in self.params:
            z = z + self.params["delta"][sl]
        return z

    def backward(self, idx: np.ndarray | None, grad_logits: np.ndarray) -> dict[str, np.ndarray]:
        sl = slice(None) if idx is None else idx
        grads = {"w": np.einsum("qkd,qk->d", self.features[sl], grad_logits)}
        if "delta" in self.params:
            g = np.zeros_like(self.params["delta"])
            if idx is None:
                g += grad_logits
            else:
                np.add.at(g, idx, grad_logits)
            grads["delta"] = g
        return grads

    def copy(self) -> SharedPolicy:
        out = SharedPolicy(self.base, self.features, self.params["w"].copy(), per_question=False)
        if "delta" in self.params:
            out.params["delta"] = self.params["delta"].copy()
        return out


# ------------------------------------------------------------------------------------------------------------
# Deterministic update rules
# ------------------------------------------------------------------------------------------------------------


def exact_tilt(logits: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    r"""One exact KL-regularised step with the reference refreshed: :math:`\pi'\propto\pi e^{r/\beta}`.

    Parameters
    ----------
    logits : (Q, K)
    reward : (Q, K) per-answer reward
    beta : float > 0

    Returns
    -------
    (Q, K) new logits ``logits + reward / beta``.

    >>> exact_tilt(np.zeros((1, 2)), np.array([[1.0, 0.0]]), 1.0).tolist()
    [[1.0, 0.0]]
    """
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta: must be > 0, got {beta}")
    logits, reward = np.asarray(logits), np.asarray(reward)
    if logits.shape != reward.shape:
        raise ValueError(f"reward: shape {reward.shape} differs from logits {logits.shape}")
    return logits + reward / beta


def onehot_argmax(p: np.ndarray) -> np.ndarray:
    """The population-majority reward (A1): 1 on each row's mode of ``p (Q, K)``, 0 elsewhere, (Q, K).

    >>> onehot_argmax(np.array([[0.2, 0.5, 0.3]])).tolist()
    [[0.0, 1.0, 0.0]]
    """
    r = np.zeros_like(p)
    r[np.arange(p.shape[0]), p.argmax(axis=1)] = 1.0
    return r


def expected_gradient(logits: np.ndarray, reward: np.ndarray) -> np.ndarray:
    r"""Exact gradient of :math:`\mathbb E_{a\sim\pi}[r(a)]` in the logits: :math:`\pi\odot(r-\pi\cdot r)`, (Q, K)."""
    logits, reward = np.asarray(logits), np.asarray(reward)
    if logits.shape != reward.shape:
        raise ValueError(f"reward: shape {reward.shape} differs from logits {logits.shape}")
    p = softmax(logits)
    return p * (reward - (p * reward).sum(axis=-1, keepdims=True))


# ------------------------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------------------------


def sample_counts(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    r"""Answer counts of ``n`` i.i.d. draws from each row of ``probs (Q, K)``: Multinomial(n, p_q), (Q, K) int.

    Exact inverse-CDF sampling without materialising rollouts: with uniforms :math:`u_j` and the row CDF
    :math:`F_k`, draw j falls in answer k iff :math:`F_{k-1}\le u_j<F_k`, so the cumulative count
    :math:`C_k=\#\{j:u_j<F_k\}` and ``counts = diff(C)``. ``probs`` may be unnormalised (rows are scaled by
    their total), which saves the softmax division. Rows of float32 ``probs`` are handled in float32.
    """
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] < 2:  # its own shape; sample_counts_runs checks n and rng
        raise ValueError(f"probs: expected shape (Q, K >= 2), got {p.shape}")
    return sample_counts_runs(p[None], n, [rng])[0]


def sample_counts_runs(probs: np.ndarray, n: int, rngs: list[np.random.Generator]) -> np.ndarray:
    """:func:`sample_counts` of R runs at once: ``probs (R, Q, K)``, run r's uniforms from ``rngs[r]`` (the draw
    one run alone makes), the counting done for all runs together; returns ``(R, Q, K)`` int counts, run r's
    equal to ``sample_counts(probs[r], n, rngs[r])``."""
    for rng in rngs:
        _check_rng(rng)
    if int(n) < 1:
        raise ValueError(f"n: need at least one rollout, got {n}")
    p = np.asarray(probs)
    if p.ndim != 3 or p.shape[2] < 2:
        raise ValueError(f"probs: expected shape (R, Q, K >= 2), got {p.shape}")
    if len(rngs) != p.shape[0]:
        raise ValueError(f"rngs: expected one generator per run ({p.shape[0]}), got {len(rngs)}")
    dtype = np.float32 if p.dtype == np.float32 else np.float64
    cdf = np.cumsum(p, axis=2, dtype=dtype)
    total = cdf[..., -1:].copy()
    cdf[..., -1] = np.inf  # the last answer takes every draw past the others (no rounding gap)
    u = np.stack([rng.random((p.shape[1], int(n)), dtype=dtype) for rng in rngs])
    u *= total
    below = np.zeros(p.shape, dtype=np.uint8 if n < 256 else np.int32)
    for j in range(int(n)):
        below += u[..., j : j + 1] < cdf
    counts = below.astype(np.int64)  # diff along the answers, prepending 0
    counts[..., 1:] -= below[..., :-1]
    return counts


def sample_rollouts(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` answer indices per row of ``probs (Q, K)``, (Q, n) int -- the slow, obvious sampler."""
    _check_rng(rng)
    if int(n) < 1:
        raise ValueError(f"n: need at least one rollout, got {n}")
    p = np.asarray(probs, dtype=np.float64)
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    cdf[:, -1] = np.inf
    u = rng.random((p.shape[0], int(n)))
    return (u[:, :, None] >= cdf[:, None, :]).sum(axis=2).astype(np.int64)


# ------------------------------------------------------------------------------------------------------------
# Sampled GRPO
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GRPOConfig:
    """Sampled-GRPO hyperparameters.

    Attributes
    ----------
    n_rollouts : int
        N rollouts per question (>= 1).
    lr : float
        Learning rate (> 0).
    optimizer : {"sgd", "adam"}
    normalize_std : bool
        GRPO (True) or Dr. GRPO (False) advantages.
    eps : float
        Added to the group std (veRL 1e-6).
    epochs : int
        Updates per sampled batch; > 1 makes the PPO ratio and clip matter.
    clip_eps : float or None
        PPO clip range (None: no clipping).
    kl_coef : float
        Coefficient of the exact KL(pi || pi_ref) penalty (0: none; the paper uses none).
    batch_size : int or None
        Questions per step (None: all).
    """

    n_rollouts: int = 8
    lr: float = 0.1
    optimizer: Literal["sgd", "adam"] = "sgd"
    normalize_std: bool = True
    eps: float = 1e-6
    epochs: int = 1
    clip_eps: float | None = 0.2
    kl_coef: float = 0.0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if int(self.n_rollouts) < 1:
            raise ValueError(f"n_rollouts: N must be >= 1, got {self.n_rollouts}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer: must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.eps < 0:
            raise ValueError(f"eps: must be >= 0, got {self.eps}")
        if int(self.epochs) < 1:
            raise ValueError(f"epochs: must be >= 1, got {self.epochs}")
        if self.clip_eps is not None and not self.clip_eps > 0:
            raise ValueError(f"clip_eps: must be > 0 or None, got {self.clip_eps}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef: must be >= 0, got {self.kl_coef}")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"batch_size: must be >= 1 or None, got {self.batch_size}")


class Optimizer:
    """Gradient *ascent* with SGD or Adam (Kingma & Ba, bias-corrected) over a dict of arrays."""

    def __init__(
        self, kind: Literal["sgd", "adam"], lr: float | np.ndarray, b1=0.9, b2=0.999, eps=1e-8
    ) -> None:
        if kind not in ("sgd", "adam"):
            raise ValueError(f"kind: must be 'sgd' or 'adam', got {kind!r}")
        self.kind, self.lr, self.b1, self.b2, self.eps = kind, lr, b1, b2, eps
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self._scratch: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        r"""One ascent step: SGD :math:`\theta \mathrel{+}= \eta g`; Adam :math:`m = \beta_1 m + (1-\beta_1) g`,
        :math:`v = \beta_2 v + (1-\beta_2) g^2`, :math:`\theta \mathrel{+}= \eta \hat m / (\sqrt{\hat v} + \epsilon)`
        with the bias-corrected :math:`\hat m, \hat v` (each product in this order, in place for arrays)."""
        self.t += 1
        for k, g in grads.items():
            if self.kind == "sgd":
                params[k] += self.lr * g
                continue
            m = self.m.setdefault(k, np.zeros_like(g))
            v = self.v.setdefault(k, np.zeros_like(g))
            if np.ndim(self.lr) or m.dtype != params[k].dtype or not m.ndim:
                m *= self.b1
                m += (1 - self.b1) * g
                v *= self.b2
                v += (1 - self.b2) * g * g
                mhat = m / (1 - self.b1**self.t)
                vhat = v / (1 - self.b2**self.t)
                params[k] += self.lr * mhat / (np.sqrt(vhat) + self.eps)
                continue
            # the same operations in the same order, into two scratch arrays (no temporaries)
            a, b = self._scratch.get(k, (None, None))
            if a is None or a.shape != m.shape:
                a, b = np.empty_like(m), np.empty_like(m)
                self._scratch[k] = (a, b)
            m *= self.b1
            np.multiply(g, 1 - self.b1, out=a)
            m += a
            v *= self.b2
            np.multiply(g, 1 - self.b2, out=a)
            a *= g
            v += a
            np.divide(m, 1 - self.b1**self.t, out=a)  # mhat
            np.divide(v, 1 - self.b2**self.t, out=b)  # vhat
            np.sqrt(b, out=b)
            b += self.eps
            a *= self.lr
            a /= b
            params[k] += a


def binary_count_advantages(
    n_pos: np.ndarray, n: int, *, normalize_std: bool, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages of the rewarded and unrewarded rollouts of groups with binary rewards, from counts.

    Group g has ``n_pos[g]`` rollouts with reward 1 out of ``n``; the rollouts are exchangeable, so the group is
    laid out as ones then zeros and passed to :func:`sharpen.grpo.group_advantages`. A group's advantages depend
    on its number of ones only, and ``group_advantages`` works group by group, so it is called once on the
    ``n + 1`` possible groups (cached) and each group takes its row: the same numbers.

    Returns
    -------
    a_pos, a_neg : (G,) advantages of a rewarded and of an unrewarded rollout.
    """
    n_pos = np.asarray(n_pos)
    dtype = np.float32 if n_pos.dtype == np.float32 else np.float64
    r = np.arange(n)[None, :] < n_pos[:, None]  # ones then zeros
    if r.size == 0 or not isinstance(normalize_std, bool | np.bool_) or not np.isscalar(eps):
        # no group, no rollout or a bad option: group_advantages says what is wrong
        adv = group_advantages(r.astype(dtype), normalize_std=normalize_std, eps=eps, unbiased=True)
        return adv[:, 0], adv[:, -1]
    adv = _binary_group_advantages(int(n), normalize_std, eps, np.dtype(dtype).name)
    ones = r.sum(axis=1)
    return adv[ones, 0], adv[ones, -1]


@functools.lru_cache(maxsize=64)
def _binary_group_advantages(n: int, normalize_std: bool, eps: float, dtype: str) -> np.ndarray:
    """``group_advantages`` of the groups of ``k`` ones then ``n - k`` zeros, k = 0..n: ``(n + 1, n)``, read-only."""
    r = (np.arange(n)[None, :] < np.arange(n + 1)[:, None]).astype(dtype)
    adv = np.asarray(group_advantages(r, normalize_std=normalize_std, eps=eps, unbiased=True))
    adv.setflags(write=False)
    return adv


def grpo_logit_grad(
    probs: np.ndarray,
    rollouts: np.ndarray,
    advantages: np.ndarray,
    *,
    old_probs: np.ndarray | None = None,
    clip_eps: float | None = None,
) -> np.ndarray:
    r"""Gradient in the logits of :math:`\frac1N\sum_i \min(\rho_iA_i,\mathrm{clip}(\rho_i)A_i)`, (G, K).

    With :math:`\rho_i=\pi(y_i)/\pi_{\rm old}(y_i)` the unclipped term's gradient is
    :math:`\rho_iA_i(e_{y_i}-\pi)`; a clipped term contributes 0. Without ``old_probs`` the ratio is 1
    (one on-policy update, where the clip is inactive).

    Parameters
    ----------
    probs : (G, K) current policy
    rollouts : (G, N) sampled answer indices
    advantages : (G, N)
    """
    g_, n = rollouts.shape
    w = np.asarray(advantages, dtype=np.float64).copy()
    if old_probs is not None:
        rows = np.arange(g_)[:, None]
        ratio = probs[rows, rollouts] / old_probs[rows, rollouts]
        if clip_eps is not None:
            clipped = ((w > 0) & (ratio > 1 + clip_eps)) | ((w < 0) & (ratio < 1 - clip_eps))
            w = np.where(clipped, 0.0, w)
        w = w * ratio
    per_answer = np.zeros_like(probs, dtype=np.float64)
    np.add.at(per_answer, (np.repeat(np.arange(g_), n), rollouts.ravel()), w.ravel())
    return (per_answer - w.sum(axis=1, keepdims=True) * probs) / n


def count_logit_grad(
    probs: np.ndarray, counts: np.ndarray, class_adv: np.ndarray, n: int
) -> np.ndarray:
    r"""On-policy GRPO gradient in the logits from counts: :math:`\frac1N(c\odot A - (\sum_a c_aA_a)\pi)`, (G, K).

    Exact when every rollout with answer a has the same advantage ``class_adv[g, a]``; the second term
    vanishes when the group advantages sum to zero (always, for centred advantages).
    """
    ca = counts * class_adv
    return (ca - ca.sum(axis=1, keepdims=True) * probs) / n


def majority_class_advantages(
    counts: np.ndarray, rng: np.random.Generator, *, normalize_std: bool, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-answer advantages ``(G, K)`` of the majority-voting reward, and the winners ``(G,)``.

    The winner is :func:`sharpen.answers.plurality_winners` (uniform tie-break = TTRL's first-seen rule in law).
    """
    winners = plurality_winners(counts, rng)
    n = int(counts[0].sum())
    rows = np.arange(counts.shape[0])
    c_win = np.where(winners >= 0, counts[rows, np.maximum(winners, 0)], 0)
    a_pos, a_neg = binary_count_advantages(c_win, n, normalize_std=normalize_std, eps=eps)
    adv = np.broadcast_to(a_neg[:, None], counts.shape).copy()
    ok = winners >= 0
    adv[rows[ok], winners[ok]] = a_pos[ok]
    return adv, winners
