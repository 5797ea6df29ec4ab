"""The policy's passes: the shared-prompt forward equals full rows, the Qwen3 forward equals transformers' to the
bit, the KV-cached sampler draws from the right distribution (greedy = ``generate``'s greedy; sampled log-probs
= a fresh forward's; nucleus frequencies) and, running each distinct prefix once, draws what one cache row per
sample draws; the rollout helpers (batched prompt rendering, decoding) equal their one-by-one versions."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from empirical import policy
from empirical.policy import left_pad, pack, pick_tokens, positions, response_logits, sample
from empirical.rollout import decode_responses, render_prompts
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


# ----------------------------------------------------------------------------------------------------------
# the Qwen3 forward against transformers', the sampler against one cache row per sample
# ----------------------------------------------------------------------------------------------------------


def transformers_call(model, cache=None, **inputs):
    """transformers' own forward (``model(...)``), returning ``(logits, cache)``."""
    name = policy._cache_argument(type(model))
    if cache is not None:
        inputs[name] = cache
    out = model(**inputs, use_cache=True)
    return out.logits, out[name]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qwen3_forward_equals_transformers_to_the_bit(seed, monkeypatch):
    """The same ops as transformers: equal logits and gradients (padded and unpadded prompts, the response pass
    through the cache) and equal decode steps (no mask, and a padding mask)."""
    model = build_tiny_model(seed=seed).train()
    assert policy._qwen3_plain(model)
    # the padded pass (the packed one is checked against it in test_policy_fast_paths)
    monkeypatch.setattr(policy, "PACK_BELOW", 0.0)
    equal_lengths = seed == 2  # no padding anywhere: the SDPA call without a mask
    rng = np.random.default_rng(seed)
    width = int(rng.integers(1, 7))
    prompts = [[1] + rng.integers(4, 50, width if equal_lengths else rng.integers(1, 7)).tolist()
               for _ in range(4)]  # fmt: skip
    responses = [rng.integers(4, 50, rng.integers(1, 6)).tolist() for _ in range(12)]
    batch = pack([p for p in prompts for _ in range(3)], responses, PAD_ID)
    got = []
    for call in (transformers_call, policy.qwen3_forward):
        monkeypatch.setattr(
            policy, "_forward", lambda model, plain=None, call=call: partial(call, model)
        )
        model.zero_grad()
        logits = response_logits(model, batch)
        token_logprobs(logits, batch.tokens, 0.7)[batch.mask].sum().backward()
        with torch.no_grad():  # prompt pass and two decode steps, as the sampler runs them
            ids, mask = left_pad(prompts, PAD_ID)
            z, cache = call(model, input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                            logits_to_keep=1)  # fmt: skip
            steps = [z]
            for t in range(2):
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
                z, cache = call(model, cache, input_ids=torch.full((4, 1), 7 + t), attention_mask=mask,
                                position_ids=mask.sum(-1, keepdim=True) - 1)  # fmt: skip
                steps.append(z)
        got.append((logits.detach(), [p.grad.clone() for p in model.parameters()], steps))
    (a_logits, a_grads, a_steps), (b_logits, b_grads, b_steps) = got
    assert torch.equal(a_logits, b_logits)
    assert all(torch.equal(a, b) for a, b in zip(a_grads, b_grads, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(a_steps, b_steps, strict=True))


def test_qwen3_forward_is_used_only_where_it_is_transformers_forward():
    model = build_tiny_model(seed=0)
    assert policy._qwen3_plain(model)
    # checkpointing wraps the layers: transformers runs (the method's name since transformers 5.2x, else the old)
    getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    assert not policy._qwen3_plain(model)
    model = build_tiny_model(seed=0)
    model.config._attn_implementation = "eager"
    assert not policy._qwen3_plain(model)
    model = build_tiny_model(
        seed=0
    )  # a forward hook (what adapters and probes use) must run: transformers runs
    handle = model.model.layers[0].mlp.register_forward_hook(lambda *a: None)
    assert not policy._qwen3_plain(model)
    handle.remove()
    assert policy._qwen3_plain(model)

    class Adapter(torch.nn.Linear):  # a linear of another kind (LoRA, quantised): transformers runs
        pass

    old = model.model.layers[0].self_attn.q_proj
    model.model.layers[0].self_attn.q_proj = Adapter(old.in_features, old.out_features, bias=False)
    assert not policy._qwen3_plain(model)
    with pytest.raises(ValueError, match="attention_mask: needs 5 columns"):
        policy._causal_mask(torch.ones(2, 4, dtype=torch.long), q_len=1, past=4)


def per_row_sample(model, ids, mask, n, *, temperature, top_p, max_new_tokens, generator):
    """The plain sampler: the prompt pass fanned out to one cache row per sample, every active row through every
    transformers decode call, finished rows dropped; the same draws (one ``pick_tokens`` over the active rows
    per step)."""
    index = torch.arange(ids.shape[0]).repeat_interleave(n)
    z, cache = transformers_call(model, input_ids=ids, attention_mask=mask, position_ids=positions(mask),
                                 logits_to_keep=1)  # fmt: skip
    cache.batch_select_indices(index)
    logits, attn, position = z[:, -1][index], mask[index], mask.sum(-1)[index]
    tokens = torch.full((len(index), max_new_tokens), PAD_ID)
    logprobs = torch.zeros(tokens.shape)
    active = torch.arange(len(index))
    for t in range(max_new_tokens):
        token, logp = pick_tokens(logits, temperature=temperature, top_p=top_p, generator=generator)
        tokens[active, t], logprobs[active, t] = token, logp
        keep = (token != EOS_ID).nonzero()[:, 0]
        if t == max_new_tokens - 1 or len(keep) == 0:
            break
        active, token, attn, position = active[keep], token[keep], attn[keep], position[keep]
        cache.batch_select_indices(keep)
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], 1)
        z, cache = transformers_call(model, cache, input_ids=token[:, None], attention_mask=attn,
                                     position_ids=position[:, None] + t)  # fmt: skip
        logits = z[:, -1]
    return tokens[:, : t + 1], logprobs[:, : t + 1]


