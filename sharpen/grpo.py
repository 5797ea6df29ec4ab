r"""GRPO math: group-normalised advantages, the clipped surrogate loss, the k3 KL estimator.

Pure functions over arrays; the training loops in ``empirical/`` and ``sim/`` import them.

Advantage (veRL / TRL):

.. math:: A_{g,i} = \frac{r_{g,i} - \bar r_g}{s_g + \epsilon},

with :math:`s_g` the *unbiased* (Bessel-corrected) group standard deviation by default, as both veRL
(:math:`\epsilon=10^{-6}`) and TRL (:math:`\epsilon=10^{-4}`) use; ``normalize_std=False`` gives Dr. GRPO
(:math:`A=r-\bar r`). A zero-variance group (e.g. every rollout agrees with the majority) gets :math:`A=0`
exactly, for every :math:`\epsilon \ge 0` and input dtype (statistics in float64, constant groups detected
exactly): no learning signal. A singleton group follows veRL (mean 0, std 1, so :math:`A=r/(1+\epsilon)`).

Bad input
---------
Every check raises ``ValueError`` with a one-line message ``name: problem`` naming the argument:

* ``group_advantages``: ``rewards`` None, not real numbers (str/object/complex dtype, ragged lists), NaN or
  inf, empty or 0-d; ``eps`` not a finite number >= 0 (negative, NaN, inf, bool, str).
* ``policy_loss``: ``logp``, ``old_logp``, ``advantages`` not floating torch tensors or holding NaN/inf
  anywhere (padding included: a NaN under the mask would still poison the sums); ``mask`` not a tensor or not
  0/1; shapes that do not match (``logp, old_logp, mask`` (B, T); ``advantages`` (B,) or (B, T));
  ``clip_eps`` / ``clip_eps_high`` not finite numbers >= 0; ``agg`` not a known mode.
* ``agg_loss``: ``mode`` unknown; ``masked_mean`` (and so ``agg_loss``): ``mask`` selecting nothing (the mean
  would be NaN).
* ``kl_k3``: ``ref_logp`` of another shape than ``logp``. Values are not checked here (it is called on the
  inputs ``policy_loss`` has already checked): NaN in gives NaN out.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch

from sharpen import _array

__all__ = ["agg_loss", "group_advantages", "kl_k3", "masked_mean", "policy_loss"]

LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]


def group_advantages(
    rewards: Any, *, normalize_std: bool = True, eps: float = 1e-6, unbiased: bool = True
) -> Any:
    r"""Group-normalised advantages along the last axis.

    .. math:: A_{g,i} = \frac{r_{g,i} - \bar r_g}{s_g + \epsilon}, \qquad A_{g,i} = 0
              \text{ when } r_{g,1} = \dots = r_{g,N}.

    The group statistics are computed in float64 whatever the input dtype, and a constant group
    is detected exactly (max = min), so it gets exactly 0 for every ``eps >= 0`` (including
    ``eps = 0``, where the formula would be 0/0) and every dtype (in float32 the mean of equal
    values is not always equal to them: the formula alone would give spurious advantages).

    Parameters
    ----------
    rewards : (G, N) array or tensor (any leading shape; the group is the last axis)
        Scalar reward of each of the N rollouts of each of the G prompts; real numbers (bool,
        integer or float), finite.
    normalize_std : bool
        Divide by the group std (GRPO) or not (Dr. GRPO).
    eps : float >= 0
        Added to the std (veRL 1e-6, TRL 1e-4).
    unbiased : bool
        Bessel-corrected std (veRL, TRL) or the biased ``ddof=0`` one.

    Returns
    -------
    (G, N), same library (and device) as ``rewards``; its float dtype (float16, bfloat16,
    float32, float64), float64 for bool/integer rewards.

    Examples
    --------
    >>> import numpy as np
    >>> group_advantages(np.array([[1.0, 1, 1, 0]])).round(3).tolist()
    [[0.5, 0.5, 0.5, -1.5]]
    >>> group_advantages(np.ones((1, 3)), eps=0.0).tolist()  # zero variance: no signal
    [[0.0, 0.0, 0.0]]
    """
    t = _reward_tensor(rewards)
    if t.ndim < 1 or t.numel() == 0:
        raise ValueError(f"rewards: expected a non-empty (G, N) array, got shape {tuple(t.shape)}")
    eps = _nonnegative("eps", eps)
    out_dtype = t.dtype if t.is_floating_point() else torch.float64
    r = t.to(torch.float64)
    n = r.shape[-1]
    if n == 1:  # veRL: singleton group -> mean 0, std 1
        adv = r / (1.0 + eps) if normalize_std else r.clone()
        return _array.like_input(adv.to(out_dtype), rewards)
    constant = r.amax(dim=-1, keepdim=True) == r.amin(dim=-1, keepdim=True)  # (G, 1)
    adv = r - r.mean(dim=-1, keepdim=True)
    if normalize_std:
        std = r.std(dim=-1, keepdim=True, correction=1 if unbiased else 0)
        adv = adv / torch.where(constant, 1.0, std + eps)
    adv = torch.where(constant, 0.0, adv)
    return _array.like_input(adv.to(out_dtype), rewards)


def _reward_tensor(rewards: Any) -> torch.Tensor:
    """``rewards`` as a real torch tensor (input dtype kept), finite; clear errors otherwise."""
    if rewards is None:
        raise ValueError("rewards: required, got None")
    if isinstance(rewards, torch.Tensor):
        t = rewards
    else:
        try:
            a = np.asarray(rewards)
        except (TypeError, ValueError) as exc:  # ragged lists
            raise ValueError(f"rewards: expected a rectangular array of numbers ({exc})") from exc
        if a.dtype.kind not in "biuf":
            raise ValueError(f"rewards: expected real numbers, got dtype {a.dtype}")
        t = torch.from_numpy(a)
    if t.is_complex():
        raise ValueError(f"rewards: expected real numbers, got dtype {t.dtype}")
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError("rewards: contains NaN or inf")
    return t


def _nonnegative(name: str, x: Any) -> float:
    """``x`` as a finite float >= 0, else ``ValueError`` naming it."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: must be a finite number >= 0, got {x!r}")
    v = float(x)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name}: must be a finite number >= 0, got {v}")
    return v


