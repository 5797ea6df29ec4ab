"""The policy's passes: the shared-prompt forward equals full rows, and the KV-cached sampler draws from the
right distribution (greedy = ``generate``'s greedy; sampled log-probs = a fresh forward's; nucleus frequencies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirical.policy import left_pad, pack, pick_tokens, positions, response_logits, sample
from empirical.tiny import EOS_ID, PAD_ID, build_tiny_model, build_tokenizer
from sharpen.rewards import token_logprobs


def full_row_logits(model, batch) -> torch.Tensor:
    """The plain way: every row's prompt + response through the model, logits at ``P-1 .. P+T-2``."""
    ids, attn = batch.sequences()
    logits = model(input_ids=ids, attention_mask=attn, position_ids=positions(attn)).logits
    return logits[:, batch.prompt_ids.shape[1] - 1 : -1]


def random_batch(seed: int, n_prompts: int = 5, n: int = 3):
    rng = np.random.default_rng(seed)
    prompts = [[1] + rng.integers(4, 50, rng.integers(1, 7)).tolist() for _ in range(n_prompts)]
    responses = [rng.integers(4, 50, rng.integers(1, 6)).tolist() for _ in range(n_prompts * n)]
    for i in range(1, len(responses), 2):  # repeats, as a sharpened policy samples them
        if rng.random() < 0.5:
            responses[i] = list(responses[i - 1])
    return pack([p for p in prompts for _ in range(n)], responses, PAD_ID)


