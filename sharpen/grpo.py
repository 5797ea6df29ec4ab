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
  inf, empty or 0-d; ``eps`` not a finite number >= 0 (negative, NaN, inf, bool, str); ``normalize_std`` or
  ``unbiased`` not a bool.
* ``policy_loss``: ``logp``, ``old_logp``, ``advantages`` not floating torch tensors or holding NaN/inf
  anywhere (padding included: a NaN under the mask would still poison the sums); ``mask`` not a tensor or not
  0/1; ``logp`` not (B, T) and shapes that do not match (``logp, old_logp, mask`` (B, T); ``advantages`` (B,)
  or (B, T)); ``clip_eps`` / ``clip_eps_high`` not finite numbers >= 0; ``agg`` not a known mode (``mode:``).
* ``agg_loss``: ``mode`` unknown, ``loss_mat`` not a floating (B, T) tensor, ``mask`` not a 0/1 tensor of its
  shape; ``masked_mean``: ``x`` not a floating tensor, ``mask`` likewise, ``dim`` not None or an axis of
  ``x``; and (so ``agg_loss`` too) a ``mask`` selecting nothing (the mean would be NaN).
* ``kl_k3``: ``logp`` / ``ref_logp`` not floating tensors, or of different shapes. Values are not checked here
  (it is called on the inputs ``policy_loss`` has already checked): NaN in gives NaN out.

Values: finite input never gives NaN. Normalised advantages are finite (within :math:`\pm\sqrt N`; a
singleton group's :math:`r/(1+\epsilon)`): each group is normalised divided by a power of two near its
largest reward, so the variance neither overflows nor underflows. A Dr. GRPO advantage is :math:`\pm\infty`
only where :math:`r - \bar r` itself exceeds the output dtype's range (float16 rewards near 65504). In
``policy_loss`` the ratio saturates just below the float's max (log-ratios above ~88.6 in float32) instead of
overflowing, so a zero advantage never meets ``0 * inf``; the loss may be ``+inf`` where :math:`\rho|A|`
overflows, and is NaN-free while :math:`B\,T\,|A|(1 + \epsilon_{\rm hi})` stays within the float range (mind
float16's 65504). Masked-out positions never enter a sum (an ``inf`` there is ignored), and ``kl_k3`` is
``+inf``, not NaN, where ``ref_logp - logp`` overflows.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import numpy as np
import torch

from sharpen import _array
from sharpen.answers import _brief, _finite_float
from sharpen.rewards import _numeric

__all__ = ["agg_loss", "group_advantages", "kl_k3", "masked_mean", "policy_loss"]

LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]
_LOSS_AGGS = get_args(LossAgg)


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
    _check_bool("normalize_std", normalize_std)
    _check_bool("unbiased", unbiased)
    out_dtype = t.dtype if t.is_floating_point() else torch.float64
    r = t.to(torch.float64)
    n = r.shape[-1]
    if n == 1:  # veRL: singleton group -> mean 0, std 1
        adv = r / (1.0 + eps) if normalize_std else r.clone()
        return _array.like_input(adv.to(out_dtype), rewards)
    constant = r.amax(dim=-1, keepdim=True) == r.amin(dim=-1, keepdim=True)  # (G, 1)
    # Normalise r / 2^e, 2^e near each group's largest |r| (a power of two: exact), so that the
    # variance of huge rewards cannot overflow nor that of tiny ones underflow; eps is scaled alike.
    top = r.abs().amax(dim=-1, keepdim=True)
    scale = torch.ldexp(torch.ones_like(top), torch.frexp(top)[1] - 1)  # top = m 2^e: 2^(e-1)
    r = r / scale
    adv = r - r.mean(dim=-1, keepdim=True)
    if normalize_std:
        std = r.std(dim=-1, keepdim=True, correction=1 if unbiased else 0)
        adv = adv / torch.where(constant, 1.0, std + eps / scale)
    else:
        adv = adv * scale  # +-inf only where r - mean(r) itself exceeds the float range
    adv = torch.where(constant, 0.0, adv)
    return _array.like_input(adv.to(out_dtype), rewards)


def _reward_tensor(rewards: Any) -> torch.Tensor:
    """``rewards`` as a real torch tensor (input dtype kept), finite; clear errors otherwise."""
    if rewards is None:
        raise ValueError("rewards: required, got None")
    t = _numeric(rewards, "rewards")  # a real tensor, or a numpy array torch can take
    t = t if isinstance(t, torch.Tensor) else torch.from_numpy(t)
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError("rewards: contains NaN or inf")
    return t


def _check_bool(name: str, x: Any) -> None:
    if not isinstance(x, bool | np.bool_):
        raise ValueError(f"{name}: must be a bool, got {_brief(x)}")


def _nonnegative(name: str, x: Any) -> float:
    """``x`` as a finite float >= 0, else ``ValueError`` naming it."""
    v = _finite_float(x)
    if v is None or not v >= 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {_brief(x)}")
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

    ``x`` is a floating tensor, ``mask`` a 0/1 or bool tensor of its shape, ``dim`` None or an axis of
    ``x``. Masked-out values never enter the sums (an inf there does not make a NaN); the values of
    ``x`` are not checked (NaN in, NaN out). Raises ``ValueError`` when the mask selects nothing (the
    mean would be NaN), and for arguments outside this contract.
    """
    m = _mask_like("mask", mask, x, "x")
    if dim is not None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
            raise ValueError(f"dim: must be None or an int, got {_brief(dim)}")
        if not -x.ndim <= dim < max(x.ndim, 1):
            raise ValueError(f"dim: {int(dim)} is not an axis of x, of shape {tuple(x.shape)}")
        dim = int(dim)
    denom = m.sum() if dim is None else m.sum(dim=dim)
    if bool((denom == 0).any()):
        raise ValueError("mask: selects no element; the mean is undefined")
    selected = torch.where(m, x, torch.zeros_like(x))
    num = selected.sum() if dim is None else selected.sum(dim=dim)
    return num / denom.to(num.dtype)


def _mask_like(name: str, mask: Any, x: Any, x_name: str) -> torch.Tensor:
    """``mask`` as a bool tensor of ``x``'s shape (``x`` a floating tensor), else ``ValueError``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{x_name}: expected a floating torch.Tensor, got {_brief(x, 40)}")
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(mask).__name__}")
    if mask.shape != x.shape:
        raise ValueError(
            f"{name}: shape {tuple(mask.shape)} differs from {x_name}'s {tuple(x.shape)}"
        )
    if mask.is_complex():
        raise ValueError(f"{name}: must hold only 0/1 or booleans, got dtype {mask.dtype}")
    return _array.as_mask_tensor(mask, name)


