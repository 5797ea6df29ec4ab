"""Prepared figure data (cached as JSON), the simulator's cached run folders, and the metric-vs-step panel kind.

Each figure kind is *compute* (pure: run folders or simulation results in, a :class:`FigureData` out) then
*draw* (a :class:`FigureData` and optional axes in, a matplotlib figure out). Two caches keep a figure from
recomputing anything:

* :func:`sim_result` runs a ``sim`` experiment once (:func:`sim.api.run`) and saves it as a run folder under
  ``cache/runs/`` (:meth:`sim.results.SimResult.save`); later calls read the folder back
  (:func:`sim.results.load_result`) when its ``config.json`` equals the resolved configuration.
* :func:`cached` stores a compute step's :class:`FigureData`, so a figure is redrawn without recomputing.

Curves have one shape whatever their source: a panel is ``{"title", "ylabel", "series": [...]}`` and a series
``{"label", "x", "y"}`` plus, optionally, ``"lo"``/``"hi"`` (a band, e.g. the range over seeds) and ``"style"``
(``{"ls", "color", "lw"}``). :func:`curve_data` builds panels from run folders, :func:`seed_series` from a
simulator's ``(seeds, S)`` arrays, and :func:`draw_curves` draws either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sharpen import records
from sharpen.collapse import metric_series
from sharpen.metrics import trailing_mean
from sharpen.records import HELDOUT_ACCURACY, Run, RunHeader, jsonable, load_run

__all__ = [
    "FigureData",
    "cached",
    "SimSpec",
    "default_cache",
    "sim_run_dir",
    "is_cached",
    "sim_result",
    "load_sim",
    "load_runs",
    "run_label",
    "run_description",
    "Panel",
    "HELDOUT",
    "PROXY_REWARD",
    "REWARD_ACCURACY",
    "smooth",
    "heldout_series",
    "curve_data",
    "seed_series",
    "seed_lines",
    "tally",
    "curves_figure",
    "sim_panels",
    "runs_figure",
    "draw_curves",
]


@dataclass(frozen=True)
class FigureData:
    """What a draw step needs: the kind, a title, a caption line, the data source, and plain-JSON data."""

    kind: str
    title: str
    caption: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(jsonable(asdict(self))), encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> FigureData:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def cached(path: str | Path, key: Any, compute: Callable[[], FigureData]) -> FigureData:
    """``compute()`` once per ``key``: reuse ``path`` if it holds data computed for the same key."""
    p = Path(path)
    k = json.dumps(jsonable(key), sort_keys=True)
    if p.exists():
        try:
            stored = json.loads(p.read_text(encoding="utf-8"))
            if stored.get("_key") == k:
                stored.pop("_key")
                return FigureData(**stored)
        except (json.JSONDecodeError, TypeError):
            pass
    data = compute()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({**jsonable(asdict(data)), "_key": k}), encoding="utf-8")
    return data


# ----------------------------------------------------------------------------------------------
# the simulator's experiments, run once into cache/runs/
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimSpec:
    """A ``sim`` experiment as a figure's default data: ``sim.api.run(experiment, quick=quick, **overrides)``.

    Attributes
    ----------
    experiment : registered name (``sim.api.available_experiments()``)
    quick : start from the experiment's quick preset instead of its default config
    overrides : ``(field, value)`` pairs replacing config fields (kept as a tuple so the spec is hashable)
    note : how this run differs from the experiment's default, for the caption ("1 seed instead of 3")

    >>> SimSpec("dataset_size", overrides=(("seeds", 1),)).describe()
    "sim 'dataset_size' (seeds=1)"
    """

    experiment: str
    quick: bool = False
    overrides: tuple[tuple[str, Any], ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.experiment, str) or not self.experiment:
            raise ValueError(f"experiment: expected a sim experiment name, got {self.experiment!r}")
        if any(not (isinstance(o, tuple) and len(o) == 2) for o in self.overrides):
            raise ValueError(f"overrides: expected (field, value) pairs, got {self.overrides!r}")

    def describe(self) -> str:
        """A short reproducible description: ``sim 'name' (quick preset, field=value, ...)``."""
        parts = (["quick preset"] if self.quick else []) + [
            f"{k}={_short(v)}" for k, v in self.overrides
        ]
        return f"sim '{self.experiment}'" + (f" ({', '.join(parts)})" if parts else "")

    def source(self) -> str:
        """:meth:`describe` plus the note, for a caption's "Data:" line."""
        return f"{self.describe()} ({self.note})" if self.note else self.describe()

    def config(self) -> Any:
        """The resolved config object (default or quick preset, then the overrides)."""
        from sim.api import EXPERIMENTS, available_experiments

        if self.experiment not in available_experiments():
            raise ValueError(
                f"experiment: unknown {self.experiment!r}; valid: {', '.join(EXPERIMENTS)}"
            )
        exp = EXPERIMENTS[self.experiment]
        fields = {f.name for f in dataclasses.fields(exp.config_cls)}
        bad = sorted({k for k, _ in self.overrides} - fields)
        if bad:
            raise ValueError(
                f"overrides: {bad} are not fields of {exp.config_cls.__name__} ({sorted(fields)})"
            )
        base = dict(exp.quick) if self.quick else {}
        base.update(dict(self.overrides))
        return exp.config_cls(**base)


