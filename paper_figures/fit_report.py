r"""``sharpen fit``: fit Theorem 1 to a run's probe trajectories; write a summary, a report and an overlay figure.

The analysis itself is the library's (:func:`sharpen.run_analysis.analyze_run`: :mod:`sharpen.fitting` and
:mod:`sharpen.collapse`); this module turns a :class:`~sharpen.run_analysis.RunAnalysis` into text and pictures:

* :func:`summary_dict` -- the JSON summary (``fit_summary.json``);
* :func:`reading`, :func:`short_table`, :func:`markdown_report` -- plain sentences, the terminal table and the
  Markdown report (``fit_report.md``);
* :func:`draw_overlay` / :func:`draw_overlay_arrays` -- measured :math:`p_k` against the fitted curves
  (``fit_overlay.png``); matplotlib is imported only when a figure is drawn;
* :func:`write_report` writes the three files, :func:`find_runs` finds run folders, and :func:`register` adds
  ``sharpen fit RUN_DIR [RUN_DIR ...]`` (entry point of group ``sharpen.commands``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from sharpen._cli import add_dataclass_options, fail, given_options
from sharpen.collapse import NOISE_SIGMAS, AnalysisConfig, CollapseReport
from sharpen.fitting import CLASS_MEANING, CLASSES
from sharpen.records import jsonable
from sharpen.run_analysis import RunAnalysis, analyze_run

__all__ = [
    "summary_dict",
    "markdown_report",
    "reading",
    "short_table",
    "draw_overlay",
    "draw_overlay_arrays",
    "write_report",
    "find_runs",
    "register",
]

PROBE_SOURCE_TEXT = {
    "exact": "Probes: the exact answer distribution of each probe question (teacher-forced over every "
    "candidate answer; no sampling noise), fitted by least squares on logit p.",
    "sampled": "Probes: shares of the sampled answers of each probe question, fitted by binomial maximum "
    "likelihood.",
}

SUMMARY_FILE = "fit_summary.json"
REPORT_FILE = "fit_report.md"
OVERLAY_FILE = "fit_overlay.png"


# ----------------------------------------------------------------------------------------------
# the JSON summary and the text
# ----------------------------------------------------------------------------------------------


def summary_dict(res: RunAnalysis) -> dict[str, Any]:
    """The JSON summary: settings, pooled fits, classes, per-question fits, collapse, predictions (NaN as null,
    infinity -- e.g. the beta of a question that did not sharpen -- as "inf")."""
    return jsonable(
        {
            "run_dir": res.run_dir,
            "kind": res.kind,
            "settings": res.settings,
            "n_questions": len(res.questions),
            "probe_steps": [] if res.trajectories is None else res.trajectories.steps.tolist(),
            "probe_source": None if res.trajectories is None else res.trajectories.source,
            "pooled": {k: asdict(v) for k, v in res.pooled.items()},
            "beta_mapping": res.beta_mapping,
            "classes": res.class_summary,
            "questions": [asdict(q) for q in res.questions],
            "collapse": asdict(res.collapse),
            "early_prediction": {
                "predictions": [asdict(p) for p in res.predictions],
                "needed_fraction": res.needed_fraction,
            },
            "warnings": list(res.warnings),
        },
        inf_as_text=True,
    )


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        if math.isinf(x):
            return "inf"
        return f"{x:.{digits}g}"
    return str(x)


def _peak_text(c: CollapseReport) -> str:
    """The peak rule's step, flagged when the decline it asks for is within the metric's noise."""
    if c.peak_step is None or not c.peak_within_noise:
        return _fmt(c.peak_step)
    return f"{c.peak_step} (within noise: step-to-step sigma {_fmt(c.noise, 2)})"


def _split_name(split: str, metric: str) -> str:
    return f"held-out ({metric})" if split == "heldout" else f"held-out '{split}' ({metric})"


def reading(res: RunAnalysis) -> list[str]:
    """The run in a few plain sentences (the report's first section)."""
    out = []
    n = len(res.questions)
    cs = res.class_summary
    if n:
        p = res.pooled.get("sharpened")
        sharp = cs["sharpened"]["count"]
        text = f"Theorem 1 describes {sharp} of {n} probe questions (sharpened toward their initial majority"
        if p is not None and p.n_questions and math.isfinite(p.beta):
            text += (
                f"; pooled beta = {_fmt(p.beta)} steps: the odds of the initial majority grow e-fold every "
                f"{_fmt(p.beta)} steps"
            )
        text += ")."
        other = [
            f"{cs[c]['count']} {what}"
            for c, what in (
                ("flipped", "switched to another majority answer (A1 broke)"),
                ("no_learning", "did not gain (A2 broke)"),
                ("saturated", "were already deterministic at the first probe"),
                ("insufficient", "had fewer than two probes"),
            )
            if cs[c]["count"]
        ]
        if other:
            text += " Of the others, " + ", ".join(other) + "."
        out.append(text)
    else:
        out.append("The run has no probe trajectories, so Theorem 1 was not fitted.")
    c = res.collapse
    if c.metric is None:
        out.append("No collapse metric (reward accuracy) was logged.")
    else:
        if c.threshold_step is None:
            text = (
                f"No collapse by the paper's threshold rule: `{c.metric}` stayed at or above the threshold "
                f"for all {_fmt(c.last_step)} steps."
            )
        else:
            text = f"`{c.metric}` fell below the threshold at step {c.threshold_step} (the Model Collapse Step)."
        if c.peak_step is not None and c.peak_within_noise:
            text += (
                f" The peak rule fires at step {c.peak_step}, but its decline is within the metric's "
                f"step-to-step noise (sigma {_fmt(c.noise, 2)}): keep `--noise-sigmas` at its default "
                f"({NOISE_SIGMAS:g}) or raise `--smoothing` or `--min-decline` before reading it as a collapse."
            )
        elif c.peak_step is not None:
            text += (
                f" By the peak rule, `{c.metric}` peaked at step {c.peak_step} and then declined"
            )
            ns = c.peak_evidence.get("noise_sigmas")
            if ns:
                text += (
                    f" by at least {_fmt(c.peak_evidence['required_decline'], 2)} "
                    f"(the larger of min_decline and {ns:g} step-to-step noise sigmas)"
                )
            text += "."
        out.append(text)
    for split, h in c.heldout.items():
        trend = (
            "then fell" if h["decline_step"] is not None else "and did not fall by the peak rule"
        )
        out.append(
            f"{_split_name(split, h['metric']).capitalize()} went {h['first_value']:.3f} -> "
            f"{h['peak_value']:.3f} (peak, step {h['peak_step']}) -> {h['last_value']:.3f} at the end, {trend}."
        )
    if res.predictions:
        if res.needed_fraction is not None and math.isfinite(res.needed_fraction):
            out.append(
                f"Fitted to the first {res.needed_fraction:.0%} of the run, Theorem 1 predicts the collapse "
                f"step within {res.tolerance:.0%}."
            )
        else:
            last = res.predictions[-1]
            head = (
                "No collapse was observed, so there is no step to predict"
                if last.observed_step is None
                else "Early prediction: no fraction of the run predicts the collapse step within "
                f"{res.tolerance:.0%}"
            )
            out.append(head + (f"; {last.note}." if last.note else "."))
    return out


def short_table(res: RunAnalysis) -> str:
    """A few lines for the terminal: classes, pooled beta, collapse, early prediction."""
    source = res.trajectories.source if res.trajectories is not None else None
    how = {"exact": "exact answer distributions, least squares on logit p",
           "sampled": "sampled shares, binomial fit"}.get(source, "no probes")  # fmt: skip
    lines = [f"run {res.run_dir} ({res.kind}), {len(res.questions)} probe questions ({how})"]
    if res.questions:
        lines.append(f"{'class':<13}{'n':>5}{'share':>8}{'med beta':>10}{'med R2(logit)':>15}")
        for c in CLASSES:
            s = res.class_summary[c]
            if s["count"]:
                lines.append(
                    f"{c:<13}{s['count']:>5}{s['share']:>8.0%}{_fmt(s['median_beta']):>10}"
                    f"{_fmt(s['median_r2_logit']):>15}"
                )
        p = res.pooled.get("sharpened")
        if p is not None and p.n_questions:
            lines.append(
                f"pooled beta (sharpened) = {_fmt(p.beta)} steps  CI [{_fmt(p.beta_ci[0])}, "
                f"{_fmt(p.beta_ci[1])}]  rho = {_fmt(p.rho, 5)}  I2 = {_fmt(p.i2, 2)}"
            )
    c = res.collapse
    lines.append(
        f"collapse ({c.metric or 'no metric'}): threshold rule step {_fmt(c.threshold_step)}, "
        f"peak rule step {_peak_text(c)}, last step {_fmt(c.last_step)}"
    )
    for split, h in c.heldout.items():
        lines.append(
            f"{_split_name(split, h['metric'])}: {h['first_value']:.3f} -> peak {h['peak_value']:.3f} "
            f"at step {h['peak_step']} -> {h['last_value']:.3f}"
        )
    if res.predictions and all(p.observed_step is None for p in res.predictions):
        last = reading(res)[-1]  # the sentence on prediction: nothing observed to predict
        lines.append("early prediction: " + last[0].lower() + last[1:])
    elif res.predictions:
        best = next((p for p in res.predictions if p.fraction == res.needed_fraction), None)
        shown = best or res.predictions[-1]
        lines.append(
            f"early prediction from {shown.fraction:.0%} of the run: step {_fmt(shown.predicted_step)}"
            f" vs observed {_fmt(shown.observed_step)}; within +-{res.tolerance:.0%} from fraction "
            f"{_fmt(res.needed_fraction)}" + (f" ({shown.note})" if shown.note else "")
        )
    for w in res.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def markdown_report(res: RunAnalysis) -> str:
    """The Markdown report written next to the run's logs."""
    out = [f"# Theorem 1 fit: `{res.run_dir}`", ""]
    out.append(
        f"Run kind: **{res.kind}**. Settings: "
        + (", ".join(f"{k}={v}" for k, v in res.settings.items()) or "none found")
        + "."
    )
    if res.trajectories is not None:
        out += ["", PROBE_SOURCE_TEXT[res.trajectories.source]]
    out += ["", "## Reading", ""]
    out += [f"- {line}" for line in reading(res)]
    out.append("")
    out.append("## Question classes")
    out.append("")
    if res.questions:
        out += [
            "| class | meaning | n | share | median beta | median R² (logit) | median R² (p) |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in CLASSES:
            s = res.class_summary[c]
            if s["count"]:
                out.append(
                    f"| {c} | {CLASS_MEANING[c]} | {s['count']} | {s['share']:.0%} | {_fmt(s['median_beta'])}"
                    f" | {_fmt(s['median_r2_logit'])} | {_fmt(s['median_r2_p'])} |"
                )
        flips = res.class_summary["flipped"]
        if flips["count"]:
            out.append("")
            out.append(
                f"Flipped questions: median first flip at step {_fmt(flips['median_first_flip_step'])}, "
                f"{_fmt(flips['mean_flips'])} leader changes on average."
            )
        out += ["", "## Pooled fit (inverse-variance, one slope, per-question intercepts)", ""]
        out += [
            "| questions | n | beta (steps) | beta CI | rho | I² |",
            "|---|---|---|---|---|---|",
        ]
        for name, p in res.pooled.items():
            out.append(
                f"| {name} | {p.n_questions} | {_fmt(p.beta)} | [{_fmt(p.beta_ci[0])}, {_fmt(p.beta_ci[1])}]"
                f" | {_fmt(p.rho, 5)} | {_fmt(p.i2, 2)} |"
            )
        out += [
            "",
            "Effective beta in the run's units: "
            + ", ".join(f"{k} = {_fmt(v)}" for k, v in res.beta_mapping.items())
            + ".",
        ]
    else:
        out.append("No probe trajectories in this run: nothing to fit.")
    c = res.collapse
    out += ["", "## Model Collapse Step", ""]
    out.append(
        f"Metric `{c.metric}`; threshold rule: step {_fmt(c.threshold_step)}; peak rule: step "
        f"{_peak_text(c)}; run length {_fmt(c.last_step)} steps."
    )
    for split, h in c.heldout.items():
        out.append(
            f"- {_split_name(split, h['metric'])}: {h['first_value']:.3f} at start, peak {h['peak_value']:.3f}"
            f" at step {h['peak_step']}, {h['last_value']:.3f} at the end; decline confirmed after step "
            f"{_fmt(h['decline_step'])}."
        )
    if res.predictions:
        out += ["", "## Early prediction (threshold rule, from the first part of the run)", ""]
        out += [
            "| fraction | up to step | probes | predicted | observed | error | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in res.predictions:
            err = "-" if p.relative_error is None else f"{p.relative_error:+.0%}"
            out.append(
                f"| {p.fraction:.0%} | {p.upto_step:.0f} | {p.n_probe_steps} | {_fmt(p.predicted_step)}"
                f" | {_fmt(p.observed_step)} | {err} | {p.note} |"
            )
        out.append("")
        out.append(
            f"Fraction of the run needed for a prediction within ±{res.tolerance:.0%}: "
            f"{_fmt(res.needed_fraction)}."
        )
    if res.warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in res.warnings]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# the overlay figure
# ----------------------------------------------------------------------------------------------

THEORY_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.4}
CLASS_COLORS = {
    "sharpened": "#1f77b4",
    "flipped": "#d62728",
    "no_learning": "#7f7f7f",
    "saturated": "#2ca02c",
    "insufficient": "#bcbd22",
}


def draw_overlay(res: RunAnalysis, axes=None, *, max_questions: int = 12):
    """Measured p_k (markers) with the fitted Theorem 1 curves (dashed): probability, logit, residuals.

    Parameters
    ----------
    res : RunAnalysis with trajectories.
    axes : None or a sequence of 3 matplotlib axes (probability, logit, residuals).
    max_questions : at most this many questions are drawn, taken in turn from each class.

    Returns
    -------
    matplotlib Figure
    """
    if res.trajectories is None or res.fit is None:
        raise ValueError("res: the run has no probe trajectories to draw")
    pooled = res.pooled.get("sharpened")
    return draw_overlay_arrays(
        res.trajectories.steps,
        res.trajectories.p_initial,
        res.trajectories.n_samples,
        np.asarray(res.fit.intercept),
        np.asarray(res.fit.slope),
        [q.label for q in res.questions],
        pooled_beta=None if pooled is None or not pooled.n_questions else pooled.beta,
        n_pooled=0 if pooled is None else pooled.n_questions,
        axes=axes,
        max_questions=max_questions,
    )


def draw_overlay_arrays(
    steps,
    p_initial,
    n_samples,
    intercept,
    slope,
    labels: Sequence[str],
    *,
    pooled_beta: float | None = None,
    n_pooled: int = 0,
    axes=None,
    max_questions: int = 12,
):
    """:func:`draw_overlay` from plain arrays (steps (L,), p_initial and n_samples (Q, L), intercept,
    slope (Q,) with NaN for no fit, labels (Q,) question classes), so cached data can be redrawn."""
    from scipy import special  # here: importing this module (`sharpen fit --help`) stays scipy-free

    k = np.asarray(steps, dtype=np.float64)
    p_all = np.asarray(p_initial, dtype=np.float64)
    n_all = np.asarray(n_samples, dtype=np.float64)
    a, b = np.asarray(intercept, dtype=np.float64), np.asarray(slope, dtype=np.float64)
    if p_all.ndim != 2 or p_all.shape[1] != k.size or len(labels) != p_all.shape[0]:
        raise ValueError(
            f"p_initial: expected shape (Q, {k.size}) with Q = len(labels), got {p_all.shape}"
        )
    if axes is None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), constrained_layout=True)
    else:
        fig = axes[0].figure
    ax_p, ax_l, ax_r = axes
    by_class: dict[str, list[int]] = {}
    for c in CLASSES:
        if c != "insufficient":
            by_class[c] = [i for i, lab in enumerate(labels) if lab == c]
    chosen: list[int] = []
    while len(chosen) < max_questions and any(by_class.values()):
        for c in by_class:
            if by_class[c] and len(chosen) < max_questions:
                chosen.append(by_class[c].pop(0))
    kk = np.linspace(k.min(), k.max(), 200)
    seen: set[str] = set()
    for i in chosen:
        color = CLASS_COLORS[labels[i]]
        obs = ~np.isnan(p_all[i])
        label = None if labels[i] in seen else f"measured: {labels[i]}"
        seen.add(labels[i])
        p, n = p_all[i, obs], n_all[i, obs]
        eps = np.where(np.isnan(n), 1e-3, 0.5 / np.where(np.isnan(n), 1.0, n))
        ax_p.plot(k[obs], p, "o", color=color, ms=3.5, alpha=0.8, label=label)
        ax_l.plot(
            k[obs], special.logit(np.clip(p, eps, 1 - eps)), "o", color=color, ms=3.5, alpha=0.8
        )
        if np.isfinite(a[i]) and np.isfinite(b[i]):
            eta = a[i] + b[i] * kk
            ax_p.plot(kk, special.expit(eta), **THEORY_STYLE, alpha=0.8)
            ax_l.plot(kk, eta, **THEORY_STYLE, alpha=0.8)
            resid = p - special.expit(a[i] + b[i] * k[obs])
            ax_r.plot(k[obs], resid, "o-", color=color, ms=3, lw=0.6, alpha=0.7)
    # Keep the logit axis on the data: a near-separated fit's line would otherwise set the scale.
    shown = [special.logit(np.clip(p_all[i], 0.5 / 1000, 1 - 0.5 / 1000)) for i in chosen]
    if shown:
        vals = np.concatenate(shown)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            ax_l.set_ylim(vals.min() - 1.0, vals.max() + 1.0)
    ax_p.plot([], [], **THEORY_STYLE, label="Theorem 1 fit: sigmoid(logit p0 + k/beta)")
    sampled = bool(
        np.isfinite(n_all).any()
    )  # sample counts: shares of M samples; none: exact probabilities
    ax_p.set(
        xlabel="training step",
        ylabel=f"{'share' if sampled else 'probability'} of the initial majority answer p_k",
        ylim=(-0.02, 1.02),
    )
    ax_p.set_title("probability view")
    moved = "; 0/1 moved in by 1/(2M)" if sampled else ""
    ax_l.set(xlabel="training step", ylabel=f"logit p_k (log-odds{moved})")
    ax_l.set_title("logit view: Theorem 1 is a line of slope 1/beta")
    ax_r.axhline(0, color="black", lw=0.8)
    ax_r.set(xlabel="training step", ylabel="residual p_k - fitted p_k")
    ax_r.set_title("residuals of the fit")
    handles, names = ax_p.get_legend_handles_labels()
    ax_r.legend(handles, names, fontsize=7, loc="lower right", framealpha=0.9)
    if pooled_beta is not None and math.isfinite(pooled_beta):
        ax_l.text(
            0.02,
            0.97,
            f"pooled beta = {_fmt(pooled_beta)} steps (rho = e^(-1/beta) = {_fmt(math.exp(-1 / pooled_beta), 4)}),"
            f" {n_pooled} sharpened questions",
            transform=ax_l.transAxes,
            va="top",
            fontsize=7,
            bbox={"facecolor": "white", "alpha": 0.9, "edgecolor": "none"},
        )
    return fig


