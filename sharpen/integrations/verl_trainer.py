r"""The thin veRL hook: sharpen's rewards, TTRL metrics and per-question records inside veRL's PPO loop.

Requires veRL == :data:`sharpen.integrations.verl.SUPPORTED_VERL` (checked at import: the hook overrides three
private methods of ``RayPPOTrainer``, whose names and call order are version-specific).

Where it acts in ``RayPPOTrainer.fit`` (veRL 0.9.1, non-v1 path):

1. generate -> **``_balance_batch``** (overridden: before balancing, decode the responses, read each answer the way
   veRL's reward does -- ``compute_score``'s ``pred`` for the row's ``data_source`` --, vote per ``uid`` with
   :func:`~sharpen.integrations.verl.inject_pseudo_labels`, overwrite ``reward_model.ground_truth`` with the
   winner and keep ``extra_info.original_gt``; for ``majority_voting`` replace the per-sample scores of veRL's reward
   loop, which graded against the true label, by the vote reward; log TTRL metrics, and per-question records when
   no probe set is given);
2. reward extraction -> **``_compute_old_log_prob``** (overridden: for the certainty rewards, turn the actor's
   ``old_log_probs``/``entropys`` into the reward with :func:`~sharpen.integrations.verl.certainty_from_actor` and
   write it in place into ``rm_scores``, the tensor ``fit`` already holds as its reward) -> advantage;
3. validation (step 0 and every ``trainer.test_freq`` steps) -> **``_val_metrics_update``** (overridden: the
   samples of the fixed probe set, :class:`~sharpen.integrations.verl.ProbeSet`, keyed on the probe parquet's
   stable ``uid``, become the per-question records ``sharpen fit`` fits; a loud warning when none is found).

Scores sit on the last valid response token, as veRL's reward managers put them. Options come from the
``+sharpen.*`` keys that :class:`~sharpen.integrations.verl.VerlRecipe` writes (``reward``, ``run_dir``,
``answer_style``, ``math_verify``, ``probe_files``). Run with ``python -m sharpen.integrations.verl_trainer
<overrides>``.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

from sharpen.integrations.verl import (
    SUPPORTED_VERL,
    ProbeSet,
    QuestionKeys,
    actor_rewards,
    certainty_from_actor,
    hydra_header,
    inject_pseudo_labels,
    verl_rewards,
    verl_version,
)

_found = verl_version()
if _found != SUPPORTED_VERL:
    raise ImportError(
        f"sharpen.integrations.verl_trainer needs veRL == {SUPPORTED_VERL} (found {_found}); "
        "build the opt-in environment with: bash scripts/verl/make_env.sh"
    )

import torch  # noqa: E402
from verl.trainer.ppo.ray_trainer import RayPPOTrainer  # noqa: E402

from sharpen.integrations.records import probe_records, resume_run  # noqa: E402
from sharpen.integrations.verl_reward import compute_score  # noqa: E402 - the scorer veRL grades with
from sharpen.metrics import point_biserial, pseudo_label_acc, ttrl_metrics  # noqa: E402
from sharpen.records import MAJORITY_REWARD, RunWriter, environment_info  # noqa: E402

__all__ = ["SharpenRayPPOTrainer", "last_token_scores", "main"]


def last_token_scores(rewards: Any, response_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) float tensor with ``rewards[b]`` on row b's last valid token and 0 elsewhere."""
    mask = response_mask.bool()
    if not bool(mask.any(dim=1).all()):
        raise ValueError("response_mask: every row needs a valid token")
    last = mask.shape[1] - 1 - mask.flip(dims=[1]).int().argmax(dim=1)  # (B,)
    out = torch.zeros(mask.shape, dtype=torch.float32, device=response_mask.device)
    r = torch.as_tensor(np.asarray(rewards, dtype=np.float32), device=out.device)
    out[torch.arange(mask.shape[0], device=out.device), last] = r
    return out


