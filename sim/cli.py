"""``sharpen sim <experiment> [--field value ...]``: run a simulator experiment, write its result folder and figure.

Options are generated from the experiment's config dataclass (one ``--field`` per scalar or tuple field);
``sharpen sim --list`` lists the experiments; ``--quick`` starts from the small preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from pathlib import Path

__all__ = ["register", "main", "demo"]


def _field_parser(tp):
    origin = typing.get_origin(tp)
    if tp is bool or tp == "bool":
        return lambda s: s.lower() in ("1", "true", "yes", "on")
    if origin is tuple:
        (inner, *_) = typing.get_args(tp)
        if inner not in (int, float, str):
            return None
        return lambda s: tuple(inner(x) for x in s.split(","))
    if tp in (int, float, str):
        return tp
    return None


def _run(args: argparse.Namespace) -> int:
    from sim.api import EXPERIMENTS, available_experiments, run
    from sim.plots import save_figure

    if args.list or not args.experiment:
        for name in available_experiments():
            e = EXPERIMENTS[name]
            print(f"{name:<16} {e.kind:<12} {e.doc}")
        return 0
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    names = args.experiment
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    it = tqdm(names, desc="sim", file=sys.stderr) if tqdm and len(names) > 1 else names
    status = 0
    for name in it:
        t0 = time.perf_counter()
        known = (
            {f.name for f in dataclasses.fields(EXPERIMENTS[name].config_cls)}
            if name in EXPERIMENTS
            else set()
        )
        res = run(name, quick=args.quick, **{k: v for k, v in overrides.items() if k in known})
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
        "sim", help="simulator experiments (Theorem 1, stability, explorations)"
    )
    p.add_argument(
        "experiment", nargs="*", help=f"experiment name(s): {', '.join(available_experiments())}"
    )
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--quick", action="store_true", help="start from the small preset")
    p.add_argument(
        "--out", default="runs/sim", help="output folder (one sub-folder per experiment)"
    )
    seen = set()
    group = p.add_argument_group("experiment options (applied to experiments that have the field)")
    for e in EXPERIMENTS.values():
        fields = [f for f in dataclasses.fields(e.config_cls) if f.name not in seen]
        if not fields:
            continue
        hints = typing.get_type_hints(e.config_cls)
        for f in fields:
            conv = _field_parser(hints[f.name])
            if conv is None:
                continue
            seen.add(f.name)
            group.add_argument(
                f"--{f.name.replace('_', '-')}",
                dest=f"cfg_{f.name}",
                type=conv,
                default=None,
                help=f"{e.name}: {f.name} (default {f.default!r})",
            )
    p.set_defaults(func=_run)


def main(argv: list[str] | None = None) -> int:
    """Run the ``sim`` command without the ``sharpen`` front end (``python -m sim.cli``)."""
    parser = argparse.ArgumentParser(prog="sharpen")
    subs = parser.add_subparsers(dest="command")
    register(subs)
    args = parser.parse_args(["sim", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


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


if __name__ == "__main__":
    raise SystemExit(main())
