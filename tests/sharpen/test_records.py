"""Run records: append-only, readable after a kill, truncatable for resume; the typed header, old folders, the
one probe-record builder, and the fast reader against a plain one."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharpen.records import (
    KL,
    LOG_KEYS,
    MAJORITY_REWARD,
    MAX_LISTED,
    UNSET,
    ProbeRecord,
    RunHeader,
    RunWriter,
    columns,
    environment_info,
    initial_majorities,
    load_run,
    probe_record,
    probe_records,
    read_jsonl,
    read_log,
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


# ------------------------------------------------------------------------------------------------------------
# the fast reader equals a plain line-by-line one
# ------------------------------------------------------------------------------------------------------------


def reference_read_log(path):
    """Line by line, record by record: what read_log must return."""
    records, problems = [], []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            problems.append((number, "not valid UTF-8, line skipped"))
            continue
        if not line:
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):  # also an int past the digit limit, nesting too deep
            problems.append((number, "not valid JSON (a write cut short?), line skipped"))
            continue
        if not isinstance(obj, dict):
            problems.append((number, "not a JSON object, line skipped"))
            continue
        step = obj.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            problems.append((number, f"step must be an integer, got {step!r}; line skipped"))
            continue
        if path.name == "probes.jsonl":
            bad = [n for n in ProbeRecord.SHARES if obj.get(n) is not None and not (
                isinstance(obj[n], int | float) and not isinstance(obj[n], bool) and 0 <= obj[n] <= 1)]  # fmt: skip
            if bad:
                problems.append(
                    (
                        number,
                        ", ".join(f"{n} = {obj[n]!r}" for n in bad)
                        + " outside [0, 1]; line skipped",
                    )
                )
                continue
        records.append((number, obj))
    names = LOG_KEYS.get(path.name, ("step",))
    seen = {}
    for number, obj in records:
        key = tuple(json.dumps(obj.get(n), sort_keys=True) if isinstance(obj.get(n), dict | list) else obj.get(n)
                    for n in names)  # fmt: skip
        if key in seen:
            what = " ".join(f"{n} {obj.get(n)!r}" for n in names)
            problems.append((number, f"{what} repeats line {seen[key]}"))
        else:
            seen[key] = number
    problems.sort()
    warnings = [f"{path.name}:{n}: {p}" for n, p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        warnings.append(f"{path.name}: {len(problems) - MAX_LISTED} more problem(s) not listed")
    return [obj for _, obj in records], warnings


_LINES = st.one_of(
    st.builds(lambda s, q, p: json.dumps({"step": s, "question_id": q, "p_majority": p, "p_initial_majority": 0.5}),
              st.one_of(st.integers(0, 3), st.sampled_from([True, "1", None, 1.0, 10**30])),
              st.sampled_from(["a", "b", 1, [1], {"x": 1}]),
              st.one_of(st.floats(-1, 2), st.sampled_from([None, True, "0.5", 10**400, float("nan")]))),
    st.sampled_from([
        "", "   ", "\r", '{"step": 1}\r', ' {"step": 2} ', '{"step": 3} x', '{"step": 4}{"step": 5}', "[1, 2]",
        '{"step": 6, "p_majority": NaN}', '{"step": 7,', '"step": 8}', "{", "null", '{"step": 9, "p_majority":',
        '{"step": 10, "question_id": "a"}', '{"step":11}\x0c', "\ufeff{\"step\": 12}", '{"step": 13, "k": "\u2028"}',
        '{"step": 14, "x": ' + "[" * 100_000 + "]" * 100_000 + "}", '{"step": 15, "x": 1' + "0" * 5000 + "}",
    ]),
)  # fmt: skip


@pytest.mark.parametrize("name", ["metrics.jsonl", "probes.jsonl", "eval.jsonl"])
@given(
    lines=st.lists(_LINES, max_size=30),
    bad_utf8=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_read_log_equals_a_line_by_line_reader(tmp_path, name, lines, bad_utf8, newline):
    path = tmp_path / name
    data = newline.join(lines).encode()
    if bad_utf8 and lines:
        data += b"\n" + b'{"step": 1, "x": "\xff"}' + b"\n" + lines[0].encode()
    path.write_bytes(data)
    assert read_log(path) == reference_read_log(path)


def test_columns_one_pass_and_missing_fields():
    assert columns([{"a": 1, "b": 2}, {"a": 3, "b": 4}], ["a", "b"]) == {"a": [1, 3], "b": [2, 4]}
    assert columns([{"a": 1}, 5, {"b": 2}], ["a", "b"]) == {
        "a": [1, None, None],
        "b": [None, None, 2],
    }
    assert columns([], ["a"]) == {"a": []}


def reference_read_jsonl(path):
    """Line by line: every line that is a JSON object, and the count of the other non-blank lines."""
    records, n_bad = [], 0
    for raw in path.read_bytes().split(b"\n"):
        try:
            line = raw.decode("utf-8").strip()
            obj = json.loads(line) if line else None
        except (ValueError, RecursionError):
            n_bad += 1
            continue
        if isinstance(obj, dict):
            records.append(obj)
        elif line:
            n_bad += 1
    return records, n_bad


def _written_probes(path, steps=30, questions=7, seed=0):
    """A probes.jsonl as a run writes it (every line one object), returned as its lines."""
    rng = np.random.default_rng(seed)
    w = RunWriter(path.parent)
    for s in range(steps):
        w.log_probes(
            ProbeRecord(s, f"q{q}", 16, "7", 0.75, "7", float(rng.integers(0, 17) / 16), label="7",
                        majority_correct=bool(rng.integers(2)), sample_accuracy=float(rng.uniform()))
            for q in range(questions) if (s + q) % 5  # some questions are not probed at some steps
        )  # fmt: skip
    return path.read_text().splitlines()


# Lines a killed, resumed or hand-edited run can hold, each against the one-call parse of the others: a truncated
# write, two objects glued on one line, a line that leaves a bracket open (the next line closes it and adds an
# object, so that a plain count of objects would still match), nesting too deep, an int past Python's digit
# limit, NaN and an out-of-range share, a repeated (step, question), blanks, CRLF, and the sentinel's own escape.
_ODD_LINES = {
    "truncated": '{"step": 3, "question_id": "q1", "p_initial',
    "glued": '{"step": 4, "question_id": "g"}{"step": 5, "question_id": "g"}',
    "open bracket": '{"step": 6, "x": [{}',
    "closes and adds": '{"step": 7, "question_id": "c"}]}, 5, {"step": 8, "question_id": "c"}',
    "two objects": '{"step": 15, "question_id": "t"}, {"step": 16, "question_id": "t"}',
    "deep": '{"step": 9, "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "big int": '{"step": 10, "x": 1' + "0" * 5000 + "}",
    "nan share": '{"step": 11, "question_id": "n", "p_majority": NaN}',
    "out of range": '{"step": 12, "question_id": "r", "p_initial_majority": 1.5}',
    "repeat": '{"step": 0, "question_id": "q1", "p_initial_majority": 0.5}',
    "blank": "   ",
    "not an object": "[1, 2]",
    "sentinel escape": '{"step": 13, "question_id": "z", "label": "\\u0000"}',
    "string with braces": '{"step": 14, "question_id": "}\\n{", "label": "{\\"a\\": 1}"}',
}


_ODD_CASES = [
    ((), "middle"),
    *[((name,), "middle") for name in _ODD_LINES],
    # adjacent: the second closes what the first left open
    (("open bracket", "closes and adds"), "middle"),
    (("open bracket", "closes and adds"), "end"),
    (("two objects",), "end"),
    (("truncated",), "end"),  # where a kill leaves it
    (("glued", "nan share", "repeat", "blank", "truncated"), "middle"),
]


@pytest.mark.parametrize("odd, where", _ODD_CASES)
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("end", ["\n", ""])
def test_one_call_reader_equals_a_line_by_line_reader_on_a_written_run(
    tmp_path, odd, where, newline, end
):
    path = tmp_path / "probes.jsonl"
    lines = _written_probes(path)
    at = 7 if where == "middle" else len(lines)
    lines[at:at] = [_ODD_LINES[name] for name in odd]
    path.write_bytes((newline.join(lines) + end).encode())
    assert read_log(path) == reference_read_log(path)
    assert read_jsonl(path) == reference_read_jsonl(path)


def test_one_call_reader_parses_a_written_file_in_one_call(tmp_path, monkeypatch):
    """The one-call parse is what reads a written file (no line goes through the line-by-line parser); with a
    truncated last line, only that line does; with two objects glued on a line, the lines parsed in the same call;
    with a line holding the sentinel's escape, the whole file -- and the result is the same."""
    from sharpen import records

    parsed_alone = []
    line_by_line = records._parse_line_at
    monkeypatch.setattr(
        records,
        "_parse_line_at",
        lambda line, *a: parsed_alone.append(line) or line_by_line(line, *a),
    )
    path = tmp_path / "probes.jsonl"
    lines = _written_probes(path)
    got = read_log(path)
    assert parsed_alone == [] and got == reference_read_log(path) and len(got[0]) == len(lines)
    path.write_text("\n".join(lines) + "\n" + _ODD_LINES["truncated"])
    assert read_log(path) == reference_read_log(path)
    assert parsed_alone == [_ODD_LINES["truncated"]]  # only the cut line is parsed on its own
    parsed_alone.clear()
    monkeypatch.setattr(records, "_CHUNK", 8)
    glued = [*lines[:3], _ODD_LINES["glued"], *lines[3:]]
    path.write_text("\n".join(glued) + "\n")
    assert read_log(path) == reference_read_log(path)
    assert parsed_alone == [
        *glued[:8],
        "",
    ]  # the glued line's chunk, and the blank after the last newline
    parsed_alone.clear()
    path.write_text("\n".join([*lines[:3], _ODD_LINES["sentinel escape"], *lines[3:]]) + "\n")
    assert read_log(path) == reference_read_log(path) and len(parsed_alone) == len(lines) + 2


