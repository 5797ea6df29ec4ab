"""The lab's experiments, one module each; importing this package registers them in
:data:`empirical.lab.registry.LAB`, in this order."""

from empirical.lab.experiments import (  # noqa: F401
    dataset_size_real,
    early_collapse_real,
    failure_modes_real,
    prior_ladder_real,
    rise_then_fall_real,
    self_verification_real,
    single_question_real,
    theorem1_real,
)
