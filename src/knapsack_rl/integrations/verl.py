"""Per-prompt rollout budgets inside verl's v1 PPO trainer, without a fork.

verl 0.9's v1 trainer (``verl/trainer/ppo/v1``) sends each training batch of
prompts to its agent loop, which draws ``prompt["__rollout_n__"]`` responses per
prompt when that field is present (``rollout.n`` otherwise), groups them by
``uid`` and computes GRPO advantages per uid, so groups may differ in size.
This module adds one trainer, registered with verl's ``register_trainer`` as
``knapsack``; it keeps verl's sync trainer and changes three things:

1. **Allocation** (``_submit_batch_to_rollout``): before a batch of ``M``
   prompts goes to the rollout workers, the driver asks its tracker for each
   prompt's success estimate, allocates ``N_i`` rollouts with
   ``sum_i N_i = M * rollout.n`` and ``min_rollouts <= N_i <= max_rollouts``,
   and attaches ``__rollout_n__``. The step's total is verl's own
   ``train_batch_size * rollout.n``, so mini-batch sizes (``ppo_mini_batch_size
   * rollout.n``), padding and sequence-length balancing are unchanged.
2. **Tracking** (``step``): after verl's step, the rewards (``rm_scores``
   summed over tokens, the final output of each session) are grouped by uid,
   mapped to the prompt's stable id and fed to the tracker; metrics
   ``knapsack/effective_gradient_ratio``,
   ``knapsack/rollouts_per_prompt/{min,mean,max}`` and
   ``knapsack/allocation_seconds`` go into verl's metrics dict (and so to its
   ``Tracking`` loggers).
3. **Checkpoints**: the tracker is written to
   ``global_step_<k>/knapsack_tracker.npz`` next to verl's actor checkpoint
   and read back on resume.

``method=rounds`` (``rounds=2``, the default) generates each step in two rounds
under the same uids: the driver draws ``oversample * train_batch_size`` prompts,
sends a pilot of ``pilot`` rollouts each, waits until TransferQueue marks every
group finished, reads the pilot's rewards, plans the rest of the step's
``train_batch_size * rollout.n`` rollouts with ``allocate_round``, and sends them
with ``__session_offset__`` so that :class:`KnapsackAgentLoopManager`'s workers
number the new sessions after the pilot's. verl then samples the
``oversample * train_batch_size`` finished groups and computes advantages over
each whole group. ``method=stream`` draws the same prompts and pilot but does not
wait: the driver polls TransferQueue for sessions as they end, feeds their rewards to
a :class:`~knapsack_rl.StreamPlanner` and starts the sessions it releases at once
(same uids, numbered after the earlier ones), returning once every session is back.
``method=pipelined`` (the default) plans as ``rounds=2``, but each batch's pilot was
submitted with the previous step's rest (the batch is drawn a step early and its
finished pilot groups are marked ``running`` until their step, so the replay buffer
leaves them), so a step waits on one call; verl's bypass mode makes the pilot's
``old_log_probs`` the engine's, the policy that generated it. The rewards must come
from the agent loop (a rule-based reward, or a reward model on its own resource
pool), which is verl's default.

Everything runs in the single controller (the TaskRunner actor), so on
multi-node runs the allocation is computed once and is the same for every worker.

Launch with ``python -m knapsack_rl.integrations.verl <verl overrides>``
(it checks the settings before Ray starts, then runs verl's ``main_ppo``), or
with ``python -m verl.trainer.main_ppo trainer.v1.trainer_mode=knapsack
+knapsack.method=...`` and ``VERL_USE_EXTERNAL_MODULES=knapsack_rl.integrations.verl``
in the environment of every Ray node. Settings live under ``knapsack.*`` (see
:class:`KnapsackVerlConfig`); bad settings raise :class:`KnapsackConfigError`
at start-up, before any worker is created.
"""

from __future__ import annotations

import io
import os
import sys
import time
from dataclasses import dataclass, field, fields
from importlib import metadata
from typing import Any

import numpy as np

# --- knapsack-rl API (kept in one place) ------------------------------------
from knapsack_rl import Allocator, defaults
from knapsack_rl.allocation import METHODS
from knapsack_rl.allocation.rounds import check_value
from knapsack_rl.atomic import atomic_write_bytes
from knapsack_rl.metrics import (
    allocation_stats,
    effective_gradient_ratio,
)
from knapsack_rl.planning.base import positions
from knapsack_rl.planning.session import (
    PLANNED,
    TRACKER_FILE,
    AllocationConfig,
    AllocationSession,
    SessionBacked,
)
from knapsack_rl.tracking import TRACKERS, Tracker, load_tracker, make_tracker


def _allocate(allocator: Allocator, tracker: Tracker, ids: list, budget: int):
    """``Allocation`` for ``ids`` from the tracker's estimates."""
    return allocator.allocate(tracker.stats(ids), budget=budget)


# --- constants ---------------------------------------------------------------
SUPPORTED_VERL = (">=0.9.1", "<0.10")
"""The verl release line this module was written against and tested with."""

TRAINER_NAME = "knapsack"
"""Name under which the trainer is registered (``trainer.v1.trainer_mode``)."""

MODULE = "knapsack_rl.integrations.verl"
"""What ``VERL_USE_EXTERNAL_MODULES`` must name so that verl registers the trainer."""

# TRACKER_FILE and PLANNER_FILE (the session's): the tracker and, for ``rounds`` and
# ``stream``, the planner's state, inside each ``global_step_<k>`` folder.

MANAGER = f"{MODULE}.KnapsackAgentLoopManager"
"""``agent_loop_manager_class`` of ``rounds=2``: verl's, with sessions numbered across rounds."""

NEXT_BATCH_FILE = "knapsack_next_batch.pt"
"""``pipelined``: the next step's batch, drawn a step early, in each checkpoint folder."""

SESSION_OFFSET = "__session_offset__"
"""Batch field of a second round: the first session id of each prompt (its pilot's size)."""

POLL_SECONDS = 1.0
"""How often the driver checks whether the pilot round has finished (verl's replay buffer: 2 s)."""

ADV_ESTIMATORS = ("grpo", "grpo_vectorized")
"""verl advantage estimators that group by uid and accept groups of any size."""


class KnapsackConfigError(ValueError):
    """Settings that cannot work; raised at start-up with every problem listed."""


def _check_verl_version(version: str) -> None:
    from packaging.version import Version

    v = Version(Version(version).base_version)
    if not Version("0.9.1") <= v < Version("0.10"):
        raise ImportError(
            f"{MODULE} supports verl>=0.9.1,<0.10 but verl {version} is installed; "
            "install a supported release with: pip install 'knapsack-rl[verl]'"
        )


def _verl_version() -> str:
    try:
        return metadata.version("verl")
    except metadata.PackageNotFoundError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{MODULE} needs verl; install it with: pip install 'knapsack-rl[verl]'"
        ) from e


_check_verl_version(_verl_version())

