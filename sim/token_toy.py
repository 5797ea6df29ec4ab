r"""The token-level toy: a tiny autoregressive policy whose sampled sequences end in an answer.

Vocabulary: ``D`` *reasoning* tokens ``0..D-1`` and ``K`` *answer* tokens ``D..D+K-1``; emitting an answer token ends
the response (it is the end token and the answer at once). A response that reaches ``max_len`` tokens without an
answer is unparseable (answer ``None``).

State after t tokens: the *progress* :math:`c_t` (number of reasoning tokens that differ from the token just before
them, capped at ``D + 1``: a consecutive repeat carries no progress) and the previous token. Logits of the next token
for question q:

.. math::

    z_t(v) = \theta[c_t, v] + \alpha\,\mathbb 1[v = y_{t-1}]
             + \mathbb 1[v = D + a]\,\big(u_q[a] + \kappa\,\mathbb 1[c_t \ge d_q]\,\mathbb 1[a = a^\star_q]\big)

* :math:`\theta` ``(D + 2, V)`` -- *shared* "habits" per progress level (how long to think, when to answer);
* :math:`\alpha` -- a *shared* copy bonus (an LM's tendency to repeat the last token), trainable;
* :math:`u_q` ``(Q, K)`` -- per-question answer logits (the model's guess);
* fixed: the difficulty :math:`d_q` (progress a question needs), its correct answer :math:`a^\star_q` and the bonus
  :math:`\kappa` that enough reasoning gives the correct answer. So correctness depends on the sequence: answering
  early means guessing from :math:`u_q`.

Training is sampled GRPO with veRL's token-mean loss,
:math:`L=\frac{1}{\sum m}\sum_{b,t}m_{bt}A_b\log\pi(y_{bt})`, whose gradient in the logits at (b, t) is
:math:`m_{bt}A_b(e_{y_{bt}}-\pi_{bt})/\sum m`; rewards come from :func:`sharpen.rewards.get_reward` on a
:class:`sharpen.rewards.Rollouts` holding the real ``(B, T, V)`` logits, tokens, mask and answers.

>>> toy = TokenToyConfig(n_questions=4)
>>> pol = init_token_policy(toy, np.random.default_rng(0))
>>> batch = sample_sequences(pol, np.arange(4), 2, np.random.default_rng(1))
>>> batch.tokens.shape[0], batch.logits.shape[2] == toy.n_reasoning + toy.n_answers
(8, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharpen.grpo import group_advantages
from sharpen.rewards import Rollouts, available_rewards, get_reward, reward_info
from sim._threads import torch_single_thread
from sim.core import Optimizer, softmax

__all__ = [
    "TokenToyConfig",
    "TokenPolicy",
    "TokenBatch",
    "init_token_policy",
    "sample_sequences",
    "sequence_logit_grad",
    "train_token_level",
    "token_rewards",
]

BATCH_FIELDS = frozenset({"logits", "tokens", "mask", "answers", "groups", "labels"})
"""What a batch of the toy gives a reward (:func:`batch_rewards`)."""


def token_rewards() -> tuple[str, ...]:
    """The registered rewards the toy trains with: those that need only :data:`BATCH_FIELDS` (no verifier)."""
    return tuple(n for n in available_rewards() if reward_info(n).needs <= BATCH_FIELDS)


@dataclass(frozen=True)
class TokenToyConfig:
    """The token-level toy's structure and initial policy.

    Attributes
    ----------
    n_questions : Q >= 1
    n_reasoning : D >= 1 reasoning tokens
    n_answers : K >= 2 answer tokens
    max_len : T, responses are cut (unparseable) after T tokens without an answer
    max_difficulty : difficulties d_q are uniform on 0..max_difficulty (<= D + 1)
    kappa : logit bonus of the correct answer once progress >= d_q (> 0: reasoning helps)
    answer_logit, answer_logit_slope : initial theta of every answer token at progress c:
        ``answer_logit + answer_logit_slope * c`` (when the policy tends to stop)
    copy_bonus : initial alpha (mild tendency to repeat the previous token)
    strength, spread : per-question answer logits u_q = spread * N(0, 1) + strength * onehot(correct)
    """

    n_questions: int = 64
    n_reasoning: int = 3
    n_answers: int = 4
    max_len: int = 12
    max_difficulty: int = 3
    kappa: float = 3.0
    answer_logit: float = -1.5
    answer_logit_slope: float = 0.5
    copy_bonus: float = 0.5
    strength: float = 0.5
    spread: float = 1.0

    def __post_init__(self) -> None:
        if self.n_questions < 1:
            raise ValueError(f"n_questions: the dataset must not be empty, got {self.n_questions}")
        if self.n_reasoning < 1:
            raise ValueError(f"n_reasoning: need D >= 1, got {self.n_reasoning}")
        if self.n_answers < 2:
            raise ValueError(f"n_answers: K must be >= 2, got {self.n_answers}")
        if self.max_len < 2:
            raise ValueError(f"max_len: need T >= 2, got {self.max_len}")
        if not 0 <= self.max_difficulty <= self.n_reasoning + 1:
            raise ValueError(f"max_difficulty: must lie in [0, D + 1], got {self.max_difficulty}")
        if not self.spread > 0:
            raise ValueError(f"spread: must be > 0, got {self.spread}")


class TokenPolicy:
    """Parameters ``{"theta": (D+2, V), "alpha": (1,), "u": (Q, K)}`` plus the fixed task (see module docstring)."""

    def __init__(
        self,
        theta: np.ndarray,
        alpha: float,
        u: np.ndarray,
        *,
        correct: np.ndarray,
        difficulty: np.ndarray,
        kappa: float,
        n_reasoning: int,
        max_len: int,
    ) -> None:
        theta = np.array(theta, dtype=np.float64)
        u = np.array(u, dtype=np.float64)
        d, k = int(n_reasoning), u.shape[1]
        if theta.shape != (d + 2, d + k):
            raise ValueError(f"theta: expected shape {(d + 2, d + k)}, got {theta.shape}")
        if u.ndim != 2 or u.shape[0] < 1 or k < 2:
            raise ValueError(f"u: expected shape (Q >= 1, K >= 2), got {u.shape}")
        self.params = {"theta": theta, "alpha": np.array([float(alpha)]), "u": u}
        self.correct = np.asarray(correct, dtype=np.int64)
        self.difficulty = np.asarray(difficulty, dtype=np.int64)
        if self.correct.shape != (u.shape[0],) or self.difficulty.shape != (u.shape[0],):
            raise ValueError("correct, difficulty: expected one entry per question")
        self.kappa, self.n_reasoning, self.max_len = float(kappa), d, int(max_len)

    @property
    def n_questions(self) -> int:
        return self.params["u"].shape[0]

    @property
    def vocab(self) -> int:
        return self.params["theta"].shape[1]

    def copy(self) -> TokenPolicy:
        return TokenPolicy(
            self.params["theta"].copy(),
            float(self.params["alpha"][0]),
            self.params["u"].copy(),
            correct=self.correct,
            difficulty=self.difficulty,
            kappa=self.kappa,
            n_reasoning=self.n_reasoning,
            max_len=self.max_len,
        )

    def step_logits(self, q: np.ndarray, c: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """Next-token logits ``(B, V)`` for questions ``q``, progress ``c`` and previous token ``prev`` (-1: none)."""
        d = self.n_reasoning
        z = self.params["theta"][c].copy()
        rows = np.arange(len(q))
        has_prev = prev >= 0
        z[rows[has_prev], prev[has_prev]] += self.params["alpha"][0]
        z[:, d:] += self.params["u"][q]
        solved = c >= self.difficulty[q]
        z[rows[solved], d + self.correct[q][solved]] += self.kappa
        return z


def init_token_policy(config: TokenToyConfig, rng: np.random.Generator) -> TokenPolicy:
    """Draw the task (difficulties, correct answers, per-question guesses) and the initial shared habits."""
    q, d, k = config.n_questions, config.n_reasoning, config.n_answers
    theta = np.zeros((d + 2, d + k))
    theta[:, d:] = config.answer_logit + config.answer_logit_slope * np.arange(d + 2)[:, None]
    correct = rng.integers(0, k, size=q)
    difficulty = rng.integers(0, config.max_difficulty + 1, size=q)
    u = config.spread * rng.standard_normal((q, k))
    u[np.arange(q), correct] += config.strength
    return TokenPolicy(
        theta,
        config.copy_bonus,
        u,
        correct=correct,
        difficulty=difficulty,
        kappa=config.kappa,
        n_reasoning=d,
        max_len=config.max_len,
    )


@dataclass(frozen=True)
class TokenBatch:
    """Sampled responses: ``tokens (B, T)`` (-1 padding), ``mask (B, T)``, ``logits (B, T, V)`` (0 on padding),
    ``progress (B, T)`` and ``prev (B, T)`` (state at each token), ``question (B,)``, ``answer (B,)`` (-1 =
    unparseable), ``length (B,)``."""

    tokens: np.ndarray
    mask: np.ndarray
    logits: np.ndarray
    progress: np.ndarray
    prev: np.ndarray
    question: np.ndarray
    answer: np.ndarray
    length: np.ndarray


def sample_sequences(
    policy: TokenPolicy, questions: np.ndarray, n: int, rng: np.random.Generator
) -> TokenBatch:
    """Sample ``n`` responses per question (rows grouped by question: ``question = repeat(questions, n)``)."""
    if int(n) < 1:
        raise ValueError(f"n: need at least one rollout, got {n}")
    questions = np.asarray(questions, dtype=np.int64)
    if questions.size == 0:
        raise ValueError("questions: empty")
    d, t_max, v = policy.n_reasoning, policy.max_len, policy.vocab
    qb = np.repeat(questions, int(n))
    b = len(qb)
    tokens = np.full((b, t_max), -1, dtype=np.int64)
    logits = np.zeros((b, t_max, v))
    progress = np.zeros((b, t_max), dtype=np.int64)
    prevs = np.full((b, t_max), -1, dtype=np.int64)
    c = np.zeros(b, dtype=np.int64)
    prev = np.full(b, -1, dtype=np.int64)
    alive = np.ones(b, dtype=bool)
    answer = np.full(b, -1, dtype=np.int64)
    length = np.full(b, t_max, dtype=np.int64)
    for t in range(t_max):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        z = policy.step_logits(qb[idx], c[idx], prev[idx])
        cdf = np.cumsum(softmax(z), axis=1)
        cdf[:, -1] = np.inf
        y = (rng.random((idx.size, 1)) >= cdf).sum(axis=1)
        tokens[idx, t], logits[idx, t], progress[idx, t], prevs[idx, t] = y, z, c[idx], prev[idx]
        is_answer = y >= d
        done = idx[is_answer]
        answer[done] = y[is_answer] - d
        length[done] = t + 1
        alive[done] = False
        go = idx[~is_answer]
        yr = y[~is_answer]
        c[go] = np.minimum(c[go] + (yr != prev[go]), d + 1)
        prev[go] = yr
    mask = tokens >= 0
    return TokenBatch(tokens, mask, logits, progress, prevs, qb, answer, length)


def batch_rewards(name: str, batch: TokenBatch, policy: TokenPolicy) -> np.ndarray:
    """(B,) rewards from :func:`sharpen.rewards.get_reward` on the batch (answers None where unparseable)."""
    answers = [None if a < 0 else int(a) for a in batch.answer]
    ro = Rollouts(
        logits=batch.logits.astype(np.float32),
        tokens=np.maximum(batch.tokens, 0),
        mask=batch.mask,
        answers=answers,
        groups=batch.question,
        labels=policy.correct[batch.question].tolist(),
    )
    return np.asarray(get_reward(name)(ro), dtype=np.float64)


def sequence_logit_grad(batch: TokenBatch, advantages: np.ndarray) -> np.ndarray:
    r"""Token-mean GRPO gradient in the logits, ``(B, T, V)``: :math:`m_{bt}A_b(e_{y_{bt}}-\pi_{bt})/\sum m`."""
    p = softmax(batch.logits)
    onehot = np.zeros_like(p)
    b_i, t_i = np.nonzero(batch.mask)
    onehot[b_i, t_i, batch.tokens[b_i, t_i]] = 1.0
    w = (batch.mask * np.asarray(advantages)[:, None]) / max(int(batch.mask.sum()), 1)
    return w[:, :, None] * (onehot - p)


def backward(policy: TokenPolicy, batch: TokenBatch, grad: np.ndarray) -> dict[str, np.ndarray]:
    """Chain rule from the per-position logit gradient ``(B, T, V)`` to theta, alpha and u."""
    d = policy.n_reasoning
    m = batch.mask
    g = grad[m]  # (M, V)
    c = batch.progress[m]
    prev = batch.prev[m]
    theta = np.zeros_like(policy.params["theta"])
    np.add.at(theta, c, g)
    has = prev >= 0
    alpha = np.array([g[np.flatnonzero(has), prev[has]].sum()])
    u = np.zeros_like(policy.params["u"])
    q = np.broadcast_to(batch.question[:, None], m.shape)[m]
    np.add.at(u, q, g[:, d:])
    return {"theta": theta, "alpha": alpha, "u": u}


def _stats(batch: TokenBatch, policy: TokenPolicy) -> dict[str, float]:
    d = policy.n_reasoning
    correct = batch.answer == policy.correct[batch.question]
    reasoning = batch.mask & (batch.tokens < d)
    repeats = reasoning & (batch.tokens == batch.prev)
    logp = batch.logits - batch.logits.max(axis=-1, keepdims=True)
    p = softmax(logp)
    ent = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=-1)
    return {
        "ground_truth_ratio": float(correct.mean()),
        "response_length": float(batch.length.mean()),
        "repetition_rate": float(repeats.sum() / max(int(reasoning.sum()), 1)),
        "unparseable": float((batch.answer < 0).mean()),
        "mean_token_entropy": float((ent * batch.mask).sum() / batch.mask.sum()),
    }


def train_token_level(
    policy: TokenPolicy,
    *,
    reward: str,
    steps: int,
    rng: np.random.Generator,
    n_rollouts: int = 8,
    lr: float = 0.03,
    optimizer: str = "adam",
    normalize_std: bool = True,
    val_policy: TokenPolicy | None = None,
    val_rollouts: int = 4,
) -> dict[str, np.ndarray]:
    """Train ``policy`` in place (all questions every step); return per-step series, index 0 = before training.

    Series: ``ground_truth_ratio`` (accuracy of the sampled rollouts), ``response_length``, ``repetition_rate``
    (share of reasoning tokens that repeat the previous token), ``unparseable``, ``mean_token_entropy``,
    ``reward_mean``, ``label_accuracy`` (majority answer correct), ``majority_ratio``; with ``val_policy`` (held-out
    questions sharing theta and alpha, their own untrained u) also ``val/<series>``.
    """
    if reward not in token_rewards():
        raise ValueError(f"reward: unknown {reward!r}; valid: {', '.join(token_rewards())}")
    if int(steps) < 0:
        raise ValueError(f"steps: must be >= 0, got {steps}")
    n = int(n_rollouts)
    qs = np.arange(policy.n_questions)
    opt = Optimizer(optimizer, lr)
    out: dict[str, list[float]] = {}

    def log(d: dict[str, float]) -> None:
        for key, v in d.items():
            out.setdefault(key, []).append(v)

    def validate() -> None:
        if val_policy is None:
            return
        val_policy.params["theta"] = policy.params["theta"]
        val_policy.params["alpha"] = policy.params["alpha"]
        vb = sample_sequences(val_policy, np.arange(val_policy.n_questions), val_rollouts, rng)
        log({f"val/{k}": v for k, v in _stats(vb, val_policy).items()})

    for step in range(int(steps) + 1):
        batch = sample_sequences(policy, qs, n, rng)
        with torch_single_thread():
            r = batch_rewards(reward, batch, policy)
        ans = batch.answer.reshape(-1, n)
        counts = np.stack([(ans == a).sum(axis=1) for a in range(policy.params["u"].shape[1])], 1)
        maj = counts.argmax(axis=1)
        stats = _stats(batch, policy)
        stats["reward_mean"] = float(r.mean())
        stats["label_accuracy"] = float(((maj == policy.correct) & (counts.max(axis=1) > 0)).mean())
        stats["majority_ratio"] = float(counts.max(axis=1).mean() / n)
        log(stats)
        validate()
        if step == int(steps):
            break
        with torch_single_thread():
            adv = group_advantages(r.reshape(-1, n), normalize_std=normalize_std).ravel()
        grad = sequence_logit_grad(batch, adv)
        opt.step(policy.params, backward(policy, batch, grad))
    return {k: np.asarray(v) for k, v in out.items()}
