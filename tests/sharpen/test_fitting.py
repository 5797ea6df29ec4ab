"""Tests of sharpen.fitting: probe records -> trajectories (against a plain loop), per-question Theorem 1 fits,
classes, pooled slopes and beta in the run's units."""

from __future__ import annotations

import dataclasses
import doctest
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sharpen import fitting
from sharpen.fitting import (
    ProbeTrajectories,
    beta_mapping,
    classify_questions,
    fit_trajectories,
    pool_slopes,
    trajectories_from_probes,
)
from sharpen.theory import majority_prob

STEPS = np.arange(0, 201, 10)


@given(beta=st.floats(5.0, 200.0), p0=st.floats(0.2, 0.8))
def test_classification_of_closed_form_is_sharpened(beta, p0):
    recs = [
        {"step": int(k), "question_id": "q", "p_initial_majority": float(p), "n_samples": 1000}
        for k, p in zip(STEPS, majority_prob(p0, beta, STEPS), strict=True)
    ]
    traj, warns = trajectories_from_probes(recs)
    fit = fit_trajectories(traj)
    q = classify_questions(traj, fit)[0]
    assert not warns
    assert q.label in ("sharpened", "saturated")
    if q.label == "sharpened":
        assert q.beta_ci[0] <= beta * (1 + 1e-6) and beta * (1 - 1e-6) <= q.beta_ci[1]


def test_pool_slopes_weights_and_heterogeneity():
    p = pool_slopes([0.1, 0.3], [0.01, 0.01])
    assert p.slope == pytest.approx(0.2)
    assert p.i2 > 0.9  # two slopes 14 SE apart: not one common beta
    q = pool_slopes([0.1, 0.3, math.nan], [0.001, 1.0, 0.1])
    assert q.n_questions == 2 and q.slope == pytest.approx(0.1, abs=1e-3)
    with pytest.raises(ValueError, match="ses"):
        pool_slopes([0.1], [0.1, 0.2])


def test_beta_mapping_uses_the_learning_rate_it_is_given():
    pooled = pool_slopes([0.1, 0.1], [0.01, 0.01])
    m = beta_mapping(pooled, 0.5)
    assert m["beta_steps"] == pytest.approx(10.0)
    assert m["log_odds_per_step_per_lr"] == pytest.approx(0.2)
    for lr in (None, 0.0, math.nan, "0.5"):
        assert beta_mapping(pooled, lr)["log_odds_per_step_per_lr"] is None


