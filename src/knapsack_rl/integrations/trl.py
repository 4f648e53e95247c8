"""Per-prompt rollout budgets inside TRL's ``GRPOTrainer``.

Stock ``GRPOTrainer`` gives every prompt ``num_generations`` completions.
:class:`KnapsackGRPOTrainer` keeps TRL's data flow (sampler, generation, reward
functions, loss, logging, checkpoints) and changes one thing: at every
generation step it allocates the step's rollouts across the step's prompts
with a knapsack-rl method, so prompts get different numbers of completions
(e.g. 2 for a prompt the policy always solves, 20 for one it solves 1 time in
10), and it computes GRPO advantages per prompt group of any size.

How it fits TRL (``trl>=1.16,<1.17``):

1. TRL's ``RepeatSampler`` hands each generation step ``M`` prompts, each
   repeated ``k = rollouts_per_prompt`` times (``M * k = generation_batch_size``
   rows over all processes).
2. The trainer gathers those rows, asks its tracker for each prompt's success
   estimate, allocates ``N_i`` rollouts with ``sum_i N_i = M * k`` and
   ``min_rollouts <= N_i <= max_rollouts``, and rebuilds the rows as prompt
   ``i`` repeated ``N_i`` times. Each process keeps its usual slice, so the
   number of completions per process, the micro-batches, gradient accumulation
   and multi-process sharding are exactly what TRL expects. A group may span
   micro-batches and processes: advantages are computed on the gathered
   rewards before the batch is split, as TRL does.
3. TRL generates and scores; the trainer then replaces the advantages with
   per-group ones (TRL's formula, any group size, optional clipping), updates
   the tracker with the rewards and logs ``effective_gradient_ratio`` and
   ``rollouts_per_prompt/min|mean|max`` beside TRL's metrics
   (``frac_reward_zero_std`` is recomputed over the real groups).
4. The tracker is saved into each checkpoint (``knapsack_tracker.npz``) and
   restored by ``train(resume_from_checkpoint=...)``.

``allocation_method="rounds"`` (two rounds, the default ``rounds=2``) draws
``oversample`` times as many prompts for the same rollouts, generates and scores a
pilot of ``pilot`` rollouts per prompt, plans the rest of the step from the pilot's
rewards (:func:`knapsack_rl.allocate_round`), then lets TRL generate only the rest:
TRL's ``_generate`` and ``_calculate_rewards`` return the pilot's completions and
rewards spliced with the new ones, so TRL pads, scores the loss inputs and logs one
batch of ``generation_batch_size`` rows per step, as it expects.

Evaluation is TRL's, unchanged (``num_generations_eval`` per prompt).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from knapsack_rl import defaults
from knapsack_rl.allocation import METHODS, Allocation, Allocator
from knapsack_rl.allocation.rounds import check_value
from knapsack_rl.metrics import (
    allocation_stats,
    effective_gradient_ratio,
    frac_reward_zero_std,
)
from knapsack_rl.planning.rounds import RoundPlanner
from knapsack_rl.planning.session import (
    PLANNER_FILE,
    TRACKER_FILE,
    AllocationConfig,
    AllocationSession,
    SessionBacked,
)
from knapsack_rl.tracking import (
    TRACKERS,
    Tracker,
    binarize_rewards,
    load_tracker,
)

SUPPORTED_TRL = (">=1.16", "<1.17")
"""The TRL release line this module was written against and tested with."""

# TRACKER_FILE and PLANNER_FILE (the session's): the tracker and, for ``rounds``, the
# planner's state (priors, last visits), inside each TRL checkpoint folder.


def _check_trl_version(version: str) -> None:
    """Raise ImportError unless ``version`` is in :data:`SUPPORTED_TRL`."""
    from packaging.version import Version

    v = Version(Version(version).base_version)
    if not Version("1.16") <= v < Version("1.17"):
        raise ImportError(
            f"knapsack_rl.integrations.trl supports trl>=1.16,<1.17 but trl {version} is installed; "
            "install a supported release with: pip install 'trl>=1.16,<1.17' "
            "(or pip install 'knapsack-rl[trl]')"
        )


try:
    import trl as _trl
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "knapsack_rl.integrations.trl needs TRL; install it with: pip install 'knapsack-rl[trl]'"
    ) from e
_check_trl_version(_trl.__version__)

import torch  # noqa: E402
from accelerate.utils import broadcast_object_list, gather_object  # noqa: E402
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402
from trl.trainer.utils import nanstd  # noqa: E402

__all__ = [
    "KnapsackGRPOConfig",
    "KnapsackGRPOTrainer",
    "grouped_advantages",
    "SUPPORTED_TRL",
    "TRACKER_FILE",
    "PLANNER_FILE",
]


def _as_dict(value, name: str) -> dict:
    """A dict option given as a dict, a JSON string (from the command line) or None."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict (or a JSON object string), got {value!r}")
    return dict(value)


