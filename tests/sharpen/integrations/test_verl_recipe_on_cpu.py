"""The veRL recipe's logger, offload, micro-batch and probe fields, and a launch script that forwards Hydra overrides."""

from __future__ import annotations

import os
import subprocess

import pytest

from sharpen.cli import main
from sharpen.integrations.verl import VERL_LOGGERS, VerlRecipe, launch_script, write_recipe


def _overrides(recipe: VerlRecipe) -> dict[str, str]:
    return dict(o.split("=", 1) for o in recipe.overrides())


def test_logger_offload_and_micro_batch_fields_reach_the_overrides():
    default = _overrides(VerlRecipe())
    assert (
        default["trainer.logger"] == "[console,file]"
    )  # was hardcoded; now the default of a field
    assert default["actor_rollout_ref.actor.fsdp_config.param_offload"] == "False"
    assert default["actor_rollout_ref.actor.fsdp_config.optimizer_offload"] == "False"
    assert default["actor_rollout_ref.actor.use_dynamic_bsz"] == "True"
    assert default["actor_rollout_ref.actor.ppo_max_token_len_per_gpu"] == str(2 * (1024 + 7168))
    assert "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu" not in default
    r = VerlRecipe(logger=("console", "file", "wandb"), param_offload=True, optimizer_offload=True,
                   use_dynamic_bsz=False, micro_batch_size_per_gpu=4)  # fmt: skip
    ov = _overrides(r)
    assert ov["trainer.logger"] == "[console,file,wandb]"
    assert ov["actor_rollout_ref.actor.fsdp_config.param_offload"] == "True"
    assert ov["actor_rollout_ref.ref.fsdp_config.param_offload"] == "True"
    assert ov["actor_rollout_ref.actor.fsdp_config.optimizer_offload"] == "True"
    assert ov["actor_rollout_ref.actor.use_dynamic_bsz"] == "False"
    assert ov["actor_rollout_ref.rollout.log_prob_use_dynamic_bsz"] == "False"
    for key in ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
                "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
                "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu"):  # fmt: skip
        assert ov[key] == "4"
    assert "actor_rollout_ref.actor.ppo_max_token_len_per_gpu" not in ov
    assert (
        _overrides(VerlRecipe(max_token_len_per_gpu=9000))[
            "actor_rollout_ref.actor.ppo_max_token_len_per_gpu"
        ]
        == "9000"
    )
    # every key appears once, so nothing the recipe sets is silently shadowed by a second value
    keys = [o.split("=", 1)[0] for o in r.overrides()]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    "changes, match",
    [({"logger": ("console",)}, "must include 'file'"), ({"logger": ("console", "file", "neptune")}, "unknown backend"),
     ({"logger": ("file", "file")}, "twice"), ({"use_dynamic_bsz": False}, "micro_batch_size_per_gpu: required"),
     ({"micro_batch_size_per_gpu": 0}, "micro_batch_size_per_gpu"), ({"max_token_len_per_gpu": -1}, "max_token_len"),
     ({"answer_style": "hashes"}, "answer_style"), ({"probe_files": "a.parquet,b.parquet"}, "probe_files")],
)  # fmt: skip
def test_recipe_field_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        VerlRecipe(**changes)


def test_probe_set_and_answer_style_overrides():
    ov = _overrides(VerlRecipe())
    assert (
        ov["data.val_files"]
        == "['$HOME/data/aime24/test.parquet','$HOME/data/dapo-math-17k/probe.parquet']"
    )
    assert ov["+sharpen.probe_files"] == "$HOME/data/dapo-math-17k/probe.parquet"
    assert (
        ov["+sharpen.answer_style"] == "source"
    )  # the hook votes with compute_score's data_source dispatch
    assert not any(k.startswith("+reward.") for k in ov)
    none = _overrides(VerlRecipe(probe_files=""))
    assert (
        none["data.val_files"] == "$HOME/data/aime24/test.parquet"
        and "+sharpen.probe_files" not in none
    )
    boxed = _overrides(VerlRecipe(answer_style="boxed"))
    assert boxed["+reward.custom_reward_function.reward_kwargs.answer_style"] == "boxed"
    assert "tensorboard" in VERL_LOGGERS and "file" in VERL_LOGGERS


def test_the_launch_script_forwards_extra_hydra_overrides(tmp_path):
    recipe = VerlRecipe(logger=("console", "file", "tensorboard"), param_offload=True)
    text = launch_script(recipe)
    assert "trainer.logger='[console,file,tensorboard]' \\" in text
    assert "actor_rollout_ref.actor.fsdp_config.param_offload=True \\" in text
    assert '    "$@"\n' in text  # was: extra arguments were dropped
    # run it with a stand-in `python` that records its arguments: the extra overrides come last, after the recipe's
    paths = write_recipe(recipe, tmp_path / "recipe")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.txt"
    fake = bin_dir / "python"
    fake.write_text(f'#!/usr/bin/env bash\nif [ "$1" = -c ]; then echo /x/verl_reward.py; exit 0; fi\n'
                    f'printf "%s\\n" "$@" > "{log}.$$"\n')  # one file per call  # fmt: skip
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path / "home")}
    extra = [
        "trainer.logger=[console,file,wandb]",
        "sharpen.reward=ground_truth",
        "trainer.total_epochs=3",
    ]
    subprocess.run(
        ["bash", str(paths["launch"]), *extra], cwd=tmp_path, env=env, check=True, timeout=60
    )
    calls = [p.read_text().splitlines() for p in sorted(tmp_path.glob("argv.txt.*"))]
    trainer = next(c for c in calls if c[:2] == ["-m", "sharpen.integrations.verl_trainer"])
    assert trainer[-3:] == extra
    assert (
        f"data.train_files={tmp_path / 'home'}/data/dapo-math-17k/train.parquet" in trainer
    )  # $HOME expanded
    assert "trainer.logger=[console,file,tensorboard]" in trainer
    assert "reward.custom_reward_function.path=/x/verl_reward.py" in trainer
    assert any(c[:3] == ["-m", "sharpen.integrations.verl", "export"] for c in calls)


def test_cli_options_for_the_new_fields(tmp_path, capsys):
    argv = ["verl-recipe", "--out", str(tmp_path / "r"), "--logger", "console,file,wandb", "--param-offload",
            "--no-use-dynamic-bsz", "--micro-batch-size-per-gpu", "2", "--probe-files", ""]  # fmt: skip
    assert main(argv) == 0
    ov = (tmp_path / "r" / "overrides.txt").read_text().split()
    assert "trainer.logger=[console,file,wandb]" in ov
    assert "actor_rollout_ref.actor.fsdp_config.param_offload=True" in ov
    assert "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2" in ov
    assert not any(o.startswith("+sharpen.probe_files") for o in ov)
    capsys.readouterr()
    assert main(["verl-recipe", "--out", str(tmp_path / "s"), "--logger", "console"]) == 2
    assert "logger: must include 'file'" in capsys.readouterr().err
