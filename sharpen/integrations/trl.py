r"""sharpen inside TRL's ``GRPOTrainer`` (TRL 1.x, tested with 1.16.0; extra ``trl``).

* **Answer-level rewards** with TRL's calling convention ``fn(prompts, completions, completion_ids, **kwargs) ->
  list[float]`` (``kwargs`` carry the dataset columns): :class:`MajorityVotingReward`, :class:`GroundTruthReward`,
  :class:`SelfVerificationReward`. The math is ``sharpen.rewards.get_reward``; the group metrics are
  ``sharpen.metrics.ttrl_metrics``, logged through TRL's ``log_metric`` under TTRL's names **namespaced by the
  reward**: ``<reward name>/reward_accuracy``, ``majority_voting/majority_voting_reward``, ... TRL averages every
  value logged under one name in a step, so two rewards logging a bare ``reward_accuracy`` would be averaged into
  a number neither computed (measured: majority 0.9375 and ground truth 0.5312 became 0.7344).
  :class:`SharpenRunCallback` writes the bare TTRL names that ``sharpen fit`` reads from one chosen reward
  (``metric_rewards``, default the majority vote), never from an average.
* **Groups across processes.** Each rank scores only its slice of the generation batch, and a prompt's
  ``num_generations`` completions can straddle ranks. Voting groups completions by a prompt-id column; it never
  votes on a fragment: with ``on_partial="gather"`` (default) the answers of all ranks are gathered
  (``accelerate.utils.gather_object``, every rank calls it in the same order), with ``"raise"`` a partial group
  raises ``ValueError``.
* **Certainty rewards** (self-certainty, token entropy, trajectory entropy, probability) need the policy's
  full-vocabulary logits, which TRL does not pass to reward functions. :class:`CertaintyReward` is scored by
  :class:`SharpenGRPOTrainer`, a small ``GRPOTrainer`` subclass that keeps the prompt ids of each generation and
  runs one no-grad forward pass of the current policy: logits at positions :math:`P-1..P+L-2` predict the
  :math:`L` completion tokens (shift by one, drop the last), divided by TRL's temperature inside
  ``sharpen.rewards.score``.
* :class:`SharpenRunCallback` writes sharpen's run folder (``config.json`` with ``kind: "trl"``, ``env.json``,
  ``metrics.jsonl`` under TTRL names, ``probes.jsonl``: per-question majority trajectories sampled every
  ``probe_every`` steps) so ``sharpen fit`` and ``sharpen figures`` read a TRL run like any other. It is
  resume-safe: after ``trainer.train(resume_from_checkpoint=...)`` the records equal an uninterrupted run's.
* **Precision.** TRL's ``bf16=True`` default also applies on CPU (accelerate then runs the policy's forward under
  bf16 autocast); :class:`SharpenGRPOTrainer` scores the certainty rewards outside autocast, in the parameters'
  dtype (fp32 unless the model was loaded in lower precision). For CPU runs set ``bf16=False`` anyway: training is
  about 6x slower under bf16 autocast without native bf16.

Example (the tiny arithmetic task; see docs/integrations.md for a full run)::

    rewards = [MajorityVotingReward(num_generations=8, parse=parse_integer)]
    trainer = SharpenGRPOTrainer(model, rewards, args=GRPOConfig(..., bf16=False),  # CPU: no bf16 autocast
                                 train_dataset=ds,
                                 callbacks=[SharpenRunCallback("runs/trl-tiny", probes=questions[:8],
                                                               parse=parse_integer)])
    trainer.train()
"""

from __future__ import annotations

import dataclasses
import re
import warnings
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sharpen.answers import canonicalize, extract_answer
from sharpen.integrations.records import probe_records, resume_run
from sharpen.metrics import (
    exact_match,
    point_biserial,
    pseudo_label_acc,
    ttrl_metrics,
    underflow_fraction,
)
from sharpen.records import (
    GROUND_TRUTH_RATIO,
    HELDOUT_ACCURACY,
    KL,
    MAJORITY_REWARD,
    PROBES_FILE,
    RunHeader,
    RunWriter,
    environment_info,
)
from sharpen.rewards import PRESETS, Rollouts, available_rewards, get_reward, reward_info

try:
    from transformers import TrainerCallback
    from trl import GRPOTrainer
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("sharpen.integrations.trl needs TRL: pip install 'sharpen[trl]'") from err

__all__ = [
    "CERTAINTY_REWARDS",
    "CertaintyReward",
    "GroundTruthReward",
    "MajorityVotingReward",
    "REWARD_METRICS",
    "SelfVerificationReward",
    "SharpenGRPOTrainer",
    "SharpenRunCallback",
    "certainty_rewards",
    "completion_text",
    "default_parse",
]

CERTAINTY_REWARDS: tuple[str, ...] = tuple(n for n, spec in PRESETS.items() if spec.needs_logits)
"""The certainty presets (self-certainty, token and trajectory entropy, probability); :class:`CertaintyReward`
takes these and every other registered token-level reward with a spec (:func:`certainty_rewards`)."""