@dataclass
class KnapsackGRPOConfig(GRPOConfig):
    """``trl.GRPOConfig`` plus the per-prompt allocation settings.

    Every generation step spends ``generation_batch_size`` rollouts (as in
    TRL) on ``generation_batch_size // rollouts_per_prompt`` prompts, split
    among them by ``allocation_method``.

    Attributes:
        allocation_method: ``knapsack`` (exact optimum of the paper's value),
            ``paper`` (the reference procedure), ``bayes`` (posterior expected
            value), ``uniform`` (every prompt gets ``rollouts_per_prompt``:
            stock GRPO) or ``rounds``: allocation in rounds within the step, from
            fresh priors (pooled by ``prior_group_column``, offline
            ``pass_rate_column``, stale evidence decayed toward the pool) and the
            step's own pilot; see docs/trl.md.
        value: value model of ``rounds`` (``grpo`` or ``paper``).
        rounds: generation rounds per step of ``rounds``: 2 (a pilot, then the rest
            planned from its rewards) or 1 (one-shot from the priors).
        pilot: rollouts per prompt in the pilot round (``rounds=2``).
        oversample: ``rounds`` draws this many times the prompts of a uniform step
            (``generation_batch_size / rollouts_per_prompt``) for the same rollouts.
        prior_group_column: dataset column pooling priors (e.g. a level or source).
        pass_rate_column: dataset column with an offline pass rate in [0, 1].
        prior_half_life: steps until a prompt's own evidence counts half (``rounds``).
        rollouts_per_prompt: average rollouts per prompt, i.e. the per-prompt
            budget; None means ``num_generations``. It sets how many prompts a
            generation step draws; ``generation_batch_size`` must be a multiple.
        min_rollouts, max_rollouts: bounds on each prompt's rollouts in a step
            (``paper`` may exceed the max with its round-robin leftovers).
        tracker: success-rate tracker: ``beta`` (discounted Beta posterior with
            an empirical-Bayes prior: useful from step 1), ``window`` or
            ``paper`` (the reference estimator; uniform until prompts are seen).
        tracker_kwargs: extra arguments of the tracker (e.g.
            ``{"discount": 0.8}``); a dict or a JSON string.
        allocator_kwargs: extra ``knapsack_rl.Allocator`` settings (``alpha``,
            ``cost_rule``, ``negative_n``, ``positive_n``, ``prior``).
        success_threshold: a rollout counts as a success for the tracker when
            its reward is ``>= success_threshold``.
        success_reward: name of the reward function whose value decides
            success (e.g. the correctness reward when a format reward is also
            used); None uses the weighted sum of all reward functions.
        advantage_clip: clip advantages to ``[-clip, clip]`` (the paper uses 5:
            a lone success in a group of 93 would otherwise get ~9.6) in steps
            whose groups differ in size; None disables it. A step whose groups
            all have the same size keeps TRL's advantages unclipped, so
            ``allocation_method="uniform"`` equals stock ``GRPOTrainer`` under
            every ``scale_rewards`` and ``multi_objective_aggregation``.
        prompt_id_column: dataset column that names each prompt for the
            tracker. None uses the ``id`` column when the dataset has one, else
            a hash of the prompt.
    """

    allocation_method: str = field(
        default="knapsack",
        metadata={"help": "Allocation method: knapsack, paper, bayes, uniform or rounds."},
    )
    value: str = field(
        default=defaults.VALUE,
        metadata={"help": "Value model of rounds: grpo or paper."},
    )
    prior_group_column: str | None = field(
        default=None, metadata={"help": "Column pooling the priors of rounds (e.g. level)."}
    )
    pass_rate_column: str | None = field(
        default=None, metadata={"help": "Column with an offline pass rate in [0, 1] (rounds)."}
    )
    prior_half_life: float = field(
        default=defaults.PRIOR_HALF_LIFE,
        metadata={"help": "Steps until a prompt's own evidence counts half (rounds)."},
    )

    rounds: int = field(
        default=defaults.ROUNDS,
        metadata={"help": "Generation rounds per step of rounds: 2 (pilot, then the rest) or 1."},
    )
    pilot: int = field(
        default=defaults.PILOT, metadata={"help": "Pilot rollouts per prompt (rounds=2)."}
    )
    oversample: int = field(
        default=defaults.OVERSAMPLE,
        metadata={"help": "rounds draws this many times a uniform step's prompts, same budget."},
    )
    rollouts_per_prompt: int | None = field(
        default=None,
        metadata={"help": "Average rollouts per prompt (budget); None means num_generations."},
    )
    min_rollouts: int = field(
        default=2, metadata={"help": "Fewest rollouts of a prompt in a step."}
    )
    max_rollouts: int = field(
        default=128, metadata={"help": "Most rollouts of a prompt in a step."}
    )
    tracker: str = field(
        default="beta", metadata={"help": "Success-rate tracker: beta, window or paper."}
    )
    tracker_kwargs: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "Extra tracker arguments (dict or JSON string)."}
    )
    allocator_kwargs: dict[str, Any] | str | None = field(
        default=None, metadata={"help": "Extra Allocator settings (dict or JSON string)."}
    )
    success_threshold: float = field(
        default=0.5, metadata={"help": "Reward at or above which a rollout is a success."}
    )
    success_reward: str | None = field(
        default=None,
        metadata={"help": "Reward function deciding success; None: weighted sum of all."},
    )
    advantage_clip: float | None = field(
        default=5.0,
        metadata={
            "help": "Clip advantages to [-clip, clip] in steps with unequal groups; None: never."
        },
    )
    prompt_id_column: str | None = field(
        default=None,
        metadata={"help": "Column naming each prompt; None: 'id' if present, else a prompt hash."},
    )

    def __post_init__(self):
        super().__post_init__()
        self.tracker_kwargs = _as_dict(self.tracker_kwargs, "tracker_kwargs")
        self.allocator_kwargs = _as_dict(self.allocator_kwargs, "allocator_kwargs")
        if self.allocation_method in ("stream", "pipelined"):
            raise ValueError(
                f"allocation_method={self.allocation_method!r} needs a generation hook that "
                "TRL 1.16's GRPOTrainer does not have (docs/trl.md); use 'rounds'"
            )
        if self.allocation_method not in (*METHODS, "rounds"):
            raise ValueError(
                f"allocation_method: unknown {self.allocation_method!r}; "
                f"expected one of {', '.join(METHODS)}, rounds"
            )
        check_value(self.value)
        if self.tracker not in TRACKERS:
            raise ValueError(
                f"tracker: unknown {self.tracker!r}; expected one of {', '.join(TRACKERS)}"
            )
        k = self.num_generations if self.rollouts_per_prompt is None else self.rollouts_per_prompt
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"rollouts_per_prompt must be a positive integer, got {k!r}")
        self.rollouts_per_prompt = k
        if self.generation_batch_size % k != 0:
            raise ValueError(
                f"generation_batch_size ({self.generation_batch_size} = per_device_train_batch_size "
                f"{self.per_device_train_batch_size} x processes {self.world_size} x "
                f"steps_per_generation {self.steps_per_generation}) must be a multiple of "
                f"rollouts_per_prompt ({k}): each generation step draws "
                f"generation_batch_size / rollouts_per_prompt prompts"
            )
        if self.allocation_method == "rounds":
            self._check_rounds(k)
        elif not 1 <= self.min_rollouts <= k <= self.max_rollouts:
            raise ValueError(
                f"the per-prompt budget cannot be met: need 1 <= min_rollouts ({self.min_rollouts}) "
                f"<= rollouts_per_prompt ({k}) <= max_rollouts ({self.max_rollouts})"
            )
        if self.advantage_clip is not None and not self.advantage_clip > 0:
            raise ValueError(f"advantage_clip must be > 0 or None, got {self.advantage_clip}")
        # build them once so a bad setting fails here, not at the first generation step
        self.make_allocator()
        self.make_planner(self.make_tracker())

    def _check_rounds(self, k: int) -> None:
        for name in ("rounds", "pilot", "oversample"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.rounds > 2:
            raise ValueError(
                f"rounds={self.rounds}: the TRL adapter generates a step in 1 round (one-shot "
                "from the priors) or 2 (a pilot, then the rest)"
            )
        if k % self.oversample:
            raise ValueError(
                f"rollouts_per_prompt ({k}) must be a multiple of oversample ({self.oversample}): "
                f"a rounds step draws oversample x generation_batch_size / rollouts_per_prompt "
                f"prompts for generation_batch_size ({self.generation_batch_size}) rollouts"
            )
        per_prompt = k // self.oversample
        if not 1 <= self.min_rollouts <= per_prompt <= self.max_rollouts:
            raise ValueError(
                f"the per-prompt budget cannot be met: need 1 <= min_rollouts ({self.min_rollouts}) "
                f"<= rollouts_per_prompt / oversample ({k} / {self.oversample}) "
                f"<= max_rollouts ({self.max_rollouts})"
            )
        if self.rounds == 2:
            pilot_rows = self.pilot * self.step_prompts
            if self.pilot >= per_prompt:
                raise ValueError(
                    f"pilot ({self.pilot}) x {self.step_prompts} prompts uses the whole budget of "
                    f"{self.generation_batch_size} rollouts, leaving nothing for the planned round; "
                    f"use pilot < rollouts_per_prompt / oversample ({per_prompt})"
                )
            if pilot_rows % self.world_size:
                raise ValueError(
                    f"the pilot's {pilot_rows} rollouts (pilot {self.pilot} x {self.step_prompts} "
                    f"prompts) must split evenly over the {self.world_size} processes"
                )

    @property
    def step_prompts(self) -> int:
        """Prompts a generation step draws: ``generation_batch_size / rollouts_per_prompt``,
        times ``oversample`` for ``rounds``."""
        m = self.generation_batch_size // self.rollouts_per_prompt
        return m * self.oversample if self.allocation_method == "rounds" else m

    @property
    def allocation(self) -> AllocationConfig:
        """These settings as the engine-agnostic :class:`AllocationConfig` (the same layer
        the reference trainer and verl use)."""
        return AllocationConfig(
            method=self.allocation_method,
            tracker=self.tracker,
            tracker_kwargs=dict(self.tracker_kwargs or {}),
            allocator_kwargs=dict(self.allocator_kwargs or {}),
            value=self.value,
            rounds=self.rounds,
            pilot=self.pilot,
            oversample=self.oversample,
            prior_half_life=self.prior_half_life,
            rollouts_per_prompt=self.rollouts_per_prompt,
            min_rollouts=self.min_rollouts,
            max_rollouts=self.max_rollouts,
            success_threshold=self.success_threshold,
        )

    def make_allocator(self) -> Allocator:
        """The :class:`knapsack_rl.Allocator` these settings describe."""
        try:
            return self.allocation.make_allocator()
        except TypeError as e:
            raise ValueError(f"allocator_kwargs: {e}") from None

    def make_planner(self, tracker: Tracker) -> RoundPlanner | None:
        """The :class:`knapsack_rl.RoundPlanner` of ``rounds`` (None otherwise)."""
        if self.allocation_method != "rounds":
            return None
        return self.allocation.make_planner(tracker)

    def make_tracker(self) -> Tracker:
        """A fresh tracker of kind ``tracker`` (threshold: ``success_threshold``)."""
        try:
            return self.allocation.make_tracker()
        except TypeError as e:
            raise ValueError(f"tracker_kwargs for tracker {self.tracker!r}: {e}") from None


def grouped_advantages(
    rewards_per_func: torch.Tensor,
    reward_weights: torch.Tensor,
    group_sizes,
    *,
    scale_rewards: str = "group",
    multi_objective_aggregation: str = "sum_then_normalize",
    clip: float | None = None,
) -> torch.Tensor:
    """TRL 1.16's GRPO advantages for consecutive groups of any size.

    Reproduces ``GRPOTrainer._generate_and_score_completions`` (both
    ``multi_objective_aggregation`` modes, ``scale_rewards`` in ``group`` /
    ``batch`` / ``none``, NaN for unscorable rows) with the fixed
    ``view(-1, num_generations)`` replaced by ``group_sizes``. A group of one
    rollout gets advantage 0. Then clips to ``[-clip, clip]`` if ``clip``.

    Args:
        rewards_per_func: (N, F) rewards of each of the N rollouts per reward
            function (NaN where a function gave None), groups consecutive.
        reward_weights: (F,) weights of the reward functions.
        group_sizes: (G,) ints summing to N.
    Returns:
        (N,) float tensor of advantages.
    """
    sizes = [int(s) for s in np.asarray(group_sizes).reshape(-1)]
    n = rewards_per_func.shape[0]
    if sum(sizes) != n or min(sizes, default=1) < 1:
        raise ValueError(f"group sizes {sizes} do not split {n} rollouts into non-empty groups")
    w = reward_weights.to(rewards_per_func.device).unsqueeze(0)
    unscorable = torch.isnan(rewards_per_func).all(dim=1)

    if multi_objective_aggregation == "sum_then_normalize":
        rewards = (rewards_per_func * w).nansum(dim=1)
        rewards[unscorable] = torch.nan
        means, stds = [], []
        for g in torch.split(rewards, sizes):
            means.append(torch.nanmean(g).expand_as(g))
            stds.append(nanstd(g).expand_as(g) if g.numel() > 1 else torch.zeros_like(g))
        mean = torch.cat(means)
        if scale_rewards in ("group", "none"):
            std = torch.cat(stds)
        elif scale_rewards == "batch":
            std = nanstd(rewards).expand_as(rewards) if n > 1 else torch.zeros_like(rewards)
        else:
            raise ValueError(
                f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}"
            )
        advantages = rewards - mean
        if scale_rewards != "none":
            advantages = advantages / (std + 1e-4)
    elif multi_objective_aggregation == "normalize_then_sum":
        parts = []
        for g in torch.split(rewards_per_func, sizes):
            mean_k = torch.nanmean(g, dim=0, keepdim=True)
            std_k = nanstd(g, dim=0, keepdim=True) if g.shape[0] > 1 else torch.zeros_like(mean_k)
            parts.append((g - mean_k) / (std_k + 1e-4))
        rewards = (torch.cat(parts) * w).nansum(dim=1)
        rewards[unscorable] = torch.nan
        std = nanstd(rewards).expand_as(rewards) if n > 1 else torch.zeros_like(rewards)
        advantages = (rewards - torch.nanmean(rewards)) / (std + 1e-4)
    else:
        raise ValueError(
            f"multi_objective_aggregation must be 'sum_then_normalize' or 'normalize_then_sum', "
            f"got {multi_objective_aggregation!r}"
        )
    advantages = torch.nan_to_num(advantages, nan=0.0)
    if clip is not None:
        advantages = advantages.clamp(-clip, clip)
    return advantages


