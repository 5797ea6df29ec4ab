"""Prepared figure data (cached to disk as JSON), run-folder reading, and the metric-vs-step panel kind.

Each figure kind is *compute* (pure: run folders or simulation results in, a :class:`FigureData` out) then
*draw* (a :class:`FigureData` and optional axes in, a matplotlib figure out). :func:`cached` stores the
compute step's output so a figure is redrawn without recomputing anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sharpen.analysis import METRIC_ALIASES, eval_metric_names, metric_series, run_settings
from sharpen.records import Run, load_run

__all__ = [
    "FigureData",
    "cached",
    "load_runs",
    "run_label",
    "Panel",
    "curve_data",
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
        p.write_text(json.dumps(_plain(asdict(self))), encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> FigureData:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def cached(path: str | Path, key: Any, compute: Callable[[], FigureData]) -> FigureData:
    """``compute()`` once per ``key``: reuse ``path`` if it holds data computed for the same key."""
    p = Path(path)
    k = json.dumps(_plain(key), sort_keys=True)
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
    p.write_text(json.dumps({**_plain(asdict(data)), "_key": k}), encoding="utf-8")
    return data


def load_runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    """Load run folders (:func:`sharpen.records.load_run`); raises ValueError naming a bad folder."""
    if not run_dirs:
        raise ValueError("run_dirs: no run folder given")
    return [load_run(d) for d in run_dirs]


def _find(cfg: Any, key: str) -> Any:
    if isinstance(cfg, dict):
        if key in cfg and not isinstance(cfg[key], dict | list):
            return cfg[key]
        for v in cfg.values():
            found = _find(v, key)
            if found is not None:
                return found
    return None


def run_label(run: Run, vary: Sequence[str] = ()) -> str:
    """A legend label: the reward name, then the config values named in ``vary`` (e.g. n_questions)."""
    cfg = run.config
    reward = run_settings(cfg).get("reward") or run.run_dir.name
    parts = [str(reward)]
    for key in vary:
        v = _find(cfg, key)
        if v is not None:
            parts.append(f"{key}={v}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Panel:
    """One panel of metric-vs-step curves: where the series comes from and how the axis is labelled.

    ``metric`` is a key of :data:`sharpen.analysis.METRIC_ALIASES` (batch metrics) or ``"heldout"``
    (held-out accuracy from ``eval.jsonl``).
    """

    metric: str
    title: str
    ylabel: str


def _series(run: Run, metric: str) -> tuple[str | None, np.ndarray, np.ndarray]:
    if metric == "heldout":
        recs = [r for r in run.evals if str(r.get("split", "heldout")) != "train"]
        return metric_series(recs, eval_metric_names(recs))
    return metric_series(run.metrics, METRIC_ALIASES.get(metric, (metric,)))


def _smooth(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` *steps* (so sparse series, e.g. logged every 10 steps, are not blurred)."""
    if x.size > 1:
        window = max(1, int(round(window / max(float(np.median(np.diff(x))), 1.0))))
    if window <= 1 or y.size < window:
        return y
    c = np.concatenate([[0.0], np.cumsum(y)])
    hi = np.arange(1, y.size + 1)
    lo = np.maximum(hi - window, 0)
    return (c[hi] - c[lo]) / (hi - lo)


def curve_data(
    runs: Sequence[Run],
    labels: Sequence[str],
    panels: Sequence[Panel],
    *,
    smoothing: int = 1,
) -> dict[str, Any]:
    """Per panel, per run, the (step, value) series (trailing mean over ``smoothing`` steps).

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
            if name is None:
                continue
            series.append({"label": lab, "name": name, "x": x, "y": _smooth(x, y, smoothing)})
        out.append({"title": p.title, "ylabel": p.ylabel, "metric": p.metric, "series": series})
    return {"panels": _plain(out)}


def draw_curves(fd: FigureData, axes=None, *, styles: dict[str, dict] | None = None):
    """Draw :func:`curve_data` panels, one line per run (same colour per label in every panel)."""
    from paper_figures.style import color_for, finish, new_figure

    panels = fd.data["panels"]
    if axes is None:
        fig, axes = new_figure(len(panels))
    else:
        fig = axes[0].figure
    labels = sorted({s["label"] for p in panels for s in p["series"]}, key=str)
    for ax, p in zip(axes, panels, strict=False):
        for s in p["series"]:
            style = (styles or {}).get(s["label"], {})
            x = np.asarray(s["x"], dtype=float)
            y = np.asarray([np.nan if v is None else v for v in s["y"]], dtype=float)
            ax.plot(
                x,
                y,
                color=style.get("color", color_for(s["label"], labels.index(s["label"]))),
                lw=style.get("lw", 1.6),
                ls=style.get("ls", "-"),
                marker="o" if x.size < 25 else None,
                ms=3,
                label=s["label"],
            )
        if not p["series"]:
            ax.text(
                0.5,
                0.5,
                "not logged by these runs",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        ax.set(title=p["title"], xlabel="training step", ylabel=p["ylabel"])
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        axes[0].legend(
            handles, names, fontsize=7, loc="best", title="reward / setting", title_fontsize=7
        )
    return finish(fig, fd.title, fd.caption)
