"""Speed of one sampled-GRPO step (tabular, majority voting, std-normalised advantages, SGD), side by side.

Case: Q = 100,000 questions, K = 16 answers, N = 8 rollouts. The reference is plain numpy: it samples every
rollout (inverse CDF, float64), counts and scatters with ``np.add.at``. The fast path is
:func:`sim.fast.tabular_majority_step` (float32, answer counts sampled exactly, transposed layout, uint8 tie-broken
plurality winner). The two are timed interleaved, step by step, so machine load hits both alike; the ratio is
printed from the same run, with the fast step's cost split into its pieces.

Then the sim grid (:func:`sim.grid.run_grid`: 5 rewards x 4 settings x 3 seeds x 1,000 steps on 64 questions x 8
rollouts), timed once end to end (target < 60 s on 2 cores).

Run: ``.venv/bin/python benchmarks/bench_sim.py [--repeats 20] [--skip-grid]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sim.fast import (
    _plurality_winners_t,
    binary_advantage_table,
    sample_counts_t,
    tabular_majority_step,
)

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
    # the fast step's pieces
    rng = np.random.default_rng(3)
    e = zt - zt.max(axis=0)
    np.exp(e, out=e)
    counts = sample_counts_t(e, N, rng)

    def exp_piece():
        x = zt - zt.max(axis=0)
        np.exp(x, out=x)

    pieces = {
        "max + exp (K, Q) float32": exp_piece,
        "sample counts (inverse CDF, uint8)": lambda: sample_counts_t(e, N, rng),
        "plurality winner (uint8, uniform ties)": lambda: _plurality_winners_t(counts, rng),
    }
    for name, fn in pieces.items():
        print(f"  piece: {name:<40s} median {1e3 * np.median(_time(fn, args.repeats)):.2f} ms")
    if not args.skip_grid:
        from sim.experiments.grid import GridConfig, run_grid

        cfg = GridConfig()
        t0 = time.perf_counter()
        res = run_grid(cfg)
        dt = time.perf_counter() - t0
        n_runs = len(res.verdict.numbers["runs"])
        print(
            f"sim grid: {len(cfg.rewards)} rewards x {len(cfg.settings)} settings x {cfg.seeds} seeds = {n_runs} runs "
            f"x {cfg.steps} steps, {cfg.prior.n_questions} questions x {cfg.n_rollouts} rollouts: {dt:.1f} s "
            f"(target < 60 s)"
        )


if __name__ == "__main__":
    main()
