"""`sharpen fit` end to end: sharpen.run_analysis on run folders, and its report (paper_figures.fit_report).

Synthetic runs are built from the closed form (sharpen.theory.majority_prob): noiseless, with binomial probe
noise, with a planted majority flip and a no-learning question, plus truncated lines and missing fields.
"""

from __future__ import annotations

import doctest
import json
import math
import re

import numpy as np
import pytest

from paper_figures.fit_report import reading, register, short_table, write_report
from sharpen import collapse, fitting, run_analysis
from sharpen.collapse import AnalysisConfig
from sharpen.fitting import trajectories_from_probes
from sharpen.records import ProbeRecord, RunHeader, RunWriter
from sharpen.run_analysis import analyze_run
from sharpen.theory import majority_prob

STEPS = np.arange(0, 201, 10)
M = 64


def _probe(step, qid, p_init, p_maj=None, maj="A", init="A", correct=False, acc=0.05):
    p_maj = p_init if p_maj is None else p_maj
    return ProbeRecord(
        step=int(step),
        question_id=qid,
        n_samples=M,
        majority_answer=maj,
        p_majority=float(p_maj),
        initial_majority_answer=init,
        p_initial_majority=float(p_init),
        label="C",
        majority_correct=bool(correct),
        sample_accuracy=float(acc),
    )


def make_run(tmp_path, *, noise: bool, beta=40.0, seed=0, n_sharp=6, flip=True, flat=True):
    """A run with `n_sharp` sharpening questions, one planted flip and one no-learning question."""
    rng = np.random.default_rng(seed)
    w = RunWriter(tmp_path)
    w.write_config(RunHeader("sim", lr=0.5, n_rollouts=8, clip_eps=0.2), {"grpo": {"lr": 0.5}})

    def obs(p):
        return rng.binomial(M, p) / M if noise else p

    recs = []
    p0s = np.linspace(0.3, 0.6, n_sharp)
    for q, p0 in enumerate(p0s):
        for k, p in zip(STEPS, majority_prob(p0, beta, STEPS), strict=True):
            recs.append(_probe(k, f"s{q}", obs(p), acc=0.1 * (1 - p) / (1 - p0)))
    if flip:  # A starts at 0.40; B starts at 0.35 and takes over
        pb = majority_prob(0.35, beta / 2, STEPS)
        pa = 0.40 * (1 - pb) / (1 - 0.35)
        for k, a, b in zip(STEPS, pa, pb, strict=True):
            a_o, b_o = obs(a), obs(b)
            recs.append(_probe(k, "flip", a_o, max(a_o, b_o), maj="A" if a_o >= b_o else "B"))
    if flat:
        for k in STEPS:
            recs.append(_probe(k, "flat", obs(0.5)))
    w.log_probes(recs)
    # Batch reward accuracy implied by Theorem 1 for the sharpened questions (all wrong majorities).
    ra = np.mean(
        [(1 - majority_prob(p0, beta, STEPS)) * (1 - 0.1 / (1 - p0)) for p0 in p0s], axis=0
    )
    for k, r in zip(STEPS, ra, strict=True):
        w.log_metrics(int(k), {"reward_accuracy": float(r), "majority_ratio": 0.5})
    for k in STEPS[::2]:
        w.log_eval(int(k), "heldout", {"accuracy": float(0.5 + 0.2 * math.sin(k / 200 * math.pi))})
    return tmp_path


def test_noiseless_closed_form_is_recovered_exactly(tmp_path):
    res = analyze_run(make_run(tmp_path, noise=False))
    by = {q.question_id: q for q in res.questions}
    for q in range(6):
        assert by[f"s{q}"].label == "sharpened"
        assert by[f"s{q}"].beta == pytest.approx(40.0, rel=1e-6)
        assert by[f"s{q}"].r2_logit == pytest.approx(1.0, abs=1e-9)
    assert by["flip"].label == "flipped"
    assert by["flat"].label == "no_learning"
    assert res.pooled["sharpened"].beta == pytest.approx(40.0, rel=1e-6)
    assert res.class_summary["sharpened"]["share"] == pytest.approx(6 / 8)
    # B overtakes A where pb > pa: the planted flip's first step is known in closed form.
    pb = majority_prob(0.35, 20.0, STEPS)
    expected = STEPS[np.argmax(pb > 0.40 * (1 - pb) / 0.65)]
    assert by["flip"].first_flip_step == expected
    assert by["flip"].n_flips == 1