def test_docstring_examples_run():
    result = doctest.testmod(fitting, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_rows_and_upto_select_questions_and_steps_of_every_field():
    records = [
        {"step": s, "question_id": q, "p_initial_majority": p, "majority_answer": a, "initial_majority_answer": "7",
         "p_majority": p, "majority_correct": q == "b", "sample_accuracy": p / 2, "n_samples": 8}
        for s in (0, 10, 20)
        for q, p, a in (("a", 0.5 + s / 100, "7"), ("b", 0.6, "7"), ("c", 0.3, "7"))
    ]  # fmt: skip
    traj, _ = trajectories_from_probes(records)
    sub = traj.rows([2, 0, 0])
    assert sub.question_ids == ("c", "a", "a")
    for name in ("p_initial", "p_majority", "n_samples", "majority_correct", "sample_accuracy"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(traj, name)[[2, 0, 0]])
    assert list(sub.majority_answer[:, 0]) == ["7", "7", "7"]
    np.testing.assert_array_equal(sub.initial_correct, traj.initial_correct[[2, 0, 0]])
    early = traj.upto(10)
    assert early.steps.tolist() == [0, 10] and early.p_initial.shape == (3, 2)
    np.testing.assert_array_equal(early.p_initial, traj.p_initial[:, :2])
    assert early.question_ids == traj.question_ids and early.source == traj.source


# ----------------------------------------------------------------------------------------------
# trajectories_from_probes against a plain loop (the records -> trajectories conversion, one record at a time)
# ----------------------------------------------------------------------------------------------


def _probability(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if 0.0 <= x <= 1.0 else None


def _bool_float(v):
    if v is None:
        return math.nan
    if isinstance(v, bool | int | float | np.bool_):
        return float(bool(v)) if not (isinstance(v, float) and math.isnan(v)) else math.nan
    return math.nan


def reference_trajectories(records):
    """One record at a time, with dicts: what trajectories_from_probes must equal."""
    records = list(records)
    exact = bool(records) and all(
        isinstance(r, dict) and r.get("exact_p_initial_majority") is not None for r in records
    )
    if exact:
        view = []
        for r in records:
            v = dict(r)
            for sampled, name in (("p_initial_majority", "exact_p_initial_majority"),
                                  ("p_majority", "exact_p_majority"), ("majority_answer", "exact_majority_answer"),
                                  ("initial_majority_answer", "exact_initial_majority_answer"),
                                  ("sample_accuracy", "exact_accuracy")):  # fmt: skip
                v[sampled] = r.get(name)
            v["n_samples"] = None
            lab, ans = r.get("label"), r.get("exact_majority_answer")
            v["majority_correct"] = None if lab is None or ans is None else str(ans) == str(lab)
            view.append(v)
        records = view
    missing, rows, order, n_dup = {}, {}, {}, 0
    for rec in records:
        if not isinstance(rec, dict):
            missing["not a record"] = missing.get("not a record", 0) + 1
            continue
        bad = [k for k in ("step", "question_id", "p_initial_majority") if rec.get(k) is None]
        if not bad and _probability(rec["p_initial_majority"]) is None:
            bad = ["p_initial_majority (not a probability)"]
        if not bad:
            try:
                step = int(rec["step"])
            except (TypeError, ValueError):
                bad = ["step (not an integer)"]
        for b in bad:
            missing[b] = missing.get(b, 0) + 1
        if bad:
            continue
        key = (str(rec["question_id"]), step)
        n_dup += key in rows
        rows[key] = rec
        order.setdefault(key[0], None)
    warnings = [f"probes: skipped {c} record(s) missing field {n}" for n, c in missing.items()]
    if n_dup:
        warnings.append(f"probes: {n_dup} repeated (question, step) record(s); kept the last")
    if not rows:
        raise ValueError("no usable probe record")
    qids = tuple(order)
    steps = np.array(sorted({s for _, s in rows}), dtype=np.float64)
    qi, sj = {q: i for i, q in enumerate(qids)}, {int(s): j for j, s in enumerate(steps)}
    shape = (len(qids), len(steps))
    p_init, p_maj, n_samp, maj_cor, s_acc = (np.full(shape, np.nan) for _ in range(5))
    maj_ans = np.full(shape, None, dtype=object)
    init_ans = [None] * len(qids)
    for (q, s), rec in sorted(rows.items(), key=lambda kv: kv[0][1]):
        i, j = qi[q], sj[s]
        p_init[i, j] = float(rec["p_initial_majority"])
        pm = _probability(rec.get("p_majority"))
        p_maj[i, j] = max(pm, p_init[i, j]) if pm is not None else p_init[i, j]
        try:
            n = float(rec.get("n_samples"))
            n_samp[i, j] = n if n >= 1 else np.nan
        except (TypeError, ValueError):
            pass
        maj_ans[i, j] = rec.get("majority_answer")
        maj_cor[i, j] = _bool_float(rec.get("majority_correct"))
        sa = _probability(rec.get("sample_accuracy"))
        s_acc[i, j] = np.nan if sa is None else sa
        if init_ans[i] is None and rec.get("initial_majority_answer") is not None:
            init_ans[i] = str(rec["initial_majority_answer"])
    init_cor = np.full(len(qids), np.nan)
    for i in range(len(qids)):
        for j in np.flatnonzero(~np.isnan(p_init[i])):
            if p_init[i, j] >= p_maj[i, j] and not np.isnan(maj_cor[i, j]):
                init_cor[i] = maj_cor[i, j]
                break
    traj = ProbeTrajectories(qids, steps, p_init, p_maj, n_samp, maj_ans, tuple(init_ans), init_cor, maj_cor,
                             s_acc, "exact" if exact else "sampled")  # fmt: skip
    return traj, tuple(warnings)


def _assert_same(got, want):
    for name in ProbeTrajectories.__dataclass_fields__:
        a, b = getattr(got, name), getattr(want, name)
        if isinstance(b, np.ndarray) and b.dtype != object:
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name
        elif isinstance(b, np.ndarray):
            assert a.shape == b.shape and a.tolist() == b.tolist(), name
        else:
            assert a == b, name


_value = st.one_of(
    st.none(), st.floats(-0.5, 1.5), st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 3),
    st.booleans(), st.sampled_from(["0.5", "x", "", "7"]),
)  # fmt: skip


@st.composite
def _probe_rows(draw):
    rows = []
    for _ in range(draw(st.integers(1, 40))):
        if draw(st.integers(0, 30)) == 0:
            rows.append(draw(st.sampled_from([None, 3, "row", [1, 2]])))  # not a record
            continue
        row = {
            "step": draw(
                st.one_of(st.integers(0, 6), st.sampled_from([None, "2", 1.5, True, "x"]))
            ),
            "question_id": draw(
                st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(0, 2), st.none())
            ),
            "p_initial_majority": draw(st.one_of(st.floats(0, 1), _value)),
        }
        for name in ("p_majority", "n_samples", "majority_answer", "majority_correct", "sample_accuracy",
                     "initial_majority_answer", "label", "exact_p_initial_majority", "exact_p_majority",
                     "exact_majority_answer", "exact_initial_majority_answer", "exact_accuracy"):  # fmt: skip
            if draw(st.booleans()):
                row[name] = draw(_value)
        rows.append(row)
    if draw(st.booleans()):  # every record exact: the exact fields are read
        for row in rows:
            if isinstance(row, dict):
                row["exact_p_initial_majority"] = draw(st.floats(0, 1))
    return rows


