"""The policy's shortcuts give the numbers of the plain passes: the packed response pass (only the positions the
mask keeps) against the padded one, the sampler's prompt pass taken by the trainer's forward against a new one,
and a whole training step with both against one without.

The prompt pass is the same operations on the same tensors, so the same numbers on any machine. The packed pass
is the same numbers bit for bit where a matrix product's row does not depend on how many rows the product has
(:func:`rows_independent`, true of this project's torch CPU build); where it does, the packed pass is checked to
rounding instead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirical import policy, rollout
from empirical.policy import left_pad, pack, prompt_pass, response_logits, sample
from empirical.tiny import EOS_ID, PAD_ID, build_tiny_model
from sharpen.rewards import token_logprobs


def ragged_batch(seed: int, n_prompts: int = 6, n: int = 8, longest: int = 16):
    """Responses of 1 to ``longest / 2`` tokens and one of ``longest`` (most padded positions are padding),
    some repeated; enough positions (~700) that a matrix product's sum over them runs in several blocks."""
    rng = np.random.default_rng(seed)
    prompts = [[1] + rng.integers(4, 50, rng.integers(1, 7)).tolist() for _ in range(n_prompts)]
    lengths = rng.integers(1, longest // 2 + 1, n_prompts * n)
    lengths[0] = longest
    responses = [rng.integers(4, 50, k).tolist() for k in lengths]
    responses[1] = list(responses[0])
    return pack([p for p in prompts for _ in range(n)], responses, PAD_ID)


def rows_independent(model, kept: int, total: int) -> bool:
    """Whether this machine's matrix products give a row the same bits in a product of ``kept`` rows as in one of
    ``total`` rows, for every linear of ``model`` forward (``x W^T``) and backward (``dY W``)."""
    gen = torch.Generator().manual_seed(0)
    rows = torch.randperm(total, generator=gen)[:kept].sort().values
    for weight in {
        tuple(m.weight.shape): m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)
    }.values():
        w = weight.detach()
        for right in (w.t(), w):  # forward, input gradient
            x = torch.randn(total, right.shape[0], generator=gen)
            if not torch.equal(
                x.index_select(0, rows).mm(right), x.mm(right).index_select(0, rows)
            ):
                return False
    return True


def assert_same(a: torch.Tensor, b: torch.Tensor, exact: bool) -> None:
    """``a == b`` bit for bit if ``exact``, else to float32 rounding over a few layers."""
    if exact:
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def forward_backward(model, batch, monkeypatch, pack_below: float, **kw):
    """Logits ``(B, T, V)`` of ``response_logits`` and every parameter's gradient of a masked loss."""
    monkeypatch.setattr(policy, "PACK_BELOW", pack_below)
    model.zero_grad(set_to_none=True)
    logits = response_logits(model, batch, **kw)
    logp = token_logprobs(logits, batch.tokens, 0.7)
    weights = torch.linspace(-1, 1, logp.numel()).view(logp.shape)  # every kept token counts
    (torch.where(batch.mask, logp, torch.zeros_like(logp)) * weights).sum().backward()
    return logits.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_response_pass_equals_the_padded_pass(seed, monkeypatch):
    """Only the kept positions run: their logits and every gradient (prompt pass included) are the padded
    pass's (bit for bit where :func:`rows_independent`); the logits of positions no input reached are 0."""
    model = build_tiny_model(seed=seed).train()
    batch = ragged_batch(seed)
    keep = batch.mask[:, :-1]
    assert float(keep.float().mean()) < policy.PACK_BELOW  # the default takes the packed pass here
    calls = []
    monkeypatch.setattr(
        policy, "_Positions", lambda keep, cls=policy._Positions: calls.append(1) or cls(keep)
    )
    padded, padded_grads = forward_backward(model, batch, monkeypatch, 0.0)
    assert not calls
    packed, packed_grads = forward_backward(model, batch, monkeypatch, 1.0)
    assert calls  # the packed pass ran
    exact = rows_independent(model, int(keep.sum()), keep.numel())
    assert_same(packed[batch.mask], padded[batch.mask], exact)
    reached = torch.cat([torch.ones_like(keep[:, :1]), keep], 1)  # logit t reads input t - 1
    assert (packed[~reached] == 0).all() and (padded[~reached] != 0).any()
    for a, b in zip(packed_grads, padded_grads, strict=True):
        assert_same(a, b, exact)
    with torch.no_grad():  # a scoring pass (reference policy, exact probes): the grad pass's logits
        monkeypatch.setattr(policy, "PACK_BELOW", 1.0)
        assert torch.equal(response_logits(model, batch)[batch.mask], packed[batch.mask])


def test_packed_pass_runs_only_where_it_is_the_same_and_pays():
    """Packed where enough positions are padding and every linear is bias-free; padded otherwise."""
    model = build_tiny_model(seed=0)
    keep = ragged_batch(0).mask[:, :-1]
    assert policy._packable(model, keep)
    assert not policy._packable(model, torch.ones_like(keep))  # nothing to skip: the padded pass
    assert not policy._packable(model, torch.zeros_like(keep))  # nothing to run
    o_proj = model.model.layers[1].self_attn.o_proj
    o_proj.bias = torch.nn.Parameter(torch.zeros(o_proj.out_features))
    assert not policy._packable(model, keep)  # a bias's gradient sums over positions


