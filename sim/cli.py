"""``sharpen sim``: run a simulator experiment, write its result folder and figure.

::

    sharpen sim --list                              # the experiments
    sharpen sim theorem1 --quick                    # the small preset, seconds
    sharpen sim destination --steps 60 --seed 1     # any config field as --field-name

Options are generated from the experiments' config dataclasses (one ``--field-name`` per scalar or tuple field;
tuples comma-separated; booleans ``--x`` / ``--no-x``); ``--config FILE`` reads them from a JSON, TOML or YAML
file. An option applies to the named experiments, and each of them must have that field.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sharpen._cli import add_config_file_option, closest, given_options, option_specs, output_dir

__all__ = ["register", "main", "demo", "add_experiment_arguments", "check_experiments"]


def check_experiments(args: argparse.Namespace, experiments, command: str) -> dict:
    """Check ``args.experiment`` against ``experiments`` (a registry) and return the given config overrides.

    Raises ``ValueError`` naming an unknown experiment (with the closest name) or an option one of the named
    experiments does not have. Shared by ``sharpen sim`` and ``sharpen lab``.
    """
    for name in args.experiment:
        if name not in experiments:
            hint = closest(name, experiments)
            raise ValueError(f"experiment: unknown {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
                             + f" (sharpen {command} --list shows {len(experiments)})")  # fmt: skip
    overrides = given_options(args, args.option_names)
    for name in args.experiment:
        fields = {s.name for s in option_specs(experiments[name].config_cls)}
        missing = sorted(set(overrides) - fields)
        if missing:
            flags = ", ".join("--" + m.replace("_", "-") for m in missing)
            own = ", ".join(sorted(s.flag for s in option_specs(experiments[name].config_cls)))
            raise ValueError(f"{flags}: not an option of {name} (its options: {own})")
    return overrides


def add_experiment_arguments(p: argparse.ArgumentParser, experiments, command: str) -> None:
    """The positional experiment names, ``--list``, ``--quick``, ``--out``, one ``--field-name`` option per
    config field of any experiment in ``experiments`` (its help names every experiment that has it) and
    ``--config FILE`` for the same fields (``sharpen._cli``'s rules: booleans ``--x/--no-x``, choices from
    ``Literal`` types)."""
    p.add_argument("experiment", nargs="*", help=f"experiment name(s): {', '.join(experiments)}")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--quick", action="store_true", help="start from the small preset")
    p.add_argument("--out", default=str(output_dir(command)),
                   help=f"output folder, one sub-folder per experiment (default: ./{output_dir(command)})")  # fmt: skip
    specs: dict[str, list] = {}
    for e in experiments.values():
        for spec in option_specs(e.config_cls):
            specs.setdefault(spec.name, []).append((e.name, spec))
    group = p.add_argument_group(
        "experiment options (each applies to the experiments named in its help)"
    )
    for _name, owners in sorted(specs.items()):
        texts = {}
        for exp_name, spec in owners:
            texts.setdefault(spec.help, []).append(exp_name)
        owners[0][1].add_to(group, help="; ".join(f"{', '.join(n)}: {t}" for t, n in texts.items()))
    add_config_file_option(group, [owners[0][1] for _name, owners in sorted(specs.items())])
    p.set_defaults(option_names=list(specs))


def _run(args: argparse.Namespace) -> int:
    from sim.api import EXPERIMENTS, available_experiments, run
    from sim.plots import save_figure

    if args.list or not args.experiment:
        for name in available_experiments():
            e = EXPERIMENTS[name]
            print(f"{name:<16} {e.kind:<12} {e.doc}")
        return 0
    overrides = check_experiments(args, EXPERIMENTS, "sim")
    it = args.experiment
    if len(it) > 1:
        from tqdm import tqdm

        it = tqdm(it, desc="sim", file=sys.stderr)
    status = 0
    for name in it:
        t0 = time.perf_counter()
        res = run(name, quick=args.quick, **overrides)
        out = Path(args.out) / name
        res.save(out)
        save_figure(res, out / f"{name}.png")
        v = res.verdict
        print(f"[{v.kind}] {name}: holds={v.holds} ({time.perf_counter() - t0:.1f} s) -> {out}")
        print(f"  {v.summary}")
        if v.kind == "theorem" and v.holds is False:
            status = 1
    return status


def register(subparsers) -> None:
    """Add the ``sim`` subcommand (entry point ``sharpen.commands: sim``)."""
    from sim.api import EXPERIMENTS, available_experiments

    p = subparsers.add_parser(
        "sim",
        help="simulator experiments (Theorem 1, stability, explorations)",
        description=__doc__,
    )
    add_experiment_arguments(p, {n: EXPERIMENTS[n] for n in available_experiments()}, "sim")
    p.set_defaults(func=_run)


def main(argv: list[str] | None = None) -> int:
    """Run the ``sim`` command without the ``sharpen`` front end (``python -m sim.cli``)."""
    from sharpen.cli import main as sharpen_main

    return sharpen_main(["sim", *(sys.argv[1:] if argv is None else argv)])


def demo(out_dir: Path) -> None:
    """``sharpen demo`` step: Theorem 1, majority stability and where sharpening leads (quick presets), PNGs in
    ``out_dir``. Raises ``RuntimeError`` if a theorem fails."""
    from sim.api import run
    from sim.plots import save_figure

    out_dir = Path(out_dir)
    for name in ("theorem1", "stability", "destination"):
        res = run(name, quick=True)
        res.save(out_dir / f"sim_{name}")
        save_figure(res, out_dir / f"sim_{name}.png")
        if res.verdict.holds is not True:
            raise RuntimeError(f"sim demo: {name} did not hold: {res.verdict.summary}")