@given(_probe_rows())
def test_trajectories_equal_a_plain_loop_on_messy_records(rows):
    try:
        want = reference_trajectories(rows)
    except ValueError:
        with pytest.raises(ValueError, match="no usable probe record"):
            trajectories_from_probes(rows)
        return
    got = trajectories_from_probes(rows)
    _assert_same(got[0], want[0])
    assert got[1] == want[1]


def test_trajectories_equal_a_plain_loop_on_written_records():
    rng = np.random.default_rng(0)
    rows = [
        {"step": int(s), "question_id": f"q{q}", "n_samples": 16, "majority_answer": str(rng.integers(3)),
         "p_majority": 0.6, "initial_majority_answer": "1", "p_initial_majority": float(rng.uniform(0, 0.6)),
         "label": "1", "majority_correct": bool(rng.integers(2)), "sample_accuracy": float(rng.uniform()),
         "exact_p_initial_majority": None}
        for s in rng.permutation(30) for q in range(7)
    ]  # fmt: skip
    rows += rows[5:9]  # re-logged after a resume: the last record wins
    got, want = trajectories_from_probes(rows), reference_trajectories(rows)
    _assert_same(got[0], want[0])
    assert got[1] == want[1] == ("probes: 4 repeated (question, step) record(s); kept the last",)