import ray  # noqa: E402
import torch  # noqa: E402
import transfer_queue as tq  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ  # noqa: E402
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer  # noqa: E402
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync  # noqa: E402
from verl.utils import tensordict_utils as tu  # noqa: E402


# --- settings ----------------------------------------------------------------
@dataclass
class KnapsackVerlConfig:
    """Settings read from the ``knapsack`` node of verl's config (``+knapsack.<name>=...``).

    Attributes:
        method: allocation method (``knapsack``, ``paper``, ``bayes``, ``uniform``, one-shot
            from the tracker), or ``rounds``: knapsack-rl's round planner, from priors pooled
            over the prompts seen (stale evidence decayed) and this step's own draws.
            ``stream``: the same planner's rollouts released as sessions return, with no
            barrier (the pilot's long sessions run while the rest is planned).
            ``pipelined``: ``rounds``, with each step's pilot generated in the previous
            step's call (one call per step; needs verl's bypass mode, below).
        value: value model of ``rounds`` and ``stream`` (``grpo`` or ``paper``).
        commit: ``stream``: share of the pilot's sessions after which the whole budget is out.
        concurrency: ``stream``: most sessions in flight at once (None: no limit).
        rounds: generation rounds per step of ``rounds``: 2 (a pilot, then the rest of the
            step's rollouts where the pilot says they pay) or 1 (one-shot from the priors).
        pilot: rollouts per prompt in the pilot round (``rounds=2``).
        oversample: ``rounds`` draws ``oversample * train_batch_size`` prompts per step for
            the same ``train_batch_size * rollout.n`` rollouts.
        prior_group_column: ``rounds``: dataset column pooling the priors (a level, source
            or topic); a top-level column, or ``extra_info.<key>``.
        pass_rate_column: ``rounds``: dataset column (same addressing) with an offline
            pass rate in [0, 1]; missing values mean unknown.
        prior_tracker: ``rounds``: a previous run's tracker file (``knapsack_tracker.npz``)
            whose estimates seed the priors of the prompts it has seen.
        prior_half_life: ``rounds``: steps until a prompt's own evidence counts half.
        tracker: success-rate tracker kind: ``auto`` (``paper`` for ``method=paper``,
            ``beta`` for ``bayes`` and the planned methods, else ``window``), ``paper``,
            ``window`` or ``beta``.
        tracker_kwargs: extra arguments for the tracker (e.g. ``{window: 32}``).
        min_rollouts: smallest group per prompt (>= 2: verl's GRPO gives a
            group of one its raw reward as advantage).
        max_rollouts: largest group per prompt.
        prompt_id_key: dataset column holding a stable prompt id; ``index``
            (default) is verl's ``extra_info.index``.
        success_threshold: a rollout succeeds when its reward >= this.
    """

    method: str = defaults.TRAIN_METHOD
    value: str = defaults.VALUE
    commit: float = defaults.COMMIT
    concurrency: int | None = None
    rounds: int = defaults.ROUNDS
    pilot: int = defaults.PILOT
    oversample: int = defaults.OVERSAMPLE
    prior_group_column: str | None = None
    pass_rate_column: str | None = None
    prior_tracker: str | None = None
    prior_half_life: float = defaults.PRIOR_HALF_LIFE
    tracker: str = "auto"
    tracker_kwargs: dict = field(default_factory=dict)
    min_rollouts: int = 2
    max_rollouts: int = 128
    prompt_id_key: str = "index"
    success_threshold: float = 0.5

    def allocation(self, rollout_n: int) -> AllocationConfig:
        """These settings as the engine-agnostic :class:`AllocationConfig` (the same layer
        the reference trainer and TRL use); ``rollout_n``: verl's ``rollout.n``."""
        return AllocationConfig(
            method=self.method,
            tracker=self.tracker,
            tracker_kwargs=dict(self.tracker_kwargs or {}),
            value=self.value,
            commit=float(self.commit),
            concurrency=self.concurrency,
            rounds=self.rounds,
            pilot=self.pilot,
            oversample=self.oversample,
            prior_half_life=float(self.prior_half_life),
            prior_tracker=self.prior_tracker,
            rollouts_per_prompt=int(rollout_n),
            min_rollouts=self.min_rollouts,
            max_rollouts=self.max_rollouts,
            success_threshold=self.success_threshold,
        )


def _knapsack_node(config) -> dict:
    node = config.get("knapsack", None) if hasattr(config, "get") else None
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    return dict(node)


def check_config(config) -> KnapsackVerlConfig:
    """Validate verl's config for the knapsack trainer; return the ``knapsack`` settings.

    Raises :class:`KnapsackConfigError` listing every problem found.
    """
    problems: list[str] = []
    node = _knapsack_node(config)
    known = {f.name for f in fields(KnapsackVerlConfig)}
    unknown = sorted(set(node) - known)
    if unknown:
        problems.append(f"knapsack: unknown setting(s) {unknown}; known: {sorted(known)}")
    kcfg = KnapsackVerlConfig(**{k: v for k, v in node.items() if k in known})
    if kcfg.tracker_kwargs is None:
        kcfg.tracker_kwargs = {}

    problems += _setting_problems(kcfg)
    problems += _engine_problems(config)
    n = int(config.actor_rollout_ref.rollout.n)
    problems += _budget_problems(kcfg, n)
    if kcfg.method in PLANNED and not problems:
        problems += _rounds_problems(config, kcfg, n)
    elif kcfg.method not in PLANNED:
        for name in ("prior_group_column", "pass_rate_column", "prior_tracker"):
            if getattr(kcfg, name) is not None:
                problems.append(f"knapsack.{name} is only used by knapsack.method=rounds or stream")
    if problems:
        raise KnapsackConfigError(
            "knapsack-rl cannot start verl with these settings:\n  - " + "\n  - ".join(problems)
        )
    return kcfg


def _setting_problems(kcfg: KnapsackVerlConfig) -> list[str]:
    """Problems with the ``knapsack`` settings themselves."""
    problems: list[str] = []
    if kcfg.method not in (*METHODS, *PLANNED):
        problems.append(
            f"knapsack.method: unknown {kcfg.method!r}; expected one of "
            f"{', '.join((*METHODS, *PLANNED))}"
        )
    try:
        check_value(kcfg.value)
    except ValueError as e:
        problems.append(f"knapsack.{e}")
    if kcfg.tracker not in ("auto", *TRACKERS):
        problems.append(
            f"knapsack.tracker: unknown {kcfg.tracker!r}; expected one of auto, "
            f"{', '.join(TRACKERS)}"
        )
    else:
        kind = kcfg.allocation(1).tracker_kind
        try:
            make_tracker(kind, threshold=kcfg.success_threshold, **kcfg.tracker_kwargs)
        except (TypeError, ValueError) as e:
            problems.append(f"knapsack.tracker_kwargs: {e}")
    if not kcfg.prompt_id_key:
        problems.append("knapsack.prompt_id_key must name a dataset column (or 'index')")

    return problems


