"""``sharpen train``: GRPO runs from named presets, every :class:`~empirical.config.TrainConfig` field overridable.

::

    sharpen train --preset tiny-arith-ttrl                      # pretrain (cached) + 300 GRPO steps on CPU
    sharpen train --preset tiny-arith-ttrl --lr 1e-4 --steps 600 --out-dir runs/fast
    sharpen train --preset tiny-arith-ttrl --resume             # continue a killed run
    sharpen train --preset qwen3-1.7b-dapo-ttrl --dry-run --data-path data/dapo.parquet
    sharpen train --preset tiny-arith-ttrl --config run.yaml --steps 100   # fields from a file; the line wins
    sharpen train --list-presets

The options are generated from the dataclass fields (``--field-name``; booleans as ``--x/--no-x``); ``--config
FILE`` reads them from a JSON, TOML or YAML file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from empirical.config import PRESETS, TrainConfig, estimate_memory_gib, model_dimensions, preset
from sharpen._cli import add_dataclass_options, given_options


def add_config_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """One option per :class:`TrainConfig` field (``sharpen._cli``'s rules); returns the field names."""
    group = parser.add_argument_group(
        "run configuration (overrides the preset; defaults shown are the default preset's)"
    )
    return add_dataclass_options(group, TrainConfig)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset named by ``args.preset`` with every option given applied (``ValueError`` on bad values).

    An option not given keeps the preset's value; ``none`` clears an optional field."""
    return preset(args.preset).replace(**given_options(args, args.config_fields))


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
    parser.set_defaults(func=run, config_fields=add_config_arguments(parser))


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
    cfg = config_from_args(args)
    if args.dry_run:
        print(json.dumps(dry_run(cfg), indent=2))
        return 0
    from empirical.train import train

    run_dir = train(cfg, resume=args.resume)
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
    print(run_summary(run_dir))
    print(f"logs: {run_dir} (metrics.jsonl, probes.jsonl, eval.jsonl); figure: {figure}")


def run_summary(run_dir: Path) -> str:
    """Two lines a newcomer reads after a run: the probes' majority probability and held-out accuracy."""
    from sharpen.records import load_run

    run = load_run(run_dir)
    lines = []
    steps = sorted({p["step"] for p in run.probes})
    if steps:
        mean = {
            s: sum(p["p_majority"] for p in run.probes if p["step"] == s)
            for s in (steps[0], steps[-1])
        }
        n = {s: sum(1 for p in run.probes if p["step"] == s) for s in mean}
        lines.append(
            f"probe questions' majority probability: {mean[steps[0]] / n[steps[0]]:.3f} (step {steps[0]}) -> "
            f"{mean[steps[-1]] / n[steps[-1]]:.3f} (step {steps[-1]}), {n[steps[-1]]} questions"
        )
    evals = [e for e in run.evals if e.get("split", "heldout") == "heldout"]
    key = next((k for k in evals[0] if k.startswith("avg@")), None) if evals else None
    if key:
        best = max(evals, key=lambda e: e[key])
        lines.append(
            f"held-out {key} ({evals[0].get('n_questions', '?')} questions): {evals[0][key]:.3f} (step "
            f"{evals[0]['step']}) -> peak {best[key]:.3f} (step {best['step']}) -> {evals[-1][key]:.3f} "
            f"(step {evals[-1]['step']})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m empirical.cli train ...`` (same as ``sharpen train ...``)."""
    from sharpen.cli import main as sharpen_main

    return sharpen_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