def test_one_call_parse_refuses_what_is_not_one_object_per_line():
    from sharpen.records import _JOIN, _SENTINEL, _parse_joined

    def joined(lines):
        return "[" + _JOIN.join(lines) + "]"

    assert _parse_joined(joined(['{"a": 1}', '{"b": [2]}']), 2) == [{"a": 1}, {"b": [2]}]
    # a line that leaves a bracket open swallows the sentinel after it; the next adds an object, so that a
    # plain count of objects still matches -- the sentinels do not
    assert _parse_joined(joined(['{"a": [{}', '{"b": 1}]}, 5, {"c": 2}']), 2) is None
    assert (
        _parse_joined(joined(['{"a": 1}', '{"b": 2}, {"c": 3}']), 2) is None
    )  # one line, two objects
    assert _parse_joined("[" + '{"a": 1},' + _SENTINEL + "]", 2) is None  # a line short
    assert _parse_joined(joined(['{"a": 1}', "[]"]), 2) is None  # not an object
    assert (
        _parse_joined(joined(['{"a": 1' + "0" * 5000 + "}"]), 1) is None
    )  # int past the digit limit
    assert _parse_joined(joined(['{"a": 1}{"b": 2}']), 1) is None  # not JSON


# ------------------------------------------------------------------------------------------------------------
# the run header: written by every writer, read by every reader; old folders reconstructed once
# ------------------------------------------------------------------------------------------------------------


