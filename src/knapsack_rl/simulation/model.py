"""The simulated population of prompts and its learning model.

Each prompt ``i`` has a latent skill ``z_i`` (logit units); the policy solves it
with probability ``p_i = sigmoid(z_i)`` and each rollout's reward is
Bernoulli(p_i), independently. A gradient step on a prompt's group changes
the skills as follows:

- a group whose rewards are all equal (all correct or all wrong) has zero
  advantage and changes nothing;
- a group with at least one success and one failure raises its prompt's skill
  by ``dz = lr * (1 - p_i) * (n / rollouts_per_prompt) ** size_exponent``. With
  ``size_exponent = 0`` this is, to first order, a rise of the success rate of
  ``dp = p (1 - p) dz = lr * p (1 - p)^2 = lr * InfoGain(p)``: the paper's
  assumption, made literal (``docs/method.md``, the value). ``size_exponent > 0`` lets larger
  groups teach more (the paper's value ignores this);
- with ``transfer > 0`` that fraction of each gain is shared evenly among the
  prompts of the same cluster ("similar prompts", e.g. one topic), the prompt
  itself keeping ``1 - transfer``; this is how never-solved prompts can rise.

Every informative group of a step gets its gain, whatever the batch holds (no
normalisation by batch size). Initial skills are drawn from
``Normal(init_mean, init_std)`` or set from a file of measured success rates
(:func:`load_initial_rates`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ModelConfig",
    "PRESETS",
    "preset",
    "Population",
    "InitRates",
    "load_initial_rates",
    "sigmoid",
]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, elementwise (float64)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


@dataclass
class ModelConfig:
    """Parameters of the simulated training run.

    Attributes:
        prompts: dataset size (prompts), ignored when initial rates come from a file.
        prompts_per_step: prompts per step, M.
        rollouts_per_prompt: mean rollouts per prompt; the step budget is
            ``B = prompts_per_step * rollouts_per_prompt`` rollouts (uniform gives each prompt this many).
        min_rollouts: fewest rollouts a prompt gets from an allocator (L).
        max_rollouts: most rollouts a prompt gets from an allocator (U).
        init_mean: mean of the initial skills (logit units; 0 means p = 0.5).
        init_std: standard deviation of the initial skills (logit units).
        lr: learning rate: skill gain (logits) of an informative group at ``p = 0``;
            the gain is ``lr * (1 - p)`` (``dp = lr * InfoGain(p)``).
        size_exponent: gain scales with ``(n / rollouts_per_prompt) ** size_exponent``
            for a group of n rollouts (0: size does not matter, as the paper assumes).
        transfer: fraction in [0, 1] of each gain shared evenly with the
            prompt's cluster (0: prompts learn independently).
        clusters: number of clusters for ``transfer`` (prompts are assigned at random).
        p_clip: initial rates read from a file are clipped to
            ``[p_clip, 1 - p_clip]`` so every skill is finite.
        capacity: rollouts the modelled GPU engine runs at once (None: the whole step);
            it sets ``gen_seconds``, never learning (simulation/gentime.py).
    """

    prompts: int = 17_000
    prompts_per_step: int = 256
    rollouts_per_prompt: int = 8
    min_rollouts: int = 2
    max_rollouts: int = 128
    init_mean: float = -1.0
    init_std: float = 4.25
    lr: float = 0.9
    size_exponent: float = 0.0
    transfer: float = 0.0
    clusters: int = 100
    p_clip: float = 1e-3
    capacity: int | None = None

    @property
    def budget(self) -> int:
        """Rollouts per step, ``prompts_per_step * rollouts_per_prompt``."""
        return self.prompts_per_step * self.rollouts_per_prompt

    def validate(self, prompts: int | None = None) -> ModelConfig:
        """Check every field; raise ValueError naming the field. Returns self.

        ``prompts``: the dataset size actually used (from an init file), if not ``self.prompts``.
        """
        ints = (
            "prompts",
            "prompts_per_step",
            "rollouts_per_prompt",
            "min_rollouts",
            "max_rollouts",
            "clusters",
        )
        for name in ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                if isinstance(v, float) and v.is_integer():
                    setattr(self, name, int(v))
                else:
                    raise ValueError(f"{name} must be an integer, got {v!r}")
        for name in ("init_mean", "init_std", "lr", "size_exponent", "transfer", "p_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise ValueError(f"{name} must be a number, got {v!r}")
            if not math.isfinite(float(v)):
                raise ValueError(f"{name} must be finite, got {v!r}")
            setattr(self, name, float(v))
        n = self.prompts if prompts is None else prompts
        if self.prompts < 1:
            raise ValueError(f"prompts must be >= 1, got {self.prompts}")
        if self.prompts_per_step < 1:
            raise ValueError(f"prompts_per_step must be >= 1, got {self.prompts_per_step}")
        if self.prompts_per_step > n:
            raise ValueError(
                f"prompts_per_step ({self.prompts_per_step}) > prompts in the dataset ({n})"
            )
        if self.min_rollouts < 1:
            raise ValueError(f"min_rollouts must be >= 1, got {self.min_rollouts}")
        if self.max_rollouts < self.min_rollouts:
            raise ValueError(
                f"max_rollouts ({self.max_rollouts}) < min_rollouts ({self.min_rollouts})"
            )
        if not self.min_rollouts <= self.rollouts_per_prompt <= self.max_rollouts:
            raise ValueError(
                f"rollouts_per_prompt must be in [min_rollouts, max_rollouts] = "
                f"[{self.min_rollouts}, {self.max_rollouts}], got {self.rollouts_per_prompt}"
            )
        if self.capacity is not None and (
            isinstance(self.capacity, bool)
            or not isinstance(self.capacity, (int, np.integer))
            or self.capacity < 1
        ):
            raise ValueError(f"capacity must be an integer >= 1 or None, got {self.capacity!r}")
        if self.init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {self.init_std}")
        if self.lr < 0:
            raise ValueError(f"lr must be >= 0, got {self.lr}")
        if self.size_exponent < 0:
            raise ValueError(f"size_exponent must be >= 0, got {self.size_exponent}")
        if not 0.0 <= self.transfer <= 1.0:
            raise ValueError(f"transfer must be in [0, 1], got {self.transfer}")
        if self.clusters < 1:
            raise ValueError(f"clusters must be >= 1, got {self.clusters}")
        if not 0.0 < self.p_clip < 0.5:
            raise ValueError(f"p_clip must be in (0, 0.5), got {self.p_clip}")
        return self

    def to_dict(self) -> dict:
        """Plain-data copy of the fields."""
        return dataclasses.asdict(self)


#: Named parameter sets. ``paper``: the paper's setting (DAPO-Math-17K-sized
#: dataset, 256 prompts x 8 rollouts, L = 2, U = 128); the skill distribution
#: and learning rate were chosen so that, under uniform allocation, around
#: step 1000 about 40% of prompts are all-correct and 20% all-wrong at N = 8
#: (see docs/simulation.md for the measured values). ``small``: a fast one for tests.
_PAPER = dict(
    prompts=17_000,
    prompts_per_step=256,
    rollouts_per_prompt=8,
    min_rollouts=2,
    max_rollouts=128,
    init_mean=-1.0,
    init_std=4.25,
    lr=0.9,
    size_exponent=0.0,
    transfer=0.0,
    clusters=100,
)
PRESETS: dict[str, dict] = {
    "paper": _PAPER,
    "small": {**_PAPER, "prompts": 400, "prompts_per_step": 32, "max_rollouts": 64, "clusters": 10},
}


def preset(name: str, **overrides) -> ModelConfig:
    """The named preset (``paper`` or ``small``) with ``overrides`` applied, validated."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"unknown model parameter {bad[0]!r}")
    return ModelConfig(**{**PRESETS[name], **overrides}).validate()