def _engine_problems(config) -> list[str]:
    """verl settings that per-prompt budgets cannot run under."""
    problems: list[str] = []
    trainer = config.trainer
    if not trainer.get("use_v1", False):
        problems.append(
            "trainer.use_v1=false: verl's v0 trainer repeats every prompt rollout.n times and ignores "
            "per-prompt budgets; set trainer.use_v1=true"
        )
    v1 = trainer.get("v1", None) or {}
    mode = v1.get("trainer_mode", None)
    if mode != TRAINER_NAME:
        problems.append(
            f"trainer.v1.trainer_mode={mode!r}: set trainer.v1.trainer_mode={TRAINER_NAME} "
            "(the knapsack trainer runs verl's sync mode; the async modes sample prompt groups "
            "one at a time and have no per-step budget to allocate)"
        )
    sampler = v1.get("sampler", None) or {}
    if sampler.get("sync_refill_failed_groups", False):
        problems.append(
            "trainer.v1.sampler.sync_refill_failed_groups=true is not supported with per-prompt budgets"
        )
    custom = sampler.get("custom_sampler", None) or {}
    if custom.get("path") and custom.get("name"):
        problems.append(
            "trainer.v1.sampler.custom_sampler is not supported by the knapsack trainer"
        )
    filter_groups = config.algorithm.get("filter_groups", None) or {}
    if filter_groups.get("enable", False):
        problems.append(
            "algorithm.filter_groups.enable=true (DAPO refill) is not supported: refilled prompts "
            "would change the step's rollout total"
        )
    adv = str(config.algorithm.adv_estimator)
    if adv not in ADV_ESTIMATORS:
        problems.append(
            f"algorithm.adv_estimator={adv!r}: per-prompt budgets need an estimator that groups by uid "
            f"and accepts groups of any size ({', '.join(ADV_ESTIMATORS)})"
        )

    return problems


def _budget_problems(kcfg: KnapsackVerlConfig, n: int) -> list[str]:
    """Whether ``rollout.n`` per prompt fits ``[min_rollouts, max_rollouts]``."""
    problems: list[str] = []
    lo, hi = kcfg.min_rollouts, kcfg.max_rollouts
    if not isinstance(lo, int) or lo < 2:
        problems.append(
            f"knapsack.min_rollouts={lo!r}: must be an integer >= 2 (verl's GRPO gives a group of "
            "one its raw reward as advantage)"
        )
    elif not isinstance(hi, int) or hi < lo:
        problems.append(f"knapsack.max_rollouts={hi!r}: must be an integer >= min_rollouts ({lo})")
    elif n < lo:
        problems.append(
            f"actor_rollout_ref.rollout.n={n} is too small for knapsack.min_rollouts={lo}: the step's "
            f"budget is train_batch_size * rollout.n, so every prompt gets {n} on average and cannot "
            f"get {lo}; raise rollout.n or lower min_rollouts"
        )
    elif n > hi:
        problems.append(
            f"budget cannot be met: rollout.n={n} > knapsack.max_rollouts={hi}, so "
            f"train_batch_size * {n} rollouts cannot be spread over the batch; raise max_rollouts"
        )
    return problems


def _rounds_problems(config, kcfg: KnapsackVerlConfig, n: int) -> list[str]:
    """What stops ``method=rounds`` with these settings (empty if nothing)."""
    problems = []
    for name, lo in (("rounds", 1), ("pilot", 1), ("oversample", 1)):
        v = getattr(kcfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            problems.append(f"knapsack.{name}={v!r}: must be an integer >= {lo}")
    if problems:
        return problems
    if kcfg.rounds > 2:
        problems.append(
            f"knapsack.rounds={kcfg.rounds}: the verl trainer generates a step in 1 round "
            "(one-shot from the priors) or 2 (a pilot, then the rest)"
        )
    need = max(kcfg.min_rollouts, kcfg.pilot if kcfg.rounds == 2 else 1)
    if kcfg.oversample * need > n:
        problems.append(
            f"knapsack.oversample={kcfg.oversample}: a step draws oversample x train_batch_size "
            f"prompts for train_batch_size x rollout.n rollouts, so each gets {n}/{kcfg.oversample} "
            f"on average, fewer than the {need} it needs (min_rollouts, pilot); raise rollout.n "
            "or lower oversample"
        )
    hl = kcfg.prior_half_life
    if isinstance(hl, bool) or not isinstance(hl, (int, float)) or not 0 < hl < float("inf"):
        problems.append(f"knapsack.prior_half_life={hl!r}: must be a number > 0")
    if kcfg.prior_tracker is not None:
        try:
            load_tracker(str(kcfg.prior_tracker))
        except (OSError, ValueError, KeyError) as e:
            problems.append(f"knapsack.prior_tracker={kcfg.prior_tracker!r}: cannot be read ({e})")
    train = int(config.data.train_batch_size)
    gen = int(config.data.get("gen_batch_size", None) or train)
    if (kcfg.oversample * train) % gen:
        problems.append(
            f"data.gen_batch_size={gen} must divide oversample x train_batch_size "
            f"({kcfg.oversample} x {train}): the step's prompts are fetched in whole gen batches"
        )
    if kcfg.method == "stream":
        c = kcfg.commit
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c <= 1:
            problems.append(f"knapsack.commit={c!r}: must be a number in (0, 1]")
        k = kcfg.concurrency
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            problems.append(f"knapsack.concurrency={k!r}: must be an integer >= 1 or null")
    if kcfg.method == "pipelined":
        problems += _pipelined_problems(config, kcfg)
    if kcfg.rounds == 2 or kcfg.method == "stream":
        what = (
            f"knapsack.method={kcfg.method}"
            if kcfg.method in ("stream", "pipelined")
            else "knapsack.rounds=2"
        )
        agent = config.actor_rollout_ref.rollout.get("agent", None) or {}
        manager = agent.get("agent_loop_manager_class", None)
        if manager != MANAGER:
            problems.append(
                f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager!r}: "
                f"{what} needs {MANAGER} (it numbers later sessions of a prompt after "
                "the earlier ones); the launcher sets it, or add "
                f"++actor_rollout_ref.rollout.agent.agent_loop_manager_class={MANAGER}"
            )
        rm = (config.get("reward", None) or {}).get("reward_model", None) or {}
        if rm.get("enable", False) and not rm.get("enable_resource_pool", False):
            problems.append(
                "reward.reward_model.enable=true without enable_resource_pool: verl then scores "
                f"rollouts after the step's generation, so the pilot's rewards come too late for "
                f"{what}; give the reward model its own resource pool, or use knapsack.method=rounds "
                "with knapsack.rounds=1"
            )
    return problems


