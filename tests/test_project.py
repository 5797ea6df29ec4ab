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
