"""Run records: append-only, readable after a kill, truncatable for resume."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest

from sharpen.records import (
    MAX_LISTED,
    ProbeRecord,
    RunWriter,
    environment_info,
    load_run,
    read_jsonl,
)


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


# ------------------------------------------------------------------------------------------------------------
# bad lines: skipped or flagged, each named by file and line; the valid lines still load
# ------------------------------------------------------------------------------------------------------------


def test_invalid_utf8_line_is_skipped_and_named(tmp_path):
    w = RunWriter(tmp_path)
    w.log_metrics(1, {"x": 1})
    with (tmp_path / "metrics.jsonl").open("ab") as fh:
        fh.write(b'{"step": 2, "x": "\xff\xfe"}\n')
    w.log_metrics(3, {"x": 3})
    assert (
        read_jsonl(tmp_path / "metrics.jsonl")[1] == 1
    )  # was: UnicodeDecodeError for the whole file
    run = load_run(tmp_path)
    assert [m["step"] for m in run.metrics] == [1, 3]
    assert run.warnings == ("metrics.jsonl:2: not valid UTF-8, line skipped",)


def test_non_integer_step_is_skipped_and_dropped_by_truncate_after(tmp_path):
    w = RunWriter(tmp_path)
    w.log_metrics(1, {"x": 1})
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": "two", "x": 2}\n{"step": null}\n{"step": true}\n{"x": 5}\n')
    w.log_metrics(2, {"x": 2})
    run = load_run(tmp_path)
    assert [m["step"] for m in run.metrics] == [1, 2]
    assert [w.split(": ", 1) for w in run.warnings] == [
        [f"metrics.jsonl:{n}", f"step must be an integer, got {v}; line skipped"]
        for n, v in ((2, "'two'"), (3, "None"), (4, "True"), (5, "None"))
    ]
    w.truncate_after(1)  # was: ValueError: invalid literal for int() with base 10: 'two'
    assert read_jsonl(tmp_path / "metrics.jsonl") == ([{"step": 1, "x": 1}], 0)


def test_repeated_records_are_kept_and_flagged(tmp_path):
    w = RunWriter(tmp_path)
    for s in (1, 2, 2):
        w.log_metrics(s, {"x": s})
    w.log_eval(2, "heldout", {"acc": 0.5})
    w.log_eval(2, "train", {"acc": 0.5})  # another split: not a repeat
    w.log_eval(2, "heldout", {"acc": 0.6})
    probe = ProbeRecord(0, "q1", 8, "3", 0.5, "3", 0.5)
    w.log_probes([probe, ProbeRecord(0, "q2", 8, "3", 0.5, "3", 0.5), probe])
    run = load_run(tmp_path)
    assert len(run.metrics) == 3 and len(run.evals) == 3 and len(run.probes) == 3
    assert run.warnings == (
        "metrics.jsonl:3: step 2 repeats line 2",
        "probes.jsonl:3: step 0 question_id 'q1' repeats line 1",
        "eval.jsonl:3: step 2 split 'heldout' repeats line 1",
    )


def test_probe_shares_outside_the_unit_interval_are_skipped(tmp_path):
    w = RunWriter(tmp_path)
    good = dataclasses.asdict(ProbeRecord(0, "q1", 8, "3", 0.5, "3", 0.5, sample_accuracy=None))
    w.log_probes([ProbeRecord(**good)])
    with (tmp_path / "probes.jsonl").open("a") as fh:
        for change in ({"p_majority": 70.9}, {"p_initial_majority": -0.1}, {"sample_accuracy": 2},
                       {"p_majority": "0.5"}):  # fmt: skip
            fh.write(json.dumps({**good, "question_id": "q2", **change}) + "\n")
    run = load_run(tmp_path)
    assert run.probes == [good]
    assert run.warnings == (
        "probes.jsonl:2: p_majority = 70.9 outside [0, 1]; line skipped",
        "probes.jsonl:3: p_initial_majority = -0.1 outside [0, 1]; line skipped",
        "probes.jsonl:4: sample_accuracy = 2 outside [0, 1]; line skipped",
        "probes.jsonl:5: p_majority = '0.5' outside [0, 1]; line skipped",
    )
    with pytest.raises(ValueError, match="sample_accuracy"):
        ProbeRecord(0, "q", 4, "a", 0.5, "a", 0.5, sample_accuracy=1.5)


def test_warnings_are_capped_per_file(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n' + "garbage\n" * 25)
    run = load_run(tmp_path)
    assert len(run.metrics) == 1 and len(run.warnings) == MAX_LISTED + 1
    assert run.warnings[-1].endswith(f"{25 - MAX_LISTED} more problem(s) not listed")


# ------------------------------------------------------------------------------------------------------------
# durable writes
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="names fsync'd descriptors via /proc"
)
def test_rewrites_are_fsynced_file_and_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    w = RunWriter(tmp_path)
    w.write_json("config.json", {"kind": "sim"})
    assert synced == [str(tmp_path / "config.json.tmp"), str(tmp_path)]  # the data, then the rename
    w.log_metrics(1, {"x": 1})
    synced.clear()
    w.truncate_after(0)
    assert synced == [str(tmp_path / "metrics.jsonl.tmp"), str(tmp_path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "metrics.jsonl"]