def test_header_roundtrip_settings_and_clear_errors(tmp_path):
    h = RunHeader(
        "trl", reward="majority_voting", lr=1e-6, n_rollouts=8, clip_eps=0.2, seed=3, steps=100
    )
    assert RunHeader.from_dict(json.loads(json.dumps(h.to_dict()))) == h
    assert h.settings() == {
        "lr": 1e-6,
        "n_rollouts": 8,
        "clip_eps": 0.2,
        "reward": "majority_voting",
    }
    assert RunHeader("sim", lr=1).lr == 1.0 and isinstance(RunHeader("sim", lr=1).lr, float)
    for kwargs, match in (
        ({"kind": "mine"}, "kind: must be one of"),
        ({"kind": "sim", "n_rollouts": 0}, "n_rollouts: must be >= 1"),
        ({"kind": "sim", "n_rollouts": 2.0}, "n_rollouts: must be an integer"),
        ({"kind": "sim", "lr": float("nan")}, "lr: must be finite"),
        ({"kind": "sim", "lr": True}, "lr: must be a number"),
        ({"kind": "sim", "reward": 3}, "reward: must be a string"),
    ):
        with pytest.raises(ValueError, match=match):
            RunHeader(**kwargs)
    with pytest.raises(ValueError, match=r"header: unknown field\(s\) \['learning_rate'\]"):
        RunHeader.from_dict({"kind": "sim", "learning_rate": 0.1})
    with pytest.raises(ValueError, match="header: no kind"):
        RunHeader.from_dict({"lr": 0.1})
    with pytest.raises(ValueError, match=r"header\.lr: must be finite"):
        RunHeader.from_dict({"kind": "sim", "lr": -1})
    assert RunHeader.from_fields("sim", {"lr": (0.1, 0.2), "seed": 4, "reward": None}).seed == 4
    w = RunWriter(tmp_path)
    with pytest.raises(ValueError, match="header: expected a RunHeader"):
        w.write_config({"kind": "sim"})
    with pytest.raises(ValueError, match=r"config: may not hold \['kind'\]"):
        w.write_config(RunHeader("sim"), {"kind": "sim"})


