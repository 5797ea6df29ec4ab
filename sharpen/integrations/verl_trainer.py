r"""The thin veRL hook: sharpen's rewards, TTRL metrics and per-question records inside veRL's PPO loop.

Requires veRL == :data:`sharpen.integrations.verl.SUPPORTED_VERL` (checked at import: the hook overrides two
private methods of ``RayPPOTrainer``, whose names and call order are version-specific).

Where it acts in ``RayPPOTrainer.fit`` (veRL 0.9.1, non-v1 path):

1. generate -> **``_balance_batch``** (overridden: before balancing, decode the responses, vote per ``uid`` with
   :func:`~sharpen.integrations.verl.inject_pseudo_labels`, overwrite ``reward_model.ground_truth`` with the
   winner and keep ``extra_info.original_gt``; for ``majority_voting`` replace the per-sample scores of veRL's reward
   loop, which graded against the true label, by the vote reward; log TTRL metrics and per-question records);
2. reward extraction -> **``_compute_old_log_prob``** (overridden: for the certainty rewards, turn the actor's
   ``old_log_probs``/``entropys`` into the reward with :func:`~sharpen.integrations.verl.certainty_from_actor` and
   write it in place into ``rm_scores``, the tensor ``fit`` already holds as its reward) -> advantage.

Scores sit on the last valid response token, as veRL's reward managers put them. Options come from the
``+sharpen.*`` keys that :class:`~sharpen.integrations.verl.VerlRecipe` writes (``reward``, ``run_dir``,
``answer_style``, ``math_verify``). Run with ``python -m sharpen.integrations.verl_trainer <overrides>``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from sharpen.integrations.verl import (
    ACTOR_REWARDS,
    SUPPORTED_VERL,
    QuestionKeys,
    certainty_from_actor,
    inject_pseudo_labels,
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

from sharpen.answers import extract_answer  # noqa: E402
from sharpen.integrations.records import probe_records  # noqa: E402
from sharpen.metrics import point_biserial, pseudo_label_acc, ttrl_metrics  # noqa: E402
from sharpen.records import RunWriter, environment_info  # noqa: E402

__all__ = ["SharpenRayPPOTrainer", "last_token_scores", "main"]

_HOOK_REWARDS = ("majority_voting", "ground_truth", *ACTOR_REWARDS)


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
        if self.sharpen_reward not in _HOOK_REWARDS:
            raise ValueError(
                f"sharpen.reward: must be one of {_HOOK_REWARDS}, got {self.sharpen_reward!r}"
            )
        if not self.config.trainer.balance_batch:
            raise ValueError(
                "trainer.balance_batch: the sharpen hook runs in _balance_batch; set it to True"
            )
        self.sharpen_answer_style = str(opts.get("answer_style", "auto"))
        self.sharpen_math_verify = bool(opts.get("math_verify", False))
        self._sharpen_writer = RunWriter(str(opts.get("run_dir", "runs/verl/run")))
        self._sharpen_initial: dict[str, str | None] = {}
        self._sharpen_keys = QuestionKeys()  # stable question ids; veRL's uid is random per step
        self._sharpen_writer.write_json("env.json", environment_info())

    # -- helpers -----------------------------------------------------------------------------------------------

    def _sharpen_answers(self, batch: Any) -> list[str | None]:
        responses, mask = batch.batch["responses"], batch.batch["response_mask"].bool()
        texts = [
            self.tokenizer.decode(r[m].tolist(), skip_special_tokens=True)
            for r, m in zip(responses, mask, strict=True)
        ]
        return [extract_answer(t, style=self.sharpen_answer_style) for t in texts]

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
        qids = self._sharpen_keys(infos, prompts=lambda: self._sharpen_prompts(batch), uids=uids)
        step = int(self.global_steps)
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
        if self.sharpen_reward in ACTOR_REWARDS:
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
        if self.sharpen_reward in ACTOR_REWARDS:
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