def certainty_rewards() -> tuple[str, ...]:
    """The registered rewards :class:`CertaintyReward` scores: token-level, with a spec."""
    return tuple(n for n in available_rewards(level="token") if reward_info(n).spec is not None)


OnPartial = Literal["gather", "raise"]

REWARD_METRICS: tuple[str, ...] = (
    "label_accuracy",
    "reward_accuracy",
    "majority_ratio",
    "ground_truth_ratio",
    "majority_voting_reward",
    "pass@N",
    "pseudo_label_acc",
    "point_biserial",
)
"""Metric names the sharpen rewards log, each as ``<reward name>/<metric>`` (``pass@N`` with N the group size).

TRL averages every value logged under one name in a step, so each reward logs under its own namespace;
:class:`SharpenRunCallback` writes the bare names to ``metrics.jsonl`` from one chosen reward."""

_REWARD_METRIC = re.compile(
    r"^(?P<reward>[^/]+)/(?P<metric>"
    + "|".join(re.escape(m) if m != "pass@N" else r"pass@\d+" for m in REWARD_METRICS)
    + r")$"
)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or the content of the last message of a conversational one."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        return str(completion[-1].get("content", ""))
    raise ValueError(
        f"completions: expected str or a list of messages, got {type(completion).__name__}"
    )


def default_parse(text: str) -> str | None:
    r"""The answer of a response: last ``\boxed{}``, else last ``Answer:`` line, canonicalised (None if absent)."""
    return canonicalize(extract_answer(text))


# ----------------------------------------------------------------------------------------------------------------
# Gathering groups across processes
# ----------------------------------------------------------------------------------------------------------------


def _world() -> tuple[int, int]:
    """(number of processes, this process's index) from accelerate's state; (1, 0) without one."""
    try:
        from accelerate.state import PartialState

        state = PartialState()
        return int(state.num_processes), int(state.process_index)
    except Exception:  # noqa: BLE001 - no accelerate state means one process
        return 1, 0


def _group_view(
    columns: Mapping[str, list], group_key: str, num_generations: int, on_partial: OnPartial
) -> tuple[dict[str, list], slice]:
    """All ranks' rows of ``columns`` (gathered when needed) and the slice of this rank's rows in them.

    Raises ``ValueError`` when a prompt group is not complete (``num_generations`` rows).
    """
    n_local = len(columns[group_key])
    world, rank = _world()
    if world > 1 and on_partial == "gather":
        from accelerate.utils import gather_object

        gathered = {k: list(gather_object(list(v))) for k, v in sorted(columns.items())}
        local = slice(rank * n_local, (rank + 1) * n_local)
    else:
        gathered, local = {k: list(v) for k, v in columns.items()}, slice(0, n_local)
    counts: dict[Hashable, int] = {}
    for g in gathered[group_key]:
        counts[g] = counts.get(g, 0) + 1
    partial = {g: c for g, c in counts.items() if c != num_generations}
    if partial:
        shown = dict(list(partial.items())[:3])
        where = (
            "across all processes" if world > 1 and on_partial == "gather" else "on this process"
        )
        raise ValueError(
            f"{group_key}: partial prompt group(s) {shown} {where} (expected {num_generations} completions each); "
            "a vote on a fragment is not a majority vote. Use on_partial='gather' on several processes, or make "
            "num_generations divide per_device_train_batch_size x steps_per_generation, and keep prompt ids unique."
        )
    return gathered, local


