r"""sharpen inside veRL: scoring, pseudo-label injection, data, the paper's recipe and run export.

Everything here is plain Python (numpy/torch, pandas for parquet) and runs **without** veRL; the thin trainer hook
that calls it inside veRL's loop is :mod:`sharpen.integrations.verl_trainer` (pinned to :data:`SUPPORTED_VERL`).

* :func:`compute_score` -- veRL's custom reward function: ``{"score", "acc", "pred", "gt_score", "label_correct"}``;
  the answer is extracted the way ``data_source`` asks for (:func:`answer_style_for`, :func:`extract_for_source`).
* :func:`inject_pseudo_labels` -- majority voting at scale, TTRL's way: vote per prompt ``uid`` right after
  generation, write the winner as the label, keep the true label for measurement. Over plain arrays.
* :func:`certainty_from_actor` -- token entropy, trajectory entropy and probability from the actor's old-log-prob
  pass (per-token log-probs and entropies); self-certainty needs full logits, which veRL's actor does not return.
* :func:`to_verl_rows` / :func:`write_verl_parquet` -- any questions (``qid``, ``prompt``, ``label``) in veRL's
  parquet schema with stable prompt ids (``extra_info.question_id``); :class:`QuestionKeys` -- the stable id of
  each rollout's question in any veRL parquet (``question_id``, else DAPO's ``extra_info.index``, else a hash of the
  prompt), never veRL's per-step ``uid`` without a loud warning.
* :class:`VerlRecipe` -- the paper's setting (Qwen3-1.7B-Base, DAPO-Math-17k, GRPO, 64 prompts x 8 rollouts,
  temperature 1.0, lr 1e-6, no KL, vLLM rollouts) as one typed config; :meth:`VerlRecipe.overrides` gives veRL's
  Hydra overrides and :func:`write_recipe` the launch scripts (one node of 8 GPUs, and a multi-node Ray variant).
* :func:`export_verl_run` -- a veRL file-logger JSONL to sharpen's run folder (``sharpen fit`` reads it).

Example
-------
>>> compute_score("math_dapo", "... so the total is 12.\nAnswer: 12", "12")["score"]
1.0
>>> compute_score("openai/gsm8k", "She has 6 + 6 = 12 apples.\n#### 12", "12")["score"]
1.0
>>> pl = inject_pseudo_labels(["4", "4", "5", "7", None, "7"], ["u1"] * 3 + ["u2"] * 3, ["5"] * 3 + ["7"] * 3)
>>> pl.labels, pl.rewards.tolist()
(['4', '4', '4', '7', '7', '7'], [1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import sys
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sharpen._cli import CommandParser, add_dataclass_options, dispatch, given_options
from sharpen.answers import (
    MAX_SEARCH_CHARS,
    canonicalize,
    equivalent,
    extract_answer,
    extract_answer_phrase,
)
from sharpen.metrics import exact_match, ttrl_metrics
from sharpen.records import (
    CONFIG_FILE,
    HELDOUT_ACCURACY,
    KL,
    MAJORITY_REWARD,
    RunHeader,
    RunWriter,
    environment_info,
    read_jsonl,
)
from sharpen.rewards import (
    Rollouts,
    aggregate_cross_entropies,
    available_rewards,
    get_reward,
    reward_info,
)

__all__ = [
    "ANSWER_STYLES",
    "DATA_SOURCE_STYLES",
    "NO_LABEL",
    "QUESTION_ID_FIELDS",
    "SUPPORTED_VERL",
    "VERL_COLUMNS",
    "VERL_LOGGERS",
    "ProbeSet",
    "PseudoLabels",
    "QuestionKeys",
    "VerlRecipe",
    "answer_style_for",
    "actor_rewards",
    "certainty_from_actor",
    "check_recipe_data",
    "compute_score",
    "export_verl_run",
    "extract_for_source",
    "hydra_header",
    "extract_gsm8k",
    "inject_pseudo_labels",
    "read_verl_parquet",
    "recipe_header",
    "register",
    "text_id",
    "to_verl_rows",
    "verl_data_summary",
    "verl_rewards",
    "verl_version",
    "write_recipe",
    "write_verl_parquet",
]

SUPPORTED_VERL = "0.9.1"
"""The veRL release the trainer hook and the recipe's override keys are written and tested against."""

NO_LABEL = "<no-majority>"
"""Pseudo-label written when no rollout of a group parses: :func:`compute_score` scores it 0 for every response."""


def verl_version() -> str | None:
    """Installed veRL version, or None."""
    try:
        return metadata.version("verl")
    except metadata.PackageNotFoundError:
        return None


_installed = verl_version()
if (
    _installed is not None and _installed != SUPPORTED_VERL
):  # pragma: no cover - depends on the environment
    warnings.warn(
        f"sharpen.integrations.verl targets veRL {SUPPORTED_VERL}, found {_installed}: compute_score and the data "
        "functions do not depend on it, but the trainer hook refuses other versions",
        stacklevel=2,
    )


# ----------------------------------------------------------------------------------------------------------------
# compute_score: veRL's custom reward function
# ----------------------------------------------------------------------------------------------------------------


SourceStyle = Literal["auto", "boxed", "answer_line", "gsm8k"]

DATA_SOURCE_STYLES: Mapping[str, SourceStyle] = {
    # DAPO-Math-17k asks for a last line "Answer: $Answer"; veRL's math_dapo scorer reads only that line
    "math_dapo": "answer_line",
    "math_dapo_reasoning": "answer_line",
    # GSM8K's reference solutions end in "#### <answer>"; CoT prompts end in "The answer is <answer>."
    "openai/gsm8k": "gsm8k",
    "gsm8k": "gsm8k",
    # MATH: the answer is the last \boxed{} (veRL's math_reward scorer)
    "lighteval/MATH": "boxed",
    "DigitalLearningGmbH/MATH-lighteval": "boxed",
    "HuggingFaceH4/MATH-500": "boxed",
    # any math source: the math scorer (box, else Answer: label, else "the answer is" phrase)
    "math": "auto",
}
"""Answer style of each ``data_source`` sharpen knows (exact names, as veRL's ``default_compute_score`` spells them).

Sources starting with ``aime`` are matched by prefix (:func:`answer_style_for`); any other source is ``"auto"``,
and :func:`compute_score` warns once per such source."""


def answer_style_for(data_source: str) -> SourceStyle:
    r"""How responses of ``data_source`` give their final answer.

    ``"answer_line"`` (``math_dapo``): the last ``Answer:`` label; ``"gsm8k"``: :func:`extract_gsm8k`;
    ``"boxed"`` (MATH): the last ``\boxed{}``; ``"auto"`` (the math scorer, ``math``): the last ``\boxed{}``, else
    the last ``Answer:`` label, else the last "answer is" phrase (:func:`sharpen.answers.extract_answer`).
    AIME sources (``aime*``) are ``"auto"``: AIME prompts ask for ``\boxed{}`` in most sets, but veRL routes
    ``aime*`` to its DAPO scorer because DAPO's AIME sets ask for ``Answer:``; ``"auto"`` reads both, boxed first.
    Unknown sources are ``"auto"`` too (:func:`compute_score` warns once per unknown source).

    >>> answer_style_for("math_dapo"), answer_style_for("openai/gsm8k"), answer_style_for("aime24")
    ('answer_line', 'gsm8k', 'auto')
    """
    if not isinstance(data_source, str):
        raise ValueError(f"data_source: expected a str, got {type(data_source).__name__}")
    return DATA_SOURCE_STYLES.get(data_source, "auto")


_GSM8K_HASHES = re.compile(r"####[^\S\n]*(.*)$", re.MULTILINE)


def extract_gsm8k(text: str) -> str | None:
    r"""GSM8K's final answer: the last ``#### <answer>`` line, else the last "The answer is <answer>"
    (:func:`sharpen.answers.extract_answer_phrase`), else :func:`sharpen.answers.extract_answer` (boxed, then
    ``Answer:``); None if absent.

    The value is the rest of the line, cut at the first sentence end (". "), ``$`` stripped; canonicalise it
    with :func:`sharpen.answers.canonicalize` (``"42."`` -> ``"42"``, ``"1,234"`` -> ``"1234"``). Only the
    last :data:`sharpen.answers.MAX_SEARCH_CHARS` characters are searched, in linear time.

    >>> extract_gsm8k("6 * 7 = 42\n#### 42"), extract_gsm8k("So the answer is 42. Done."), extract_gsm8k("no")
    ('42', '42', None)
    """
    if not isinstance(text, str):
        raise ValueError(f"text: expected a str, got {type(text).__name__}")
    start = max(0, len(text) - MAX_SEARCH_CHARS)
    for m in reversed(list(_GSM8K_HASHES.finditer(text, start))):
        value = m.group(1).split(". ")[0].strip().strip("$").strip()
        if value:
            return value
    phrase = extract_answer_phrase(text)
    return phrase if phrase is not None else extract_answer(text)