def _short(v: Any) -> str:
    if isinstance(v, tuple | list):
        return "(" + ", ".join(_short(x) for x in v) + ")"
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return type(v).__name__ + "(...)"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _canonical(x: Any) -> Any:
    return json.loads(json.dumps(jsonable(x), sort_keys=True))


def default_cache() -> Path:
    """Where ``sharpen figures`` keeps simulator runs and figure data unless told: ``$SHARPEN_CACHE/figures``
    (default ``~/.cache/sharpen/figures``), shared by every output folder and never inside a gallery."""
    return (
        Path(os.environ.get("SHARPEN_CACHE", Path.home() / ".cache" / "sharpen")).expanduser()
        / "figures"
    )


def _sim_folder(spec: SimSpec, cache: str | Path) -> tuple[Path, bool]:
    """The folder of ``spec``'s resolved config, and whether it already holds that run."""
    if not isinstance(spec, SimSpec):
        raise ValueError(f"spec: expected a SimSpec, got {type(spec).__name__}")
    want = _canonical(spec.config())
    tag = hashlib.sha1(json.dumps(want, sort_keys=True).encode()).hexdigest()[:10]
    run_dir = Path(cache) / "runs" / f"{spec.experiment}-{tag}"
    try:
        have = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        for key in ("kind", "header", "experiment"):
            have.pop(key, None)
        return run_dir, _canonical(have) == want and (run_dir / "trajectories.npz").exists()
    except (OSError, json.JSONDecodeError):
        return run_dir, False


def is_cached(spec: SimSpec, cache: str | Path) -> bool:
    """Whether ``cache`` already holds the run of ``spec``'s resolved config."""
    return _sim_folder(spec, cache)[1]


