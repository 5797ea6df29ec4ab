r"""``sharpen data``: the paper's datasets, from files you downloaded, as sharpen's JSONL and veRL's parquet.

Nothing is downloaded here: fetch the files from the Hugging Face hub yourself (in a browser, with
``huggingface-cli download DATASET FILE --repo-type dataset``, or ``wget .../resolve/main/FILE``), then::

    sharpen data --dapo dapo-math-17k.parquet --aime24 aime-2024.parquet     # writes under ~/data
    sharpen data --math500 test.jsonl --gsm8k-train train-00000-of-00001.parquet --out data

* ``--dapo``: ``BytedTsinghua-SIA/DAPO-Math-17k``, ``data/dapo-math-17k.parquet`` -> ``dapo-math-17k/train``
  and the probe set ``dapo-math-17k/probe``;
* ``--aime24``: ``BytedTsinghua-SIA/AIME-2024``, ``data/aime-2024.parquet`` (or ``HuggingFaceH4/aime_2024``,
  ``Maxwell-Jia/AIME_2024``) -> ``aime24/test``;
* ``--math500``: ``HuggingFaceH4/MATH-500``, ``test.jsonl`` -> ``math500/test``;
* ``--gsm8k-train`` / ``--gsm8k-test``: ``openai/gsm8k``, ``main/train-00000-of-00001.parquet`` /
  ``main/test-00000-of-00001.parquet`` -> ``gsm8k/train`` / ``gsm8k/test``.

The folders follow veRL's data-preprocessing scripts (``~/data/<dataset>/<split>.parquet``, e.g.
``~/data/gsm8k/train.parquet``) and are :class:`~sharpen.integrations.verl.VerlRecipe`'s defaults, so
``sharpen verl-recipe`` reads them without options. Each source gives two files:

* ``<split>.parquet`` -- veRL's RL-dataset schema (:func:`~sharpen.integrations.verl.to_verl_rows`, written by
  :func:`~sharpen.integrations.verl.write_verl_parquet`) with the question id in ``extra_info.question_id`` and in a
  ``uid`` column (veRL's validation pass keeps it, so probe questions keep their ids across passes);
* ``<split>.jsonl`` -- one object a line, ``{"id", "problem", "answer", "data_source", "prompt"}``: what
  ``sharpen train --task math-jsonl`` (and ``--heldout-path``) reads, :func:`empirical.tasks.load_math_jsonl`.

A file is read in either layout: veRL's (``prompt`` messages + ``reward_model``, as DAPO-Math-17k and
BytedTsinghua-SIA/AIME-2024 ship; read by :func:`empirical.tasks.load_dapo`) or flat (``problem`` or
``question``, and ``answer``; keys in any case; parquet or JSONL). Every source is **deduplicated** by question
text, first kept (DAPO-Math-17k's file holds each of its ~17k prompts about 100 times), and every question gets a
**stable id** from its problem text, ``<source>-`` + :func:`~sharpen.integrations.verl.text_id` -- the same in both
files, in every download order, on every machine. Prompts follow each source's ``data_source`` (the scorer
:func:`~sharpen.integrations.verl.compute_score` dispatches on it): DAPO and AIME ask for a last line
``Answer: ...`` (DAPO's own instruction), MATH-500 for ``\boxed{}``, GSM8K for ``#### ...`` (veRL's instructions).
GSM8K's label is the number after ``####`` in its reference solution, commas removed.

``--dapo`` also writes the **probe set**: ``--n-probe`` training questions (default 64) drawn with
``--probe-seed``, in ``dapo-math-17k/probe.{parquet,jsonl}``. A veRL run validates it with the benchmark every
``test_freq`` steps and the trainer hook records each probe question's answers there
(:class:`~sharpen.integrations.verl.ProbeSet`), the trajectories ``sharpen fit`` fits Theorem 1 to.

Every error is one line naming the option (missing file, unknown layout, a null or missing field, a GSM8K answer
without ``####``); the command exits with code 2.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from empirical.tasks import DAPO_INSTRUCTION, Question, load_dapo
from sharpen.integrations.verl import text_id, to_verl_rows, write_verl_parquet

__all__ = [
    "SOURCES",
    "Converted",
    "DataRequest",
    "Source",
    "prepare_data",
    "read_source",
    "register",
]

BOXED_INSTRUCTION = (
    "{problem} Let's think step by step and output the final answer within \\boxed{{}}."
)
"""veRL's MATH prompt (``examples/data_preprocess/math_dataset.py``): the answer is the last ``\\boxed{}``."""
GSM8K_INSTRUCTION = '{problem} Let\'s think step by step and output the final answer after "####".'
"""veRL's GSM8K prompt (``examples/data_preprocess/gsm8k.py``): the answer follows ``####``."""