def _finite_tensor(name: str, x: Any) -> torch.Tensor:
    """``x`` unchanged if it is a floating torch tensor with only finite values."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating tensor, got dtype {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or inf")
    return x


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is true (all of them, or along ``dim``).

    Raises ``ValueError`` when the mask selects nothing (the mean would be NaN).
    """
    m = mask.to(x.dtype)
    denom = m.sum() if dim is None else m.sum(dim=dim)
    if bool((denom == 0).any()):
        raise ValueError("mask: selects no element; the mean is undefined")
    num = (x * m).sum() if dim is None else (x * m).sum(dim=dim)
    return num / denom


def agg_loss(
    loss_mat: torch.Tensor, mask: torch.Tensor, mode: LossAgg = "token-mean"
) -> torch.Tensor:
    """Aggregate a (B, T) per-token loss into a scalar.

    ``token-mean``: mean over all valid tokens of the batch (veRL default, TRL "dapo");
    ``seq-mean-token-mean``: mean over tokens, then over sequences (original GRPO);
    ``seq-mean-token-sum``: sum over tokens, then mean over sequences.
    """
    if mode == "token-mean":
        return masked_mean(loss_mat, mask)
    if mode == "seq-mean-token-mean":
        return masked_mean(loss_mat, mask, dim=1).mean()
    if mode == "seq-mean-token-sum":
        return (loss_mat * mask.to(loss_mat.dtype)).sum(dim=1).mean()
    raise ValueError(
        f"mode: must be one of token-mean, seq-mean-token-mean, seq-mean-token-sum; got {mode!r}"
    )


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""Per-token k3 estimator of :math:`\mathrm{KL}(\pi_\theta\Vert\pi_{\rm ref})` on samples from
    :math:`\pi_\theta`: :math:`e^{\Delta}-\Delta-1` with :math:`\Delta=\log\pi_{\rm ref}-\log\pi_\theta`
    (veRL's ``low_var_kl``, unclamped). Always :math:`\ge 0`.

    Parameters
    ----------
    logp, ref_logp : (B, T) tensors of sampled-token log-probabilities.
    """
    if logp.shape != ref_logp.shape:
        raise ValueError(
            f"ref_logp: shape {tuple(ref_logp.shape)} differs from logp {tuple(logp.shape)}"
        )
    delta = ref_logp - logp
    return torch.expm1(delta) - delta


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    agg: LossAgg = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    r"""PPO/GRPO clipped surrogate loss.

    .. math::

        \ell_t = -\min\big(\rho_t A,\ \mathrm{clip}(\rho_t, 1-\epsilon_{\rm lo}, 1+\epsilon_{\rm hi}) A\big),
        \qquad \rho_t = e^{\log\pi_\theta(y_t) - \log\pi_{\rm old}(y_t)},

    aggregated by :func:`agg_loss`. With one on-policy update per batch :math:`\rho_t=1` and the clip is inactive.

    Parameters
    ----------
    logp : (B, T) float tensor (with grad) of current sampled-token log-probabilities.
    old_logp : (B, T) float tensor, the same under the policy that sampled (no grad).
    advantages : (B,) or (B, T) float tensor; a (B,) advantage is broadcast over the response
        tokens. These three must be finite everywhere, padding included (a NaN at a padded
        position would still poison the sums): fill padding with 0.
    mask : (B, T) bool/0-1 tensor of response tokens.
    clip_eps, clip_eps_high : float >= 0
        Lower/upper clip range (``clip_eps_high`` defaults to ``clip_eps``; DAPO uses a larger one).
    agg : str
        Loss aggregation, see :func:`agg_loss`.

    Returns
    -------
    loss : scalar tensor
    stats : dict with ``clip_frac`` and ``approx_kl`` (k3 of old vs new on the sampled tokens), floats.
    """
    _finite_tensor("logp", logp)
    _finite_tensor("old_logp", old_logp)
    _finite_tensor("advantages", advantages)
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask: expected a torch.Tensor, got {type(mask).__name__}")
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(
            f"logp, old_logp, mask: shapes must match, got {tuple(logp.shape)}, "
            f"{tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    if advantages.ndim == 1:
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(
                f"advantages: expected ({logp.shape[0]},), got {tuple(advantages.shape)}"
            )
        advantages = advantages.unsqueeze(1)
    elif advantages.shape != logp.shape:
        raise ValueError(f"advantages: expected (B,) or (B, T), got {tuple(advantages.shape)}")
    clip_eps = _nonnegative("clip_eps", clip_eps)
    hi = clip_eps if clip_eps_high is None else _nonnegative("clip_eps_high", clip_eps_high)
    mask = _array.as_mask_tensor(mask, "mask")
    log_ratio = logp - old_logp.detach()
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + hi) * advantages
    loss_mat = -torch.minimum(unclipped, clipped)
    loss = agg_loss(loss_mat, mask, agg)
    with torch.no_grad():
        clip_frac = masked_mean((clipped < unclipped).to(logp.dtype), mask).item()
        approx_kl = masked_mean(kl_k3(logp.detach(), old_logp.detach()), mask).item()
    return loss, {"clip_frac": clip_frac, "approx_kl": approx_kl}
