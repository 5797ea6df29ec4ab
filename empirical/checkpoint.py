"""The run folder's state on disk. Checkpoints of a GRPO run: ``<run>/checkpoints/step-XXXXXX/`` with the policy's
safetensors weights and ``trainer.pt`` (optimizer, scheduler, data order, RNG states -- tensors and plain data
only): :func:`save_trainer` and :func:`restore_trainer` say what of a trainer a checkpoint holds.

A checkpoint is written to a hidden temporary folder, fsync'd and renamed, so a run killed (or a machine losing
power) mid-write leaves the previous checkpoint intact; :func:`latest_checkpoint` only returns complete ones.
``trainer.pt`` is read with ``torch.load(weights_only=True)``: a file that names any other Python object is
refused, never executed. On resume, :func:`restore_latest` skips a checkpoint whose files are unreadable
(truncated, garbage) and falls back to the newest intact one.

>>> latest_checkpoint(Path("no-such-run")) is None
True
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from empirical.config import TrainConfig
from sharpen.records import CONFIG_FILE, LOG_FILES, fsync

CHECKPOINTS = "checkpoints"
# Fields that change no logged number -- where the run is written, how progress is shown, how often and how
# many checkpoints are kept -- so a resume may change them. ``steps`` may grow: extending a run is a resume.
UNCHECKED_FIELDS = frozenset(
    {"out_dir", "progress", "checkpoint_every", "keep_checkpoints", "report_to"}
)


class BrokenCheckpoint(ValueError):
    """A checkpoint whose files cannot be read (truncated, garbage, missing): skipped on resume."""


class UnsafeCheckpoint(ValueError):
    """A ``trainer.pt`` that names Python objects other than tensors and plain data: refused, never skipped."""


# ----------------------------------------------------------------------------------------------------------
# the run folder's configuration
# ----------------------------------------------------------------------------------------------------------


def config_changes(stored: dict, cfg: TrainConfig) -> list[str]:
    """``"field: old -> new"`` for every field of ``cfg`` that differs from the ``stored`` configuration
    (``config.json``'s ``"train"``), ignoring :data:`UNCHECKED_FIELDS` and a larger ``steps`` (with a
    constant learning rate; a cosine schedule depends on ``steps``). Fields ``stored`` lacks take their
    defaults; stored fields that are no longer fields of :class:`TrainConfig` count as changed.

    >>> config_changes({"lr": 1e-4, "steps": 30, "out_dir": "a"}, TrainConfig(lr=3e-4, steps=60, out_dir="b"))
    ['lr: 0.0001 -> 0.0003']
    """
    new = cfg.to_dict()
    old = {**TrainConfig().to_dict(), **stored}
    cosine = cfg.lr_schedule == "cosine"
    changes = []
    for name in sorted(old):  # every field (defaults) and any the stored run had besides
        before, after = old[name], new.get(name)
        if name not in new:
            changes.append(f"{name}: {before!r} -> (not a field of this version)")
        elif name in UNCHECKED_FIELDS or before == after:
            continue
        elif name == "steps" and isinstance(before, int) and after > before and not cosine:
            continue  # extending a run
        else:
            changes.append(f"{name}: {before!r} -> {after!r}")
    return changes


def check_run_folder(run_dir: Path, cfg: TrainConfig, *, resume: bool) -> None:
    """Refuse to mix runs. ``ValueError`` if ``run_dir`` holds any run while ``resume`` is False; if its
    ``config.json`` differs from ``cfg`` (naming each field, :func:`config_changes`); or if it holds logs or
    checkpoints but no readable ``config.json`` to compare with."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.exists():
        found = [n for n in (*LOG_FILES, CHECKPOINTS) if (run_dir / n).exists()]
        if found:
            raise ValueError(
                f"out_dir: {run_dir} holds {', '.join(found)} but no {CONFIG_FILE} to check them against;"
                " use another folder"
            )
        return
    if not resume:
        raise ValueError(
            f"out_dir: {run_dir} already holds a run; pass resume=True (--resume) or another folder"
        )
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))["train"]
    except (
        ValueError,
        KeyError,
        TypeError,
    ) as err:  # JSON and UTF-8 decoding errors are ValueErrors
        raise ValueError(
            f"out_dir: {path} holds no readable training configuration ({err})"
        ) from None
    if not isinstance(stored, dict):
        raise ValueError(f"out_dir: {path} holds no readable training configuration")
    changes = config_changes(stored, cfg)
    if changes:
        raise ValueError(
            f"out_dir: {run_dir} holds a run with a different configuration ({'; '.join(changes)});"
            " resume with its values (only steps may grow) or use another folder"
        )