def _gsm8k_label(answer: str, where: str) -> str:
    """The number after the last ``####`` of a GSM8K reference solution, commas removed."""
    found = re.findall(r"####[^\S\n]*([^\n]+)", answer)
    if not found or not found[-1].strip():
        raise ValueError(
            f"{where}: the answer has no '#### <number>' line (GSM8K's reference solutions end in one)"
        )
    return found[-1].strip().replace(",", "")


def _plain_label(answer: str, where: str) -> str:
    return answer.strip()


@dataclass(frozen=True)
class Source:
    """One dataset ``sharpen data`` converts: where it comes from and how its rows become questions.

    Attributes
    ----------
    name : the option (``--name``, dashes for underscores) and the question-id prefix
    hub : the Hugging Face dataset to download from; ``files`` : which file(s) of it
    data_source : veRL's ``data_source`` of the rows (the scorer's dispatch key)
    folder, split : written to ``<out>/<folder>/<split>.parquet`` and ``.jsonl``
    instruction : the prompt of a problem in the flat layout (``{problem}`` is replaced)
    label : ``(raw answer text, where) -> label`` (``where`` names the row for errors)
    """

    name: str
    hub: str
    files: str
    data_source: str
    folder: str
    split: str
    instruction: str
    label: Callable[[str, str], str] = field(default=_plain_label, repr=False)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("dapo", "BytedTsinghua-SIA/DAPO-Math-17k", "data/dapo-math-17k.parquet", "math_dapo",
               "dapo-math-17k", "train", DAPO_INSTRUCTION),
        Source("aime24", "BytedTsinghua-SIA/AIME-2024 (or HuggingFaceH4/aime_2024, Maxwell-Jia/AIME_2024)",
               "data/aime-2024.parquet", "aime24", "aime24", "test", DAPO_INSTRUCTION),
        Source("math500", "HuggingFaceH4/MATH-500", "test.jsonl", "HuggingFaceH4/MATH-500", "math500", "test",
               BOXED_INSTRUCTION),
        Source("gsm8k_train", "openai/gsm8k", "main/train-00000-of-00001.parquet", "openai/gsm8k", "gsm8k",
               "train", GSM8K_INSTRUCTION, _gsm8k_label),
        Source("gsm8k_test", "openai/gsm8k", "main/test-00000-of-00001.parquet", "openai/gsm8k", "gsm8k",
               "test", GSM8K_INSTRUCTION, _gsm8k_label),
    )
}  # fmt: skip
"""The sources ``sharpen data`` knows, by option name."""

PROBE_SPLIT = "probe"
"""File stem of the probe set, next to the DAPO training files."""


# ----------------------------------------------------------------------------------------------------------
# reading one source
# ----------------------------------------------------------------------------------------------------------


def _expand(path: str | Path) -> Path:
    return Path(os.path.expandvars(str(path))).expanduser()


def _strip_instruction(prompt: str, instruction: str) -> str:
    """The problem inside ``prompt`` when ``prompt`` is ``instruction`` around it, else ``prompt`` itself."""
    head, _, tail = instruction.partition("{problem}")
    head, tail = (
        head.replace("{{", "{").replace("}}", "}"),
        tail.replace("{{", "{").replace("}}", "}"),
    )
    if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head) + len(tail):
        return prompt[len(head) : len(prompt) - len(tail)]
    return prompt


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _flat_rows(path: Path, name: str) -> list[tuple[str, dict[str, Any]]]:
    """``(where, row)`` of a flat parquet or JSONL file, keys lower-cased."""
    if path.suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                raise ValueError(f"{name}: line {lineno} of {path} is not a JSON object")
            rows.append((f"line {lineno} of {path}", {str(k).lower(): v for k, v in obj.items()}))
        return rows
    import pandas as pd

    frame = pd.read_parquet(path)
    return [
        (f"row {i} of {path}", {str(k).lower(): v for k, v in rec.items()})
        for i, rec in enumerate(frame.to_dict(orient="records"))
    ]


