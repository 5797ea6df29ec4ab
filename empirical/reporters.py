"""Where a run's numbers go besides its JSONL logs: TensorBoard or Weights & Biases (``TrainConfig.report_to``).

``metrics.jsonl`` and ``eval.jsonl`` (:class:`sharpen.records.RunWriter`) are the run's record and stay its one
source for analysis; a reporter mirrors the same numbers into a tool people already read. Every reporter is a
:class:`Reporter`, listed in :data:`REPORTERS` (name -> class), the one table ``TrainConfig.report_to`` takes its
choices from and :func:`empirical.train.train` builds from:

* ``none`` -- :class:`NoReporter`: nothing besides the JSONL logs.
* ``tensorboard`` -- :class:`TensorBoardReporter`: event files under ``<run>/tensorboard/``
  (``torch.utils.tensorboard.SummaryWriter``; needs the ``tensorboard`` package, extra ``sharpen[tensorboard]``).
  ``tensorboard --logdir <run>/tensorboard`` shows them.
* ``wandb`` -- :class:`WandbReporter`: an *offline* Weights & Biases run under ``<run>/wandb/`` (never online;
  ``wandb sync`` uploads it later if wanted; extra ``sharpen[wandb]``).

Each step's batch metrics are logged under ``train/<name>`` and each evaluation under ``<split>/<name>`` (e.g.
``heldout/avg@4``) at the training step they belong to. Only numbers are mirrored: a value that is None (a metric
not logged that step) or not a number is left out; booleans become 0/1. TensorBoard stores scalars as float32,
so its values are metrics.jsonl's rounded to float32.

>>> r = REPORTERS["none"]("sharpen-out/run")
>>> r.start(step=0, config={}); r.log(1, {"reward_mean": 0.5}, section="train"); r.close()
"""

from __future__ import annotations

import importlib
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol


class Reporter(Protocol):
    """What the training loop calls on a reporter, beside the JSONL writer.

    Built with the run folder (``ValueError`` naming ``report_to`` when its package is missing -- checked before
    anything is trained); :meth:`start` opens it once the run knows its first step; :meth:`log` mirrors one
    record; :meth:`close` flushes and closes.
    """

    name: ClassVar[str]

    def __init__(self, run_dir: str | Path) -> None: ...

    def start(self, *, step: int, config: Mapping[str, Any]) -> None:
        """Open, continuing a run whose records up to ``step`` are kept (0: a fresh run); ``config`` is the run's
        configuration (``TrainConfig.to_dict()``)."""
        ...

    def log(self, step: int, values: Mapping[str, Any], *, section: str) -> None:
        """Record ``values`` (name -> number) at training step ``step`` under ``section/name``."""
        ...

    def close(self) -> None:
        """Flush and close (safe to call twice, and before :meth:`start`)."""
        ...


def scalars(values: Mapping[str, Any], section: str) -> dict[str, float]:
    """``{"section/name": float}`` for the numbers among ``values``: None and non-numbers left out, bools as 0/1.

    >>> scalars({"a": 1, "b": None, "c": "x", "d": True, "e": 0.5}, "train")
    {'train/a': 1.0, 'train/d': 1.0, 'train/e': 0.5}
    """
    out = {}
    for name, value in values.items():
        if isinstance(value, numbers.Real):  # bool is an Integral
            out[f"{section}/{name}"] = float(value)
    return out


def _require(module: str, extra: str, name: str):
    """Import ``module`` for reporter ``name``, or ``ValueError`` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ValueError(
            f"report_to: {name!r} needs the {extra} package, which is not installed ({err}); "
            f"pip install 'sharpen[{extra}]', or report_to='none'"
        ) from None


class NoReporter:
    """``report_to="none"``: the JSONL logs only."""

    name: ClassVar[str] = "none"

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def start(self, *, step: int, config: Mapping[str, Any]) -> None:
        """Nothing to open."""

    def log(self, step: int, values: Mapping[str, Any], *, section: str) -> None:
        """Nothing to mirror."""

    def close(self) -> None:
        """Nothing to close."""


class TensorBoardReporter:
    """Event files under ``<run>/tensorboard/`` through ``torch.utils.tensorboard.SummaryWriter``, one scalar per
    number (:func:`scalars`).

    On a resume (``start(step=k)`` with ``k > 0``) the writer is opened with ``purge_step=k + 1``: TensorBoard
    then hides the events an earlier attempt wrote after the checkpoint, as ``metrics.jsonl`` drops them, so a
    step is never shown twice.
    """

    name: ClassVar[str] = "tensorboard"

    def __init__(self, run_dir: str | Path) -> None:
        _require("tensorboard", "tensorboard", self.name)
        self.log_dir = Path(run_dir) / "tensorboard"
        self._writer = None

    def start(self, *, step: int, config: Mapping[str, Any]) -> None:
        """Open the writer; the configuration goes in as a text summary (``config``) at the first step."""
        import json

        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.log_dir), purge_step=step + 1 if step > 0 else None)
        if step == 0:
            text = json.dumps(dict(config), indent=2, sort_keys=True, default=str)
            self._writer.add_text("config", "```\n" + text + "\n```", global_step=0)

    def log(self, step: int, values: Mapping[str, Any], *, section: str) -> None:
        """One ``add_scalar`` per number; NaN and infinities are kept (TensorBoard shows them as gaps)."""
        if self._writer is None:
            raise RuntimeError("TensorBoardReporter.log: call start() first")
        for tag, value in scalars(values, section).items():
            self._writer.add_scalar(tag, value, global_step=int(step))

    def close(self) -> None:
        """Flush the event file and close it."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WandbReporter:
    """An offline Weights & Biases run under ``<run>/wandb/``: ``wandb.init(mode="offline")``, then one
    ``run.log(..., step=step)`` per record. Project ``sharpen``, run name the run folder's name, config the run's.

    A resumed training run starts a new offline wandb run (wandb's own resume needs its server); the steps it
    logs continue from the checkpoint.
    """

    name: ClassVar[str] = "wandb"

    def __init__(self, run_dir: str | Path) -> None:
        self._wandb = _require("wandb", "wandb", self.name)
        self.run_dir = Path(run_dir)
        self._run = None

    def start(self, *, step: int, config: Mapping[str, Any]) -> None:
        """``wandb.init`` in offline mode, writing into the run folder."""
        self._run = self._wandb.init(project="sharpen", name=self.run_dir.name, dir=str(self.run_dir),
                                     mode="offline", config=dict(config))  # fmt: skip

    def log(self, step: int, values: Mapping[str, Any], *, section: str) -> None:
        """The record's numbers (:func:`scalars`) at ``step``; non-finite ones are kept (wandb shows gaps)."""
        if self._run is None:
            raise RuntimeError("WandbReporter.log: call start() first")
        data = scalars(values, section)
        if data:
            self._run.log(data, step=int(step))

    def close(self) -> None:
        """``finish`` the offline run."""
        if self._run is not None:
            self._run.finish()
            self._run = None


REPORTERS: dict[str, type[Reporter]] = {
    r.name: r for r in (NoReporter, TensorBoardReporter, WandbReporter)
}
"""Every reporter by name: ``TrainConfig.report_to`` is one of these keys."""
