"""The project's promises to a new user: the README's commands are the ones CI runs; the CLI answers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_readme_starts_with_two_commands_and_ci_runs_the_test_one():
    demo, tests = _readme_commands()
    assert "sharpen demo" in demo
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()


def test_setup_commands_pin_the_cpu_stack():
    for cmd in _readme_commands():
        assert "-c constraints.txt" in cmd
    pins = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    assert re.search(r"^torch==2\.13\.0$", pins, re.M)


def test_cli_help_lists_the_commands():
    out = subprocess.run(
        [sys.executable, "-m", "sharpen.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("demo", "theory"):
        assert command in out
    assert "unavailable" not in out, out


def test_sharpen_never_imports_the_packages_built_on_it():
    import ast

    upper = {"sim", "empirical", "paper_figures"}
    offenders = []
    for path in (ROOT / "sharpen").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in upper
            ]
    assert not offenders, offenders


def test_readme_first_look_snippet_runs(capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## A first look") :]
    code = re.search(r"```python\n(.+?)\n```", section, re.S).group(1)
    exec(compile(code, "README.md:first-look", "exec"), {})
    out = capsys.readouterr().out
    assert "majority_voting [1. 1. 0. 0.]" in out
    assert out.strip().splitlines()[-1].startswith("10.0")


def test_the_analysis_core_imports_without_torch_or_matplotlib():
    """Fitting a run folder needs numpy and scipy only: no torch (seconds to import), no matplotlib."""
    modules = "sharpen.theory, sharpen.records, sharpen.metrics, sharpen.fitting, sharpen.collapse"
    code = (
        f"import sys, {modules}, sharpen.run_analysis; "
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_no_argparse_or_matplotlib_in_the_library_outside_its_cli_modules():
    import ast

    allowed = {"_cli.py", "_theory_cli.py", "cli.py"}
    offenders = []
    for path in (ROOT / "sharpen").rglob("*.py"):
        if path.relative_to(ROOT / "sharpen").as_posix() in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {n}"
                for n in names
                if n.split(".")[0] in ("argparse", "matplotlib")
            ]
    assert not offenders, offenders