@dataclass(frozen=True)
class InitRates:
    """Initial success rates read from a file.

    Attributes:
        ids: prompt ids in file order.
        p: float (M,), success rates (successes / attempts for count files), unclipped.
        path: the file they came from.
    """

    ids: list
    p: np.ndarray
    path: str


def load_initial_rates(path: str | os.PathLike) -> InitRates:
    """Read initial success rates from a CSV/JSONL file of ``id`` and ``p``, or
    ``id``, ``successes`` and ``attempts`` (e.g. a real model's evaluation).

    Raises :class:`knapsack_rl.allocation.stats.StatsError` (a ValueError) naming the
    file, line and field on any problem; rows with ``attempts = 0`` are an error
    (no estimate).
    """
    from knapsack_rl.allocation.stats import StatsError, read_stats

    st = read_stats(path)
    if st.p is not None:
        p = np.asarray(st.p, dtype=np.float64)
    else:
        s = np.asarray(st.successes, dtype=np.float64)
        n = np.asarray(st.attempts, dtype=np.float64)
        zero = np.flatnonzero(n <= 0)
        if zero.size:
            k = int(zero[0])
            raise StatsError(
                f"{path}, row {k + 1} (id {st.ids[k]!r}), field 'attempts': 0 attempts "
                "give no success rate"
            )
        p = s / n
    return InitRates(ids=list(st.ids), p=p, path=str(path))


