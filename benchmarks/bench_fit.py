"""Speed of ``sharpen.theory.fit_sharpening`` against the strongest plain rivals, first call and later calls.

Synthetic data: 17,000 trajectories x 100 steps (one DAPO-17k epoch of prompts), binomial noise with n = 8
samples per point. Rivals, both vectorised over all trajectories:

* **Newton** -- the binomial maximum-likelihood fit of ``logit p = a + s k`` by 8 plain Newton steps (closed-form
  2 x 2 solves) from the closed-form logit fit; no step control, no uncertainty, no goodness of fit.
* **closed-form logit** -- one weighted least-squares fit of the continuity-corrected empirical logits.

``fit_sharpening`` also returns standard errors, confidence intervals, R^2 and dispersion, guards separated
series and halves overshooting steps, so it does more than either rival; the ratios say what that costs.

*First call* is what ``sharpen fit`` pays: a fresh process, data made, then one fit (fresh temporaries fault their
pages in on first touch). It is timed in subprocesses, alternating ``fit_sharpening`` and Newton. *Later calls*
are timed in this process, interleaved. Goals (sharpen's performance targets): first call <= 1.3x later calls, and later calls
<= 1.2x the Newton fit.

    .venv/bin/python benchmarks/bench_fit.py                 # about 1 minute
    .venv/bin/python benchmarks/bench_fit.py --repeats 5 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from _timing import Goal, cpu_line, interleave, load_line, median
from scipy import special

from sharpen.theory import fit_sharpening, majority_prob


def make_data(trajectories: int, steps: int, n: int):
    rng = np.random.default_rng(0)
    k = np.arange(steps, dtype=np.float64)
    p0 = rng.uniform(0.1, 0.6, size=(trajectories, 1))
    beta = rng.uniform(5.0, 50.0, size=(trajectories, 1))
    obs = rng.binomial(n, majority_prob(p0, beta, k)) / n
    return k, obs, beta[:, 0]


def logit_fit(k: np.ndarray, p: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form WLS of continuity-corrected empirical logits on k, weights n p (1 - p): (slope, intercept)."""
    pc = np.clip(p, 0.5 / n, 1 - 0.5 / n)
    y = np.log(pc / (1 - pc))
    w = n * pc * (1 - pc)
    sw = w.sum(axis=1)
    kbar = (w * k).sum(axis=1) / sw
    ybar = (w * y).sum(axis=1) / sw
    dk = k - kbar[:, None]
    slope = (w * dk * (y - ybar[:, None])).sum(axis=1) / (w * dk * dk).sum(axis=1)
    return slope, ybar - slope * kbar


def newton_fit(k: np.ndarray, p: np.ndarray, n: float, iters: int = 8):
    """Binomial MLE of logit p = a + s k by ``iters`` plain Newton steps from :func:`logit_fit`: (slope, intercept)."""
    slope, intercept = logit_fit(k, p, n)
    k2 = k * k
    with np.errstate(all="ignore"):
        for _ in range(iters):
            mu = special.expit(intercept[:, None] + slope[:, None] * k)
            r = n * (p - mu)
            v = n * mu * (1 - mu)
            g0, g1 = r.sum(axis=1), (r * k).sum(axis=1)
            h00, h01, h11 = v.sum(axis=1), (v * k).sum(axis=1), (v * k2).sum(axis=1)
            det = h00 * h11 - h01 * h01
            intercept = intercept + (h11 * g0 - h01 * g1) / det
            slope = slope + (h00 * g1 - h01 * g0) / det
    return slope, intercept


def contenders(k, obs, n):
    return {
        "fit_sharpening[binomial]": lambda: fit_sharpening(k, obs, n_samples=n).beta,
        "fit_sharpening[logit_wls]": lambda: (
            fit_sharpening(k, obs, n_samples=n, method="logit_wls").beta
        ),
        "Newton (8 steps)": lambda: 1 / newton_fit(k, obs, n)[0],
        "closed-form logit": lambda: 1 / logit_fit(k, obs, n)[0],
    }


def first_calls(name: str, args) -> list[float]:
    """In a fresh subprocess: make the data, then time 3 calls of ``name`` (the first is the first call)."""
    cmd = [sys.executable, __file__, "--_child", name, "--trajectories", str(args.trajectories),
           "--steps", str(args.steps), "--n-samples", str(args.n_samples)]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def child(name: str, args) -> None:
    k, obs, _ = make_data(args.trajectories, args.steps, args.n_samples)
    fn = contenders(k, obs, args.n_samples)[name]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    print(json.dumps(times))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trajectories", type=int, default=17_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved later calls per contender"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="fresh processes per first-call contender"
    )
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        child(args._child, args)
        return
    load = os.getloadavg()
    k, obs, beta = make_data(args.trajectories, args.steps, args.n_samples)
    fns = contenders(k, obs, args.n_samples)
    errors = {}
    for name, fn in fns.items():
        est = fn()
        errors[name] = float(np.nanmedian(np.abs(est / beta - 1)))
    times = interleave(fns, args.repeats, warmup=0)
    later = {name: median(t) for name, t in times.items()}
    first: dict[str, list[list[float]]] = {"fit_sharpening[binomial]": [], "Newton (8 steps)": []}
    for r in range(args.rounds):  # alternate which contender's fresh process runs first
        for name in list(first)[:: 1 if r % 2 == 0 else -1]:
            first[name].append(first_calls(name, args))

    print(f"machine: {cpu_line()}; numpy {np.__version__}; {load_line(load)}")
    print(
        f"data: {args.trajectories} trajectories x {args.steps} steps, binomial noise n = {args.n_samples}"
    )
    print("later calls (this process, interleaved, median of "
          f"{args.repeats}) and accuracy (median |beta / true - 1|):")  # fmt: skip
    for name, seconds in later.items():
        print(f"  {name:<27s} {seconds:7.3f} s   error {errors[name]:.3f}")
    ours = later["fit_sharpening[binomial]"]
    for name in ("Newton (8 steps)", "closed-form logit"):
        print(f"ratio fit_sharpening[binomial] / {name}: {ours / later[name]:.2f}x")
    print(f"first calls (fresh process, data made, then 3 calls; {args.rounds} processes each):")
    for name, runs in first.items():
        calls = ", ".join("[" + ", ".join(f"{t:.3f}" for t in run) + "]" for run in runs)
        print(f"  {name:<27s} {calls}")
    fs_runs = first["fit_sharpening[binomial]"]
    fs_first = median([run[0] for run in fs_runs])
    fs_later = median([t for run in fs_runs for t in run[1:]])
    print(f"fit_sharpening[binomial]: first call {fs_first:.3f} s, later calls in the same processes "
          f"{fs_later:.3f} s")  # fmt: skip
    print(Goal("fit_sharpening first call / later calls", fs_first / fs_later, 1.3))
    print(Goal("fit_sharpening later calls / Newton fit", ours / later["Newton (8 steps)"], 1.2))


if __name__ == "__main__":
    main()