class SharpenRayPPOTrainer(RayPPOTrainer):
    """``RayPPOTrainer`` with sharpen's pseudo-label injection, certainty rewards and run records."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sharpen_setup()

    def _sharpen_setup(self) -> None:
        opts = self.config.get("sharpen", None) or {}
        self.sharpen_reward = str(opts.get("reward", "ground_truth"))
        if self.sharpen_reward not in verl_rewards():
            raise ValueError(
                f"sharpen.reward: must be one of {verl_rewards()}, got {self.sharpen_reward!r}"
            )
        if not self.config.trainer.balance_batch:
            raise ValueError(
                "trainer.balance_batch: the sharpen hook runs in _balance_batch; set it to True"
            )
        self.sharpen_answer_style = str(opts.get("answer_style", "source"))
        self.sharpen_math_verify = bool(opts.get("math_verify", False))
        probe_files = str(opts.get("probe_files", "") or "")
        # the fixed probe questions, measured in veRL's validation pass (None: records from training batches)
        self._sharpen_probe_set = (
            ProbeSet.read(probe_files, name="sharpen.probe_files") if probe_files else None
        )
        self._sharpen_probe_warned = False
        if self._sharpen_probe_set is None:
            warnings.warn(
                "NO PROBE SET (sharpen.probe_files is not set): sharpen's per-question records come from training "
                "batches, where a question recurs only once per epoch -- with one epoch sharpen fit finds no "
                "trajectory. Write a probe set with `sharpen data` and pass it (VerlRecipe.probe_files).",
                UserWarning,
                stacklevel=2,
            )
        self._sharpen_writer = RunWriter(str(opts.get("run_dir", "runs/verl/run")))
        self._sharpen_initial: dict[str, str | None] = {}
        self._sharpen_probed: frozenset[int] = frozenset()  # steps with probes (resumed run)
        self._sharpen_keys = QuestionKeys()  # stable question ids; veRL's uid is random per step
        self._sharpen_writer.write_json("env.json", environment_info())
        from omegaconf import OmegaConf  # veRL's configuration library

        hydra = OmegaConf.to_container(self.config, resolve=True)
        header = hydra_header(hydra, reward=self.sharpen_reward,
                              steps=getattr(self, "total_training_steps", None))  # fmt: skip
        self._sharpen_writer.write_config(header, {"hydra": hydra})

    def _load_checkpoint(self) -> Any:
        """veRL's resume, then the run folder's: records after the checkpoint step are dropped and the initial
        majorities reloaded from ``probes.jsonl`` (:func:`~sharpen.integrations.records.resume_run`), so the
        records equal an uninterrupted run's; the steps already probed (the checkpoint's own validation pass
        included) are not probed again."""
        out = super()._load_checkpoint()
        step = int(self.global_steps)  # the checkpoint's step; 0 when training starts from scratch
        if step > 0:
            resumed = resume_run(self._sharpen_writer, step)
            self._sharpen_initial = {**resumed.initial, **self._sharpen_initial}
            self._sharpen_probed = resumed.probed
        return out

    # -- helpers -----------------------------------------------------------------------------------------------

    def _sharpen_answers(self, batch: Any) -> list[str | None]:
        """Each row's answer as veRL's reward reads it: ``compute_score``'s ``pred`` for the row's
        ``data_source`` (``answer_style`` other than ``"source"`` overrides the dispatch), None if none parsed."""
        responses, mask = batch.batch["responses"], batch.batch["response_mask"].bool()
        texts = [
            self.tokenizer.decode(r[m].tolist(), skip_special_tokens=True)
            for r, m in zip(responses, mask, strict=True)
        ]
        sources = batch.non_tensor_batch.get("data_source")
        sources = [""] * len(texts) if sources is None else [str(s) for s in sources]
        truths = [rm.get("ground_truth") for rm in batch.non_tensor_batch["reward_model"]]
        style = (
            {}
            if self.sharpen_answer_style == "source"
            else {"answer_style": self.sharpen_answer_style}
        )
        preds = [
            compute_score(s, t, "" if g is None else g, **style)["pred"]
            for s, t, g in zip(sources, texts, truths, strict=True)
        ]
        return [p or None for p in preds]

    def _sharpen_prompts(self, batch: Any) -> list[str] | None:
        """Decoded prompt of each row (``batch.batch["prompts"]``, left-padded), or None if the batch has none."""
        if "prompts" not in batch.batch.keys():
            return None
        prompts = batch.batch["prompts"]
        mask = batch.batch["attention_mask"][:, : prompts.shape[1]].bool()
        return [
            self.tokenizer.decode(p[m].tolist(), skip_special_tokens=True)
            for p, m in zip(prompts, mask, strict=True)
        ]

    @staticmethod
    def _sharpen_truths(batch: Any) -> list[Any]:
        out = []
        for rm, info in zip(
            batch.non_tensor_batch["reward_model"], _extra_infos(batch), strict=True
        ):
            out.append(info.get("original_gt", rm["ground_truth"]))
        return out

    # -- hook 1: right after generation, before balancing ------------------------------------------------------

    def _balance_batch(self, batch: Any, metrics: dict, *args: Any, **kwargs: Any) -> Any:
        self._sharpen_after_generation(batch, metrics)
        return super()._balance_batch(batch, metrics, *args, **kwargs)

    def _sharpen_after_generation(self, batch: Any, metrics: dict) -> None:
        answers = self._sharpen_answers(batch)
        uids = list(batch.non_tensor_batch["uid"])
        truths = self._sharpen_truths(batch)
        pl = inject_pseudo_labels(answers, uids, truths, math_verify=self.sharpen_math_verify)
        infos = _extra_infos(batch)
        step = int(self.global_steps)
        # with a probe set, the per-question records come from the validation pass (_val_metrics_update)
        if self._sharpen_probe_set is None:
            qids = self._sharpen_keys(
                infos, prompts=lambda: self._sharpen_prompts(batch), uids=uids
            )
            records, self._sharpen_initial = probe_records(
                step,
                qids,
                answers,
                truths,
                initial=self._sharpen_initial,
                math_verify=self.sharpen_math_verify,
            )
            self._sharpen_writer.log_probes(records)
        if self.sharpen_reward == "majority_voting":
            batch.non_tensor_batch["reward_model"] = np.array(
                [
                    {**rm, "ground_truth": lab}
                    for rm, lab in zip(
                        batch.non_tensor_batch["reward_model"], pl.labels, strict=True
                    )
                ],
                dtype=object,
            )
            batch.non_tensor_batch["extra_info"] = np.array(
                [{**info, "original_gt": t} for info, t in zip(infos, truths, strict=True)],
                dtype=object,
            )
            if "rm_scores" in batch.batch.keys():
                batch.batch["rm_scores"] = last_token_scores(
                    pl.rewards, batch.batch["response_mask"]
                )
            proxy = pl.rewards
        elif self.sharpen_reward == "ground_truth":
            proxy = pl.correct
        else:
            return  # certainty rewards: metrics once the actor pass has produced the reward
        base = pl.metrics if self.sharpen_reward == "majority_voting" else None
        self._sharpen_log(step, base, answers, truths, uids, proxy, pl.correct, metrics)

    # -- hook 2: after the actor's old-log-prob pass ------------------------------------------------------------

    def _compute_old_log_prob(self, batch: Any) -> Any:
        out = super()._compute_old_log_prob(batch)
        if self.sharpen_reward in actor_rewards():
            old_log_prob = out[0] if isinstance(out, tuple) else out
            mask = batch.batch["response_mask"]
            rewards = certainty_from_actor(
                self.sharpen_reward,
                old_log_prob.batch["old_log_probs"],
                old_log_prob.batch.get("entropys"),
                mask,
            )
            # in place: fit() already holds batch.batch["rm_scores"] as its reward tensor
            batch.batch["rm_scores"].copy_(last_token_scores(rewards, mask))
            answers = self._sharpen_answers(batch)
            truths = self._sharpen_truths(batch)
            uids = list(batch.non_tensor_batch["uid"])
            correct = np.array(
                [float(v) for v in _gt_scores(batch, answers, truths, self.sharpen_math_verify)]
            )
            self._sharpen_log(
                int(self.global_steps), None, answers, truths, uids, rewards, correct, None
            )
        return out

    # -- hook 3: the validation pass probes the fixed probe set -------------------------------------------------

    def _val_metrics_update(
        self,
        data_sources: Any,
        sample_uids: Any,
        reward_extra_infos_dict: dict,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        self._sharpen_probe_validation(sample_uids, reward_extra_infos_dict)
        return super()._val_metrics_update(
            data_sources, sample_uids, reward_extra_infos_dict, *args, **kwargs
        )

    def _sharpen_probe_validation(self, sample_uids: Any, infos: dict) -> None:
        """Probe records of the probe questions among one validation pass's samples (at ``global_steps``: 0 for
        the pass before training, else the step just trained). veRL keys the samples on the probe parquet's
        ``uid`` column and collected compute_score's ``pred`` for each."""
        if self._sharpen_probe_set is None or int(self.global_steps) in self._sharpen_probed:
            return
        try:
            qids, answers, labels = self._sharpen_probe_set.select(sample_uids, infos.get("pred"))
        except ValueError as exc:
            qids, problem = [], str(exc)
        else:
            problem = (
                f"none of the {len(self._sharpen_probe_set.labels)} probe questions is among the "
                f"{len(sample_uids)} validation samples (their uids did not match): put the probe parquet in "
                "data.val_files, with its uid column (sharpen data writes it)"
            )
        if not qids:
            if not self._sharpen_probe_warned:  # loud, once: every later pass would repeat it
                self._sharpen_probe_warned = True
                warnings.warn(f"NO PROBE RECORDS: {problem}", UserWarning, stacklevel=2)
            return
        records, self._sharpen_initial = probe_records(
            int(self.global_steps),
            qids,
            answers,
            labels,
            initial=self._sharpen_initial,
            math_verify=self.sharpen_math_verify,
        )
        self._sharpen_writer.log_probes(records)

    def _sharpen_log(
        self,
        step: int,
        base: dict | None,
        answers: list,
        truths: list,
        uids: list,
        proxy: np.ndarray,
        correct: np.ndarray,
        metrics: dict | None,
    ) -> None:
        labels = [None if t is None else str(t) for t in truths]
        row = (
            dict(base) if base is not None else ttrl_metrics(answers, labels, uids, correct=correct)
        )
        row["reward"] = float(np.mean(proxy))
        row.setdefault(MAJORITY_REWARD, row["reward"])  # mean training reward, any reward
        if self.sharpen_reward in actor_rewards():
            row["pseudo_label_acc"] = pseudo_label_acc(proxy, correct, uids)
        r = point_biserial(proxy, correct)
        if r is not None:
            row["point_biserial"] = r
        self._sharpen_writer.log_metrics(step, row)
        if metrics is not None:
            metrics.update({f"sharpen/{k}": v for k, v in row.items()})