def extract_for_source(text: str, data_source: str, style: str | None = None) -> str | None:
    r"""The raw final answer of a response from ``data_source`` (``style``, when given, overrides the dispatch).

    >>> extract_for_source("x\nAnswer: 3", "math_dapo"), extract_for_source("#### 3", "openai/gsm8k")
    ('3', '3')
    """
    style = answer_style_for(data_source) if style is None else style
    if style == "gsm8k":
        return extract_gsm8k(text)
    return extract_answer(text, style=style)


_warned_sources: set[str] = set()


def _warn_if_unknown(data_source: object) -> None:
    """Warn once per process for each ``data_source`` the dispatch does not know."""
    if not isinstance(data_source, str) or data_source in _warned_sources:
        return  # a non-str raises in answer_style_for
    if data_source in DATA_SOURCE_STYLES or data_source.startswith("aime"):
        return
    _warned_sources.add(data_source)
    warnings.warn(
        f"compute_score: data_source {data_source!r} is not one sharpen knows "
        f"({', '.join(DATA_SOURCE_STYLES)}, aime*); its responses are graded with the math scorer (the last "
        "box, else the last Answer: label, else the last 'answer is' phrase); pass answer_style in "
        "reward_kwargs to choose another",
        UserWarning,
        stacklevel=3,
    )


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    r"""veRL custom reward: grade one response against its (possibly pseudo-) label.

    Set with ``reward.custom_reward_function.path=<this file>`` and ``...name=compute_score``. The answer is
    extracted the way ``data_source`` asks for (:func:`answer_style_for`): ``math_dapo`` -> the last ``Answer:``
    label; ``openai/gsm8k`` / ``gsm8k`` -> ``#### 42`` or "The answer is 42." (:func:`extract_gsm8k`); MATH
    sources -> the last ``\boxed{}``; ``aime*``, ``math`` and unknown sources -> the math scorer: the last
    ``\boxed{}``, else the last ``Answer:`` label, else the last "answer is" phrase. An unknown source gets one
    warning (per process), naming it and the scorer used. The answer is compared with
    :func:`sharpen.answers.equivalent` (canonical strings; Math-Verify fallback with ``math_verify=True``).

    Parameters
    ----------
    data_source : str
        veRL's ``data_source`` column; selects the answer extraction (see above).
    solution_str : str
        The decoded response.
    ground_truth : str or int
        The label veRL passes (``reward_model.ground_truth``): the true answer, or the majority answer after
        :func:`inject_pseudo_labels` (:data:`NO_LABEL` scores 0).
    extra_info : dict, optional
        If it holds ``original_gt`` (written by the pseudo-label hook) the response is also graded against it.
    **kwargs
        ``answer_style`` (``"auto"``, ``"boxed"``, ``"answer_line"``, ``"gsm8k"``; given, it overrides the
        ``data_source`` dispatch for every source) and ``math_verify`` (bool), e.g. from
        ``reward.custom_reward_function.reward_kwargs``; other keys veRL passes are ignored.

    Returns
    -------
    dict
        ``score`` (1.0/0.0, the training reward), ``acc`` (bool, same), ``pred`` (the extracted answer, ``""`` if
        unparseable; veRL's ``maj@N`` validation metrics vote on it), ``gt_score`` (1.0/0.0 against the true label:
        ``original_gt`` if present, else ``ground_truth``) and ``label_correct`` (1.0 if the label graded against is
        the true one, i.e. the pseudo-label was right; 1.0 when no pseudo-label was injected). The same keys on
        every call, as veRL's ``reward_extra_info`` requires.
    """
    if not isinstance(solution_str, str):
        raise ValueError(f"solution_str: expected a str, got {type(solution_str).__name__}")
    if ground_truth is None:
        raise ValueError("ground_truth: is None; veRL's reward_model.ground_truth must be set")
    style = kwargs.get("answer_style")
    if style is not None and style not in ("auto", "boxed", "answer_line", "gsm8k"):
        raise ValueError(
            f"answer_style: must be 'auto', 'boxed', 'answer_line' or 'gsm8k', got {style!r}"
        )
    math_verify = bool(kwargs.get("math_verify", False))
    if style is None:
        _warn_if_unknown(data_source)
    pred = extract_for_source(solution_str, data_source, style)
    label = str(ground_truth)
    score = 0.0 if label == NO_LABEL else float(equivalent(label, pred, math_verify=math_verify))
    original = None if extra_info is None else extra_info.get("original_gt")
    if original is None:
        gt_score, label_correct = score, 1.0
    else:
        gt_score = float(equivalent(str(original), pred, math_verify=math_verify))
        label_correct = (
            0.0
            if label == NO_LABEL
            else float(equivalent(str(original), label, math_verify=math_verify))
        )
    return {
        "score": score,
        "acc": bool(score),
        "pred": "" if pred is None else (canonicalize(pred) or ""),
        "gt_score": gt_score,
        "label_correct": label_correct,
    }


# ----------------------------------------------------------------------------------------------------------------
# Pseudo-label injection (majority voting at scale)
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PseudoLabels:
    """Result of :func:`inject_pseudo_labels` for a batch of B rollouts.

    Attributes
    ----------
    labels : list of B str
        The majority answer of each rollout's group (canonical string), :data:`NO_LABEL` if nothing parsed.
    original : list of B
        The true labels, unchanged (measurement only).
    rewards : (B,) float64
        The majority-voting reward :math:`\\mathbb 1[\\mathrm{ans}(y)=\\mathrm{maj}(Y)]`
        (``sharpen.rewards.get_reward("majority_voting")``).
    correct : (B,) float64
        Ground-truth correctness of each rollout (against ``original``).
    metrics : dict
        TTRL's metrics of the batch (``label_accuracy``, ``majority_ratio``, ``ground_truth_ratio``,
        ``pass@N``, ``majority_voting_reward``, ``reward_accuracy``), averaged over prompts.
    """

    labels: list[str]
    original: list[Any]
    rewards: np.ndarray
    correct: np.ndarray
    metrics: dict[str, float]


def inject_pseudo_labels(
    answers: Sequence[Hashable | None],
    uids: Sequence[Hashable],
    ground_truths: Sequence[Any],
    *,
    math_verify: bool = False,
) -> PseudoLabels:
    r"""Vote per prompt ``uid`` and return the winners as labels (TTRL's pseudo-label injection).

    Call it right after generation, before veRL's ``_balance_batch`` reorders the batch (the hook in
    :mod:`sharpen.integrations.verl_trainer` does). Each group's winner is the plurality of its parsed answers
    (TTRL's rule: unparseable answers do not vote, ties go to the first seen); the reward is
    :math:`\mathbb 1[\mathrm{ans}(y)=\mathrm{maj}(Y)]`, exactly ``get_reward("majority_voting")``.

    Parameters
    ----------
    answers : (B,) extracted answers, None = unparseable
    uids : (B,) prompt id of each rollout (veRL's ``non_tensor_batch["uid"]``); every group the same size N
    ground_truths : (B,) true label of each rollout's prompt
    math_verify : grade correctness with Math-Verify's fallback

    Returns
    -------
    PseudoLabels
    """
    answers = list(answers)
    uids = list(uids.tolist() if hasattr(uids, "tolist") else uids)
    truths = list(ground_truths.tolist() if hasattr(ground_truths, "tolist") else ground_truths)
    if not answers:
        raise ValueError("answers: empty batch")
    if not (len(answers) == len(uids) == len(truths)):
        raise ValueError(
            f"answers, uids, ground_truths: lengths differ ({len(answers)}, {len(uids)}, {len(truths)})"
        )
    keys = [
        canonicalize(a) if isinstance(a, str) else (None if a is None else str(a)) for a in answers
    ]
    rollouts = Rollouts(answers=keys, groups=uids)
    rewards = np.asarray(get_reward("majority_voting")(rollouts), dtype=np.float64)
    labels: list[str] = []
    winners: dict[Hashable, str] = {}
    for i, uid in enumerate(uids):
        if uid not in winners:
            winners[uid] = NO_LABEL
        if rewards[i] == 1.0 and winners[uid] == NO_LABEL:
            winners[uid] = keys[i]
    labels = [winners[u] for u in uids]
    texts = [None if t is None else str(t) for t in truths]
    correct = np.array(
        [float(equivalent(t, k, math_verify=math_verify)) for t, k in zip(texts, keys, strict=True)]
    )

    def same(gold: Any, pred: Any) -> bool:
        return (
            equivalent(gold, pred, math_verify=math_verify)
            if math_verify
            else exact_match(gold, pred)
        )

    metrics = ttrl_metrics(
        keys, texts, uids, proxy_rewards=rewards, correct=correct, equivalent=same
    )
    return PseudoLabels(
        labels=labels, original=truths, rewards=rewards, correct=correct, metrics=metrics
    )


