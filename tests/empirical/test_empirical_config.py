"""Configuration, presets, the generated command line and --dry-run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import typing
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
from sharpen.cli import main as sharpen_main

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
    assert sharpen_main(["train", "--preset", "nope"]) == 2


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
    argv = ["train", "--preset", "qwen3-1.7b-dapo-ttrl", "--dry-run", "--data-path",
            str(FIXTURES / "wrong_schema.parquet")]  # fmt: skip
    assert sharpen_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "schema" in err and err.startswith("sharpen train: error: ") and "\n" not in err


# ----------------------------------------------------------------------------------------------------------
# every field is validated: its type, then its range (one line, "field_name: problem, got value")
# ----------------------------------------------------------------------------------------------------------

_HINTS = typing.get_type_hints(TrainConfig)


def _type_cases():
    """One wrong-type value per field, from its annotation."""
    for f in dataclasses.fields(TrainConfig):
        hint = _HINTS[f.name]
        if typing.get_origin(hint) is typing.Literal or typing.Literal in map(
            typing.get_origin, typing.get_args(hint)
        ):
            yield f.name, "nonsense", "must be one of"
        elif hint is bool:
            yield f.name, "yes", "must be a bool"
            yield f.name, 1, "must be a bool"
        elif hint in (int, int | None):
            yield f.name, 2.5, "must be an int"
            yield f.name, True, "must be an int"
        elif hint in (float, float | None):
            yield f.name, "0.5", "must be a finite number"
            yield f.name, math.nan, "must be a finite number"
            yield f.name, math.inf, "must be a finite number"
        elif hint in (str, str | None):
            yield f.name, 3, "must be a string"
        else:
            raise AssertionError(f"no type case for {f.name}: {hint}")


# Range rules: field -> (a bad value, the message); every int and float field appears.
_RANGE_CASES = {
    **{
        name: (0, "must be >= 1")
        for name in (
            "rollout_batch_size",
            "max_new_tokens",
            "max_prompt_tokens",
            "steps",
            "n_probe",
            "probe_samples",
            "eval_samples",
            "verifier_max_new_tokens",
            "keep_checkpoints",
            "mini_batch_size",
            "micro_batch_size",
            "n_votes",
        )
    },
    "n_rollouts": (1, "must be >= 2 (a GRPO group of one rollout has no advantage)"),
    **{
        name: (-1, "must be >= 0")
        for name in (
            "pretrain_steps",
            "n_train",
            "n_heldout",
            "data_seed",
            "probe_every",
            "eval_every",
            "n_eval",
            "checkpoint_every",
            "warmup_steps",
            "torch_threads",
            "seed",
        )
    },
    **{
        name: (-1e-6, "must be >= 0")
        for name in ("weight_decay", "max_grad_norm", "clip_eps", "kl_coef", "adv_eps")
    },
    "temperature": (0.0, "must be > 0"),
    "lr": (0.0, "must be > 0"),
    "verifier_temperature": (-0.1, "must be >= 0 (0 = greedy)"),
    "eval_temperature": (-0.1, "must be >= 0 (0 = greedy)"),
    "top_p": (0.0, "must lie in (0, 1]"),
    "eval_top_p": (1.5, "must lie in (0, 1]"),
    "vllm_gpu_memory_utilization": (1.0, "must lie in (0, 1)"),
    "pretrain_accuracy": (0.0, "must lie in (0, 1]"),
}
_STRING_CASES = {name: "  " for name in ("model", "out_dir", "data_path", "heldout_path")}


@pytest.mark.parametrize(("name", "value", "problem"), list(_type_cases()))
def test_every_field_checks_its_type(name, value, problem):
    with pytest.raises(ValueError, match=rf"^{name}: {problem}.*, got {re.escape(repr(value))}$"):
        preset("tiny-arith-ttrl").replace(**{name: value})


@pytest.mark.parametrize(("name", "case"), list(_RANGE_CASES.items()))
def test_every_numeric_field_checks_its_range(name, case):
    value, problem = case
    message = f"{name}: {problem}, got {value!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        preset("tiny-arith-ttrl").replace(**{name: value})


@pytest.mark.parametrize("name", list(_STRING_CASES))
def test_string_fields_must_not_be_blank(name):
    with pytest.raises(ValueError, match=rf"^{name}: must be a non-empty string"):
        preset("tiny-arith-ttrl").replace(**{name: _STRING_CASES[name]})


def test_every_field_has_a_rule():
    numeric = {n for n, h in _HINTS.items() if h in (int, float, int | None, float | None)}
    assert numeric == set(_RANGE_CASES)  # a new numeric field needs a range rule (and a case here)
    strings = {n for n, h in _HINTS.items() if h in (str, str | None)} - {"reward"}
    assert strings == set(_STRING_CASES)


def test_boundary_values_are_accepted():
    base = preset("tiny-arith-ttrl")
    ok = base.replace(
        n_rollouts=2,
        rollout_batch_size=16,
        adv_eps=0.0,  # before the fix to group_advantages this gave NaN weights at step 1
        top_p=1.0,
        verifier_temperature=0.0,
        eval_temperature=0,  # an int is a fine float
        probe_every=0,
        warmup_steps=0,
        mini_batch_size=None,
    )
    assert ok.n_rollouts == 2 and ok.prompts_per_step == 8
    import numpy as np

    assert (
        base.replace(steps=np.int64(5), lr=np.float32(1e-4)).steps == 5
    )  # numpy scalars are numbers


def test_cli_rejects_a_group_of_one():
    # Before the fix `sharpen train --n-rollouts 1` ran silently with no advantage signal.
    message = "n_rollouts: must be >= 2 (a GRPO group of one rollout has no advantage), got 1"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        cli.config_from_args(parse(["--n-rollouts", "1", "--rollout-batch-size", "16"]))
    with pytest.raises(ValueError, match=r"^adv_eps: must be >= 0, got -1e-06$"):
        cli.config_from_args(parse(["--adv-eps=-1e-6"]))
