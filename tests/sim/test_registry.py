"""The experiment registry: one entry per experiment module, carrying what its callers need."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import sim.experiments
from sharpen._cli import option_specs
from sim.api import available_experiments, quick_config
from sim.configs import GRPORuns, OneOptimizer
from sim.registry import EXPERIMENTS, Experiment, get, register

SIM = Path(sim.experiments.__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (SIM / "experiments").glob("*.py") if p.stem != "__init__")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_one_experiment_per_module_registered_in_order():
    assert sorted(available_experiments()) == MODULES
    assert available_experiments()[:3] == ("theorem1", "stability", "destination")
    for name in MODULES:
        exp = get(name)
        assert exp.fn.__module__ == f"sim.experiments.{name}"
        assert exp.config_cls.__module__ == f"sim.experiments.{name}"


@pytest.mark.parametrize("name", MODULES)
def test_every_entry_carries_its_drawer_and_a_valid_quick_preset(name):
    exp = get(name)
    assert exp.plot is not None and exp.plot.__module__ == f"sim.experiments.{name}"
    cfg = quick_config(name)
    assert isinstance(cfg, exp.config_cls)
    for key, value in exp.quick.items():
        assert getattr(cfg, key) == value


def test_the_registry_and_the_experiments_import_no_experiment_and_no_api():
    assert not [
        m for m in _imports(SIM / "registry.py") if m.startswith(("sim.experiments", "sim.api"))
    ]
    for name in MODULES:
        bad = [
            m
            for m in _imports(SIM / "experiments" / f"{name}.py")
            if m.startswith(("sim.api", "sim.experiments"))
        ]
        assert not bad, (name, bad)


def test_register_refuses_a_name_twice_and_get_lists_the_valid_names():
    exp = get("stability")
    with pytest.raises(ValueError, match="registered twice"):
        register(exp)
    with pytest.raises(ValueError, match="valid: theorem1, stability"):
        get("stabilty")


def test_experiment_checks_its_entry():
    cfg, fn = get("grid").config_cls, get("grid").fn
    with pytest.raises(ValueError, match="quick"):
        Experiment("x", "exploration", cfg, fn, {"stepz": 1}, "doc")
    with pytest.raises(ValueError, match="kind"):
        Experiment("x", "lemma", cfg, fn, {}, "doc")
    assert "x" not in EXPERIMENTS


def test_the_shared_grpo_knobs_stay_flat_command_line_options():
    for name, exp in EXPERIMENTS.items():
        if not issubclass(exp.config_cls, GRPORuns):
            assert exp.kind == "theorem", name
            continue
        flags = {s.name for s in option_specs(exp.config_cls)}
        want = {f.name for f in dataclasses.fields(GRPORuns)}
        if issubclass(exp.config_cls, OneOptimizer):
            want |= {"optimizer", "lr"}
        assert want <= flags, (name, want - flags)


def test_shared_knobs_are_validated_once_for_every_config():
    for exp in EXPERIMENTS.values():
        if issubclass(exp.config_cls, GRPORuns):
            with pytest.raises(ValueError, match="seeds"):
                exp.config_cls(seeds=0)
            with pytest.raises(ValueError, match="n_rollouts"):
                exp.config_cls(n_rollouts=0)
        if issubclass(exp.config_cls, OneOptimizer):
            with pytest.raises(ValueError, match="optimizer"):
                exp.config_cls(optimizer="rmsprop")
            with pytest.raises(ValueError, match="lr"):
                exp.config_cls(lr=0.0)
    get("grid").config_cls(steps=0)  # the grid may run 0 steps (its initial state only)
    with pytest.raises(ValueError, match="steps"):
        get("dataset_size").config_cls(steps=0)