class _AnswerReward:
    """Shared machinery of the answer-level rewards: parsing, group view, TTRL metrics."""

    name = "answer_reward"

    def __init__(
        self,
        *,
        num_generations: int | None,
        parse: Callable[[str], Hashable | None] | None,
        group_column: str,
        label_column: str | None,
        on_partial: OnPartial,
        log_metrics: bool,
    ) -> None:
        if num_generations is not None and (
            not isinstance(num_generations, int) or num_generations < 1
        ):
            raise ValueError(f"num_generations: must be an int >= 1, got {num_generations!r}")
        if on_partial not in ("gather", "raise"):
            raise ValueError(f"on_partial: must be 'gather' or 'raise', got {on_partial!r}")
        if parse is not None and not callable(parse):
            raise ValueError("parse: must be callable text -> answer | None")
        self.num_generations = num_generations
        self.parse = parse or default_parse
        self.group_column = group_column
        self.label_column = label_column
        self.on_partial = on_partial
        self.log_metrics = log_metrics
        self.__name__ = self.name  # TRL names reward functions by __name__

    def _column(self, kwargs: Mapping[str, Any], name: str, n: int) -> list:
        if name not in kwargs:
            cols = sorted(
                k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric")
            )
            raise ValueError(f"{name}: no such dataset column; the reward received {cols}")
        values = list(kwargs[name])
        if len(values) != n:
            raise ValueError(f"{name}: expected {n} values (one per completion), got {len(values)}")
        return values

    def _score(
        self, answers: list, groups: list | None, labels: list | None, local: list[dict]
    ) -> np.ndarray:
        raise NotImplementedError

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Any = None,
        **kwargs: Any,
    ) -> list[float]:
        n = len(completions)
        if n == 0 or len(prompts) != n:
            raise ValueError(
                f"prompts, completions: need equal, non-zero lengths, got {len(prompts)} and {n}"
            )
        texts = [completion_text(c) for c in completions]
        columns: dict[str, list] = {
            "answer": [self.parse(t) for t in texts],
            "text": texts,
            "prompt": list(prompts),
        }
        grouped = self.num_generations is not None and self.group_column in kwargs
        if (
            self.num_generations is not None
            and not grouped
            and isinstance(self, MajorityVotingReward)
        ):
            self._column(kwargs, self.group_column, n)  # raises: voting needs the prompt ids
        if grouped:
            columns["group"] = self._column(kwargs, self.group_column, n)
        if self.label_column is not None and self.label_column in kwargs:
            columns["label"] = [
                None if v is None else str(v) for v in self._column(kwargs, self.label_column, n)
            ]
        if grouped:
            view, local = _group_view(columns, "group", self.num_generations, self.on_partial)
        else:
            view, local = columns, slice(0, n)
        rewards = self._score(view["answer"], view.get("group"), view.get("label"), view)
        log_metric = kwargs.get("log_metric")
        if self.log_metrics and callable(log_metric) and "label" in view and grouped:
            correct = np.array(
                [
                    float(exact_match(lab, a))
                    for lab, a in zip(view["label"], view["answer"], strict=True)
                ]
            )
            for key, value in self._metrics(view, rewards, correct).items():
                log_metric(key, value)
        return [float(r) for r in rewards[local]]

    def _metrics(
        self, view: dict[str, list], rewards: np.ndarray, correct: np.ndarray
    ) -> dict[str, float]:
        """TTRL metrics of this reward, each named ``<self.name>/<TTRL name>`` (see :data:`REWARD_METRICS`)."""
        return ttrl_metrics(
            view["answer"], view["label"], view["group"], proxy_rewards=rewards, correct=correct,
            prefix=f"{self.name}/",
        )  # fmt: skip


class MajorityVotingReward(_AnswerReward):
    r"""TTRL's majority-voting reward :math:`\mathbb 1[\mathrm{ans}(y)=\mathrm{maj}(Y)]` for TRL.

    Parameters
    ----------
    num_generations : int
        TRL's ``num_generations`` (the group size N); every prompt id must occur exactly N times.
    parse : callable text -> answer or None, optional
        Answer extraction (default :func:`default_parse`); ``None`` = unparseable (does not vote, counts in N).
    group_column : str
        Dataset column holding a unique id per prompt (default ``"prompt_id"``).
    label_column : str or None
        Column with the ground truth, for the TTRL metrics only (default ``"answer"``; skipped when absent).
    on_partial : {"gather", "raise"}
        Several processes: gather all ranks' answers before voting, or raise on a partial group.
    log_metrics : bool
        Log ``label_accuracy``, ``reward_accuracy``, ``majority_ratio``, ``ground_truth_ratio``,
        ``majority_voting_reward`` and ``pass@N`` through TRL's ``log_metric``, each as
        ``majority_voting/<name>`` (namespaced: TRL averages same-named values of different rewards).

    >>> f = MajorityVotingReward(num_generations=3, parse=str.strip)
    >>> logged = {}
    >>> f(["q"] * 3, ["7", "7", "8"], prompt_id=["a"] * 3, answer=["8"] * 3, log_metric=logged.__setitem__)
    [1.0, 1.0, 0.0]
    >>> logged["majority_voting/reward_accuracy"], logged["majority_voting/label_accuracy"]
    (0.0, 0.0)
    """

    name = "majority_voting"

    def __init__(
        self,
        num_generations: int,
        *,
        parse: Callable[[str], Hashable | None] | None = None,
        group_column: str = "prompt_id",
        label_column: str | None = "answer",
        on_partial: OnPartial = "gather",
        log_metrics: bool = True,
    ) -> None:
        if num_generations is None:
            raise ValueError("num_generations: majority voting needs the group size")
        super().__init__(
            num_generations=num_generations,
            parse=parse,
            group_column=group_column,
            label_column=label_column,
            on_partial=on_partial,
            log_metrics=log_metrics,
        )
        self._reward = get_reward("majority_voting")

    def _score(
        self, answers: list, groups: list | None, labels: list | None, view: dict
    ) -> np.ndarray:
        return np.asarray(self._reward(Rollouts(answers=answers, groups=groups)), dtype=np.float64)