def _hash_prompt(prompt) -> str:
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _join(old, new):
    """Concatenate one field of two ``GRPOTrainer._generate`` outputs (row lists, or None)."""
    if old is None and new is None:
        return None
    if isinstance(old, dict):
        return {key: _join(old.get(key), new.get(key)) for key in {**old, **new}}
    return list(old or []) + list(new or [])


def _interleave(first: torch.Tensor, second: torch.Tensor, nproc: int) -> torch.Tensor:
    """Gathered rows of two rounds, each split evenly over ``nproc`` processes, in the
    gathered order of one batch whose rows on each process are its round-1 rows, then its
    round-2 rows."""
    a = first.reshape(nproc, -1, *first.shape[1:])
    b = second.reshape(nproc, -1, *second.shape[1:])
    return torch.cat([a, b], dim=1).reshape(-1, *first.shape[1:])


def _pilot_mask(pilot: np.ndarray, rollouts: np.ndarray, nproc: int) -> np.ndarray:
    """(N,) bool: which gathered rows of a ``rounds`` step are pilot rows."""
    p, n = int(pilot.sum()), int(rollouts.sum())
    mask = np.zeros((nproc, n // nproc), dtype=bool)
    mask[:, : p // nproc] = True
    return mask.reshape(-1)


class KnapsackGRPOTrainer(SessionBacked, GRPOTrainer):
    """``trl.GRPOTrainer`` with a per-prompt rollout budget chosen at every generation step.

    Takes the same arguments as ``GRPOTrainer``; ``args`` must be a
    :class:`KnapsackGRPOConfig` (None builds a default one).

    Attributes:
        allocator: the :class:`knapsack_rl.Allocator` in use.
        tracker: the per-prompt success tracker (saved with checkpoints).
        rollouts_per_prompt: the average rollouts per prompt (budget).
        allocation_history: the last 1000 training allocations, each
            ``{"step", "prompt_ids", "rollouts", "successes"}`` (``rollouts`` int64
            (M,); ``successes`` float (M,), the sum of each group's success rewards);
            with ``rounds=2`` also ``pilot`` and ``pilot_successes``, the first round's.
        last_allocation: the :class:`knapsack_rl.Allocation` of the last
            training generation step (main process; None on others).
    """

    def __init__(self, model, reward_funcs=None, args: KnapsackGRPOConfig | None = None, *a, **kw):
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "")
            args = KnapsackGRPOConfig(f"{(name or 'model').split('/')[-1]}-KnapsackGRPO")
        if not isinstance(args, KnapsackGRPOConfig):
            raise TypeError(
                f"KnapsackGRPOTrainer needs args=KnapsackGRPOConfig(...), got {type(args).__name__}; "
                "KnapsackGRPOConfig takes every GRPOConfig argument plus the allocation settings"
            )
        super().__init__(model, reward_funcs, args, *a, **kw)
        self.rollouts_per_prompt = int(args.rollouts_per_prompt)
        self.allocator = args.make_allocator()
        # rounds: the step's budget goes through the engine-agnostic session
        alloc = args.allocation
        self.session = AllocationSession(alloc) if alloc.planned else None
        self._tracker = args.make_tracker() if self.session is None else None
        if args.success_reward is not None and args.success_reward not in self.reward_func_names:
            raise ValueError(
                f"success_reward {args.success_reward!r} is not one of the reward functions "
                f"{self.reward_func_names}"
            )
        self.allocation_history: deque = deque(maxlen=1000)
        self.last_allocation: Allocation | None = None
        self._knapsack_rewards: torch.Tensor | None = None
        self._pilot: dict | None = None  # this process's pilot, during a rounds step

    # ------------------------------------------------------------- sampling
    def get_train_dataloader(self):
        """TRL's loader, drawing ``args.step_prompts`` prompts per generation step."""
        saved = self.num_generations
        # read by TRL's sampler / stream repeat: each drawn prompt fills this many rows
        self.num_generations = self.args.generation_batch_size // self.args.step_prompts
        try:
            return super().get_train_dataloader()
        finally:
            self.num_generations = saved

    # ------------------------------------------------------------ allocation
    def prompt_id(self, row: dict):
        """Tracker id of a dataset row: its ``prompt_id_column``, ``id``, or a prompt hash."""
        col = self.args.prompt_id_column
        if col is not None:
            if col not in row:
                raise KeyError(
                    f"prompt_id_column {col!r} is not a column of the training rows "
                    f"(columns: {sorted(row)}); with remove_unused_columns=True only 'prompt' is kept"
                )
            pid = row[col]
        elif "id" in row:
            pid = row["id"]
        else:
            return _hash_prompt(row.get("prompt"))
        if isinstance(pid, (bool, np.bool_)) or not isinstance(
            pid, (str, int, np.integer, np.str_)
        ):
            return str(pid)
        return pid.item() if isinstance(pid, np.generic) else pid

    def allocate_rollouts(
        self, prompt_ids: list, rows: list | None = None, budget: int | None = None
    ) -> Allocation:
        """Allocate ``budget`` rollouts (default ``len(prompt_ids) * rollouts_per_prompt``)
        from the tracker's estimates, in one shot (``rows``: one dataset row per prompt, for
        the prior columns of ``rounds``). With ``rounds=2`` this is the pilot."""
        uniform_budget = len(prompt_ids) * self.rollouts_per_prompt
        budget = uniform_budget if budget is None else int(budget)
        if self.planner is None:
            stats = self.tracker.stats(prompt_ids)
            if budget == uniform_budget:
                return self.allocator.allocate(stats, rollouts_per_prompt=self.rollouts_per_prompt)
            return self.allocator.allocate(stats, budget=budget)
        t0 = time.perf_counter()
        self._prior_columns(prompt_ids, rows or [])
        counts = np.bincount(self.session.start(prompt_ids, budget), minlength=len(prompt_ids))
        return self._rounds_allocation(counts, time.perf_counter() - t0)

    def _rounds_allocation(self, counts: np.ndarray, seconds: float) -> Allocation:
        a, b = self.planner.prior_a, self.planner.prior_b
        return Allocation(
            rollouts=np.asarray(counts, dtype=np.int64),
            value=np.zeros(len(counts)),
            objective=0.0,
            upper_bound=None,
            method="rounds",
            p=a / (a + b),
            budget=int(np.sum(counts)),
            seconds=seconds,
        )

    def _prior_columns(self, prompt_ids: list, rows: list) -> None:
        """Pass the rows' prior columns (group key, offline pass rate) to the planner."""
        group = self._column(rows, self.args.prior_group_column)
        rate = self._column(rows, self.args.pass_rate_column)
        self.session.set_prior_columns(prompt_ids, group, rate)

    @staticmethod
    def _column(rows: list, col: str | None) -> list | None:
        if col is None or not rows:
            return None
        if col not in rows[0]:
            raise KeyError(
                f"column {col!r} is not in the training rows (columns: {sorted(rows[0])}); "
                "with remove_unused_columns=True only 'prompt' is kept"
            )
        return [r[col] for r in rows]

    def _success_rewards(self, rpf: torch.Tensor) -> np.ndarray:
        """(N,) rewards that decide success for the tracker (NaN where unscored)."""
        weights = self.reward_weights.to(rpf.device)
        if self.args.success_reward is not None:
            r = rpf[:, self.reward_func_names.index(self.args.success_reward)]
        else:
            r = (rpf * weights.unsqueeze(0)).nansum(dim=1)
            r[torch.isnan(rpf).all(dim=1)] = torch.nan
        return r.detach().float().cpu().numpy()

    # ------------------------------------------------------------ generation
    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, *a, **kw
    ):
        if self.model.training:
            # Rows are already repeated per allocation; vLLM server mode must not dedupe them
            # by a fixed stride (it would take prompts[::num_generations] and sample n each).
            num_generations = 1
        return super()._generate_single_turn(
            prompt_ids, images, multimodal_fields, num_generations, *a, **kw
        )

    def _generate(self, prompts: list):
        cache = self._pilot
        if cache is None:
            return super()._generate(prompts)
        # rounds: the first rows of this process are its pilot, already generated
        n = len(cache["rows"])
        new = super()._generate(prompts[n:])
        return tuple(_join(old, fresh) for old, fresh in zip(cache["generated"], new, strict=True))

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        cache = self._pilot
        if cache is None:
            out = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        else:  # score only the new rows; the pilot's rewards were computed in round 1
            n = len(cache["rows"])
            new = super()._calculate_rewards(
                inputs[n:], prompts[n:], completions[n:], completion_ids_list[n:]
            )
            out = _interleave(cache["rewards"], new, self.accelerator.num_processes)
        self._knapsack_rewards = out  # (N, F), gathered over processes
        return out

    def _pilot_round(self, rows: list, prompt_ids: list, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Round 1 of ``rounds``: generate and score the pilot, plan the rest of the step.

        Returns ``(pilot, rest)``, the rollouts per prompt of each round, the same on
        every process. Leaves this process's pilot (rows, generation, gathered rewards)
        in ``self._pilot`` for :meth:`_generate` and :meth:`_calculate_rewards`.
        """
        acc = self.accelerator
        nproc, rank = acc.num_processes, acc.process_index
        if self.tools or self.rollout_func is not None or self.environment_factories is not None:
            raise ValueError(
                "allocation_method='rounds' with rounds=2 does not support tools, rollout_func or "
                "environment_factory; use rounds=1"
            )
        if "image" in rows[0] or "images" in rows[0]:
            raise ValueError("allocation_method='rounds' with rounds=2 does not support images")
        self._prior_columns(prompt_ids, rows[::k])
        m = len(prompt_ids)
        pilot = np.bincount(self.session.start(prompt_ids, len(rows)), minlength=m)
        first = np.repeat(np.arange(len(prompt_ids)), pilot)
        if len(first) % nproc:
            raise RuntimeError(
                f"a pilot of {len(first)} rollouts does not split over {nproc} processes"
            )
        per = len(first) // nproc
        mine = [dict(rows[int(g) * k]) for g in first[rank * per : (rank + 1) * per]]
        prompts = [r["prompt"] for r in mine]
        # TRL's _generate returns (prompt_ids, completion_ids, tool_mask, completions, ...)
        generated = super()._generate(prompts)
        completion_ids, completions = generated[1], generated[3]
        rewards = super()._calculate_rewards(mine, prompts, completions, completion_ids)
        r = self._success_rewards(rewards)
        ok = np.isfinite(r)
        # unscored pilot rollouts are no evidence and no longer awaited; round 2 comes
        # back from whichever call resolves the pilot's last rollout
        sends = [self.session.drop(first[~ok]), self.session.record(first[ok], r[ok])]
        rest = np.bincount(np.concatenate(sends), minlength=m)
        payload = [rest.tolist()]
        if nproc > 1:  # the main process's plan, on every process
            broadcast_object_list(payload, from_process=0)
        rest = np.asarray(payload[0] or np.zeros(len(prompt_ids)), dtype=np.int64)
        self._pilot = {"rows": mine, "generated": generated, "rewards": rewards}
        return pilot, rest

    def _generate_and_score_completions(self, inputs):
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        acc = self.accelerator
        rank, n_local = acc.process_index, len(inputs)
        rows = gather_object(list(inputs)) if acc.num_processes > 1 else list(inputs)
        prompt_ids, k = self._step_prompts(rows)
        rollouts, group, pilot = self._plan_step(rows, prompt_ids, k)
        start = rank * n_local
        local = [dict(rows[int(g) * k]) for g in group[start : start + n_local]]

        self._knapsack_rewards = None
        try:
            output = super()._generate_and_score_completions(local)
        finally:
            self._pilot = None
        rpf = self._knapsack_rewards
        adv = self._advantages(rpf, group, rollouts)
        output["advantages"] = adv[start : start + n_local].to(output["advantages"])
        self._logs["advantages"].clear()
        self._logs["advantages"].extend(adv.tolist())
        self._observe(rpf, prompt_ids, group, rollouts, pilot)
        return output

    def _step_prompts(self, rows: list) -> tuple[list, int]:
        """The generation batch's prompt ids (one per prompt) and rows per prompt; checks
        that the rows are ``k`` consecutive copies of each prompt (TRL's RepeatSampler)."""
        k = len(rows) // self.args.step_prompts
        if len(rows) % self.args.step_prompts:
            raise RuntimeError(
                f"generation batch of {len(rows)} rows is not a multiple of "
                f"{self.args.step_prompts} prompts"
            )
        ids = [self.prompt_id(r) for r in rows]
        prompt_ids = ids[::k]
        for g, pid in enumerate(prompt_ids):
            if any(x != pid for x in ids[g * k : (g + 1) * k]):
                raise RuntimeError(
                    f"rows {g * k}..{(g + 1) * k - 1} of the generation batch are not {k} copies of one "
                    "prompt; KnapsackGRPOTrainer needs TRL's RepeatSampler order (custom samplers or "
                    "datasets that change rows between processes are not supported)"
                )
        return prompt_ids, k

    def _plan_step(self, rows: list, prompt_ids: list, k: int):
        """The step's allocation: ``(rollouts, group, pilot)``: rollouts per prompt (M,),
        the prompt of each gathered row (N,), and the pilot's counts (rounds=2) or None.
        The same on every process."""
        acc = self.accelerator
        nproc = acc.num_processes
        if self.planner is not None and self.planner.rounds >= 2:
            t0 = time.perf_counter()
            pilot, rest = self._pilot_round(rows, prompt_ids, k)
            seconds = time.perf_counter() - t0  # the pilot's generation, scoring and planning
            rollouts = pilot + rest
            parts = []
            for counts in (pilot, rest):  # each round split evenly over the processes
                g = np.repeat(np.arange(len(prompt_ids)), counts)
                if len(g) % nproc:
                    raise RuntimeError(
                        f"a round of {len(g)} rollouts does not split over {nproc} processes"
                    )
                parts.append(g.reshape(nproc, -1))
            group = np.concatenate(parts, axis=1).reshape(-1)  # gathered order: rank by rank
            if acc.is_main_process:
                self.last_allocation = self._rounds_allocation(rollouts, seconds)
        else:
            pilot = None
            payload = [None]
            # rounds=1: the prior columns, and the budget of the oversampled prompts
            kw = {} if self.planner is None else {"rows": rows[::k], "budget": len(rows)}
            if acc.is_main_process:
                self.last_allocation = self.allocate_rollouts(prompt_ids, **kw)
                payload = [self.last_allocation.rollouts.tolist()]
            elif self.planner is not None:  # keep the planner's state the same on every process
                self.allocate_rollouts(prompt_ids, **kw)
            if nproc > 1:
                broadcast_object_list(payload, from_process=0)
            rollouts = np.asarray(payload[0], dtype=np.int64)
            group = np.repeat(np.arange(len(prompt_ids)), rollouts)
        if int(rollouts.sum()) != len(rows) or len(group) != len(rows):
            raise RuntimeError(f"allocation spends {rollouts.sum()} rollouts, expected {len(rows)}")
        return rollouts, group, pilot

    def _advantages(self, rpf: torch.Tensor, group: np.ndarray, rollouts: np.ndarray):
        """(N,) advantages over each prompt's whole group, in the gathered row order."""
        order = np.argsort(group, kind="stable")  # groups consecutive, as grouped_advantages needs
        adv_sorted = grouped_advantages(
            rpf[torch.as_tensor(order, device=rpf.device)],
            self.reward_weights.to(rpf.device),
            rollouts,
            scale_rewards=self.scale_rewards,
            multi_objective_aggregation=self.multi_objective_aggregation,
            # equal groups (always under uniform): TRL's advantages exactly, as stock GRPOTrainer
            clip=self.args.advantage_clip if len(set(rollouts.tolist())) > 1 else None,
        )
        adv = torch.empty_like(adv_sorted)
        adv[torch.as_tensor(order, device=adv.device)] = adv_sorted
        return adv

    def _observe(self, rpf, prompt_ids: list, group, rollouts, pilot) -> None:
        """Tracker update, metrics and the allocation record, on the gathered rewards
        (identical on every process)."""
        r = self._success_rewards(rpf)
        ok = np.isfinite(r)
        m = len(prompt_ids)
        won = np.zeros(r.shape)  # successes as the tracker counts them
        won[ok] = binarize_rewards(r[ok], self.tracker.threshold)
        successes = np.bincount(group[ok], weights=won[ok], minlength=m)
        done = None
        if pilot is not None:
            ok &= ~_pilot_mask(pilot, rollouts, self.accelerator.num_processes)  # in round 1
        if self.session is None:
            self.tracker.update([prompt_ids[g] for g in group[ok]], r[ok])
        else:  # the session updates the tracker, stamps the prompts as seen, sums the pilot
            self.session.record(group[ok], r[ok])
            done = self.session.finish()

        weights = self.reward_weights.to(rpf.device)
        total = (rpf * weights.unsqueeze(0)).nansum(dim=1)
        scored = ~torch.isnan(rpf).all(dim=1)
        total, keep = total[scored].float().cpu().numpy(), scored.cpu().numpy()
        metrics = self._metrics["train"]
        if metrics["frac_reward_zero_std"]:
            metrics["frac_reward_zero_std"][-1] = frac_reward_zero_std(group[keep], total)
        metrics["effective_gradient_ratio"].append(effective_gradient_ratio(group[keep], total))
        for key, value in allocation_stats(rollouts).items():
            if key.startswith("rollouts_per_prompt/"):
                metrics[key].append(value)
        if pilot is not None:  # pilot and tie-break stats, as the session computed them
            for key, value in done.metrics.items():
                if key.startswith("rounds/"):
                    metrics[key].append(value)
        record = {"step": int(self.state.global_step), "prompt_ids": list(prompt_ids)}
        record["rollouts"] = rollouts
        record["successes"] = successes
        if pilot is not None:
            record["pilot"] = pilot
            record["pilot_successes"] = done.pilot_successes.astype(np.float64)
        if done is not None:  # the prior mean each prompt's plan started from
            record["prior_mean"] = np.round(done.p, 4)
        self.allocation_history.append(record)

    # ---------------------------------------------------------- checkpoints
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            path = os.path.join(self._get_output_dir(trial=trial), folder, TRACKER_FILE)
            if self.session is not None:  # rounds: also the priors' state (pools, last visits)
                self.session.save(os.path.dirname(path))
            else:
                self.tracker.save(path)  # atomic

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.load_tracker_from_checkpoint(checkpoint)

    def load_tracker_from_checkpoint(self, checkpoint: str) -> None:
        """Restore the tracker (and, for ``rounds``, the planner's priors) saved in a checkpoint
        folder; done by ``train(resume_from_checkpoint=)``.

        Warns and keeps the current tracker when the folder has none; raises
        ValueError when its tracker kind differs from the config's.
        """
        path = os.path.join(checkpoint, TRACKER_FILE)
        if not os.path.exists(path):
            warnings.warn(
                f"{path} not found (checkpoint written by GRPOTrainer?): resuming with a fresh "
                f"{self.tracker.kind!r} tracker, so every prompt's estimate starts over",
                stacklevel=2,
            )
            return
        tracker = load_tracker(path)
        if tracker.kind != self.tracker.kind:
            raise ValueError(
                f"{path}: checkpoint has a {tracker.kind!r} tracker but the config asks for "
                f"tracker={self.tracker.kind!r}"
            )
        if self.session is not None:
            self.session.load(checkpoint)
        else:
            self._tracker = tracker