def _extra_infos(batch: Any) -> list[dict]:
    infos = batch.non_tensor_batch.get("extra_info")
    if infos is None:
        return [{} for _ in range(len(batch.non_tensor_batch["uid"]))]
    return [dict(i) if isinstance(i, dict) else {} for i in infos]


def _gt_scores(batch: Any, answers: list, truths: list, math_verify: bool) -> list[bool]:
    from sharpen.answers import equivalent

    return [
        equivalent(None if t is None else str(t), a, math_verify=math_verify)
        for a, t in zip(answers, truths, strict=True)
    ]


def _task_runner():
    """A Ray TaskRunner that runs veRL's non-v1 PPO loop with :class:`SharpenRayPPOTrainer`."""
    import ray
    import verl.trainer.main_ppo_v0 as v0

    class SharpenTaskRunner(v0.TaskRunner.__ray_actor_class__):
        def run(self, config: Any) -> Any:
            import verl.trainer.main_ppo_v0 as v0_in_actor

            v0_in_actor.RayPPOTrainer = SharpenRayPPOTrainer  # this actor's process only
            return super().run(config)

    return ray.remote(SharpenTaskRunner)


def main() -> None:
    """``python -m sharpen.integrations.verl_trainer <hydra overrides>``: veRL's ``main_ppo`` with the hook."""
    import verl.trainer.main_ppo as main_ppo
    import verl.trainer.main_ppo_v0 as v0

    if not any(a.startswith("trainer.use_v1=") for a in sys.argv[1:]):
        sys.argv.append("trainer.use_v1=False")
    v0.TaskRunner = _task_runner()
    main_ppo.main()


if __name__ == "__main__":  # pragma: no cover
    main()
