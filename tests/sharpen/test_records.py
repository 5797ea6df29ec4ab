"""Run records: append-only, readable after a kill, truncatable for resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sharpen.records import ProbeRecord, RunWriter, environment_info, load_run, read_jsonl


def test_roundtrip_and_jsonable(tmp_path):
    w = RunWriter(tmp_path / "run")
    w.write_json("config.json", {"kind": "sim", "lr": np.float32(0.5), "path": tmp_path})
    w.write_json("env.json", environment_info())
    w.log_metrics(0, {"majority_ratio": np.float64(0.25), "bad": math.nan})
    w.log_probes([ProbeRecord(0, "q1", 8, "3", 0.5, "3", 0.5, label="3", majority_correct=True)])
    w.log_eval(0, "heldout", {"accuracy": 0.7})
    run = load_run(tmp_path / "run")
    assert run.config["lr"] == 0.5 and run.config["kind"] == "sim"
    assert run.metrics == [{"step": 0, "majority_ratio": 0.25, "bad": None}]
    assert run.probes[0]["question_id"] == "q1" and run.probes[0]["p_initial_majority"] == 0.5
    assert run.evals[0]["split"] == "heldout"
    assert "torch" in run.env["packages"]
    assert run.warnings == ()


def test_truncated_line_is_skipped_and_reported(tmp_path):
    w = RunWriter(tmp_path)
    for s in range(3):
        w.log_metrics(s, {"x": s})
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 3, "x"')  # killed mid-write
    recs, bad = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs] == [0, 1, 2] and bad == 1
    run = load_run(tmp_path)
    assert len(run.metrics) == 3 and "metrics.jsonl" in run.warnings[0]


def test_truncate_after(tmp_path):
    w = RunWriter(tmp_path)
    for s in range(5):
        w.log_metrics(s, {"x": s})
        w.log_eval(s, "val", {"acc": s})
    w.truncate_after(2)
    w.log_metrics(3, {"x": 30})
    run = load_run(tmp_path)
    assert [r["step"] for r in run.metrics] == [0, 1, 2, 3] and run.metrics[-1]["x"] == 30
    assert [r["step"] for r in run.evals] == [0, 1, 2]


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="run_dir"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds none"):
        load_run(tmp_path / "empty")
    with pytest.raises(ValueError, match="p_majority"):
        ProbeRecord(0, "q", 4, "a", 1.5, "a", 0.5)
    with pytest.raises(ValueError, match="n_samples"):
        ProbeRecord(0, "q", 0, "a", 0.5, "a", 0.5)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "metrics.jsonl").write_text(json.dumps({"step": 0}) + "\n")
    (tmp_path / "c" / "config.json").write_text("{not json")
    assert "config.json" in load_run(tmp_path / "c").warnings[0]
