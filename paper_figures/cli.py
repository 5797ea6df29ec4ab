"""``sharpen figures``: build every figure kind, from simulations by default or from run folders.

Each kind is a module with ``compute(run_dirs, *, cache) -> FigureData`` (cached to ``cache/data/<kind>.json``)
and ``draw(FigureData) -> Figure``; this module runs them in order with a progress bar and saves PNG + PDF.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from paper_figures import (
    dataset_size,
    failure_modes,
    heatmap,
    mcs_gain,
    rise_fall,
    self_verification,
    stability,
    theory_fit,
)
from paper_figures.data import FigureData, cached

__all__ = ["FIGURES", "build", "build_all", "register", "demo"]

# figure file name -> module; numbered as in the issue (1 theory vs measured ... 8 majority stability)
FIGURES = {
    "fig1_theory_fit": theory_fit,
    "fig2_rise_fall": rise_fall,
    "fig3_failure_modes": failure_modes,
    "fig4_heatmap": heatmap,
    "fig5_dataset_size": dataset_size,
    "fig6_mcs_gain": mcs_gain,
    "fig7_self_verification": self_verification,
    "fig8_stability": stability,
}


def build(
    name: str, out_dir: Path, *, run_dirs=None, cache: Path, formats=("png", "pdf")
) -> list[Path]:
    """Compute (cached) and draw one figure; returns the written files."""
    from paper_figures.style import save

    if name not in FIGURES:
        raise ValueError(f"name: unknown figure {name!r}; valid: {', '.join(FIGURES)}")
    mod = FIGURES[name]
    key = {"runs": [str(Path(d).resolve()) for d in run_dirs or []], "kind": mod.KIND, "v": 1}
    tag = "runs" if run_dirs else "sim"
    fd: FigureData = cached(
        cache / "data" / f"{name}-{tag}.json", key, lambda: mod.compute(run_dirs, cache=cache)
    )
    return save(mod.draw(fd), out_dir, name, formats=formats)


def build_all(
    out_dir: str | Path,
    *,
    run_dirs=None,
    cache: str | Path | None = None,
    only=None,
    formats=("png", "pdf"),
    progress: bool = True,
) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Build every figure (or those named in ``only``); returns (written files, {figure: error message})."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    cache_dir = Path(cache) if cache is not None else out / "cache"
    names = [n for n in FIGURES if not only or any(o in n for o in only)]
    written, errors = {}, {}
    bar = tqdm(names, desc="figures", disable=not progress, file=sys.stderr)
    for name in bar:
        bar.set_postfix_str(name)
        # Kind 8 is theory + simulation only; the others read the given run folders.
        runs = None if name == "fig8_stability" else run_dirs
        try:
            written[name] = build(name, out, run_dirs=runs, cache=cache_dir, formats=formats)
        except ValueError as exc:  # a figure the given data cannot make: say so, make the others
            errors[name] = str(exc)
        except Exception as exc:  # noqa: BLE001 -- report, keep building the rest
            errors[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    return written, errors


def _cli(args: argparse.Namespace) -> int:
    written, errors = build_all(
        args.out,
        run_dirs=args.run_dirs,
        cache=args.cache,
        only=args.only,
        formats=tuple(args.formats),
    )
    for name, paths in written.items():
        print(f"{name}: " + ", ".join(str(p) for p in paths))
    for name, msg in errors.items():
        print(f"{name}: not drawn ({msg})", file=sys.stderr)
    return 1 if errors and not written else 0


def register(subparsers) -> None:
    """Add ``sharpen figures [--from RUN_DIR ...] [--out DIR]`` (entry point of group ``sharpen.commands``)."""
    p = subparsers.add_parser(
        "figures",
        help="draw the paper's figure kinds from simulations (default) or from run folders",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--from",
        dest="run_dirs",
        nargs="+",
        default=None,
        metavar="RUN_DIR",
        help="run folders to draw from",
    )
    p.add_argument("--out", default="figures", help="output folder (default ./figures)")
    p.add_argument(
        "--cache",
        default=None,
        help="cache folder for simulated runs and figure data (default OUT/cache)",
    )
    p.add_argument(
        "--only", nargs="+", default=None, help="only figures whose name contains one of these"
    )
    p.add_argument("--formats", nargs="+", default=["png", "pdf"], choices=["png", "pdf", "svg"])
    p.set_defaults(func=_cli)


def demo(out_dir: Path) -> None:
    """Demo step: fit every run the earlier demo steps wrote, then draw all figures into ``out_dir``."""
    from sharpen.analysis import analyze_run, find_runs, short_table, write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [r for sub in ("theory", "sim", "train") for r in find_runs(out_dir.parent / sub)]
    probed = []
    for run_dir in runs:
        try:
            res = analyze_run(run_dir)
        except ValueError as exc:
            print(f"sharpen fit {run_dir}: {exc}")
            continue
        write_report(res)
        print(short_table(res))
        print(f"report: {run_dir / 'fit_report.md'}\n")
        if res.trajectories is not None and res.kind == "empirical":
            probed.append(run_dir)
    written, errors = build_all(out_dir, cache=out_dir / "cache")
    for run_dir in probed[:1]:  # the tiny-LM run, redrawn with the fit and heat-map kinds
        for name in ("fig1_theory_fit", "fig4_heatmap"):
            try:
                written[f"{name}_train"] = build(
                    name, out_dir / "train_run", run_dirs=[run_dir], cache=out_dir / "cache"
                )
            except ValueError as exc:
                errors[f"{name}_train"] = str(exc)
    for name, paths in written.items():
        print(f"{name}: {paths[0]}")
    for name, msg in errors.items():
        print(f"{name}: not drawn ({msg.splitlines()[0]})")
