"""Every figure kind is a :class:`paper_figures.cli.FigureKind`: what ``sharpen figures`` reads is declared, never
probed."""

from __future__ import annotations

import pytest

from paper_figures import cli
from paper_figures.data import SimSpec


@pytest.mark.parametrize("name", list(cli.FIGURES))
def test_every_figure_module_is_a_figure_kind(name):
    mod = cli.FIGURES[name]
    assert isinstance(mod, cli.FigureKind)
    assert isinstance(mod.KIND, str) and isinstance(mod.COMPACT, bool)
    specs = cli.sim_specs(mod)
    assert specs and all(isinstance(s, SimSpec) for s in specs)
    # SIM, where a kind has one, is the one run it reads; the cache key follows its resolved config
    assert mod.SIM is None or specs == [mod.SIM]


def test_a_module_missing_a_member_is_not_a_figure_kind():
    from types import SimpleNamespace

    kind = {
        m: getattr(cli.FIGURES["fig1_theory_fit"], m)
        for m in ("KIND", "COMPACT", "SIM", "compute", "draw")
    }
    assert not isinstance(SimpleNamespace(**kind), cli.FigureKind)  # no sim_specs
    assert isinstance(SimpleNamespace(**kind, sim_specs=list), cli.FigureKind)
