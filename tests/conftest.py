"""Shared pytest set-up: the `--slow` switch and the hypothesis profiles.

* default (CI): profile ``ci`` -- few examples, no deadline, derandomized so CI is repeatable.
* ``pytest --slow``: runs tests marked ``@pytest.mark.slow`` and switches to profile ``slow``
  (many more examples per property).
* ``fuzz``: what the fuzz tests (``tests/sharpen/test_fuzz.py``) run under -- the active profile, with
  :data:`FUZZ_EXAMPLES` examples per test under ``--slow`` (or ``$FUZZ_EXAMPLES``, if set).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "slow",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=10, deadline=None)

FUZZ_EXAMPLES = 10_000
"""Examples per fuzz test under ``--slow`` (each fuzzed function is called on every one of them)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="run tests marked slow and use the deep hypothesis profile",
    )


def pytest_configure(config: pytest.Config) -> None:
    slow = config.getoption("--slow")
    profile = "slow" if slow else os.environ.get("HYPOTHESIS_PROFILE", "ci")
    settings.load_profile(profile)
    # registered here, after --slow is known: test modules are imported later and read it by name
    settings.register_profile(
        "fuzz",
        parent=settings.get_profile(profile),
        max_examples=int(
            os.environ.get("FUZZ_EXAMPLES")
            or (FUZZ_EXAMPLES if slow else settings.get_profile(profile).max_examples)
        ),
        suppress_health_check=list(HealthCheck),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def cli_in_fresh_process():
    """``run(argv, modules) -> (stdout, loaded)``: ``sharpen.cli.main(argv)`` in a new Python process (so no
    test's imports count), its captured stdout and which of ``modules`` it left imported (sorted)."""
    import json
    import subprocess
    import sys

    def run(argv: list[str], modules: tuple[str, ...]) -> tuple[str, list[str]]:
        code = (
            "import sys, contextlib, io, json\n"
            "from sharpen.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass\n"
            f"print(json.dumps([out.getvalue(), sorted(m for m in {modules!r} if m in sys.modules)]))\n"
        )
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        text, loaded = json.loads(res.stdout)
        return text, loaded

    return run