def test_trajectories_of_a_written_run_equal_a_plain_loop_over_its_lines(tmp_path):
    """``sharpen fit``'s path (the one-call reader, then the column-wise trajectories) against ``json.loads`` of
    each line and a loop over the records: questions not probed at some steps, a resumed run's re-logged steps,
    a killed last write. The trajectories hold NaN exactly where a question was not probed."""
    from sharpen.records import ProbeRecord, RunWriter, load_run

    rng = np.random.default_rng(1)

    def log(steps):
        for s in steps:
            w.log_probes(
                ProbeRecord(s, f"q{q}", 16, str(rng.integers(3)), 0.75, "1", float(rng.integers(0, 13) / 16),
                            label="1", majority_correct=bool(rng.integers(2)), sample_accuracy=float(rng.uniform()))
                for q in range(9) if (s * q) % 7 != 3
            )  # fmt: skip

    w = RunWriter(tmp_path)
    log(range(40))
    log([29])  # resumed from a checkpoint at step 28 without truncating
    path = tmp_path / "probes.jsonl"
    with path.open("a") as fh:
        fh.write('{"step": 40, "question_id": "q1", "p_init')  # killed mid-write
    plain = []
    for line in path.read_text().splitlines():
        try:
            plain.append(json.loads(line))
        except ValueError:
            pass
    run = load_run(tmp_path)
    assert run.probes == plain
    cut = f"probes.jsonl:{len(plain) + 1}: not valid JSON (a write cut short?), line skipped"
    assert cut in run.warnings
    first = 1 + next(i for i, r in enumerate(plain) if (r["step"], r["question_id"]) == (29, "q0"))
    assert f"probes.jsonl:321: step 29 question_id 'q0' repeats line {first}" in run.warnings
    got, want = trajectories_from_probes(run.probes), reference_trajectories(plain)
    _assert_same(got[0], want[0])
    assert got[1] == want[1] and "repeated (question, step)" in got[1][0]
    probed = {(r["question_id"], r["step"]) for r in plain}
    expect = np.array([[(q, int(s)) in probed for s in got[0].steps] for q in got[0].question_ids])
    for name in ("p_initial", "p_majority", "n_samples", "sample_accuracy", "majority_correct"):
        assert np.array_equal(~np.isnan(getattr(got[0], name)), expect), name


def _same_fit(a, b):
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), f.name
        else:
            assert x == y, f.name


@pytest.mark.parametrize("seed", range(8))
def test_fit_with_one_shared_row_of_counts_equals_the_full_counts(seed, monkeypatch):
    """fit_trajectories passes one row of sample counts when every question has the same ones: the same fit as
    fit_sharpening given the whole (Q, L) array (counts varying by step, shares on the 1/(2M) grid and off it,
    0/1 shares; with missing probes the rows differ and the whole array is passed)."""
    from sharpen.theory import fit_sharpening

    shapes = []
    monkeypatch.setattr(fitting, "fit_sharpening", lambda *a, **kw: shapes.append(kw["n_samples"].shape)
                        or fit_sharpening(*a, **kw))  # fmt: skip
    rng = np.random.default_rng(seed)
    n_q, n_steps = int(rng.integers(2, 30)), int(rng.integers(2, 25))
    steps = np.sort(rng.choice(200, n_steps, replace=False)).astype(float)
    m = rng.choice([8.0, 16.0, 64.0], n_steps) if seed % 2 else np.full(n_steps, 16.0)
    p = rng.binomial(m.astype(int), rng.uniform(0.05, 0.95, (n_q, 1)) * np.ones(n_steps)) / m
    if seed % 3 == 0:
        p = np.clip(p + rng.normal(0, 1e-3, p.shape), 0, 1)  # off the grid
    if seed >= 6:
        p[rng.uniform(size=p.shape) < 0.15] = np.nan
    traj = ProbeTrajectories(
        tuple(f"q{i}" for i in range(n_q)), steps, p, p, np.where(np.isnan(p), np.nan, m),
        np.full(p.shape, None, dtype=object), (None,) * n_q, np.full(n_q, np.nan), np.full(p.shape, np.nan),
        np.full(p.shape, np.nan),
    )  # fmt: skip
    full = fit_sharpening(
        steps, p, n_samples=np.where(np.isnan(traj.n_samples), 1.0, traj.n_samples)
    )
    _same_fit(fit_trajectories(traj), full)
    assert shapes == [(1, n_steps) if seed < 6 else (n_q, n_steps)]
