r"""Exact answer distributions of a causal LM over a list of candidate answers, by teacher forcing.

:math:`\log\pi(a\mid q)=\sum_{t}\log\mathrm{softmax}(z_t/\tau)[a_t]+\log\mathrm{softmax}(z_{|a|}/\tau)[\mathrm{eos}]`
for the token ids :math:`a_1..a_{|a|}` of candidate :math:`a` after the rendered prompt of :math:`q`, at the
rollout temperature :math:`\tau` -- the probability that the sampler (top-p = 1) writes exactly :math:`a` and
stops. Every (question, candidate) pair is one row of the trainer's own teacher-forced pass
(:func:`empirical.policy.response_logits`): each prompt runs once, its KV cache is shared by its candidates,
and the candidates' tokens run in one batched no-grad forward pass.

:func:`exact_probe` adds :func:`sharpen.exact.answer_summary` on top: the exact mode, its mass, the mass of
the initial mode, answer entropy, expected accuracy and the vote's probability of returning the mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from empirical.policy import pack, response_logits
from sharpen.exact import AnswerSummary, answer_summary

__all__ = ["candidate_logprobs", "candidate_ids", "exact_probe", "label_probs"]


def candidate_ids(tokenizer, candidates: Sequence[str], eos_id: int) -> list[list[int]]:
    """Token ids of each candidate followed by ``eos_id`` (no special tokens added)."""
    out = []
    for c in candidates:
        ids = tokenizer(c, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"candidates: {c!r} has no tokens")
        out.append(list(ids) + [eos_id])
    return out


@torch.no_grad()
def candidate_logprobs(
    model,
    prompt_ids: Sequence[Sequence[int]],
    cand_ids: Sequence[Sequence[int]],
    *,
    temperature: float = 1.0,
    pad_id: int = 0,
    max_rows_per_pass: int = 4096,
) -> np.ndarray:
    r"""``(Q, C)`` float64 array of :math:`\log\pi(\text{candidate}\mid\text{prompt})` at ``temperature``.

    ``prompt_ids``: Q token-id lists (as the sampler sees them); ``cand_ids``: C token-id lists, each ending in
    the end token. The rows (question, candidate) go through the trainer's own teacher-forced pass
    (:func:`empirical.policy.response_logits`: each prompt runs once and its KV cache is shared by its C
    candidates), at most ``max_rows_per_pass`` rows at a time.
    """
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0 for a sampling distribution, got {temperature}")
    q, c = len(prompt_ids), len(cand_ids)
    out = np.zeros((q, c))
    if not q or not c:
        return out
    device = next(model.parameters()).device
    per_pass = max(1, max_rows_per_pass // c)
    for start in range(0, q, per_pass):
        block = range(start, min(q, start + per_pass))
        batch = pack([prompt_ids[i] for i in block for _ in range(c)], list(cand_ids) * len(block), pad_id,
                     device)  # fmt: skip
        logp = torch.log_softmax(
            response_logits(model, batch).double() / temperature, dim=-1
        )  # (B, T, V)
        token_lp = logp.gather(-1, batch.tokens[..., None])[..., 0].masked_fill(~batch.mask, 0.0)
        out[start : start + len(block)] = token_lp.sum(-1).reshape(len(block), c).cpu().numpy()
    return out


@torch.no_grad()
def label_probs(
    model,
    prompt_ids: Sequence[Sequence[int]],
    label_ids: Sequence[Sequence[int]],
    *,
    temperature: float = 1.0,
    pad_id: int = 0,
    max_rows_per_pass: int = 4096,
) -> np.ndarray:
    r"""``(Q,)`` float64 :math:`\pi(y_i\mid q_i)` at ``temperature``: the probability that one sample of prompt
    ``i`` is exactly its label ``i`` (token ids ending in the end token) -- the expected accuracy of one sample,
    with no sampling noise. One teacher-forced row per question, ``max_rows_per_pass`` rows at a time.
    """
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0 for a sampling distribution, got {temperature}")
    if len(prompt_ids) != len(label_ids):
        raise ValueError(
            f"label_ids: need one per prompt, got {len(label_ids)} for {len(prompt_ids)} prompts"
        )
    out = np.zeros(len(prompt_ids))
    device = next(model.parameters()).device
    for start in range(0, len(prompt_ids), max_rows_per_pass):
        rows = slice(start, min(len(prompt_ids), start + max_rows_per_pass))
        batch = pack(prompt_ids[rows], label_ids[rows], pad_id, device)
        logp = torch.log_softmax(response_logits(model, batch).double() / temperature, dim=-1)
        token_lp = logp.gather(-1, batch.tokens[..., None])[..., 0].masked_fill(~batch.mask, 0.0)
        out[rows] = token_lp.sum(-1).exp().cpu().numpy()
    return out


def exact_probe(
    model,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    candidates: Sequence[str],
    *,
    temperature: float,
    eos_id: int,
    labels: Sequence[str | None] | None = None,
    initial_majority: Sequence[str | None] | None = None,
    n_votes: int | None = None,
    pad_id: int = 0,
) -> AnswerSummary:
    """Exact answer distribution of each prompt over ``candidates``, summarised (:func:`answer_summary`).

    ``labels`` (canonical answers) give the expected accuracy; ``initial_majority`` (answers, None where
    unknown) the mass of each question's initial mode; ``n_votes`` the vote's probability of the mode.
    """
    cands = list(candidates)
    index = {a: i for i, a in enumerate(cands)}
    logp = candidate_logprobs(
        model,
        prompt_ids,
        candidate_ids(tokenizer, cands, eos_id),
        temperature=temperature,
        pad_id=pad_id,
    )
    probs = np.exp(logp)
    # float rounding can push a row a hair above 1 when nearly all mass is on the list
    probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1.0)

    def indices(answers):
        return (
            None
            if answers is None
            else np.array([index.get(a, -1) for a in answers], dtype=np.int64)
        )

    return answer_summary(
        probs,
        cands,
        initial_majority=indices(initial_majority),
        correct=indices(labels),
        n_votes=n_votes,
    )
