"""The ``sharpen`` command.

The commands are the table ``[project.entry-points."sharpen.commands"]`` in ``pyproject.toml``, one line each,
``name = "module:register"`` (``register(subparsers)`` adds the command's parser and sets ``func``), so
``sharpen/`` never imports the packages built on it (``sim``, ``empirical``, ...) and other packages can add
commands. Only the command being run is imported; ``sharpen --help`` lists the others with the ``help=`` their
``register`` passes to ``add_parser``, read from its source without importing it (so it costs no torch
import). ``sharpen demo`` runs the functions of the group ``sharpen.demo`` in name order: the embedded default
end to end.

Every user error is one line, ``sharpen <cmd>: error: <arg>: <problem>``, with exit code 2: argparse errors,
unknown options (with the closest valid one) and the ``ValueError`` a command's validation raises.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
import time
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from sharpen._cli import CommandParser, closest, dispatch, fail, output_dir, plain


def _unavailable(name: str, error: BaseException):
    def run(args: argparse.Namespace) -> int:
        return fail(f"sharpen {name}", f"unavailable here ({type(error).__name__}: {error})")

    return run


# a command module that cannot be found or read (ValueError: not UTF-8): listed without a help line
_UNREADABLE = (
    AttributeError,
    ImportError,
    OSError,
    SyntaxError,
    StopIteration,
    TypeError,
    ValueError,
)


def _register_help(tree: ast.Module, function: str) -> str | None:
    """The constant ``help=`` of the ``add_parser(...)`` call in top-level function ``function``, if any."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "add_parser":
                    for kw in call.keywords:
                        if kw.arg == "help" and isinstance(kw.value, ast.Constant):
                            return str(kw.value.value)
    return None


def _summary(ep: EntryPoint) -> str:
    """The command's one-line help, read from source without importing it: the ``help=`` its ``register``
    passes to ``add_parser``, else the first sentence of its module's docstring."""
    module, _, function = ep.value.partition(":")
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
        base = Path(next(iter(spec.submodule_search_locations or []), Path(spec.origin).parent))
        path = base.joinpath(*rest[:-1], f"{rest[-1]}.py") if rest else Path(spec.origin)
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except _UNREADABLE:
        return ""
    help_text = _register_help(tree, function.strip())
    if help_text:
        return plain(help_text)
    doc = ast.get_docstring(tree) or ""
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
            sub.add_parser(ep.name, help=_summary(ep).replace("%", "%%"), add_help=False)
            continue
        try:
            register = ep.load()
        except ImportError as exc:
            p = sub.add_parser(
                ep.name, help=f"(unavailable: {exc})", description=f"unavailable here: {exc}"
            )
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
    return dispatch(build_parser(load=name), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
