"""Time one GRPO step of the tiny Qwen3 (16 prompts x 8 rollouts, <= 6 new tokens, majority-vote reward):
``empirical`` against TRL's ``GRPOTrainer`` with the same model, batch, generation length, beta 0 and learning
rate, side by side in one process. TRL is a benchmark-only extra (``pip install 'sharpen[trl]'``).

    .venv/bin/python benchmarks/bench_grpo_step.py --steps 40

Prints the median seconds per step of each and the ratio TRL / empirical (target: >= 2).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from empirical.config import preset
from empirical.tasks import arithmetic_task
from empirical.tiny import PretrainConfig, pretrained_tiny_model
from sharpen.answers import majority_vote


def time_empirical(steps: int, log_kl: bool, out: Path) -> list[float]:
    from empirical.train import build_trainer

    cfg = preset("tiny-arith-ttrl").replace(
        out_dir=str(out), progress=False, log_kl=log_kl, max_new_tokens=6, lr=3e-5
    )
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps", type=int, default=40, help="timed steps per contender (first 5 dropped)"
    )
    args = parser.parse_args()
    model_path = pretrained_tiny_model(PretrainConfig())
    warm = 5
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours = time_empirical(args.steps + warm, False, tmp / "a")[warm:]
        trl = time_trl(args.steps + warm, model_path, tmp / "trl")[warm:]
        ours_again = time_empirical(args.steps + warm, False, tmp / "b")[warm:]
        ours_kl = time_empirical(args.steps + warm, True, tmp / "c")[warm:]
    med = statistics.median
    e = med(ours + ours_again)
    print(f"torch threads: {torch.get_num_threads()}, steps timed per contender: {args.steps}")
    print(f"empirical (hf backend, beta 0, no KL metric): {e:.4f} s/step "
          f"(first block {med(ours):.4f}, second block {med(ours_again):.4f})")  # fmt: skip
    print(f"empirical with the KL-to-initial metric:      {med(ours_kl):.4f} s/step")
    print(f"TRL GRPOTrainer (use_cpu, beta 0):            {med(trl):.4f} s/step")
    print(
        f"ratio TRL / empirical: {med(trl) / e:.2f}x (with KL metric: {med(trl) / med(ours_kl):.2f}x)"
    )


if __name__ == "__main__":
    main()
