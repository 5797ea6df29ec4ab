"""The run folder's checks and checkpoint files, without a model: the configuration check on resume, what a
resume may change, durable (fsync'd) checkpoint writes, the weights-only trainer state and the fallback past a
broken checkpoint."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from empirical import checkpoint as ck
from empirical.checkpoint import (
    BrokenCheckpoint,
    UnsafeCheckpoint,
    check_run_folder,
    config_changes,
    latest_checkpoint,
    read_trainer_state,
    restore_latest,
    save_checkpoint,
)
from empirical.config import TrainConfig
from sharpen.records import RunWriter

# ------------------------------------------------------------------------------------------------------------
# the configuration check on resume
# ------------------------------------------------------------------------------------------------------------


def stored_run(run_dir: Path, cfg: TrainConfig) -> Path:
    RunWriter(run_dir).write_json("config.json", {"kind": "empirical", "train": cfg.to_dict()})
    return run_dir


def test_a_different_configuration_is_refused_naming_each_field(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path))
    stored_run(tmp_path, cfg)
    with pytest.raises(ValueError) as err:
        check_run_folder(
            tmp_path, cfg.replace(lr=1e-4, seed=1, heldout_path="h.jsonl"), resume=True
        )
    message = str(err.value)
    assert message.startswith(f"out_dir: {tmp_path} holds a run with a different configuration (")
    assert "heldout_path: None -> 'h.jsonl'; lr: 3e-05 -> 0.0001; seed: 0 -> 1" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="already holds a run"):
        check_run_folder(tmp_path, cfg, resume=False)


def test_fields_that_do_not_change_the_run_may_change(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path))
    stored_run(tmp_path, cfg)
    check_run_folder(
        tmp_path / ".." / tmp_path.name,  # the same folder, spelled differently
        cfg.replace(out_dir="elsewhere", progress=False, checkpoint_every=7, keep_checkpoints=5),
        resume=True,
    )


def test_steps_may_grow_but_not_shrink(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path), steps=30)
    stored_run(tmp_path, cfg)
    check_run_folder(tmp_path, cfg.replace(steps=60), resume=True)  # extending a run is a resume
    with pytest.raises(ValueError, match=r"steps: 30 -> 20"):
        check_run_folder(tmp_path, cfg.replace(steps=20), resume=True)
    # a cosine schedule depends on steps: extending it would change the learning rate of the steps run
    cosine = cfg.replace(lr_schedule="cosine")
    stored_run(tmp_path, cosine)
    with pytest.raises(ValueError, match=r"steps: 30 -> 60"):
        check_run_folder(tmp_path, cosine.replace(steps=60), resume=True)


def test_stored_fields_missing_or_unknown(tmp_path):
    stored = TrainConfig().to_dict()
    del stored["seed"]  # an older config.json: the default applies
    stored["old_knob"] = 3  # a field this version does not have
    assert config_changes(stored, TrainConfig()) == ["old_knob: 3 -> (not a field of this version)"]


def test_run_files_without_config_json_are_refused(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path))
    check_run_folder(tmp_path / "new", cfg, resume=True)  # nothing there: a fresh start
    RunWriter(tmp_path).log_metrics(1, {"x": 1})
    (tmp_path / "checkpoints").mkdir()
    for resume in (True, False):
        with pytest.raises(ValueError) as err:
            check_run_folder(tmp_path, cfg, resume=resume)
        assert str(err.value) == (
            f"out_dir: {tmp_path} holds metrics.jsonl, checkpoints but no config.json to check them"
            " against; use another folder"
        )
    for text in ("{not json", '{"kind": "sim"}', '{"train": [1]}', "\udcff"):
        (tmp_path / "config.json").write_text(text, encoding="utf-8", errors="surrogateescape")
        with pytest.raises(ValueError, match="holds no readable training configuration"):
            check_run_folder(tmp_path, cfg, resume=True)


# ------------------------------------------------------------------------------------------------------------
# checkpoint files
# ------------------------------------------------------------------------------------------------------------


class FakeModel:
    """What save_checkpoint needs of a model: ``save_pretrained``."""

    def save_pretrained(self, path, safe_serialization: bool) -> None:
        from safetensors.torch import save_file

        Path(path).mkdir(parents=True)
        save_file({"w": torch.zeros(2)}, Path(path) / "model.safetensors")
        (Path(path) / "config.json").write_text("{}")


def trainer_state(step: int) -> dict:
    """A state like Trainer.save's: tensors, RNG states, numpy's bit-generator state, lists and dicts."""
    rng = np.random.default_rng(0)
    return {
        "step": step,
        "optimizer": {
            "state": {0: {"exp_avg": torch.ones(2), "step": torch.tensor(3.0)}},
            "lr": 1e-3,
        },
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": None,
        "numpy_rng": rng.bit_generator.state,
        "order": [2, 0, 1],
        "position": 1,
        "initial_majority": {"q1": "3", "q2": None},
    }


def test_save_is_atomic_and_fsynced(tmp_path, monkeypatch):
    synced = []

    def spy(path):
        path = Path(path)
        synced.append(
            (path.relative_to(tmp_path).as_posix(), (tmp_path / "checkpoints/step-000003").exists())
        )

    monkeypatch.setattr(ck, "fsync", spy)
    final = save_checkpoint(tmp_path, 3, FakeModel(), trainer_state(3))
    tmp = "checkpoints/.tmp-step-000003"
    assert synced[0] == (".", False)  # the new checkpoints folder's name in the run folder
    files = [(f"{tmp}/{n}", False) for n in ("config.json", "model.safetensors", "trainer.pt")]
    assert sorted(synced[1:4]) == files
    assert synced[4:] == [(tmp, False), ("checkpoints", True)]  # the folder, then the rename
    assert final.name == "step-000003" and sorted(p.name for p in final.parent.iterdir()) == [
        "step-000003"
    ]


def test_keep_prunes_the_oldest(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, FakeModel(), trainer_state(step), keep=2)
    assert [p.name for p in ck.checkpoints(tmp_path)] == ["step-000002", "step-000003"]
    assert latest_checkpoint(tmp_path).name == "step-000003"


def test_the_trainer_state_loads_weights_only(tmp_path):
    saved = trainer_state(5)
    state = read_trainer_state(save_checkpoint(tmp_path, 5, FakeModel(), saved))
    assert (
        state["numpy_rng"] == saved["numpy_rng"]
        and state["initial_majority"] == saved["initial_majority"]
    )
    assert torch.equal(state["torch_rng"], saved["torch_rng"])


class Exploit:
    """Unpickling this runs a shell command (what a crafted trainer.pt did on resume)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_trainer_state_is_refused_and_nothing_runs(tmp_path):
    path = save_checkpoint(tmp_path, 1, FakeModel(), trainer_state(1))
    marker = tmp_path / "PWNED"
    torch.save({**trainer_state(1), "x": Exploit(marker)}, path / "trainer.pt")
    with pytest.raises(UnsafeCheckpoint) as err:
        read_trainer_state(path)
    assert str(err.value) == (
        f"path: {path / 'trainer.pt'} names Python objects (posix.system) besides tensors and plain data;"
        " refusing to load it (was it written by sharpen?)"
    )
    # a plain pickle (not torch.save's format) is not a checkpoint: broken, and not run either
    with (path / "trainer.pt").open("wb") as fh:
        pickle.dump({"step": 1, "x": Exploit(marker)}, fh)
    with pytest.raises(BrokenCheckpoint, match="trainer.pt is unreadable"):
        read_trainer_state(path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "delete", "not a dict"])