def agg_loss(
    loss_mat: torch.Tensor, mask: torch.Tensor, mode: LossAgg = "token-mean"
) -> torch.Tensor:
    """Aggregate a (B, T) per-token loss into a scalar.

    ``token-mean``: mean over all valid tokens of the batch (veRL default, TRL "dapo");
    ``seq-mean-token-mean``: mean over tokens, then over sequences (original GRPO);
    ``seq-mean-token-sum``: sum over tokens, then mean over sequences.
    """
    if not isinstance(mode, str) or mode not in _LOSS_AGGS:
        raise ValueError(f"mode: must be one of {', '.join(_LOSS_AGGS)}; got {_brief(mode)}")
    m = _mask_like("mask", mask, loss_mat, "loss_mat")
    if loss_mat.ndim != 2:
        raise ValueError(f"loss_mat: expected shape (B, T), got {tuple(loss_mat.shape)}")
    if mode == "token-mean":
        return masked_mean(loss_mat, m)
    if mode == "seq-mean-token-mean":
        return masked_mean(loss_mat, m, dim=1).mean()
    return torch.where(m, loss_mat, torch.zeros_like(loss_mat)).sum(dim=1).mean()


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""Per-token k3 estimator of :math:`\mathrm{KL}(\pi_\theta\Vert\pi_{\rm ref})` on samples from
    :math:`\pi_\theta`: :math:`e^{\Delta}-\Delta-1` with :math:`\Delta=\log\pi_{\rm ref}-\log\pi_\theta`
    (veRL's ``low_var_kl``, unclamped). Always :math:`\ge 0`.

    Parameters
    ----------
    logp, ref_logp : (B, T) tensors of sampled-token log-probabilities.
    """
    for name, x in (("logp", logp), ("ref_logp", ref_logp)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"{name}: expected a floating torch.Tensor, got {_brief(x, 40)}")
    if logp.shape != ref_logp.shape:
        raise ValueError(
            f"ref_logp: shape {tuple(ref_logp.shape)} differs from logp {tuple(logp.shape)}"
        )
    delta = ref_logp - logp
    k3 = torch.expm1(delta) - delta
    # delta = +inf (a difference beyond the float range): k3 is +inf, not inf - inf = NaN
    return torch.where(torch.isposinf(delta), delta, k3)


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
    if logp.ndim != 2:
        raise ValueError(f"logp: expected shape (B, T), got {tuple(logp.shape)}")
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
    mask = _mask_like("mask", mask, logp, "logp")
    # Saturate the ratio below the float's max instead of overflowing to inf, where 0 * inf (a zero
    # advantage) would make the loss NaN. Only log-ratios above ~88.6 (float32) are affected.
    log_max = math.log(torch.finfo(logp.dtype).max) - 0.1  # margin: the clamp value is rounded
    log_ratio = (logp - old_logp.detach()).clamp(max=log_max)
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    big = torch.finfo(ratio.dtype).max  # clip ranges beyond the float range clip nothing
    clipped = ratio.clamp(max(1.0 - clip_eps, -big), min(1.0 + hi, big)) * advantages
    loss_mat = -torch.minimum(unclipped, clipped)
    loss = agg_loss(loss_mat, mask, agg)
    with torch.no_grad():
        clip_frac = masked_mean((clipped < unclipped).to(logp.dtype), mask).item()
        approx_kl = masked_mean(kl_k3(logp.detach(), old_logp.detach()), mask).item()
    return loss, {"clip_frac": clip_frac, "approx_kl": approx_kl}
