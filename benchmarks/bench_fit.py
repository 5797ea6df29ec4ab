"""Speed of ``sharpen.theory.fit_sharpening`` against a per-trajectory ``scipy.optimize.curve_fit`` loop.

Synthetic data: 17,000 trajectories x 100 steps (one DAPO-17k epoch of prompts), binomial noise
with n = 8 samples per point. The vectorised fit runs on all of them; curve_fit (least squares
on the probability scale, a common hand-rolled choice) runs on a subset and is extrapolated.

    .venv/bin/python benchmarks/bench_fit.py [--subset 300]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import optimize, special

from sharpen.theory import fit_sharpening, majority_prob


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=17_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--subset", type=int, default=300, help="trajectories given to curve_fit")
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    k = np.arange(args.steps, dtype=np.float64)
    p0 = rng.uniform(0.1, 0.6, size=(args.trajectories, 1))
    beta = rng.uniform(5.0, 50.0, size=(args.trajectories, 1))
    obs = rng.binomial(args.n_samples, majority_prob(p0, beta, k)) / args.n_samples

    for method in ("binomial", "logit_wls"):
        fit_sharpening(k, obs[:100], n_samples=args.n_samples, method=method)  # warm-up
        times = []
        for _ in range(args.repeats):  # the first full-size call also pays for fresh memory pages
            t0 = time.perf_counter()
            fit = fit_sharpening(k, obs, n_samples=args.n_samples, method=method)
            times.append(time.perf_counter() - t0)
        dt = float(np.median(times))
        print(f"  {method}: first call {times[0]:.3f} s, median of {args.repeats} {dt:.3f} s")
        err = np.median(np.abs(fit.beta / beta[:, 0] - 1))
        print(
            f"fit_sharpening[{method}]: {args.trajectories} x {args.steps} in {dt:.3f} s "
            f"({dt / args.trajectories * 1e6:.1f} us/trajectory); median |beta/true - 1| = {err:.3f}; "
            f"converged {fit.converged.mean():.4f}"
        )
        if method == "binomial":
            fast_per_traj = dt / args.trajectories

    def model(x, logit_p0, slope):
        return special.expit(logit_p0 + slope * x)

    sub = obs[: args.subset]
    t0 = time.perf_counter()
    slopes = np.empty(args.subset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, row in enumerate(sub):
            try:
                (_, s), _ = optimize.curve_fit(model, k, row, p0=(0.0, 0.1), maxfev=2000)
            except RuntimeError:
                s = np.nan
            slopes[i] = s
    dt = time.perf_counter() - t0
    per_traj = dt / args.subset
    err = np.nanmedian(np.abs(1 / slopes / beta[: args.subset, 0] - 1))
    print(
        f"curve_fit loop: {args.subset} trajectories in {dt:.3f} s ({per_traj * 1e6:.1f} us/trajectory; "
        f"{per_traj * args.trajectories:.1f} s extrapolated to {args.trajectories}); "
        f"median |beta/true - 1| = {err:.3f}"
    )
    print(f"speed-up of fit_sharpening[binomial] per trajectory: {per_traj / fast_per_traj:.0f}x")


if __name__ == "__main__":
    main()