def test_written_header_is_read_and_a_bad_one_is_reported(tmp_path):
    w = RunWriter(tmp_path)
    w.write_config(RunHeader("empirical", lr=3e-5, n_rollouts=8), {"train": {"lr": 1.0}})
    w.log_metrics(0, {"reward_accuracy": 0.5})
    run = load_run(tmp_path)
    assert run.config["kind"] == "empirical" and run.config["train"] == {"lr": 1.0}
    assert run.header == RunHeader("empirical", lr=3e-5, n_rollouts=8) and run.warnings == ()
    config = json.loads((tmp_path / "config.json").read_text())
    config["header"]["lr"] = "fast"
    (tmp_path / "config.json").write_text(json.dumps(config))
    run = load_run(tmp_path)
    assert run.warnings == (
        "config.json: header.lr: must be a number or None, got 'fast'; header reconstructed from the old layout",
    )
    assert run.header == RunHeader("empirical", lr=1.0)  # the empirical layout's "train" section


def _old_folder(path, config, metrics=(), evals=()):
    """A run folder as the writers wrote it before the header: config.json without one."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if evals:
        (path / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    return path


def test_old_run_folders_still_load(tmp_path):
    # each writer's layout before the header, as it wrote it
    train = {"reward": "majority_voting", "lr": 3e-5, "n_rollouts": 8, "clip_eps": 0.2, "seed": 0, "model": "tiny",
             "task": "arith", "steps": 300, "kl_coef": 0.0, "n_train": 2000, "rollout_batch_size": 128}  # fmt: skip
    emp = load_run(_old_folder(
        tmp_path / "empirical", {"kind": "empirical", "train": train, "model_path": "/cache/tiny-400"},
        metrics=[{"step": 1, "reward_accuracy": 0.9, "majority_voting_reward": 0.7, "kl_to_initial": 0.01}],
        evals=[{"step": 0, "split": "heldout", "avg@4": 0.6, "maj@4": 0.7, "greedy_accuracy": 0.65}],
    ))  # fmt: skip
    assert emp.header == RunHeader("empirical", reward="majority_voting", lr=3e-5, n_rollouts=8, clip_eps=0.2,
                                   seed=0, model="/cache/tiny-400", task="arith", steps=300, batch_size=16,
                                   kl_coef=0.0, n_questions=2000)  # fmt: skip
    assert emp.evals[0]["accuracy"] == 0.6 and emp.metrics[0][KL] == 0.01
    trainer = {"learning_rate": 1e-6, "num_generations": 8, "epsilon": 0.2, "seed": 42, "max_steps": 40,
               "num_iterations": 1, "optim": "adamw_torch", "beta": 0.0}  # fmt: skip
    trl = load_run(_old_folder(
        tmp_path / "trl", {"kind": "trl", "trainer": trainer, "reward": "majority_voting", "task": "arith"},
        metrics=[{"step": 1, "reward": 0.5, "kl": 0.02}],
        evals=[{"step": 2, "split": "eval", "ground_truth_ratio": 0.4, "label_accuracy": 0.6, "reward": 0.3}],
    ))  # fmt: skip
    assert trl.header == RunHeader("trl", reward="majority_voting", lr=1e-6, n_rollouts=8, clip_eps=0.2, seed=42,
                                   task="arith", steps=40, epochs=1, optimizer="adamw_torch", kl_coef=0.0)  # fmt: skip
    assert trl.metrics[0][MAJORITY_REWARD] == 0.5 and trl.metrics[0][KL] == 0.02
    # as the older reader took it: the first key holding "acc"
    assert trl.evals[0]["accuracy"] == 0.6
    recipe = {"reward": "majority_voting", "lr": 1e-6, "n_rollouts": 8, "clip_eps": 0.2, "use_kl": False,
              "kl_coef": 0.005, "model_path": "Qwen/Qwen3-1.7B-Base", "prompts_per_step": 64, "name": "dapo"}  # fmt: skip
    verl = load_run(_old_folder(
        tmp_path / "verl", {"kind": "verl", "verl": "0.9.1", "source": "m.jsonl", **recipe},
        metrics=[{"step": 1, "reward": 0.25, "entropy": 0.5}],
        evals=[{"step": 1, "split": "val", "val-core/math_dapo/acc/mean@8": 0.1}],
    ))  # fmt: skip
    assert verl.header == RunHeader("verl", reward="majority_voting", lr=1e-6, n_rollouts=8, clip_eps=0.2,
                                    model="Qwen/Qwen3-1.7B-Base", task="dapo", batch_size=64, kl_coef=0.0)  # fmt: skip
    assert verl.metrics[0][MAJORITY_REWARD] == 0.25 and verl.evals[0]["accuracy"] == 0.1
    sim = load_run(_old_folder(
        tmp_path / "sim", {"kind": "sim", "experiment": "rise_then_fall", "steps": 3, "seeds": 3, "seed": 0,
                           "n_rollouts": 8, "n_questions": 512, "task": {"n_answers": 6}, "lr": [0.1, 0.2]},
        metrics=[{"step": k, "val_accuracy": v, "kl": 0.1 * k} for k, v in enumerate([0.2, 0.5, 0.4])],
    ))  # fmt: skip
    assert sim.header == RunHeader(
        "sim", n_rollouts=8, seed=0, task="rise_then_fall", steps=3, n_questions=512
    )
    assert [(e["step"], e["split"], e["accuracy"]) for e in sim.evals] == [(0, "heldout", 0.2), (1, "heldout", 0.5),
                                                                           (2, "heldout", 0.4)]  # fmt: skip
    assert [m[KL] for m in sim.metrics] == [0.0, 0.1, 0.2]
    bare = load_run(_old_folder(tmp_path / "bare", {}, metrics=[{"step": 0, "x": 1}]))
    assert (
        bare.header == RunHeader("unknown")
        and bare.metrics == [{"step": 0, "x": 1}]
        and bare.evals == []
    )


def test_a_header_written_folder_is_read_as_written(tmp_path):
    # the old layout's renames apply to old folders only: a folder with a header says what it logged
    w = RunWriter(tmp_path)
    w.write_config(RunHeader("trl"))
    w.log_metrics(0, {"reward": 0.5, "kl": 0.1})
    w.log_eval(0, "eval", {"avg@4": 0.5})
    run = load_run(tmp_path)
    assert run.metrics == [{"step": 0, "reward": 0.5, "kl": 0.1}] and run.evals == [
        {"step": 0, "split": "eval", "avg@4": 0.5}
    ]


# ------------------------------------------------------------------------------------------------------------
# the one probe-record builder, against plain counting
# ------------------------------------------------------------------------------------------------------------


def reference_probe(step, qid, answers, initial, label):
    """Plain counting over the M samples, canonical strings, TTRL's first-seen tie rule."""
    from sharpen.answers import canonicalize, equivalent

    keys = [None if a is None else canonicalize(str(a)) for a in answers]
    counts = {}
    for k in keys:
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
    majority = max(counts, key=lambda k: (counts[k], -keys.index(k))) if counts else None
    first = majority if initial is UNSET else initial
    fk = None if first is None else canonicalize(first)
    m = len(answers)
    return ProbeRecord(
        step, qid, m, majority, (counts[majority] / m) if counts else 0.0, first,
        0.0 if fk is None else sum(k == fk for k in keys) / m, label,
        None if label is None else equivalent(label, majority),
        None if label is None else sum(equivalent(label, None if a is None else str(a)) for a in answers) / m,
    )  # fmt: skip


