"""The ``sharpen`` command.

Subcommands are discovered from the entry-point group ``sharpen.commands`` (each entry point is a
``register(subparsers)`` function adding its own parser and setting ``func``), so ``sharpen/`` never imports the
packages built on it (``sim``, ``empirical``, ...) and other packages can add commands. Only the command being
run is imported; the others are listed with the first line of their module's docstring, read without importing
them, so ``sharpen --help`` costs no torch import. ``sharpen demo`` runs the functions of the group
``sharpen.demo`` in name order: the embedded default end to end.

Every user error is one line, ``sharpen <cmd>: error: <arg>: <problem>``, with exit code 2: argparse errors,
unknown options (with the closest valid one) and the ``ValueError`` a command's validation raises.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import sys
import time
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from sharpen._cli import CommandParser, closest, fail, output_dir, plain


def _unavailable(name: str, error: BaseException):
    def run(args: argparse.Namespace) -> int:
        return fail(f"sharpen {name}", f"unavailable here ({type(error).__name__}: {error})")

    return run


def _summary(ep: EntryPoint) -> str:
    """First sentence of the entry point's module docstring, read from source without importing it."""
    module = ep.value.split(":", 1)[0]
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
        base = Path(next(iter(spec.submodule_search_locations or []), Path(spec.origin).parent))
        path = base.joinpath(*rest[:-1], f"{rest[-1]}.py") if rest else Path(spec.origin)
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (AttributeError, ImportError, OSError, SyntaxError, StopIteration, TypeError):
        return ""
    first = plain(doc.split("\n\n", 1)[0].replace("\n", " "))
    head, sep, tail = first.partition(": ")
    first = tail if sep and head.startswith("sharpen ") else first  # "sharpen fit: ..." -> "..."
    return first.split(". ", 1)[0].rstrip(".")


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    steps = sorted(entry_points(group="sharpen.demo"), key=lambda ep: ep.name)
    labels = [ep.name.split("-", 1)[-1] for ep in steps]
    if args.only:
        chosen = [ep for ep, label in zip(steps, labels, strict=True) if args.only in label]
        if not chosen:
            return fail(
                "sharpen demo",
                f"--only: no demo step matches {args.only!r}; steps: {', '.join(labels)}",
            )
        steps = chosen
    out.mkdir(parents=True, exist_ok=True)
    failed, timings = [], []
    start_all = time.perf_counter()
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
        timings.append((label, time.perf_counter() - start))
        print(f"--- {label}: done in {timings[-1][1]:.1f} s, outputs in {out / label}", flush=True)
    print(f"\nsharpen demo: {time.perf_counter() - start_all:.0f} s in all")
    for label, seconds in timings:
        figures = sorted((out / label).rglob("*.png"))
        print(f"  {label:<9} {seconds:6.1f} s  {out / label}  ({len(figures)} figures)")
        for png in figures[:6]:
            print(f"      {png}")
        if len(figures) > 6:
            print(f"      ... and {len(figures) - 6} more")
    print(f"All demo outputs are under {out.resolve()}")
    return 1 if failed else 0


def _command_name(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(load: str | None = None) -> CommandParser:
    """The ``sharpen`` parser; only the command ``load`` (None: none) is imported and gets its full options."""
    parser = CommandParser(
        prog="sharpen",
        description="Unsupervised RLVR: the unified intrinsic reward, Theorem 1, simulation and real GRPO runs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="run the embedded default end to end (theory, simulator, tiny-LM run, fit)"
    )
    demo.add_argument("--out", default=str(output_dir("demo")),
                      help=f"output folder (default: ./{output_dir('demo')})")  # fmt: skip
    demo.add_argument(
        "--only", default=None, help="run only the demo steps whose name contains this"
    )
    demo.set_defaults(func=_demo)
    for ep in sorted(entry_points(group="sharpen.commands"), key=lambda ep: ep.name):
        if ep.name != load:
            sub.add_parser(ep.name, help=_summary(ep), add_help=False)
            continue
        try:
            register = ep.load()
        except ImportError as exc:
            p = sub.add_parser(ep.name, help=f"(unavailable: {exc})")
            p.set_defaults(func=_unavailable(ep.name, exc))
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    name = _command_name(argv)
    commands = {ep.name for ep in entry_points(group="sharpen.commands")} | {"demo"}
    if name is not None and name not in commands:
        hint = closest(name, commands)
        return fail("sharpen", f"{name}: unknown command" + (f"; did you mean {hint}?" if hint else "")
                    + f" (commands: {', '.join(sorted(commands))})")  # fmt: skip
    parser = build_parser(load=name)
    args, extra = parser.parse_known_args(argv)
    if extra:
        chosen = (
            parser._subparsers._group_actions[0].choices.get(args.command) if args.command else None
        )
        (chosen or parser).unknown_options(extra)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # the commands' validation errors: "name: problem"
        if os.environ.get("SHARPEN_DEBUG"):
            raise
        return fail(f"sharpen {args.command}", str(exc).splitlines()[0] if str(exc) else repr(exc))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