def test_noisy_beta_inside_its_ci_and_classes_right(tmp_path):
    res = analyze_run(make_run(tmp_path, noise=True, seed=3))
    by = {q.question_id: q for q in res.questions}
    assert by["flip"].label == "flipped"
    assert by["flat"].label == "no_learning"
    inside = [by[f"s{q}"].beta_ci[0] <= 40.0 <= by[f"s{q}"].beta_ci[1] for q in range(6)]
    assert sum(inside) >= 5  # 95% CIs: at most one miss in six is plausible
    assert all(by[f"s{q}"].label == "sharpened" for q in range(6))
    lo, hi = res.pooled["sharpened"].beta_ci
    assert lo <= 40.0 <= hi


def test_collapse_rules_and_early_prediction(tmp_path):
    res = analyze_run(make_run(tmp_path, noise=False, flip=False, flat=False))
    c = res.collapse
    assert c.metric == "reward_accuracy"
    assert c.threshold_step is not None and c.threshold_step <= 200
    assert c.heldout["heldout"]["peak_step"] == 100
    # The run follows Theorem 1 exactly, so a fit of the first 10% predicts the step to the probe grid.
    p10 = next(p for p in res.predictions if p.fraction == 0.1)
    assert p10.predicted_step is not None
    assert abs(p10.predicted_step - c.threshold_step) <= 10
    assert res.needed_fraction is not None and res.needed_fraction <= 0.1


def _noisy_metrics_run(tmp_path, sigma):
    """Reward accuracy flat at 0.8 plus noise: no collapse exists, so a peak-rule step is noise."""
    rng = np.random.default_rng(1)
    w = RunWriter(tmp_path)
    w.write_json("config.json", {"kind": "empirical"})
    for k in range(200):
        w.log_metrics(k, {"reward_accuracy": float(np.clip(0.8 + rng.normal(0, sigma), 0, 1))})
    for k in range(0, 201, 50):
        w.log_eval(k, "heldout", {"val_accuracy": 0.5})
    return tmp_path


def test_default_noise_aware_peak_rule_ignores_noise(tmp_path):
    run = _noisy_metrics_run(tmp_path / "noisy", sigma=0.06)
    res = analyze_run(run)
    c = res.collapse
    assert AnalysisConfig().noise_sigmas == collapse.NOISE_SIGMAS == 6.0
    assert c.peak_step is None and not c.peak_within_noise  # no collapse exists in the series
    assert c.noise == pytest.approx(0.06, rel=0.3)
    assert "within noise" not in short_table(res)
    # a real rise-then-fall under the same noise is still found, with the noise in its evidence
    rng = np.random.default_rng(4)
    w = RunWriter(tmp_path / "fall")
    for k in range(200):
        clean = 0.5 + 0.004 * k if k < 100 else max(0.9 - 0.02 * (k - 100), 0.0)
        w.log_metrics(k, {"reward_accuracy": float(np.clip(clean + rng.normal(0, 0.03), 0, 1))})
    fall = analyze_run(tmp_path / "fall").collapse
    assert fall.peak_step is not None and 80 <= fall.peak_step <= 110
    ev = fall.peak_evidence
    assert ev["noise_sigmas"] == 6.0 and ev["noise"] == pytest.approx(fall.noise)
    assert ev["required_decline"] == pytest.approx(max(0.05, 6.0 * fall.noise))
    assert not fall.peak_within_noise
    assert "declined by at least" in " ".join(reading(analyze_run(tmp_path / "fall")))


def test_plain_peak_rule_on_noise_is_flagged_and_the_reading_says_so(tmp_path):
    plain = AnalysisConfig(noise_sigmas=None)
    res = analyze_run(_noisy_metrics_run(tmp_path / "noisy", sigma=0.06), plain)
    c = res.collapse
    assert c.peak_step is not None  # the running maximum of noise does decline by 0.05
    assert c.peak_within_noise and c.noise == pytest.approx(0.06, rel=0.3)
    assert "noise" not in c.peak_evidence and c.peak_evidence["required_decline"] == 0.05
    text = " ".join(reading(res))
    assert "within the metric's step-to-step noise" in text and "No collapse by" in text
    assert "--noise-sigmas" in text
    assert "within noise" in short_table(res)
    quiet = analyze_run(_noisy_metrics_run(tmp_path / "quiet", sigma=0.001), plain)
    assert quiet.collapse.peak_step is None and not quiet.collapse.peak_within_noise
    with pytest.raises(ValueError, match="noise_sigmas"):
        AnalysisConfig(noise_sigmas=-1.0)


