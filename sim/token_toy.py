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

Many runs at once (:func:`train_token_runs`, as :mod:`sim.experiments.grid` steps its grid): R runs of one shape
are stacked (:class:`TokenRuns`) and advanced together, one array operation per token position for all of them,
one reward call per reward and step. Each run keeps its own generator, drawn in the order one run alone draws it,
and every per-run sum is taken in one run's order, so each run's numbers equal those of the run trained alone, bit
for bit (``tests/sim/test_token_toy.py`` checks this against a plain one-run loop). The next-token distribution
depends only on the run, the question and the state (progress, previous token), so a sampling pass forms it once
for each of them (:func:`_states`) and every position looks up its row.

>>> toy = TokenToyConfig(n_questions=4)
>>> pol = init_token_policy(toy, np.random.default_rng(0))
>>> batch = sample_sequences(pol, np.arange(4), 2, np.random.default_rng(1))
>>> batch.tokens.shape[0], batch.logits.shape[2] == toy.n_reasoning + toy.n_answers
(8, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from sharpen.grpo import group_advantages
from sharpen.rewards import Rollouts, available_rewards, get_reward, reward_info
from sim._threads import torch_single_thread
from sim.core import Optimizer, softmax

__all__ = [
    "TokenToyConfig",
    "TokenPolicy",
    "TokenRuns",
    "TokenBatch",
    "init_token_policy",
    "sample_sequences",
    "sample_runs",
    "sequence_logit_grad",
    "train_token_level",
    "train_token_runs",
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
        q = np.asarray(q, dtype=np.int64)
        return TokenRuns.stack([self]).step_logits(np.zeros(len(q), dtype=np.int64), q, c, prev)


class TokenRuns:
    """R token policies of one shape (same D, K, T and Q), stacked so that one array operation advances them all.

    Parameters ``{"theta": (R, D+2, V), "alpha": (R,), "u": (R, Q, K)}``; the fixed task ``correct (R, Q)``,
    ``difficulty (R, Q)``, ``kappa (R,)``. Run r's slices are exactly :class:`TokenPolicy` r's arrays, and every
    operation on the stack is elementwise or row-wise per run, so run r of a stack computes the same numbers as
    the policy alone.
    """

    def __init__(
        self,
        params: dict[str, np.ndarray],
        *,
        correct: np.ndarray,
        difficulty: np.ndarray,
        kappa: np.ndarray,
        n_reasoning: int,
        max_len: int,
    ) -> None:
        self.params = params
        self.correct, self.difficulty, self.kappa = correct, difficulty, kappa
        self.n_reasoning, self.max_len = int(n_reasoning), int(max_len)

    @classmethod
    def stack(cls, policies: Sequence[TokenPolicy]) -> TokenRuns:
        """Copy ``policies`` (at least one, all of one shape) into one stack."""
        policies = list(policies)
        if not policies or any(not isinstance(p, TokenPolicy) for p in policies):
            raise ValueError("policies: expected a non-empty sequence of TokenPolicy")
        first = policies[0]
        for i, p in enumerate(policies):
            shape = (p.n_reasoning, p.max_len, p.params["theta"].shape, p.params["u"].shape)
            want = (
                first.n_reasoning,
                first.max_len,
                first.params["theta"].shape,
                first.params["u"].shape,
            )
            if shape != want:
                raise ValueError(
                    f"policies: run {i} has (D, T, theta, u shapes) {shape}, run 0 has {want}"
                )
        return cls(
            {
                "theta": np.stack([p.params["theta"] for p in policies]),
                "alpha": np.concatenate([p.params["alpha"] for p in policies]),
                "u": np.stack([p.params["u"] for p in policies]),
            },
            correct=np.stack([p.correct for p in policies]),
            difficulty=np.stack([p.difficulty for p in policies]),
            kappa=np.array([p.kappa for p in policies]),
            n_reasoning=first.n_reasoning,
            max_len=first.max_len,
        )

    @property
    def n_runs(self) -> int:
        return self.params["u"].shape[0]

    @property
    def n_questions(self) -> int:
        return self.params["u"].shape[1]

    @property
    def vocab(self) -> int:
        return self.params["theta"].shape[2]

    def write_back(self, policies: Sequence[TokenPolicy]) -> None:
        """Copy run r's parameters into ``policies[r]``'s arrays (in place)."""
        for r, p in enumerate(policies):
            p.params["theta"][...] = self.params["theta"][r]
            p.params["alpha"][...] = self.params["alpha"][r]
            p.params["u"][...] = self.params["u"][r]

    def step_logits(
        self, run: np.ndarray, q: np.ndarray, c: np.ndarray, prev: np.ndarray
    ) -> np.ndarray:
        """Next-token logits ``(B, V)`` of rows ``(run, q, c, prev)``: run, question, progress, previous token."""
        d, v = self.n_reasoning, self.vocab
        theta, u = self.params["theta"], self.params["u"]
        # flat indices: one take per table instead of a gather over two axes
        z = theta.reshape(-1, v)[run * theta.shape[1] + c]  # (B, V), a copy
        cell = z.reshape(-1)  # z[i, j] is cell[i * V + j]
        at = np.arange(len(q)) * v
        rq = run * self.n_questions + q
        has_prev = np.flatnonzero(prev >= 0)
        cell[at[has_prev] + prev[has_prev]] += self.params["alpha"][run[has_prev]]
        z[:, d:] += u.reshape(-1, u.shape[2])[rq]
        solved = np.flatnonzero(c >= self.difficulty.reshape(-1)[rq])
        cell[at[solved] + d + self.correct.reshape(-1)[rq[solved]]] += self.kappa[run[solved]]
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
    r"""Sampled responses of one run: ``tokens (B, T)`` (-1 padding), ``mask (B, T)``, ``logits (B, T, V)`` (0 on
    padding), ``progress (B, T)`` and ``prev (B, T)`` (state at each token), ``question (B,)``, ``answer (B,)``
    (-1 = unparseable), ``length (B,)``, ``entropy (B, T)`` (of the next-token distribution :math:`\pi_{bt}`,
    0 on padding). A batch of R runs (:func:`sample_runs`) has the same fields with a leading ``(R,)`` axis;
    :meth:`run` takes one run out."""

    tokens: np.ndarray
    mask: np.ndarray
    logits: np.ndarray
    progress: np.ndarray
    prev: np.ndarray
    question: np.ndarray
    answer: np.ndarray
    length: np.ndarray
    entropy: np.ndarray

    def run(self, r: int) -> TokenBatch:
        """Run ``r`` of a batch of runs (views)."""
        return TokenBatch(*(getattr(self, f.name)[r] for f in fields(self)))

    def stacked(self) -> TokenBatch:
        """A one-run batch as a batch of one run (views with a leading axis of 1)."""
        return TokenBatch(*(getattr(self, f.name)[None] for f in fields(self)))


def sample_sequences(
    policy: TokenPolicy, questions: np.ndarray, n: int, rng: np.random.Generator
) -> TokenBatch:
    """Sample ``n`` responses per question (rows grouped by question: ``question = repeat(questions, n)``)."""
    return sample_runs(TokenRuns.stack([policy]), questions, n, [rng]).run(0)


def sample_runs(
    runs: TokenRuns, questions: np.ndarray, n: int, rngs: Sequence[np.random.Generator]
) -> TokenBatch:
    """Sample ``n`` responses per question for every run of ``runs``: a batch with a leading ``(R,)`` axis.

    All runs advance one token at a time together; run r's uniforms come from ``rngs[r]`` alone, drawn in the
    order and sizes that sampling run r by itself draws them, so run r's responses are those of
    :func:`sample_sequences` on run r's policy with ``rngs[r]``, bit for bit.
    """
    return _sample_runs(runs, questions, n, rngs)[0]


def _states(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The states a response can be in before each token, ``S = 1 + (D + 1) D`` of them: state 0 is the start
    (progress 0, no previous token); state ``1 + (c - 1) D + y`` has progress ``c`` in 1..D+1 after reasoning
    token ``y`` (the first reasoning token always makes progress, and only answer tokens end a response).
    Returns the progress ``(S,)`` and previous token ``(S,)`` of each state, and ``next (S, D)``: the state
    after reasoning token y."""
    progress = np.concatenate([[0], np.repeat(np.arange(1, d + 2), d)])
    prev = np.concatenate([[-1], np.tile(np.arange(d), d + 1)])
    y = np.arange(d)
    c_next = np.minimum(progress[:, None] + (y != prev[:, None]), d + 1)
    return progress, prev, 1 + (c_next - 1) * d + y


def _sample_runs(
    runs: TokenRuns,
    questions: np.ndarray,
    n: int,
    rngs: Sequence[np.random.Generator],
    *,
    keep_logits: bool = True,
) -> tuple[TokenBatch, np.ndarray | None]:
    """:func:`sample_runs`, and the next-token distributions at the valid positions, ``(M, V)`` in the order of
    ``np.nonzero(batch.mask)`` (None without ``keep_logits``, which also leaves ``batch.logits`` None).

    The next-token distribution depends on the run, the question and the state only (:func:`_states`), so it is
    computed once per step for every (run, question, state) -- ``step_logits`` and ``softmax`` on those rows, the
    same numbers they give on the rows of the responses -- and each token position looks up its row.
    """
    if int(n) < 1:
        raise ValueError(f"n: need at least one rollout, got {n}")
    questions = np.asarray(questions, dtype=np.int64)
    if questions.size == 0:
        raise ValueError("questions: empty")
    n_runs = runs.n_runs
    if len(rngs) != n_runs:
        raise ValueError(f"rngs: expected one generator per run ({n_runs}), got {len(rngs)}")
    d, t_max, v = runs.n_reasoning, runs.max_len, runs.vocab
    b = questions.size * int(n)
    # the table: row (r * U + i) * S + s is run r, question uniq[i], state s
    uniq, q_index = np.unique(questions, return_inverse=True)
    st_progress, st_prev, st_next = _states(d)
    n_states = len(st_progress)
    z = runs.step_logits(
        np.repeat(np.arange(n_runs), len(uniq) * n_states),
        np.tile(np.repeat(uniq, n_states), n_runs),
        np.tile(st_progress, n_runs * len(uniq)),
        np.tile(st_prev, n_runs * len(uniq)),
    )
    p = softmax(z)
    ent = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=1)
    # inverse cdf: y = #{j < V-1 : draw >= p_0 + ... + p_j}, the cumulative sums formed left to right (as
    # np.cumsum does); cdf[j] is the table's column of p_0 + ... + p_j
    cdf = np.empty((v - 1, len(p)))
    cdf[0] = p[:, 0]
    for j in range(1, v - 1):
        np.add(cdf[j - 1], p[:, j], out=cdf[j])
    # flat rows, run-major: row r * b + i is rollout i of run r; live rows only, in row order
    live = np.arange(n_runs * b)
    base = (live // b * len(uniq) + np.tile(np.repeat(q_index, int(n)), n_runs)) * n_states
    state = np.zeros(len(live), dtype=np.int64)
    cell = np.full(n_runs * b * t_max, -1, dtype=np.int64)  # (row, t) -> table row, -1 on padding
    token = np.full(n_runs * b * t_max, -1, dtype=np.int64)
    answer = np.full(n_runs * b, -1, dtype=np.int64)
    length = np.full(n_runs * b, t_max, dtype=np.int64)
    run_starts = np.arange(n_runs + 1) * b
    for t in range(t_max):
        if live.size == 0:
            break
        row = base + state
        # live is sorted, so each run's live rows are one slice; each run draws from its own generator
        bounds = np.searchsorted(live, run_starts).tolist()
        draws = np.empty(live.size)
        for r in range(n_runs):
            lo, hi = bounds[r], bounds[r + 1]
            if hi > lo:
                draws[lo:hi] = rngs[r].random(hi - lo)
        y = np.zeros(live.size, dtype=np.int64)
        for j in range(v - 1):
            y += draws >= cdf[j][row]
        at = live * t_max + t
        cell[at], token[at] = row, y
        is_answer = y >= d
        done = live[is_answer]
        answer[done] = y[is_answer] - d
        length[done] = t + 1
        go = ~is_answer
        live, base = live[go], base[go]
        state = st_next[state[go], y[go]]
    valid = np.flatnonzero(cell >= 0)  # row-major: the order of np.nonzero(mask)
    rows_v = cell[valid]
    shape = (n_runs, b, t_max)
    progress = np.zeros(cell.size, dtype=np.int64)
    progress[valid] = st_progress[rows_v % n_states]
    prevs = np.full(cell.size, -1, dtype=np.int64)
    prevs[valid] = st_prev[rows_v % n_states]
    entropy = np.zeros(cell.size)
    entropy[valid] = ent[rows_v]
    logits = probs = None
    if keep_logits:
        logits = np.zeros((cell.size, v))
        logits[valid] = z[rows_v]
        logits = logits.reshape(*shape, v)
        probs = p[rows_v]
    batch = TokenBatch(
        token.reshape(shape),
        (cell >= 0).reshape(shape),
        logits,
        progress.reshape(shape),
        prevs.reshape(shape),
        np.tile(np.repeat(questions, int(n)), n_runs).reshape(n_runs, b),
        answer.reshape(n_runs, b),
        length.reshape(n_runs, b),
        entropy.reshape(shape),
    )
    return batch, probs


def batch_rewards(name: str, batch: TokenBatch, policy: TokenPolicy) -> np.ndarray:
    """(B,) rewards from :func:`sharpen.rewards.get_reward` on the batch (answers None where unparseable)."""
    return _rewards(name, get_reward(name), batch.stacked(), TokenRuns.stack([policy]), [0])[0]


def _rewards(
    name: str,
    fn,
    batch: TokenBatch,
    runs: TokenRuns,
    sel: Sequence[int],
    *,
    group_size: int | None = None,
) -> np.ndarray:
    """(len(sel), B) rewards of runs ``sel`` of a batch of runs, from one call of the reward ``fn`` (``name``'s)
    on all of them.

    The runs' rollouts are concatenated, each run's questions its own groups; a reward whose value for a rollout
    depends on its group only (every registered reward) gives each run what it gives that run alone. The reward
    is given the fields it reads (:attr:`sharpen.rewards.RewardInfo.needs`, with the mask and the groups). With
    ``group_size`` (the batch's groups are consecutive blocks of that many rows, one per question, as in
    training), an answer-level reward, which reads only answers, groups and labels, is called once per distinct
    group (its answers and labels in order) and its values copied to the groups equal to it.
    """
    sel = np.asarray(sel, dtype=np.int64)
    _, b, t_max = batch.tokens.shape
    v = runs.vocab
    q = batch.question[sel]  # (S, B)
    ans = batch.answer[sel]
    labels = np.take_along_axis(runs.correct[sel], q, axis=1)
    if group_size is not None and reward_info(name).level == "answer":
        n = int(group_size)
        keys = np.concatenate([ans.reshape(-1, n), labels.reshape(-1, n)], axis=1)  # (G, 2N)
        first: dict[tuple, int] = {}  # each distinct group -> its number, in first-seen order
        inverse = np.array([first.setdefault(tuple(k), len(first)) for k in keys.tolist()])
        uniq = np.array(list(first), dtype=keys.dtype).reshape(len(first), keys.shape[1])
        ro = Rollouts(
            answers=[None if a < 0 else a for a in uniq[:, :n].ravel().tolist()],
            groups=np.repeat(np.arange(len(uniq)), n),
            labels=uniq[:, n:].ravel().tolist(),
        )
        vals = np.asarray(fn(ro), dtype=np.float64).reshape(len(uniq), n)
        return vals[inverse.ravel()].reshape(len(sel), b)
    needs = reward_info(name).needs  # the fields it reads (mask and groups are optional ones)
    fields = {
        "mask": batch.mask[sel].reshape(-1, t_max),
        "groups": (sel[:, None] * runs.n_questions + q).ravel(),
    }
    if "logits" in needs:
        fields["logits"] = batch.logits[sel].reshape(-1, t_max, v).astype(np.float32)
    if "tokens" in needs:
        fields["tokens"] = np.maximum(batch.tokens[sel], 0).reshape(-1, t_max)
    if "answers" in needs:
        fields["answers"] = [None if a < 0 else a for a in ans.ravel().tolist()]
    if "labels" in needs:
        fields["labels"] = labels.ravel().tolist()
    return np.asarray(fn(Rollouts(**fields)), dtype=np.float64).reshape(len(sel), b)


def sequence_logit_grad(batch: TokenBatch, advantages: np.ndarray) -> np.ndarray:
    r"""Token-mean GRPO gradient in the logits, ``(B, T, V)``: :math:`m_{bt}A_b(e_{y_{bt}}-\pi_{bt})/\sum m`."""
    grad = np.zeros(batch.logits.shape)
    one = batch.stacked()
    grad[batch.mask] = _masked_logit_grad(one, np.asarray(advantages)[None], np.nonzero(one.mask))
    return grad


def _masked_logit_grad(
    batch: TokenBatch,
    advantages: np.ndarray,
    where: tuple[np.ndarray, ...],
    probs: np.ndarray | None = None,
) -> np.ndarray:
    r"""The token-mean gradient of a batch of runs at its valid positions ``where = nonzero(batch.mask)`` only,
    ``(M, V)``, run-major; run r's :math:`\sum m` is its own. ``advantages``: ``(R, B)``; ``probs``: the
    next-token distributions at ``where`` when the sampler kept them (else the softmax of the logits)."""
    m = batch.mask  # (R, B, T)
    p = softmax(batch.logits[where]) if probs is None else probs  # (M, V)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(p)), batch.tokens[where]] = 1.0
    total = np.maximum(m.reshape(len(m), -1).sum(axis=1), 1)  # (R,)
    w = (m * np.asarray(advantages)[:, :, None]) / total[:, None, None]
    return w[where][:, None] * (onehot - p)


def backward(policy: TokenPolicy, batch: TokenBatch, grad: np.ndarray) -> dict[str, np.ndarray]:
    """Chain rule from the per-position logit gradient ``(B, T, V)`` to theta, alpha and u."""
    one = batch.stacked()
    grads = _backward(TokenRuns.stack([policy]), one, grad[batch.mask], np.nonzero(one.mask))
    return {k: g[0] for k, g in grads.items()}


def _backward(
    runs: TokenRuns, batch: TokenBatch, g: np.ndarray, where: tuple[np.ndarray, ...]
) -> dict[str, np.ndarray]:
    """:func:`backward` of a batch of runs from the gradient ``g (M, V)`` at its valid positions ``where =
    nonzero(batch.mask)`` (run-major). Each parameter's sum runs over its run's positions in one run's order:
    ``bincount`` adds in index order, as ``np.add.at`` does, and alpha is one plain sum per run."""
    d, v = runs.n_reasoning, runs.vocab
    n_runs, n_levels, n_questions = runs.n_runs, d + 2, runs.n_questions
    k = v - d
    run, b_i, _ = where
    c = batch.progress[where]
    prev = batch.prev[where]
    at = ((run * n_levels + c) * v)[:, None] + np.arange(v)  # (M, V) flat index into theta
    theta = np.bincount(at.ravel(), weights=g.ravel(), minlength=n_runs * n_levels * v)
    has = prev >= 0
    picked = g[np.flatnonzero(has), prev[has]]  # run-major
    bounds = np.searchsorted(run[has], np.arange(n_runs + 1)).tolist()
    alpha = np.array([picked[lo:hi].sum() for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)])
    at = ((run * n_questions + batch.question[run, b_i]) * k)[:, None] + np.arange(k)
    u = np.bincount(at.ravel(), weights=g[:, d:].ravel(), minlength=n_runs * n_questions * k)
    return {
        "theta": theta.reshape(n_runs, n_levels, v),
        "alpha": alpha,
        "u": u.reshape(n_runs, n_questions, k),
    }


def _stats(batch: TokenBatch, runs: TokenRuns) -> dict[str, np.ndarray]:
    """Per-run statistics of a batch of runs: ``{name: (R,)}``, the series of :func:`train_token_level`."""
    d = runs.n_reasoning
    n_runs = batch.tokens.shape[0]
    flat = lambda x: x.reshape(n_runs, -1)  # noqa: E731 -- one run's positions in one row
    correct = batch.answer == np.take_along_axis(runs.correct, batch.question, axis=1)
    reasoning = batch.mask & (batch.tokens < d)
    repeats = reasoning & (batch.tokens == batch.prev)
    return {
        "ground_truth_ratio": correct.mean(axis=1),
        "response_length": batch.length.mean(axis=1),
        "repetition_rate": flat(repeats).sum(axis=1) / np.maximum(flat(reasoning).sum(axis=1), 1),
        "unparseable": (batch.answer < 0).mean(axis=1),
        # each run's sum over all its positions (0 on padding) keeps one run's order
        "mean_token_entropy": flat(batch.entropy).sum(axis=1) / flat(batch.mask).sum(axis=1),
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

    One run of :func:`train_token_runs`, which trains many at once with the same numbers.
    """
    if reward not in token_rewards():
        raise ValueError(f"reward: unknown {reward!r}; valid: {', '.join(token_rewards())}")
    return train_token_runs(
        [policy],
        rewards=[reward],
        steps=steps,
        rngs=[rng],
        n_rollouts=n_rollouts,
        lr=lr,
        optimizer=optimizer,
        normalize_std=normalize_std,
        val_policies=None if val_policy is None else [val_policy],
        val_rollouts=val_rollouts,
    )[0]


def train_token_runs(
    policies: Sequence[TokenPolicy],
    *,
    rewards: Sequence[str],
    steps: int,
    rngs: Sequence[np.random.Generator],
    n_rollouts: int = 8,
    lr: float = 0.03,
    optimizer: str = "adam",
    normalize_std: bool = True,
    val_policies: Sequence[TokenPolicy] | None = None,
    val_rollouts: int = 4,
) -> list[dict[str, np.ndarray]]:
    """Train R runs at once: run r is :func:`train_token_level` of ``policies[r]`` with ``rewards[r]``,
    ``rngs[r]`` and ``val_policies[r]``, and gets the same series and final parameters, bit for bit.

    The runs share the toy's shape (D, K, T, Q; the held-out policies theirs) and the optimizer settings. They are
    stacked (:class:`TokenRuns`) and stepped together: one sampling pass per token position for all runs (each
    run's uniforms from its own generator, in one run's order), one call of each reward per step on all the runs
    that train with it (each run's questions its own groups; an answer-level reward sees each distinct group
    once), and per-run sums in one run's order. Returns one series dict per run; the policies are trained in
    place.
    """
    policies = list(policies)
    n_runs = len(policies)
    if len({id(p) for p in policies}) != n_runs:
        raise ValueError("policies: the same policy object appears twice (each run trains its own)")
    if len(rewards) != n_runs or len(rngs) != n_runs:
        raise ValueError(
            f"rewards, rngs: expected one per policy ({n_runs}), got {len(rewards)} and {len(rngs)}"
        )
    bad = [r for r in rewards if r not in token_rewards()]
    if bad:
        raise ValueError(f"rewards: unknown {bad}; valid: {', '.join(token_rewards())}")
    if int(steps) < 0:
        raise ValueError(f"steps: must be >= 0, got {steps}")
    if val_policies is not None and len(val_policies) != n_runs:
        raise ValueError(
            f"val_policies: expected one per policy ({n_runs}), got {len(val_policies)}"
        )
    n, steps = int(n_rollouts), int(steps)
    runs = TokenRuns.stack(policies)
    qs = np.arange(runs.n_questions)
    val = None
    if val_policies is not None:
        val = TokenRuns.stack(val_policies)
        if val.params["theta"].shape != runs.params["theta"].shape:
            raise ValueError("val_policies: must share D and K with the policies (theta's shape)")
        # held-out questions share the habits: the same arrays, updated in place by the optimizer
        val.params["theta"], val.params["alpha"] = runs.params["theta"], runs.params["alpha"]
    opt = Optimizer(optimizer, lr)
    fns = {name: get_reward(name) for name in dict.fromkeys(rewards)}
    groups = {name: [r for r in range(n_runs) if rewards[r] == name] for name in fns}
    k = runs.params["u"].shape[2]
    out: dict[str, np.ndarray] = {}

    def log(step: int, stats: dict[str, np.ndarray]) -> None:
        for key, v in stats.items():
            out.setdefault(key, np.full((n_runs, steps + 1), np.nan))[:, step] = v

    with torch_single_thread():
        for step in range(steps + 1):
            batch, probs = _sample_runs(runs, qs, n, rngs)
            where = np.nonzero(batch.mask)
            r = np.empty(batch.answer.shape)  # (R, B)
            for name, fn in fns.items():
                r[groups[name]] = _rewards(name, fn, batch, runs, groups[name], group_size=n)
            ans = batch.answer.reshape(n_runs, -1, n)  # (R, Q, N)
            counts = (ans[..., None] == np.arange(k)).sum(axis=2)  # (R, Q, K)
            top = counts.max(axis=2)
            stats = _stats(batch, runs)
            stats["reward_mean"] = r.mean(axis=1)
            stats["label_accuracy"] = ((counts.argmax(axis=2) == runs.correct) & (top > 0)).mean(
                axis=1
            )
            stats["majority_ratio"] = top.mean(axis=1) / n
            log(step, stats)
            if val is not None:
                vb, _ = _sample_runs(
                    val, np.arange(val.n_questions), val_rollouts, rngs, keep_logits=False
                )
                log(step, {f"val/{key}": v for key, v in _stats(vb, val).items()})
            if step == steps:
                break
            adv = group_advantages(r.reshape(-1, n), normalize_std=normalize_std)
            grad = _masked_logit_grad(batch, adv.reshape(n_runs, -1), where, probs)
            opt.step(runs.params, _backward(runs, batch, grad, where))
    runs.write_back(policies)
    for p, vp in zip(policies, val_policies or (), strict=False):
        vp.params["theta"], vp.params["alpha"] = p.params["theta"], p.params["alpha"]
    return [{key: v[i].copy() for key, v in out.items()} for i in range(n_runs)]