def _parquet_columns(path: Path, name: str) -> list[str]:
    try:
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    except ImportError as err:  # pragma: no cover - pyarrow is in the data extra
        raise ValueError(
            f"{name}: reading parquet needs pandas and pyarrow: pip install 'sharpen[data]'"
        ) from err
    except Exception as err:  # pyarrow's own error types for a file that is not parquet
        raise ValueError(
            f"{name}: {path} is not a readable parquet file ({type(err).__name__})"
        ) from None


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def read_source(source: Source, path: str | Path) -> tuple[list[Question], int, list[str]]:
    """The deduplicated questions of one downloaded file of ``source``.

    Returns ``(questions, rows_read, problems)``: the questions (``qid = "<source>-" + text_id(problem)``,
    ``prompt`` = the user message veRL sends, ``label``) in file order, first occurrence kept; how many rows the
    file holds; and each question's bare problem text (the prompt without its instruction), for the JSONL.
    Raises ``ValueError("<source>: problem")``.
    """
    name = source.name
    path = _expand(path)
    if not path.is_file():
        raise ValueError(
            f"{name}: no such file: {path} (download {source.files} from {source.hub})"
        )
    if path.suffix not in (".parquet", ".jsonl"):
        raise ValueError(f"{name}: {path}: expected a .parquet or .jsonl file")
    columns = _parquet_columns(path, name) if path.suffix == ".parquet" else []
    if {"prompt", "reward_model"} <= set(columns):  # veRL's layout (DAPO's own files)
        try:
            loaded = load_dapo(path)
        except ValueError as exc:
            raise ValueError(f"{name}: {str(exc).removeprefix('path: ')}") from None
        rows_read = _parquet_rows(path)
        items = [
            (_strip_instruction(q.prompt, source.instruction), q.prompt, q.label, q.qid)
            for q in loaded
        ]
    else:
        rows = _flat_rows(path, name)
        rows_read = len(rows)
        items = []
        for where, row in rows:
            key = "problem" if "problem" in row else "question"
            if key not in row or "answer" not in row:
                raise ValueError(
                    f"{name}: {path} has neither veRL's columns (prompt, reward_model) nor 'problem' (or "
                    f"'question') and 'answer' ({where} has {sorted(row)})"
                )
            if _is_null(row[key]) or _is_null(row["answer"]):
                raise ValueError(f"{name}: {where}: {key!r} or 'answer' is null")
            problem = str(row[key]).strip()
            label = source.label(str(row["answer"]), f"{name}: {where}")
            if not problem or not label:
                raise ValueError(f"{name}: {where}: {key!r} or 'answer' is empty")
            original = row.get("unique_id", row.get("id"))
            items.append((problem, source.instruction.format(problem=problem), label, original))
    if not items:
        raise ValueError(f"{name}: {path} holds no rows")
    questions, problems, seen = [], [], set()
    for problem, prompt, label, original in items:
        qid = f"{source.name.split('_')[0]}-{text_id(problem)}"
        if qid in seen:
            continue
        seen.add(qid)
        meta = () if _is_null(original) else (("source_id", str(original)),)
        questions.append(Question(qid=qid, prompt=prompt, label=str(label), chat=True, meta=meta))
        problems.append(problem)
    return questions, rows_read, problems


# ----------------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------------


