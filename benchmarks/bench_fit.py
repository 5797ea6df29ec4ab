"""Speed of ``sharpen.theory.fit_sharpening`` against the strongest plain rivals, first call and later calls.

Synthetic data: 17,000 trajectories x 100 steps (one DAPO-17k epoch of prompts), binomial noise with n = 8
samples per point. Rivals, both vectorised over all trajectories:

* **Newton** -- the binomial maximum-likelihood fit of ``logit p = a + s k`` by plain Newton steps (closed-form
  2 x 2 solves) from the closed-form logit fit; no step control, no uncertainty, no goodness of fit. Two
  versions: **8 steps**, and **to the same 1e-9** -- as many steps as it takes until every trajectory meets
  ``fit_sharpening``'s own stopping rule, i.e. the same accuracy target (8 steps leave some trajectories short
  of the MLE; the script prints how many and by how much, next to each contender's error against the truth).
* **closed-form logit** -- one weighted least-squares fit of the continuity-corrected empirical logits.

``fit_sharpening`` also returns standard errors, confidence intervals, R^2 and dispersion, guards separated
series and halves overshooting steps, so it does more than either rival; the ratios say what that costs.

*First call* is what ``sharpen fit`` pays: a fresh process, data made, then one fit (fresh temporaries fault their
pages in on first touch). It is timed in subprocesses, alternating ``fit_sharpening`` and Newton. *Later calls*
are timed in this process, interleaved (same input, same process, same threads); each ratio is given of the
medians and as the median of the per-round ratios (a round runs every contender once, so slow drifts of the
machine's load cancel; the goals use this one).
Goals (sharpen's performance targets): first call <= 1.3x later calls, and later calls <= 1.2x the Newton fit,
stated against both versions.

Then **``sharpen fit`` end to end**: a run folder of 200 probe questions x 1000 probe steps (200,000 probe
records, with ``metrics.jsonl`` and ``eval.jsonl``) is written by :class:`sharpen.records.RunWriter`
(:func:`make_probe_run`), and ``python -m sharpen.cli fit RUN_DIR`` is timed in fresh processes (wall and the
CPU time of the process, which load from other processes inflates less), with and without ``--no-figure``,
alternating, each with Python's bytecode cache filled by one untimed run first (as an installed package has it,
also where the environment sets ``PYTHONDONTWRITEBYTECODE``: :func:`_timing.bytecode_env`). Goal: <= 2 s wall with the figure. A breakdown timed in this process (warm) says where it goes.

    .venv/bin/python benchmarks/bench_fit.py                 # about 2 minutes (writing the run: ~20 s)
    .venv/bin/python benchmarks/bench_fit.py --repeats 5 --rounds 3
    .venv/bin/python benchmarks/bench_fit.py --cli-only --probe-run /tmp/probe_run   # keep the run for reuse
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _timing import Goal, bytecode_env, cpu_line, interleave, load_line, median
from scipy import special

from sharpen.records import (
    EVAL_FILE,
    LABEL_ACCURACY,
    PROBES_FILE,
    REWARD_ACCURACY,
    ProbeRecord,
    RunHeader,
    RunWriter,
)
from sharpen.theory import fit_sharpening, majority_prob

# fit_sharpening's IRLS stops where |ds| (1 + span of k) + |da| < 1e-9 (1 + |s| + |a|); the equal-accuracy rival
# runs its Newton steps until every trajectory meets the same rule.
FIT_TOL = 1e-9
NEWTON_TO_TOL = "Newton (to the same 1e-9)"


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


def newton_fit(k: np.ndarray, p: np.ndarray, n: float, iters: int = 8, tol: float | None = None):
    """Binomial MLE of logit p = a + s k by plain Newton steps from :func:`logit_fit`: ``iters`` steps, or with
    ``tol`` as many as it takes (at most 100) until every trajectory's step meets ``fit_sharpening``'s stopping
    rule ``|ds| (1 + span of k) + |da| < tol (1 + |s| + |a|)``. Returns (slope, intercept, steps taken)."""
    slope, intercept = logit_fit(k, p, n)
    k2 = k * k
    span = float(k.max() - k.min())
    steps = 0
    with np.errstate(all="ignore"):
        while steps < (iters if tol is None else 100):
            mu = special.expit(intercept[:, None] + slope[:, None] * k)
            r = n * (p - mu)
            v = n * mu * (1 - mu)
            g0, g1 = r.sum(axis=1), (r * k).sum(axis=1)
            h00, h01, h11 = v.sum(axis=1), (v * k).sum(axis=1), (v * k2).sum(axis=1)
            det = h00 * h11 - h01 * h01
            d_int, d_slope = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
            intercept, slope, steps = intercept + d_int, slope + d_slope, steps + 1
            step = np.abs(d_slope) * (1 + span) + np.abs(d_int)
            if tol is not None and (step < tol * (1 + np.abs(slope) + np.abs(intercept))).all():
                break
    return slope, intercept, steps


def contenders(k, obs, n):
    return {
        "fit_sharpening[binomial]": lambda: fit_sharpening(k, obs, n_samples=n).beta,
        "fit_sharpening[logit_wls]": lambda: (
            fit_sharpening(k, obs, n_samples=n, method="logit_wls").beta
        ),
        "Newton (8 steps)": lambda: 1 / newton_fit(k, obs, n)[0],
        NEWTON_TO_TOL: lambda: 1 / newton_fit(k, obs, n, tol=FIT_TOL)[0],
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


def make_probe_run(
    run_dir: str | os.PathLike,
    questions: int = 200,
    steps: int = 1000,
    samples: int = 16,
    seed: int = 0,
) -> Path:
    """Write a run folder as ``sharpen train`` would (:class:`~sharpen.records.RunWriter`): ``questions`` probe
    questions probed at every one of ``steps`` steps with ``samples`` sampled answers each (Theorem 1 curves with
    binomial noise; a tenth of the questions flip to another answer), per-step metrics whose reward accuracy
    rises, then falls to 0 within 100 steps from two thirds of the way, and a held-out evaluation every 50
    steps."""
    rng = np.random.default_rng(seed)
    w = RunWriter(run_dir)
    w.write_config(
        RunHeader(
            "empirical", reward="majority_voting", lr=1e-6, n_rollouts=8, steps=steps, seed=seed
        ),
        {"probe_every": 1, "probe_samples": samples},
    )
    k = np.arange(steps, dtype=np.float64)
    p0 = rng.uniform(0.2, 0.9, size=(questions, 1))
    beta = rng.uniform(50.0, 1000.0, size=(questions, 1))
    flip = rng.random(questions) < 0.1
    # p_k of the initial majority; for a flipped question the other answer sharpens instead
    p = np.where(flip[:, None], 1 - majority_prob(1 - p0, beta, k), majority_prob(p0, beta, k))
    share = rng.binomial(samples, p) / samples
    correct = rng.random(questions) < 0.7  # is the initial majority the correct answer
    accuracy = rng.binomial(samples, np.where(correct[:, None], p, 0.3 * (1 - p))) / samples
    collapse = 2 * steps // 3
    for s in range(steps):
        ra = (
            0.6 + 0.3 * s / collapse if s < collapse else 0.9 * max(0.0, 1.0 - (s - collapse) / 100)
        )
        w.log_metrics(s, {REWARD_ACCURACY: ra, LABEL_ACCURACY: 0.6})
        if s % 50 == 0:
            w.log_eval(s, "heldout", {"accuracy": 0.4 + 0.1 * (s < collapse)})
        records = []
        for q in range(questions):
            pi = float(share[q, s])
            leads = pi >= 0.5
            records.append(
                ProbeRecord(
                    step=s,
                    question_id=f"q{q}",
                    n_samples=samples,
                    majority_answer="7" if leads else "3",
                    p_majority=max(pi, 1.0 - pi),
                    initial_majority_answer="7",
                    p_initial_majority=pi,
                    label="7" if correct[q] else "5",
                    majority_correct=bool(correct[q]) if leads else False,
                    sample_accuracy=float(accuracy[q, s]),
                )
            )
        w.log_probes(records)
    return Path(run_dir)


def time_sharpen_fit(run_dir: Path, runs: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of ``python -m sharpen.cli fit run_dir`` in fresh processes, ``runs`` times with the
    figure and ``runs`` times with ``--no-figure``, alternating."""
    variants = {"sharpen fit": [], "sharpen fit --no-figure": ["--no-figure"]}
    out: dict[str, dict[str, list[float]]] = {v: {"wall": [], "cpu": []} for v in variants}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as cache:
        base = [sys.executable, "-m", "sharpen.cli", "fit", str(run_dir), "--out", tmp]
        env = bytecode_env(cache)
        subprocess.run(base, check=True, capture_output=True, env=env)  # fills the bytecode cache
        for r in range(runs):
            for name in list(variants)[:: 1 if r % 2 == 0 else -1]:
                cmd = base + variants[name]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                out[name]["wall"].append(time.perf_counter() - t0)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                out[name]["cpu"].append(cpu)
    return out