def _pipelined_problems(config, kcfg: KnapsackVerlConfig) -> list[str]:
    """What stops ``method=pipelined``: two rounds, and the pilot's behaviour log-probs as
    ``old_log_probs`` (verl's bypass mode), since the pilot is one update old."""
    problems = []
    if kcfg.rounds != 2:
        problems.append(
            f"knapsack.rounds={kcfg.rounds}: knapsack.method=pipelined carries a pilot, so it "
            "needs knapsack.rounds=2"
        )
    corr = config.algorithm.get("rollout_correction", None) or {}
    logprobs = config.actor_rollout_ref.rollout.get("calculate_log_probs", False)
    if not corr.get("bypass_mode", False) or not logprobs:
        problems.append(
            "knapsack.method=pipelined trains on pilots one update old, so their PPO ratio "
            "must be against the policy that generated them: set "
            "algorithm.rollout_correction.bypass_mode=true and "
            "actor_rollout_ref.rollout.calculate_log_probs=true (the launcher sets both)"
        )
    if corr.get("loss_type", "ppo_clip") != "ppo_clip":
        problems.append(
            f"algorithm.rollout_correction.loss_type={corr.get('loss_type')!r}: "
            "knapsack.method=pipelined was measured with ppo_clip"
        )
    return problems


def check_prompt_ids(dataset, key: str) -> None:
    """Start-up check that ``dataset`` (verl's ``RLHFDataset``) gives each prompt an id under ``key``."""
    frame = getattr(dataset, "dataframe", None)
    if frame is None or not hasattr(frame, "column_names"):
        return  # custom dataset: checked on the first batch instead
    columns = list(frame.column_names)
    if key == "index":
        if "extra_info" not in columns:
            raise KnapsackConfigError(
                "knapsack.prompt_id_key=index but the training data has no extra_info column, so "
                "verl gives every prompt index 0; add extra_info.index or set "
                f"+knapsack.prompt_id_key=<column> (columns: {columns})"
            )
        values = [
            (e or {}).get("index") if isinstance(e, dict) else None for e in frame["extra_info"]
        ]
        missing = sum(v is None for v in values)
        if missing:
            raise KnapsackConfigError(
                f"knapsack.prompt_id_key=index but {missing} of {len(values)} training rows have no "
                "extra_info.index (verl would give them index 0); add it or set "
                "+knapsack.prompt_id_key=<column>"
            )
    elif key not in columns:
        raise KnapsackConfigError(
            f"knapsack.prompt_id_key={key!r}: no such column in the training data (columns: {columns})"
        )
    else:
        values = frame[key]
    if len(values) > 1 and len(set(map(_hashable, values))) == 1:
        raise KnapsackConfigError(
            f"knapsack.prompt_id_key={key!r}: every training row has the same id {values[0]!r}"
        )


def check_prior_columns(dataset, kcfg: KnapsackVerlConfig) -> None:
    """Start-up check that the columns of ``prior_group_column``/``pass_rate_column`` exist."""
    frame = getattr(dataset, "dataframe", None)
    if frame is None or not hasattr(frame, "column_names"):
        return  # custom dataset: checked on the first batch instead
    columns = list(frame.column_names)
    for setting in ("prior_group_column", "pass_rate_column"):
        name = getattr(kcfg, setting)
        if name is None or name in columns:
            continue
        head, _, sub = name.partition(".")
        if head == "extra_info" and sub and "extra_info" in columns:
            if any(isinstance(e, dict) and sub in e for e in frame["extra_info"]):
                continue
            raise KnapsackConfigError(f"knapsack.{setting}={name!r}: no training row has it")
        raise KnapsackConfigError(
            f"knapsack.{setting}={name!r}: no such column in the training data "
            f"(columns: {columns}; or extra_info.<key>)"
        )


def batch_column(batch, name: str | None) -> list | None:
    """Values of dataset column ``name`` for a verl batch: a top-level field, or
    ``extra_info.<key>`` (None where a row's ``extra_info`` lacks the key)."""
    if name is None:
        return None
    if name in batch.keys():
        return _as_list(batch[name])
    head, _, sub = name.partition(".")
    if head == "extra_info" and sub and "extra_info" in batch.keys():
        return [(e or {}).get(sub) if isinstance(e, dict) else None for e in _as_list(batch[head])]
    raise KnapsackConfigError(
        f"column {name!r} is not in the training batch (fields: {sorted(batch.keys())}); "
        "name a dataset column or extra_info.<key>"
    )