def _write_jsonl(
    questions: list[Question], problems: list[str], data_source: str, path: Path
) -> Path:
    lines = [
        json.dumps({"id": q.qid, "problem": p, "answer": q.label, "data_source": data_source, "prompt": q.prompt},
                   ensure_ascii=False)
        for q, p in zip(questions, problems, strict=True)
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _write_pair(
    questions: list[Question], problems: list[str], source: Source, folder: Path, split: str
):
    rows = to_verl_rows(questions, data_source=source.data_source, split=split, uid=True)
    parquet = write_verl_parquet(rows, folder / f"{split}.parquet")
    return parquet, _write_jsonl(questions, problems, source.data_source, folder / f"{split}.jsonl")


@dataclass(frozen=True)
class Converted:
    """What :func:`prepare_data` wrote for one source (or the probe set, ``name == "probe"``)."""

    name: str
    rows_read: int
    questions: int
    parquet: Path
    jsonl: Path

    @property
    def duplicates(self) -> int:
        """Rows dropped as repeats of an earlier question."""
        return self.rows_read - self.questions


@dataclass(frozen=True)
class DataRequest:
    """What ``sharpen data`` converts and where it writes (every field is an option)."""

    dapo: str | None = field(
        default=None,
        metadata={
            "help": (
                "DAPO-Math-17k parquet, from BytedTsinghua-SIA/DAPO-Math-17k (data/dapo-math-17k.parquet)"
            )
        },
    )
    aime24: str | None = field(
        default=None,
        metadata={
            "help": (
                "AIME 2024, parquet or JSONL, from BytedTsinghua-SIA/AIME-2024 (data/aime-2024.parquet), "
                "HuggingFaceH4/aime_2024 or Maxwell-Jia/AIME_2024"
            )
        },
    )
    math500: str | None = field(
        default=None, metadata={"help": "MATH-500, from HuggingFaceH4/MATH-500 (test.jsonl)"}
    )
    gsm8k_train: str | None = field(
        default=None,
        metadata={
            "help": ("GSM8K train split, from openai/gsm8k (main/train-00000-of-00001.parquet)")
        },
    )
    gsm8k_test: str | None = field(
        default=None,
        metadata={
            "help": ("GSM8K test split, from openai/gsm8k (main/test-00000-of-00001.parquet)")
        },
    )
    out: str = field(
        default="~/data",
        metadata={
            "help": (
                "output root; <out>/<dataset>/<split>.parquet and .jsonl (veRL's layout; the veRL recipe's defaults)"
            )
        },
    )
    n_probe: int = field(
        default=64,
        metadata={
            "help": ("probe questions drawn from the DAPO training questions (0 = no probe set)")
        },
    )
    probe_seed: int = field(default=0, metadata={"help": "seed of the probe draw"})  # fmt: skip

    def __post_init__(self) -> None:
        given = [n for n in SOURCES if getattr(self, n) is not None]
        if not given:
            flags = ", ".join("--" + n.replace("_", "-") for n in SOURCES)
            raise ValueError(f"sources: give at least one downloaded file ({flags})")
        for n in given:
            if not isinstance(getattr(self, n), str) or not getattr(self, n).strip():
                raise ValueError(f"{n}: must be a file path, got {getattr(self, n)!r}")
        if not isinstance(self.out, str) or not self.out.strip():
            raise ValueError(f"out: must be a folder path, got {self.out!r}")
        for n in ("n_probe", "probe_seed"):
            value = getattr(self, n)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{n}: must be an int >= 0, got {value!r}")


def prepare_data(request: DataRequest) -> list[Converted]:
    """Convert every source ``request`` names (all are read and checked before anything is written); with
    ``dapo``, also draw and write the probe set. Returns what was written, in :data:`SOURCES` order."""
    root = _expand(request.out)
    read = {
        n: read_source(SOURCES[n], getattr(request, n))
        for n in SOURCES
        if getattr(request, n) is not None
    }
    done = []
    for n, (questions, rows_read, problems) in read.items():
        source = SOURCES[n]
        folder = root / source.folder
        parquet, jsonl = _write_pair(questions, problems, source, folder, source.split)
        done.append(Converted(n, rows_read, len(questions), parquet, jsonl))
        if n == "dapo" and request.n_probe:
            rng = np.random.default_rng(request.probe_seed)
            k = min(request.n_probe, len(questions))
            picked = sorted(rng.choice(len(questions), size=k, replace=False).tolist())
            parquet, jsonl = _write_pair([questions[i] for i in picked], [problems[i] for i in picked], source,
                                         folder, PROBE_SPLIT)  # fmt: skip
            done.append(Converted(PROBE_SPLIT, k, k, parquet, jsonl))
    return done


# ----------------------------------------------------------------------------------------------------------
# sharpen data
# ----------------------------------------------------------------------------------------------------------


def _run(args: Any) -> int:
    """Handler of ``sharpen data``."""
    from sharpen._cli import given_options

    request = DataRequest(**given_options(args, args.data_fields))
    done = prepare_data(request)
    for c in done:
        what = (
            f"{c.questions} questions drawn with seed {request.probe_seed}"
            if c.name == PROBE_SPLIT
            else f"{c.rows_read} rows -> {c.questions} questions ({c.duplicates} duplicates dropped)"
        )
        print(f"{c.name:12s} {what}\n{'':12s} {c.parquet}\n{'':12s} {c.jsonl}")
    if request.n_probe and request.dapo is None:
        print("probe set: not drawn (it comes from --dapo's training questions)")
    written = {c.name: c.parquet for c in done}
    default_root = _expand(DataRequest.out)
    flags = []
    if "dapo" in written and written["dapo"].parent.parent != default_root:
        flags.append(f"--train-files {written['dapo']}")
    if "aime24" in written and written["aime24"].parent.parent != default_root:
        flags.append(f"--val-files {written['aime24']}")
    if PROBE_SPLIT in written and written[PROBE_SPLIT].parent.parent != default_root:
        flags.append(f"--probe-files {written[PROBE_SPLIT]}")
    if "dapo" in written:
        print("next: sharpen verl-recipe --out verl-recipe " + " ".join(flags))
    sys.stdout.flush()
    return 0


def register(subparsers: Any) -> None:
    """Entry point (group ``sharpen.commands``): adds ``sharpen data``."""
    from sharpen._cli import add_dataclass_options

    parser = subparsers.add_parser(
        "data",
        help="convert downloaded DAPO-Math-17k, AIME 2024, MATH-500, GSM8K files to sharpen's JSONL and veRL's parquet",
        description=__doc__,
    )
    parser.set_defaults(func=_run, data_fields=add_dataclass_options(parser, DataRequest))