def test_reading_names_classes_and_heldout(tmp_path):
    res = analyze_run(make_run(tmp_path, noise=False))
    lines = reading(res)
    assert lines[0].startswith("Theorem 1 describes 6 of 8 probe questions")
    assert "1 switched to another majority answer" in lines[0] and "1 did not gain" in lines[0]
    assert any(line.startswith("Held-out") for line in lines)
    assert "## Reading" in write_report(res, tmp_path / "out", figure=False)["report"].read_text()


def test_sim_folder_heldout_from_val_accuracy_metric(tmp_path):
    # a simulator folder written before eval.jsonl: its batch metric val_accuracy is read, once, at load, as
    # the held-out accuracy (the metric was named val_accuracy here; it is eval.jsonl's accuracy now)
    w = RunWriter(tmp_path)
    w.write_json("config.json", {"kind": "sim"})
    for k, v in enumerate([0.2, 0.4, 0.6, 0.5, 0.3, 0.2, 0.1]):
        w.log_metrics(k, {"val_accuracy": v, "reward_accuracy": 0.9})
    h = analyze_run(tmp_path).collapse.heldout["heldout"]
    assert h["metric"] == "accuracy" and h["peak_step"] == 2 and h["peak_value"] == 0.6


def test_settings_and_kind_come_from_the_header(tmp_path):
    res = analyze_run(make_run(tmp_path, noise=False))
    assert res.kind == "sim" and res.header == RunHeader("sim", lr=0.5, n_rollouts=8, clip_eps=0.2)
    assert res.settings == {"lr": 0.5, "n_rollouts": 8, "clip_eps": 0.2}
    # nothing is searched for: a setting only the writer's own configuration holds is not a setting
    w = RunWriter(tmp_path / "bare")
    w.write_config(RunHeader("sim"), {"grpo": {"lr": 0.5}})
    w.log_metrics(0, {"reward_accuracy": 0.5})
    assert analyze_run(tmp_path / "bare").settings == {}


def test_docstring_examples_run():
    attempted = 0
    for module in (fitting, collapse, run_analysis):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted >= 5


def test_report_files_and_summary_numbers(tmp_path):
    res = analyze_run(make_run(tmp_path, noise=True))
    paths = write_report(res, tmp_path / "out")
    summary = json.loads(paths["summary"].read_text())
    assert summary["n_questions"] == 8
    assert summary["beta_mapping"]["beta_steps"] > 0
    assert summary["beta_mapping"]["log_odds_per_step_per_lr"] == pytest.approx(
        1 / summary["beta_mapping"]["beta_steps"] / 0.5
    )
    assert "## Question classes" in paths["report"].read_text()
    assert paths["overlay"].stat().st_size > 10_000
    assert "pooled beta" in short_table(res)


