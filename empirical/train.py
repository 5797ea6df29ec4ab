r"""The GRPO loop: rollouts from a causal LM, an intrinsic (or ground-truth) reward, group-normalised advantages,
the clipped surrogate, AdamW -- and the records that Theorem 1 and the figures are fitted to.

Read it top to bottom: config -> data -> model -> rollout -> reward -> advantage -> loss -> update -> logging ->
checkpoint. All reward, advantage, loss and metric math comes from :mod:`sharpen`.

Certainty rewards (self-certainty, token / trajectory entropy, probability) are computed *exactly* from the
trainer's own forward pass over the full vocabulary, with the rollout temperature applied and logits aligned to
the sampled tokens (positions ``P-1 .. P+T-2``). With one update per batch (the default) that forward pass is
also the gradient pass, so ``old_logp = logp.detach()`` and the ratio is 1.

>>> from empirical.config import preset                       # doctest: +SKIP
>>> run_dir = train(preset("tiny-arith-ttrl").replace(steps=20))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from empirical.config import TrainConfig
from empirical.rollout import HFBackend, Packed, VLLMBackend, pack, render_prompts
from empirical.tasks import (
    Question,
    Task,
    arithmetic_task,
    countdown_task,
    load_dapo,
    load_math_jsonl,
    math_task,
    verification_prompt,
)
from sharpen import metrics as M
from sharpen.answers import canonicalize, majority_vote, parse_verdict
from sharpen.grpo import agg_loss, group_advantages, kl_k3, masked_mean, policy_loss
from sharpen.records import ProbeRecord, RunWriter, environment_info
from sharpen.rewards import Rollouts, get_reward, token_entropies, token_logprobs

CHECKPOINTS = "checkpoints"


# ==========================================================================================================
# data
# ==========================================================================================================


def build_task(cfg: TrainConfig) -> Task:
    """The questions of ``cfg.task`` (generated, or read from ``cfg.data_path`` / ``cfg.heldout_path``)."""
    style = "tiny" if cfg.model == "tiny" else "chat"
    if cfg.task == "arith":
        return arithmetic_task(n_train=cfg.n_train, n_heldout=cfg.n_heldout, seed=cfg.data_seed)
    if cfg.task == "countdown":
        return countdown_task(
            n_train=cfg.n_train, n_heldout=cfg.n_heldout, style=style, seed=cfg.data_seed
        )
    limit = cfg.n_train or None
    train = (
        load_dapo(cfg.data_path, limit=limit)
        if cfg.task == "dapo"
        else load_math_jsonl(cfg.data_path, limit=limit)
    )
    heldout = (
        load_math_jsonl(cfg.heldout_path, limit=cfg.n_heldout or None) if cfg.heldout_path else []
    )
    return math_task(train, heldout, name=cfg.task, math_verify=cfg.math_verify)


# ==========================================================================================================
# model
# ==========================================================================================================


def resolve_model_path(cfg: TrainConfig) -> str:
    """Folder (or hub id) of the initial policy; pretrains and caches the tiny model if needed."""
    if cfg.model == "tiny":
        from empirical.tiny import PretrainConfig, pretrained_tiny_model

        return str(
            pretrained_tiny_model(
                PretrainConfig(corpus=cfg.pretrain_corpus, steps=cfg.pretrain_steps)
            )
        )
    path = Path(cfg.model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(f"model: {path} is not a Hugging Face model folder (no config.json)")
        return str(path)
    if cfg.model.startswith(("/", ".", "~")) or cfg.model.count("/") != 1:
        raise ValueError(f"model: no such model folder {cfg.model!r} (and not a hub id 'org/name')")
    return cfg.model


def load_model(path: str, cfg: TrainConfig, device: torch.device):
    """A causal LM in float32 (master weights; bf16 enters through autocast) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bar reports the run; per-file loading bars are noise
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, trust_remote_code=cfg.trust_remote_code
        )
    except OSError as err:
        raise ValueError(
            f"model: cannot load {path!r} (no local folder and no hub access?): {err}"
        ) from None
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model.to(device), tokenizer