class Population:
    """Latent skills of every prompt, and the learning rule.

    Attributes:
        config: the :class:`ModelConfig`.
        skill: float (P,), latent skill per prompt (logits; ``p = sigmoid(skill)``).
        cluster: int (P,), cluster of each prompt (for ``transfer``).
    """

    def __init__(self, config: ModelConfig, skill: np.ndarray, cluster: np.ndarray) -> None:
        self.config = config
        self.skill = np.asarray(skill, dtype=np.float64).copy()
        self.cluster = np.asarray(cluster, dtype=np.int64).copy()
        self._cluster_size = np.bincount(self.cluster, minlength=config.clusters).astype(np.float64)

    @classmethod
    def create(
        cls, config: ModelConfig, seed: int = 0, init_p: np.ndarray | None = None
    ) -> Population:
        """A fresh population: skills ~ Normal(init_mean, init_std), or
        ``logit(clip(init_p, p_clip, 1 - p_clip))`` when ``init_p`` is given.
        Clusters are assigned uniformly at random. Deterministic in ``seed``."""
        rng = np.random.default_rng([int(seed), 7919])
        if init_p is None:
            n = config.prompts
            skill = rng.normal(config.init_mean, config.init_std, size=n)
        else:
            p = np.clip(np.asarray(init_p, dtype=np.float64), config.p_clip, 1.0 - config.p_clip)
            n = p.shape[0]
            skill = np.log(p) - np.log1p(-p)
        config.validate(prompts=n)
        cluster = rng.integers(0, config.clusters, size=n)
        return cls(config, skill, cluster)

    def copy(self) -> Population:
        """An independent copy (same skills and clusters)."""
        return Population(self.config, self.skill, self.cluster)

    def __len__(self) -> int:
        return int(self.skill.shape[0])

    def p(self, idx: np.ndarray | None = None) -> np.ndarray:
        """True success probabilities, of all prompts or of ``idx``."""
        return sigmoid(self.skill if idx is None else self.skill[idx])

    def sample(self, idx: np.ndarray, counts: np.ndarray, rng: np.random.Generator):
        """Roll out ``counts[g]`` times prompt ``idx[g]``.

        Returns ``(successes, flat_idx, flat_rewards)``: float (G,) successes per
        group, and the flat per-rollout prompt indices (int64) and rewards
        (int8 0/1) in group order.
        """
        idx = np.asarray(idx, dtype=np.int64)
        counts = np.asarray(counts, dtype=np.int64)
        flat = np.repeat(idx, counts)
        rewards = (rng.random(flat.size) < self.p(flat)).astype(np.int8)
        group = np.repeat(np.arange(idx.size), counts)
        k = np.bincount(group, weights=rewards, minlength=idx.size)
        return k, flat, rewards

    def gains(self, idx: np.ndarray, n: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Own skill gain (logits) of each group before transfer: 0 for
        all-equal groups, ``lr (1 - p) (n / rollouts_per_prompt)^size_exponent`` otherwise."""
        c = self.config
        n = np.asarray(n, dtype=np.float64)
        k = np.asarray(k, dtype=np.float64)
        informative = (k > 0) & (k < n)
        g = c.lr * (1.0 - self.p(idx))
        if c.size_exponent:
            g = g * (n / c.rollouts_per_prompt) ** c.size_exponent
        return np.where(informative, g, 0.0)

    def learn(self, idx: np.ndarray, n: np.ndarray, k: np.ndarray) -> None:
        """Apply one gradient step on the trained groups ``(idx[g], n[g], k[g])``.

        The same prompt may appear in several groups; gains add up.
        """
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            return
        g = self.gains(idx, n, k)
        t = self.config.transfer
        if t > 0:
            np.add.at(self.skill, idx, (1.0 - t) * g)
            shared = np.bincount(self.cluster[idx], weights=t * g, minlength=self.config.clusters)
            self.skill += (shared / np.maximum(self._cluster_size, 1.0))[self.cluster]
        else:
            np.add.at(self.skill, idx, g)