def test_truncated_lines_and_missing_fields_are_reported_and_rest_used(tmp_path):
    make_run(tmp_path, noise=False)
    with (tmp_path / "probes.jsonl").open("a") as fh:
        fh.write(
            json.dumps({"step": 210, "question_id": "s0"}) + "\n"
        )  # missing p_initial_majority
        fh.write('{"step": 220, "question_id": "s0", "p_initial_maj')  # killed mid-write
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 210, "reward_acc')
    res = analyze_run(tmp_path)
    text = " ".join(res.warnings)
    assert re.search(
        r"probes\.jsonl:\d+: not valid JSON \(a write cut short\?\), line skipped", text
    ), text
    assert re.search(
        r"metrics\.jsonl:\d+: not valid JSON \(a write cut short\?\), line skipped", text
    ), text
    assert "missing field p_initial_majority" in text
    assert len(res.questions) == 8 and res.questions[0].label == "sharpened"


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="holds none of"):
        analyze_run(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        analyze_run(tmp_path / "nope")
    with pytest.raises(ValueError, match="no usable probe record"):
        trajectories_from_probes([{"step": 1}])
    with pytest.raises(ValueError, match="threshold"):
        AnalysisConfig(threshold=2.0)
    with pytest.raises(ValueError, match="early_fractions"):
        AnalysisConfig(early_fractions=(0.5, 0.1))
    # metrics only, no probes: still analysed, with a warning
    RunWriter(tmp_path).log_metrics(0, {"reward_accuracy": 0.9})
    res = analyze_run(tmp_path)
    assert res.questions == () and any("no probe records" in w for w in res.warnings)


def test_cli_prints_table_and_writes_report(tmp_path, capsys):
    import argparse

    make_run(tmp_path / "run", noise=False)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["fit", str(tmp_path / "run"), "--no-figure"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "sharpened" in out and "collapse" in out
    assert (tmp_path / "run" / "fit_summary.json").exists()
    # an option not given is absent (sharpen._cli): the analysis runs with AnalysisConfig's default
    assert "noise_sigmas" not in vars(args)
    assert collapse.AnalysisConfig().noise_sigmas == collapse.NOISE_SIGMAS
    noisy = _noisy_metrics_run(tmp_path / "noisy", sigma=0.06)
    for flag, fired in (("6", False), ("0", True)):
        args = parser.parse_args(["fit", str(noisy), "--no-figure", "--noise-sigmas", flag])
        assert args.func(args) == 0
        summary = json.loads((noisy / "fit_summary.json").read_text())
        assert (summary["collapse"]["peak_step"] is not None) is fired
    capsys.readouterr()
    args = parser.parse_args(["fit", str(tmp_path / "empty")])
    assert args.func(args) == 2
    assert "not a folder" in capsys.readouterr().err


def test_fit_of_a_real_tiny_empirical_run(tmp_path, monkeypatch):
    """A short CPU GRPO run of the tiny model (empirical/), then `sharpen fit`: finite numbers in the summary.

    The model is pretrained for only 60 steps into a private cache (a few seconds), so the test does not depend
    on (or fill) the user's ``~/.cache/sharpen``; a weak prior is still a real model with real probes.
    """
    pytest.importorskip("empirical.train")
    from empirical.config import preset
    from empirical.train import train

    monkeypatch.setenv("SHARPEN_CACHE", str(tmp_path / "cache"))
    cfg = preset("tiny-arith-ttrl").replace(
        pretrain_steps=60,
        pretrain_accuracy=None,
        steps=8,
        probe_every=2,
        eval_every=4,
        n_eval=40,
        checkpoint_every=0,
        progress=False,
        out_dir=str(tmp_path / "run"),
    )
    run_dir = train(cfg)
    res = analyze_run(run_dir)
    summary = json.loads(write_report(res, figure=False)["summary"].read_text())
    assert summary["kind"] == "empirical" and summary["n_questions"] > 0
    assert summary["probe_steps"] == [0, 2, 4, 6, 8]
    fitted = [q for q in summary["questions"] if q["label"] != "insufficient"]
    assert fitted and all(isinstance(q["n_points"], int) and q["n_points"] == 5 for q in fitted)
    learning = [q for q in fitted if q["label"] in ("sharpened", "flipped", "no_learning")]
    assert learning and all(
        math.isfinite(q["slope"]) and q["slope_ci"][0] <= q["slope"] <= q["slope_ci"][1]
        for q in learning
    )
    assert sum(c["count"] for c in summary["classes"].values()) == summary["n_questions"]
    assert summary["settings"]["lr"] > 0


@pytest.mark.parametrize("flip", [True, False])
def test_analysis_of_a_loaded_run_equals_that_of_its_plain_records(tmp_path, flip):
    """The reused whole-run fit changes nothing: the summary of a loaded run equals one whose early predictions
    fit every window afresh."""
    import dataclasses

    from paper_figures.fit_report import summary_dict
    from sharpen.records import load_run

    run = load_run(make_run(tmp_path, noise=True, seed=2, flip=flip, flat=flip))
    # a skipped line and a repeated (question, step)
    with (tmp_path / "probes.jsonl").open("a") as fh:
        fh.write('{"step": 3, "question_id": "s1", "p_initial_majority": 2}\n')
        fh.write(json.dumps({"step": 10, "question_id": "s0", "p_initial_majority": 0.4}) + "\n")
    run = load_run(tmp_path)
    res = run_analysis.analyze(run)
    refit = dataclasses.replace(
        res,
        predictions=collapse.early_prediction(
            res.trajectories, res.collapse.last_step, res.collapse.threshold_step
        )[0],
    )
    assert json.dumps(summary_dict(res)) == json.dumps(summary_dict(refit))
    assert any(p.predicted_step is not None for p in res.predictions) is not flip