def _hashable(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(np.asarray(v).ravel().tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


def _as_list(v) -> list:
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return [getattr(x, "data", x) for x in v]


# --- driver-side state (verl-free apart from the arrays it is given) ----------
class KnapsackState(SessionBacked):
    """Tracker, allocator or round planner, and the uid -> prompt-id map of one run (driver side).

    One-shot methods: :meth:`allocate` gives each prompt its group, :meth:`observe` feeds the
    step's rewards to the tracker. ``rounds`` with ``rounds=2``: :meth:`allocate` gives the
    pilot, :meth:`record_round` takes its rewards, :meth:`next_round` plans the rest of the
    step, and :meth:`observe` records the rest and updates the tracker once. ``stream``:
    :meth:`allocate` gives the pilot; :meth:`stream_record` takes sessions as they return
    (and failed groups) and says which prompts get sessions now;
    :meth:`observe` records what is left and updates the tracker once. ``pipelined``: as
    ``rounds=2``, with the pilot's sessions generated a step earlier (:meth:`pilot_counts`).
    """

    def __init__(self, kcfg: KnapsackVerlConfig, rollout_n: int) -> None:
        self.kcfg = kcfg
        self.rollout_n = int(rollout_n)
        alloc = kcfg.allocation(self.rollout_n)
        self.allocator = alloc.make_allocator()
        # rounds and stream: the step's budget goes through the engine-agnostic session
        self.session = AllocationSession(alloc) if kcfg.method in PLANNED else None
        self._tracker: Tracker = alloc.make_tracker() if self.session is None else None
        self.streaming = kcfg.method == "stream"
        self.pipelined = kcfg.method == "pipelined"
        self._seen: set[tuple[str, int]] = set()  # stream: (uid, session) recorded so far
        self._failed: set[int] = set()  # stream: positions of the groups that failed
        self.oversample = int(kcfg.oversample) if self.planner is not None else 1
        self._uid_pid: dict[str, Any] = {}
        self._uid_pos: dict[str, int] = {}
        self._pilot: np.ndarray | None = None  # rounds=2: the pilot's planned counts
        self._next = np.zeros(0, np.int64)  # rounds=2: round 2's positions, once the pilot is in
        self._rollouts: list[np.ndarray] = []
        self._seconds = 0.0
        self.pilot_seconds = 0.0  # rounds=2: the driver's wait for the pilot, per step

    @property
    def two_rounds(self) -> bool:
        """True when each step is generated as a pilot, then the rest (``rounds=2``)."""
        return self.planner is not None and not self.streaming and self.planner.rounds >= 2

    def pilot_counts(self, prompts: int) -> np.ndarray:
        """``pipelined``: the pilot of a batch of ``prompts`` prompts, int64 ``(prompts,)``,
        known before its step starts (what :meth:`allocate` will return for it)."""
        return self.planner.pilot_counts(prompts, self.budget(prompts))

    def budget(self, prompts: int) -> int:
        """Rollouts for a batch of ``prompts`` prompts: ``rollout.n`` per uniform prompt, and a
        uniform step has ``1 / oversample`` of the prompts a ``rounds`` step draws."""
        return max(prompts * self.rollout_n // self.oversample, prompts * self.kcfg.min_rollouts)

    def allocate(self, uids: list, prompt_ids: list, groups=None, rates=None) -> np.ndarray:
        """Rollouts per prompt for one submitted batch: the whole group (one-shot methods,
        ``rounds=1``), or the pilot (``rounds=2``); int64, shape ``(len(uids),)``.

        ``groups`` (a pool key per prompt) and ``rates`` (offline pass rates, None or NaN
        for unknown) feed the priors of ``rounds``."""
        if len(uids) != len(prompt_ids):
            raise ValueError(f"{len(uids)} uids but {len(prompt_ids)} prompt ids")
        budget = self.budget(len(uids))
        t0 = time.perf_counter()
        ids = [_hashable(p) for p in prompt_ids]
        if self.session is not None:
            groups = None if groups is None else [_hashable(g) for g in groups]
            self.session.set_prior_columns(ids, groups, rates)
            r = np.bincount(self.session.start(ids, budget), minlength=len(ids)).astype(np.int64)
            self._uid_pos = {str(u): k for k, u in enumerate(uids)}
        else:
            r = np.asarray(_allocate(self.allocator, self.tracker, ids, budget).rollouts, np.int64)
        self._seconds += time.perf_counter() - t0
        if not (self.two_rounds or self.streaming) and int(r.sum()) != budget:  # pragma: no cover
            raise RuntimeError(f"allocation sums to {int(r.sum())}, expected {budget}")
        for uid, pid in zip(uids, ids):
            self._uid_pid[str(uid)] = pid
        self._pilot = r.copy() if self.two_rounds or self.streaming else None
        self._seen, self._failed = set(), set()
        self._rollouts.append(r.copy())
        return r

    def record_round(self, uids: list, rewards) -> None:
        """The pilot's rollouts (uid and reward each) of the batch :meth:`allocate` planned."""
        keep = [str(u) in self._uid_pos for u in uids]
        pos = [self._uid_pos[str(u)] for u, k in zip(uids, keep) if k]
        self._next = self.session.record(
            pos, np.asarray(rewards, np.float64).reshape(-1)[np.asarray(keep, bool)]
        )

    def next_round(self, skip: list | None = None) -> np.ndarray:
        """Rollouts per prompt of round 2, planned from the pilot's rewards (zeros for the
        uids in ``skip``, e.g. failed groups); int64, shape ``(len(uids),)``."""
        t0 = time.perf_counter()
        sends = self._next  # round 2, if every pilot rollout came back
        if not sends.size and self.planner.pending.any():  # pilot sessions that never did
            sends = self.session.drop(positions(self.planner.pending))
        self._next = np.zeros(0, np.int64)
        extra = np.bincount(sends, minlength=len(self._uid_pos)).astype(np.int64)
        for u in skip or ():
            extra[self._uid_pos[str(u)]] = 0
        self._seconds += time.perf_counter() - t0
        self._rollouts[-1] = self._rollouts[-1] + extra
        return extra

    def stream_record(self, uids: list, sessions, rewards, failed: list = ()) -> np.ndarray:
        """``stream``: sessions that came back (uid, session id and reward each; ones already
        recorded are skipped) and groups that ``failed`` (their sessions in flight are no
        longer awaited and they get nothing more; as in verl, a failed group's share of the
        budget is lost, and with ``concurrency`` its slots go to other prompts);
        returns the sessions to start now per prompt, int64 ``(len(batch),)``."""
        t0 = time.perf_counter()
        self._failed.update(self._uid_pos[str(u)] for u in failed)
        pos, keep = [], []
        for k, (u, sid) in enumerate(zip(uids, np.asarray(sessions).reshape(-1).tolist())):
            key = (str(u), int(sid))
            if key in self._seen or str(u) not in self._uid_pos:
                continue
            self._seen.add(key)
            pos.append(self._uid_pos[str(u)])
            keep.append(k)
        sends = [np.zeros(0, np.int64)]
        if pos:
            r = np.asarray(rewards, np.float64).reshape(-1)[np.asarray(keep, np.int64)]
            sends.append(self.session.record(np.asarray(pos, np.int64), r))
        for u in failed:  # in flight before it failed; what was just planned, _extra handles
            i = self._uid_pos[str(u)]
            lost = int(self.planner.pending[i]) - int((np.concatenate(sends) == i).sum())
            if lost > 0:
                self._rollouts[-1][i] -= lost
                sends.append(self.session.drop(np.full(lost, i, np.int64)))
        return self._extra(np.concatenate(sends), t0)

    def _extra(self, sends: np.ndarray, t0: float) -> np.ndarray:
        extra = np.bincount(sends, minlength=len(self._uid_pos)).astype(np.int64)
        lost = [i for i in sorted(self._failed) if extra[i]]
        if lost:  # what the plan still gives a failed group is dropped, not sent
            back = np.repeat(np.asarray(lost, np.int64), extra[lost])
            extra[lost] = 0
            extra += np.bincount(self.session.drop(back), minlength=extra.size)
            extra[lost] = 0
        self._rollouts[-1] = self._rollouts[-1] + extra
        self._seconds += time.perf_counter() - t0
        return extra

    def observe(self, uids: list, rewards, sessions=None) -> dict[str, float]:
        """Feed one step's rollouts (uid, reward and session id each) to the tracker; return
        its metrics. With ``rounds=2`` the pilot's sessions (recorded already) are skipped."""
        uids = [str(u) for u in uids]
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        known = np.array([u in self._uid_pid for u in uids], dtype=bool)
        pilot_metrics: dict[str, float] = {}
        if self.session is not None:  # the session updates the tracker, stamps prompts as seen
            rows = known.copy()
            if self.streaming:  # sessions recorded while the step ran are not counted twice
                if sessions is None:
                    raise ValueError("stream: observe needs each rollout's session id")
                sids = np.asarray(sessions, dtype=np.int64).reshape(-1).tolist()
                rows &= np.array([(u, s) not in self._seen for u, s in zip(uids, sids)], bool)
            elif self._pilot is not None:
                if sessions is None:
                    raise ValueError("rounds=2: observe needs each rollout's session id")
                first = np.array(
                    [self._pilot[self._uid_pos[u]] if k else 0 for u, k in zip(uids, known)]
                )
                rows &= np.asarray(sessions, dtype=np.int64).reshape(-1) >= first
            pos = [self._uid_pos[u] for u, k in zip(uids, rows) if k]
            self.session.record(np.asarray(pos, np.int64), rewards[rows])
            done = self.session.finish()  # pilot and tie-break stats when the step had a pilot
            pilot_metrics = {
                f"knapsack/{k}": v for k, v in done.metrics.items() if k.startswith("rounds/")
            }
        elif known.any():
            pids = [self._uid_pid[u] for u, k in zip(uids, known) if k]
            self.tracker.update(pids, rewards[known])
        self._uid_pid.clear()  # sync mode: every prompt submitted for the step was sampled
        self._pilot, self._seen = None, set()
        metrics: dict[str, float] = {}
        if uids:
            metrics["knapsack/effective_gradient_ratio"] = effective_gradient_ratio(uids, rewards)
        if self._rollouts:
            drawn = np.concatenate(self._rollouts)
            metrics["knapsack/rollouts"] = float(drawn.sum())
            stats = allocation_stats(drawn)
            for k in ("min", "mean", "max"):
                metrics[f"knapsack/rollouts_per_prompt/{k}"] = stats[f"rollouts_per_prompt/{k}"]
            metrics["knapsack/allocation_seconds"] = self._seconds
        if self.two_rounds or self.streaming:
            metrics["knapsack/pilot_seconds"] = self.pilot_seconds
        metrics.update(pilot_metrics)
        metrics["knapsack/tracked_prompts"] = float(len(self.tracker))
        self._rollouts, self._seconds, self.pilot_seconds = [], 0.0, 0.0
        return metrics

    def save(self, folder: str) -> str:
        """Write the tracker (and the planner's state) into ``folder``; returns the tracker file."""
        if self.session is not None:
            return self.session.save(folder)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, TRACKER_FILE)
        self.tracker.save(path)
        return path

    def load(self, folder: str) -> bool:
        """Restore :meth:`save`; False (nothing changed) if ``folder`` has no tracker file."""
        path = os.path.join(folder, TRACKER_FILE)
        if not os.path.exists(path):
            return False
        if self.session is not None:
            try:
                return self.session.load(folder)
            except ValueError as e:
                raise KnapsackConfigError(f"{e} (knapsack.tracker)") from None
        tracker = load_tracker(path)
        if tracker.kind != self.tracker.kind:
            raise KnapsackConfigError(
                f"{path} holds a {tracker.kind!r} tracker but knapsack.tracker={self.kcfg.tracker!r}"
            )
        self._tracker = tracker
        return True


def step_rewards(keys: list[str], tags: list[dict], rm_scores) -> tuple[list[str], np.ndarray]:
    """``(uids, rewards)`` of a step: one entry per session (its final output), padding dropped.

    ``keys`` are verl's ``{uid}_{session}_{index}`` TransferQueue keys and
    ``rm_scores`` their token-level scores (the reward is their sum, as in
    verl's GRPO).
    """
    uids, _, rewards = step_sessions(keys, tags, rm_scores)
    return uids, rewards


def step_sessions(
    keys: list[str], tags: list[dict], rm_scores
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """:func:`step_rewards` plus each entry's session id (int64): ``(uids, sessions, rewards)``."""
    final: dict[str, tuple[int, int]] = {}
    for i, (key, tag) in enumerate(zip(keys, tags)):
        if tag.get("is_padding", False):
            continue
        uid, session, index = key.rsplit("_", 2)
        skey = f"{uid}_{session}"
        if skey not in final or final[skey][0] < int(index):
            final[skey] = (int(index), i)
    rows = [i for _, i in final.values()]
    parts = [keys[i].rsplit("_", 2) for i in rows]
    uids = [p[0] for p in parts]
    sessions = np.array([int(p[1]) for p in parts], dtype=np.int64)
    rewards = np.array([float(rm_scores[i].sum()) for i in rows], dtype=np.float64)
    return uids, sessions, rewards


# --- rounds: sessions numbered across rounds -----------------------------------
class _RoundsAgentLoopWorker(AgentLoopWorkerTQ.__ray_metadata__.modified_class.__ray_actor_class__):
    """verl's TransferQueue agent-loop worker, except that a prompt's sessions start at its
    ``__session_offset__`` (0 when absent), so a second round of the same uid adds
    trajectories ``{uid}_{pilot}_0, ...`` to its group instead of overwriting the pilot's."""

    async def _run_agent_loop(self, sampling_params, trajectory, **kwargs):
        offset = kwargs.pop(SESSION_OFFSET, 0)
        if "session_id" in kwargs:
            kwargs["session_id"] = int(kwargs["session_id"]) + int(offset)
        return await super()._run_agent_loop(sampling_params, trajectory, **kwargs)


KnapsackAgentLoopWorker = ray.remote(_RoundsAgentLoopWorker)


class KnapsackAgentLoopManager(AgentLoopManagerTQ):
    """verl's TransferQueue agent-loop manager with :data:`KnapsackAgentLoopWorker` workers
    (``actor_rollout_ref.rollout.agent.agent_loop_manager_class``, set by the launcher)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.agent_loop_workers_class = KnapsackAgentLoopWorker


def wait_for_round(
    uids: list[str], partition_id: str = "train", poll_seconds: float = POLL_SECONDS
) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Block until every group in ``uids`` is ``finished`` or ``failure`` in TransferQueue;
    return their rollouts ``(uids, sessions, rewards)`` and the uids that failed."""
    wanted, last_log = set(uids), time.monotonic()
    while True:
        items = (tq.kv_list(partition_id=partition_id) or {}).get(partition_id, {})
        status = {u: (items.get(u) or {}).get("status") for u in wanted}
        if all(v in ("finished", "failure") for v in status.values()):
            break
        if time.monotonic() - last_log > 60:
            waiting = sum(v not in ("finished", "failure") for v in status.values())
            print(
                f"[knapsack-rl] pilot round: {waiting} of {len(wanted)} groups running",
                file=sys.stderr,
            )
            last_log = time.monotonic()
        time.sleep(poll_seconds)
    got, sessions, rewards = _sessions(items, wanted, partition_id)
    return got, sessions, rewards, [u for u, v in status.items() if v == "failure"]


def poll_sessions(
    uids: list[str], partition_id: str = "train", skip=frozenset()
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, str]]:
    """The sessions of ``uids`` in TransferQueue now, without waiting: ``(uids, sessions,
    rewards)`` of every session written so far except the ``(uid, session)`` pairs in
    ``skip`` (their rewards are not fetched again), and each group's status."""
    wanted = set(uids)
    items = (tq.kv_list(partition_id=partition_id) or {}).get(partition_id, {})
    status = {u: (items.get(u) or {}).get("status") for u in wanted}
    return (*_sessions(items, wanted, partition_id, skip), status)


def _sessions(items: dict, wanted: set, partition_id: str, skip=frozenset()):
    """``(uids, sessions, rewards)`` of the session entries in a TransferQueue listing
    whose uid is in ``wanted`` and whose ``(uid, session)`` is not in ``skip``."""
    keys = []
    for k in items:
        if "_" not in k or k.split("_")[0] not in wanted:
            continue
        uid, session, _ = k.rsplit("_", 2)
        if (uid, int(session)) not in skip:
            keys.append(k)
    scores = []
    if keys:
        data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["rm_scores"])
        scores = list(data["rm_scores"])
    return step_sessions(keys, [items[k] for k in keys], scores)


# --- the trainer ---------------------------------------------------------------
class KnapsackPPOTrainer(PPOTrainerSync):
    """verl's sync v1 trainer with per-prompt rollout budgets (``trainer.v1.trainer_mode=knapsack``)."""

    def __init__(self, config: DictConfig):
        self.knapsack_config = check_config(config)
        # Run as verl's sync trainer: the base class picks the replay buffer, refill
        # and checkpoint behaviour from the mode name.
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config)
        self.knapsack = KnapsackState(self.knapsack_config, config.actor_rollout_ref.rollout.n)
        # pipelined: the next step's batch, fetched a step early, and whether its pilot ran
        self._ahead: dict | None = None

    # start-up: the prompt-id column
    def _init_dataloader(self):
        super()._init_dataloader()
        check_prompt_ids(self.train_dataset, self.knapsack_config.prompt_id_key)
        check_prior_columns(self.train_dataset, self.knapsack_config)

    # allocation
    def _next_train_batch(self, num_prompts: int | None = None):
        if num_prompts is None and self._ahead is not None:  # pipelined: fetched last step
            batch = self._ahead["batch"]
            tu.assign_non_tensor_data(batch, "global_steps", self.global_steps)
            return batch
        if num_prompts is None:  # a step's batch: rounds draws oversample x the prompts
            num_prompts = self.config.data.train_batch_size * self.knapsack.oversample
        return super()._next_train_batch(num_prompts)

    def _step_once(self, metrics: dict, timing_raw: dict, sample_batch_size: int):
        return super()._step_once(metrics, timing_raw, sample_batch_size * self.knapsack.oversample)

    def _submit_batch_to_rollout(self, batch):
        key = self.knapsack_config.prompt_id_key
        if key not in batch.keys():
            raise KnapsackConfigError(
                f"knapsack.prompt_id_key={key!r}: the training batch has no such field "
                f"(fields: {sorted(batch.keys())})"
            )
        uids = [str(u) for u in _as_list(batch["uid"])]
        rollouts = self.knapsack.allocate(
            uids,
            _as_list(batch[key]),
            groups=batch_column(batch, self.knapsack_config.prior_group_column),
            rates=batch_column(batch, self.knapsack_config.pass_rate_column),
        )
        if self.knapsack.pipelined:
            ahead, self._ahead = self._ahead, None
            return self._pipelined(batch, uids, rollouts, ahead if ahead is not None else {})
        batch["__rollout_n__"] = torch.as_tensor(rollouts, dtype=torch.int64)
        submitted = super()._submit_batch_to_rollout(batch)
        if self.knapsack.streaming:
            self._stream(batch, uids, rollouts)
            return submitted
        if not self.knapsack.two_rounds:
            return submitted
        t0 = time.perf_counter()
        self._send_rest(batch, uids, rollouts)
        self.knapsack.pilot_seconds += time.perf_counter() - t0
        return submitted

    def _send_rest(self, batch, uids: list[str], pilot: np.ndarray) -> None:
        """``rounds=2`` and ``pipelined``: wait for the pilot, plan the rest from its rewards,
        and send it under the same uids, its sessions numbered after the pilot's."""
        got, _, rewards, failed = wait_for_round(uids)
        self.knapsack.record_round(got, rewards)
        extra = self.knapsack.next_round(skip=failed)
        pick = np.flatnonzero(extra > 0)
        if pick.size:
            rest = batch[torch.as_tensor(pick)]
            rest["__rollout_n__"] = torch.as_tensor(extra[pick], dtype=torch.int64)
            rest[SESSION_OFFSET] = torch.as_tensor(pilot[pick], dtype=torch.int64)
            super()._submit_batch_to_rollout(rest)

    def _pipelined(self, batch, uids: list[str], pilot: np.ndarray, ahead: dict) -> int:
        """``pipelined``: this step's pilot ran in the last step's call (``ahead["piloted"]``;
        the first step, or the first after a resume, runs its own); plan the rest from it,
        then make one call of the rest and the next batch's pilot, and wait for both, since
        sync mode puts the engine to sleep for training. The next batch's finished pilot
        groups are marked ``running`` until their step, so the replay buffer leaves them."""
        t0 = time.perf_counter()
        if ahead.get("piloted"):
            if not np.array_equal(ahead["counts"], pilot):  # pragma: no cover - by construction
                raise RuntimeError("pipelined: the carried pilot is not the one this step plans")
            for u in uids:  # visible again: this step's groups
                status = "failure" if u in ahead["failed"] else "finished"
                tq.kv_put(key=u, partition_id="train", tag={"status": status})
        else:
            batch["__rollout_n__"] = torch.as_tensor(pilot, dtype=torch.int64)
            super()._submit_batch_to_rollout(batch)
        self._send_rest(batch, uids, pilot)
        waited = list(uids)
        if self.global_steps < self.total_training_steps:  # the next step's pilot, same call
            nxt = self._next_train_batch(len(uids))
            nuids = [str(u) for u in _as_list(nxt["uid"])]
            counts = self.knapsack.pilot_counts(len(nuids))
            nxt["__rollout_n__"] = torch.as_tensor(counts, dtype=torch.int64)
            super()._submit_batch_to_rollout(nxt)
            waited += nuids
        _, _, _, failed = wait_for_round(waited)
        if len(waited) > len(uids):
            for u in nuids:  # not this step's: hidden from the replay buffer until theirs
                tq.kv_put(key=u, partition_id="train", tag={"status": "running"})
            self._ahead = {
                "batch": nxt,
                "counts": counts,
                "piloted": True,
                "failed": set(failed) & set(nuids),
            }
        self.knapsack.pilot_seconds += time.perf_counter() - t0
        return len(batch)

    def _stream(self, batch, uids: list[str], requested: np.ndarray) -> None:
        """``stream``: while the step's sessions return, feed their rewards to the planner
        and start the sessions it releases at once, numbered after the prompt's earlier ones.
        Returns when every session has come back (or its group failed), so verl's replay
        buffer sees each group whole; failed groups are marked failed at the end, whatever a
        straggler of theirs wrote."""
        t0 = time.perf_counter()
        requested = requested.astype(np.int64).copy()
        failed: set[str] = set()
        pos = {u: k for k, u in enumerate(uids)}
        back = np.zeros(len(uids), dtype=np.int64)  # sessions returned per prompt
        seen: set[tuple[str, int]] = set()
        last_log = time.monotonic()
        while True:
            got, sessions, rewards, status = poll_sessions(uids, skip=seen)  # only new ones
            seen.update(zip(got, sessions.tolist()))
            back += np.bincount([pos[u] for u in got], minlength=len(uids))
            new = [u for u, v in status.items() if v == "failure" and u not in failed]
            failed.update(new)
            extra = self.knapsack.stream_record(got, sessions, rewards, failed=new)
            pick = np.flatnonzero(extra > 0)
            if pick.size:
                more = batch[torch.as_tensor(pick)]
                more["__rollout_n__"] = torch.as_tensor(extra[pick], dtype=torch.int64)
                more[SESSION_OFFSET] = torch.as_tensor(requested[pick], dtype=torch.int64)
                requested[pick] += extra[pick]
                super()._submit_batch_to_rollout(more)
                continue  # poll again at once: the planner may have more to say
            settled = all(
                u in failed and status[u] in ("finished", "failure") or back[k] >= requested[k]
                for k, u in enumerate(uids)
            )
            planner = self.knapsack.planner
            if settled and (planner.requested >= planner.budget or not planner.pending.any()):
                break
            if time.monotonic() - last_log > 60:
                print(
                    f"[knapsack-rl] stream: {int(back.sum())} of {int(requested.sum())} "
                    "sessions back",
                    file=sys.stderr,
                )
                last_log = time.monotonic()
            time.sleep(POLL_SECONDS)
        for u in failed:
            tq.kv_put(key=u, partition_id="train", tag={"status": "failure"})
        self.knapsack.pilot_seconds += time.perf_counter() - t0

    # tracking and metrics
    def step(self, metrics: dict, timing_raw: dict):
        batch = super().step(metrics, timing_raw)
        real = [(k, t) for k, t in zip(batch.keys, batch.tags) if not t.get("is_padding", False)]
        keys, tags = [k for k, _ in real], [t for _, t in real]
        data = tq.kv_batch_get(
            keys=keys, partition_id=batch.partition_id, select_fields=["rm_scores"]
        )
        uids, sessions, rewards = step_sessions(keys, tags, list(data["rm_scores"]))
        metrics.update(self.knapsack.observe(uids, rewards, sessions))
        return batch

    # checkpoints
    def _step_folder(self) -> str:
        return os.path.join(
            self.config.trainer.default_local_dir, f"global_step_{self.global_steps}"
        )

    def _save_checkpoint(self):
        self.knapsack.save(self._step_folder())
        if self._ahead is not None:  # pipelined: the next batch (its pilot is not kept)
            buf = io.BytesIO()
            torch.save(self._ahead["batch"], buf)
            atomic_write_bytes(os.path.join(self._step_folder(), NEXT_BATCH_FILE), buf.getvalue())
        super()._save_checkpoint()

    def _load_checkpoint(self):
        super()._load_checkpoint()
        if self.global_steps <= 0:
            return
        if self.config.trainer.resume_mode == "resume_path":
            folder = os.path.abspath(self.config.trainer.resume_from_path)
        else:
            folder = os.path.abspath(self._step_folder())
        if not self.knapsack.load(folder):
            print(
                f"[knapsack-rl] no {TRACKER_FILE} in {folder}: the tracker starts empty",
                file=sys.stderr,
            )
        path = os.path.join(folder, NEXT_BATCH_FILE)
        if self.knapsack.pipelined and os.path.exists(path):  # drawn, its pilot lost: redo it
            self._ahead = {"batch": torch.load(path, weights_only=False), "piloted": False}


