"""The ``sharpen`` command.

Subcommands are discovered from the entry-point group ``sharpen.commands`` (each entry point is a
``register(subparsers)`` function adding its own parser and setting ``func``), so ``sharpen/`` never imports the
packages built on it (``sim``, ``empirical``, ...) and other packages can add commands. ``sharpen demo`` runs the
functions of the group ``sharpen.demo`` in name order: the embedded default end to end.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path


def _unavailable(name: str, error: BaseException):
    def run(args: argparse.Namespace) -> int:
        print(f"sharpen {name}: unavailable here ({type(error).__name__}: {error})", file=sys.stderr)
        return 2

    return run


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = sorted(entry_points(group="sharpen.demo"), key=lambda ep: ep.name)
    if args.only:
        steps = [ep for ep in steps if args.only in ep.name]
    failed = []
    for ep in steps:
        label = ep.name.split("-", 1)[-1]
        print(f"\n=== sharpen demo: {label} ===", flush=True)
        start = time.perf_counter()
        try:
            demo = ep.load()
        except ImportError as exc:
            print(f"skipped: {exc}")
            failed.append(label)
            continue
        demo(out / label)
        print(f"--- {label}: done in {time.perf_counter() - start:.1f} s, outputs in {out / label}")
        figures = sorted((out / label).rglob("*.png"))
        for png in figures[:12]:
            print(f"    {png}")
        if len(figures) > 12:
            print(f"    ... and {len(figures) - 12} more figures")
    print(f"\nAll demo outputs are under {out.resolve()}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sharpen",
        description="Unsupervised RLVR: the unified intrinsic reward, Theorem 1, simulation and real GRPO runs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the embedded default end to end (theory, simulator, tiny-LM training)")
    demo.add_argument("--out", default="sharpen-demo", help="output folder (default: ./sharpen-demo)")
    demo.add_argument("--only", default=None, help="run only the demo steps whose name contains this")
    demo.set_defaults(func=_demo)
    for ep in sorted(entry_points(group="sharpen.commands"), key=lambda ep: ep.name):
        try:
            register = ep.load()
        except ImportError as exc:
            p = sub.add_parser(ep.name, help=f"(unavailable: {exc})")
            p.set_defaults(func=_unavailable(ep.name, exc))
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
