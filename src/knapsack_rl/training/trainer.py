"""The GRPO training loop with per-prompt rollout budgets.

One step (all in :meth:`Trainer.step`):

1. draw ``M`` prompts (a seeded permutation of the pool per epoch);
2. allocate: the tracker's estimates -> ``Allocator(method).allocate(budget=B)``;
3. generate: every prompt repeated ``N_i`` times, one flattened batched
   generation with a KV cache (:func:`knapsack_rl.training.sampler.generate`);
4. score with the reward function (checked: right length, finite), update the tracker.
   With ``method="rounds"`` the step draws ``oversample * M`` prompts for the same
   budget ``B``, and steps 2-4 repeat: a pilot of every prompt, then
   :func:`knapsack_rl.allocate_round` on what the step has drawn (a
   :class:`knapsack_rl.RoundPlanner`); a prompt's group is all of its rounds' rollouts.
   ``method="pipelined"`` plans the same way, but the next step's pilot is generated in
   this step's rest call (one barrier per step): it is one update old when it is
   trained on, so its behaviour log-probs, taken when it was generated, are the PPO
   ratio's denominator (:meth:`Trainer._pipelined`);
5. update: group advantages (groups of any size, std-normalised, clipped),
   PPO-clipped token-mean loss, ``updates_per_batch`` optimizer steps with
   gradient clipping. Rollouts with zero advantage contribute nothing to the
   loss when there is no KL term, so their forward/backward is skipped (the
   token-mean denominator still counts them, as in verl).

``run()`` wraps steps with evaluation, logging (``metrics.jsonl``,
``allocations.jsonl``, ``eval.jsonl``), a progress bar and atomic checkpoints;
``resume=True`` continues from the checkpoint exactly. The run folder (its
checks, logs, schedule and resume) is :class:`knapsack_rl.training.checkpoint.RunFolder`.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from knapsack_rl.metrics import step_metrics
from knapsack_rl.planning.base import makespan, positions, run_pipelined, run_streaming
from knapsack_rl.planning.session import AllocationSession
from knapsack_rl.simulation.gentime import GpuClock
from knapsack_rl.training.checkpoint import RunFolder, rng_state, save_checkpoint, set_rng_state
from knapsack_rl.training.config import ConfigError, TrainConfig, TrainError
from knapsack_rl.training.evaluate import evaluate
from knapsack_rl.training.grpo import build_sequences, compute_advantages, grpo_loss, token_logprobs
from knapsack_rl.training.model import count_parameters, load_policy, sft_warmstart
from knapsack_rl.training.sampler import generate
from knapsack_rl.training.tasks import (
    ArithmeticTask,
    DatasetError,
    check_rewards,
    make_task,
    resolve_reward,
)

__all__ = ["Trainer", "TrainError", "build_task", "train"]


class _Rollouts(NamedTuple):
    """One generation wave, scored: arrays of shape (R,) over its R rollouts."""

    group: np.ndarray  # int, the prompt's position in the step's batch
    completions: list  # token ids per rollout
    rewards: np.ndarray
    tokens: int
    seconds: float
    behaviour: list | None = None  # per rollout: its tokens' log-probs when generated (stale)

    def select(self, keep: np.ndarray, shift: int = 0, seconds: float = 0.0) -> _Rollouts:
        """The rollouts where ``keep`` (bool (R,)), their groups moved down by ``shift``."""
        kept = np.flatnonzero(keep)
        comps = [self.completions[k] for k in kept]
        return _Rollouts(
            self.group[kept] - shift,
            comps,
            self.rewards[kept],
            sum(len(c) for c in comps),
            seconds,
        )


def build_task(cfg: TrainConfig):
    """The task named by ``cfg.task`` (arithmetic levels, JSONL files or reasoning-gym)."""
    if cfg.task == "arithmetic":
        return ArithmeticTask(
            digits=cfg.digits, terms=cfg.terms, operators=cfg.operators, seed=cfg.seed
        )
    if cfg.task == "jsonl":
        return make_task(
            "jsonl",
            path=cfg.dataset,
            test_path=cfg.test_dataset,
            reward_name="exact_match" if cfg.reward == "exact_match" else "math_verify",
            seed=cfg.seed,
        )
    return make_task(cfg.task, name=cfg.rg_name, seed=cfg.seed, size=cfg.train_prompts)


def _corrupt(e, rng: random.Random):
    """``e`` with a wrong answer: integers shifted by 1..3 either way, other answers reversed."""
    try:
        wrong = str(int(e.answer) + rng.choice((-3, -2, -1, 1, 2, 3)))
    except ValueError:
        wrong = e.answer[::-1] + "?"
    return type(e)(e.id, e.prompt, wrong, e.level)


class Trainer:
    """GRPO with per-prompt rollout budgets (see the module docstring).

    Args:
        cfg: the configuration (validated here).
        reward_fn: optional reward ``f(prompts, completions, answer=..., **kw) -> list[float]``
            replacing the task's.
        task: optional task object (``examples(n, split)``, ``reward``) replacing ``cfg.task``.

    Nothing is written to ``cfg.run_dir`` before the set-up succeeded.
    """

    def __init__(self, cfg: TrainConfig, reward_fn: Callable | None = None, task=None) -> None:
        try:
            self.cfg = cfg.validate()
        except ConfigError as e:
            raise TrainError(str(e)) from None
        self.folder = RunFolder(cfg)
        self.run_dir = self.folder.path
        self._resume_state = self.folder.check()  # the checkpoint when resuming
        self._check_loggers()
        torch.set_num_threads(cfg.threads)
        self.device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device
        self.device = "cpu" if self.device == "auto" else self.device
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)  # noqa: NPY002 - seeds the legacy global RNG users may rely on
        torch.manual_seed(cfg.seed)
        self._load_task(task)
        self.reward_fn = reward_fn or resolve_reward(cfg.reward, self.task)
        try:
            self.model, self.tok, self.model_kind = load_policy(cfg, self.device)
        except FileNotFoundError as e:
            raise TrainError(str(e)) from None
        self.model.eval()  # RL runs without dropout, so sampling and update see the same policy
        self.n_params = count_parameters(self.model)
        self.prompt_ids = [self.tok.prompt_ids(e.prompt) for e in self.pool]
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99)
        )
        self.ref = None  # a frozen copy of the start policy for the KL term
        if cfg.kl_coef > 0:
            self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        try:
            self.session = AllocationSession(cfg.allocation)
        except (OSError, ValueError) as e:  # a prior_tracker file that cannot be read
            raise TrainError(f"prior_tracker: {e}") from None
        # priors pooled by level, and offline rates if the data has them
        self.session.set_prior_columns([e.id for e in self.pool], [e.level for e in self.pool])
        rated = [e for e in self.pool if getattr(e, "pass_rate", None) is not None]
        if rated:
            self.session.set_prior_columns(
                [e.id for e in rated], rates=[e.pass_rate for e in rated]
            )
        self.gpu = GpuClock(
            seed=cfg.seed
        )  # modelled GPU generation time (see simulation/gentime.py)
        self.sample_gen = torch.Generator().manual_seed(cfg.seed)
        self.step_idx = self.rollouts_total = self.tokens_total = 0
        self.sft_losses: list[float] = []
        self._carry: _Rollouts | None = None  # pipelined: the next step's pilot, generated

    # ------------------------------------------------------------------ set-up
    def _load_task(self, task) -> None:
        cfg = self.cfg
        try:
            self.task = task if task is not None else build_task(cfg)
            self.pool = self.task.examples(cfg.train_prompts, "train")
            self.eval_set = self.task.examples(cfg.eval_prompts, "test")
        except DatasetError as e:
            raise TrainError(str(e)) from None
        except (ValueError, TypeError) as e:
            raise TrainError(f"task {cfg.task!r}: {e}") from None
        if len(self.pool) < cfg.step_prompts:
            raise TrainError(
                f"prompts per step ({cfg.step_prompts}) > training prompts available ({len(self.pool)})"
            )

    def _check_loggers(self) -> None:
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            except ImportError:
                raise TrainError("tensorboard: not installed (pip install tensorboard)") from None
        if self.cfg.wandb:
            try:
                import wandb  # noqa: F401
            except ImportError:
                raise TrainError("wandb: not installed (pip install wandb)") from None

    def warmstart(self) -> list[float]:
        """Supervised warm-start of the built-in model (``cfg.sft_steps`` steps)."""
        cfg = self.cfg
        if self.model_kind != "builtin" or cfg.sft_steps <= 0:
            return []
        if isinstance(self.task, ArithmeticTask):  # fresh draws, still disjoint from test
            data = ArithmeticTask(
                digits=cfg.digits,
                terms=cfg.terms,
                operators=cfg.operators,
                weights=cfg.sft_weights,
                seed=cfg.seed + 7919,
            ).examples(cfg.sft_examples, "train")
        else:
            data = self.task.examples(cfg.sft_examples, "train")
        if cfg.sft_noise > 0:  # a noisy teacher: some targets are off by a small amount
            rng = random.Random(f"{cfg.seed}:sft-noise")
            data = [_corrupt(e, rng) if rng.random() < cfg.sft_noise else e for e in data]
        self.sft_losses = sft_warmstart(
            self.model,
            self.tok,
            data,
            cfg.sft_steps,
            cfg.sft_batch,
            cfg.sft_lr,
            seed=cfg.seed,
            device=self.device,
            progress=cfg.progress,
        )
        self.model.eval()
        return self.sft_losses

    # ------------------------------------------------------------------ data
    def batch_indices(self, step: int) -> list[int]:
        """Pool indices of the prompts of ``step`` (seeded permutation per epoch; stateless)."""
        n, m = len(self.pool), self.cfg.step_prompts
        out = []
        for k in range(step * m, (step + 1) * m):
            epoch, pos = divmod(k, n)
            perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(n)
            out.append(int(perm[pos]))
        return out

    # ------------------------------------------------------------------ one step
    def step(self) -> tuple[dict, dict]:
        """Run one RL step; returns (metrics record, allocation record)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        idx = self.batch_indices(self.step_idx)
        ids = [self.pool[i].id for i in idx]
        # 1-3. allocate, generate, score: the session's planner says what to generate next
        self._gpu_calls = 0
        try:
            sends = self.session.start(ids, cfg.step_budget)
        except ValueError as e:
            raise TrainError(f"allocation at step {self.step_idx}: {e}") from None
        t1, parts = time.perf_counter(), []
        if cfg.method == "stream":  # completions return in the modelled engine's order
            step, engine = run_streaming(
                self.session,
                ids,
                cfg.step_budget,
                lambda pos: self._generate_positions(idx, pos, parts),
                lambda pos, r: self._gpu_seconds([ids[i] for i in pos], r),
                capacity=cfg.concurrency,
                sends=sends,
            )
            gpu_s = engine.makespan
        elif cfg.method == "pipelined":
            step, gpu_s = self._pipelined(idx, ids, parts)
        else:  # one batch per request: one shot, or round by round with a barrier between
            gpu_s = 0.0
            while sends.size:
                parts.append(self._rollout(idx, np.bincount(sends, minlength=len(idx))))
                r = parts[-1]
                gpu_s += makespan(
                    self._gpu_seconds([ids[g] for g in r.group], r.rewards), cfg.concurrency
                )
                sends = self.session.record(r.group, r.rewards)
            step = self.session.finish()  # one tracker update with every draw of the step
        p_used, objective = step.p, (step.allocation.objective if step.allocation else None)
        group = np.concatenate([r.group for r in parts])  # a prompt's group is all its rounds
        rewards = np.concatenate([r.rewards for r in parts])
        completions = [c for r in parts for c in r.completions]
        counts = np.bincount(group, minlength=len(idx))
        tokens = sum(r.tokens for r in parts)
        gen_s = sum(r.seconds for r in parts)
        t3 = time.perf_counter()
        sm = step_metrics(group, rewards)
        # 4. update
        adv = compute_advantages(group, rewards, scale=cfg.scale_rewards, clip=cfg.advantage_clip)
        behaviour = [b for r in parts for b in (r.behaviour or [None] * len(r.completions))]
        upd = self._update([self.prompt_ids[idx[g]] for g in group], completions, adv, behaviour)
        t4 = time.perf_counter()
        self.step_idx += 1
        self.rollouts_total += int(counts.sum())
        self.tokens_total += tokens
        succ = np.bincount(
            group, weights=(rewards >= cfg.success_threshold).astype(float), minlength=len(idx)
        )
        rec = {
            "step": self.step_idx - 1,
            **{k: v for k, v in sm.items() if k not in ("prompts", "prompts_covered")},
            "rollouts_total": self.rollouts_total,
            "tokens": tokens,
            "rounds": len(parts),
            "stale_rollouts": sum(b is not None for b in behaviour),
            "tokens_total": self.tokens_total,
            "completion_length": tokens / max(1, len(completions)),
            "advantage_abs_mean": float(np.abs(adv).mean()) if adv.size else 0.0,
            "alloc_objective": objective,
            **upd,
            "time/allocate": t1 - t0,
            "time/generate": gen_s,
            "time/score": t3 - t1 - gen_s,
            "time/update": t4 - t3,
            "time/step": t4 - t0,
            "time/gpu_generate": gpu_s,
            "gen/rollouts_per_s": len(completions) / max(gen_s, 1e-9),
            "gen/tokens_per_s": tokens / max(gen_s, 1e-9),
        }
        arec = {
            "step": self.step_idx - 1,
            "ids": ids,
            "levels": [self.pool[i].level for i in idx],
            "p": [round(float(x), 6) for x in p_used],
            "rollouts": counts.tolist(),
            "successes": succ.astype(int).tolist(),
        }
        if step.pilot is not None:  # rounds and stream: the pilot's counts and successes
            arec["pilot"], arec["pilot_successes"] = (
                step.pilot.tolist(),
                step.pilot_successes.tolist(),
            )
            rec.update(
                {k: v for k, v in step.metrics.items() if not k.startswith("rollouts_per_prompt/")}
            )
        return rec, arec

    @property
    def tracker(self):
        """The run's success-rate tracker (the session's)."""
        return self.session.tracker

    @property
    def planner(self):
        """The session's planner (:class:`knapsack_rl.Planner`)."""
        return self.session.planner

    def _gpu_seconds(self, prompt_ids: list, rewards: np.ndarray) -> np.ndarray:
        """Modelled GPU seconds of one generation call's rollouts (:class:`GpuClock`)."""
        self._gpu_calls += 1
        failed = np.asarray(rewards) < self.cfg.success_threshold
        return self.gpu.durations(prompt_ids, failed, self.step_idx, self._gpu_calls)

    def _generate_positions(self, idx: list[int], pos: np.ndarray, parts: list) -> np.ndarray:
        """Generate one rollout per entry of ``pos`` (prompt positions in ``idx``); keeps the
        batch in ``parts``; returns the rewards in the order of ``pos``."""
        part = self._rollout(idx, np.bincount(pos, minlength=len(idx)))
        parts.append(part)
        return _in_order(pos, part)

    def _pipelined(self, idx: list[int], ids: list, parts: list) -> tuple:
        """One step of ``method="pipelined"`` (see :func:`run_pipelined`): the pilot is the
        one the last step generated (``self._carry``), and this step's one call generates
        the rest together with the next step's pilot, whose behaviour log-probs are kept
        for its PPO ratio. Returns the :class:`StepRecord` and the modelled GPU seconds."""
        cfg, m = self.cfg, len(idx)
        carry, self._carry = self._carry, None
        nxt = self.batch_indices(self.step_idx + 1) if self.step_idx + 1 < cfg.steps else []
        ahead = positions(self.planner.pilot_counts(len(nxt), cfg.step_budget)) if nxt else None
        gpu, got, all_ids = [0.0], [], ids + [self.pool[i].id for i in nxt]

        def call(pos: np.ndarray, apos: np.ndarray):
            both = np.concatenate([pos, apos + m])
            part = self._rollout(idx + nxt, np.bincount(both, minlength=m + len(nxt)))
            pids = [all_ids[g] for g in part.group]
            gpu[0] += makespan(self._gpu_seconds(pids, part.rewards), cfg.concurrency)
            mine = part.group < m
            parts.append(part.select(mine, seconds=part.seconds))
            if apos.size:
                later = part.select(~mine, shift=m)
                got.append(later._replace(behaviour=self._behaviour(nxt, later)))
            return _in_order(pos, parts[-1]), _in_order(apos, got[-1]) if apos.size else apos

        if carry is not None:
            parts.append(carry)
        step, _ = run_pipelined(
            self.session,
            ids,
            cfg.step_budget,
            call,
            pilot_rewards=None if carry is None else _in_order(np.sort(carry.group), carry),
            ahead=ahead,
        )
        self._carry = got[0] if got else None
        return step, gpu[0]

    @torch.no_grad()
    def _behaviour(self, idx: list[int], part: _Rollouts) -> list[torch.Tensor]:
        """Each rollout's completion-token log-probs under the current policy (1-D each)."""
        prompts = [self.prompt_ids[idx[g]] for g in part.group]
        out, size = [], self.cfg.minibatch_rollouts
        for i in range(0, len(prompts), size):
            p, c = prompts[i : i + size], part.completions[i : i + size]
            b = build_sequences(p, c, self.tok.pad_token_id)
            lp = token_logprobs(self.model, b, self.device, self.cfg.temperature).cpu()
            out += [lp[j, len(p[j]) - 1 : len(p[j]) - 1 + len(c[j])].clone() for j in range(len(p))]
        return out

    def _rollout(self, idx: list[int], counts: np.ndarray):
        """Generate ``counts[g]`` completions of prompt ``idx[g]`` and score them.

        ``group`` is each rollout's position in ``idx``; ``completions`` are token ids.
        """
        gen = generate(
            self.model,
            [self.prompt_ids[i] for i in idx],
            np.asarray(counts).tolist(),
            max_new_tokens=self.cfg.max_new_tokens,
            eos_id=self.tok.eos_token_id,
            pad_id=self.tok.pad_token_id,
            temperature=self.cfg.temperature,
            generator=self.sample_gen,
            max_batch_tokens=self.cfg.max_batch_tokens,
            device=self.device,
        )
        group = np.asarray(gen.prompt_index, dtype=np.int64)
        ex = [self.pool[idx[g]] for g in group]
        texts = [self.tok.decode(c) for c in gen.completions]
        try:
            raw = self.reward_fn([e.prompt for e in ex], texts, answer=[e.answer for e in ex])
            rewards = np.asarray(check_rewards(raw, len(texts)), dtype=np.float64)
        except ValueError as e:
            raise TrainError(f"reward function at step {self.step_idx}: {e}") from None
        return _Rollouts(group, gen.completions, rewards, gen.tokens, gen.seconds)

    def _update(self, prompts, completions, adv: np.ndarray, behaviour=None) -> dict:
        """One policy update. ``behaviour[k]``: rollout ``k``'s token log-probs when it was
        generated, if it is stale (the PPO ratio's denominator), else None."""
        cfg = self.cfg
        behaviour = behaviour or [None] * len(completions)
        n_tokens = float(sum(len(c) for c in completions))
        keep = np.flatnonzero(adv != 0) if cfg.kl_coef <= 0 else np.arange(adv.size)
        stats = {
            "loss": 0.0,
            "clip_frac": 0.0,
            "grad_norm": 0.0,
            "kl": 0.0,
            "trained_rollouts": int(keep.size),
        }
        if keep.size == 0 or n_tokens == 0:
            return stats
        mbs = [
            keep[i : i + cfg.minibatch_rollouts]
            for i in range(0, keep.size, cfg.minibatch_rollouts)
        ]
        batches = [
            build_sequences(
                [prompts[k] for k in mb], [completions[k] for k in mb], self.tok.pad_token_id
            )
            for mb in mbs
        ]
        advs = [torch.as_tensor(adv[mb], dtype=torch.float32, device=self.device) for mb in mbs]
        stale = [
            _stale_logprobs(b, [prompts[k] for k in mb], [behaviour[k] for k in mb], self.device)
            for b, mb in zip(batches, mbs)
        ]
        old, ref = [None] * len(mbs), [None] * len(mbs)
        if cfg.updates_per_batch > 1 or self.ref is not None:
            with torch.no_grad():
                for j, b in enumerate(batches):
                    if cfg.updates_per_batch > 1:
                        old[j] = token_logprobs(self.model, b, self.device, cfg.temperature)
                    if self.ref is not None:
                        ref[j] = token_logprobs(self.ref, b, self.device, cfg.temperature)
        self.model.eval()  # gradients flow; dropout (if the model has any) stays off
        tot_loss = tot_clip = tot_kl = gn = 0.0
        for _ in range(cfg.updates_per_batch):
            self.opt.zero_grad(set_to_none=True)
            for j, b in enumerate(batches):
                logp = token_logprobs(self.model, b, self.device, cfg.temperature)
                o = old[j] if old[j] is not None else logp.detach()
                if stale[j] is not None:  # stale rollouts: the behaviour policy's log-probs
                    o = torch.where(stale[j][1], stale[j][0], o)
                loss, st = grpo_loss(
                    logp,
                    o,
                    advs[j],
                    b.target_mask().to(self.device),
                    cfg.clip_eps_low,
                    cfg.clip_eps_high,
                    ref[j],
                    cfg.kl_coef,
                    denom=n_tokens,
                )
                loss.backward()
                tot_loss += float(loss.detach())
                w = len(mbs[j]) / keep.size
                tot_clip += st["clip_frac"] * w
                tot_kl += st["kl"] * w
            if cfg.max_grad_norm > 0:
                gn = float(
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                )
            self.opt.step()
        u = cfg.updates_per_batch
        stats.update(loss=tot_loss / u, clip_frac=tot_clip / u, kl=tot_kl / u, grad_norm=gn)
        return stats

    # ------------------------------------------------------------------ eval
    def evaluate(self) -> dict:
        """Held-out metrics now (see :func:`knapsack_rl.training.evaluate.evaluate`)."""
        cfg = self.cfg
        try:
            res = evaluate(
                self.model,
                self.tok,
                self.eval_set,
                self.reward_fn,
                samples=cfg.eval_samples,
                temperature=cfg.eval_temperature,
                pass_k=cfg.pass_k,
                max_new_tokens=cfg.max_new_tokens,
                seed=cfg.seed + 104729,
                max_batch_tokens=cfg.max_batch_tokens,
                device=self.device,
            )
        except ValueError as e:
            raise TrainError(f"reward function during evaluation: {e}") from None
        return {"step": self.step_idx, "rollouts_total": self.rollouts_total, **res}

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: model, optimizer, tracker, RNGs, counters."""
        return {
            "step": self.step_idx,
            "rollouts_total": self.rollouts_total,
            "tokens_total": self.tokens_total,
            "model": self.model.state_dict(),
            "ref": self.ref.state_dict() if self.ref is not None else None,
            "optimizer": self.opt.state_dict(),
            "tracker": self.tracker.state_dict(),
            "planner": self.planner.state_dict() if self.cfg.allocation.planned else None,
            "rng": rng_state(self.sample_gen),
            "config": self.cfg.to_dict(),
            "carry": None if self._carry is None else self._carry._asdict(),
        }

    def load_state_dict(self, st: dict) -> None:
        """Restore :meth:`state_dict` output."""
        self.model.load_state_dict(st["model"])
        if self.ref is not None and st.get("ref") is not None:
            self.ref.load_state_dict(st["ref"])
        self.opt.load_state_dict(st["optimizer"])
        self.tracker.load_state_dict(st["tracker"])
        if self.cfg.allocation.planned and st.get("planner") is not None:
            self.planner.load_state_dict(st["planner"])
        set_rng_state(st["rng"], self.sample_gen)
        self.step_idx = int(st["step"])
        self.rollouts_total = int(st["rollouts_total"])
        self.tokens_total = int(st["tokens_total"])
        carry = st.get("carry")  # pipelined: the next step's pilot, already generated
        self._carry = None if carry is None else _Rollouts(**carry)

    def save(self) -> Path:
        """Write the checkpoint atomically."""
        return save_checkpoint(self.run_dir, self.state_dict(), self.tracker)

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        """Train for ``cfg.steps`` steps (continuing from the checkpoint with ``resume``).

        Returns a summary: final evaluation, totals and file paths.
        """
        cfg, folder = self.cfg, self.folder
        if self._resume_state is not None:
            self._restore(self._resume_state)
            self._resume_state = None
            folder.resume(self.step_idx)
        else:
            t = time.perf_counter()
            losses = self.warmstart()
            folder.start(self._resolved_config(losses, time.perf_counter() - t))
        folder.open()
        last_eval = bar = None
        try:
            if self.step_idx == 0 and not cfg.resume:
                last_eval = self.evaluate()
                folder.log_eval(last_eval)
            if cfg.progress:
                from tqdm import tqdm

                bar = tqdm(  # disable=None: off when not a TTY (CI logs)
                    total=cfg.steps,
                    initial=self.step_idx,
                    desc=cfg.method,
                    leave=False,
                    disable=None,
                )
            while self.step_idx < cfg.steps:
                rec, arec = self.step()
                folder.log_step(rec, arec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        reward=f"{rec['reward']:.3f}", egr=f"{rec['effective_gradient_ratio']:.2f}"
                    )
                if folder.eval_due(self.step_idx):
                    last_eval = self.evaluate()
                    folder.log_eval(last_eval)
                if folder.save_due(self.step_idx):
                    self.save()
        finally:
            if bar is not None:
                bar.close()
            folder.close()
        return {
            "run_dir": str(self.run_dir),
            "steps": self.step_idx,
            "rollouts_total": self.rollouts_total,
            "tokens_total": self.tokens_total,
            "final_eval": last_eval if last_eval is not None else self.evaluate(),
        }

    def _restore(self, st: dict) -> None:
        try:
            self.load_state_dict(st)
        except (KeyError, ValueError, RuntimeError) as e:
            raise TrainError(
                f"resume: {self.run_dir / 'checkpoint.pt'} does not fit this run: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from None

    def _resolved_config(self, sft_losses: list[float], sft_seconds: float) -> dict:
        """The settings plus what they resolved to (written to ``config.json``)."""
        return {
            **self.cfg.to_dict(),
            "resolved": {
                "tracker": self.cfg.tracker_kind,
                "step_budget": self.cfg.step_budget,
                "model_kind": self.model_kind,
                "parameters": self.n_params,
                "device": self.device,
                "train_prompts": len(self.pool),
                "eval_prompts": len(self.eval_set),
                "sft_final_loss": sft_losses[-1] if sft_losses else None,
                "sft_seconds": sft_seconds if sft_losses else 0.0,
            },
        }


def _in_order(pos: np.ndarray, part: _Rollouts) -> np.ndarray:
    """Rewards of ``part`` (grouped by prompt) in the order of ``pos`` (its positions)."""
    out = np.empty(pos.size)
    out[np.argsort(pos, kind="stable")] = part.rewards[np.argsort(part.group, kind="stable")]
    return out


def _stale_logprobs(batch, prompts, behaviour, device="cpu"):
    """(values, where) float and bool (B, T - 1) over ``batch``'s targets: the behaviour
    log-probs of its stale rollouts; None if it has none."""
    if all(b is None for b in behaviour):
        return None
    shape = batch.target_mask().shape
    vals, where = torch.zeros(shape), torch.zeros(shape, dtype=torch.bool)
    for j, (p, b) in enumerate(zip(prompts, behaviour)):
        if b is not None:
            vals[j, len(p) - 1 : len(p) - 1 + b.numel()] = b
            where[j, len(p) - 1 : len(p) - 1 + b.numel()] = True
    return vals.to(device), where.to(device)


def train(cfg: TrainConfig, reward_fn: Callable | None = None, task=None) -> dict:
    """Build a :class:`Trainer` and run it; returns its summary."""
    return Trainer(cfg, reward_fn=reward_fn, task=task).run()