if TRAINER_REGISTRY.get(TRAINER_NAME) is None:
    register_trainer(TRAINER_NAME)(KnapsackPPOTrainer)


# --- launcher -------------------------------------------------------------------
def launch_overrides(argv: list[str]) -> list[str]:
    """verl overrides for a knapsack run: ``knapsack.x=`` becomes ``++knapsack.x=``, the
    trainer mode defaults to ``knapsack``, every Ray worker imports this module, and
    ``knapsack.method=rounds`` (2 rounds), ``stream`` and ``pipelined`` get :data:`MANAGER`
    as agent-loop manager, and ``pipelined`` verl's bypass mode with rollout log-probs."""
    out = []
    for a in argv:
        if a.startswith("knapsack."):
            a = "++" + a
        out.append(a)
    if not any(a.lstrip("+").startswith("trainer.v1.trainer_mode=") for a in out):
        out.append(f"trainer.v1.trainer_mode={TRAINER_NAME}")
    setting = {a.lstrip("+").split("=", 1)[0]: a.split("=", 1)[-1] for a in out if "=" in a}
    manager = "actor_rollout_ref.rollout.agent.agent_loop_manager_class"
    rounds = setting.get("knapsack.rounds", str(defaults.ROUNDS)).strip()
    method = setting.get("knapsack.method", defaults.TRAIN_METHOD)
    needs = method in ("stream", "pipelined") or (method == "rounds" and rounds != "1")
    if needs and manager not in setting:
        out.append(f"++{manager}={MANAGER}")
    if method == "pipelined":  # the pilot's PPO ratio against the policy that generated it
        for key in (
            "algorithm.rollout_correction.bypass_mode",
            "actor_rollout_ref.rollout.calculate_log_probs",
        ):
            if key not in setting:
                out.append(f"{key}=true")
    out.append(
        f"++ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES={_modules_env()}"
    )
    return out


