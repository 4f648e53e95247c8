"""The GRPO training loop with per-prompt rollout budgets.

One step (all in :meth:`Trainer.step`):

1. draw ``M`` prompts (a seeded permutation of the pool per epoch);
2. allocate: the tracker's estimates -> ``Allocator(method).allocate(budget=B)``;
3. generate: every prompt repeated ``N_i`` times, one flattened batched
   generation with a KV cache (:func:`knapsack_rl.training.sampler.generate`);
4. score with the reward function (checked: right length, finite), update the tracker;
5. update: group advantages (groups of any size, std-normalised, clipped),
   PPO-clipped token-mean loss, ``updates_per_batch`` optimizer steps with
   gradient clipping. Rollouts with zero advantage contribute nothing to the
   loss when there is no KL term, so their forward/backward is skipped (the
   token-mean denominator still counts them, as in verl).

``run()`` wraps steps with evaluation, logging (``metrics.jsonl``,
``allocations.jsonl``, ``eval.jsonl``), a progress bar and atomic checkpoints;
``resume=True`` continues from the checkpoint exactly.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from knapsack_rl.allocation import Allocator
from knapsack_rl.atomic import atomic_write_text
from knapsack_rl.metrics import step_metrics
from knapsack_rl.tracking import make_tracker
from knapsack_rl.training.checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from knapsack_rl.training.config import ConfigError, TrainConfig
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

# settings that may change between an interrupted run and its resumption
_RESUMABLE = {
    "steps",
    "resume",
    "progress",
    "save_every",
    "tensorboard",
    "wandb",
    "wandb_project",
    "threads",
    "device",
    "eval_every",
}


class TrainError(ValueError):
    """A run that cannot start or continue for a reason the user can fix."""


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


def _jsonl_lines(path: Path, keep: Callable[[dict], bool]) -> None:
    """Rewrite a JSONL log atomically keeping only the records ``keep`` accepts."""
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if keep(json.loads(ln))]
    atomic_write_text(path, "".join(ln + "\n" for ln in kept))


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
        warmstart_cache: optional folder; the built-in model's SFT warm-start is
            loaded from it when present, else trained and saved there.

    Nothing is written to ``cfg.run_dir`` before the set-up succeeded.
    """

    def __init__(self, cfg: TrainConfig, reward_fn: Callable | None = None, task=None) -> None:
        try:
            cfg.validate()
        except ConfigError as e:
            raise TrainError(str(e)) from None
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        ckpt = self.run_dir / CHECKPOINT
        if cfg.resume and not ckpt.is_file():
            raise TrainError(f"resume: {ckpt} does not exist")
        if not cfg.resume and ckpt.is_file():
            raise TrainError(
                f"run_dir: {self.run_dir} already holds a checkpoint; pass --resume or choose another --run-dir"
            )
        if cfg.resume:
            self._check_resume_config()
        torch.set_num_threads(cfg.threads)
        self.device = (
            "cuda"
            if cfg.device == "auto" and torch.cuda.is_available()
            else ("cpu" if cfg.device == "auto" else cfg.device)
        )
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)  # noqa: NPY002 - seeds the legacy global RNG users may rely on
        torch.manual_seed(cfg.seed)
        # task, data, reward
        try:
            self.task = task if task is not None else build_task(cfg)
            self.pool = self.task.examples(cfg.train_prompts, "train")
            self.eval_set = self.task.examples(cfg.eval_prompts, "test")
        except DatasetError as e:
            raise TrainError(str(e)) from None
        except (ValueError, TypeError) as e:
            raise TrainError(f"task {cfg.task!r}: {e}") from None
        if len(self.pool) < cfg.prompts_per_step:
            raise TrainError(
                f"prompts_per_step ({cfg.prompts_per_step}) > training prompts available ({len(self.pool)})"
            )
        self.reward_fn = reward_fn or resolve_reward(cfg.reward, self.task)
        # model
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
        self.ref = None
        if cfg.kl_coef > 0:
            self.ref = copy.deepcopy(self.model).eval()
            for p in self.ref.parameters():
                p.requires_grad_(False)
        kind = cfg.tracker_kind
        kw: dict = {"threshold": 0.5}
        if kind == "window":
            kw["window"] = cfg.window
        elif kind == "beta":
            kw["discount"] = cfg.discount
        self.tracker = make_tracker(kind, **kw)
        self.allocator = Allocator(
            method=cfg.method,
            min_rollouts=cfg.min_rollouts,
            max_rollouts=cfg.max_rollouts,
            per_prompt=cfg.rollouts_per_prompt,
        )
        self.sample_gen = torch.Generator().manual_seed(cfg.seed)
        self.step_idx = 0
        self.rollouts_total = 0
        self.tokens_total = 0
        self.sft_losses: list[float] = []
        self._loggers: list = []
        self._check_loggers()

    # ------------------------------------------------------------------ set-up
    def _check_resume_config(self) -> None:
        path = self.run_dir / "config.json"
        if not path.is_file():
            return
        saved = json.loads(path.read_text())
        now = self.cfg.to_dict()
        diff = [k for k in now if k not in _RESUMABLE and k in saved and saved[k] != now[k]]
        if diff:
            raise TrainError(
                "resume: settings differ from the run's config.json: "
                + ", ".join(f"{k} ({saved[k]!r} -> {now[k]!r})" for k in diff)
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

    def _open_loggers(self) -> None:
        if self.cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._loggers.append(("tb", SummaryWriter(str(self.run_dir / "tb"))))
        if self.cfg.wandb:
            import wandb

            run = wandb.init(
                project=self.cfg.wandb_project,
                dir=str(self.run_dir),
                config=self.cfg.to_dict(),
                resume="allow",
            )
            self._loggers.append(("wandb", run))

    def _log_external(self, rec: dict, step: int) -> None:
        scalars = {k: v for k, v in rec.items() if isinstance(v, (int, float)) and k != "step"}
        for kind, h in self._loggers:
            if kind == "tb":
                for k, v in scalars.items():
                    h.add_scalar(k, v, step)
            else:
                h.log(scalars, step=step)

    def warmstart(self) -> list[float]:
        """Supervised warm-start of the built-in model (``cfg.sft_steps`` steps)."""
        cfg = self.cfg
        if self.model_kind != "builtin" or cfg.sft_steps <= 0:
            return []
        if isinstance(self.task, ArithmeticTask):  # fresh draws, still disjoint from test
            data = ArithmeticTask(
                digits=cfg.digits, terms=cfg.terms, operators=cfg.operators, seed=cfg.seed + 7919
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
        n, m = len(self.pool), self.cfg.prompts_per_step
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
        # 1. allocate
        try:
            alloc = self.allocator.allocate(self.tracker.stats(ids), budget=cfg.step_budget)
        except ValueError as e:
            raise TrainError(f"allocation at step {self.step_idx}: {e}") from None
        counts = alloc.rollouts.astype(np.int64)
        t1 = time.perf_counter()
        # 2. generate
        gen = generate(
            self.model,
            [self.prompt_ids[i] for i in idx],
            counts.tolist(),
            max_new_tokens=cfg.max_new_tokens,
            eos_id=self.tok.eos_token_id,
            pad_id=self.tok.pad_token_id,
            temperature=cfg.temperature,
            generator=self.sample_gen,
            max_batch_tokens=cfg.max_batch_tokens,
            device=self.device,
        )
        t2 = time.perf_counter()
        # 3. score
        group = np.asarray(gen.prompt_index, dtype=np.int64)  # position in the batch = group id
        ex = [self.pool[idx[g]] for g in group]
        texts = [self.tok.decode(c) for c in gen.completions]
        try:
            raw = self.reward_fn([e.prompt for e in ex], texts, answer=[e.answer for e in ex])
            rewards = np.asarray(check_rewards(raw, len(texts)), dtype=np.float64)
        except ValueError as e:
            raise TrainError(f"reward function at step {self.step_idx}: {e}") from None
        self.tracker.update([e.id for e in ex], rewards)
        sm = step_metrics(group, rewards)
        t3 = time.perf_counter()
        # 4. update
        adv = compute_advantages(group, rewards, scale=cfg.scale_rewards, clip=cfg.adv_clip)
        upd = self._update([self.prompt_ids[idx[g]] for g in group], gen.completions, adv)
        t4 = time.perf_counter()
        self.step_idx += 1
        self.rollouts_total += int(counts.sum())
        self.tokens_total += gen.tokens
        succ = np.bincount(group, weights=(rewards >= 0.5).astype(float), minlength=len(idx))
        rec = {
            "step": self.step_idx - 1,
            **{k: v for k, v in sm.items() if k not in ("prompts", "prompts_covered")},
            "rollouts_total": self.rollouts_total,
            "tokens": gen.tokens,
            "tokens_total": self.tokens_total,
            "completion_length": gen.tokens / max(1, len(texts)),
            "advantage_abs_mean": float(np.abs(adv).mean()) if adv.size else 0.0,
            "alloc_objective": alloc.objective,
            **upd,
            "time/allocate": t1 - t0,
            "time/generate": t2 - t1,
            "time/score": t3 - t2,
            "time/update": t4 - t3,
            "time/step": t4 - t0,
            "gen/rollouts_per_s": len(texts) / max(gen.seconds, 1e-9),
            "gen/tokens_per_s": gen.tokens / max(gen.seconds, 1e-9),
        }
        arec = {
            "step": self.step_idx - 1,
            "ids": ids,
            "levels": [self.pool[i].level for i in idx],
            "p": [round(float(x), 6) for x in alloc.p],
            "rollouts": counts.tolist(),
            "successes": succ.astype(int).tolist(),
        }
        return rec, arec

    def _update(self, prompts, completions, adv: np.ndarray) -> dict:
        cfg = self.cfg
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
            "rng": rng_state(self.sample_gen),
            "config": self.cfg.to_dict(),
        }

    def load_state_dict(self, st: dict) -> None:
        """Restore :meth:`state_dict` output."""
        self.model.load_state_dict(st["model"])
        if self.ref is not None and st.get("ref") is not None:
            self.ref.load_state_dict(st["ref"])
        self.opt.load_state_dict(st["optimizer"])
        self.tracker.load_state_dict(st["tracker"])
        set_rng_state(st["rng"], self.sample_gen)
        self.step_idx = int(st["step"])
        self.rollouts_total = int(st["rollouts_total"])
        self.tokens_total = int(st["tokens_total"])

    def save(self) -> Path:
        """Write the checkpoint atomically."""
        return save_checkpoint(self.run_dir, self.state_dict(), self.tracker)

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        """Train for ``cfg.steps`` steps (continuing from the checkpoint with ``resume``).

        Returns a summary: final evaluation, totals and file paths.
        """
        cfg = self.cfg
        rd = self.run_dir
        metrics_path, alloc_path, eval_path = (
            rd / "metrics.jsonl",
            rd / "allocations.jsonl",
            rd / "eval.jsonl",
        )
        if cfg.resume:
            st = load_checkpoint(rd, map_location=self.device)
            self.load_state_dict(st)
            s = self.step_idx
            _jsonl_lines(metrics_path, lambda r: r["step"] < s)
            _jsonl_lines(alloc_path, lambda r: r["step"] < s)
            _jsonl_lines(eval_path, lambda r: r["step"] <= s)
        else:
            rd.mkdir(parents=True, exist_ok=True)
            for p in (metrics_path, alloc_path, eval_path):
                atomic_write_text(p, "")
            t = time.perf_counter()
            losses = self.warmstart()
            resolved = {
                **cfg.to_dict(),
                "resolved": {
                    "tracker": cfg.tracker_kind,
                    "step_budget": cfg.step_budget,
                    "model_kind": self.model_kind,
                    "parameters": self.n_params,
                    "device": self.device,
                    "train_prompts": len(self.pool),
                    "eval_prompts": len(self.eval_set),
                    "sft_final_loss": losses[-1] if losses else None,
                    "sft_seconds": time.perf_counter() - t if losses else 0.0,
                },
            }
            atomic_write_text(rd / "config.json", json.dumps(resolved, indent=2) + "\n")
        self._open_loggers()
        files = [open(p, "a", encoding="utf-8") for p in (metrics_path, alloc_path, eval_path)]
        fm, fa, fe = files
        last_eval = None

        def do_eval():
            nonlocal last_eval
            last_eval = self.evaluate()
            fe.write(json.dumps(last_eval) + "\n")
            fe.flush()
            self._log_external({f"eval/{k}": v for k, v in last_eval.items()}, self.step_idx)

        bar = None
        try:
            if self.step_idx == 0 and not cfg.resume:
                do_eval()
            if cfg.progress:
                from tqdm import tqdm

                bar = tqdm(
                    total=cfg.steps,
                    initial=self.step_idx,
                    desc=f"{cfg.method}",
                    leave=False,
                    disable=None,  # off when not a TTY (CI logs)
                )
            while self.step_idx < cfg.steps:
                rec, arec = self.step()
                fm.write(json.dumps(rec) + "\n")
                fa.write(json.dumps(arec) + "\n")
                fm.flush()
                fa.flush()
                self._log_external(rec, rec["step"])
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        reward=f"{rec['reward']:.3f}", egr=f"{rec['effective_gradient_ratio']:.2f}"
                    )
                s = self.step_idx
                if (cfg.eval_every and s % cfg.eval_every == 0) or s == cfg.steps:
                    do_eval()
                if (cfg.save_every and s % cfg.save_every == 0) or s == cfg.steps:
                    for f in files:
                        f.flush()
                    self.save()
        finally:
            if bar is not None:
                bar.close()
            for f in files:
                f.close()
            for kind, h in self._loggers:
                h.close() if kind == "tb" else h.finish()
            self._loggers = []
        if last_eval is None:
            last_eval = self.evaluate()
        return {
            "run_dir": str(rd),
            "steps": self.step_idx,
            "rollouts_total": self.rollouts_total,
            "tokens_total": self.tokens_total,
            "final_eval": last_eval,
        }


def train(cfg: TrainConfig, reward_fn: Callable | None = None, task=None) -> dict:
    """Build a :class:`Trainer` and run it; returns its summary."""
    return Trainer(cfg, reward_fn=reward_fn, task=task).run()