# ----------------------------------------------------------------------------------------------------------------
# Certainty rewards from the actor's old-log-prob pass
# ----------------------------------------------------------------------------------------------------------------


def actor_rewards() -> tuple[str, ...]:
    """The registered rewards :func:`certainty_from_actor` scores: those whose spec reads only the sampled
    tokens' log-probabilities (anchor ``sampled``) or the token entropies (anchor ``policy``)."""
    specs = {name: reward_info(name).spec for name in available_rewards(level="token")}
    return tuple(n for n, s in specs.items() if s is not None and s.anchor in ("sampled", "policy"))


def _full_logits_hint(name: object) -> str:
    """Why a token-level reward the actor pass cannot score is refused ("" for any other name)."""
    token_level = isinstance(name, str) and name in available_rewards(level="token")
    return " (it needs the full logits: use the TRL integration)" if token_level else ""


def certainty_from_actor(
    name: str,
    log_probs: Any,
    entropies: Any,
    mask: Any,
    *,
    aggregate: Literal["mean", "sum"] | None = None,
    log_space: bool = False,
) -> np.ndarray:
    r"""A certainty reward from veRL's old-log-prob pass (per-token quantities, not full logits).

    veRL's actor returns :math:`\log\pi^t(y_t)` (``old_log_probs``) and :math:`H(\pi^t)` (``entropys``), both from
    temperature-scaled logits. These are the per-token cross-entropies of two presets of
    :mod:`sharpen.rewards`: :math:`\mathbb H(\delta_{y_t},\pi^t)=-\log\pi^t(y_t)` (anchor ``sampled``) and
    :math:`\mathbb H(\pi^t,\pi^t)=H(\pi^t)` (anchor ``policy``); the reward is the preset's
    :math:`\psi(\frac{\sigma}{|\mathcal I|}\sum_t\mathbb H_t)` over valid tokens, as in :func:`sharpen.rewards.score`.
    Self-certainty (anchor ``uniform``) needs :math:`\mathrm{LSE}(z)-\bar z`, which veRL does not return.

    Parameters
    ----------
    name : one of :func:`actor_rewards` (``token_entropy``, ``trajectory_entropy``, ``probability``, ...)
    log_probs, entropies : (B, T) arrays or tensors (``entropies`` may be None unless ``token_entropy``)
    mask : (B, T) 0/1 response mask; every row needs a valid token
    aggregate : override the preset's ``"mean"``/``"sum"`` over tokens
    log_space : return the value before ``exp`` (probability: :math:`\log\pi(y\mid x)`)

    Returns
    -------
    (B,) float64 numpy array

    >>> lp = np.log(np.array([[0.5, 0.5, 1.0]])); m = np.array([[1, 1, 0]])
    >>> float(certainty_from_actor("probability", lp, None, m)[0])
    0.25
    """
    if name not in actor_rewards():
        raise ValueError(
            f"name: the veRL actor pass supports {actor_rewards()}, got {name!r}{_full_logits_hint(name)}"
        )
    preset = reward_info(name).spec
    spec = preset if aggregate is None else dataclasses.replace(preset, aggregate=aggregate)
    source = entropies if spec.anchor == "policy" else log_probs
    arg = "entropies" if spec.anchor == "policy" else "log_probs"
    if source is None:
        raise ValueError(f"{arg}: {name} needs it")
    x = _as_float64(source, arg)
    h = x if spec.anchor == "policy" else -x  # per-token cross-entropy H(q_t, pi^t)
    return aggregate_cross_entropies(spec, h, _as_float64(mask, "mask"), log_space=log_space)


def _as_float64(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN")
    return arr


# ----------------------------------------------------------------------------------------------------------------
# Data: questions -> veRL parquet
# ----------------------------------------------------------------------------------------------------------------


def to_verl_rows(
    questions: Iterable[Any],
    *,
    data_source: str,
    split: str = "train",
    ability: str = "MATH",
    uid: bool = False,
) -> list[dict[str, Any]]:
    """Questions in veRL's RL-dataset schema (the DAPO-Math-17k layout), one row each.

    Parameters
    ----------
    questions : iterable of objects with ``qid``, ``prompt`` and ``label`` attributes (e.g.
        ``empirical.tasks.Question``; ``meta`` is kept as JSON when present)
    data_source : veRL's ``data_source`` (``"math_dapo"`` for DAPO, ``"sharpen/arith"`` ...)
    split : recorded in ``extra_info.split``
    ability : veRL's ``ability`` column
    uid : also write the question id as a top-level ``uid`` column. veRL's validation pass keeps a dataset's
        ``uid`` (it draws a random one only when the column is absent) and groups samples by it, so a probe set
        validated on a schedule keeps its question ids across passes (:class:`ProbeSet`); training batches get
        a fresh ``uid`` every step whatever the file holds, so the column is harmless there.

    Returns
    -------
    list of dict with ``data_source``, ``prompt`` (one user message), ``ability``,
    ``reward_model = {"style": "rule", "ground_truth": label}`` and
    ``extra_info = {"index", "question_id", "split", "meta_json"}`` (and ``uid`` when asked). ``question_id`` is
    the stable prompt id that the trainer hook writes into sharpen's per-question records (veRL's own ``uid`` is
    random per step); :func:`text_id` makes one from the question's text.

    >>> from types import SimpleNamespace as Q
    >>> row = to_verl_rows([Q(qid="3+4", prompt="3+4=", label="7")], data_source="sharpen/arith")[0]
    >>> row["prompt"], row["reward_model"], row["extra_info"]["question_id"]
    ([{'role': 'user', 'content': '3+4='}], {'style': 'rule', 'ground_truth': '7'}, '3+4')
    """
    if not isinstance(data_source, str) or not data_source:
        raise ValueError(f"data_source: must be a non-empty str, got {data_source!r}")
    rows, seen = [], set()
    for index, q in enumerate(questions):
        for attr in ("qid", "prompt", "label"):
            if not hasattr(q, attr):
                raise ValueError(f"questions: item {index} has no {attr!r} attribute")
        qid = str(q.qid)
        if qid in seen:
            raise ValueError(
                f"questions: duplicate question id {qid!r} (prompt ids must be unique)"
            )
        seen.add(qid)
        if q.label is None:
            raise ValueError(
                f"questions: question {qid!r} has no label (veRL needs reward_model.ground_truth)"
            )
        meta = dict(getattr(q, "meta", ()) or ())
        row = {
            "data_source": data_source,
            "prompt": [{"role": "user", "content": str(q.prompt)}],
            "ability": ability,
            "reward_model": {"style": "rule", "ground_truth": str(q.label)},
            "extra_info": {
                "index": index,
                "question_id": qid,
                "split": split,
                "meta_json": json.dumps(meta, sort_keys=True, default=list),
            },
        }
        if uid:
            row["uid"] = qid
        rows.append(row)
    if not rows:
        raise ValueError("questions: empty")
    return rows


def text_id(text: str) -> str:
    """A stable id of a text: the first 16 hex digits of its SHA-1 (UTF-8) -- the same text gives the same id on
    every machine, in every file order.

    >>> text_id("What is 2+2?")
    '59b26167b6810d7b'
    """
    if not isinstance(text, str):
        raise ValueError(f"text: expected a str, got {type(text).__name__}")
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


QUESTION_ID_FIELDS: tuple[str, ...] = ("question_id", "index")
"""``extra_info`` fields that identify a question across steps, in the order :class:`QuestionKeys` tries them:
``question_id`` (written by :func:`to_verl_rows`), ``index`` (DAPO-Math-17k's parquet)."""


class QuestionKeys:
    """The stable id of each rollout's question, for sharpen's per-question records in a veRL run.

    veRL's ``uid`` is drawn afresh for every prompt at every step, so records keyed on it never form a
    trajectory (``sharpen fit`` then calls every question "insufficient"). Per row the id is the first of:

    1. ``extra_info[f]`` for ``f`` in :data:`QUESTION_ID_FIELDS`, as ``str`` (``index`` must identify the prompt:
       DAPO-Math-17k's duplicated rows repeat it);
    2. ``"prompt:" + sha1(prompt text)[:16]`` when ``prompts`` are given -- stable, but two rows with the same
       prompt text are one question;
    3. veRL's ``uid`` -- not stable.

    The first time (per instance) rows fall back to 2 or to 3, a ``UserWarning`` names the fields tried.

    Parameters
    ----------
    (call) extra_infos : (B,) mappings (veRL's ``non_tensor_batch["extra_info"]``; ``None`` entries allowed)
    (call) prompts : (B,) prompt texts, or a zero-argument callable returning them (called only if some row has
        no id field), or None
    (call) uids : (B,) veRL's ``uid``, the last resort

    >>> keys = QuestionKeys()
    >>> keys([{"question_id": "q7"}, {"index": 12}], uids=["u1", "u2"])
    ['q7', '12']
    """

    def __init__(self) -> None:
        self._warned: set[str] = set()

    def __call__(
        self,
        extra_infos: Sequence[Mapping[str, Any] | None],
        prompts: Sequence[str] | Callable[[], Sequence[str]] | None = None,
        uids: Sequence[Hashable] | None = None,
    ) -> list[str]:
        infos = [dict(i) if isinstance(i, Mapping) else {} for i in extra_infos]
        if uids is not None and len(uids) != len(infos):
            raise ValueError(f"uids: expected {len(infos)} values, got {len(uids)}")
        ids = [
            next((str(info[f]) for f in QUESTION_ID_FIELDS if info.get(f) is not None), None)
            for info in infos
        ]
        missing = [i for i, v in enumerate(ids) if v is None]
        if not missing:
            return ids  # type: ignore[return-value] - no None left
        tried = ", ".join(f"extra_info.{f}" for f in QUESTION_ID_FIELDS)
        texts = prompts() if callable(prompts) else prompts
        if texts is not None:
            if len(texts) != len(infos):
                raise ValueError(f"prompts: expected {len(infos)} values, got {len(texts)}")
            for i in missing:
                ids[i] = "prompt:" + text_id(str(texts[i]))
            self._warn(
                "prompt",
                f"{len(missing)} of {len(infos)} rollouts have none of {tried}: sharpen keys their per-question "
                "records on a hash of the prompt text (identical prompts become one question). Write stable ids "
                "with sharpen.integrations.verl.to_verl_rows.",
            )
        elif uids is not None:
            for i in missing:
                ids[i] = str(uids[i])
            self._warn(
                "uid",
                f"NO STABLE QUESTION ID: {len(missing)} of {len(infos)} rollouts have none of {tried} and no "
                "prompt text was given, so sharpen keys its per-question records on veRL's uid, which is random "
                "per step: no question will have a trajectory (sharpen fit: 'insufficient'). Write stable ids "
                "with sharpen.integrations.verl.to_verl_rows.",
            )
        else:
            raise ValueError(
                f"no stable question id: the rows have none of {tried}, and no prompts or uids"
            )
        return ids  # type: ignore[return-value] - every None replaced

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, UserWarning, stacklevel=3)