def _modules_env() -> str:
    mods = [m for m in os.environ.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    if MODULE not in mods:
        mods.append(MODULE)
    return ",".join(mods)


def compose_config(overrides: list[str]) -> DictConfig:
    """verl's ``ppo_trainer`` config with ``overrides`` applied (Hydra compose, no Ray)."""
    import verl.trainer.main_ppo as main_ppo
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    config_dir = os.path.join(os.path.dirname(main_ppo.__file__), "config")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def main(argv: list[str] | None = None) -> None:
    """``python -m knapsack_rl.integrations.verl [--check] <overrides>``: check, then run verl's
    ``main_ppo`` (with ``--check``: check the settings and exit, without Ray or GPUs)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    check_only = "--check" in argv
    argv = [a for a in argv if a != "--check"]
    overrides = launch_overrides(argv)
    custom_config = any(a.startswith(("--config", "-cp", "-cn")) for a in argv)
    if not custom_config:
        try:
            config = compose_config([a for a in overrides if not a.startswith("++ray_kwargs")])
            kcfg = check_config(config)
        except KnapsackConfigError as e:
            print(e, file=sys.stderr)
            raise SystemExit(2) from None
        if check_only:
            from verl.trainer.ppo.utils import need_critic, need_reference_policy
            from verl.utils.config import validate_config

            validate_config(config, need_reference_policy(config), need_critic(config))
            print(f"knapsack-rl: settings OK ({kcfg})")
            return
    elif check_only:
        raise SystemExit("--check needs verl's own config (no --config-path/--config-name)")
    os.environ["VERL_USE_EXTERNAL_MODULES"] = _modules_env()
    import verl.trainer.main_ppo as main_ppo

    sys.argv = [sys.argv[0], *overrides]
    main_ppo.main()


__all__ = [
    "ADV_ESTIMATORS",
    "KnapsackAgentLoopManager",
    "KnapsackAgentLoopWorker",
    "KnapsackConfigError",
    "KnapsackPPOTrainer",
    "KnapsackState",
    "KnapsackVerlConfig",
    "MANAGER",
    "MODULE",
    "SESSION_OFFSET",
    "SUPPORTED_VERL",
    "TRACKER_FILE",
    "TRAINER_NAME",
    "batch_column",
    "check_config",
    "check_prior_columns",
    "check_prompt_ids",
    "compose_config",
    "launch_overrides",
    "main",
    "step_rewards",
    "step_sessions",
    "wait_for_round",
]

if __name__ == "__main__":
    main()
