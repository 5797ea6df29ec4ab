"""Resume after a real SIGKILL: the resumed run's logs equal an uninterrupted run's (CPU, same seed); and resuming
past a broken or crafted checkpoint, to more steps, or without config.json."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from empirical.train import latest_checkpoint, train
from sharpen.records import load_run

ROOT = Path(__file__).resolve().parents[2]
STEPS = 16


def command(model: Path, out_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "empirical.cli", "train", "--preset", "tiny-arith-ttrl",
        "--model", str(model), "--steps", str(STEPS), "--checkpoint-every", "3", "--probe-every", "4",
        "--n-probe", "8", "--probe-samples", "8", "--eval-every", "5", "--n-eval", "20", "--no-progress",
        "--lr", "1e-4", "--out-dir", str(out_dir), *extra,
    ]  # fmt: skip


def without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


def test_resume_after_sigkill_reproduces_the_uninterrupted_logs(tiny_cache, tiny_model, tmp_path):
    env = {
        **os.environ,
        "SHARPEN_CACHE": str(tiny_cache),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    kill_after = int(
        np.random.default_rng().integers(4, STEPS - 2)
    )  # a random step, reported on failure
    reference = subprocess.Popen(command(tiny_model, tmp_path / "ref"), cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    victim = subprocess.Popen(command(tiny_model, tmp_path / "run"), cwd=ROOT, env=env,
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

    resumed = subprocess.run(command(tiny_model, tmp_path / "run", "--resume"), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-2000:]

    ref, run = load_run(tmp_path / "ref"), load_run(tmp_path / "run")
    context = f"killed after {killed_at} steps (target {kill_after})"
    assert [m["step"] for m in run.metrics] == list(range(1, STEPS + 1)), context
    assert without_timings(run.metrics) == without_timings(ref.metrics), context
    assert run.probes == ref.probes, context
    assert run.evals == ref.evals, context


# ------------------------------------------------------------------------------------------------------------
# resuming a run folder in process: a broken newest checkpoint, a crafted one, a longer run, no config.json
# ------------------------------------------------------------------------------------------------------------


def small(tiny_config, **changes):
    """Two steps of 16 rollouts, a checkpoint after each."""
    fields = dict(
        rollout_batch_size=16,
        probe_every=0,
        eval_every=0,
        log_kl=False,
        checkpoint_every=1,
        steps=2,
    )
    return tiny_config.replace(**{**fields, **changes})


def cli_args(cfg, *extra: str) -> list[str]:
    """``sharpen train`` arguments of a ``small`` configuration."""
    return [
        "train", "--preset", "tiny-arith-ttrl", "--model", cfg.model, "--torch-threads", str(cfg.torch_threads),
        "--rollout-batch-size", "16", "--probe-every", "0", "--eval-every", "0", "--no-log-kl",
        "--checkpoint-every", "1", "--no-progress", "--out-dir", cfg.out_dir, *extra,
    ]  # fmt: skip


def test_a_broken_newest_checkpoint_is_skipped_with_a_warning(tiny_config):
    cfg = small(tiny_config)
    run_dir = train(cfg)
    before = load_run(run_dir).metrics
    newest = run_dir / "checkpoints" / "step-000002"
    trainer_pt = newest / "trainer.pt"
    trainer_pt.write_bytes(trainer_pt.read_bytes()[:100])  # truncated
    (newest / "model.safetensors").write_bytes(b"garbage")

    with pytest.warns(UserWarning, match=r"step-000002: skipped, path: .*trainer.pt is unreadable"):
        train(cfg, resume=True)  # was: SafetensorError: Error while deserializing header

    after = load_run(run_dir)
    assert [m["step"] for m in after.metrics] == [1, 2] and not after.warnings
    # step 2 was trained again from step 1's checkpoint, so it is the same step 2
    assert without_timings(after.metrics) == without_timings(before)
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["broken-step-000002", "step-000001", "step-000002"]


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_trainer_state_is_refused_on_resume(tiny_config, capsys):
    import torch

    from empirical.cli import main

    cfg = small(tiny_config)
    assert main(cli_args(cfg, "--steps", "1")) == 0
    run_dir = Path(cfg.out_dir)
    marker = run_dir.parent / "PWNED"
    torch.save(
        {"step": 1, "x": Exploit(marker)}, run_dir / "checkpoints" / "step-000001" / "trainer.pt"
    )

    assert main(cli_args(cfg, "--steps", "1", "--resume")) == 2  # was: the shell command ran
    err = capsys.readouterr().err.strip()
    assert err.startswith("sharpen train: error: path: ") and "\n" not in err
    assert err.endswith("names Python objects (posix.system) besides tensors and plain data; refusing to load"
                        " it (was it written by sharpen?)")  # fmt: skip
    assert not marker.exists()


def test_resume_with_more_steps_extends_a_finished_run(tiny_config, tmp_path, capsys):
    from empirical.cli import main

    cfg = small(tiny_config)
    assert main(cli_args(cfg, "--steps", "2")) == 0
    # was: "holds a run with a different configuration"
    assert main(cli_args(cfg, "--steps", "4", "--resume")) == 0
    reference = small(tiny_config, steps=4, out_dir=str(tmp_path / "reference"))
    assert main(cli_args(reference, "--steps", "4")) == 0

    run, ref = load_run(cfg.out_dir), load_run(reference.out_dir)
    assert [m["step"] for m in run.metrics] == [1, 2, 3, 4]
    assert without_timings(run.metrics) == without_timings(ref.metrics)
    assert run.config["train"]["steps"] == 4
    assert main(cli_args(cfg, "--steps", "3", "--resume")) == 2
    assert "steps: 4 -> 3" in capsys.readouterr().err


def test_a_run_folder_without_config_json_is_not_resumed(tiny_config):
    cfg = small(tiny_config, lr=1e-3, steps=1)
    run_dir = train(cfg)
    (run_dir / "config.json").unlink()
    # was: resumed with the checkpoint's lr 1e-3 while config.json recorded 3e-5
    with pytest.raises(ValueError, match="no config.json to check them against"):
        train(cfg.replace(lr=3e-5, steps=2), resume=True)
    assert [m["step"] for m in load_run(run_dir).metrics] == [1]
