"""Scaling tables for docs/performance.md: the simulator step vs Q, N, K and the GRPO step vs rollouts and
response length, each with its memory peak. Prints Markdown; ``--out FILE`` also writes it there.

* Simulator: :func:`sim.fast.tabular_majority_step` (float32 ``(K, Q)``), median of ``--repeats`` steps from the
  same logits; memory = the peak of numpy's allocations during one step (``tracemalloc``), state excluded.
* GRPO: the ``empirical`` trainer on the tiny Qwen3 (fp32, 1 torch thread, 16 prompts), each case in a fresh
  subprocess (2 warm-up steps, then ``--grpo-steps`` timed); memory = that process's peak resident set
  (``resource.getrusage``), which includes Python, torch and the model (~0.43 GB before the first step), and
  how much of it the steps added.
  Response length is set by the reasoning task's ``max_new_tokens`` (its responses run to ~33 tokens), so the
  measured mean length is printed beside it.

    .venv/bin/python benchmarks/scaling.py                  # about 2-3 minutes
    .venv/bin/python benchmarks/scaling.py --skip-grpo --out /tmp/scaling.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _timing import cpu_line, load_line, median

SIM_BASE = dict(q=100_000, k=16, n=8)
SIM_AXES = {"q": (10_000, 100_000, 1_000_000), "n": (4, 8, 16, 32), "k": (4, 16, 64)}
# (preset, rollouts per prompt, max new tokens)
GRPO_CASES = [
    ("tiny-arith-ttrl", 8, 6),
    ("tiny-arith-ttrl", 16, 6),
    ("tiny-arith-ttrl", 32, 6),
    ("tiny-reason-ttrl", 8, 16),
    ("tiny-reason-ttrl", 8, 32),
    ("tiny-reason-ttrl", 8, 64),
]


def sim_row(q: int, k: int, n: int, repeats: int) -> tuple[float, float]:
    """(median seconds per step, peak MiB of numpy temporaries in one step)."""
    from sim.fast import binary_advantage_table, tabular_majority_step

    z0 = np.random.default_rng(0).standard_normal((k, q)).astype(np.float32)
    z = z0.copy()
    rng = np.random.default_rng(1)
    table = binary_advantage_table(n)
    times = []
    for r in range(repeats + 1):
        np.copyto(z, z0)
        t0 = time.perf_counter()
        tabular_majority_step(z, n, 0.1, rng, table=table)
        if r:
            times.append(time.perf_counter() - t0)
    np.copyto(z, z0)
    tracemalloc.start()
    tabular_majority_step(z, n, 0.1, rng, table=table)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return median(times), peak / 2**20


def grpo_child(preset_name: str, n: int, max_new: int, steps: int) -> None:
    import resource

    import torch

    from empirical.config import preset
    from empirical.train import build_trainer

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = preset(preset_name).replace(
            out_dir=tmp, progress=False, log_kl=False, n_rollouts=n, rollout_batch_size=16 * n,
            max_new_tokens=max_new, torch_threads=1,
        )  # fmt: skip
        trainer = build_trainer(cfg)
        built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
        times, lengths = [], []
        for i in range(2 + steps):
            out = trainer.train_step()
            if i >= 2:
                times.append(out["time/step"])
                lengths.append(out["response_length"])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {
        "step": median(times),
        "length": float(np.mean(lengths)),
        "rss_mib": rss,
        "built_mib": built,
    }
    print(json.dumps(row))


def grpo_row(preset_name: str, n: int, max_new: int, steps: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--_grpo",
        preset_name,
        str(n),
        str(max_new),
        "--grpo-steps",
        str(steps),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="simulator steps per row")
    ap.add_argument("--grpo-steps", type=int, default=4, help="timed GRPO steps per row")
    ap.add_argument("--skip-grpo", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    ap.add_argument("--_grpo", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._grpo:
        name, n, max_new = args._grpo
        grpo_child(name, int(n), int(max_new), args.grpo_steps)
        return
    load = os.getloadavg()
    lines = []
    lines.append(f"Machine: {cpu_line()}; numpy {np.__version__}.")
    lines.append("")
    lines.append("**Simulator step** (`sim.fast.tabular_majority_step`, majority voting, float32; one axis varied "
                 f"from Q = {SIM_BASE['q']:,}, K = {SIM_BASE['k']}, N = {SIM_BASE['n']}; median of "
                 f"{args.repeats} steps):")  # fmt: skip
    lines.append("")
    lines.append("| Q | K | N | ms / step | ns per question | peak numpy temporaries (MiB) |")
    lines.append("|---:|---:|---:|---:|---:|---:|")
    seen = set()
    for axis, values in SIM_AXES.items():
        for v in values:
            case = {**SIM_BASE, axis: v}
            key = (case["q"], case["k"], case["n"])
            if key in seen:
                continue
            seen.add(key)
            seconds, peak = sim_row(*key, args.repeats)
            q, k, n = key
            lines.append(
                f"| {q:,} | {k} | {n} | {1e3 * seconds:.2f} | {1e9 * seconds / q:.0f} | {peak:.1f} |"
            )
    if not args.skip_grpo:
        lines.append("")
        lines.append("**GRPO step** (`empirical`, tiny Qwen3, fp32, 1 torch thread, 16 prompts; each row a fresh "
                     f"process, median of {args.grpo_steps} steps after 2 warm-up steps):")  # fmt: skip
        lines.append("")
        lines.append("| task | rollouts per prompt | rollouts per step | max new tokens | mean response length | "
                     "s / step | ms per rollout | peak RSS (MiB) | of which the steps add (MiB) |")  # fmt: skip
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, n, max_new in GRPO_CASES:
            row = grpo_row(name, n, max_new, args.grpo_steps)
            task = name.split("-")[1]
            lines.append(f"| {task} | {n} | {16 * n} | {max_new} | {row['length']:.1f} | {row['step']:.3f} | "
                         f"{1e3 * row['step'] / (16 * n):.2f} | {row['rss_mib']:.0f} | "
                f"{row['rss_mib'] - row['built_mib']:.0f} |")  # fmt: skip
    lines.append("")
    lines.append(f"Measured {time.strftime('%Y-%m-%d')}; {load_line(load)}.")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
