r"""The GRPO loop: rollouts from a causal LM, an intrinsic (or ground-truth) reward, group-normalised advantages,
the clipped surrogate, AdamW -- and the records that Theorem 1 and the figures are fitted to.

Read it top to bottom: batches -> the trainer (rollout, reward, the old pass, scoring; then one step: rollout,
old pass, rewards, advantages, loss and update, metrics; probes, evaluation) -> set-up -> the loop. Checkpoints
are :func:`empirical.checkpoint.save_trainer` / :func:`~empirical.checkpoint.restore_trainer`. The configuration
is :class:`empirical.config.TrainConfig`; reward, advantage, loss and metric math comes from :mod:`sharpen`;
model passes and sampling from :mod:`empirical.policy`; a step's vote, its trained rows and every record
from :mod:`empirical.measure`.

Token-level rewards (self-certainty, token / trajectory entropy, probability) are computed *exactly* from the
trainer's own forward pass over the full vocabulary (the *old pass*, :class:`OldPass`), with the rollout
temperature applied and logits aligned to the sampled tokens. With one update per batch (the default) the
gradient pass is that forward pass: its detached log-probabilities are the "old" ones (the ratio is 1), no
separate no-grad pass runs, and it takes the sampler's prompt pass (:class:`empirical.policy.PromptPass`).

>>> from empirical.config import preset                       # doctest: +SKIP
>>> run_dir = train(preset("tiny-arith-ttrl").replace(steps=20))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from empirical import measure
from empirical.checkpoint import (
    check_run_folder,
    latest_checkpoint,
    restore_latest,
    restore_trainer,
    save_trainer,
)
from empirical.config import TrainConfig
from empirical.exact import candidate_ids, exact_probe, label_probs
from empirical.measure import Vote, batch_metrics, grade, heldout_metrics, probe_records
from empirical.policy import Packed, load_model, pack, resolve_model_path, response_logits
from empirical.reporters import REPORTERS
from empirical.rollout import BACKENDS, Generation, RolloutBackend, decode_responses, render_prompts
from empirical.tasks import DataCursor, Question, Task, build_task, verification_prompt
from sharpen.answers import parse_verdict
from sharpen.exact import AnswerSummary
from sharpen.grpo import agg_loss, group_advantages, kl_k3, policy_loss
from sharpen.records import ProbeRecord, RunWriter, environment_info
from sharpen.rewards import Rollouts, get_reward, reward_info, token_entropies, token_logprobs

__all__ = ["Trainer", "build_task", "build_trainer", "latest_checkpoint", "train"]


# ==========================================================================================================
# batches: reward levels, the old pass
# ==========================================================================================================


def reads_logits(reward: str) -> bool:
    """Whether reward ``reward`` is token-level (reads the policy's logits) rather than answer-level."""
    return "logits" in reward_info(reward).needs


@dataclass
class OldPass:
    """The batch under the policy that sampled it, detached: what the ratio, the KL, the metrics and a token-level
    reward read. Filled one micro-batch at a time by :meth:`Trainer.observe`."""

    logp: torch.Tensor  # (B, T) log-probabilities of the sampled tokens
    ref_logp: torch.Tensor | None  # (B, T) under the frozen initial policy, if there is one
    entropy_sum: float = 0.0  # token entropy summed over response tokens
    # a token-level reward's values, (b,) per micro-batch in row order
    token_rewards: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def empty(cls, batch: Packed, *, reference: bool) -> OldPass:
        logp = torch.zeros(batch.tokens.shape, device=batch.tokens.device)
        return cls(logp, torch.zeros_like(logp) if reference else None)


# ==========================================================================================================
# the trainer: everything the loop mutates
# ==========================================================================================================


@dataclass
class Trainer:
    """Policy, optimizer, backend, RNGs, data cursor and the initial probe majorities of one run."""

    cfg: TrainConfig
    task: Task
    model: torch.nn.Module
    ref_model: torch.nn.Module | None  # frozen initial policy, for the KL penalty / metric
    tokenizer: object
    backend: RolloutBackend
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    rng: np.random.Generator  # data order
    generator: torch.Generator  # sampling (hf backend)
    cursor: DataCursor
    pad_id: int
    eos_id: int
    device: torch.device
    autocast: bool
    model_path: str = ""
    step: int = 0
    initial_majority: dict[str, str | None] = field(default_factory=dict)
    # the probe questions, chosen at the first probe
    probe_ids: list[str] = field(default_factory=list)
    initial_exact: dict[str, str | None] = field(default_factory=dict)  # exact initial modes
    # the last step's rollouts and rewards, for inspection and tests
    last_batch: tuple[Packed, np.ndarray] | None = None
    last_vote: Vote | None = None  # and every sample that voted

    # ------------------------------------------------------------------------------------------- rollout
    def sample(self, questions: list[Question], n: int, temperature: float, top_p: float, max_new: int, **kw
               ) -> tuple[Generation, list[str]]:  # fmt: skip
        """``n`` responses per question (rows grouped by question) and their decoded texts; ``kw`` to the backend's
        ``generate`` (``keep_prompt_pass``)."""
        ids = self.prompt_ids(questions)
        gen = self.backend.generate(ids, n, temperature=temperature, top_p=top_p, max_new_tokens=max_new, **kw)  # fmt: skip
        return gen, decode_responses(self.tokenizer, gen.response_ids)

    def prompt_ids(self, questions: list[Question]) -> list[list[int]]:
        """The questions' prompts as token ids (chat template where a question asks for one)."""
        prompts, chats = [q.prompt for q in questions], [q.chat for q in questions]
        return render_prompts(self.tokenizer, prompts, chats, self.cfg.max_prompt_tokens)

    def verify(self, questions: list[Question], texts: list[str]) -> np.ndarray:
        """Self-verification: the policy itself judges each response (1 sample, ``verifier_temperature``)."""
        style = "tiny" if self.cfg.model == "tiny" else "chat"
        checks = [
            Question(q.qid, verification_prompt(q, t, style), None, chat=q.chat)
            for q, t in zip(questions, texts, strict=True)
        ]
        cfg = self.cfg
        _, verdicts = self.sample(
            checks, 1, cfg.verifier_temperature, 1.0, cfg.verifier_max_new_tokens
        )
        return np.array([parse_verdict(v) for v in verdicts], dtype=np.float64)

    def reward_function(self, questions: list[Question], texts: list[str]):
        """The training reward for this batch: ``fn(Rollouts) -> (B,)`` (see :mod:`sharpen.rewards`), given the
        options it takes of those the run offers: the policy as its ``verifier``, the task's ``check`` (a
        question is its own label, see :meth:`score_batch`) and ``aggregate``."""
        offered = {"verifier": lambda r: self.verify(questions, texts), "check": self.task.check}
        if self.cfg.reward_aggregate:
            offered["aggregate"] = self.cfg.reward_aggregate
        accepted = reward_info(self.cfg.reward).options
        return get_reward(self.cfg.reward, **{k: v for k, v in offered.items()
                                              if accepted is None or k in accepted})  # fmt: skip

    # ------------------------------------------------------------------------------- the old pass, scoring
    def forward(self, part: Packed, prompts=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy's response logits ``(b, T, V)`` and the sampled tokens' log-probabilities ``(b, T)`` at the
        rollout temperature (with grad unless under ``no_grad``), taking the sampler's prompt pass where it fits."""
        logits = response_logits(self.model, part, autocast=self.autocast, prompts=prompts)
        return logits, token_logprobs(logits, part.tokens, self.cfg.temperature)

    def observe(self, old: OldPass, rows: slice, part: Packed, logits, logp, reward_fn) -> None:
        """Record rows ``rows`` (``part``) of the old pass from detached ``logits (b, T, V)`` and ``logp (b, T)``:
        log-probs, entropy, the reference policy's log-probs and, for a token-level reward, its rewards."""
        tau = self.cfg.temperature
        old.logp[rows] = logp
        old.entropy_sum += float(token_entropies(logits, tau)[part.mask].sum())
        if reads_logits(self.cfg.reward):
            rollouts = Rollouts(logits=logits, tokens=part.tokens, mask=part.mask, temperature=tau)
            old.token_rewards.append(reward_fn(rollouts))
        if old.ref_logp is not None:
            with torch.no_grad():
                ref_z = response_logits(self.ref_model, part, autocast=self.autocast)
                old.ref_logp[rows] = token_logprobs(ref_z, part.tokens, tau)

    def old_pass(self, batch: Packed, micro: int, reward_fn) -> OldPass:
        """The separate no-grad pass over the whole batch, ``micro`` rows at a time."""
        old = OldPass.empty(batch, reference=self.ref_model is not None)
        with torch.no_grad():
            for rows, part in batch.chunks(micro):
                self.observe(old, rows, part, *self.forward(part), reward_fn)
        return old

    def score_batch(
        self,
        reward_fn,
        questions: list[Question],
        answers: list,
        texts: list[str],
        old: OldPass,
        vote: Vote | None = None,
    ):
        """The batch's ``(B,)`` float64 rewards, for either level: a token-level reward was computed from the old
        pass's logits (:meth:`observe`); an answer-level one reads the answers, grouped by question, with the
        questions themselves as labels (the task's ``check`` grades an answer against its question). Given the
        step's ``vote``, an answer-level reward reads every sample that voted (``n_votes`` per question), so a
        trained rollout is scored against the majority of all of them, and the trained rows' values are kept;
        an external reward (a verifier) judges the trained rows only."""
        if reads_logits(self.cfg.reward):
            return torch.cat(old.token_rewards).double().cpu().numpy()
        n = self.cfg.n_rollouts
        against_vote = vote is not None and reward_info(self.cfg.reward).level == "answer"
        if against_vote:
            questions, answers, texts, n = vote.questions, vote.answers, vote.texts, vote.size
        rollouts = Rollouts(answers=answers, groups=[i // n for i in range(len(questions))],
                            labels=questions, responses=texts,
                            prompts=[q.prompt for q in questions])  # fmt: skip
        scores = np.asarray(reward_fn(rollouts), dtype=np.float64)
        return scores[vote.keep] if against_vote else scores

    # ------------------------------------------------------------------------------------------- one step
    def train_step(self) -> dict[str, float]:
        """Sample, score, update once per mini-batch; return the step's metrics."""
        cfg, n = self.cfg, self.cfg.n_rollouts
        t0 = time.perf_counter()

        # ---------------------------------------------------------------- data and rollout
        picked = [
            self.task.train[i]
            for i in self.cursor.take(cfg.prompts_per_step, self.rng, cfg.shuffle)
        ]
        b = len(picked) * n  # trained rows
        mini = cfg.mini_batch_size or b
        micro = cfg.micro_batch_size or mini
        token_level = reads_logits(cfg.reward)
        one_pass = cfg.reuse_forward and mini == b and (micro == b or not token_level)
        # n_votes samples per question vote; GRPO trains on the first n of each (all when n_votes = n); a forward
        # of the whole batch takes the sampler's prompt pass (same prompts and weights)
        m, whole_pass = cfg.votes_per_prompt, one_pass and micro == b
        gen, voted = self.sample(picked, m, cfg.temperature, cfg.top_p, cfg.max_new_tokens, keep_prompt_pass=whole_pass)  # fmt: skip
        vote = Vote.of(picked, voted, self.task.parse, n)
        keep = vote.keep  # (B,) of the G * m samples
        # prompt_ids (G, P) once per question; tokens, mask: (B, T) with B = G * n
        batch = pack([gen.prompt_ids[i] for i in keep], [gen.response_ids[i] for i in keep],
                     self.pad_id, self.device)  # fmt: skip
        questions, answers, texts = vote.trained()  # row i answers question i // n
        correct = grade(self.task, questions, answers)  # (B,) 0/1, measured whatever the reward
        t_rollout = time.perf_counter()

        # ---------------------------------------------------------------- the old pass, rewards, advantages
        # The old pass: log-probs, entropy, reference log-probs and token-level rewards of the batch under the
        # policy that sampled it. The one-pass shortcut: with one on-policy update (mini-batch = batch) the
        # gradient pass provides them (its detached log-probs are the old ones: ratio 1). A token-level reward
        # needs every row's logits before any advantage, so it takes the shortcut only as one micro-batch,
        # whose gradient pass then runs here, ahead of the loss.
        reward_fn = self.reward_function(questions, texts)
        self.model.train()
        ahead = None  # (logits, logp) with grad: the shortcut's gradient pass, when it runs here
        if not one_pass:
            old = self.old_pass(batch, micro, reward_fn)
        else:
            old = OldPass.empty(batch, reference=self.ref_model is not None)
            if token_level:  # micro = B
                whole = batch.rows(slice(0, b))
                ahead = self.forward(whole, gen.prompt_pass)
                self.observe(old, slice(0, b), whole, *(t.detach() for t in ahead), reward_fn)
        rewards = self.score_batch(reward_fn, questions, answers, texts, old, vote)
        # advantage: (r - mean) / (std + eps) within each question's group
        grouped = rewards.reshape(-1, n)  # (G, N)
        adv = group_advantages(grouped, normalize_std=cfg.normalize_std, eps=cfg.adv_eps)
        adv = torch.as_tensor(adv.reshape(-1), dtype=torch.float32, device=self.device)  # (B,)

        # ---------------------------------------------------------------- loss and update, per mini-batch
        losses, clip_fracs, grad_norm = [], [], 0.0
        for start in range(0, b, mini):
            self.optimizer.zero_grad(set_to_none=True)
            n_tok = batch.mask[start : start + mini].sum()
            for rows, part in batch.chunks(micro, start, start + mini):
                # (b, T, V) with grad, (b, T)
                logits, logp = ahead or self.forward(part, gen.prompt_pass)
                # the shortcut: these rows' old values are this pass's
                if one_pass and not token_level:
                    self.observe(old, rows, part, logits.detach(), logp.detach(), reward_fn)
                loss, stats = policy_loss(logp, old.logp[rows], adv[rows], part.mask,
                                          clip_eps=cfg.clip_eps, agg=cfg.loss_agg)  # fmt: skip
                if cfg.kl_coef > 0:
                    kl = kl_k3(logp, old.ref_logp[rows])
                    loss = loss + cfg.kl_coef * agg_loss(kl, part.mask, cfg.loss_agg)
                # weight micro-batches so the mini-batch loss keeps its aggregation (tokens or sequences)
                token_mean = cfg.loss_agg == "token-mean"
                weight = part.mask.sum() / n_tok if token_mean else part.mask.shape[0] / mini
                (loss * weight).backward()
                losses.append(float(loss.detach()) * float(weight))
                clip_fracs.append(stats["clip_frac"])
            if cfg.max_grad_norm > 0:
                params = self.model.parameters()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
            self.optimizer.step()
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.backend.sync(self.model)
        self.step += 1
        self.last_batch, self.last_vote = (batch, rewards), vote
        t_update = time.perf_counter()

        # ---------------------------------------------------------------- metrics (TTRL names, behaviour)
        spec = reward_info(cfg.reward).spec  # a probability (sequence unit): its underflow share
        out = batch_metrics(self.task, vote, rewards, correct, tokens=batch.tokens, mask=batch.mask,
                            eos_id=self.eos_id, logprobs=old.logp, ref_logprobs=old.ref_logp,
                            entropy_sum=old.entropy_sum,
                            sequence_reward=spec is not None and spec.unit == "sequence")  # fmt: skip
        out.update(loss=float(sum(losses) * mini / b), clip_frac=float(np.mean(clip_fracs)),
                   grad_norm=grad_norm, lr=lr)  # fmt: skip
        out["time/rollout"] = t_rollout - t0
        out["time/update"] = t_update - t_rollout
        out["time/step"] = t_update - t0
        return out

    # -------------------------------------------------------------------------------------- probes, eval
    @property
    def exact(self) -> bool:
        """Whether answer probabilities are exact for this run: the task lists its answers, ``exact_probes`` is on
        and ``top_p = 1`` (otherwise the sampler draws from the nucleus, not from the scored distribution)."""
        return bool(self.cfg.exact_probes and self.task.candidates and self.cfg.top_p == 1.0)

    def exact_answers(
        self, questions: list[Question], initial: list[str | None] | None = None
    ) -> AnswerSummary | None:
        """Exact answer distributions of ``questions`` at the rollout temperature (``empirical.exact``); None
        unless :attr:`exact`."""
        cfg = self.cfg
        if not self.exact:
            return None
        ids = self.prompt_ids(questions)
        return exact_probe(self.model, self.tokenizer, ids, self.task.candidates, temperature=cfg.temperature,
                           eos_id=self.eos_id, pad_id=self.pad_id, labels=[q.label for q in questions],
                           initial_majority=initial, n_votes=cfg.votes_per_prompt)  # fmt: skip

    def probe_questions(self) -> list[Question]:
        """The fixed probe questions: chosen once (``probe_selection``), then kept for the whole run."""
        cfg = self.cfg
        if not self.probe_ids:
            stratified = cfg.probe_selection == "stratified"
            pool = list(self.task.train[: cfg.n_probe * (8 if stratified else 1)])
            exact = self.exact_answers(pool) if stratified else None
            n = cfg.n_probe
            picked = range(n) if exact is None else measure.stratified_probes(exact.p_majority, n)
            self.probe_ids = [pool[i].qid for i in picked if i < len(pool)]
        by_id = {q.qid: q for q in self.task.train}
        return [by_id[qid] for qid in self.probe_ids]

    def probe(self) -> list[ProbeRecord]:
        """Per probe question: the sampled majority answer and its share, the share of the *initial* majority,
        and -- where the task lists its answers -- the same from the exact answer distribution."""
        cfg = self.cfg
        questions = self.probe_questions()
        _, texts = self.sample(
            questions, cfg.probe_samples, cfg.temperature, cfg.top_p, cfg.max_new_tokens
        )
        if self.step == 0:
            self.initial_majority, self.initial_exact = {}, {}
        known = [self.initial_exact.get(q.qid) for q in questions] if self.initial_exact else None
        exact = self.exact_answers(questions, known)
        records = probe_records(self.task, questions, texts, m=cfg.probe_samples, step=self.step,
                                initial_majority=self.initial_majority, exact=exact)  # fmt: skip
        for r in records:
            self.initial_majority.setdefault(r.question_id, r.initial_majority_answer)
            if exact is not None:
                self.initial_exact.setdefault(r.question_id, r.exact_initial_majority_answer)
        return records

    def evaluate(self) -> dict[str, float]:
        """Held-out avg@k, maj@k, greedy accuracy, behaviour and -- for listed answers -- ``exact_accuracy``: the
        label's mean probability at the rollout temperature (no sampling noise) with its SE over questions."""
        cfg, k = self.cfg, self.cfg.eval_samples
        questions = list(self.task.heldout[: cfg.n_eval or None])
        gen, texts = self.sample(
            questions, k, cfg.eval_temperature, cfg.eval_top_p, cfg.max_new_tokens
        )
        greedy = (
            self.sample(questions, 1, 0.0, 1.0, cfg.max_new_tokens)[1] if cfg.eval_greedy else None
        )
        p = None
        if self.exact:  # labels are listed answers: score them exactly
            labels = candidate_ids(self.tokenizer, [q.label for q in questions], self.eos_id)
            p = label_probs(self.model, self.prompt_ids(questions), labels, temperature=cfg.temperature,
                            pad_id=self.pad_id)  # fmt: skip
        return heldout_metrics(self.task, questions, texts, k=k, greedy_texts=greedy,
                               responses=gen.response_ids, eos_id=self.eos_id, label_probs=p)  # fmt: skip


# ==========================================================================================================
# set-up and the loop
# ==========================================================================================================


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then constant or cosine to 0 at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def model_path(cfg: TrainConfig) -> str:
    """Folder (or hub id) of the run's initial policy, pretraining and caching the tiny prior if needed."""
    return resolve_model_path(cfg.model, pretrain_corpus=cfg.pretrain_corpus, pretrain_steps=cfg.pretrain_steps,
                              pretrain_accuracy=cfg.pretrain_accuracy, progress=cfg.progress)  # fmt: skip


def build_trainer(cfg: TrainConfig) -> Trainer:
    """Model, reference copy, backend, optimizer and data -- everything before step 1."""
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if want_cuda and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but CUDA is not available")
    device = torch.device("cuda" if want_cuda else "cpu")
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    task = build_task(cfg)
    path = model_path(cfg)
    model, tokenizer = load_model(path, device, trust_remote_code=cfg.trust_remote_code,
                                  gradient_checkpointing=cfg.gradient_checkpointing)  # fmt: skip
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    ref = (
        copy.deepcopy(model).eval().requires_grad_(False) if cfg.kl_coef > 0 or cfg.log_kl else None
    )
    generator = torch.Generator(device=device)
    backend = BACKENDS[cfg.backend].from_run(cfg, model=model, model_path=path, pad_id=pad_id,
                                             eos_id=eos_id, generator=generator)  # fmt: skip
    torch.manual_seed(cfg.seed)  # after the engine, which reseeds torch's global generator
    generator.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
    )  # fused: one kernel for all parameters (CPU and CUDA)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step))
    order = (
        rng.permutation(len(task.train)).tolist() if cfg.shuffle else list(range(len(task.train)))
    )
    return Trainer(cfg=cfg, task=task, model=model, ref_model=ref, tokenizer=tokenizer, backend=backend,
                   optimizer=optimizer, scheduler=scheduler, rng=rng, generator=generator,
                   cursor=DataCursor(order), pad_id=pad_id, eos_id=eos_id, device=device,
                   autocast=device.type == "cuda" and cfg.precision == "bfloat16", model_path=path)  # fmt: skip


def train(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Run GRPO as configured; return the run folder (``cfg.out_dir``).

    ``resume=True`` continues from the newest checkpoint in the run folder that loads (an unreadable newer one
    is skipped with a warning): logs past it are dropped and the RNG states restored, so on CPU with the same
    seed the logs equal those of an uninterrupted run (wall-clock ``time/*`` fields aside). A larger
    ``cfg.steps`` extends a run. Without a checkpoint it starts over. Raises ``ValueError`` if the folder
    already holds a different configuration (naming the fields) or run files without ``config.json``, or any
    run when ``resume`` is False.
    """
    run_dir = Path(cfg.out_dir)
    check_run_folder(run_dir, cfg, resume=resume)
    reporter = REPORTERS[cfg.report_to](run_dir)  # a missing package fails here, before training
    writer = RunWriter(run_dir)
    trainer = build_trainer(cfg)
    checkpoint = restore_latest(run_dir, partial(restore_trainer, trainer)) if resume else None
    writer.truncate_after(trainer.step if checkpoint is not None else -1)
    header = measure.run_header(cfg, trainer.model_path, len(trainer.task.train))
    writer.write_config(header, {"train": cfg.to_dict(), "model_path": trainer.model_path})
    env = {
        "device": str(trainer.device),
        "backend": cfg.backend,
        "torch_threads": torch.get_num_threads(),
    }
    writer.write_json("env.json", {**environment_info(), **env})

    def probe_and_evaluate() -> None:
        if cfg.probe_every and trainer.step % cfg.probe_every == 0:
            writer.log_probes(trainer.probe())
        if cfg.eval_every and trainer.task.heldout and trainer.step % cfg.eval_every == 0:
            evaluation = trainer.evaluate()
            writer.log_eval(trainer.step, "heldout", evaluation)
            reporter.log(trainer.step, evaluation, section="heldout")

    reporter.start(step=trainer.step, config=cfg.to_dict())
    try:
        if trainer.step == 0:
            probe_and_evaluate()
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=trainer.step, desc="grpo", dynamic_ncols=True)
        while trainer.step < cfg.steps:
            metrics = trainer.train_step()
            writer.log_metrics(trainer.step, metrics)
            reporter.log(trainer.step, metrics, section="train")
            probe_and_evaluate()
            if (
                cfg.checkpoint_every and trainer.step % cfg.checkpoint_every == 0
            ) or trainer.step == cfg.steps:
                save_trainer(trainer, run_dir)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", maj=f"{metrics['majority_ratio']:.3f}",
                                acc=f"{metrics['ground_truth_ratio']:.3f}")  # fmt: skip
        if bar is not None:
            bar.close()
    finally:
        reporter.close()
    return run_dir
