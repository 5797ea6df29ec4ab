"""The run folder's state on disk. Checkpoints of a GRPO run: ``<run>/checkpoints/step-XXXXXX/`` with the policy's safetensors weights and
``trainer.pt`` (optimizer, scheduler, data order, RNG states -- whatever the trainer hands over).

A checkpoint is written to a hidden temporary folder and renamed, so a run killed mid-write leaves the previous
checkpoint intact; :func:`latest_checkpoint` only returns complete ones.

>>> latest_checkpoint(Path("no-such-run")) is None
True
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from empirical.config import TrainConfig

CHECKPOINTS = "checkpoints"


def check_run_folder(run_dir: Path, cfg: TrainConfig, *, resume: bool) -> None:
    """Refuse to mix runs: ``ValueError`` if ``run_dir/config.json`` holds another configuration than ``cfg``
    (fields it lacks take their defaults), or holds any run while ``resume`` is False."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return
    stored = json.loads(path.read_text(encoding="utf-8")).get("train") or {}
    try:
        same = TrainConfig.from_dict(stored) == cfg
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(f"out_dir: {run_dir} holds a run with a different configuration")
    if not resume:
        raise ValueError(
            f"out_dir: {run_dir} already holds a run; pass resume=True (--resume) or another folder"
        )


def save_checkpoint(
    run_dir: Path, step: int, model, state: dict[str, Any], *, keep: int = 2
) -> Path:
    """Write ``model`` (``save_pretrained``, safetensors) and ``state`` (``torch.save``) for ``step``; keep the
    newest ``keep`` checkpoints. Returns the checkpoint folder."""
    import torch

    if keep < 1:
        raise ValueError(f"keep: must be >= 1, got {keep}")
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / f"step-{step:06d}", root / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    torch.save(state, tmp / "trainer.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model) -> dict[str, Any]:
    """Load the weights of checkpoint ``path`` into ``model`` (in place) and return its trainer state.

    A tied ``lm_head.weight`` may be absent from the file; any other mismatch raises ``ValueError``.
    """
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "trainer.pt").is_file():
        raise ValueError(f"path: {path} is not a complete checkpoint (no trainer.pt)")
    device = next(model.parameters()).device
    missing, unexpected = model.load_state_dict(
        load_file(path / "model.safetensors", device=str(device)), strict=False
    )
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ValueError(
            f"path: checkpoint {path} does not match the model ({missing=}, {unexpected=})"
        )
    return torch.load(path / "trainer.pt", weights_only=False)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, if any."""
    done = [
        p
        for p in sorted((Path(run_dir) / CHECKPOINTS).glob("step-*"))
        if (p / "trainer.pt").is_file()
    ]
    return done[-1] if done else None
