"""``sharpen figures``: build every figure kind, from the simulator's experiments by default or from run folders.

Each kind is a module that is a :class:`FigureKind`: ``compute(run_dirs, *, cache) -> FigureData``,
``draw(FigureData) -> Figure``, ``KIND``, ``COMPACT``, ``SIM`` and ``sim_specs()``; :data:`FIGURES` lists them.
Without run folders a kind reads its ``sim`` experiments (``sim_specs()``; most read one, ``SIM``), run once into
``cache/runs/`` (``cache``: ``--cache``, else :func:`paper_figures.data.default_cache`); the prepared data is cached in ``cache/data/<figure>-<sim|runs>.json``, keyed by the figure's
code, the resolved sim config or the run folders' log sizes and times. This module runs the kinds in order with a
progress bar and saves PNG (palette-compressed) and PDF.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

from paper_figures import data as data_module
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
from paper_figures.data import FigureData, SimSpec, cached, default_cache, is_cached, sim_run_dir
from sharpen._cli import output_dir

__all__ = [
    "FIGURES",
    "FigureKind",
    "build",
    "build_all",
    "simulate",
    "simulations",
    "register",
    "demo",
]


@runtime_checkable
class FigureKind(Protocol):
    """What ``sharpen figures`` reads from a figure module (every module of :data:`FIGURES` is one)."""

    KIND: str
    """The kind's name (part of its cache key)."""
    COMPACT: bool
    """Store the PNG with a 256-colour palette (False where that would band a continuous colour scale)."""
    SIM: SimSpec | None
    """The one simulator run the kind reads without run folders (its resolved config keys the cache), or None
    when it reads several (or none)."""

    def compute(self, run_dirs=None, *, cache: Path) -> FigureData:
        """The figure's data, from ``run_dirs`` or, without them, from the simulator runs of :meth:`sim_specs`."""
        ...

    def draw(self, fd: FigureData):
        """The matplotlib figure of ``fd``, with title and caption."""
        ...

    def sim_specs(self) -> list[SimSpec]:
        """Every simulator run the kind reads without run folders."""
        ...


