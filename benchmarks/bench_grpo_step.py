"""One GRPO step of the tiny Qwen3: ``empirical`` against TRL's ``GRPOTrainer``, interleaved in one process.

Both sides train **the same model file** (the one the ``empirical`` preset resolves), in **fp32** (TRL
``bf16=False``), **without activation checkpointing** (TRL ``gradient_checkpointing=False``), on the same number
of torch threads (pinned, default 1), with the same batch (prompts x rollouts), response length, temperature,
beta 0, clip 0.2, token-mean loss, std-normalised advantages, fused AdamW, lr and gradient clipping, and the same
**vectorised** majority-vote reward (:func:`sharpen.rewards.get_reward`, one pass over the batch). Beside the
matched figure, TRL's *defaults* (``bf16=True`` -- bf16 autocast, emulated on a CPU without native bf16 -- and
``gradient_checkpointing=True``) are timed too, clearly labelled: that is what a user gets out of the box.

Interleaving: TRL's own training loop drives, and a callback runs one ``empirical`` step after each TRL step.
A TRL step is timed from the callback's return to the next step end (data, generation, reward, loss, backward,
optimizer, TRL's metrics); the ``empirical`` step is timed around ``Trainer.train_step``. Load from other
processes therefore hits both alike, step by step. Beside the ratio of the two medians, the median (and
quartiles) of the step-by-step ratios is printed: each TRL step against the ``empirical`` step right after it,
so a change of load between steps cancels out of each ratio.

Cases (``--cases``): ``arith-8`` (16 prompts x 8 rollouts, <= 6 tokens; the main figure and the goal),
``arith-32`` (16 x 32), ``reason-8`` (16 x 8, the free-length scratchpad task, ~33-token responses, <= 64).
Then the ``empirical`` step split by phase (sampling, forward, backward, metrics, packing, ...), timed with
wrappers on a separate run of the same trainer.

    .venv/bin/python benchmarks/bench_grpo_step.py                      # about 2 minutes on 2 idle cores
    .venv/bin/python benchmarks/bench_grpo_step.py --cases arith-8 --steps 40
    .venv/bin/python benchmarks/bench_grpo_step.py --threads 2

TRL is a benchmark-only extra (``pip install 'sharpen[trl]'``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import io
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from _timing import Goal, cpu_line, load_line, median

from empirical.config import TrainConfig, preset
from sharpen.rewards import Rollouts, get_reward

GOAL = 4.0  # the performance target: TRL (matched) / empirical >= 4


@dataclass(frozen=True)
class Case:
    name: str
    preset: str
    n_rollouts: int
    max_new_tokens: int
    steps: int  # timed steps per contender (matched TRL)
    default_steps: int  # timed steps against TRL's defaults (0 = skip)


CASES = {
    "arith-8": Case("arith-8", "tiny-arith-ttrl", 8, 6, 12, 4),
    "arith-32": Case("arith-32", "tiny-arith-ttrl", 32, 6, 5, 0),
    "reason-8": Case("reason-8", "tiny-reason-ttrl", 8, 64, 5, 0),
}
WARMUP = 2  # untimed steps at the start of every phase
PROMPTS = 16


def empirical_config(case: Case, out: Path, threads: int) -> TrainConfig:
    return preset(case.preset).replace(
        out_dir=str(out),
        progress=False,
        log_kl=False,  # TRL with beta 0 keeps no reference model either
        lr=3e-5,
        n_rollouts=case.n_rollouts,
        rollout_batch_size=PROMPTS * case.n_rollouts,
        max_new_tokens=case.max_new_tokens,
        torch_threads=threads,
        precision="float32",
        gradient_checkpointing=False,
    )


def paired(trl: list[float], ours: list[float]) -> str:
    """The step-by-step ratios TRL / empirical of adjacent steps: median and quartiles."""
    ratios = sorted(a / b for a, b in zip(trl, ours, strict=True))
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return f"median {statistics.median(ratios):.2f}x, quartiles {q1:.2f}-{q3:.2f}x over {len(ratios)} pairs"


def majority_reward(task):
    """TRL reward function: the same vectorised majority-vote reward the empirical trainer calls."""
    reward = get_reward("majority_voting")

    def majority_voting(prompts, completions, **kwargs):
        ids: dict[str, int] = {}
        # TRL keeps each prompt's rollouts together; a prompt's text is its group
        groups = [ids.setdefault(p, len(ids)) for p in prompts]
        answers = [task.parse(c) for c in completions]
        return reward(Rollouts(answers=answers, groups=groups)).tolist()

    return majority_voting


def run_trl(
    trainer, case: Case, model_path: str, out: Path, *, steps: int, matched: bool
) -> tuple[list, list]:
    """Train TRL for ``WARMUP + steps`` steps, one ``trainer.train_step()`` after each; both step-time lists."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    task = trainer.task
    data = Dataset.from_dict({"prompt": [q.prompt for q in task.train]})
    cfg = trainer.cfg
    # matched: fp32 and no recompute, as empirical runs; {} leaves TRL's defaults (bf16=True, checkpointing)
    precision = dict(bf16=False, gradient_checkpointing=False) if matched else {}
    args = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=cfg.rollout_batch_size,
        num_generations=cfg.n_rollouts,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=0.0,
        epsilon=cfg.clip_eps,
        loss_type="dapo",  # token mean over the batch, as empirical's token-mean
        scale_rewards="group",
        learning_rate=cfg.lr,
        lr_scheduler_type="constant",
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim="adamw_torch_fused",
        max_steps=WARMUP + steps,
        use_cpu=True,
        report_to="none",
        logging_steps=10_000,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        **precision,
    )

    class Interleave(TrainerCallback):
        def __init__(self):
            self.trl, self.ours, self.resume = [], [], None

        def on_step_end(self, args, state, control, **kw):
            end = time.perf_counter()
            if self.resume is not None:
                self.trl.append(end - self.resume)
            t0 = time.perf_counter()
            trainer.train_step()
            self.ours.append(time.perf_counter() - t0)
            self.resume = time.perf_counter()

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    clock = Interleave()
    trl_trainer = GRPOTrainer(
        model=model, reward_funcs=majority_reward(task), args=args, train_dataset=data,
        processing_class=tokenizer, callbacks=[clock],
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # TRL prints its end-of-training summary
        trl_trainer.train()
    # the first TRL interval is step 2 (step 1 has no resume mark); drop warm-up steps on both sides
    return clock.trl[WARMUP - 1 :], clock.ours[WARMUP:]


# ------------------------------------------------------------------------------------------------------
# the empirical step by phase
# ------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def phase_clock(trainer):
    """Accumulate seconds per phase of ``trainer.train_step`` by wrapping the functions it calls."""
    import empirical.train as T

    acc: dict[str, float] = collections.defaultdict(float)
    undo = []

    def wrap(obj, name: str, label: str) -> None:
        original = getattr(obj, name)

        @functools.wraps(original)
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                acc[label] += time.perf_counter() - t0

        setattr(obj, name, timed)
        undo.append((obj, name, original))

    wrap(T, "render_prompts", "prompts: tokenise")
    wrap(trainer.backend, "generate", "sampling (KV-cached decode)")
    wrap(trainer.tokenizer, "batch_decode", "decode to text")
    wrap(T, "pack", "packing (lists -> tensors)")
    wrap(T, "grade", "grading (ground truth, measured)")
    wrap(T, "response_logits", "forward (with grad)")
    wrap(T, "token_entropies", "entropy (for the metric)")
    wrap(T, "policy_loss", "loss")
    wrap(torch.Tensor, "backward", "backward")
    wrap(torch.nn.utils, "clip_grad_norm_", "grad clip")
    wrap(trainer.optimizer, "step", "optimizer")
    wrap(T, "batch_metrics", "metrics (TTRL names, behaviour)")
    try:
        yield acc
    finally:
        for obj, name, original in reversed(undo):
            setattr(obj, name, original)


def profile(trainer, steps: int) -> tuple[float, dict[str, float]]:
    with phase_clock(trainer) as acc:
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        total = time.perf_counter() - t0
    parts = {k: v / steps for k, v in acc.items()}
    parts["other (rewards, advantages, Python glue)"] = total / steps - sum(parts.values())
    return total / steps, parts


# ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases", default="arith-8,arith-32,reason-8", help=f"comma list of {list(CASES)}"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per case (default: per case)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both contenders")
    parser.add_argument(
        "--profile-steps", type=int, default=4, help="steps of the phase profile per case"
    )
    parser.add_argument(
        "--no-defaults", action="store_true", help="skip TRL with its default settings"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    import transformers
    import trl

    from empirical.train import build_trainer

    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    cases = [CASES[name] for name in args.cases.split(",")]
    results, profiles = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case in cases:
            steps = args.steps or case.steps
            trainer = build_trainer(empirical_config(case, tmp / f"{case.name}-ours", args.threads))
            model_path = trainer.model_path
            trl_t, ours_t = run_trl(
                trainer, case, model_path, tmp / f"{case.name}-trl", steps=steps, matched=True
            )
            row = {"trl": trl_t, "ours": ours_t, "model": model_path}
            if case.default_steps and not args.no_defaults:
                d_trl, d_ours = run_trl(trainer, case, model_path, tmp / f"{case.name}-trl-defaults",
                                        steps=min(steps, case.default_steps), matched=False)  # fmt: skip
                row.update(trl_defaults=d_trl, ours_defaults=d_ours)
            results[case.name] = row
            profiles[case.name] = profile(trainer, args.profile_steps)
            torch.set_num_threads(args.threads)

    capability = torch.backends.cpu.get_cpu_capability()
    print(f"machine: {cpu_line()}; torch {torch.__version__} (kernels: {capability}), transformers "
          f"{transformers.__version__}, trl {trl.__version__}; torch threads {torch.get_num_threads()} for both")  # fmt: skip
    print(load_line(load))
    print("matched: same model file, fp32 (TRL bf16=False), no activation checkpointing, same threads, beta 0, "
          "vectorised majority-vote reward on both sides")  # fmt: skip
    for case in cases:
        row = results[case.name]
        ours, trl_m = median(row["ours"]), median(row["trl"])
        print(f"[{case.name}] {PROMPTS} prompts x {case.n_rollouts} rollouts, <= {case.max_new_tokens} new tokens, "
              f"model {Path(row['model']).name}; {len(row['ours'])} interleaved steps each")  # fmt: skip
        print(f"  empirical (hf backend, fp32):          {ours:.4f} s/step")
        print(f"  TRL GRPOTrainer, matched settings:     {trl_m:.4f} s/step")
        print(f"  ratio TRL (matched) / empirical:       {trl_m / ours:.2f}x")
        print(f"  step by step (TRL step / next empirical step): {paired(row['trl'], row['ours'])}")
        if "trl_defaults" in row:
            d_ours, d_trl = median(row["ours_defaults"]), median(row["trl_defaults"])
            print(f"  TRL with its DEFAULTS (bf16 autocast without native bf16, gradient checkpointing): "
                  f"{d_trl:.4f} s/step vs empirical {d_ours:.4f} -> {d_trl / d_ours:.2f}x "
                  f"({len(row['ours_defaults'])} steps; not a like-for-like figure)")  # fmt: skip
        print(
            f"  {Goal(f'[{case.name}] TRL matched / empirical', trl_m / ours, GOAL, at_least=True)}"
        )
    for case in cases:
        per_step, parts = profiles[case.name]
        print(f"[{case.name}] empirical step by phase ({args.profile_steps} steps, wrappers on; "
              f"{per_step:.4f} s/step):")  # fmt: skip
        for name, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"    {name:<42s} {1e3 * seconds:7.2f} ms  {100 * seconds / per_step:5.1f}%")


if __name__ == "__main__":
    main()
