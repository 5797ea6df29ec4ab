r"""The failure-mode metrics of a batch of rollouts, as the training loop logs them.

One function, :func:`behaviour_metrics`: responses (token ids), their parsed answers and -- for the training
batch -- the sampled tokens' log-probabilities under the policy and the frozen initial policy, in; a flat
``{name: float}`` of batch summaries out, every name under ``prefix`` (default ``behaviour/``, clear of the
TTRL names the loop already logs). The math is :mod:`sharpen.failure_metrics`; this module only converts the
trainer's tensors and summarises.

=============================  ==========================================================================
key (after ``prefix``)         value
=============================  ==========================================================================
``length_mean``, ``length_max``  tokens per response (end token included), mean and largest
``length_p10/p50/p90``         length quantiles (``quantiles``)
``truncated``                  share cut by the length cap (no end token; needs ``eos_id``)
``repeat_{ngram}gram``         mean share of repeated ``ngram``-grams (seq-rep-n)
``longest_repeat_mean/max``    longest stretch of back-to-back copies of one unit (<= ``max_period`` tokens)
``parse_rate``                 share of responses with a parseable answer
``distinct_answers``           distinct parsed answers per group of ``n``, mean over groups
``answer_follows_steps``       share of parsed answers equal to the one their own steps imply
                               (needs ``implied_answers``, from ``Task.implied``)
``kl_seq_k3``                  k3 estimate of the sequence KL to the initial policy, mean over responses
``kl_token_k3``                the same per token (sum over tokens / tokens; the loop's ``kl_to_initial``)
=============================  ==========================================================================

The KL keys appear only when both ``logprobs`` and ``ref_logprobs`` are given; they are of the *sampling*
distribution (the rollout temperature, ``top_p = 1``), so they belong to the training batch, not to held-out
samples drawn at another temperature.

Example
-------
>>> m = behaviour_metrics([[5, 6, 2], [5, 5, 5]], ["7", None], n=2, eos_id=2)
>>> m["behaviour/length_mean"], m["behaviour/truncated"], m["behaviour/parse_rate"], m["behaviour/distinct_answers"]
(3.0, 0.5, 0.5, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sharpen import failure_metrics as fm

__all__ = ["behaviour_metrics"]


def _numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or an array-like as a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.dtype.is_floating_point:
            x = x.double()
        return x.numpy()
    return np.asarray(x)


def _padded(responses: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Ragged token-id lists (``Generation.response_ids``) as right-padded ``(B, T)`` tokens and mask."""
    rows = [list(r) for r in responses]
    width = max((len(r) for r in rows), default=0)
    tokens = np.full((len(rows), max(width, 1)), pad_id, dtype=np.int64)
    mask = np.zeros(tokens.shape, dtype=bool)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
        mask[i, : len(r)] = True
    return tokens, mask


def _quantiles(values: np.ndarray, qs: list[float]) -> list[float]:
    """``[float(np.quantile(values, q)) for q in qs]`` in one ``np.quantile`` call (the same values, a
    quarter of the cost)."""
    return np.quantile(values, qs).tolist() if qs else []


def behaviour_metrics(
    responses: Any,
    answers: Sequence[str | None],
    *,
    n: int,
    mask: Any | None = None,
    eos_id: int | None = None,
    logprobs: Any | None = None,
    ref_logprobs: Any | None = None,
    implied_answers: Sequence[str | None] | None = None,
    ngram: int = 4,
    max_period: int = 32,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    prefix: str = "behaviour/",
    pad_id: int = 0,
) -> dict[str, float]:
    """Length, repetition, parse rate, answer diversity and KL to the initial policy of one batch.

    Parameters
    ----------
    responses : ``(B, T)`` token ids (torch tensor or array) with ``mask``, or ``B`` token-id lists
        (``Generation.response_ids``; then ``mask`` must be None and is built, padding with ``pad_id``).
        Rows are grouped in consecutive blocks of ``n`` (row ``i`` answers question ``i // n``).
    answers : ``B`` parsed answers, ``None`` where unparseable.
    mask : ``(B, T)`` right-padded 0/1 response mask (the trainer's ``batch.mask``), end token included.
    eos_id : the end token; gives ``truncated``.
    logprobs, ref_logprobs : ``(B, T)`` log-probabilities of the sampled tokens under the policy that sampled
        them and under the initial policy, at the rollout temperature; give ``kl_seq_k3`` and ``kl_token_k3``.
    implied_answers : ``B`` answers that each response's reasoning implies (None where it implies none),
        e.g. ``[task.implied(t) for t in texts]`` (:attr:`empirical.tasks.Task.implied`); gives
        ``answer_follows_steps`` (NaN when no answer parses).
    ngram, max_period, quantiles : see :func:`sharpen.failure_metrics.repeated_ngram_share`,
        :func:`~sharpen.failure_metrics.longest_repeat` and the length quantiles (``p10`` = 0.1).

    Returns
    -------
    ``{prefix + key: float}``, the keys of the module docstring.
    """
    if mask is None:
        if hasattr(responses, "shape"):
            raise ValueError("mask: required when responses is a (B, T) array")
        tokens, m = _padded(responses, pad_id)
    else:
        tokens, m = _numpy(responses), _numpy(mask)
    answers = list(answers)
    if len(answers) != tokens.shape[0]:
        raise ValueError(
            f"answers: expected {tokens.shape[0]} (one per response), got {len(answers)}"
        )
    lengths = fm.response_lengths(m)
    longest = fm.longest_repeat(tokens, m, max_period=max_period)
    quantiles = list(quantiles)
    out = {
        "length_mean": float(lengths.mean()),
        "length_max": float(lengths.max()),
        **{
            f"length_p{round(100 * q)}": v
            for q, v in zip(quantiles, _quantiles(lengths, quantiles), strict=True)
        },
        f"repeat_{ngram}gram": float(fm.repeated_ngram_share(tokens, m, n=ngram).mean()),
        "longest_repeat_mean": float(longest.mean()),
        "longest_repeat_max": float(longest.max()),
        "parse_rate": fm.parse_rate(answers),
        "distinct_answers": float(fm.distinct_answers(answers, n=n).mean()),
    }
    if eos_id is not None:
        out["truncated"] = float(fm.truncated(tokens, m, eos_id=eos_id).mean())
    if implied_answers is not None:
        implied = list(implied_answers)
        if len(implied) != len(answers):
            raise ValueError(f"implied_answers: expected {len(answers)}, got {len(implied)}")
        pairs = [(a, i) for a, i in zip(answers, implied, strict=True) if a is not None]
        out["answer_follows_steps"] = (
            float(np.mean([a == i for a, i in pairs])) if pairs else float("nan")
        )
    if (logprobs is None) != (ref_logprobs is None):
        raise ValueError("ref_logprobs: give both logprobs and ref_logprobs, or neither")
    if logprobs is not None:
        seq = fm.sequence_kl(_numpy(logprobs), _numpy(ref_logprobs), m)
        out["kl_seq_k3"] = float(seq.mean())
        out["kl_token_k3"] = float(seq.sum() / max(int(lengths.sum()), 1))
    return {prefix + k: v for k, v in out.items()}