# figure file name -> module; numbered as in docs/figures.md (1 theory vs measured ... 8 majority stability)
FIGURES: dict[str, FigureKind] = {
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
    key = {
        "kind": mod.KIND,
        "code": _code_version(mod),
        "runs": [_run_state(d) for d in run_dirs or []],
    }
    if not run_dirs and mod.SIM is not None:  # the resolved sim config: a new default recomputes
        key["sim"] = {"spec": mod.SIM, "config": mod.SIM.config()}
    tag = "runs" if run_dirs else "sim"
    fd: FigureData = cached(
        cache / "data" / f"{name}-{tag}.json", key, lambda: mod.compute(run_dirs, cache=cache)
    )
    return save(mod.draw(fd), out_dir, name, formats=formats, compact=mod.COMPACT)


def _code_version(mod) -> str:
    """A hash of the figure module and ``data.py``: editing a compute step invalidates its cached data."""
    h = hashlib.sha1()
    for path in (Path(mod.__file__), Path(data_module.__file__)):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _run_state(run_dir) -> dict:
    """A run folder's path and the size and mtime of its logs: a run that grew is read again."""
    d = Path(run_dir).resolve()
    logs = {}
    for name in ("config.json", "metrics.jsonl", "probes.jsonl", "eval.jsonl"):
        p = d / name
        if p.exists():
            st = p.stat()
            logs[name] = [st.st_size, st.st_mtime_ns]
    return {"dir": str(d), "logs": logs}


def build_all(
    out_dir: str | Path,
    *,
    run_dirs=None,
    cache: str | Path | None = None,
    only=None,
    formats=("png", "pdf"),
    progress: bool = True,
    jobs: int = 2,
) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Build every figure (or those named in ``only``); returns (written files, {figure: error message}), both in
    the order of :data:`FIGURES`.

    Without ``run_dirs`` the figures' simulator runs that are not cached yet run ``jobs`` processes at a time
    (:func:`simulations`), and each figure is built in this process as soon as its runs are there, while the
    others still run.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    cache_dir = Path(cache) if cache is not None else default_cache()
    names = [n for n in FIGURES if not only or any(o in n for o in only)]
    # Kind 8 is theory + simulation only; the others read the given run folders.
    needs = {
        n: set(sim_specs(FIGURES[n])) if not run_dirs or n == "fig8_stability" else set()
        for n in names
    }
    written, errors = {}, {}
    bar = tqdm(total=len(names), desc="figures", disable=not progress, file=sys.stderr)

    def build_ready(done: set[SimSpec]) -> None:
        for name in names:
            if name in written or name in errors or not needs[name] <= done:
                continue
            bar.set_postfix_str(name)
            runs = None if name == "fig8_stability" else run_dirs
            try:
                written[name] = build(name, out, run_dirs=runs, cache=cache_dir, formats=formats)
            except ValueError as exc:  # a figure the data cannot make: say so, make the others
                errors[name] = str(exc)
            except Exception as exc:  # noqa: BLE001 -- report, keep building the rest
                errors[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
            bar.update()

    done: set[SimSpec] = set()
    specs = [s for n in names for s in sim_specs(FIGURES[n]) if s in needs[n]]
    for spec in simulations(specs, cache_dir, jobs=jobs, progress=progress):
        done.add(spec)
        build_ready(done)
    build_ready(done)
    bar.close()
    return (
        {n: written[n] for n in names if n in written},
        {n: errors[n] for n in names if n in errors},
    )


def sim_specs(mod: FigureKind) -> list[SimSpec]:
    """The simulator runs a figure module reads by default (``mod.sim_specs()``)."""
    return list(mod.sim_specs())


SLOW = ("failure_modes", "dataset_size", "rise_then_fall", "self_verification", "mcs_gt_gain")
"""The figures' slowest simulator experiments (tens of seconds each), slowest first: :func:`simulations` starts
them after the others (seconds each, so their figures are drawn while these run), the slowest first, so that
two processes finish at about the same time."""


def simulate(specs, cache: Path, *, jobs: int = 2, progress: bool = False) -> None:
    """Run the specs whose folder is not cached yet (:func:`paper_figures.data.sim_run_dir`), ``jobs`` at a time
    (:func:`simulations`, to the end)."""
    for _ in simulations(specs, cache, jobs=jobs, progress=progress):
        pass


def simulations(specs, cache: Path, *, jobs: int = 2, progress: bool = False) -> Iterator[SimSpec]:
    """Run the specs whose folder is not cached yet, ``jobs`` at a time, and yield each spec once its folder is
    ready: the cached ones first, then the others as their runs finish (in parallel processes, which go on
    while the caller works on what it got).

    The slow experiments start last, the slowest of them first (:data:`SLOW`); a spec whose experiment has no
    folder in the cache at all starts before the others are checked (checking resolves the configs, which
    imports the simulator). Each run is single-threaded, so on a 2-core machine two of them take the time of
    the longest. A run that fails here is yielded too and left to the figure that needs it, which reruns it
    in-process and reports the error.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    if int(jobs) < 1:
        raise ValueError(f"jobs: must be >= 1, got {jobs}")
    specs = list(dict.fromkeys(specs))
    rank = {name: i for i, name in enumerate(SLOW)}

    def order(items: list[SimSpec]) -> list[SimSpec]:  # stable: the quick ones keep their order
        return sorted(items, key=lambda s: rank.get(s.experiment, -1))

    runs = Path(cache) / "runs"
    # no folder for the experiment at all: to run, known without resolving a config (no simulator import)
    fresh = [s for s in specs if not any(runs.glob(f"{glob.escape(s.experiment)}-*"))]
    with ExitStack() as stack:
        pool: list[ProcessPoolExecutor] = []  # made at the first start
        futures: dict = {}

        def start(items: list[SimSpec], workers: int) -> None:
            if not pool:  # spawn: a fresh interpreter per worker, never a fork of a process holding torch threads
                pool.append(
                    stack.enter_context(
                        ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
                    )
                )
            with single_threaded_children():  # the workers start as the tasks are submitted
                futures.update({pool[0].submit(sim_run_dir, s, cache): s for s in order(items)})

        parallel = int(jobs) > 1
        if parallel and len(fresh) > 1:
            start(fresh, int(jobs))  # before the other specs' configs are resolved
        stale = [s for s in specs if s not in fresh and not is_cached(s, cache)]
        yield from (s for s in specs if s not in fresh and s not in stale)
        rest = stale if futures else fresh + stale
        if rest and parallel and (futures or len(rest) > 1):
            start(rest, min(int(jobs), len(rest)))
            rest = []
        if not futures and not rest:
            return
        bar = stack.enter_context(
            tqdm(
                total=len(futures) + len(rest),
                desc="simulating",
                disable=not progress,
                file=sys.stderr,
            )
        )
        for spec in order(rest):  # one process: here, in turn
            bar.set_postfix_str(spec.experiment)
            sim_run_dir(spec, cache)
            bar.update()
            yield spec
        for fut in as_completed(futures):
            bar.set_postfix_str(futures[fut].experiment)
            try:
                fut.result()
            except Exception:  # noqa: BLE001 -- the figure reruns it and reports
                pass
            bar.update()
            yield futures[fut]


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""What numpy's BLAS and torch read, at import, for their thread counts."""


@contextmanager
def single_threaded_children() -> Iterator[None]:
    """Processes started inside see :data:`THREAD_VARIABLES` set to 1 (this process's environment is restored
    after; its own libraries, already loaded, are unaffected).

    Each simulator run is one process's work and ``--jobs`` of them share the cores: a BLAS that starts a thread
    per core in every worker oversubscribes them (measured on 2 cores: a cold ``sharpen figures`` 70 s wall and
    134 s CPU with OpenBLAS's default, 57 s and 109 s with one thread per worker).
    """
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cli(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ValueError(f"--jobs: must be >= 1, got {args.jobs}")
    if args.only:
        unknown = [o for o in args.only if not any(o in n for n in FIGURES)]
        if unknown:
            raise ValueError(
                f"--only: {', '.join(map(repr, unknown))} match no figure; figures: {', '.join(FIGURES)}"
            )
    for run_dir in args.run_dirs or ():
        if not Path(run_dir).is_dir():
            raise ValueError(f"--from: no such run folder {run_dir}")
    written, errors = build_all(
        args.out,
        run_dirs=args.run_dirs,
        cache=args.cache,
        only=args.only,
        formats=tuple(args.formats),
        jobs=args.jobs,
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
    p.add_argument("--out", default=str(output_dir("figures")),
                   help=f"output folder (default: ./{output_dir('figures')})")  # fmt: skip
    p.add_argument(
        "--cache",
        default=None,
        help="cache folder for simulated runs and figure data (default $SHARPEN_CACHE/figures, "
        "else ~/.cache/sharpen/figures)",
    )
    p.add_argument(
        "--only", nargs="+", default=None, help="only figures whose name contains one of these"
    )
    p.add_argument("--formats", nargs="+", default=["png", "pdf"], choices=["png", "pdf", "svg"],
                   help="file formats of each figure (default: png pdf)")  # fmt: skip
    p.add_argument(
        "--jobs", type=int, default=2, help="simulator runs in parallel processes (default 2)"
    )
    p.set_defaults(func=_cli)


DEMO_FIGURES = ("fig1_theory_fit", "fig2_rise_fall", "fig4_heatmap")
"""The kinds one training run's records make: its Theorem 1 fit, its curves, its per-question heat map."""


def demo(out_dir: Path) -> None:
    """Demo step: fit every run the earlier demo steps wrote, and draw the figure kinds a training run makes.

    ``sharpen fit`` runs on every run folder under the sibling ``theory/``, ``sim/`` and ``train/`` folders
    (report next to its logs); each run under ``train/`` gets the kinds of :data:`DEMO_FIGURES` in
    ``out_dir/<run name>/``. The full set drawn from the simulator's full
    experiments is ``sharpen figures`` (minutes); both share one cache (:func:`default_cache`).
    """
    from paper_figures.fit_report import find_runs, short_table, write_report
    from sharpen.run_analysis import analyze_run

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_runs = set(find_runs(out_dir.parent / "train"))
    runs = [r for sub in ("theory", "sim") for r in find_runs(out_dir.parent / sub)]
    for run_dir in runs + sorted(train_runs):
        try:
            res = analyze_run(run_dir)
        except ValueError as exc:
            print(f"sharpen fit {run_dir}: {exc}")
            continue
        if res.trajectories is None and res.collapse.metric is None:
            print(f"sharpen fit {run_dir}: skipped (no probes and no reward accuracy to fit)\n")
            continue
        write_report(res)
        print(short_table(res))
        print(f"report: {run_dir / 'fit_report.md'}\n")
    if not train_runs:
        print(f"no training run under {out_dir.parent / 'train'}: no figures to draw")
    written, errors = {}, {}
    for run_dir in sorted(train_runs):
        for name in DEMO_FIGURES:
            try:
                written[f"{name} ({run_dir.name})"] = build(
                    name,
                    out_dir / run_dir.name,
                    run_dirs=[run_dir],
                    cache=default_cache(),
                    formats=("png",),
                )
            except ValueError as exc:  # a kind this run's records cannot make
                errors[f"{name} ({run_dir.name})"] = str(exc)
    for name, paths in written.items():
        print(f"{name}: {paths[0]}")
    for name, msg in errors.items():
        print(f"{name}: not drawn ({msg.splitlines()[0]})")
    print(
        "the full figure set from the simulator's full experiments: sharpen figures (a few minutes, cached)"
    )
