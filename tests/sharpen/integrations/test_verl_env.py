"""Opt-in: the generated recipe composed with veRL's own Hydra config, and the trainer hook on a real DataProto.

Runs only where veRL 0.9.1 is installed (the separate `.venv-verl`; `bash scripts/verl/test_verl.sh`); the main
CI skips it. CPU is enough: nothing here trains.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

verl = pytest.importorskip("verl")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import ConfigCompositionException  # noqa: E402

from sharpen.integrations.verl import SUPPORTED_VERL, VerlRecipe, verl_version  # noqa: E402

CONFIG_DIR = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")


def _compose(overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def test_pinned_version():
    assert verl_version() == SUPPORTED_VERL


@pytest.mark.parametrize(
    "recipe", [VerlRecipe.paper(), VerlRecipe.paper_multinode(2, reward="trajectory_entropy")]
)
def test_recipe_composes_with_verl_hydra_config(recipe):
    cfg = _compose(recipe.overrides())
    assert cfg.algorithm.adv_estimator == "grpo"
    assert cfg.data.train_batch_size == recipe.prompts_per_step
    assert cfg.actor_rollout_ref.rollout.n == recipe.n_rollouts
    assert cfg.actor_rollout_ref.actor.optim.lr == recipe.lr
    assert cfg.actor_rollout_ref.actor.use_kl_loss is False
    assert cfg.actor_rollout_ref.rollout.name == "vllm"
    assert cfg.trainer.nnodes == recipe.nnodes and cfg.trainer.n_gpus_per_node == 8
    assert cfg.reward.custom_reward_function.path.endswith("verl_reward.py")
    assert cfg.sharpen.reward == recipe.reward


def test_verl_rejects_a_misspelled_override():
    with pytest.raises(ConfigCompositionException):
        _compose([*VerlRecipe().overrides(), "actor_rollout_ref.rollout.nn=8"])


def test_custom_reward_file_loads_the_way_verl_loads_it():
    from verl.utils.import_utils import load_extern_object

    path = _compose(VerlRecipe().overrides()).reward.custom_reward_function.path
    fn = load_extern_object(path, "compute_score")
    assert fn("math_dapo", "x\nAnswer: 3", "3")["score"] == 1.0


def test_hook_injects_pseudo_labels_into_a_dataproto(tmp_path):
    from omegaconf import OmegaConf
    from verl import DataProto

    from empirical.tiny import build_tokenizer
    from sharpen.integrations.verl_trainer import SharpenRayPPOTrainer, last_token_scores

    tok = build_tokenizer()
    texts = [f"answer: {a}" if a else "no idea" for a in ["7", "7", "8", None, "5", "6", "6", "6"]]
    enc = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(ids) for ids in enc) + 2  # right padding
    responses = torch.zeros(8, width, dtype=torch.long)
    mask = torch.zeros(8, width, dtype=torch.long)
    for i, ids in enumerate(enc):
        responses[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
    batch = DataProto.from_dict(
        tensors={"responses": responses, "response_mask": mask, "rm_scores": torch.zeros(8, width)},
        non_tensors={
            "uid": np.array(["a"] * 4 + ["b"] * 4, dtype=object),
            "reward_model": np.array(
                [{"ground_truth": g} for g in ["7"] * 4 + ["5"] * 4], dtype=object
            ),
            "extra_info": np.array(
                [{"question_id": q} for q in ["qa"] * 4 + ["qb"] * 4], dtype=object
            ),
        },
    )
    trainer = object.__new__(SharpenRayPPOTrainer)  # no Ray workers: only the hook's own state
    trainer.config = OmegaConf.create(
        {
            "trainer": {"balance_batch": True},
            "sharpen": {"reward": "majority_voting", "run_dir": str(tmp_path)},
        }
    )
    trainer.tokenizer = tok
    trainer.global_steps = 1
    trainer._sharpen_setup()
    metrics = {}
    trainer._sharpen_after_generation(batch, metrics)
    labels = [rm["ground_truth"] for rm in batch.non_tensor_batch["reward_model"]]
    assert labels == ["7"] * 4 + ["6"] * 4
    assert [e["original_gt"] for e in batch.non_tensor_batch["extra_info"]] == ["7"] * 4 + ["5"] * 4
    expected = last_token_scores([1, 1, 0, 0, 0, 1, 1, 1], mask)
    torch.testing.assert_close(batch.batch["rm_scores"], expected)
    assert metrics["sharpen/label_accuracy"] == 0.5
    from sharpen.records import load_run

    run = load_run(tmp_path)
    assert run.metrics[0]["majority_ratio"] == pytest.approx(0.625)
    assert [p["question_id"] for p in run.probes] == ["qa", "qb"]


def _hook_and_batch(tmp_path, extra_info, with_prompts):
    from omegaconf import OmegaConf
    from verl import DataProto

    from empirical.tiny import build_tokenizer
    from sharpen.integrations.verl_trainer import SharpenRayPPOTrainer

    tok = build_tokenizer()
    enc = [tok(f"answer: {a}", add_special_tokens=False)["input_ids"] for a in ["7", "7", "8", "5"]]
    width = max(len(ids) for ids in enc) + 1
    responses = torch.zeros(4, width, dtype=torch.long)
    mask = torch.zeros(4, width, dtype=torch.long)
    for i, ids in enumerate(enc):
        responses[i, : len(ids)], mask[i, : len(ids)] = torch.tensor(ids), 1
    tensors = {"responses": responses, "response_mask": mask}
    if with_prompts:
        texts = ["1+6=", "1+6=", "2+3=", "2+3="]
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        p_len = max(len(i) for i in ids) + 1
        prompts = torch.zeros(4, p_len, dtype=torch.long)
        attn = torch.zeros(4, p_len + width, dtype=torch.long)
        for i, row in enumerate(ids):
            prompts[i, p_len - len(row) :] = torch.tensor(row)  # left padding
            attn[i, p_len - len(row) : p_len] = 1
        attn[:, p_len:] = mask
        tensors.update(prompts=prompts, attention_mask=attn)
    batch = DataProto.from_dict(
        tensors=tensors,
        non_tensors={
            "uid": np.array(["u1", "u1", "u2", "u2"], dtype=object),
            "reward_model": np.array(
                [{"ground_truth": g} for g in ["7", "7", "5", "5"]], dtype=object
            ),
            "extra_info": np.array(extra_info, dtype=object),
        },
    )
    trainer = object.__new__(SharpenRayPPOTrainer)
    trainer.config = OmegaConf.create(
        {
            "trainer": {"balance_batch": True},
            "sharpen": {"reward": "majority_voting", "run_dir": str(tmp_path)},
        }
    )
    trainer.tokenizer = tok
    trainer.global_steps = 1
    trainer._sharpen_setup()
    return trainer, batch


def test_hook_keys_dapo_rows_on_extra_info_index(tmp_path):
    # was: DAPO rows carry only extra_info.index; the hook keyed on veRL's uid (random per step), silently
    import warnings

    from sharpen.records import load_run

    trainer, batch = _hook_and_batch(
        tmp_path, [{"index": 11}] * 2 + [{"index": 12}] * 2, with_prompts=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stable id: no warning
        trainer._sharpen_after_generation(batch, {})
    assert [p["question_id"] for p in load_run(tmp_path).probes] == ["11", "12"]


def test_hook_falls_back_to_a_prompt_hash_loudly(tmp_path):
    from sharpen.records import load_run

    trainer, batch = _hook_and_batch(tmp_path, [{}] * 4, with_prompts=True)
    with pytest.warns(UserWarning, match="extra_info.question_id, extra_info.index"):
        trainer._sharpen_after_generation(batch, {})
    ids = [p["question_id"] for p in load_run(tmp_path).probes]
    assert len(ids) == 2 and all(i.startswith("prompt:") for i in ids) and "u1" not in ids


def test_recipe_logger_offload_micro_batch_and_probe_fields_compose():
    recipe = VerlRecipe(
        logger=("console", "file", "tensorboard"), param_offload=True, optimizer_offload=True,
        use_dynamic_bsz=False, micro_batch_size_per_gpu=4, answer_style="boxed",
    )  # fmt: skip
    cfg = _compose(recipe.overrides())
    assert list(cfg.trainer.logger) == ["console", "file", "tensorboard"]
    assert cfg.actor_rollout_ref.actor.fsdp_config.param_offload is True
    assert cfg.actor_rollout_ref.actor.fsdp_config.optimizer_offload is True
    assert cfg.actor_rollout_ref.ref.fsdp_config.param_offload is True
    assert cfg.actor_rollout_ref.actor.use_dynamic_bsz is False
    assert cfg.actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu == 4
    assert cfg.actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu == 4
    assert cfg.actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu == 4
    assert list(cfg.data.val_files) == [recipe.val_files, recipe.probe_files]
    assert cfg.sharpen.probe_files == recipe.probe_files
    assert cfg.reward.custom_reward_function.reward_kwargs.answer_style == "boxed"
    # what the launch script appends wins
    cfg = _compose(
        [*recipe.overrides(), "trainer.logger=[console,file,wandb]", "sharpen.reward=ground_truth"]
    )
    assert (
        list(cfg.trainer.logger) == ["console", "file", "wandb"]
        and cfg.sharpen.reward == "ground_truth"
    )


def test_hook_records_the_probe_set_in_verls_own_validation_metrics(tmp_path):
    """The real ``RayPPOTrainer._val_metrics_update`` runs after the hook's; its metrics are unchanged."""
    import pandas as pd
    from omegaconf import OmegaConf
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    from sharpen.integrations.verl import to_verl_rows, write_verl_parquet
    from sharpen.integrations.verl_trainer import SharpenRayPPOTrainer
    from sharpen.records import load_run

    qs = [
        type("Q", (), {"qid": f"dapo-{i}", "prompt": f"p{i}", "label": str(i)})() for i in range(2)
    ]
    probe = write_verl_parquet(
        to_verl_rows(qs, data_source="math_dapo", uid=True), tmp_path / "probe.parquet"
    )
    assert list(pd.read_parquet(probe)["uid"]) == ["dapo-0", "dapo-1"]
    trainer = object.__new__(SharpenRayPPOTrainer)
    trainer.config = OmegaConf.create({"trainer": {"balance_batch": True}, "sharpen": {
        "reward": "majority_voting", "run_dir": str(tmp_path / "run"), "probe_files": str(probe)}})  # fmt: skip
    trainer.tokenizer = None
    trainer.global_steps = 0
    trainer._sharpen_setup()
    sources = np.array(["math_dapo"] * 8 + ["aime24"] * 2, dtype=object)
    uids = ["dapo-0"] * 4 + ["dapo-1"] * 4 + ["aime-x"] * 2
    infos = {"pred": ["0", "0", "0", "5", "", "1", "1", "1"] + ["3", "3"],
             "acc": [True, True, True, False, False, True, True, True, False, False]}  # fmt: skip
    infos["score"] = [float(a) for a in infos["acc"]]
    ours = trainer._val_metrics_update(sources, uids, dict(infos), [])
    theirs = RayPPOTrainer._val_metrics_update(trainer, sources, uids, dict(infos), [])
    assert ours == theirs and any(k.startswith("val-core/math_dapo/") for k in ours)
    probes = load_run(tmp_path / "run").probes
    assert [(p["question_id"], p["majority_answer"], p["p_majority"]) for p in probes] == [
        ("dapo-0", "0", 0.75), ("dapo-1", "1", 0.75),
    ]  # fmt: skip