def sim_run_dir(spec: SimSpec, cache: str | Path) -> Path:
    """The result folder of ``spec``, running the experiment only if no folder holds its resolved config.

    The folder is ``cache/runs/<experiment>-<hash of the resolved config>``; it is reused when its
    ``config.json`` equals the config ``spec`` resolves to (so a changed default in ``sim`` reruns it), and it
    is written to a temporary folder first, so a killed run never leaves a half folder behind.
    """
    from sim.api import run

    run_dir, cached_now = _sim_folder(spec, cache)
    if cached_now:
        return run_dir
    res = run(spec.experiment, quick=spec.quick, **dict(spec.overrides))
    tmp = run_dir.with_name(f"{run_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    res.save(tmp)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.replace(tmp, run_dir)
    return run_dir


def load_sim(spec: SimSpec, cache: str | Path):
    """``(folder, SimResult)`` of ``spec``: :func:`sim_run_dir`, then :func:`sim.results.load_result`."""
    from sim.results import load_result

    run_dir = sim_run_dir(spec, cache)
    return run_dir, load_result(run_dir)


def sim_result(spec: SimSpec, cache: str | Path):
    """The :class:`sim.results.SimResult` of ``spec``, read from its cached folder (:func:`sim_run_dir`)."""
    return load_sim(spec, cache)[1]


# ----------------------------------------------------------------------------------------------
# run folders
# ----------------------------------------------------------------------------------------------


def load_runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    """Load run folders (:func:`sharpen.records.load_run`); raises ValueError naming a bad folder."""
    if not run_dirs:
        raise ValueError("run_dirs: no run folder given")
    return [load_run(d) for d in run_dirs]


def run_label(run: Run, vary: Sequence[str] = ()) -> str:
    """A legend label: the reward name (the folder's name if unknown), then the header fields named in
    ``vary`` (e.g. ``n_questions``) that the run knows.

    >>> run_label(Run(Path("runs/a"), {}, {}, [], [], [], header=RunHeader("sim", reward="mv", n_questions=32)),
    ...           ["n_questions"])
    'mv, n_questions=32'
    """
    fields = {f.name for f in dataclasses.fields(RunHeader)}
    unknown = [key for key in vary if key not in fields]
    if unknown:
        raise ValueError(f"vary: {unknown} are not RunHeader fields ({sorted(fields)})")
    parts = [str(run.header.reward or run.run_dir.name)]
    parts += [
        f"{key}={getattr(run.header, key)}" for key in vary if getattr(run.header, key) is not None
    ]
    return ", ".join(parts)


def run_description(run: Run) -> str:
    """A caption's "Data:" text for one run folder: kind, name and the settings that shape its curves.

    >>> from sharpen.records import Run
    >>> run_description(Run(Path("runs/a"), {"kind": "empirical", "reward": "majority_voting", "lr": 3e-05}, {}, [], [], []))
    "empirical run 'a' (reward majority_voting, lr 3e-05)"
    """
    h = run.header
    shown = [
        f"{k} {getattr(h, k)}" for k in ("reward", "lr", "n_rollouts") if getattr(h, k) is not None
    ]
    kind = "run" if h.kind == "unknown" else h.kind
    return f"{kind} run '{run.run_dir.name}'" + (f" ({', '.join(shown)})" if shown else "")


@dataclass(frozen=True)
class Panel:
    """One panel of metric-vs-step curves: where the series comes from and how the axis is labelled.

    ``metric`` is a batch metric's name (:data:`sharpen.records.METRICS`) or ``"heldout"`` (held-out accuracy
    from ``eval.jsonl``).
    """

    metric: str
    title: str
    ylabel: str


HELDOUT = Panel("heldout", "validation accuracy", "held-out accuracy (fraction correct)")
PROXY_REWARD = Panel(records.MAJORITY_REWARD, "proxy reward", "mean majority-vote reward")
REWARD_ACCURACY = Panel(
    records.REWARD_ACCURACY, "reward accuracy", "proxy reward = GT reward (fraction)"
)


def heldout_series(run: Run) -> tuple[str | None, np.ndarray, np.ndarray]:
    """Held-out accuracy of a run folder as (name, steps, values): :data:`sharpen.records.HELDOUT_ACCURACY`
    of its ``eval.jsonl`` records (any split but "train")."""
    recs = [r for r in run.evals if str(r.get("split", "heldout")) != "train"]
    return metric_series(recs, [HELDOUT_ACCURACY])


def _series(run: Run, metric: str) -> tuple[str | None, np.ndarray, np.ndarray]:
    if metric == "heldout":
        return heldout_series(run)
    return metric_series(run.metrics, [metric])


def smooth(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean of ``y`` over ``window`` *steps* of ``x`` (a series logged every 10 steps is not blurred).

    :func:`sharpen.metrics.trailing_mean` over ``window / median(diff(x))`` entries, except that a missing
    value (NaN or inf: a step without a value) is left out of the means and stays NaN, and a series shorter than
    the window is returned as it is.

    >>> smooth(np.arange(4.0), np.array([0.0, 2.0, 4.0, 6.0]), 2).tolist()
    [0.0, 1.0, 3.0, 5.0]
    >>> smooth(np.arange(4.0), np.array([np.nan, 2.0, 4.0, 6.0]), 2).tolist()
    [nan, 2.0, 3.0, 5.0]
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"y: shape {y.shape} differs from x {x.shape}")
    if int(window) < 1:
        raise ValueError(f"window: must be >= 1, got {window}")
    if x.size > 1:
        window = max(1, int(round(window / max(float(np.median(np.diff(x))), 1.0))))
    if window <= 1 or y.size < window:
        return y
    ok = np.isfinite(y)
    # the mean of the present values of a window = trailing mean of (value, 0 if missing) / share present
    with np.errstate(invalid="ignore", divide="ignore"):
        out = trailing_mean(np.where(ok, y, 0.0), window) / trailing_mean(ok.astype(float), window)
    return np.where(ok, out, np.nan)


def curve_data(
    runs: Sequence[Run],
    labels: Sequence[str],
    panels: Sequence[Panel],
    *,
    smoothing: int = 1,
) -> dict[str, Any]:
    """Per panel, per run folder, the (step, value) series (trailing mean over ``smoothing`` steps).

    Returns ``{"panels": [{"title", "ylabel", "metric", "series": [{"label", "name", "x", "y"}]}]}``;
    a run that did not log a panel's metric is simply absent from that panel.
    """
    if len(runs) != len(labels):
        raise ValueError(f"labels: {len(labels)} labels for {len(runs)} runs")
    out = []
    for p in panels:
        series = []
        for run, lab in zip(runs, labels, strict=True):
            name, x, y = _series(run, p.metric)
            if name is not None:
                series.append({"label": lab, "name": name, "x": x, "y": smooth(x, y, smoothing)})
        out.append({"title": p.title, "ylabel": p.ylabel, "metric": p.metric, "series": series})
    return {"panels": jsonable(out)}


def seed_series(
    label: str,
    values: np.ndarray,
    *,
    steps: np.ndarray | None = None,
    smoothing: int = 1,
    style: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One series from a simulator's per-seed array: the seed mean, and the min-max range over seeds as a band.

    Parameters
    ----------
    values : (seeds, S) or (S,) per-step values (index i is step ``steps[i]``, default ``i``)
    smoothing : trailing mean over this many steps, applied per seed before the mean and range

    >>> s = seed_series("mv", np.array([[0.0, 1.0], [1.0, 1.0]]))
    >>> s["y"], s["lo"], s["hi"]
    ([0.5, 1.0], [0.0, 1.0], [1.0, 1.0])
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] == 0:
        raise ValueError(f"values: expected shape (seeds, S) with S >= 1, got {v.shape}")
    x = np.arange(v.shape[1], dtype=float) if steps is None else np.asarray(steps, dtype=float)
    if x.shape != (v.shape[1],):
        raise ValueError(f"steps: expected shape ({v.shape[1]},), got {x.shape}")
    sm = np.stack([smooth(x, row, smoothing) for row in v])
    out = {"label": label, "x": x, "y": sm.mean(axis=0), "n_seeds": v.shape[0]}
    if v.shape[0] > 1:
        out["lo"], out["hi"] = sm.min(axis=0), sm.max(axis=0)
    if style:
        out["style"] = dict(style)
    return jsonable(out)


def seed_lines(
    label: str,
    values: np.ndarray,
    *,
    steps: np.ndarray | None = None,
    smoothing: int = 1,
    style: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One thin series per seed, all under ``label`` (for outcomes that split between seeds, where a mean would
    draw a curve no seed followed).

    >>> [s["y"] for s in seed_lines("r", np.array([[0.0, 1.0], [2.0, 3.0]]))]
    [[0.0, 1.0], [2.0, 3.0]]
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2:
        raise ValueError(f"values: expected shape (seeds, S), got {v.shape}")
    thin = {"lw": 1.1, **(style or {})}
    return [seed_series(label, row, steps=steps, smoothing=smoothing, style=thin) for row in v]


def tally(items: Sequence[str]) -> str:
    """How often each outcome occurs, in first-seen order.

    >>> tally(["rise only", "fall only", "rise only"])
    'rise only 2/3, fall only 1/3'
    """
    items = list(items)
    return ", ".join(f"{k} {items.count(k)}/{len(items)}" for k in dict.fromkeys(items))


def curves_figure(
    kind: str,
    title: str,
    caption: str,
    source: str | Path,
    panels: list[dict[str, Any]],
    legend_title: str = "reward / setting",
) -> FigureData:
    """A :class:`FigureData` of curve panels (``{"title", "ylabel", "series"}``) for :func:`draw_curves`."""
    return FigureData(
        kind=kind,
        title=title,
        caption=caption,
        source=str(source),
        data={"panels": jsonable(panels), "legend": {"title": legend_title}},
    )


def sim_panels(panels: Sequence[Panel]) -> list[dict[str, Any]]:
    """Empty curve panels with the titles and axis labels of ``panels``, for a simulator's series."""
    return [{"title": p.title, "ylabel": p.ylabel, "series": []} for p in panels]


def runs_figure(
    kind: str,
    title: str,
    caption: str,
    run_dirs: Sequence[str | Path],
    panels: Sequence[Panel],
    *,
    vary: Sequence[str] = (),
    smoothing: int = 10,
) -> FigureData:
    """A metric-vs-step figure from run folders: one line per folder, labelled by reward (and ``vary``)."""
    runs = load_runs(run_dirs)
    names = ", ".join(Path(d).name for d in run_dirs)
    data = curve_data(runs, [run_label(r, vary) for r in runs], panels, smoothing=smoothing)
    return curves_figure(
        kind,
        title,
        f"{caption} (trailing mean over {smoothing} steps). Data: run folders {names}.",
        ";".join(str(d) for d in run_dirs),
        data["panels"],
    )


def draw_curves(fd: FigureData, axes=None, *, styles: dict[str, dict] | None = None):
    """Draw curve panels, one line per series label (the same colour in every panel), bands where given.

    A series' own ``"style"`` wins over ``styles[label]``, which wins over the shared palette
    (:func:`paper_figures.style.color_for`). Returns the figure (with title and caption).
    """
    from paper_figures.style import color_for, finish, new_figure

    panels = fd.data["panels"]
    if axes is None:
        fig, axes = new_figure(len(panels))
    else:
        fig = axes[0].figure
    labels = list(dict.fromkeys(s["label"] for p in panels for s in p["series"]))

    def arr(v):
        return np.asarray([np.nan if e is None else e for e in v], dtype=float)

    for ax, p in zip(axes, panels, strict=False):
        for s in p["series"]:
            style = {**(styles or {}).get(s["label"], {}), **s.get("style", {})}
            color = style.get("color", color_for(s["label"], labels.index(s["label"])))
            x = arr(s["x"])
            ax.plot(
                x,
                arr(s["y"]),
                color=color,
                lw=style.get("lw", 1.6),
                ls=style.get("ls", "-"),
                marker="o" if x.size < 25 else None,
                ms=3,
                label=s["label"],
            )
            if "lo" in s:
                ax.fill_between(x, arr(s["lo"]), arr(s["hi"]), color=color, alpha=0.15, lw=0)
        if not p["series"]:
            ax.text(
                0.5,
                0.5,
                p.get("empty", "not logged by these runs"),
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=8,
                wrap=True,
            )
        ax.set(title=p["title"], xlabel=p.get("xlabel", "training step"), ylabel=p["ylabel"])
        if p.get("ylim"):
            ax.set_ylim(*p["ylim"])
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        # outside the panels by default, so it never hides a curve; ``data["legend"]["panel"]`` puts it inside
        legend = fd.data.get("legend", {})
        kw = dict(fontsize=7, title=legend.get("title", "reward / setting"), title_fontsize=7)
        if "panel" in legend:
            axes[legend["panel"]].legend(handles, names, loc=legend.get("loc", "best"), **kw)
        else:
            fig.legend(handles, names, loc="outside right center", **kw)
    return finish(fig, fd.title, fd.caption)
