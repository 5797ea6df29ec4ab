r"""GRPO math: group-normalised advantages, the clipped surrogate loss, the k3 KL estimator.

Pure functions over arrays; the training loops in ``empirical/`` and ``sim/`` import them.

Advantage (veRL / TRL):

.. math:: A_{g,i} = \frac{r_{g,i} - \bar r_g}{s_g + \epsilon},

with :math:`s_g` the *unbiased* (Bessel-corrected) group standard deviation by default, as both veRL
(:math:`\epsilon=10^{-6}`) and TRL (:math:`\epsilon=10^{-4}`) use; ``normalize_std=False`` gives Dr. GRPO
(:math:`A=r-\bar r`). A zero-variance group (e.g. every rollout agrees with the majority) gets :math:`A=0`:
no learning signal. A singleton group follows veRL (mean 0, std 1, so :math:`A=r/(1+\epsilon)`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from sharpen import _array

__all__ = ["agg_loss", "group_advantages", "kl_k3", "masked_mean", "policy_loss"]

LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]


def group_advantages(
    rewards: Any, *, normalize_std: bool = True, eps: float = 1e-6, unbiased: bool = True
) -> Any:
    r"""Group-normalised advantages along the last axis.

    Parameters
    ----------
    rewards : (G, N) array or tensor (any leading shape; the group is the last axis)
        Scalar reward of each of the N rollouts of each of the G prompts.
    normalize_std : bool
        Divide by the group std (GRPO) or not (Dr. GRPO).
    eps : float
        Added to the std (veRL 1e-6, TRL 1e-4).
    unbiased : bool
        Bessel-corrected std (veRL, TRL) or the biased ``ddof=0`` one.

    Returns
    -------
    (G, N), same library and float dtype as ``rewards``.

    Examples
    --------
    >>> import numpy as np
    >>> group_advantages(np.array([[1.0, 1, 1, 0]])).round(3).tolist()
    [[0.5, 0.5, 0.5, -1.5]]
    """
    t = _array.as_float_tensor(rewards, "rewards")
    if t.ndim < 1 or t.numel() == 0:
        raise ValueError(f"rewards: expected a non-empty (G, N) array, got shape {tuple(t.shape)}")
    if eps < 0:
        raise ValueError(f"eps: must be >= 0, got {eps}")
    n = t.shape[-1]
    if n == 1:  # veRL: singleton group -> mean 0, std 1
        adv = t / (1.0 + eps) if normalize_std else t.clone()
        return _array.like_input(adv, rewards)
    mean = t.mean(dim=-1, keepdim=True)
    adv = t - mean
    if normalize_std:
        std = t.std(dim=-1, keepdim=True, correction=1 if unbiased else 0)
        adv = adv / (std + eps)
    return _array.like_input(adv, rewards)


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


def agg_loss(loss_mat: torch.Tensor, mask: torch.Tensor, mode: LossAgg = "token-mean") -> torch.Tensor:
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
    raise ValueError(f"mode: must be one of token-mean, seq-mean-token-mean, seq-mean-token-sum; got {mode!r}")


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""Per-token k3 estimator of :math:`\mathrm{KL}(\pi_\theta\Vert\pi_{\rm ref})` on samples from
    :math:`\pi_\theta`: :math:`e^{\Delta}-\Delta-1` with :math:`\Delta=\log\pi_{\rm ref}-\log\pi_\theta`
    (veRL's ``low_var_kl``, unclamped). Always :math:`\ge 0`.

    Parameters
    ----------
    logp, ref_logp : (B, T) tensors of sampled-token log-probabilities.
    """
    if logp.shape != ref_logp.shape:
        raise ValueError(f"ref_logp: shape {tuple(ref_logp.shape)} differs from logp {tuple(logp.shape)}")
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
    logp : (B, T) tensor (with grad) of current sampled-token log-probabilities.
    old_logp : (B, T) tensor, the same under the policy that sampled (no grad).
    advantages : (B,) or (B, T) tensor; a (B,) advantage is broadcast over the response tokens.
    mask : (B, T) bool/0-1 tensor of response tokens.
    clip_eps, clip_eps_high : float
        Lower/upper clip range (``clip_eps_high`` defaults to ``clip_eps``; DAPO uses a larger one).
    agg : str
        Loss aggregation, see :func:`agg_loss`.

    Returns
    -------
    loss : scalar tensor
    stats : dict with ``clip_frac`` and ``approx_kl`` (k3 of old vs new on the sampled tokens), floats.
    """
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(
            f"logp, old_logp, mask: shapes must match, got {tuple(logp.shape)}, "
            f"{tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    if advantages.ndim == 1:
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(f"advantages: expected ({logp.shape[0]},), got {tuple(advantages.shape)}")
        advantages = advantages.unsqueeze(1)
    elif advantages.shape != logp.shape:
        raise ValueError(f"advantages: expected (B,) or (B, T), got {tuple(advantages.shape)}")
    if clip_eps < 0 or (clip_eps_high is not None and clip_eps_high < 0):
        raise ValueError("clip_eps: must be >= 0")
    hi = clip_eps if clip_eps_high is None else clip_eps_high
    mask = mask.to(torch.bool)
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

