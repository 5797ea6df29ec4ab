"""Speed of one sampled-GRPO simulator step (tabular, majority voting, std-normalised advantages, SGD), against
the strongest rivals, interleaved in one process.

Case: Q = 100,000 questions, K = 16 answers, N = 8 rollouts (``--q/--k/--n`` change it). Contenders:

* **reference** -- the bundled plain numpy step: float64 ``(Q, K)``, every rollout sampled, ``np.add.at``.
* **numpy (K, Q)** -- a strong numpy step in the fast path's layout and precision: float32 ``(K, Q)``, row-wise
  cumulative sums, every rollout sampled by one broadcast comparison, one-hot counts, a jittered ``argmax``
  for uniform tie-breaking, and the update written through the counts.
* **numba (K, Q)** -- when ``numba`` is importable: numpy's max/exp (vectorised; numba has no vectorised
  ``exp`` without SVML) and a compiled serial counting kernel over column blocks (cumulative sums, counts,
  plurality winner with uniform ties, update) fed by the same ``numpy.random.Generator`` uniforms.
  ``pip install numba`` to include it; it is skipped with a note when absent.
* **sim.fast** -- :func:`sim.fast.tabular_majority_step` (float32, answer counts sampled exactly).

Each repetition resets every contender to the same logits, then runs the contenders once each in a rotating
order, so load from other processes hits all alike; ratios are between medians of the same run. The target
printed at the end: ``sim.fast`` within 1.25x of the best compiled kernel in the run.

Then (``--grid``) the sim grid (:func:`sim.experiments.grid.run_grid`), timed once end to end (target < 60 s).

    .venv/bin/python benchmarks/bench_sim.py                  # about 30 s
    .venv/bin/python benchmarks/bench_sim.py --repeats 40 --grid
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from _timing import Goal, cpu_line, interleave, load_line, median

from sim.fast import (
    _plurality_winners_t,
    binary_advantage_table,
    sample_counts_t,
    tabular_majority_step,
)

LR = 0.1


def reference_step(z: np.ndarray, n: int, rng: np.random.Generator) -> None:
    """Plain numpy: sample all Q x N rollouts, vote, advantages, scatter with np.add.at (float64, (Q, K))."""
    q, k = z.shape
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    cdf = np.cumsum(p, axis=1)
    u = rng.random((q, n))
    y = np.empty((q, n), dtype=np.int64)
    for j in range(n):
        y[:, j] = np.minimum((u[:, j : j + 1] >= cdf).sum(axis=1), k - 1)
    rows = np.repeat(np.arange(q), n)
    counts = np.zeros((q, k), dtype=np.int64)
    np.add.at(counts, (rows, y.ravel()), 1)
    winner = counts.argmax(axis=1)
    r = (y == winner[:, None]).astype(np.float64)
    a = (r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, ddof=1, keepdims=True) + 1e-6)
    g = np.zeros_like(z)
    np.add.at(g, (rows, y.ravel()), a.ravel())
    g -= a.sum(axis=1, keepdims=True) * p
    z += LR * g / n


def numpy_kq_step(zt: np.ndarray, n: int, rng: np.random.Generator, table) -> np.ndarray:
    """A strong numpy step in the (K, Q) float32 layout that samples every rollout (see the module docstring)."""
    k, q = zt.shape
    a_pos_t, a_neg_t = table
    e = zt - zt.max(axis=0)
    np.exp(e, out=e)
    cdf = np.empty_like(e)
    cdf[0] = e[0]
    # row-wise cumulative sum (np.cumsum(axis=0) is ~20x slower on this layout)
    for i in range(1, k):
        np.add(cdf[i - 1], e[i], out=cdf[i])
    u = rng.random((n, q), dtype=np.float32) * cdf[-1]
    # (N, Q) answer of each rollout
    y = (u[:, None, :] >= cdf[None, :-1, :]).sum(axis=1, dtype=np.uint8)
    counts = (y[None, :, :] == np.arange(k, dtype=np.uint8)[:, None, None]).sum(
        axis=1, dtype=np.uint8
    )
    key = rng.random((k, q), dtype=np.float32)
    key *= 0.5
    key += counts  # the plurality answer, ties broken uniformly by the jitter
    winner = key.argmax(axis=0)
    cols = np.arange(q)
    c_win = counts[winner, cols]
    scale = LR / n
    a_neg = (a_neg_t * scale).astype(np.float32)[c_win]
    a_pos = (a_pos_t * scale).astype(np.float32)[c_win]
    zt += counts * a_neg  # grad = c * A / N (group advantages sum to zero)
    zt[winner, cols] += c_win * (a_pos - a_neg)
    return winner


try:  # optional rival
    import numba
except ImportError:
    numba = None

if numba is not None:

    @numba.njit(cache=True, boundscheck=False)
    def _counting_kernel(zt, e, u, tie_u, a_pos, a_neg, block):  # pragma: no cover - compiled
        k_, q_ = zt.shape
        n = u.shape[0]
        cdf = np.empty((k_, block), np.float32)
        x = np.empty((n, block), np.float32)
        cnt = np.empty((k_, block), np.int32)
        below = np.empty(block, np.int32)
        prev = np.empty(block, np.int32)
        top = np.empty(block, np.int32)
        n_tied = np.empty(block, np.int32)
        rank = np.empty(block, np.int32)
        run = np.empty(block, np.int32)
        win = np.empty(block, np.int32)
        a_n = np.empty(block, np.float32)
        extra = np.empty(block, np.float32)
        winners = np.empty(q_, np.int64)
        for s0 in range(0, q_, block):
            b = min(block, q_ - s0)
            c0, e0 = cdf[0], e[0, s0 : s0 + b]
            for i in range(b):
                c0[i] = e0[i]
            for kk in range(1, k_):
                ck, cp, ek = cdf[kk], cdf[kk - 1], e[kk, s0 : s0 + b]
                for i in range(b):
                    ck[i] = cp[i] + ek[i]
            total = cdf[k_ - 1]
            for j in range(n):
                xj, uj = x[j], u[j, s0 : s0 + b]
                for i in range(b):
                    xj[i] = uj[i] * total[i]
            for i in range(b):
                prev[i] = 0
                top[i] = 0
                n_tied[i] = 0
                run[i] = 0
                win[i] = 0
            for kk in range(k_):
                ck, ckk = cdf[kk], cnt[kk]
                if kk < k_ - 1:
                    for i in range(b):
                        below[i] = 0
                    for j in range(n):
                        xj = x[j]
                        for i in range(b):
                            below[i] += np.int32(xj[i] < ck[i])
                else:
                    for i in range(b):
                        below[i] = n
                for i in range(b):
                    c = below[i] - prev[i]
                    prev[i] = below[i]
                    ckk[i] = c
                    top[i] = max(top[i], c)
            for kk in range(k_):
                ckk = cnt[kk]
                for i in range(b):
                    n_tied[i] += np.int32(ckk[i] == top[i])
            for i in range(b):
                rank[i] = np.int32(tie_u[s0 + i] * n_tied[i])  # uniform rank among the tied answers
                a_n[i] = a_neg[top[i]]
                extra[i] = top[i] * (a_pos[top[i]] - a_neg[top[i]])
            for kk in range(k_):
                ckk = cnt[kk]
                for i in range(b):
                    run[i] += np.int32(ckk[i] == top[i])
                    win[i] += np.int32(run[i] <= rank[i])
            for kk in range(k_):
                ckk, zk = cnt[kk], zt[kk, s0 : s0 + b]
                for i in range(b):
                    zk[i] += ckk[i] * a_n[i] + (extra[i] if win[i] == kk else np.float32(0.0))
            for i in range(b):
                winners[s0 + i] = win[i]
        return winners


def numba_step(zt: np.ndarray, n: int, rng: np.random.Generator, table) -> np.ndarray:
    a_pos_t, a_neg_t = table
    scale = LR / n
    e = zt - zt.max(axis=0)
    np.exp(e, out=e)
    u = rng.random((n, zt.shape[1]), dtype=np.float32)
    tie_u = rng.random(zt.shape[1])
    a_pos = (a_pos_t * scale).astype(np.float32)
    a_neg = (a_neg_t * scale).astype(np.float32)
    return _counting_kernel(zt, e, u, tie_u, a_pos, a_neg, 512)


def pieces(zt: np.ndarray, n: int, repeats: int) -> dict[str, float]:
    """Median seconds of the fast step's pieces (sequential, after the interleaved run)."""
    rng = np.random.default_rng(3)
    e = zt - zt.max(axis=0)
    np.exp(e, out=e)
    counts = sample_counts_t(e, n, rng)

    def exp_piece():
        x = zt - zt.max(axis=0)
        np.exp(x, out=x)

    fns = {
        "max + exp (K, Q) float32": exp_piece,
        "uniforms (N, Q) float32": lambda: rng.random((n, zt.shape[1]), dtype=np.float32),
        "sample counts (incl. uniforms)": lambda: sample_counts_t(e, n, rng),
        "plurality winner (uniform ties)": lambda: _plurality_winners_t(counts, rng),
    }
    return {name: median(t) for name, t in interleave(fns, repeats).items()}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=20, help="timed steps per contender")
    ap.add_argument("--q", type=int, default=100_000, help="questions")
    ap.add_argument("--k", type=int, default=16, help="answers per question")
    ap.add_argument("--n", type=int, default=8, help="rollouts per question")
    ap.add_argument("--grid", action="store_true", help="also time the sim grid end to end")
    args = ap.parse_args()
    q, k, n = args.q, args.k, args.n
    load = os.getloadavg()
    z0 = np.random.default_rng(0).standard_normal((q, k))
    zt0 = np.ascontiguousarray(z0.T, dtype=np.float32)
    table = binary_advantage_table(n)
    state = {"ref": z0.copy(), "kq": zt0.copy(), "numba": zt0.copy(), "fast": zt0.copy()}
    rngs = {name: np.random.default_rng(i + 1) for i, name in enumerate(state)}

    def reset(name):
        return lambda: np.copyto(state[name], z0 if name == "ref" else zt0)

    contenders = {
        "reference": lambda: reference_step(state["ref"], n, rngs["ref"]),
        "numpy (K, Q)": lambda: numpy_kq_step(state["kq"], n, rngs["kq"], table),
        "sim.fast": lambda: tabular_majority_step(state["fast"], n, LR, rngs["fast"], table=table),
    }
    setup = {"reference": reset("ref"), "numpy (K, Q)": reset("kq"), "sim.fast": reset("fast")}
    if numba is not None:
        kernel_call = lambda: numba_step(state["numba"], n, rngs["numba"], table)  # noqa: E731
        contenders["numba (K, Q)"] = kernel_call
        setup["numba (K, Q)"] = reset("numba")
        kernel_call()  # compile (or load the cache) before timing
    times = interleave(contenders, args.repeats, warmup=2, setup=setup)
    med = {name: median(t) for name, t in times.items()}
    fast = med["sim.fast"]

    print(f"machine: {cpu_line()}; numpy {np.__version__}; {load_line(load)}")
    print(f"case: Q={q} K={k} N={n}, tabular, majority voting, GRPO std-normalised, SGD; "
          f"{args.repeats} interleaved steps per contender, each from the same logits")  # fmt: skip
    for name, seconds in med.items():
        spread = np.percentile(times[name], [25, 75]) * 1e3
        print(
            f"  {name:<14s} median {1e3 * seconds:7.2f} ms/step  (IQR {spread[0]:.2f}-{spread[1]:.2f})"
        )
    if numba is None:
        print("  numba (K, Q)   skipped: numba is not installed (pip install numba to include it)")
    for name in med:
        if name != "sim.fast":
            print(f"ratio {name} / sim.fast: {med[name] / fast:.2f}x")
    rivals = {name: s for name, s in med.items() if name not in ("sim.fast", "reference")}
    best = min(rivals, key=rivals.get)
    print(f"strongest rival: {best}; sim.fast is {rivals[best] / fast:.2f}x its speed")
    if numba is not None:
        print(
            Goal(
                "sim.fast time / best compiled kernel (numba) time",
                fast / med["numba (K, Q)"],
                1.25,
            )
        )
    else:
        print(
            "goal: sim.fast within 1.25x of the best compiled kernel: not measured (numba absent)"
        )
    a, b = zt0.copy(), zt0.copy()
    tabular_majority_step(a, n, LR, np.random.default_rng(7))
    tabular_majority_step(b, n, LR, np.random.default_rng(7))
    print(f"sim.fast: same seed -> bit-identical: {bool(np.array_equal(a, b))}")
    for name, seconds in pieces(zt0, n, args.repeats).items():
        print(f"  piece of sim.fast: {name:<34s} median {1e3 * seconds:.2f} ms")
    heavy = sorted(m for m in ("torch", "scipy") if m in sys.modules)
    print(f"modules loaded by this script: {', '.join(heavy) or 'neither torch nor scipy'}"
          " (the advantage table is built once through sharpen.grpo)")  # fmt: skip
    if args.grid:
        from sim.experiments.grid import GridConfig, run_grid

        cfg = GridConfig()
        t0 = time.perf_counter()
        res = run_grid(cfg)
        dt = time.perf_counter() - t0
        n_runs = len(res.verdict.numbers["runs"])
        print(
            f"sim grid: {len(cfg.rewards)} rewards x {len(cfg.settings)} settings x {cfg.seeds} seeds = {n_runs} "
            f"runs x {cfg.steps} steps, {cfg.prior.n_questions} questions x {cfg.n_rollouts} rollouts: "
            f"{dt:.1f} s (target < 60 s)"
        )


if __name__ == "__main__":
    main()