def test_sampler_prompt_pass_is_taken_once_for_the_same_prompts_and_weights(monkeypatch):
    """The sampler continuing from a kept prompt pass draws what it draws from its own; the training forward
    that takes the pass gives the logits and gradients of one that runs the prompts again; the pass is taken
    once, for the same prompts and unchanged weights only."""
    model = build_tiny_model(seed=3).train()
    rng = np.random.default_rng(3)
    rows = [[1] + rng.integers(4, 50, rng.integers(2, 7)).tolist() for _ in range(5)]
    ids, mask = left_pad(rows, PAD_ID)
    drawn = []
    for kept in (None, prompt_pass(model, ids, mask)):
        gen = torch.Generator().manual_seed(11)
        out = sample(model, ids, mask, 6, temperature=1.0, top_p=1.0, max_new_tokens=8, eos_id=EOS_ID,
                     pad_id=PAD_ID, generator=gen, prompts=kept)  # fmt: skip
        drawn.append((*out, gen.get_state(), kept))
    (tokens, logp, state, _), (tokens2, logp2, state2, kept) = drawn
    assert torch.equal(tokens, tokens2) and torch.equal(logp, logp2) and torch.equal(state, state2)
    responses = [r[: r.index(EOS_ID) + 1] if EOS_ID in r else r for r in tokens.tolist()]
    batch = pack([r for r in rows for _ in range(6)], responses, PAD_ID)
    assert kept.fits(model, batch.prompt_ids, batch.prompt_mask)
    fresh = forward_backward(model, batch, monkeypatch, policy.PACK_BELOW)
    taken = forward_backward(model, batch, monkeypatch, policy.PACK_BELOW, prompts=kept)
    assert torch.equal(fresh[0], taken[0])
    assert all(torch.equal(a, b) for a, b in zip(fresh[1], taken[1], strict=True))
    # taken once: its cache now holds the rows
    assert not kept.fits(model, batch.prompt_ids, batch.prompt_mask)
    again = prompt_pass(model, ids, mask)
    assert not again.fits(model, ids[:, 1:], mask[:, 1:])  # other prompts
    assert not again.fits(model, ids[1:], mask[1:])
    with torch.no_grad():
        next(model.parameters()).add_(0.0)  # any in-place change to a weight (an optimizer step)
    assert not again.fits(model, ids, mask)
    # another model, even one with the same weights and version counters: not its pass
    one, twin = build_tiny_model(seed=4), build_tiny_model(seed=4)
    ran = prompt_pass(one, ids, mask)
    assert policy._versions(one) == policy._versions(twin)
    assert ran.fits(one, ids, mask) and not ran.fits(twin, ids, mask)
    with pytest.raises(ValueError, match="prompts"):
        sample(model, ids, mask, 2, temperature=1.0, top_p=1.0, max_new_tokens=2, eos_id=EOS_ID,
               pad_id=PAD_ID, prompts=again)  # fmt: skip


def test_training_steps_with_the_shortcuts_equal_steps_without(tiny_config, monkeypatch):
    """Three GRPO steps (with the KL penalty, so the reference pass runs too): the sampler's prompt pass taken by
    the gradient pass and the packed pass (forced on for every batch) give the metrics and weights of steps
    without either, to the bit where :func:`rows_independent` holds for every packed pass; elsewhere the first
    step (sampled from the same weights) gives the same metrics to rounding."""
    from empirical.train import build_trainer

    cfg = tiny_config.replace(rollout_batch_size=32, kl_coef=0.05, lr=1e-3, probe_every=0)
    runs = []
    for shortcuts in (False, True):
        monkeypatch.setattr(policy, "PACK_BELOW", 1.0 if shortcuts else 0.0)
        taken, packed = [], []  # prompt passes taken; (kept, total) positions of each packed pass
        if shortcuts:
            take = policy.PromptPass.take
            monkeypatch.setattr(policy.PromptPass, "take",
                                lambda self, *a, n=taken, f=take: n.append(1) or f(self, *a))  # fmt: skip
            monkeypatch.setattr(policy, "_Positions",
                                lambda keep, n=packed, cls=policy._Positions:
                                n.append((int(keep.sum()), keep.numel())) or cls(keep))  # fmt: skip
        else:
            monkeypatch.setattr(rollout, "prompt_pass", lambda *a: None)
        trainer = build_trainer(cfg)
        metrics = [
            {k: v for k, v in trainer.train_step().items() if not k.startswith("time/")}
            for _ in range(3)
        ]
        runs.append((metrics, trainer.model.state_dict(), trainer.last_batch[1], taken, packed))
        monkeypatch.undo()
    (m0, s0, r0, *_), (m1, s1, r1, taken, packed) = runs
    assert len(taken) == 3  # each step's gradient pass took its sampler's prompt pass
    assert packed  # and the packed pass ran
    if all(rows_independent(trainer.model, kept, total) for kept, total in set(packed)):
        assert m0 == m1 and np.array_equal(r0, r1)
        assert all(torch.equal(s0[k], s1[k]) for k in s0)
    else:  # the first step's rollouts are the same; its losses and rewards agree to rounding
        assert m0[0].keys() == m1[0].keys()
        for k, v in m0[0].items():
            assert v == pytest.approx(m1[0][k], rel=1e-4, abs=1e-6), k