class GroundTruthReward(_AnswerReward):
    r"""The oracle reward :math:`\mathbb 1[\mathrm{ans}(y)\equiv\mathrm{label}]` (``get_reward("ground_truth")``).

    With ``num_generations`` and a ``group_column`` present it also logs the TTRL metrics per prompt group
    (gathering groups across processes like :class:`MajorityVotingReward`), as ``ground_truth/<name>``.

    >>> GroundTruthReward(parse=str.strip)(["q", "q"], ["7", "8"], answer=["7", "7"])
    [1.0, 0.0]
    """

    name = "ground_truth"

    def __init__(
        self,
        *,
        parse: Callable[[str], Hashable | None] | None = None,
        label_column: str = "answer",
        num_generations: int | None = None,
        group_column: str = "prompt_id",
        on_partial: OnPartial = "gather",
        math_verify: bool = False,
        log_metrics: bool = True,
    ) -> None:
        super().__init__(
            num_generations=num_generations,
            parse=parse,
            group_column=group_column,
            label_column=label_column,
            on_partial=on_partial,
            log_metrics=log_metrics,
        )
        self._reward = get_reward("ground_truth", math_verify=math_verify)

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Any = None,
        **kwargs: Any,
    ):
        self._column(kwargs, self.label_column, len(completions))  # the oracle needs its labels
        return super().__call__(prompts, completions, completion_ids, **kwargs)

    def _score(
        self, answers: list, groups: list | None, labels: list | None, view: dict
    ) -> np.ndarray:
        return np.asarray(self._reward(Rollouts(answers=answers, labels=labels)), dtype=np.float64)


class SelfVerificationReward(_AnswerReward):
    """A verifier's 0/1 judgement of each completion (``get_reward("self_verification", verifier=...)``).

    ``verifier(rollouts) -> (B,) 0/1`` receives a :class:`sharpen.rewards.Rollouts` with ``prompts``,
    ``responses`` (completion texts), ``answers`` and ``groups``; e.g. the policy itself asked whether the
    response solves the prompt. Metrics (with ``num_generations``, as ``self_verification/<name>``):
    ``reward_accuracy`` is the verifier's agreement with the ground truth.

    >>> f = SelfVerificationReward(lambda r: [a == "7" for a in r.answers], parse=str.strip)
    >>> f(["q", "q"], ["7", "8"])
    [1.0, 0.0]
    """

    name = "self_verification"

    def __init__(
        self,
        verifier: Callable[[Rollouts], Any],
        *,
        parse: Callable[[str], Hashable | None] | None = None,
        label_column: str | None = "answer",
        num_generations: int | None = None,
        group_column: str = "prompt_id",
        on_partial: OnPartial = "gather",
        log_metrics: bool = True,
    ) -> None:
        super().__init__(
            num_generations=num_generations,
            parse=parse,
            group_column=group_column,
            label_column=label_column,
            on_partial=on_partial,
            log_metrics=log_metrics,
        )
        self._reward = get_reward("self_verification", verifier=verifier)

    def _score(
        self, answers: list, groups: list | None, labels: list | None, view: dict
    ) -> np.ndarray:
        prompts = [p if isinstance(p, str) else completion_text(p) for p in view["prompt"]]
        rollouts = Rollouts(answers=answers, groups=groups, responses=view["text"], prompts=prompts)
        return np.asarray(self._reward(rollouts), dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------
# Certainty rewards, scored by the trainer from the policy's logits
# ----------------------------------------------------------------------------------------------------------------


class CertaintyReward:
    r"""A certainty reward of :mod:`sharpen.rewards` (``self_certainty``, ``token_entropy``,
    ``trajectory_entropy``, ``probability``) as a TRL reward function; needs :class:`SharpenGRPOTrainer`.

    The value is ``sharpen.rewards.score(spec, Rollouts(logits, tokens, mask, temperature))`` with the policy's
    logits aligned with the sampled completion tokens and TRL's rollout temperature. The probability reward
    underflows to 0 for long responses (docs/theory.md, "Probability underflow"): ``log_space=True`` gives
    :math:`\log\pi_\theta(y\mid x)` instead; the underflow fraction is logged as ``<name>/underflow_fraction``.

    Parameters
    ----------
    name : one of :func:`certainty_rewards` (the presets :data:`CERTAINTY_REWARDS` and any token-level reward
        registered with a spec)
    aggregate : {"mean", "sum"}, optional
        Token mean (URLVR, RENT, Intuitor; the preset) or sum (EM-RL).
    log_space : bool
    parse, group_column, label_column
        When both columns are in the dataset, ``<name>/pseudo_label_acc`` and ``<name>/point_biserial`` are
        logged (this process's rows; namespaced so that several certainty rewards are not averaged together).
    """

    def __init__(
        self,
        name: str,
        *,
        aggregate: Literal["mean", "sum"] | None = None,
        log_space: bool = False,
        parse: Callable[[str], Hashable | None] | None = None,
        group_column: str = "prompt_id",
        label_column: str = "answer",
    ):
        if name not in certainty_rewards():
            raise ValueError(f"name: must be one of {certainty_rewards()}, got {name!r}")
        if aggregate not in (None, "mean", "sum"):
            raise ValueError(f"aggregate: must be None, 'mean' or 'sum', got {aggregate!r}")
        self.name = name
        self.__name__ = name
        preset = reward_info(name).spec
        self.spec = (
            preset if aggregate is None else dataclasses.replace(preset, aggregate=aggregate)
        )
        self.log_space = bool(log_space)
        self.parse = parse or default_parse
        self.group_column, self.label_column = group_column, label_column
        self._trainer: Callable[[], Any] | None = None

    def bind(self, trainer: SharpenGRPOTrainer) -> None:
        """Attach the trainer whose policy scores this reward (done by :class:`SharpenGRPOTrainer`)."""
        self._trainer = weakref.ref(trainer)

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Any = None,
        **kwargs: Any,
    ):
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is None:
            raise ValueError(
                f"{self.name}: a certainty reward needs the policy's logits; train with "
                "sharpen.integrations.trl.SharpenGRPOTrainer (plain GRPOTrainer does not pass them)"
            )
        if completion_ids is None or len(completion_ids) != len(completions):
            raise ValueError("completion_ids: TRL must pass one token list per completion")
        values = trainer.score_certainty(self, completion_ids)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and self.spec.unit == "sequence":  # a probability: its underflow
            finite = [v for v in trainer.score_certainty_log(completion_ids) if v is not None]
            if finite:
                log_metric(
                    f"{self.name}/underflow_fraction", underflow_fraction(np.asarray(finite))
                )
        if callable(log_metric) and self.group_column in kwargs and self.label_column in kwargs:
            # this process's rows only: a group split across processes is measured on its local part
            labels = [None if v is None else str(v) for v in kwargs[self.label_column]]
            answers = [self.parse(completion_text(c)) for c in completions]
            correct = [float(exact_match(lab, a)) for lab, a in zip(labels, answers, strict=True)]
            keep = [i for i, v in enumerate(values) if v is not None]
            if keep:
                metrics = certainty_metrics(
                    [values[i] for i in keep],
                    [correct[i] for i in keep],
                    [kwargs[self.group_column][i] for i in keep],
                )
                for key, value in metrics.items():
                    log_metric(f"{self.name}/{key}", value)
        return values


class SharpenGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` that scores :class:`CertaintyReward` functions exactly from the policy's logits.

    Two small overrides, no copy of TRL's loop: ``_generate`` keeps the prompt token ids of the batch it just
    generated, and :meth:`score_certainty` (called by a bound :class:`CertaintyReward`) runs one no-grad forward
    pass of the current policy over ``prompt + completion`` in chunks of ``certainty_chunk_size`` rows, slices
    the logits predicting the completion tokens and calls ``sharpen.rewards.score``. Memory per chunk:
    ``chunk x L x V`` float32 logits. Answer-level rewards are passed through untouched.

    **Precision contract.** The certainty rewards are computed without autocast, whatever TRL's ``bf16``/``fp16``
    (TRL's ``bf16=True`` default applies on CPU too, and accelerate then wraps the policy's ``forward`` in bf16
    autocast; the rewards differed from fp32 by up to 0.06): the forward pass bypasses accelerate's autocast
    wrapper, runs under ``torch.autocast(enabled=False)`` in the parameters' dtype, and the logits are cast to
    float32 before scoring. With fp32 weights (TRL's default on CPU and GPU) the rewards are exactly the fp32
    values; a model loaded in bf16 is scored in bf16, cast to fp32.

    Parameters
    ----------
    *args, **kwargs
        As for ``trl.GRPOTrainer``.
    certainty_chunk_size : int, optional
        Rows per forward pass (default: ``per_device_train_batch_size``).
    """

    def __init__(self, *args: Any, certainty_chunk_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if certainty_chunk_size is not None and certainty_chunk_size < 1:
            raise ValueError(f"certainty_chunk_size: must be >= 1, got {certainty_chunk_size}")
        self.certainty_chunk_size = certainty_chunk_size or self.args.per_device_train_batch_size
        self._sharpen_prompt_ids: list[list[int]] | None = None
        for func in self.reward_funcs:
            if isinstance(func, CertaintyReward):
                func.bind(self)

    def _generate(self, prompts: list) -> tuple:
        out = super()._generate(prompts)
        self._sharpen_prompt_ids = [list(map(int, ids)) for ids in out[0]]
        return out

    @torch.no_grad()
    def policy_logits(
        self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of the current policy predicting each completion token, computed without autocast.

        Returns
        -------
        logits : (B, L, V) float32 -- position t predicts ``tokens[:, t]`` (model positions P-1 .. P+L-2); the
            forward pass runs in the parameters' dtype, outside any autocast (see the class docstring)
        tokens : (B, L) long -- completion ids, right-padded
        mask : (B, L) bool -- 1 on completion tokens
        """
        if len(prompt_ids) != len(completion_ids) or not prompt_ids:
            raise ValueError("prompt_ids, completion_ids: need equal, non-zero lengths")
        model = self.accelerator.unwrap_model(self.model)
        device = self.accelerator.device
        pad = (
            self.processing_class.pad_token_id
            if hasattr(self.processing_class, "pad_token_id")
            else 0
        )
        pad = 0 if pad is None else int(pad)
        p_len = max(len(p) for p in prompt_ids)
        c_len = max(1, max(len(c) for c in completion_ids))
        b = len(prompt_ids)
        ids = torch.full((b, p_len + c_len), pad, dtype=torch.long, device=device)
        attn = torch.zeros((b, p_len + c_len), dtype=torch.long, device=device)
        for i, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
            ids[i, p_len - len(p) : p_len] = torch.as_tensor(
                list(p), dtype=torch.long
            )  # left-padded prompt
            ids[i, p_len : p_len + len(c)] = torch.as_tensor(
                list(c), dtype=torch.long
            )  # right-padded completion
            attn[i, p_len - len(p) : p_len + len(c)] = 1
        # accelerate's mixed precision replaces model.forward by an autocast wrapper and keeps the original in
        # _original_forward; an outer autocast(enabled=False) alone would be re-enabled inside that wrapper
        forward = model.__dict__.get("_original_forward", model)
        with torch.autocast(device_type=device.type, enabled=False):
            logits = forward(input_ids=ids, attention_mask=attn).logits  # (B, P+L, V)
        aligned = logits[
            :, p_len - 1 : p_len + c_len - 1
        ].float()  # (B, L, V): drop-last-logit alignment
        tokens = ids[:, p_len:]
        mask = attn[:, p_len:].bool()
        return aligned, tokens, mask

    def _certainty_values(
        self, spec: Any, completion_ids: Sequence[Sequence[int]], log_space: bool
    ) -> list:
        if self._sharpen_prompt_ids is None or len(self._sharpen_prompt_ids) != len(completion_ids):
            raise ValueError(
                "completion_ids: do not match the last generated batch (prompt ids unavailable)"
            )
        out: list[float | None] = [None] * len(completion_ids)
        rows = [
            i for i, c in enumerate(completion_ids) if len(c) > 0
        ]  # an empty completion has no tokens
        for start in range(0, len(rows), self.certainty_chunk_size):
            chunk = rows[start : start + self.certainty_chunk_size]
            logits, tokens, mask = self.policy_logits(
                [self._sharpen_prompt_ids[i] for i in chunk], [completion_ids[i] for i in chunk]
            )
            r = Rollouts(
                logits=logits, tokens=tokens, mask=mask, temperature=float(self.temperature)
            )
            from sharpen.rewards import score

            values = score(spec, r, log_space=log_space).detach().cpu().double().tolist()
            for i, v in zip(chunk, values, strict=True):
                out[i] = float(v)
        return out

    def score_certainty(
        self, reward: CertaintyReward, completion_ids: Sequence[Sequence[int]]
    ) -> list:
        """Values of ``reward`` for the last generated batch (None for an empty completion)."""
        return self._certainty_values(reward.spec, completion_ids, reward.log_space)

    def score_certainty_log(self, completion_ids: Sequence[Sequence[int]]) -> list:
        """:math:`\\log\\pi(y\\mid x)` of the last generated batch (probability reward's log-space value)."""
        return self._certainty_values(PRESETS["probability"], completion_ids, True)


# ----------------------------------------------------------------------------------------------------------------
# The callback: sharpen run records from a TRL run
# ----------------------------------------------------------------------------------------------------------------

# TRL's log names -> sharpen.records.METRICS (TRL's "kl" is to its reference model: the initial policy)
_RENAMES = {"completions/mean_length": "response_length", "learning_rate": "lr", "kl": KL}
# the header fields TRL's arguments set: field -> GRPOConfig argument
_HEADER_ARGS = {
    "lr": "learning_rate",
    "n_rollouts": "num_generations",
    "clip_eps": "epsilon",
    "seed": "seed",
    "epochs": "num_iterations",
    "optimizer": "optim",
    "kl_coef": "beta",
}
_SKIP = {
    "epoch",
    "total_flos",
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "train_loss",
}


class SharpenRunCallback(TrainerCallback):
    """Writes sharpen's run folder from a TRL (or any HF ``Trainer``) run.

    Files: ``config.json`` (its :class:`~sharpen.records.RunHeader`: ``kind: "trl"``, lr, N, clip, seed, steps,
    model and the trainer's other settings, with ``reward`` / ``task`` from ``config``; beside it the trainer
    arguments and ``config``), ``env.json``, ``metrics.jsonl`` (every numeric log entry at its global step,
    ``completions/mean_length`` also as ``response_length``, ``kl`` also as ``kl_to_initial``, TRL's ``reward``
    as ``majority_voting_reward`` where no sharpen reward logged it), ``eval.jsonl`` (``eval_*`` logs; the
    chosen reward's ``ground_truth_ratio`` on the eval set is also the held-out ``accuracy``) and
    ``probes.jsonl``: every ``probe_every`` steps (and at step 0 and the last step) ``probe_samples``
    completions of each probe question are sampled from the current policy and summarised by
    :func:`sharpen.integrations.records.probe_records`.

    **Metric names.** The sharpen rewards log :data:`REWARD_METRICS` as ``<reward name>/<metric>``; these are
    written as they are, and each bare name (``reward_accuracy``, ``label_accuracy``, ... -- what ``sharpen fit``
    reads) is written as the value of **one** reward: the first of ``metric_rewards`` that logged it this step,
    else (with a one-time warning if several did) the alphabetically first reward that did. Never an average of
    several rewards' values.

    **Resuming.** When training begins at ``state.global_step = k > 0`` (``resume_from_checkpoint``), records
    after step k are dropped and the initial majorities are reloaded from ``probes.jsonl``
    (:func:`sharpen.integrations.records.resume_run`: an interrupted run may have logged past its last
    checkpoint), and the steps already probed are not probed again. With the same seed the probe trajectories
    then equal an uninterrupted run's (probes are seeded by step).

    Parameters
    ----------
    run_dir : folder to write
    probes : questions with ``qid``, ``prompt``, ``label`` attributes (``empirical.tasks.Question`` fits)
    parse : text -> answer or None, for the probes (default :func:`default_parse`)
    probe_every, probe_samples, probe_max_new_tokens : probe schedule and size
    probe_temperature : sampling temperature of the probes (default: the trainer's ``temperature``)
    seed : probes are sampled under ``torch.random.fork_rng`` seeded with ``seed`` and the step, so they neither
        consume nor depend on the trainer's random stream
    config : extra entries for ``config.json`` (e.g. the reward name, the task); those named like
        :class:`~sharpen.records.RunHeader` fields (``reward``, ``task``, ``n_questions``, ...) also fill the
        header where the trainer's arguments do not
    metric_rewards : reward names, in priority order, whose metrics become the bare names (default
        ``("majority_voting",)``; e.g. ``("self_verification",)`` for a self-verification run with a
        ground-truth monitor)
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        probes: Sequence[Any] = (),
        parse: Callable[[str], Hashable | None] | None = None,
        probe_every: int = 10,
        probe_samples: int = 16,
        probe_max_new_tokens: int = 16,
        probe_temperature: float | None = None,
        seed: int = 0,
        config: Mapping[str, Any] | None = None,
        metric_rewards: Sequence[str] = ("majority_voting",),
    ) -> None:
        if isinstance(metric_rewards, str) or not all(isinstance(r, str) for r in metric_rewards):
            raise ValueError(
                f"metric_rewards: must be a sequence of reward names, got {metric_rewards!r}"
            )
        for name, value in (("probe_every", probe_every), ("probe_samples", probe_samples),
                            ("probe_max_new_tokens", probe_max_new_tokens)):  # fmt: skip
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an int >= 1, got {value!r}")
        if probe_temperature is not None and not probe_temperature > 0:
            raise ValueError(f"probe_temperature: must be > 0, got {probe_temperature!r}")
        for i, q in enumerate(probes):
            if not all(hasattr(q, a) for a in ("qid", "prompt", "label")):
                raise ValueError(f"probes: item {i} needs qid, prompt and label attributes")
        self.writer = RunWriter(run_dir)
        self.probes = list(probes)
        self.parse = parse or default_parse
        self.probe_every = probe_every
        self.probe_samples = probe_samples
        self.probe_max_new_tokens = probe_max_new_tokens
        self.probe_temperature = probe_temperature
        self.seed = int(seed)
        self.config = dict(config or {})
        self.metric_rewards = tuple(metric_rewards)
        self._initial: dict[str, str | None] = {}
        self._probed: set[int] = set()
        self._warned_ambiguous: set[str] = set()

    # -- events ------------------------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):  # noqa: ANN001
        trainer_args = {
            k: v
            for k, v in args.to_dict().items()
            if isinstance(v, (int, float, str, bool, type(None)))
        }
        from_args = {f: trainer_args.get(a) for f, a in _HEADER_ARGS.items()}
        name = getattr(model, "name_or_path", None) or None
        header = RunHeader.from_fields(
            "trl", {**self.config, **from_args, "steps": state.max_steps or None, "model": name}
        )
        extra = {k: v for k, v in self.config.items() if k not in ("kind", "header")}
        self.writer.write_config(header, {"trainer": trainer_args, **extra})
        self.writer.write_json("env.json", environment_info())
        if state.global_step > 0:
            self._resume(int(state.global_step), state)
        self._probe(state.global_step, args, model, processing_class)

    def _resume(self, step: int, state: Any) -> None:
        """Make the run folder what it was at checkpoint ``step`` and restore the probes' state from it."""
        if not state.is_world_process_zero:
            return  # only process 0 writes records and probes
        resumed = resume_run(self.writer, step)  # rows after the checkpoint dropped, maj_0 reloaded
        self._initial = {**resumed.initial, **self._initial}
        # the checkpoint's own step counts as probed: an uninterrupted run probed it (or not) before saving
        self._probed |= resumed.probed | {step}
        missing = [q.qid for q in self.probes if str(q.qid) not in self._initial]
        if self.probes and missing:
            warnings.warn(
                f"SharpenRunCallback: resuming at step {step} but {self.writer.run_dir / PROBES_FILE} has no "
                f"initial majority for {len(missing)} probe question(s) (e.g. {missing[:3]}); their next probe "
                "becomes their initial majority, so their trajectories start late",
                stacklevel=2,
            )

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):  # noqa: ANN001
        if state.global_step % self.probe_every == 0:
            self._probe(state.global_step, args, model, processing_class)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):  # noqa: ANN001
        self._probe(state.global_step, args, model, processing_class)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not logs or not state.is_world_process_zero:
            return
        numeric = {
            k: float(v)
            for k, v in logs.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        evals = {k[len("eval_") :]: v for k, v in numeric.items() if k.startswith("eval_")}
        train = {k: v for k, v in numeric.items() if not k.startswith("eval_") and k not in _SKIP}
        for old, new in _RENAMES.items():
            if old in train:
                train[new] = train[old]
        train.update(self._bare_metrics(train))
        if "reward" in train:  # TRL's mean training reward, where no sharpen reward logged its own
            train.setdefault(MAJORITY_REWARD, train["reward"])
        evals.update(self._bare_metrics(evals))
        if GROUND_TRUTH_RATIO in evals:  # the eval samples' share correct: held-out accuracy
            evals.setdefault(HELDOUT_ACCURACY, evals[GROUND_TRUTH_RATIO])
        if evals:
            self.writer.log_eval(state.global_step, "eval", evals)
        if train:
            self.writer.log_metrics(state.global_step, train)

    def _bare_metrics(self, logs: Mapping[str, float]) -> dict[str, float]:
        """``{metric: value}`` for each :data:`REWARD_METRICS` name, from one reward (see the class docstring)."""
        by_metric: dict[str, dict[str, float]] = {}
        for key, value in logs.items():
            m = _REWARD_METRIC.match(key)
            if m is not None:
                by_metric.setdefault(m["metric"], {})[m["reward"]] = value
        out = {}
        for metric, values in by_metric.items():
            chosen = next((r for r in self.metric_rewards if r in values), None)
            if chosen is None:
                chosen = min(values)
                if len(values) > 1 and metric not in self._warned_ambiguous:
                    self._warned_ambiguous.add(metric)
                    warnings.warn(
                        f"SharpenRunCallback: rewards {sorted(values)} all log {metric!r} and none is in "
                        f"metric_rewards={self.metric_rewards}; metrics.jsonl's bare {metric!r} is {chosen!r}'s "
                        "(pass metric_rewards to choose)",
                        stacklevel=2,
                    )
            out[metric] = values[chosen]
        return out

    # -- probes ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _probe(self, step: int, args: Any, model: Any, tokenizer: Any) -> None:
        if not self.probes or step in self._probed or model is None or tokenizer is None:
            return
        if hasattr(args, "process_index") and args.process_index != 0:
            return
        self._probed.add(step)
        temperature = self.probe_temperature or float(getattr(args, "temperature", 1.0))
        texts = [_prompt_text(q, tokenizer) for q in self.probes]
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        side = getattr(tokenizer, "padding_side", "left")
        tokenizer.padding_side = "left"
        try:
            enc = tokenizer(texts, return_tensors="pt", padding=True).to(device)
            with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
                torch.manual_seed(self.seed * 1_000_003 + step)
                out = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=temperature,
                    top_p=1.0,
                    top_k=0,
                    max_new_tokens=self.probe_max_new_tokens,
                    num_return_sequences=self.probe_samples,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
        finally:
            tokenizer.padding_side = side
            model.train(was_training)
        completions = tokenizer.batch_decode(
            out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        qids = [q.qid for q in self.probes for _ in range(self.probe_samples)]
        labels = [q.label for q in self.probes for _ in range(self.probe_samples)]
        answers = [self.parse(c) for c in completions]
        records, self._initial = probe_records(
            int(step), qids, answers, labels, initial=self._initial
        )
        self.writer.log_probes(records)


def _prompt_text(question: Any, tokenizer: Any) -> str:
    if getattr(question, "chat", False) and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": question.prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(question.prompt)


def certainty_metrics(
    proxy: Sequence[float], correct: Sequence[float], groups: Sequence[Hashable]
) -> dict:
    """Batch metrics of a continuous proxy reward: ``pseudo_label_acc`` and ``point_biserial`` (None dropped)."""
    out = {"pseudo_label_acc": pseudo_label_acc(proxy, correct, groups)}
    r = point_biserial(proxy, correct)
    if r is not None:
        out["point_biserial"] = r
    return out
