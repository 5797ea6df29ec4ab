r"""Checked experiments on the real tiny LM (``sharpen lab``): the paper's claims tested with real GRPO runs.

The lab mirrors the simulator's experiments (:mod:`sim.experiments`): each module of
:mod:`empirical.lab.experiments` states a claim, declares a frozen config (seeds, learning rates, steps), runs
real GRPO on the tiny Qwen3 (:func:`empirical.train.train`; one run folder per configuration, shared between
experiments and reused when it is complete), reads the runs' exact probes and exact held-out accuracy, and
returns a :class:`sim.results.SimResult`: trajectories, a figure, and a verdict computed from its numbers. Every
experiment runs 3 seeds by default, evaluates on 1000 held-out questions (the exact expected accuracy of one
sample, with its standard error over questions and over seeds) and runs the ground-truth reward as the control at
every learning rate it tries. ``--quick`` runs a few-step variant that checks the mechanism, not the verdict.

::

    sharpen lab --list
    sharpen lab theorem1_real --quick
    sharpen lab rise_then_fall_real            # full: 3 seeds x 3 learning rates x (majority vote, ground truth)

Layout: :mod:`empirical.lab.registry` (the experiments by name), :mod:`empirical.lab.runs` (configurations to
run folders, and the series read back from them), :mod:`empirical.lab.experiments` (one file per experiment),
:mod:`empirical.lab.cli` (``sharpen lab``). Results and the paper's numbers beside ours: ``docs/lab.md``.
"""