def fit_breakdown(run_dir: Path) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of each part of ``sharpen fit``, timed once in this process (numpy and the sharpen
    modules already imported; scipy and matplotlib are imported by the first part that needs them)."""
    from paper_figures.fit_report import write_report
    from sharpen.records import load_run
    from sharpen.run_analysis import analyze

    parts, state = {}, {}

    def timed(name, fn):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        parts[name] = (time.perf_counter() - t0, time.process_time() - c0)

    with tempfile.TemporaryDirectory() as tmp:
        timed("load_run (JSONL -> records)", lambda: state.update(run=load_run(run_dir)))
        timed(
            "analyze (trajectories, fits, collapse, early prediction)",
            lambda: state.update(res=analyze(state["run"])),
        )
        timed("free the records", lambda: state.pop("run"))
        timed("summary and report", lambda: write_report(state["res"], tmp, figure=False))
        timed(
            "summary, report and overlay figure (imports matplotlib)",
            lambda: write_report(state["res"], tmp, figure=True),
        )
    return parts


def report_sharpen_fit(args) -> None:
    """Write (or reuse) the 200 x 1000 probe run, time ``sharpen fit`` on it and print the goal."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.probe_run) if args.probe_run else Path(tmp) / "probe_run"
        if not (run_dir / PROBES_FILE).exists():
            t0 = time.perf_counter()
            make_probe_run(run_dir, args.probe_questions, args.probe_steps)
            print(f"wrote {run_dir} in {time.perf_counter() - t0:.1f} s")
        size = (run_dir / PROBES_FILE).stat().st_size / 2**20
        n_eval = (
            sum(1 for _ in (run_dir / EVAL_FILE).open()) if (run_dir / EVAL_FILE).exists() else 0
        )
        print(f"sharpen fit: {args.probe_questions} probe questions x {args.probe_steps} probe steps "
              f"({PROBES_FILE} {size:.0f} MiB, {n_eval} evaluations), {args.cli_runs} fresh process(es) each, bytecode cached")  # fmt: skip
        times = time_sharpen_fit(run_dir, args.cli_runs)
        for name, t in times.items():
            print(f"  {name:<25s} wall median {median(t['wall']):6.2f} s (min {min(t['wall']):.2f})   "
                  f"CPU median {median(t['cpu']):6.2f} s (min {min(t['cpu']):.2f})")  # fmt: skip
        print("where the time goes (one run in this process):")
        for part, (wall, cpu) in fit_breakdown(run_dir).items():
            print(f"  {part:<58s} wall {wall:6.2f} s   CPU {cpu:6.2f} s")
    print(
        Goal("sharpen fit, 200 x 1000 probes, wall (s)", median(times["sharpen fit"]["wall"]), 2.0)
    )
    print(Goal("sharpen fit, 200 x 1000 probes, CPU (s)", median(times["sharpen fit"]["cpu"]), 2.0))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trajectories", type=int, default=17_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument(
        "--repeats", type=int, default=5, help="interleaved later calls per contender"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="fresh processes per first-call contender"
    )
    parser.add_argument(
        "--cli-runs",
        type=int,
        default=3,
        help="fresh `sharpen fit` processes per variant (0: skip)",
    )
    parser.add_argument(
        "--cli-only", action="store_true", help="only the `sharpen fit` end-to-end timing"
    )
    parser.add_argument(
        "--probe-run", default=None, help="run folder for `sharpen fit` (written here if missing)"
    )
    parser.add_argument("--probe-questions", type=int, default=200)
    parser.add_argument("--probe-steps", type=int, default=1000)
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        child(args._child, args)
        return
    if args.cli_only:
        load = os.getloadavg()
        report_sharpen_fit(args)
        print(f"machine: {cpu_line()}; numpy {np.__version__}; {load_line(load)}")
        return
    load = os.getloadavg()
    k, obs, beta = make_data(args.trajectories, args.steps, args.n_samples)
    fns = contenders(k, obs, args.n_samples)
    # Accuracy: against the truth (statistical error, the same for every MLE) and against the binomial MLE
    # itself (fit_sharpening's converged estimates): the rivals must reach the same accuracy target.
    mle = fit_sharpening(k, obs, n_samples=args.n_samples)
    errors, off_mle = {}, {}
    for name, fn in fns.items():
        est = fn()
        errors[name] = float(np.nanmedian(np.abs(est / beta - 1)))
        dev = np.abs(est[mle.converged] / mle.beta[mle.converged] - 1)
        off_mle[name] = (float(np.nanmax(dev)), int((~(dev <= 1e-8)).sum()))
    tol_steps = newton_fit(k, obs, args.n_samples, tol=FIT_TOL)[2]
    times = interleave(fns, args.repeats, warmup=0)
    later = {name: median(t) for name, t in times.items()}

    def paired(a: str, b: str) -> float:  # median of the per-round ratios (each round runs both)
        return median([x / y for x, y in zip(times[a], times[b], strict=True)])

    first: dict[str, list[list[float]]] = {"fit_sharpening[binomial]": [], "Newton (8 steps)": []}
    for r in range(args.rounds):  # alternate which contender's fresh process runs first
        for name in list(first)[:: 1 if r % 2 == 0 else -1]:
            first[name].append(first_calls(name, args))

    print(f"machine: {cpu_line()}; numpy {np.__version__}; {load_line(load)}")
    print(
        f"data: {args.trajectories} trajectories x {args.steps} steps, binomial noise n = {args.n_samples}"
    )
    print(f"later calls (this process, interleaved, median of {args.repeats}); error = median |beta / true - 1|;"
          f" off the MLE = max |beta / MLE - 1| and the trajectories off it by > 1e-8 (of "
          f"{int(mle.converged.sum())} converged):")  # fmt: skip
    for name, seconds in later.items():
        dev, n_off = off_mle[name]
        print(
            f"  {name:<27s} {seconds:7.3f} s   error {errors[name]:.3f}   off the MLE {dev:.1e}, {n_off}"
        )
    print(f"  ({NEWTON_TO_TOL}: {tol_steps} Newton steps)")
    ours = "fit_sharpening[binomial]"
    for name in ("Newton (8 steps)", NEWTON_TO_TOL, "closed-form logit"):
        print(f"ratio {ours} / {name}: {later[ours] / later[name]:.2f}x (of the medians), "
              f"{paired(ours, name):.2f}x (median of the {args.repeats} per-round ratios)")  # fmt: skip
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
    print(Goal(f"fit_sharpening later calls / {NEWTON_TO_TOL} (equal accuracy)",
               paired(ours, NEWTON_TO_TOL), 1.2))  # fmt: skip
    print(
        Goal("fit_sharpening later calls / Newton (8 steps)", paired(ours, "Newton (8 steps)"), 1.2)
    )
    if args.cli_runs > 0:
        print()
        report_sharpen_fit(args)


if __name__ == "__main__":
    main()
