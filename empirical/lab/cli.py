"""``sharpen lab``: run a checked experiment on the real tiny LM, write its result folder, figure and verdict.

::

    sharpen lab --list                               # the experiments
    sharpen lab theorem1_real --quick                # a few steps: checks the mechanism, not the verdict
    sharpen lab rise_then_fall_real --seeds 3        # any config field as --field-name

Run folders go to ``--runs-dir`` (default ``./sharpen-out/lab/runs``), shared by every experiment: a finished
run is reused, so ``early_collapse_real`` after ``rise_then_fall_real`` trains nothing new. Each result folder
(``./sharpen-out/lab/<name>``) holds ``verdict.json``, ``trajectories.npz`` and ``<name>.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sim.cli import add_experiment_arguments, check_experiments

__all__ = ["register"]


def _lab():
    import empirical.lab.experiments  # noqa: F401  (fills LAB)
    from empirical.lab.registry import LAB

    return LAB


def _run(args: argparse.Namespace) -> int:
    from sim.plots import save_figure

    lab = _lab()
    if args.list or not args.experiment:
        for name, e in lab.items():
            print(f"{name:<22} {e.doc}")
        return 0
    overrides = check_experiments(args, lab, "lab")
    for name in args.experiment:
        exp = lab[name]
        base = {**(exp.quick if args.quick else {}), **overrides}
        if args.quick and "runs_dir" not in overrides:
            base["runs_dir"] = str(Path(args.out) / "quick-runs")
        t0 = time.perf_counter()
        res = exp.fn(exp.config_cls(**base))
        seconds = time.perf_counter() - t0
        res.verdict.numbers["wall_seconds"] = round(seconds, 1)
        out = Path(args.out) / name
        res.save(out)
        save_figure(res, out / f"{name}.png", experiment=exp)
        word = {True: "reproduced", False: "not reproduced", None: "partly"}[res.verdict.holds]
        print(f"[lab] {name}: {word} ({seconds:.0f} s) -> {out}")
        print(f"  {res.verdict.summary}")
    return 0


def register(subparsers) -> None:
    """Add the ``lab`` subcommand (entry point ``sharpen.commands: lab``)."""
    p = subparsers.add_parser(
        "lab",
        help="checked experiments on the real tiny LM (Theorem 1, rise-then-fall, single question, early MCS)",
        description=__doc__,
    )
    add_experiment_arguments(p, _lab(), "lab")
    p.set_defaults(func=_run)
