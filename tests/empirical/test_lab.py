"""The lab's checked experiments: each quick preset runs end to end on the tests' prior, writes a result folder
and a figure, and computes its verdict from its own numbers; the shared run folders are reused."""

from __future__ import annotations

import json

import numpy as np
import pytest

import empirical.lab.experiments  # noqa: F401  (fills LAB)
from empirical.lab.experiments.rise_then_fall_real import classify_curve
from empirical.lab.experiments.theorem1_real import beta_scaling
from empirical.lab.registry import LAB, get
from empirical.lab.runs import LabRuns, run_folder


def test_beta_scaling_recovers_a_power_law():
    lrs = np.repeat([1e-5, 2e-5, 4e-5], 3)
    noise = np.tile([0.98, 1.0, 1.02], 3)
    s = beta_scaling(lrs, 7.0 / lrs * noise)
    assert s["slope"] == pytest.approx(-1.0, abs=1e-9)
    assert s["ci_low"] <= -1 <= s["ci_high"] and s["n"] == 9
    assert np.isnan(
        beta_scaling([1e-5, 2e-5], [1.0, 2.0])["slope"]
    )  # two points: no error bar, no slope


def test_classify_curve_names_each_regime():
    base = np.array([0.5, 0.6, 0.7, 0.6, 0.5])
    seeds = np.stack([base + d for d in (-0.002, 0.0, 0.002)])
    assert classify_curve(seeds, 3.0)["regime"] == "rise_then_fall"
    assert classify_curve(seeds[:, :3], 3.0)["regime"] == "rise"
    assert classify_curve(seeds[:, 2:], 3.0)["regime"] == "fall"
    assert (
        classify_curve(np.stack([base * 0 + 0.5 + d for d in (-0.01, 0.0, 0.01)]), 3.0)["regime"]
        == "flat"
    )
    assert (
        classify_curve(seeds[:1], 3.0)["regime"] == "flat"
    )  # one seed: no standard error, no claim


def test_run_folders_are_named_by_what_changes_the_run(tmp_path):
    cfg = LabRuns(runs_dir=str(tmp_path))
    a = cfg.train_config("majority_voting", 1e-4, 0)
    assert run_folder(a, tmp_path) == run_folder(
        a.replace(out_dir="elsewhere", progress=True), tmp_path
    )
    assert run_folder(a, tmp_path) != run_folder(a.replace(lr=2e-4), tmp_path)
    assert run_folder(a, tmp_path) != run_folder(
        cfg.train_config("majority_voting", 1e-4, 1), tmp_path
    )
    with pytest.raises(ValueError, match="seeds"):
        LabRuns(seeds=0)


@pytest.fixture(scope="module")
def lab_out(tmp_path_factory):
    """One output folder for every quick experiment: their run folders are shared, as on the command line."""
    return tmp_path_factory.mktemp("lab")


# rise_then_fall_real before early_collapse_real: the second reads the first's majority-vote runs
@pytest.mark.parametrize(
    "name", ["theorem1_real", "rise_then_fall_real", "early_collapse_real", "single_question_real"]
)
def test_quick_lab_experiment_runs_end_to_end(name, tiny_model, lab_out):
    from sharpen.cli import main

    assert name in LAB
    out = lab_out
    argv = ["lab", name, "--quick", "--out", str(out), "--model", str(tiny_model), "--seeds", "1"]
    before = set((out / "quick-runs").iterdir()) if (out / "quick-runs").exists() else set()
    assert main(argv) == 0
    folder = out / name
    verdict = json.loads((folder / "verdict.json").read_text())
    assert verdict["holds"] in (True, False, None) and verdict["summary"]
    assert (folder / f"{name}.png").stat().st_size > 10_000
    runs = sorted((out / "quick-runs").iterdir())
    assert runs and all((r / "metrics.jsonl").exists() for r in runs)
    if (
        name == "early_collapse_real"
    ):  # nothing new: rise_then_fall_real ran the same configurations
        assert set(runs) == before
        assert verdict["numbers"]["runs"] and "theorem1" in verdict["numbers"]["scores"]
    assert isinstance(get(name).quick, dict)


def test_a_finished_run_folder_is_reused(tiny_model, lab_out):
    from empirical.lab.runs import ensure_runs

    cfg = LabRuns(model=str(tiny_model), seeds=1, steps=2, n_heldout=8, eval_every=2, probe_every=0,
                  rollout_batch_size=16, runs_dir=str(lab_out / "reuse"))  # fmt: skip
    configs = [cfg.train_config("majority_voting", 1e-4, 0)]
    (folder,) = ensure_runs(configs, cfg.runs_dir)
    stamp = (folder / "metrics.jsonl").stat().st_mtime_ns
    assert ensure_runs(configs, cfg.runs_dir) == [folder]
    assert (folder / "metrics.jsonl").stat().st_mtime_ns == stamp


def test_lab_rejects_unknown_experiments_and_options(capsys):
    from sharpen.cli import main

    assert main(["lab", "theorem1_rel"]) == 2
    assert "did you mean 'theorem1_real'" in capsys.readouterr().err
    assert main(["lab", "single_question_real", "--lrs", "1e-4"]) == 2
    assert "--lrs: not an option of single_question_real" in capsys.readouterr().err