def test_a_damaged_trainer_state_is_broken(tmp_path, damage):
    path = save_checkpoint(tmp_path, 1, FakeModel(), trainer_state(1))
    file = path / "trainer.pt"
    if damage == "truncate":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif damage == "garbage":
        file.write_bytes(os.urandom(512))
    elif damage == "empty":
        file.write_bytes(b"")
    elif damage == "delete":
        file.unlink()
    else:
        torch.save([1, 2], file)
    with pytest.raises(BrokenCheckpoint, match=f"path: {file}"):
        read_trainer_state(path)


def test_restore_latest_falls_back_past_broken_checkpoints(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, FakeModel(), trainer_state(step), keep=3)
    tried = []

    def restore(path):
        tried.append(path.name)
        if path.name != "step-000001":
            raise BrokenCheckpoint(f"path: {path} is unreadable (test)")

    with pytest.warns(UserWarning) as caught:
        assert restore_latest(tmp_path, restore).name == "step-000001"
    assert tried == ["step-000003", "step-000002", "step-000001"]
    assert [str(w.message).split(",")[0] for w in caught] == [
        "step-000003: skipped",
        "step-000002: skipped",
    ]
    # set aside: neither resumed from again nor counted among the kept checkpoints
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["broken-step-000002", "broken-step-000003", "step-000001"]
    assert restore_latest(tmp_path / "none", restore) is None


def test_restore_latest_refuses_when_nothing_loads(tmp_path):
    for step in (1, 2):
        save_checkpoint(tmp_path, step, FakeModel(), trainer_state(step))

    def broken(path):
        raise BrokenCheckpoint(f"path: {path} is unreadable (test)")

    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no checkpoint of .* loads"):
        restore_latest(tmp_path, broken)
    assert [p.name for p in ck.checkpoints(tmp_path)] == [
        "step-000001",
        "step-000002",
    ]  # left as they were

    def unsafe(path):
        raise UnsafeCheckpoint(f"path: {path} names Python objects")

    with pytest.raises(UnsafeCheckpoint):  # not skipped: a tampered run folder needs a person
        restore_latest(tmp_path, unsafe)


def test_config_json_of_a_run_is_plain_json(tmp_path):
    """What check_run_folder reads back is what the trainer wrote (a round trip through JSON)."""
    cfg = TrainConfig(heldout_path="x.jsonl", mini_batch_size=16)
    stored = json.loads(json.dumps(cfg.to_dict()))
    assert config_changes(stored, cfg) == []
