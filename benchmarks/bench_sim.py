"""Speed of one sampled-GRPO step (tabular, majority voting, std-normalised advantages, SGD), side by side.

Case: Q = 100,000 questions, K = 16 answers, N = 8 rollouts. The reference is plain numpy: it samples every
rollout (inverse CDF, float64), counts and scatters with ``np.add.at``. The fast path is
:func:`sim.fast.tabular_majority_step` (float32, answer counts sampled exactly, transposed layout).
The sim-grid timing (5 rewards x 4 settings x 3 seeds x 1,000 steps) is not implemented yet.

Run: ``.venv/bin/python benchmarks/bench_sim.py [--repeats 20] [--skip-grid]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sim.fast import binary_advantage_table, tabular_majority_step

Q, K, N, LR = 100_000, 16, 8, 0.1


def reference_step(z: np.ndarray, rng: np.random.Generator) -> None:
    """Plain numpy: sample all Q x N rollouts, vote, advantages, scatter with np.add.at."""
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    cdf = np.cumsum(p, axis=1)
    u = rng.random((Q, N))
    y = np.empty((Q, N), dtype=np.int64)
    for j in range(N):
        y[:, j] = np.minimum((u[:, j : j + 1] >= cdf).sum(axis=1), K - 1)
    rows = np.repeat(np.arange(Q), N)
    counts = np.zeros((Q, K), dtype=np.int64)
    np.add.at(counts, (rows, y.ravel()), 1)
    winner = counts.argmax(axis=1)
    r = (y == winner[:, None]).astype(np.float64)
    a = (r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, ddof=1, keepdims=True) + 1e-6)
    g = np.zeros_like(z)
    np.add.at(g, (rows, y.ravel()), a.ravel())
    g -= a.sum(axis=1, keepdims=True) * p
    z += LR * g / N


def _time(fn, repeats: int) -> np.ndarray:
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--skip-grid", action="store_true")
    args = ap.parse_args()
    rng0 = np.random.default_rng(0)
    z0 = rng0.standard_normal((Q, K))
    z_ref = z0.copy()
    zt = np.ascontiguousarray(z0.T, dtype=np.float32)
    r1, r2 = np.random.default_rng(1), np.random.default_rng(2)
    # interleave the two so machine load hits both alike
    t_ref, t_fast = [], []
    table = binary_advantage_table(N)
    for _ in range(args.repeats):
        t_ref.append(_time(lambda: reference_step(z_ref, r1), 1).mean())
        t_fast.append(_time(lambda: tabular_majority_step(zt, N, LR, r2, table=table), 1).mean())
    t_ref, t_fast = np.asarray(t_ref), np.asarray(t_fast)
    print(
        f"case: Q={Q} K={K} N={N}, tabular, majority voting, GRPO std-normalised, SGD; {args.repeats} steps each"
    )
    print(
        f"reference (numpy, every rollout, np.add.at): median {1e3 * np.median(t_ref):.1f} ms/step"
    )
    print(
        f"fast (float32 counts, sim.fast):             median {1e3 * np.median(t_fast):.1f} ms/step"
    )
    print(
        f"ratio reference / fast: {np.median(t_ref) / np.median(t_fast):.1f}x (median of per-step ratios "
        f"{np.median(t_ref / t_fast):.1f}x)"
    )
    a, b = zt.copy(), zt.copy()
    tabular_majority_step(a, N, LR, np.random.default_rng(7))
    tabular_majority_step(b, N, LR, np.random.default_rng(7))
    print(f"same seed -> bit-identical: {bool(np.array_equal(a, b))}")
    if not args.skip_grid:
        print("sim grid (5 rewards x 4 settings x 3 seeds x 1,000 steps): not implemented yet")


if __name__ == "__main__":
    main()