def write_verl_parquet(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write :func:`to_verl_rows` output to a parquet file (needs pandas + pyarrow, extra ``data``)."""
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover - pandas is in the data extra
        raise ImportError(
            "writing parquet needs pandas and pyarrow: pip install 'sharpen[data]'"
        ) from err
    if not rows:
        raise ValueError("rows: empty")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(list(rows)).to_parquet(path, index=False)
    return path


VERL_COLUMNS: tuple[str, ...] = ("data_source", "prompt", "reward_model")
"""Columns every veRL RL-dataset parquet needs (veRL reads ``prompt`` and passes the other two to the reward)."""


def read_verl_parquet(path: str | Path, *, name: str = "path") -> Any:
    """A veRL RL-dataset parquet as a ``pandas.DataFrame``, checked: the file exists and holds
    :data:`VERL_COLUMNS` and at least one row. ``$VAR`` and ``~`` in ``path`` are expanded (the launch scripts
    write ``$HOME/...``). Errors are ``ValueError("<name>: problem")``."""
    resolved = Path(os.path.expandvars(str(path))).expanduser()
    if not resolved.is_file():
        raise ValueError(f"{name}: no such parquet file: {resolved} (write it with: sharpen data)")
    try:
        import pandas as pd

        frame = pd.read_parquet(resolved)
    except ImportError as err:  # pragma: no cover - pandas is in the data extra
        raise ValueError(
            f"{name}: reading parquet needs pandas and pyarrow: pip install 'sharpen[data]'"
        ) from err
    except Exception as err:  # pyarrow raises its own error types for a file that is not parquet
        raise ValueError(
            f"{name}: {resolved} is not a readable parquet file ({type(err).__name__})"
        ) from None
    missing = [c for c in VERL_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name}: {resolved} is not in veRL's schema: missing column(s) {missing} (found {list(frame.columns)})"
        )
    if frame.empty:
        raise ValueError(f"{name}: {resolved} holds no rows")
    return frame


def verl_data_summary(path: str | Path, *, name: str = "path") -> dict[str, Any]:
    """What a veRL parquet holds, for a check before a run: ``rows``, rows per ``data_source``, and where its
    stable question ids are (``"uid"``: a top-level column, which veRL's validation pass keeps; ``"question_id"``
    / ``"index"``: in ``extra_info``, which the trainer hook reads in training batches; None: nowhere, the hook
    then falls back to a prompt hash) and whether they are unique. ``ValueError`` as :func:`read_verl_parquet`."""
    frame = read_verl_parquet(path, name=name)
    infos = [
        i if isinstance(i, Mapping) else {} for i in frame.get("extra_info", [None] * len(frame))
    ]
    ids: list[Any] | None = None
    where = None
    if "uid" in frame.columns:
        where, ids = "uid", list(frame["uid"])
    else:
        for f in QUESTION_ID_FIELDS:
            if all(i.get(f) is not None for i in infos):
                where, ids = f, [i[f] for i in infos]
                break
    sources = frame["data_source"].astype(str).value_counts()
    return {
        "path": str(path),
        "rows": int(len(frame)),
        "data_sources": {str(k): int(v) for k, v in sources.items()},
        "ids": where,
        "ids_unique": None if ids is None else len({str(i) for i in ids}) == len(ids),
    }


@dataclass(frozen=True)
class ProbeSet:
    r"""The fixed probe questions of a veRL run, measured in veRL's validation pass.

    ``sharpen fit`` fits Theorem 1 to per-question trajectories :math:`p_k`: the same questions sampled at fixed
    steps. A veRL run's training batches cannot give them (with one epoch each question is seen once, at one
    step), so the trainer hook probes a fixed set: the probe parquet (``sharpen data`` writes one, a seeded sample
    of the training questions with their stable ids in a ``uid`` column) is one of ``data.val_files``; veRL
    validates it at step 0 and every ``trainer.test_freq`` steps, ``val_kwargs.n`` samples per question, and the
    hook turns the validation samples of these questions into probe records (:meth:`select`, then
    :func:`sharpen.integrations.records.probe_records`). The answers are the ``pred`` values veRL's reward loop
    collected from :func:`compute_score`, so they are read the way each row's ``data_source`` asks for.

    The samples are drawn with veRL's validation sampler (``val_kwargs``: temperature, top-p), not the training
    temperature: set the recipe's ``val_temperature`` / ``val_top_p`` to the training values (1.0, 1.0) to measure
    the training policy itself.

    Attributes
    ----------
    labels : mapping question id -> true label (``reward_model.ground_truth``)

    >>> probes = ProbeSet({"q1": "7", "q2": "5"})
    >>> probes.select(["q1", "q1", "aime-3", "q2"], ["7", "", "12", "4"])
    (['q1', 'q1', 'q2'], ['7', None, '4'], ['7', '7', '5'])
    """

    labels: Mapping[str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.labels, Mapping) or not self.labels:
            raise ValueError("labels: a probe set needs at least one question")
        if any(v is None for v in self.labels.values()):
            raise ValueError("labels: every probe question needs a label")

    @classmethod
    def read(cls, path: str | Path, *, name: str = "probe_files") -> ProbeSet:
        """The probe set of a parquet written by ``sharpen data`` (ids from its ``uid`` column, labels from
        ``reward_model.ground_truth``). ``ValueError("<name>: problem")`` for a missing file, a wrong schema, no
        ``uid`` column or duplicate ids."""
        frame = read_verl_parquet(path, name=name)
        if "uid" not in frame.columns:
            raise ValueError(
                f"{name}: {path} has no 'uid' column: veRL's validation pass keys samples on it (else a random "
                "one per pass, and no question gets a trajectory); write the probe set with: sharpen data"
            )
        labels: dict[str, str] = {}
        for qid, rm in zip(frame["uid"], frame["reward_model"], strict=True):
            truth = rm.get("ground_truth") if isinstance(rm, Mapping) else None
            if qid is None or truth is None:
                raise ValueError(
                    f"{name}: {path}: a row has no uid or no reward_model.ground_truth"
                )
            if str(qid) in labels:
                raise ValueError(
                    f"{name}: {path}: duplicate uid {qid!r} (probe ids must be unique)"
                )
            labels[str(qid)] = str(truth)
        return cls(labels)

    def select(
        self, sample_uids: Sequence[Hashable], preds: Sequence[Any] | None
    ) -> tuple[list[str], list[str | None], list[str]]:
        """The validation samples of probe questions, in sample order: ``(question ids, answers, labels)``.

        ``sample_uids`` and ``preds`` are veRL's per-sample validation lists (``sample_uids`` and
        ``reward_extra_infos_dict["pred"]``, compute_score's canonical answer, ``""`` = none parsed: None here).
        Samples of other questions (the benchmark's) are skipped; no probe question gives three empty lists.
        Raises ``ValueError`` when ``preds`` is missing (veRL's reward is not sharpen's :func:`compute_score`) or
        the lengths differ.
        """
        if preds is None:
            raise ValueError(
                "pred: veRL's validation pass collected no 'pred' values: the probe needs sharpen's compute_score "
                "as reward.custom_reward_function"
            )
        uids, preds = list(sample_uids), list(preds)
        if len(uids) != len(preds):
            raise ValueError(f"sample_uids, pred: lengths differ ({len(uids)} and {len(preds)})")
        qids, answers, labels = [], [], []
        for uid, pred in zip(uids, preds, strict=True):
            label = self.labels.get(str(uid))
            if label is None:
                continue
            qids.append(str(uid))
            answers.append(None if pred is None or str(pred) == "" else str(pred))
            labels.append(label)
        return qids, answers, labels


# ----------------------------------------------------------------------------------------------------------------
# The recipe: one typed config -> veRL overrides and launch scripts
# ----------------------------------------------------------------------------------------------------------------


def _f(default: Any, help: str) -> Any:  # noqa: A002 - "help" reads best at the call sites
    return field(default=default, metadata={"help": help})


def verl_rewards() -> tuple[str, ...]:
    """The recipe's and the trainer hook's training rewards: majority voting (pseudo-labels), ground truth (the
    labels) and every reward of :func:`actor_rewards`."""
    return ("majority_voting", "ground_truth", *actor_rewards())


ANSWER_STYLES: tuple[str, ...] = ("source", "auto", "boxed", "answer_line", "gsm8k")
"""The recipe's ``answer_style``: ``"source"`` (dispatch on each row's ``data_source``, :func:`answer_style_for`)
or one style of :func:`extract_for_source` for every row."""
VERL_LOGGERS: tuple[str, ...] = (
    "console", "file", "wandb", "tensorboard", "mlflow", "swanlab", "vemlp_wandb", "clearml", "trackio",
)  # fmt: skip
"""``trainer.logger`` backends of veRL 0.9.1 (``verl.utils.tracking.Tracking.supported_backend``, less its
internal ``rl_insight``); wandb, tensorboard, mlflow ... need their own package in the veRL environment."""


@dataclass(frozen=True)
class VerlRecipe:
    """A veRL GRPO run; the defaults are the paper's setting (docs/integrations.md, "veRL")."""

    name: str = _f(
        "qwen3-1.7b-dapo-ttrl", "experiment name (trainer.experiment_name, run folder name)"
    )
    model_path: str = _f("Qwen/Qwen3-1.7B-Base", "HF model id or local folder")
    train_files: str = _f(
        "$HOME/data/dapo-math-17k/train.parquet", "training parquet (veRL schema)"
    )
    val_files: str = _f("$HOME/data/aime24/test.parquet", "validation parquet (veRL schema)")
    probe_files: str = _f(
        "$HOME/data/dapo-math-17k/probe.parquet",
        "fixed probe questions (sharpen data writes them), validated with val_files every test_freq steps; the "
        "hook writes their per-question records for sharpen fit ('' = none: records from training batches)",
    )
    reward: str = _f("majority_voting", "training reward: " + ", ".join(verl_rewards()))
    prompts_per_step: int = _f(64, "prompts per step (data.train_batch_size)")
    n_rollouts: int = _f(8, "rollouts per prompt, the GRPO group (rollout.n)")
    temperature: float = _f(1.0, "rollout temperature")
    lr: float = _f(1e-6, "actor learning rate (constant)")
    warmup_ratio: float = _f(0.0, "linear warm-up as a fraction of the steps")
    ppo_mini_batch_size: int = _f(
        64, "prompts per actor update; = prompts_per_step makes each step on-policy"
    )
    clip_eps: float = _f(0.2, "PPO clip range")
    use_kl: bool = _f(False, "add the low_var_kl loss to the reference model (the paper: off)")
    kl_coef: float = _f(0.005, "KL loss coefficient when use_kl")
    max_prompt_length: int = _f(1024, "longest prompt in tokens")
    max_response_length: int = _f(7168, "longest response in tokens")
    total_epochs: int = _f(1, "passes over the training data")
    shuffle: bool = _f(False, "shuffle the training data (the paper: file order)")
    rollout_engine: Literal["vllm", "sglang"] = _f("vllm", "rollout engine")
    tensor_parallel: int = _f(1, "rollout tensor-parallel size")
    gpu_memory_utilization: float = _f(0.6, "rollout engine's share of GPU memory")
    val_temperature: float = _f(0.6, "validation temperature")
    val_top_p: float = _f(0.95, "validation top-p")
    val_n: int = _f(8, "validation samples per prompt (avg@n)")
    test_freq: int = _f(20, "validate every this many steps")
    save_freq: int = _f(100, "checkpoint every this many steps (-1: never)")
    nnodes: int = _f(1, "nodes")
    gpus_per_node: int = _f(8, "GPUs per node")
    answer_style: Literal["source", "auto", "boxed", "answer_line", "gsm8k"] = _f(
        "source",
        "answer extraction: 'source' = by each row's data_source (compute_score's dispatch); another style "
        "overrides it for every row, in compute_score (reward_kwargs) and in the hook's vote",
    )
    math_verify: bool = _f(False, "grade with Math-Verify's symbolic fallback")
    project: str = _f("sharpen", "trainer.project_name")
    logger: tuple[str, ...] = _f(
        ("console", "file"),
        "veRL's trainer.logger backends, comma-separated (e.g. console,file,wandb or console,file,tensorboard); "
        "'file' is required: the launch script exports veRL's file log to sharpen's run folder",
    )
    param_offload: bool = _f(False, "offload the actor's (and reference's) FSDP parameters to CPU")
    optimizer_offload: bool = _f(False, "offload the actor's optimizer states to CPU")
    use_dynamic_bsz: bool = _f(
        True,
        "pack micro-batches by token count (max_token_len_per_gpu) instead of a fixed micro-batch size",
    )
    micro_batch_size_per_gpu: int | None = _f(
        None,
        "rollouts per forward/backward pass and per log-prob pass on each GPU; required when use_dynamic_bsz is off",
    )
    max_token_len_per_gpu: int | None = _f(
        None,
        "tokens per micro-batch on each GPU with use_dynamic_bsz (none = 2 x (max_prompt_length + "
        "max_response_length))",
    )
    run_root: str = _f("runs/verl", "sharpen run folders are written under run_root/name")

    def __post_init__(self) -> None:
        if self.reward not in verl_rewards():
            raise ValueError(
                f"reward: must be one of {verl_rewards()}, got {self.reward!r}{_full_logits_hint(self.reward)}"
            )
        if self.rollout_engine not in ("vllm", "sglang"):
            raise ValueError(
                f"rollout_engine: must be 'vllm' or 'sglang', got {self.rollout_engine!r}"
            )
        if self.answer_style not in ANSWER_STYLES:
            raise ValueError(
                f"answer_style: must be one of {ANSWER_STYLES}, got {self.answer_style!r}"
            )
        if not isinstance(self.logger, tuple) or not all(isinstance(x, str) for x in self.logger):
            raise ValueError(f"logger: must be a tuple of backend names, got {self.logger!r}")
        unknown = [x for x in self.logger if x not in VERL_LOGGERS]
        if unknown:
            raise ValueError(
                f"logger: unknown backend(s) {unknown}; veRL {SUPPORTED_VERL} has {VERL_LOGGERS}"
            )
        if "file" not in self.logger:
            raise ValueError(
                f"logger: must include 'file' (the launch script exports veRL's file log), got {self.logger!r}"
            )
        if len(set(self.logger)) != len(self.logger):
            raise ValueError(f"logger: a backend is named twice, got {self.logger!r}")
        for name in ("micro_batch_size_per_gpu", "max_token_len_per_gpu"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"{name}: must be an int >= 1 or None, got {value!r}")
        if not self.use_dynamic_bsz and self.micro_batch_size_per_gpu is None:
            raise ValueError("micro_batch_size_per_gpu: required when use_dynamic_bsz is off")
        for name in ("train_files", "val_files"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"{name}: must be a parquet path, got {getattr(self, name)!r}")
        if any(c in self.probe_files for c in " ,'\"[]"):
            raise ValueError(
                f"probe_files: must be one path without spaces, commas, quotes or brackets, got {self.probe_files!r}"
            )
        for name in ("prompts_per_step", "n_rollouts", "ppo_mini_batch_size", "max_prompt_length",
                     "max_response_length", "total_epochs", "tensor_parallel", "val_n", "test_freq", "nnodes",
                     "gpus_per_node"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: must be an int >= 1, got {value!r}")
        if self.n_rollouts < 2:
            raise ValueError(f"n_rollouts: GRPO needs groups of >= 2, got {self.n_rollouts}")
        if self.prompts_per_step % self.ppo_mini_batch_size:
            raise ValueError("ppo_mini_batch_size: must divide prompts_per_step")
        for name in ("temperature", "lr", "val_temperature", "clip_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.gpu_memory_utilization <= 1 or not 0 < self.val_top_p <= 1:
            raise ValueError("gpu_memory_utilization, val_top_p: must lie in (0, 1]")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio: must lie in [0, 1), got {self.warmup_ratio}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef: must be >= 0, got {self.kl_coef}")
        if self.save_freq == 0 or self.save_freq < -1:
            raise ValueError(f"save_freq: must be >= 1 or -1, got {self.save_freq}")
        if not self.name or any(c in self.name for c in " /'\""):
            raise ValueError(
                f"name: must be non-empty without spaces, slashes or quotes, got {self.name!r}"
            )

    @classmethod
    def paper(cls, **changes: Any) -> VerlRecipe:
        """The paper's setting on one node of 8 GPUs (the defaults), with ``changes`` applied."""
        return cls(**changes)

    @classmethod
    def paper_multinode(cls, nnodes: int = 2, **changes: Any) -> VerlRecipe:
        """The paper's setting spread over ``nnodes`` nodes of 8 GPUs (Ray cluster)."""
        return cls(
            nnodes=nnodes, name=changes.pop("name", f"qwen3-1.7b-dapo-ttrl-{nnodes}n"), **changes
        )

    @property
    def run_dir(self) -> str:
        """Where the trainer hook writes sharpen's run folder."""
        return f"{self.run_root.rstrip('/')}/{self.name}"

    def overrides(self, reward_fn_path: str | None = None) -> list[str]:
        """veRL 0.9.1 Hydra overrides of ``ppo_trainer`` (plus the ``+sharpen.*`` keys the hook reads).

        ``reward_fn_path`` is the file veRL loads :func:`compute_score` from (default:
        ``sharpen/integrations/verl_reward.py``, a re-export, since veRL executes that file by path).
        """
        path = reward_fn_path or str(Path(__file__).resolve().with_name("verl_reward.py"))
        max_tokens = self.max_token_len_per_gpu or 2 * (
            self.max_prompt_length + self.max_response_length
        )
        b = lambda v: "True" if v else "False"  # noqa: E731 - Hydra spells booleans this way
        # the probe set is validated with the benchmark: veRL reports each data_source apart
        val = f"['{self.val_files}','{self.probe_files}']" if self.probe_files else self.val_files
        if self.use_dynamic_bsz:
            batching = [
                "actor_rollout_ref.actor.use_dynamic_bsz=True",
                f"actor_rollout_ref.actor.ppo_max_token_len_per_gpu={max_tokens}",
                "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True",
                f"actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu={max_tokens}",
            ]
        else:
            micro = self.micro_batch_size_per_gpu
            batching = [
                "actor_rollout_ref.actor.use_dynamic_bsz=False",
                f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}",
                "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=False",
                f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={micro}",
                f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={micro}",
            ]
        out = [
            "algorithm.adv_estimator=grpo",
            "algorithm.use_kl_in_reward=False",
            "algorithm.norm_adv_by_std_in_grpo=True",
            f"data.train_files={self.train_files}",
            f"data.val_files={val}",
            f"data.train_batch_size={self.prompts_per_step}",
            f"data.max_prompt_length={self.max_prompt_length}",
            f"data.max_response_length={self.max_response_length}",
            f"data.shuffle={b(self.shuffle)}",
            "data.filter_overlong_prompts=True",
            "data.truncation=error",
            f"actor_rollout_ref.model.path={self.model_path}",
            f"actor_rollout_ref.actor.optim.lr={self.lr}",
            f"actor_rollout_ref.actor.optim.lr_warmup_steps_ratio={self.warmup_ratio}",
            f"actor_rollout_ref.actor.ppo_mini_batch_size={self.ppo_mini_batch_size}",
            *batching,
            f"actor_rollout_ref.actor.fsdp_config.param_offload={b(self.param_offload)}",
            f"actor_rollout_ref.actor.fsdp_config.optimizer_offload={b(self.optimizer_offload)}",
            f"actor_rollout_ref.ref.fsdp_config.param_offload={b(self.param_offload)}",
            f"actor_rollout_ref.actor.clip_ratio={self.clip_eps}",
            "actor_rollout_ref.actor.loss_agg_mode=token-mean",
            "actor_rollout_ref.actor.entropy_coeff=0",
            f"actor_rollout_ref.actor.use_kl_loss={b(self.use_kl)}",
            f"actor_rollout_ref.actor.kl_loss_coef={self.kl_coef if self.use_kl else 0.0}",
            "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
            f"actor_rollout_ref.rollout.name={self.rollout_engine}",
            f"actor_rollout_ref.rollout.n={self.n_rollouts}",
            f"actor_rollout_ref.rollout.temperature={self.temperature}",
            f"actor_rollout_ref.rollout.tensor_model_parallel_size={self.tensor_parallel}",
            f"actor_rollout_ref.rollout.gpu_memory_utilization={self.gpu_memory_utilization}",
            f"actor_rollout_ref.rollout.val_kwargs.temperature={self.val_temperature}",
            f"actor_rollout_ref.rollout.val_kwargs.top_p={self.val_top_p}",
            f"actor_rollout_ref.rollout.val_kwargs.n={self.val_n}",
            "actor_rollout_ref.rollout.val_kwargs.do_sample=True",
            f"reward.custom_reward_function.path={path}",
            "reward.custom_reward_function.name=compute_score",
            f"trainer.project_name={self.project}",
            f"trainer.experiment_name={self.name}",
            f"trainer.logger=[{','.join(self.logger)}]",
            f"trainer.nnodes={self.nnodes}",
            f"trainer.n_gpus_per_node={self.gpus_per_node}",
            f"trainer.total_epochs={self.total_epochs}",
            f"trainer.test_freq={self.test_freq}",
            f"trainer.save_freq={self.save_freq}",
            "trainer.balance_batch=True",
            # the sharpen hook subclasses RayPPOTrainer, which veRL 0.9.1 runs on its non-v1 path
            "trainer.use_v1=False",
            f"+sharpen.reward={self.reward}",
            f"+sharpen.run_dir={self.run_dir}",
            f"+sharpen.answer_style={self.answer_style}",
            f"+sharpen.math_verify={b(self.math_verify)}",
        ]
        if self.probe_files:
            out.append(f"+sharpen.probe_files={self.probe_files}")
        if self.answer_style != "source":  # compute_score's kwargs: one style for every data_source
            out.append(
                f"+reward.custom_reward_function.reward_kwargs.answer_style={self.answer_style}"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_HEADER = """#!/usr/bin/env bash
# Generated by `sharpen verl-recipe` from sharpen.integrations.verl.VerlRecipe -- do not edit; regenerate.
# veRL {verl}; recipe: recipe.json next to this file.
# Extra Hydra overrides: bash launch.sh KEY=VALUE ... -- appended last, so they win; the sharpen.* keys the
# recipe adds with '+' are changed without it (sharpen.reward=ground_truth).
set -euo pipefail
REWARD_FN="$(python -c 'import sharpen.integrations.verl_reward as m; print(m.__file__)')"
export VERL_FILE_LOGGER_PATH="{run_dir}/verl_metrics.jsonl"
mkdir -p "{run_dir}"
"""


def _command(recipe: VerlRecipe) -> str:
    lines = ["python -m sharpen.integrations.verl_trainer \\"]
    for ov in recipe.overrides(reward_fn_path="__REWARD_FN__"):
        key, value = ov.split("=", 1)
        quoted = (
            '"$REWARD_FN"'
            if value == "__REWARD_FN__"
            else shlex.quote(value)
            if "$" not in value
            else f'"{value}"'
        )
        lines.append(f"    {key}={quoted} \\")
    # the script's own arguments come last, so they win (Hydra applies overrides in order):
    # bash launch.sh trainer.logger=[console,file,wandb] sharpen.reward=ground_truth
    lines.append('    "$@"')
    return "\n".join(lines) + "\n"


def launch_script(recipe: VerlRecipe) -> str:
    """Bash launch script for ``recipe`` (single node; for ``nnodes > 1`` run it on the Ray head node)."""
    text = _HEADER.format(verl=SUPPORTED_VERL, run_dir=recipe.run_dir)
    if recipe.nnodes > 1:
        text += (
            f"# Multi-node: {recipe.nnodes} nodes x {recipe.gpus_per_node} GPUs in one Ray cluster. First:\n"
            f"#   head:    ray start --head --port=6379 --num-gpus={recipe.gpus_per_node}\n"
            f"#   workers: ray start --address=$HEAD_IP:6379 --num-gpus={recipe.gpus_per_node}\n"
            "# then run this script on the head node (veRL joins the running cluster).\n"
            f'test "$(python -c \'import ray; ray.init(address="auto"); '
            f'print(int(ray.cluster_resources().get("GPU", 0)))\')" -ge {recipe.nnodes * recipe.gpus_per_node}\n'
        )
    text += _command(recipe)
    text += (
        "# Convert veRL's log to sharpen's run format (sharpen fit / sharpen figures read it):\n"
        f'python -m sharpen.integrations.verl export "{recipe.run_dir}/verl_metrics.jsonl" "{recipe.run_dir}"\n'
    )
    return text


def write_recipe(recipe: VerlRecipe, out_dir: str | Path) -> dict[str, Path]:
    """Write ``recipe.json``, ``overrides.txt`` and the launch script(s) for ``recipe`` into ``out_dir``.

    Returns the written paths by role: ``recipe``, ``overrides``, ``launch`` and, for the one-node paper setting,
    ``launch_multinode`` (the same run on 2 nodes).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "recipe": out / "recipe.json",
        "overrides": out / "overrides.txt",
        "launch": out / "launch.sh",
    }
    paths["recipe"].write_text(
        json.dumps({"verl": SUPPORTED_VERL, **recipe.to_dict()}, indent=2) + "\n"
    )
    paths["overrides"].write_text("\n".join(recipe.overrides()) + "\n")
    paths["launch"].write_text(launch_script(recipe))
    paths["launch"].chmod(0o755)
    if recipe.nnodes == 1:
        multi = dataclasses.replace(recipe, nnodes=2, name=f"{recipe.name}-2n")
        paths["launch_multinode"] = out / "launch_multinode.sh"
        paths["launch_multinode"].write_text(launch_script(multi))
        paths["launch_multinode"].chmod(0o755)
    return paths


def check_recipe_data(recipe: VerlRecipe) -> dict[str, Any]:
    """Read and check the recipe's data before a run: ``train_files``, ``val_files`` and ``probe_files`` (each
    :func:`verl_data_summary`, ``$HOME`` expanded as the launch script does), the probe set through
    :meth:`ProbeSet.read`. Returns the summaries by field and ``warnings`` (stable ids missing from the training
    file, probe questions that are not training questions, a probe ``data_source`` shared with ``val_files`` --
    veRL would report the two as one); raises ``ValueError("<field>: problem")`` for a missing or malformed file.
    """
    out: dict[str, Any] = {}
    notes: list[str] = []
    for name in ("train_files", "val_files", "probe_files"):  # the recipe requires the first two
        if getattr(recipe, name):
            out[name] = verl_data_summary(getattr(recipe, name), name=name)
    if out["train_files"]["ids"] is None:
        notes.append(
            "train_files: no stable question ids (extra_info.question_id / index): the hook keys training-batch "
            "records on a prompt hash; sharpen data writes ids"
        )
    if recipe.probe_files:
        probes = ProbeSet.read(recipe.probe_files)
        shared = set(out["probe_files"]["data_sources"]) & set(out["val_files"]["data_sources"])
        if shared:
            notes.append(
                f"probe_files: data_source {sorted(shared)} is also in val_files: veRL reports them as one"
            )
        frame = read_verl_parquet(recipe.train_files, name="train_files")
        infos = frame.get("extra_info", [None] * len(frame))
        train_ids = {str(i.get("question_id")) for i in infos if isinstance(i, Mapping)}
        if "uid" in frame.columns:
            train_ids |= {str(u) for u in frame["uid"]}
        outside = [q for q in probes.labels if q not in train_ids]
        if outside:
            notes.append(
                f"probe_files: {len(outside)} of {len(probes.labels)} probe questions are not in train_files"
            )
        out["probe_files"]["questions"] = len(probes.labels)
    out["warnings"] = notes
    return out


# ----------------------------------------------------------------------------------------------------------------
# Export: veRL's file logger -> sharpen's run folder
# ----------------------------------------------------------------------------------------------------------------

_RENAMES = {
    "actor/entropy": "entropy",
    "response_length/mean": "response_length",
    "critic/score/mean": "reward",
    "actor/lr": "lr",
    "actor/ppo_kl": "ppo_kl",
    "actor/kl_loss": KL,  # the KL loss to the reference model, which is the initial policy
}
_TTRL_PREFIX = "sharpen/"


def recipe_header(recipe: VerlRecipe | Mapping[str, Any]) -> RunHeader:
    """The :class:`~sharpen.records.RunHeader` of a run launched from ``recipe`` (a :class:`VerlRecipe` or its
    ``recipe.json``): reward, lr, N, clip, model, the training files as the task, prompts per step, the KL
    coefficient (0 without ``use_kl``); veRL's one PPO epoch per batch and AdamW, which the recipe keeps."""
    r = recipe.to_dict() if isinstance(recipe, VerlRecipe) else dict(recipe)
    values = {
        "reward": r.get("reward"),
        "lr": r.get("lr"),
        "n_rollouts": r.get("n_rollouts"),
        "clip_eps": r.get("clip_eps"),
        "model": r.get("model_path"),
        "task": r.get("train_files"),
        "batch_size": r.get("prompts_per_step"),
        "kl_coef": r.get("kl_coef") if r.get("use_kl") else 0.0,
        "epochs": 1,
        "optimizer": "adamw",
    }
    return RunHeader.from_fields("verl", values)


def hydra_header(config: Mapping[str, Any], *, reward: str | None, steps: int | None) -> RunHeader:
    """The :class:`~sharpen.records.RunHeader` of a veRL run from its resolved Hydra configuration (a nested
    mapping: ``actor_rollout_ref.actor.optim.lr``, ``actor_rollout_ref.rollout.n``, ...), as the trainer hook
    sees it; ``reward`` is the hook's (``sharpen.reward``), ``steps`` the trainer's total."""

    def at(path: str) -> Any:
        node: Any = config
        for key in path.split("."):
            node = node.get(key) if isinstance(node, Mapping) else None
        return node

    actor = "actor_rollout_ref.actor"
    values = {
        "reward": reward,
        "lr": at(f"{actor}.optim.lr"),
        "n_rollouts": at("actor_rollout_ref.rollout.n"),
        "clip_eps": at(f"{actor}.clip_ratio"),
        "seed": at("data.seed"),
        "model": at("actor_rollout_ref.model.path"),
        "task": at("data.train_files") if isinstance(at("data.train_files"), str) else None,
        "steps": steps,
        "batch_size": at("data.train_batch_size"),
        "epochs": at(f"{actor}.ppo_epochs"),
        "optimizer": str(at(f"{actor}.optim.optimizer") or "").lower() or None,
        "kl_coef": at(f"{actor}.kl_loss_coef") if at(f"{actor}.use_kl_loss") else 0.0,
    }
    return RunHeader.from_fields("verl", values)


def _rename(key: str) -> str:
    if key.startswith(_TTRL_PREFIX):
        return key[len(_TTRL_PREFIX) :]
    return _RENAMES.get(key, key)


def export_verl_run(
    metrics_jsonl: str | Path,
    run_dir: str | Path,
    *,
    recipe: VerlRecipe | Mapping[str, Any] | None = None,
) -> Path:
    """Convert veRL's file-logger JSONL (``{"step", "data": {...}}`` lines) into sharpen's run folder.

    Training metrics go to ``metrics.jsonl`` (the hook's ``sharpen/<ttrl name>`` keys lose the prefix, so
    ``label_accuracy``, ``majority_ratio`` ... read as in every sharpen run; ``actor/entropy`` -> ``entropy``,
    ``response_length/mean`` -> ``response_length``, ``actor/kl_loss`` -> ``kl_to_initial``, veRL's mean score
    also as ``majority_voting_reward`` where the hook logged none; other keys are kept); validation keys
    (``val-core/``, ``val-aux/``) go to ``eval.jsonl``, the first (by name) ``val-core/<source>/acc/mean@<n>``
    also as the held-out ``accuracy``. ``probes.jsonl``, written by the hook during training, is left as is.
    ``config.json`` gets the header (:func:`recipe_header`; without a recipe, the one the trainer hook wrote
    there with its Hydra configuration, which is kept, else ``kind: "verl"`` alone) and the recipe. Re-running
    replaces the exported files.
    """
    records, n_bad = read_jsonl(metrics_jsonl)
    if not records:
        raise ValueError(f"metrics_jsonl: {metrics_jsonl} holds no readable line")
    out = Path(run_dir)
    writer = RunWriter(out)
    for name in ("metrics.jsonl", "eval.jsonl"):
        (out / name).unlink(missing_ok=True)
    header, config = _hook_config(out / CONFIG_FILE)
    config.update({"verl": SUPPORTED_VERL, "source": str(metrics_jsonl)})
    if recipe is not None:
        config.update(recipe.to_dict() if isinstance(recipe, VerlRecipe) else dict(recipe))
        header = recipe_header(recipe)
    writer.write_config(header, {k: v for k, v in config.items() if k not in ("kind", "header")})
    writer.write_json("env.json", {**environment_info(), "skipped_lines": n_bad})
    for rec in records:
        step, data = rec.get("step"), rec.get("data")
        if not isinstance(step, int) or not isinstance(data, Mapping):
            continue
        train = {
            _rename(k): v for k, v in data.items() if not k.startswith("val-") and _is_number(v)
        }
        val = {k: v for k, v in data.items() if k.startswith("val-") and _is_number(v)}
        if "reward" in train:
            train.setdefault(MAJORITY_REWARD, train["reward"])
        accuracy = sorted(k for k in val if _VAL_ACCURACY.match(k))
        if accuracy:
            val.setdefault(HELDOUT_ACCURACY, val[accuracy[0]])
        if train:
            writer.log_metrics(step, train)
        if val:
            writer.log_eval(step, "val", val)
    return out


# veRL's avg@n of the validation samples, per data source (a source may hold "/": "openai/gsm8k")
_VAL_ACCURACY = re.compile(r"^val-core/.+/acc/mean@\d+$")


def _hook_config(path: Path) -> tuple[RunHeader, dict[str, Any]]:
    """The header and the resolved Hydra configuration (``"hydra"``) the trainer hook wrote to ``path`` (its
    ``config.json``); ``RunHeader("verl")`` and nothing where the hook wrote none."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        header = RunHeader.from_dict(stored["header"])
    except (OSError, ValueError, KeyError, TypeError):  # no file, not JSON, no valid header
        return RunHeader("verl"), {}
    return header, ({"hydra": stored["hydra"]} if "hydra" in stored else {})


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ----------------------------------------------------------------------------------------------------------------
# CLI: `sharpen verl-recipe` (entry point) and `python -m sharpen.integrations.verl export`
# ----------------------------------------------------------------------------------------------------------------


def _run_recipe(args: Any) -> int:
    """Handler of ``sharpen verl-recipe``; a bad field value raises ``ValueError`` (``name: problem``)."""
    recipe = VerlRecipe(**given_options(args, args.recipe_fields))
    if getattr(
        args, "dry_run", False
    ):  # check the recipe and its data, write nothing; bad data: exit 2
        report = {"recipe": recipe.to_dict(), "data": check_recipe_data(recipe)}
        print(json.dumps(report, indent=2))
        return 0
    paths = write_recipe(recipe, args.out)
    for role, path in paths.items():
        print(f"{role:17s} {path}")
    try:
        data = check_recipe_data(recipe)
    except (
        ValueError
    ) as exc:  # the data may live on the GPU node only: say so, but the scripts are written
        print(f"data: not checked here ({exc})")
    else:
        rows = ", ".join(
            f"{k.split('_')[0]} {v['rows']} rows" for k, v in data.items() if k != "warnings"
        )
        print(f"data: {rows}" + "".join(f"\nwarning: {w}" for w in data["warnings"]))
    print(
        f"run it on a GPU node with veRL {SUPPORTED_VERL}: bash {paths['launch']} [HYDRA_OVERRIDES ...]"
    )
    return 0


def register(subparsers: Any) -> None:
    """Entry point (group ``sharpen.commands``): adds ``sharpen verl-recipe``."""
    p = subparsers.add_parser(
        "verl-recipe",
        help="write the veRL launch scripts of the paper's setting (or a variant) from sharpen's typed recipe",
        description="Writes recipe.json, overrides.txt, launch.sh (and launch_multinode.sh) for veRL "
        f"{SUPPORTED_VERL}. Every option is a field of sharpen.integrations.verl.VerlRecipe.",
    )
    p.add_argument("--out", default="verl-recipe", help="output folder (default: ./verl-recipe)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the recipe and read its train/val/probe parquet files (made by `sharpen data`); print "
        "what they hold and write nothing",
    )
    p.set_defaults(func=_run_recipe, recipe_fields=add_dataclass_options(p, VerlRecipe))


def _export(args: Any) -> int:
    """Handler of ``python -m sharpen.integrations.verl export``."""
    recipe = None
    if args.recipe:
        try:
            recipe = json.loads(Path(args.recipe).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"--recipe: cannot read {args.recipe} ({exc})") from None
    print(export_verl_run(args.metrics_jsonl, args.run_dir, recipe=recipe))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sharpen.integrations.verl {verl-recipe,export} ...`` (no ``sharpen`` script needed)."""
    parser = CommandParser(prog="python -m sharpen.integrations.verl")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{verl-recipe,export}")
    register(sub)
    exp = sub.add_parser("export", help="convert veRL's file-logger JSONL to a sharpen run folder")
    exp.add_argument("metrics_jsonl", help="veRL's file-logger JSONL")
    exp.add_argument("run_dir", help="the sharpen run folder to write")
    exp.add_argument("--recipe", default=None, help="recipe.json to store in config.json")
    exp.set_defaults(func=_export)
    return dispatch(parser, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