@given(
    answers=st.lists(st.one_of(st.none(), st.sampled_from(["3", " 3 ", "$3$", "5", "1/2", "0.5", "x"]),
                               st.integers(0, 5)), min_size=1, max_size=12),
    initial=st.one_of(st.just(UNSET), st.none(), st.sampled_from(["3", "5", "7"])),
    label=st.one_of(st.none(), st.sampled_from(["3", "5"])),
)  # fmt: skip
def test_probe_record_equals_plain_counting(answers, initial, label):
    assert probe_record(4, "q", answers, initial=initial, label=label) == reference_probe(
        4, "q", answers, initial, label
    )


def test_probe_records_of_a_batch_and_exact_probes():
    recs, initial = probe_records(
        0, ["a", "b", "a", "b"], ["1", "2", "1", None], labels=["1", "1", "1", "1"]
    )
    assert [r.question_id for r in recs] == ["a", "b"] and initial == {"a": "1", "b": "2"}
    assert recs[1].majority_correct is False and recs[1].sample_accuracy == 0.0
    again, kept = probe_records(3, ["b", "b"], ["1", "1"], initial=initial)
    assert (
        again[0].initial_majority_answer == "2"
        and again[0].p_initial_majority == 0.0
        and kept == initial
    )
    r = probe_record(2, "q", ["0", "1", "2"], probs=[0.25, 0.5, 0.25], n_samples=100, initial="2",
                     label="2", exact={"exact_entropy": 1.0})  # fmt: skip
    assert (r.majority_answer, r.p_majority, r.p_initial_majority, r.sample_accuracy) == (
        "1",
        0.5,
        0.25,
        0.25,
    )
    assert r.majority_correct is False and r.n_samples == 100 and r.exact_entropy == 1.0
    for kwargs, match in (
        ({"step": -1}, "step"),
        ({"answers": []}, "answers: empty"),
        ({"probs": [0.5]}, "probs: need one probability per answer"),
        ({"n_samples": 3}, "n_samples: a sampled probe"),
        ({"exact": {"label": "x"}}, "exact: not exact_"),
    ):
        args = {"step": 0, "answers": ["1", "2"], **kwargs}
        with pytest.raises(ValueError, match=match):
            probe_record(args.pop("step"), "q", args.pop("answers"), **args)
    with pytest.raises(ValueError, match="n_samples: required with probs"):
        probe_record(0, "q", ["1"], probs=[1.0])
    assert initial_majorities([{"step": 2, "question_id": "a", "initial_majority_answer": 1}]) == {
        "a": "1"
    }