def forward_logits(model, batch: Packed, autocast: bool) -> torch.Tensor:
    """Logits aligned with the response tokens: model positions ``P-1 .. P+T-2``, shape ``(B, T, V)``."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=False,
        )
    return out.logits[:, batch.prompt_len - 1 : -1]


# ==========================================================================================================
# the trainer state that a checkpoint holds
# ==========================================================================================================


@dataclass
class DataCursor:
    """Order of the training questions and the position in it; reshuffled (or not) each epoch."""

    order: list[int]
    position: int = 0

    def take(self, k: int, rng: np.random.Generator, shuffle: bool) -> list[int]:
        out = []
        while len(out) < k:
            if self.position == len(self.order):
                self.order = rng.permutation(len(self.order)).tolist() if shuffle else self.order
                self.position = 0
            out.append(self.order[self.position])
            self.position += 1
        return out


@dataclass
class Trainer:
    """Everything the loop mutates (policy, optimizer, RNGs, data cursor, the initial probe majorities)."""

    cfg: TrainConfig
    task: Task
    model: object
    ref_model: object | None
    tokenizer: object
    backend: object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    rng: np.random.Generator
    cursor: DataCursor
    pad_id: int
    eos_id: int
    device: torch.device
    autocast: bool
    model_path: str = ""
    step: int = 0
    initial_majority: dict[str, str | None] = field(default_factory=dict)
    last_batch: tuple[Packed, np.ndarray] | None = None

    # -------------------------------------------------------------------------------------------------- rollout
    def sample(
        self, questions: list[Question], n: int, temperature: float, top_p: float, max_new: int
    ):
        """``n`` responses per question: a :class:`Generation` and the decoded texts."""
        ids = render_prompts(
            self.tokenizer,
            [q.prompt for q in questions],
            [q.chat for q in questions],
            self.cfg.max_prompt_tokens,
        )
        gen = self.backend.generate(
            ids, n, temperature=temperature, top_p=top_p, max_new_tokens=max_new
        )
        texts = self.tokenizer.batch_decode(gen.response_ids, skip_special_tokens=True)
        return gen, texts

    def verify(self, questions: list[Question], texts: list[str]) -> np.ndarray:
        """Self-verification: the policy itself judges each response (1 sample, ``verifier_temperature``)."""
        style = "tiny" if self.cfg.model == "tiny" else "chat"
        prompts = [verification_prompt(q, t, style) for q, t in zip(questions, texts, strict=True)]
        checks = [
            Question(q.qid, p, None, chat=q.chat) for q, p in zip(questions, prompts, strict=True)
        ]
        _, verdicts = self.sample(
            checks, 1, self.cfg.verifier_temperature, 1.0, self.cfg.verifier_max_new_tokens
        )
        return np.array([parse_verdict(v) for v in verdicts], dtype=np.float64)

    # --------------------------------------------------------------------------------------------- one step
    def train_step(self) -> dict[str, float]:
        cfg, n = self.cfg, self.cfg.n_rollouts
        t0 = time.perf_counter()
        picked = [
            self.task.train[i]
            for i in self.cursor.take(cfg.prompts_per_step, self.rng, cfg.shuffle)
        ]
        gen, texts = self.sample(picked, n, cfg.temperature, cfg.top_p, cfg.max_new_tokens)
        batch = pack(gen, self.pad_id, self.device)  # tokens, mask: (B, T)
        questions = [q for q in picked for _ in range(n)]  # row i -> question i // n
        groups = [i // n for i in range(len(questions))]
        answers = [self.task.parse(t) for t in texts]
        correct = np.array(
            [float(self.task.check(q, a)) for q, a in zip(questions, answers, strict=True)]
        )
        t_rollout = time.perf_counter()

        # ------------------------------------------------ reward (+ old log-probs) from the trainer's forward
        reward_fn = self._reward_fn(questions, texts)
        needs_logits = getattr(getattr(reward_fn, "spec", None), "needs_logits", False)
        b = batch.tokens.shape[0]
        mini = cfg.mini_batch_size or b
        micro = cfg.micro_batch_size or mini
        fused = micro == b  # one forward serves reward, old log-probs and gradient
        self.model.train()
        chunks = [slice(i, i + micro) for i in range(0, b, micro)]
        old_logp, ref_logp, ent_sum, logit_rewards = [], [], 0.0, []
        grad_logits = None
        for sl in chunks:
            part = batch.rows(sl)
            with torch.set_grad_enabled(fused):
                logits = forward_logits(self.model, part, self.autocast)  # (b, T, V)
            if fused:
                grad_logits = logits
            z = logits.detach()
            old_logp.append(token_logprobs(z, part.tokens, cfg.temperature))
            ent_sum += float(token_entropies(z, cfg.temperature)[part.mask].sum())
            if needs_logits:
                r = Rollouts(
                    logits=z, tokens=part.tokens, mask=part.mask, temperature=cfg.temperature
                )
                logit_rewards.append(reward_fn(r))
            if self.ref_model is not None:
                with torch.no_grad():
                    ref_z = forward_logits(self.ref_model, part, self.autocast)
                    ref_logp.append(token_logprobs(ref_z, part.tokens, cfg.temperature))
        old_logp = torch.cat(old_logp)  # (B, T)
        ref_logp = torch.cat(ref_logp) if ref_logp else None
        if needs_logits:
            rewards = torch.cat(logit_rewards).double().cpu().numpy()
        else:
            rewards = np.asarray(
                reward_fn(
                    Rollouts(
                        answers=answers,
                        groups=groups,
                        labels=[q.label for q in questions],
                        responses=texts,
                        prompts=[q.prompt for q in questions],
                    )
                ),
                dtype=np.float64,
            )
        t_reward = time.perf_counter()

        # ------------------------------------------------ advantage
        adv = group_advantages(
            rewards.reshape(-1, n), normalize_std=cfg.normalize_std, eps=cfg.adv_eps
        ).reshape(-1)  # (B,)
        adv_t = torch.as_tensor(adv, dtype=torch.float32, device=self.device)

        # ------------------------------------------------ loss and update (one optimizer step per mini-batch)
        losses, clip_fracs, grad_norm = [], [], 0.0
        for start in range(0, b, mini):
            rows = slice(start, start + mini)
            n_tok = batch.mask[rows].sum()
            self.optimizer.zero_grad(set_to_none=True)
            for sl in (
                chunks
                if fused
                else [slice(i, i + micro) for i in range(start, start + mini, micro)]
            ):
                part = batch.rows(sl)
                logits = grad_logits if fused else forward_logits(self.model, part, self.autocast)
                logp = token_logprobs(
                    logits, part.tokens, cfg.temperature
                )  # (b, T), differentiable
                loss, stats = policy_loss(
                    logp,
                    old_logp[sl],
                    adv_t[sl],
                    part.mask,
                    clip_eps=cfg.clip_eps,
                    agg=cfg.loss_agg,
                )
                if cfg.kl_coef > 0:
                    loss = loss + cfg.kl_coef * agg_loss(
                        kl_k3(logp, ref_logp[sl]), part.mask, cfg.loss_agg
                    )
                # weight micro-batches so the mini-batch loss keeps its aggregation (tokens or sequences)
                weight = (
                    (part.mask.sum() / n_tok)
                    if cfg.loss_agg == "token-mean"
                    else (part.mask.shape[0] / mini)
                )
                (loss * weight).backward()
                losses.append(float(loss.detach()) * float(weight))
                clip_fracs.append(stats["clip_frac"])
            if cfg.max_grad_norm > 0:
                grad_norm = float(
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                )
            self.optimizer.step()
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.backend.sync(self.model)
        self.step += 1
        self.last_batch = (
            batch,
            rewards,
        )  # for inspection and tests: the packed rollouts and their rewards
        t_update = time.perf_counter()

        # ------------------------------------------------ metrics (TTRL names)
        binary = bool(np.isin(rewards, (0.0, 1.0)).all())
        labels = list(
            questions
        )  # a question is its own label; task.check grades an answer against it
        out = M.ttrl_metrics(
            answers,
            labels,
            groups,
            proxy_rewards=rewards if binary else None,
            correct=correct,
            equivalent=lambda q, a: bool(self.task.check(q, a)),
        )
        if not binary:
            out["majority_voting_reward"] = M.majority_voting_reward(rewards)
            out["pseudo_label_acc"] = M.pseudo_label_acc(rewards, correct, groups)
            out["point_biserial"] = M.point_biserial(rewards, correct)
        if cfg.reward == "probability":
            lp_sum = (old_logp * batch.mask).sum(-1).double().cpu().numpy()
            out["underflow_fraction"] = M.underflow_fraction(lp_sum)
        n_resp_tok = float(batch.mask.sum())
        out.update(
            reward_mean=float(rewards.mean()),
            reward_std=float(rewards.std()),
            frac_reward_zero_std=float((rewards.reshape(-1, n).std(-1) == 0).mean()),
            entropy=ent_sum / n_resp_tok,
            response_length=M.response_length(batch.mask.cpu().numpy()),
            loss=float(sum(losses) * mini / b),
            clip_frac=float(np.mean(clip_fracs)),
            grad_norm=grad_norm,
            lr=lr,
        )
        if ref_logp is not None:
            out["kl_to_initial"] = float(masked_mean(kl_k3(old_logp, ref_logp), batch.mask))
        out["time/rollout"] = t_rollout - t0
        out["time/reward"] = t_reward - t_rollout
        out["time/update"] = t_update - t_reward
        out["time/step"] = t_update - t0
        return out

    def _reward_fn(self, questions: list[Question], texts: list[str]):
        cfg = self.cfg
        if cfg.reward == "self_verification":
            return get_reward("self_verification", verifier=lambda r: self.verify(questions, texts))
        if cfg.reward == "ground_truth" and self.task.name == "countdown":
            # Countdown's truth is the safe evaluator, not string equality with one reference solution
            return lambda r: np.array(
                [float(self.task.check(q, a)) for q, a in zip(questions, r.answers, strict=True)]
            )
        if cfg.reward == "ground_truth":
            return get_reward("ground_truth", math_verify=cfg.math_verify)
        options = {"aggregate": cfg.reward_aggregate} if cfg.reward_aggregate else {}
        return get_reward(cfg.reward, **options)

    # -------------------------------------------------------------------------------------------- probes
    def probe(self) -> list[ProbeRecord]:
        """Majority answer and its share, and the share of the *initial* majority, per probe question."""
        cfg, m = self.cfg, self.cfg.probe_samples
        questions = list(self.task.train[: cfg.n_probe])
        _, texts = self.sample(questions, m, cfg.temperature, cfg.top_p, cfg.max_new_tokens)
        records = []
        for i, q in enumerate(questions):
            answers = [self.task.parse(t) for t in texts[i * m : (i + 1) * m]]
            canon = [canonicalize(a) for a in answers]
            vote = majority_vote(answers)
            if self.step == 0 or q.qid not in self.initial_majority:
                self.initial_majority[q.qid] = vote.answer
            initial = self.initial_majority[q.qid]
            records.append(
                ProbeRecord(
                    step=self.step,
                    question_id=q.qid,
                    n_samples=m,
                    majority_answer=vote.answer,
                    p_majority=vote.ratio,
                    initial_majority_answer=initial,
                    p_initial_majority=(sum(c == initial for c in canon) / m)
                    if initial is not None
                    else 0.0,
                    label=q.label,
                    majority_correct=bool(self.task.check(q, vote.answer)),
                    sample_accuracy=float(np.mean([self.task.check(q, a) for a in answers])),
                )
            )
        return records

    def evaluate(self) -> dict[str, float]:
        """Held-out avg@k (``eval_samples`` at ``eval_temperature``), maj@k and greedy accuracy."""
        cfg, k = self.cfg, self.cfg.eval_samples
        questions = list(self.task.heldout[: cfg.n_eval or None])
        _, texts = self.sample(
            questions, k, cfg.eval_temperature, cfg.eval_top_p, cfg.max_new_tokens
        )
        answers = [self.task.parse(t) for t in texts]
        rows = [q for q in questions for _ in range(k)]
        correct = [float(self.task.check(q, a)) for q, a in zip(rows, answers, strict=True)]
        out = {
            f"avg@{k}": float(np.mean(correct)),
            f"maj@{k}": float(
                np.mean(
                    [
                        self.task.check(q, majority_vote(answers[i * k : (i + 1) * k]).answer)
                        for i, q in enumerate(questions)
                    ]
                )
            ),
            "n_questions": len(questions),
        }
        if cfg.eval_greedy:
            _, greedy = self.sample(questions, 1, 0.0, 1.0, cfg.max_new_tokens)
            out["greedy_accuracy"] = float(
                np.mean([self.task.correct(q, t) for q, t in zip(questions, greedy, strict=True)])
            )
        return out

    # ---------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, run_dir: Path) -> Path:
        """``checkpoints/step-XXXXXX``: safetensors weights + optimizer, scheduler, RNG and data state."""
        root = run_dir / CHECKPOINTS
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step-{self.step:06d}"
        tmp = root / f".tmp-step-{self.step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp, safe_serialization=True)
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy_rng": self.rng.bit_generator.state,
            "order": self.cursor.order,
            "position": self.cursor.position,
            "initial_majority": self.initial_majority,
        }
        torch.save(state, tmp / "trainer.pt")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(root.glob("step-*"))[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, path: Path) -> None:
        """Restore weights, optimizer, scheduler, data cursor and -- last -- every RNG."""
        from safetensors.torch import load_file

        weights = load_file(path / "model.safetensors", device=str(self.device))
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        tied = (
            {"lm_head.weight"}
            if getattr(self.model.config, "tie_word_embeddings", False)
            else set()
        )
        if set(missing) - tied or unexpected:
            raise ValueError(
                f"checkpoint: {path} does not match the model ({missing=}, {unexpected=})"
            )
        state = torch.load(path / "trainer.pt", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.cursor = DataCursor(list(state["order"]), int(state["position"]))
        self.initial_majority = dict(state["initial_majority"])
        self.step = int(state["step"])
        self.backend.sync(self.model)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.rng.bit_generator.state = state["numpy_rng"]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run folder, if any."""
    done = [
        p for p in sorted((run_dir / CHECKPOINTS).glob("step-*")) if (p / "trainer.pt").is_file()
    ]
    return done[-1] if done else None


