"""``sharpen train``: GRPO runs from named presets, every :class:`~empirical.config.TrainConfig` field overridable.

::

    sharpen train --preset tiny-arith-ttrl                      # pretrain (cached) + 300 GRPO steps on CPU
    sharpen train --preset tiny-arith-ttrl --lr 1e-4 --steps 600 --out-dir runs/fast
    sharpen train --preset tiny-arith-ttrl --resume             # continue a killed run
    sharpen train --preset qwen3-1.7b-dapo-ttrl --dry-run --data-path data/dapo.parquet
    sharpen train --list-presets

The options are generated from the dataclass fields (``--field-name``; booleans as ``--x/--no-x``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from empirical.config import PRESETS, TrainConfig, estimate_memory_gib, model_dimensions, preset


def _parse_optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null", "") else kind(text)

    return parse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`TrainConfig` field, typed from its annotation, default ``None`` (= keep preset)."""
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("run configuration (overrides the preset)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        inner = [a for a in args if a is not type(None)] if optional else [hint]
        base = inner[0] if len(inner) == 1 else str
        if base is bool:
            group.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f.metadata.get("help"),
            )
        elif typing.get_origin(base) is typing.Literal:
            choices = list(typing.get_args(base)) + (["none"] if optional else [])
            group.add_argument(flag, choices=choices, default=None, help=f.metadata.get("help"))
        else:
            kind = base if base in (int, float, str) else str
            group.add_argument(
                flag,
                type=_parse_optional(kind) if optional else kind,
                default=None,
                help=f.metadata.get("help"),
            )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset named by ``args.preset`` with every given option applied (``ValueError`` on bad values)."""
    base = preset(args.preset)
    changes = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            changes[f.name] = None if value == "none" else value
    return base.replace(**changes)


def register(subparsers) -> None:
    """Entry point (group ``sharpen.commands``): adds ``sharpen train``."""
    parser = subparsers.add_parser(
        "train",
        help="real GRPO on a causal LM (tiny Qwen3 on CPU by default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset", default="tiny-arith-ttrl", help="named preset (see --list-presets)"
    )
    parser.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --out-dir"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved config and memory estimate, load the data, train nothing",
    )
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def dry_run(cfg: TrainConfig) -> dict:
    """What ``--dry-run`` reports: the config, the memory estimate (GiB) and the data sizes."""
    from empirical.tasks import build_task

    report: dict = {"config": cfg.to_dict()}
    if cfg.model == "tiny":
        from empirical.tiny import TinyModelConfig

        t = TinyModelConfig()
        dims = {
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_layers,
            "num_attention_heads": t.num_heads,
            "num_key_value_heads": t.num_kv_heads,
            "head_dim": t.head_dim,
            "vocab_size": 50,
            "tie_word_embeddings": True,
        }
    else:
        dims = model_dimensions(cfg.model)
    report["memory_gib"] = {k: round(v, 3) for k, v in estimate_memory_gib(cfg, dims).items()}
    task = build_task(cfg)
    report["data"] = {
        "task": task.name,
        "train": len(task.train),
        "heldout": len(task.heldout),
        "first_prompt": task.train[0].prompt[:200],
        "first_label": task.train[0].label,
    }
    return report


def run(args: argparse.Namespace) -> int:
    """Handler of ``sharpen train``."""
    if args.list_presets:
        for name, cfg in PRESETS.items():
            print(
                f"{name:28s} model={cfg.model} task={cfg.task} reward={cfg.reward} steps={cfg.steps} lr={cfg.lr}"
            )
        return 0
    try:
        cfg = config_from_args(args)
        if args.dry_run:
            print(json.dumps(dry_run(cfg), indent=2))
            return 0
        from empirical.train import train

        run_dir = train(cfg, resume=args.resume)
    except ValueError as err:
        print(f"sharpen train: error: {err}", file=sys.stderr)
        return 2
    print(
        f"run folder: {run_dir}  (metrics.jsonl, probes.jsonl, eval.jsonl, config.json, env.json)"
    )
    return 0


def demo(out_dir: Path) -> None:
    """Entry point (group ``sharpen.demo``): the ``tiny-arith-ttrl`` preset into ``out_dir``, plus a figure."""
    import shutil

    from empirical.plots import plot_run
    from empirical.train import train

    out_dir = Path(out_dir)
    run_dir = out_dir / "tiny-arith-ttrl"
    shutil.rmtree(run_dir, ignore_errors=True)
    print(
        "pretraining the tiny Qwen3 (cached after the first time), then 300 GRPO steps with the majority vote"
    )
    train(preset("tiny-arith-ttrl").replace(out_dir=str(run_dir)))
    figure = plot_run(run_dir, out_dir / "tiny-arith-ttrl.png")
    print(f"logs: {run_dir} (metrics.jsonl, probes.jsonl, eval.jsonl); figure: {figure}")


def main(argv: list[str] | None = None) -> int:
    """``python -m empirical.cli ...`` (same as ``sharpen train ...``)."""
    parser = argparse.ArgumentParser(prog="python -m empirical.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