@pytest.mark.parametrize("seed", [0, 1])
def test_shared_prompt_forward_equals_full_rows_with_gradients(seed):
    """Prompts once, repeated rows once: the same logits and the same gradients as every full row."""
    model = build_tiny_model(seed=seed).train()
    batch = random_batch(seed)
    assert batch.prompt_ids.shape[0] == 5 and batch.tokens.shape[0] == 15  # prompts stored once
    distinct, inverse = batch.distinct()
    assert inverse is not None and distinct.tokens.shape[0] < 15  # repeated rows run once
    assert torch.equal(distinct.tokens[inverse], batch.tokens)
    grads, values = [], []
    for forward in (response_logits, full_row_logits):
        model.zero_grad()
        logits = forward(model, batch)  # (B, T, V)
        logp = token_logprobs(logits, batch.tokens, 0.7)
        (logp * batch.mask).sum().backward()
        values.append(logits[batch.mask].detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(values[0], values[1], rtol=1e-5, atol=1e-5)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    part = batch.rows(slice(4, 11))  # a slice straddling groups keeps only the prompts it uses
    assert part.prompt_ids.shape[0] == 3
    with torch.no_grad():
        shared, full = response_logits(model, part), full_row_logits(model, part)
    torch.testing.assert_close(shared[part.mask], full[part.mask], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def pretrained(tiny_cache):
    from transformers import AutoModelForCausalLM

    from empirical.tiny import PretrainConfig, pretrained_tiny_model

    path = pretrained_tiny_model(PretrainConfig(steps=300))  # the conftest's model, already cached
    return AutoModelForCausalLM.from_pretrained(path).eval()


def arithmetic_prompts(k: int) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    from empirical.tasks import arithmetic_task

    tok = build_tokenizer()
    rows = [
        tok(q.prompt)["input_ids"] for q in arithmetic_task(n_train=k, n_heldout=0, seed=3).train
    ]
    return (rows, *left_pad(rows, PAD_ID))


def test_greedy_sampling_equals_generate(pretrained):
    rows, ids, mask = arithmetic_prompts(16)
    tokens, _ = sample(pretrained, ids, mask, 1, temperature=0.0, top_p=1.0, max_new_tokens=6,
                       eos_id=EOS_ID, pad_id=PAD_ID)  # fmt: skip
    with torch.no_grad():
        reference = pretrained.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=6,
                                        pad_token_id=PAD_ID, eos_token_id=EOS_ID)[:, ids.shape[1]:]  # fmt: skip
    width = max(tokens.shape[1], reference.shape[1])
    padded = [
        torch.nn.functional.pad(t, (0, width - t.shape[1]), value=PAD_ID)
        for t in (tokens, reference)
    ]
    assert torch.equal(padded[0], padded[1])
    assert (tokens == EOS_ID).any(1).float().mean() > 0.5  # most greedy answers stop by themselves


def test_sampled_logprobs_equal_a_fresh_forward(pretrained):
    rows, ids, mask = arithmetic_prompts(8)
    gen = torch.Generator().manual_seed(0)
    tokens, logprobs = sample(pretrained, ids, mask, 4, temperature=0.7, top_p=0.9, max_new_tokens=6,
                              eos_id=EOS_ID, pad_id=PAD_ID, generator=gen)  # fmt: skip
    responses = []
    for row in tokens.tolist():  # cut after EOS
        responses.append(row[: row.index(EOS_ID) + 1] if EOS_ID in row else row)
    batch = pack([r for r in rows for _ in range(4)], responses, PAD_ID)
    with torch.no_grad():
        fresh = token_logprobs(full_row_logits(pretrained, batch), batch.tokens, 0.7)
    width = batch.tokens.shape[1]
    torch.testing.assert_close(
        logprobs[:, :width][batch.mask], fresh[batch.mask], rtol=1e-5, atol=1e-5
    )
    assert torch.equal(tokens[:, :width][batch.mask], batch.tokens[batch.mask])
    assert (logprobs[:, :width][~batch.mask] == 0).all() and (tokens[:, width:] == PAD_ID).all()
    again = sample(pretrained, ids, mask, 4, temperature=0.7, top_p=0.9, max_new_tokens=6, eos_id=EOS_ID,
                   pad_id=PAD_ID, generator=torch.Generator().manual_seed(0))[0]  # fmt: skip
    assert torch.equal(again, tokens)  # the generator alone fixes the draw


def test_first_token_frequencies_follow_the_tempered_nucleus():
    """20,000 draws of the first token: zero outside the nucleus, the renormalised probabilities inside."""
    model = build_tiny_model(seed=5)
    ids, mask = left_pad([[1, 10, 11, 12]], PAD_ID)
    tau, top_p, draws = 0.5, 0.6, 20_000
    with torch.no_grad():
        z = model(input_ids=ids).logits[0, -1].double()
    p = torch.softmax(z / tau, -1)
    order = p.argsort(descending=True)
    before = p[order].cumsum(0) - p[order]  # mass of the more likely tokens
    nucleus = order[before < top_p]
    expected = torch.zeros_like(p)
    expected[nucleus] = p[nucleus] / p[nucleus].sum()
    assert 2 <= len(nucleus) < 50  # the cut is doing something
    tokens, _ = sample(model, ids, mask, draws, temperature=tau, top_p=top_p, max_new_tokens=1,
                       eos_id=EOS_ID, pad_id=PAD_ID, generator=torch.Generator().manual_seed(1))  # fmt: skip
    freq = torch.bincount(tokens[:, 0], minlength=p.shape[0]).double() / draws
    assert freq[expected == 0].sum() == 0
    sd = (expected * (1 - expected) / draws).sqrt()
    assert ((freq - expected).abs() <= 5 * sd + 1e-12).all(), (freq - expected).abs().max()


def test_pick_tokens_greedy_and_bad_arguments():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]])
    tokens, logp = pick_tokens(logits, temperature=0.0)
    assert tokens.tolist() == [1, 0]
    torch.testing.assert_close(logp, torch.log_softmax(logits, -1)[[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="top_p"):
        pick_tokens(logits, temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="rows"):
        left_pad([[1], []], PAD_ID)
    with pytest.raises(ValueError, match="response"):
        pack([[1]], [[]], PAD_ID)
