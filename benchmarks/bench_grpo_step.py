"""Time one GRPO step of the tiny Qwen3 (16 prompts x 8 rollouts, <= 6 new tokens, majority-vote reward):
``empirical`` against TRL's ``GRPOTrainer`` with the same model, batch, generation length, beta 0, learning
rate and torch thread count, side by side in one process. TRL is a benchmark-only extra
(``pip install 'sharpen[trl]'``).

    .venv/bin/python benchmarks/bench_grpo_step.py --steps 40              # 1 torch thread for both
    .venv/bin/python benchmarks/bench_grpo_step.py --steps 40 --threads 2
    .venv/bin/python benchmarks/bench_grpo_step.py --steps 40 --threads 1 --trl-threads 2   # each at its best

Prints the median seconds per step of each contender, the ratio TRL / empirical (target: >= 2), and the two
pieces the ``empirical`` step replaced, timed alone on one batch: KV-cached sampling with each prompt encoded
once vs ``model.generate``, and the response forward+backward over distinct rows (prompts once, repeated rows
once: what the trainer runs), over every row with shared prompts, and over full rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from empirical.config import preset
from empirical.tasks import arithmetic_task
from empirical.tiny import PretrainConfig, pretrained_tiny_model
from sharpen.answers import majority_vote


def time_empirical(steps: int, out: Path, threads: int, **changes) -> list[float]:
    from empirical.train import build_trainer

    settings = dict(out_dir=str(out), progress=False, log_kl=False, max_new_tokens=6, lr=3e-5)
    cfg = preset("tiny-arith-ttrl").replace(**{**settings, "torch_threads": threads, **changes})
    trainer = build_trainer(cfg)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t)
    return times


def time_trl(steps: int, model_path: Path, out: Path) -> list[float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    task = arithmetic_task(n_train=2000, n_heldout=0)
    data = Dataset.from_dict(
        {"prompt": [q.prompt for q in task.train], "qid": [q.qid for q in task.train]}
    )

    def majority_reward(
        prompts, completions, **kwargs
    ):  # the TTRL reward, voted within each prompt group
        answers = [task.parse(c) for c in completions]
        rewards = []
        for i, a in enumerate(answers):
            group = [answers[j] for j in range(len(answers)) if prompts[j] == prompts[i]]
            winner = majority_vote(group).answer
            rewards.append(float(a is not None and a == winner))
        return rewards

    class Clock(TrainerCallback):
        """Wall time between consecutive step ends: everything a step costs (data, generation, update)."""

        def __init__(self):
            self.ends = []

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

        @property
        def times(self):
            return [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]

    cfg = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=128,
        num_generations=8,
        max_completion_length=6,
        temperature=1.0,
        beta=0.0,
        learning_rate=3e-5,
        lr_scheduler_type="constant",
        max_steps=steps,
        use_cpu=True,
        report_to="none",
        logging_steps=10_000,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    model = AutoModelForCausalLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    clock = Clock()
    trainer = GRPOTrainer(
        model=model, reward_funcs=majority_reward, args=cfg, train_dataset=data,
        processing_class=tokenizer, callbacks=[clock],
    )  # fmt: skip
    trainer.train()
    return clock.times


def time_components(model_path: Path, repeats: int) -> dict[str, float]:
    """Median seconds of the replaced pieces on one 16 x 8 batch (sampling; forward + backward)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from empirical.policy import (
        _response_logits,
        left_pad,
        pack,
        positions,
        response_logits,
        sample,
    )
    from empirical.rollout import render_prompts

    model = AutoModelForCausalLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    texts = [q.prompt for q in arithmetic_task(n_train=16, n_heldout=0).train]
    prompt_rows = render_prompts(tokenizer, texts, [False] * 16, 64)
    ids, mask = left_pad(prompt_rows, tokenizer.pad_token_id)
    special = dict(eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id)
    generator = torch.Generator().manual_seed(0)

    def ours_sample():
        return sample(model, ids, mask, 8, temperature=1.0, top_p=1.0, max_new_tokens=6,
                      generator=generator, **special)  # fmt: skip

    def hf_generate():
        with torch.no_grad():
            return model.generate(
                input_ids=ids.repeat_interleave(8, 0), attention_mask=mask.repeat_interleave(8, 0),
                do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=6,
                pad_token_id=special["pad_id"], eos_token_id=special["eos_id"],
            )  # fmt: skip

    tokens, _ = ours_sample()
    eos = special["eos_id"]
    rows = [r[: (r + [eos]).index(eos) + 1] for r in tokens.tolist()]  # cut after EOS
    batch = pack([p for p in prompt_rows for _ in range(8)], rows, special["pad_id"])

    def distinct_rows():  # what the trainer runs: prompts once, repeated rows once
        (response_logits(model, batch).logsumexp(-1) * batch.mask).sum().backward()

    def shared_prompts():  # prompts once, every row
        (_response_logits(model, batch).logsumexp(-1) * batch.mask).sum().backward()

    def full_rows():
        full_ids, attn = batch.sequences()
        out = model(
            input_ids=full_ids, attention_mask=attn, position_ids=positions(attn), use_cache=False
        )
        logits = out.logits[:, batch.prompt_ids.shape[1] - 1 : -1]
        (logits.logsumexp(-1) * batch.mask).sum().backward()

    def median_time(fn) -> float:
        times = []
        for _ in range(repeats + 3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times[3:])

    return {
        "sample: KV cache, prompts once": median_time(ours_sample),
        "sample: model.generate": median_time(hf_generate),
        "forward+backward: distinct rows": median_time(distinct_rows),
        "forward+backward: shared prompts": median_time(shared_prompts),
        "forward+backward: full rows": median_time(full_rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps", type=int, default=40, help="timed steps per contender (first 5 dropped)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for every contender (0 = default)"
    )
    parser.add_argument(
        "--trl-threads", type=int, default=None, help="torch threads for TRL (default: --threads)"
    )
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    ours_threads = args.threads or default_threads
    trl_threads = (
        ours_threads if args.trl_threads is None else (args.trl_threads or default_threads)
    )
    model_path = pretrained_tiny_model(PretrainConfig())
    load_before = os.getloadavg()
    warm, n = 5, args.steps + 5
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours = time_empirical(n, tmp / "a", ours_threads)[warm:]
        torch.set_num_threads(trl_threads)
        trl = time_trl(n, model_path, tmp / "trl")[warm:]
        ours_again = time_empirical(n, tmp / "b", ours_threads)[warm:]
        two_pass = time_empirical(n, tmp / "c", ours_threads, reuse_forward=False)[warm:]
        ours_kl = time_empirical(n, tmp / "d", ours_threads, log_kl=True)[warm:]
    torch.set_num_threads(ours_threads)
    parts = time_components(model_path, args.steps)
    med = statistics.median
    e = med(ours + ours_again)
    load = ", ".join(f"{x:.2f}" for x in (*load_before, *os.getloadavg()))
    print(f"{os.cpu_count()} CPUs; 1/5/15-min load average before, after: {load}")
    print(f"torch threads: empirical {ours_threads}, TRL {trl_threads}; "
          f"steps timed per contender: {args.steps}")  # fmt: skip
    print(f"empirical (hf backend, beta 0, no KL metric): {e:.4f} s/step "
          f"(first block {med(ours):.4f}, second block {med(ours_again):.4f})")  # fmt: skip
    print(f"empirical, separate no-grad old-logprob pass: {med(two_pass):.4f} s/step")
    print(f"empirical with the KL-to-initial metric:      {med(ours_kl):.4f} s/step")
    print(f"TRL GRPOTrainer (use_cpu, beta 0):            {med(trl):.4f} s/step")
    print(
        f"ratio TRL / empirical: {med(trl) / e:.2f}x (with KL metric: {med(trl) / med(ours_kl):.2f}x)"
    )
    print("pieces on one 16 x 8 batch (median s):")
    for name, seconds in parts.items():
        print(f"  {name:34s} {seconds:.4f}")


if __name__ == "__main__":
    main()
