"""GPU check: train the tiny preset on CUDA with the ``hf`` backend in bf16 and check that the majority
probability of the probe questions rises. Needs torch with CUDA and transformers; no network.

    python scripts/gpu_check.py            # a few minutes at most; prints a JSON summary, exit 1 on failure
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import numpy as np
import torch


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available", file=sys.stderr)
        return 2
    from empirical.config import preset
    from empirical.train import train
    from sharpen.records import load_run

    out = tempfile.mkdtemp(prefix="sharpen-gpu-check-")
    cfg = preset("tiny-arith-ttrl").replace(
        device="cuda", precision="bfloat16", steps=100, lr=1e-4, probe_every=25, eval_every=50,
        checkpoint_every=0, progress=False, out_dir=out,
    )  # fmt: skip
    start = time.perf_counter()
    run = load_run(train(cfg))
    wall = time.perf_counter() - start
    steps = sorted({r["step"] for r in run.probes})
    p_maj = {
        s: float(np.mean([r["p_majority"] for r in run.probes if r["step"] == s])) for s in steps
    }
    summary = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "wall_s": round(wall, 1),
        "median_step_s": float(np.median([m["time/step"] for m in run.metrics])),
        "p_majority_by_step": p_maj,
        "heldout": run.evals,
        "run_dir": out,
    }
    ok = p_maj[steps[-1]] > p_maj[0]
    summary["majority_probability_rises"] = ok
    print(json.dumps(summary, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
