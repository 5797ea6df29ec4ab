"""Resume after a real SIGKILL: the resumed run's logs equal an uninterrupted run's (CPU, same seed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from empirical.train import latest_checkpoint
from sharpen.records import load_run

ROOT = Path(__file__).resolve().parents[2]
STEPS = 16


def command(out_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "empirical.cli", "train", "--preset", "tiny-arith-ttrl",
        "--pretrain-steps", "300", "--steps", str(STEPS), "--checkpoint-every", "3", "--probe-every", "4",
        "--n-probe", "8", "--probe-samples", "8", "--eval-every", "5", "--n-eval", "20", "--no-progress",
        "--lr", "1e-4", "--out-dir", str(out_dir), *extra,
    ]  # fmt: skip


def without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def test_resume_after_sigkill_reproduces_the_uninterrupted_logs(tiny_cache, tmp_path):
    env = {
        **os.environ,
        "SHARPEN_CACHE": str(tiny_cache),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    kill_after = int(
        np.random.default_rng().integers(4, STEPS - 2)
    )  # a random step, reported on failure
    reference = subprocess.Popen(command(tmp_path / "ref"), cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    victim = subprocess.Popen(command(tmp_path / "run"), cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, (
        f"the run finished before the kill (kill_after={kill_after})"
    )
    killed_at = len(metrics.read_text().splitlines())
    assert killed_at < STEPS
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert (
        checkpoint is not None and checkpoint.name != f"step-{STEPS:06d}"
    )  # a real mid-run resume

    resumed = subprocess.run(command(tmp_path / "run", "--resume"), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-2000:]

    ref, run = load_run(tmp_path / "ref"), load_run(tmp_path / "run")
    context = f"killed after {killed_at} steps (target {kill_after})"
    assert [m["step"] for m in run.metrics] == list(range(1, STEPS + 1)), context
    assert without_timings(run.metrics) == without_timings(ref.metrics), context
    assert run.probes == ref.probes, context
    assert run.evals == ref.evals, context
