"""``sharpen fit`` (paper_figures.fit_report): its help costs no scipy, matplotlib or torch import; a run is
reported with its figure; malformed probe lines are named, one warning each, and a folder without logs is one
clear error."""

from __future__ import annotations

from sharpen.cli import main
from sharpen.records import ProbeRecord, RunHeader, RunWriter
from sharpen.theory import majority_prob


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse exits
        return int(exc.code)


def test_fit_help_imports_neither_scipy_nor_matplotlib_nor_torch(cli_in_fresh_process):
    text, loaded = cli_in_fresh_process(["fit", "--help"], ("scipy", "matplotlib", "torch"))
    assert "RUN_DIR" in text, text
    assert loaded == [], loaded


def test_fit_writes_the_report_and_the_figure(tmp_path, capsys):
    w = RunWriter(tmp_path / "run")
    w.write_config(RunHeader("empirical", lr=1e-6))
    for k in range(0, 60, 5):
        w.log_metrics(k, {"reward_accuracy": 0.9})
        w.log_probes(
            ProbeRecord(k, f"q{q}", 64, "7", p, "7", p, label="7", majority_correct=True)
            for q, p in enumerate(majority_prob([0.3, 0.5, 0.7], 25.0, k).tolist())
        )
    assert _run(["fit", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
    assert "3 probe questions" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["fit_overlay.png", "fit_report.md", "fit_summary.json"]
    assert (tmp_path / "out" / "fit_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_malformed_probe_lines_are_named_and_a_folder_without_logs_is_one_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "probes.jsonl").write_text(
        '{"step": 0, "question_id": "q0", "p_init\n'  # cut short
        "[1, 2]\n"
        '{"step": 1, "question_id": "q0"}{"step": 2, "question_id": "q0"}\n'  # two records glued
        '{"step": 3, "question_id": "q0"}\n'  # no p_initial_majority
    )
    assert _run(["fit", str(run), "--no-figure"]) == 0
    out = capsys.readouterr().out
    for line in (
        "warning: probes.jsonl:1: not valid JSON (a write cut short?), line skipped",
        "warning: probes.jsonl:2: not a JSON object, line skipped",
        "warning: probes.jsonl:3: not valid JSON (a write cut short?), line skipped",
        "warning: probes: records: no usable probe record (each needs step, question_id and "
        "p_initial_majority)",
    ):
        assert line in out.splitlines(), out
    (tmp_path / "empty").mkdir()
    assert _run(["fit", str(tmp_path / "empty")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [
        f"sharpen fit: error: {tmp_path / 'empty'}: run_dir: {tmp_path / 'empty'} holds none of "
        "metrics.jsonl, probes.jsonl, eval.jsonl"
    ]


def test_the_overlay_is_saved_with_the_pixels_of_the_default_png_encoder(tmp_path, monkeypatch):
    """write_report saves the PNG with zlib's fastest level: the pixels are those matplotlib's default gives."""
    import numpy as np
    from matplotlib.figure import Figure
    from PIL import Image

    from paper_figures.fit_report import write_report
    from sharpen.run_analysis import analyze_run

    w = RunWriter(tmp_path / "run")
    for k in range(0, 60, 5):
        w.log_probes(
            ProbeRecord(k, f"q{q}", 64, "7", p, "7", p, label="7", majority_correct=q == 0)
            for q, p in enumerate(majority_prob([0.3, 0.5, 0.7], 25.0, k).tolist())
        )
    res = analyze_run(tmp_path / "run")
    fast = write_report(res, tmp_path / "fast")["overlay"]
    save = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, pil_kwargs=None, **kw: save(fig, *a, **kw)
    )
    default = write_report(res, tmp_path / "default")["overlay"]
    a, b = (np.asarray(Image.open(p)) for p in (fast, default))
    assert a.shape == b.shape and np.array_equal(a, b)
    assert fast.read_bytes() != default.read_bytes()  # another encoding of the same picture