def test_hook_writes_its_header_and_resumes_its_records_exactly(tmp_path, monkeypatch):
    """The hook's config.json header from the resolved Hydra config; on resume (veRL's ``_load_checkpoint``
    sets ``global_steps`` to the checkpoint's step) the records after it are dropped, the initial majorities
    reloaded from probes.jsonl, and the checkpoint's own validation pass is not probed twice."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    from sharpen.integrations.records import probe_records
    from sharpen.integrations.verl_trainer import SharpenRayPPOTrainer
    from sharpen.records import RunHeader, RunWriter, load_run

    run_dir = tmp_path / "run"
    w = RunWriter(run_dir)
    for step, answers in ((0, ["3", "3", "5"]), (2, ["5", "5", "5"]), (4, ["5", "5", "3"])):
        w.log_probes(probe_records(step, ["q"] * 3, answers, initial={"q": "3"})[0])
        w.log_metrics(step, {"reward": 0.5})
    cfg = _compose(VerlRecipe(reward="majority_voting", run_root=str(tmp_path)).overrides())
    cfg = OmegaConf.merge(cfg, {"sharpen": {"run_dir": str(run_dir), "probe_files": ""}})
    trainer = object.__new__(SharpenRayPPOTrainer)
    trainer.config = cfg
    trainer.tokenizer = None
    trainer.total_training_steps = 40
    with pytest.warns(UserWarning, match="NO PROBE SET"):
        trainer._sharpen_setup()
    h = load_run(run_dir).header
    assert h == RunHeader("verl", reward="majority_voting", lr=1e-6, n_rollouts=8, clip_eps=0.2,
                          model="Qwen/Qwen3-1.7B-Base", task=h.task, steps=40, batch_size=64, epochs=1,
                          optimizer="adamw", kl_coef=0.0)  # fmt: skip

    def veRL_resume(self):  # what veRL's own _load_checkpoint does to the loop's state
        self.global_steps = 2

    monkeypatch.setattr(RayPPOTrainer, "_load_checkpoint", veRL_resume)
    trainer._sharpen_initial = {}
    trainer._load_checkpoint()
    run = load_run(run_dir)
    assert [p["step"] for p in run.probes] == [0, 2] and [m["step"] for m in run.metrics] == [0, 2]
    assert trainer._sharpen_initial == {"q": "3"} and trainer._sharpen_probed == {0, 2}