@pytest.mark.parametrize(
    "n, temperature, top_p, k, same_length",
    [(8, 1.0, 1.0, 8, False), (16, 0.7, 0.9, 4, False), (3, 0.0, 1.0, 8, False),
     (4, 1.0, 1.0, 3, True), (1, 1.0, 1.0, 2, True)],
)  # fmt: skip
def test_sampling_each_prefix_once_draws_what_one_row_per_sample_draws(
    pretrained, n, temperature, top_p, k, same_length
):
    """Running each distinct prefix once (and transformers' forward replaced by ``qwen3_forward``) gives the
    tokens, the log-probabilities and the generator state of the per-row sampler: each row's logits are the same
    numbers (bit for bit where a row's matrix products do not depend on the other rows, as on the project's
    CPU build), so the same draws follow."""
    rows, ids, mask = arithmetic_prompts(k)
    if same_length:  # no padding: the attention runs without a mask
        rows = [r for r in rows if len(r) == len(rows[0])][:k]
        ids, mask = left_pad(rows, PAD_ID)
    out = []
    for sampler in (sample, per_row_sample):
        gen = torch.Generator().manual_seed(7)
        kwargs = dict(temperature=temperature, top_p=top_p, max_new_tokens=6, generator=gen)
        if sampler is sample:
            kwargs.update(eos_id=EOS_ID, pad_id=PAD_ID)
        out.append((*sampler(pretrained, ids, mask, n, **kwargs), gen.get_state()))
    (tokens, logp, state), (ref_tokens, ref_logp, ref_state) = out
    assert torch.equal(tokens, ref_tokens) and torch.equal(state, ref_state)
    torch.testing.assert_close(logp, ref_logp, rtol=1e-6, atol=1e-6)


def test_branch_merges_rows_on_one_prefix_and_keeps_small_calls_at_their_size():
    node, token = torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([7, 9, 7, 7, 7, 5])
    parent, new_token, new_node = policy._branch(node, token, 10)
    assert parent.tolist() == [0, 0, 1, 2] and new_token.tolist() == [7, 9, 7, 5]
    assert new_node.tolist() == [0, 1, 0, 2, 2, 3]  # row i continues prefix new_node[i]
    # one distinct pair among >= SMALL_BATCH rows: padded with copies up to SMALL_BATCH rows
    parent, new_token, new_node = policy._branch(
        torch.zeros(5, dtype=torch.long), torch.full((5,), 3), 10
    )
    assert (
        parent.tolist() == [0] * policy.SMALL_BATCH
        and new_token.tolist() == [3] * policy.SMALL_BATCH
    )
    assert new_node.tolist() == [0] * 5
    # fewer rows than SMALL_BATCH: every row its own prefix (the call keeps the rows' size)
    parent, new_token, new_node = policy._branch(torch.tensor([1, 1]), torch.tensor([4, 4]), 10)
    assert (
        parent.tolist() == [1, 1] and new_token.tolist() == [4, 4] and new_node.tolist() == [0, 1]
    )


def test_prompts_render_and_responses_decode_as_one_call_per_text():
    tok = build_tokenizer()
    tok.chat_template = "{% for m in messages %}q:{{ m['content'] }}{% endfor %}="
    texts = ["12+3=", "7+70=", "5+5", "1+1="]
    chat = [False, True, False, True]
    one_by_one = [
        tok(tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                    add_generation_prompt=True), add_special_tokens=False)["input_ids"]
        if c else tok(t)["input_ids"]
        for t, c in zip(texts, chat, strict=True)
    ]  # fmt: skip
    assert render_prompts(tok, texts, chat, 1024) == one_by_one
    assert render_prompts(tok, texts, chat, 3) == [ids[-3:] for ids in one_by_one]
    with pytest.raises(ValueError, match="chat"):
        render_prompts(tok, texts, chat[:2], 1024)
    responses = [[5, 6, EOS_ID], [7, EOS_ID], [5, 6, EOS_ID], [8]]
    assert decode_responses(tok, responses) == tok.batch_decode(responses, skip_special_tokens=True)