# ----------------------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: Path, step: int, model, state: dict[str, Any], *, keep: int = 2
) -> Path:
    """Write ``model`` (``save_pretrained``, safetensors) and ``state`` (``torch.save``; tensors and plain data,
    so that it loads with ``weights_only=True``) for ``step``, durably: into a temporary folder, fsync'd, then
    renamed. Keep the newest ``keep`` checkpoints. Returns the checkpoint folder."""
    import torch

    if keep < 1:
        raise ValueError(f"keep: must be >= 1, got {keep}")
    root = Path(run_dir) / CHECKPOINTS
    if not root.exists():
        root.mkdir(parents=True)
        fsync(root.parent)
    final, tmp = root / f"step-{step:06d}", root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    torch.save(state, tmp / "trainer.pt")
    for file in tmp.rglob("*"):
        if file.is_file():
            fsync(file)
    fsync(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    fsync(root)  # the rename itself
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_trainer_state(path: Path) -> dict[str, Any]:
    """The trainer state of checkpoint folder ``path``, loaded with ``weights_only=True`` onto the CPU.

    Raises :class:`UnsafeCheckpoint` if ``trainer.pt`` names other Python objects (nothing is executed), and
    :class:`BrokenCheckpoint` if it is missing or unreadable.
    """
    import torch
    from torch.serialization import get_unsafe_globals_in_checkpoint

    file = Path(path) / "trainer.pt"
    try:
        unsafe = get_unsafe_globals_in_checkpoint(file)  # lists the pickle's globals, runs none
    except (
        Exception
    ) as err:  # any failure to read the file: it is not a checkpoint torch.save finished
        raise BrokenCheckpoint(f"path: {file} is unreadable ({_reason(err)})") from None
    if unsafe:
        raise UnsafeCheckpoint(
            f"path: {file} names Python objects ({', '.join(unsafe)}) besides tensors and plain data;"
            " refusing to load it (was it written by sharpen?)"
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as err:  # weights_only refuses anything else; a torn or garbage file lands here
        raise BrokenCheckpoint(f"path: {file} is unreadable ({_reason(err)})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise BrokenCheckpoint(f"path: {file} holds no trainer state")
    return state


def load_checkpoint(path: Path, model) -> dict[str, Any]:
    """Load the weights of checkpoint ``path`` into ``model`` (in place) and return its trainer state.

    Both files are read before ``model`` is touched, so a :class:`BrokenCheckpoint` (unreadable files) or
    :class:`UnsafeCheckpoint` (see :func:`read_trainer_state`) leaves it as it was. A tied ``lm_head.weight``
    may be absent from the file; any other mismatch raises ``ValueError``.
    """
    from safetensors.torch import load_file

    path = Path(path)
    state = read_trainer_state(path)
    device = next(model.parameters()).device
    try:
        weights = load_file(path / "model.safetensors", device=str(device))
    except Exception as err:  # missing, truncated or garbage
        raise BrokenCheckpoint(
            f"path: {path / 'model.safetensors'} is unreadable ({_reason(err)})"
        ) from None
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ValueError(
            f"path: checkpoint {path} does not match the model ({missing=}, {unexpected=})"
        )
    return state


def checkpoints(run_dir: Path) -> list[Path]:
    """The complete checkpoints of a run folder (renamed into place, so holding ``trainer.pt``), oldest first."""
    return [
        p
        for p in sorted((Path(run_dir) / CHECKPOINTS).glob("step-*"))
        if (p / "trainer.pt").is_file()
    ]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, if any (its files are not read: see
    :func:`restore_latest`)."""
    done = checkpoints(run_dir)
    return done[-1] if done else None


def restore_latest(run_dir: Path, restore: Callable[[Path], None]) -> Path | None:
    """Call ``restore`` on the newest checkpoint of ``run_dir`` that loads, and return it (None: no checkpoint).

    A checkpoint ``restore`` finds broken (:class:`BrokenCheckpoint`) is skipped with a warning naming it and
    renamed ``broken-step-XXXXXX`` once an older one has loaded, so that it is neither resumed from nor counted
    among the kept checkpoints later. ``ValueError`` if every checkpoint is broken (the folder is left as it
    is); an :class:`UnsafeCheckpoint` is raised at once.
    """
    broken = []
    for path in reversed(checkpoints(run_dir)):
        try:
            restore(path)
        except BrokenCheckpoint as err:
            warnings.warn(f"{path.name}: skipped, {err}", stacklevel=2)
            broken.append((path, err))
            continue
        for bad, _ in broken:
            aside = bad.with_name("broken-" + bad.name)
            shutil.rmtree(aside, ignore_errors=True)  # an earlier broken copy of the same step
            bad.rename(aside)
        if broken:
            fsync(path.parent)
        return path
    if broken:
        raise ValueError(
            f"out_dir: no checkpoint of {run_dir} loads ({'; '.join(str(e) for _, e in broken)})"
        )
    return None


# ----------------------------------------------------------------------------------------------------------
# a trainer's checkpoint
# ----------------------------------------------------------------------------------------------------------


def save_trainer(trainer, run_dir: Path) -> Path:
    """Checkpoint an :class:`empirical.train.Trainer` at its step: the weights, optimizer, scheduler, data cursor,
    probe questions and majorities, and every RNG. Returns the checkpoint folder."""
    import torch

    state = {
        "step": trainer.step,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "sampling_rng": trainer.generator.get_state(),
        "numpy_rng": trainer.rng.bit_generator.state,
        "order": trainer.cursor.order,
        "position": trainer.cursor.position,
        "initial_majority": trainer.initial_majority,
        "probe_ids": trainer.probe_ids,
        "initial_exact": trainer.initial_exact,
    }
    return save_checkpoint(
        run_dir, trainer.step, trainer.model, state, keep=trainer.cfg.keep_checkpoints
    )


def restore_trainer(trainer, path: Path) -> None:
    """Load a checkpoint written by :func:`save_trainer` into ``trainer``; the RNGs are restored last. Raises
    :class:`BrokenCheckpoint` before changing anything if its files are unreadable."""
    import torch

    from empirical.tasks import DataCursor

    state = load_checkpoint(path, trainer.model)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.cursor = DataCursor(list(state["order"]), int(state["position"]))
    trainer.initial_majority = dict(state["initial_majority"])
    # absent from checkpoints written before exact probes: the first n_probe questions, sampled only
    first = [q.qid for q in trainer.task.train[: trainer.cfg.n_probe]]
    trainer.probe_ids = list(state.get("probe_ids", first))
    trainer.initial_exact = dict(state.get("initial_exact", {}))
    trainer.step = int(state["step"])
    trainer.backend.sync(trainer.model)
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if "sampling_rng" in state:  # absent from checkpoints written before the KV-cached sampler
        trainer.generator.set_state(state["sampling_rng"])
    trainer.rng.bit_generator.state = state["numpy_rng"]


def _reason(err: Exception) -> str:
    """The first line of an exception, for a one-line message."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
