"""``sharpen train`` options of optional fields: ``none`` clears the preset's value, an absent option keeps it."""

from __future__ import annotations

import argparse

import pytest

from empirical.cli import config_from_args, register


def parse(*argv: str):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return config_from_args(parser.parse_args(["train", "--preset", "qwen3-1.7b-dapo-ttrl", *argv]))


def test_absent_options_keep_the_preset():
    cfg = parse()
    assert cfg.heldout_path == "data/aime24.jsonl" and cfg.micro_batch_size == 1


@pytest.mark.parametrize("word", ["none", "None", "null", ""])
def test_none_clears_an_optional_field(word):
    assert parse("--heldout-path", word).heldout_path is None  # was: the preset's data/aime24.jsonl
    assert parse("--micro-batch-size", word).micro_batch_size is None  # was: the preset's 1


def test_values_of_optional_fields():
    cfg = parse(
        "--heldout-path",
        "data/math500.jsonl",
        "--micro-batch-size",
        "4",
        "--reward-aggregate",
        "sum",
    )
    assert (cfg.heldout_path, cfg.micro_batch_size, cfg.reward_aggregate) == (
        "data/math500.jsonl",
        4,
        "sum",
    )
    assert parse("--reward-aggregate", "sum", "--reward-aggregate", "none").reward_aggregate is None