# ----------------------------------------------------------------------------------------------
# writing the report, finding run folders
# ----------------------------------------------------------------------------------------------


def write_report(
    res: RunAnalysis, out_dir: str | os.PathLike | None = None, *, figure: bool = True
) -> dict[str, Path]:
    """Write ``fit_summary.json``, ``fit_report.md`` and (with probes) ``fit_overlay.png``.

    ``out_dir`` defaults to the run folder. Returns ``{"summary", "report", "overlay"}`` paths.
    """
    out = Path(out_dir) if out_dir is not None else Path(res.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out / SUMMARY_FILE, "report": out / REPORT_FILE}
    paths["summary"].write_text(json.dumps(summary_dict(res), indent=2) + "\n", encoding="utf-8")
    paths["report"].write_text(markdown_report(res), encoding="utf-8")
    if figure and res.trajectories is not None:
        from matplotlib.figure import Figure  # no pyplot: works under any backend, headless

        fig = Figure(figsize=(14, 4.6), layout="constrained")
        draw_overlay(res, fig.subplots(1, 3))
        fig.suptitle(
            f"Theorem 1 fitted to the measured per-question majority-probability trajectories of "
            f"{res.kind} run '{Path(res.run_dir).name}' (markers = probes, dashed = fit)",
            fontsize=9,
        )
        # zlib's fastest level: the same pixels in half the encoding time, the file within a few % in size
        fig.savefig(out / OVERLAY_FILE, dpi=110, pil_kwargs={"compress_level": 1})
        paths["overlay"] = out / OVERLAY_FILE
    return paths


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Run folders at or below ``root``: folders holding ``metrics.jsonl`` or ``probes.jsonl``."""
    r = Path(root)
    if not r.is_dir():
        return []
    found = {p.parent for name in ("metrics.jsonl", "probes.jsonl") for p in r.rglob(name)}
    return sorted(found)


# ----------------------------------------------------------------------------------------------
# the `sharpen fit` command
# ----------------------------------------------------------------------------------------------


def _cli(args: argparse.Namespace) -> int:
    """Handler of ``sharpen fit``: one report per run folder; a bad setting raises ``ValueError``."""
    settings = given_options(args, args.config_fields)
    if settings.get("noise_sigmas") == 0:  # 0 and None both mean the plain peak rule: report None
        settings["noise_sigmas"] = None
    config = AnalysisConfig(**settings)
    status = 0
    for run_dir in args.run_dirs:
        try:
            res = analyze_run(run_dir, config)
        except ValueError as exc:
            status = fail("sharpen fit", f"{run_dir}: {exc}")
            continue
        out = (
            Path(args.out) / Path(run_dir).name if args.out and len(args.run_dirs) > 1 else args.out
        )
        paths = write_report(res, out, figure=not args.no_figure)
        print(short_table(res))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        print()
    return status


def register(subparsers) -> None:
    """Add ``sharpen fit RUN_DIR [RUN_DIR ...]`` (entry point of group ``sharpen.commands``); the settings are
    the fields of :class:`~sharpen.collapse.AnalysisConfig` (``sharpen._cli``'s rules, ``--config FILE``)."""
    p = subparsers.add_parser(
        "fit",
        help="fit Theorem 1 to a run's probe trajectories, classify questions, find and predict collapse",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s) written by sharpen.records"
    )
    p.add_argument(
        "--out", default=None, help="write the report here instead of into the run folder"
    )
    p.add_argument("--no-figure", action="store_true", help="skip the overlay figure")
    group = p.add_argument_group("analysis settings (AnalysisConfig fields)")
    p.set_defaults(func=_cli, config_fields=add_dataclass_options(group, AnalysisConfig))
