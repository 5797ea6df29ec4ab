r"""From an experiment's config to real GRPO run folders, and the series read back from them.

:class:`LabRuns` holds the fields every lab experiment shares (seeds, the prior, the held-out set, probe and
eval cadence, where run folders live); :meth:`LabRuns.train_config` turns one (reward, learning rate, seed) of an
experiment into a :class:`empirical.config.TrainConfig`. :func:`ensure_runs` trains each configuration into its
own folder under ``runs_dir``, named by reward, learning rate, seed and a digest of every field that changes the
run, so experiments that ask for the same run share it, and a finished run is never trained twice (an
interrupted one resumes from its last checkpoint).

Read back (pure functions of a :class:`sharpen.records.Run`): :func:`eval_series` (held-out exact accuracy and
its standard error over questions, per eval step), :func:`metric_series` (a batch metric per step) and
:func:`probe_trajectories` (per-question exact probe trajectories).

Seeds: seed ``s`` of an experiment trains with ``TrainConfig.seed = config.seed + s`` (sampling and data order);
the questions (``data_seed``) and the prior are the same for every seed, so seeds differ by training noise only.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empirical.config import TrainConfig, preset
from sharpen.collapse import metric_series as series
from sharpen.records import Run, load_run
from sim.configs import with_help

__all__ = [
    "LabRuns",
    "ensure_runs",
    "load_runs",
    "run_folder",
    "eval_series",
    "metric_series",
    "probe_trajectories",
    "mean_se",
    "preset_fields",
    "heldout_accuracy",
]

RUN_FIELDS_IGNORED = frozenset(
    {"out_dir", "progress", "checkpoint_every", "keep_checkpoints", "report_to"}
)
"""Fields that do not change a run's logs; left out of the folder digest."""


WORKERS_HELP = "runs trained at a time, one process each (2 = both idle cores)"