# ==========================================================================================================
# set-up and the loop
# ==========================================================================================================


def _lr_lambda(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def build_trainer(cfg: TrainConfig) -> Trainer:
    """Model, reference copy, backend, optimizer and data -- everything before step 1."""
    device = torch.device(
        "cuda"
        if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but CUDA is not available")
    task = build_task(cfg)
    path = resolve_model_path(cfg)
    model, tokenizer = load_model(path, cfg, device)
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    ref = None
    if cfg.kl_coef > 0 or cfg.log_kl:
        ref = copy.deepcopy(model).eval().requires_grad_(False)
    if cfg.backend == "vllm":
        backend = VLLMBackend(
            path,
            pad_id=pad_id,
            eos_id=eos_id,
            seed=cfg.seed,
            max_model_len=cfg.max_prompt_tokens + cfg.max_new_tokens,
            gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
            dtype="bfloat16" if cfg.precision == "bfloat16" else "float32",
            trust_remote_code=cfg.trust_remote_code,
        )
    else:
        backend = HFBackend(model, tokenizer, pad_id=pad_id, eos_id=eos_id)
    torch.manual_seed(cfg.seed)  # after the engine, which reseeds torch's global generator
    rng = np.random.default_rng(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    n_train = len(task.train)
    order = rng.permutation(n_train).tolist() if cfg.shuffle else list(range(n_train))
    return Trainer(
        cfg=cfg,
        task=task,
        model=model,
        ref_model=ref,
        tokenizer=tokenizer,
        backend=backend,
        optimizer=optimizer,
        scheduler=scheduler,
        rng=rng,
        cursor=DataCursor(order),
        pad_id=pad_id,
        eos_id=eos_id,
        device=device,
        autocast=device.type == "cuda" and cfg.precision == "bfloat16",
        model_path=path,
    )


def train(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Run GRPO as configured; return the run folder (``cfg.out_dir``).

    ``resume=True`` continues from the newest checkpoint in the run folder: logs past it are dropped and the
    RNG states restored, so on CPU with the same seed the logs equal those of an uninterrupted run (wall-clock
    ``time/*`` fields aside). Without a checkpoint it starts over. Raises ``ValueError`` if the folder already
    holds a different configuration.
    """
    run_dir = Path(cfg.out_dir)
    writer = RunWriter(run_dir)
    config_path = run_dir / "config.json"
    if config_path.exists():
        import json

        stored = json.loads(config_path.read_text(encoding="utf-8")).get("train") or {}
        try:
            same = TrainConfig.from_dict(stored) == cfg
        except (TypeError, ValueError):
            same = False
        if not same:
            raise ValueError(f"out_dir: {run_dir} holds a run with a different configuration")
        if not resume:
            raise ValueError(
                f"out_dir: {run_dir} already holds a run; pass resume=True (--resume) or another folder"
            )
    trainer = build_trainer(cfg)
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        trainer.load_checkpoint(checkpoint)
    writer.truncate_after(trainer.step if checkpoint is not None else -1)
    writer.write_json(
        "config.json",
        {"kind": "empirical", "train": cfg.to_dict(), "model_path": trainer.model_path},
    )
    writer.write_json(
        "env.json", {**environment_info(), "device": str(trainer.device), "backend": cfg.backend}
    )

    def log_probes_and_eval() -> None:
        if cfg.probe_every and trainer.step % cfg.probe_every == 0:
            writer.log_probes(trainer.probe())
        if cfg.eval_every and trainer.task.heldout and trainer.step % cfg.eval_every == 0:
            writer.log_eval(trainer.step, "heldout", trainer.evaluate())

    if trainer.step == 0:
        log_probes_and_eval()
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=trainer.step, desc="grpo", dynamic_ncols=True)
    while trainer.step < cfg.steps:
        metrics = trainer.train_step()
        writer.log_metrics(trainer.step, metrics)
        log_probes_and_eval()
        if (
            cfg.checkpoint_every and trainer.step % cfg.checkpoint_every == 0
        ) or trainer.step == cfg.steps:
            trainer.save_checkpoint(run_dir)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                reward=f"{metrics['reward_mean']:.3f}",
                maj=f"{metrics['majority_ratio']:.3f}",
                acc=f"{metrics['ground_truth_ratio']:.3f}",
            )
    if bar is not None:
        bar.close()
    return run_dir
