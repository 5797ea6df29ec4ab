"""Configuration, presets, the generated command line and --dry-run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from empirical import cli
from empirical.config import (
    PRESETS,
    TrainConfig,
    estimate_memory_gib,
    model_dimensions,
    parameter_count,
    preset,
)

FIXTURES = Path(__file__).parent / "fixtures"


def parse(argv):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def test_every_field_is_overridable_from_the_command_line():
    args = parse(
        [
            "--lr",
            "1e-4",
            "--steps",
            "7",
            "--no-shuffle",
            "--reward",
            "self_certainty",
            "--mini-batch-size",
            "64",
            "--reward-aggregate",
            "sum",
            "--data-path",
            "none",
        ]
    )
    cfg = cli.config_from_args(args)
    assert (cfg.lr, cfg.steps, cfg.shuffle, cfg.reward) == (1e-4, 7, False, "self_certainty")
    assert (cfg.mini_batch_size, cfg.reward_aggregate, cfg.data_path) == (64, "sum", None)
    # untouched fields keep the preset's values
    assert cfg.replace(
        lr=3e-5,
        steps=300,
        shuffle=True,
        reward="majority_voting",
        mini_batch_size=None,
        reward_aggregate=None,
    ) == preset("tiny-arith-ttrl")
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    sub = p._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in sub._actions}
    assert {f for f in TrainConfig.__dataclass_fields__} <= dests


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"rollout_batch_size": 100}, "divisible by n_rollouts"),
        ({"mini_batch_size": 48}, "mini_batch_size"),
        ({"micro_batch_size": 24, "mini_batch_size": 64}, "micro_batch_size"),
        ({"reward": "nonsense"}, "reward"),
        ({"backend": "tgi"}, "backend"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"task": "dapo"}, "data_path"),
        ({"reward": "self_verification"}, "countdown"),
    ],
)
def test_bad_configs_raise_clear_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        preset("tiny-arith-ttrl").replace(**changes)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="valid presets"):
        preset("tiny-arith-nope")
    with pytest.raises(ValueError, match="unknown field"):
        preset("tiny-arith-ttrl").replace(learning_rate=1.0)
    assert cli.run(parse(["--preset", "nope"])) == 2


def test_presets_cover_every_intrinsic_reward():
    rewards = {c.reward for c in PRESETS.values()}
    assert {
        "majority_voting",
        "self_certainty",
        "token_entropy",
        "trajectory_entropy",
        "probability",
        "self_verification",
    } <= rewards
    for name, cfg in PRESETS.items():
        assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg, name


def test_paper_preset_matches_the_recipe():
    cfg = preset("qwen3-1.7b-dapo-ttrl")
    assert (cfg.prompts_per_step, cfg.n_rollouts, cfg.lr, cfg.temperature, cfg.kl_coef) == (
        64,
        8,
        1e-6,
        1.0,
        0.0,
    )
    assert cfg.backend == "vllm" and cfg.gradient_checkpointing and cfg.max_new_tokens == 7168


def test_parameter_count_of_qwen3_1_7b():
    n = parameter_count(model_dimensions("Qwen/Qwen3-1.7B-Base"))
    assert 1.6e9 < n < 1.8e9  # published: 1.7B parameters (1.4B without embeddings)


def test_memory_estimate_fits_one_80gb_gpu():
    cfg = preset("qwen3-1.7b-dapo-ttrl")
    est = estimate_memory_gib(cfg, model_dimensions(cfg.model))
    assert 16 * 1.7e9 / 1024**3 < est["total"] < 80
    bigger = estimate_memory_gib(cfg.replace(micro_batch_size=8), model_dimensions(cfg.model))
    assert bigger["total"] > est["total"]


def test_dry_run_loads_the_dapo_fixture(capsys):
    args = parse(
        [
            "--preset",
            "qwen3-1.7b-dapo-ttrl",
            "--dry-run",
            "--data-path",
            str(FIXTURES / "dapo_tiny.parquet"),
            "--heldout-path",
            str(FIXTURES / "aime_tiny.jsonl"),
        ]
    )
    assert cli.run(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"]["train"] == 5 and report["data"]["heldout"] == 3
    assert report["memory_gib"]["total"] > 0
    assert report["config"]["model"] == "Qwen/Qwen3-1.7B-Base"


def test_dry_run_reports_a_wrong_schema(capsys):
    args = parse(
        [
            "--preset",
            "qwen3-1.7b-dapo-ttrl",
            "--dry-run",
            "--data-path",
            str(FIXTURES / "wrong_schema.parquet"),
        ]
    )
    assert cli.run(args) == 2
    assert "schema" in capsys.readouterr().err