@dataclass(frozen=True)
class LabRuns:
    """Fields every lab experiment shares.

    Attributes
    ----------
    seeds, seed : runs per setting and the base seed (seed ``s`` trains with ``seed + s``)
    model : 'tiny' (the locally pretrained tiny Qwen3) or a model folder
    pretrain_accuracy : tiny model: the prior's greedy accuracy at which pretraining stops
    steps : GRPO steps per run
    rollout_batch_size, n_rollouts : rollouts per step and per question (64 = 8 questions x 8; the preset has 128)
    n_heldout : held-out questions (each eval scores all of them exactly)
    eval_every, probe_every, n_probe : cadence of held-out evals and exact probes, and the probe questions
    control_seeds : seeds of the ground-truth control (the control is run at every learning rate; it only has
        to show that the fall is the reward's, so it gets fewer seeds than the claim)
    workers : runs trained at a time, each in its own one-thread process (:func:`ensure_runs`; results do not
        depend on it)
    runs_dir : where run folders live (shared by every experiment)
    """

    seeds: int = with_help(3, "seeds per setting (training noise only: same questions and prior)")
    seed: int = with_help(0, "base seed")
    model: str = with_help("tiny", "'tiny' (pretrained locally) or a model folder")
    pretrain_accuracy: float = with_help(
        0.7, "tiny model: stop pretraining at this greedy accuracy (the prior's strength)"
    )
    steps: int = with_help(300, "GRPO steps per run")
    rollout_batch_size: int = with_help(64, "rollouts per step")
    n_rollouts: int = with_help(8, "rollouts per question (the group size N)")
    n_heldout: int = with_help(1000, "held-out questions, each scored exactly at every eval")
    eval_every: int = with_help(20, "steps between held-out evals")
    probe_every: int = with_help(20, "steps between exact probes (0 = none)")
    n_probe: int = with_help(24, "probe questions (stratified by exact p0)")
    control_seeds: int = with_help(1, "seeds of the ground-truth control at each learning rate")
    workers: int = with_help(1, WORKERS_HELP)
    runs_dir: str = with_help("sharpen-out/lab/runs", "folder of the run folders (shared)")

    def __post_init__(self) -> None:
        for name in (
            "seeds",
            "steps",
            "rollout_batch_size",
            "n_rollouts",
            "n_heldout",
            "eval_every",
            "workers",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        if not 0 < self.pretrain_accuracy <= 1:
            raise ValueError(f"pretrain_accuracy: must lie in (0, 1], got {self.pretrain_accuracy}")

    def train_config(self, reward: str, lr: float, seed: int, **changes) -> TrainConfig:
        """The :class:`TrainConfig` of seed index ``seed`` of one setting (``changes``: further fields)."""
        fields = dict(
            model=self.model,
            pretrain_accuracy=self.pretrain_accuracy,
            reward=reward,
            lr=float(lr),
            seed=self.seed + seed,
            steps=self.steps,
            rollout_batch_size=self.rollout_batch_size,
            n_rollouts=self.n_rollouts,
            n_heldout=self.n_heldout,
            n_eval=self.n_heldout,
            eval_every=self.eval_every,
            eval_samples=1,
            eval_greedy=False,
            probe_every=self.probe_every,
            n_probe=self.n_probe,
            probe_samples=8,
            checkpoint_every=100,
            keep_checkpoints=1,
            progress=False,
        )
        fields.update(changes)
        return preset("tiny-arith-ttrl").replace(**fields)


def run_folder(cfg: TrainConfig, runs_dir: str | Path) -> Path:
    """``runs_dir/<reward>-lr<lr>-seed<seed>-<digest>``; the digest covers every field that changes the run and
    differs from :class:`TrainConfig`'s default (so a new field, added with a default that keeps old behaviour,
    leaves existing folders reusable)."""
    default = TrainConfig().to_dict()
    d = {
        k: v
        for k, v in cfg.to_dict().items()
        if k not in RUN_FIELDS_IGNORED and v != default.get(k, object())
    }
    digest = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return Path(runs_dir) / f"{cfg.reward}-lr{cfg.lr:g}-seed{cfg.seed}-{digest}"


def _finished(folder: Path, steps: int) -> bool:
    path = folder / "metrics.jsonl"
    if not path.exists():
        return False
    with path.open("rb") as f:
        lines = f.read().splitlines()
    try:
        return bool(lines) and int(json.loads(lines[-1])["step"]) >= steps
    except (ValueError, KeyError, TypeError):
        return False


def ensure_runs(
    configs: Sequence[TrainConfig], runs_dir: str | Path, *, workers: int = 1
) -> list[Path]:
    """Train every configuration that has no finished folder yet; return the folders, in order.

    A folder whose ``metrics.jsonl`` reaches ``cfg.steps`` is taken as it is; any other is (re)started with
    ``resume=True`` (continuing from its last checkpoint). One line per run goes to stderr.

    ``workers > 1`` trains that many runs at a time, each in its own process (``spawn``; each on its
    ``torch_threads``), so two one-thread runs use two idle cores. A run's logs do not depend on the process it
    ran in. The tiny priors the runs start from are built first, in this process (one cache write each), so
    no two workers pretrain the same prior at once.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: must be an integer >= 1, got {workers!r}")
    folders = [run_folder(c, runs_dir) for c in configs]
    todo = [
        i
        for i, (c, f) in enumerate(zip(configs, folders, strict=True))
        if not _finished(f, c.steps)
    ]
    if workers > 1 and len(todo) > 1:
        jobs = [configs[i].replace(out_dir=str(folders[i])) for i in todo]
        for n, (name, seconds) in enumerate(_train_parallel(jobs, workers), 1):
            print(
                f"  lab run {n}/{len(todo)}: {name} ({seconds:.0f} s)", file=sys.stderr, flush=True
            )
        return folders
    for n, i in enumerate(todo, 1):
        name, seconds = _train_one(configs[i].replace(out_dir=str(folders[i])))
        print(f"  lab run {n}/{len(todo)}: {name} ({seconds:.0f} s)", file=sys.stderr, flush=True)
    return folders


def _train_one(cfg: TrainConfig) -> tuple[str, float]:
    """Train (or resume) one run into ``cfg.out_dir``; its folder name and wall seconds."""
    from empirical.train import train

    start = time.perf_counter()
    train(cfg, resume=True)
    return Path(cfg.out_dir).name, time.perf_counter() - start


def _train_parallel(jobs: Sequence[TrainConfig], workers: int):
    """:func:`_train_one` of each job on ``workers`` spawned processes, yielding results as runs finish."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from empirical.train import model_path

    for cfg in jobs:  # pretrains each missing prior once, here; a cached one is a file check
        model_path(cfg)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        for future in as_completed([pool.submit(_train_one, cfg) for cfg in jobs]):
            yield future.result()


def load_runs(folders: Sequence[Path]) -> list[Run]:
    """:func:`sharpen.records.load_run` of each folder."""
    return [load_run(f) for f in folders]


def eval_series(
    run: Run, metric: str = "exact_accuracy"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, values, se)`` of a held-out metric (``se``: its ``<metric>_se`` field, NaN where absent)."""
    steps, values = metric_series(run, metric, run.evals)
    se_steps, se = series(run.evals, [f"{metric}_se"])[1:]
    by_step = dict(zip(se_steps.astype(np.int64).tolist(), se.tolist(), strict=True))
    return steps, values, np.array([by_step.get(s, math.nan) for s in steps.tolist()])


def metric_series(
    run: Run, name: str, records: Sequence[dict] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of one metric (:func:`sharpen.collapse.metric_series`) of ``metrics.jsonl``, or of
    ``records`` (e.g. ``run.evals``); raises ``ValueError`` naming the run when it is not logged."""
    found, steps, values = series(run.metrics if records is None else records, [name])
    if found is None:
        raise ValueError(f"run: {run.run_dir} logs no {name!r}")
    return steps.astype(np.int64), values


def probe_trajectories(run: Run):
    """The run's probe trajectories (:func:`sharpen.fitting.trajectories_from_probes`); exact where logged."""
    from sharpen.fitting import trajectories_from_probes

    traj, _warnings = trajectories_from_probes(run.probes)
    return traj


def mean_se(x: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of the mean along ``axis`` (SE NaN with one entry)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    mean = x.mean(axis=axis)
    se = x.std(axis=axis, ddof=1) / math.sqrt(n) if n > 1 else np.full(mean.shape, math.nan)
    return mean, se


def preset_fields(name: str, keys: Sequence[str]) -> dict:
    """Fields ``keys`` of preset ``name`` (e.g. the task, prior and length cap of ``tiny-reason-ttrl``), as
    ``changes`` for :meth:`LabRuns.train_config`, whose base is the arithmetic preset."""
    p = preset(name)
    return {k: getattr(p, k) for k in keys}


def heldout_accuracy(run: Run, k: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""``(steps, accuracy, se)`` of a run's sampled held-out ``avg@k`` evals (tasks without exact accuracy),
    ``se`` over the held-out questions.

    With ``k = 1`` each question scores 0/1, so the standard error is the binomial one,
    :math:`\sqrt{a(1-a)/(n-1)}` (``n = n_questions`` of the eval: the sample standard deviation of the
    scores over :math:`\sqrt n`). For ``k > 1`` the per-question scores are not logged: ``se`` is NaN.
    """
    key = f"avg@{k}"
    steps, acc = metric_series(run, key, run.evals)
    n_questions = {int(e["step"]): e.get("n_questions", math.nan) for e in run.evals if key in e}
    n = np.array([float(n_questions[int(s)]) for s in steps.tolist()])
    if k != 1:
        return steps, acc, np.full(acc.shape, math.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(acc * (1 - acc) / (n - 1))
    return steps, acc, np.where(n > 1, se, math.nan)
