"""Training configuration: one dataclass, settable by flags and by a YAML/TOML file.

Every field carries its help text in ``metadata["help"]``; ``knapsack-rl train
--help`` prints all of them. Precedence: defaults < config file < flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from knapsack_rl import defaults
from knapsack_rl.allocation import METHODS

TRAIN_METHODS = (*METHODS, "rounds")

__all__ = [
    "TrainConfig",
    "ConfigError",
    "TrainError",
    "load_config_file",
    "add_config_arguments",
    "config_from_args",
]

TRACKER_CHOICES = ("auto", "paper", "window", "beta")

# old setting names a user may still pass: old name -> (new name, old value -> new value)
DEPRECATED = {
    "adv_clip": ("advantage_clip", lambda v: None if v is not None and v <= 0 else v),
}


def _renamed(key: str, where: str) -> tuple[str, typing.Callable]:
    """The current name of ``key`` and the conversion of its old values (DeprecationWarning)."""
    if key not in DEPRECATED:
        return key, lambda v: v
    new, conv = DEPRECATED[key]
    warnings.warn(f"{where}: {key!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=3)
    return new, conv


class ConfigError(ValueError):
    """A configuration value or file the user must fix."""


class TrainError(ValueError):
    """A run that cannot start or continue for a reason the user can fix."""


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


class _ConfigMixin:
    """Shared helpers of the config dataclasses."""

    def to_dict(self) -> dict:
        """Plain-data dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **kw):
        """A copy with fields changed."""
        return dataclasses.replace(self, **kw)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config"):
        """Build from a dict, converting lists/strings to the field types; unknown keys are errors."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        kw = {}
        for k, v in d.items():
            key, conv = _renamed(k.replace("-", "_"), source)
            if key not in names:
                raise ConfigError(f"{source}: unknown setting {k!r}")
            kw[key] = conv(_convert(names[key], v, f"{source}: {k}", cls))
        return cls(**kw)


@dataclass
class TrainConfig(_ConfigMixin):
    """All settings of a GRPO run with per-prompt rollout budgets."""

    # run
    run_dir: str = _f(
        "runs/train",
        "output folder: config.json, metrics.jsonl, allocations.jsonl, checkpoint.pt, eval.jsonl",
    )
    seed: int = _f(0, "seed for the task, the prompt order, sampling and initialisation")
    steps: int = _f(100, "RL steps (one batch of prompts each)")
    threads: int = _f(
        1,
        "torch CPU threads (torch.set_num_threads); 1 is fastest for the built-in model on shared CPUs",
    )
    device: str = _f("auto", "'cpu', 'cuda' or 'auto' (cuda when available)")
    resume: bool = _f(
        False, "continue from RUN_DIR/checkpoint.pt (identical to an uninterrupted run)"
    )
    save_every: int = _f(20, "write an atomic checkpoint every K steps (0: only at the end)")
    progress: bool = _f(True, "show a tqdm progress bar")
    tensorboard: bool = _f(False, "also log to TensorBoard (RUN_DIR/tb; needs tensorboard)")
    wandb: bool = _f(False, "also log to Weights & Biases (needs wandb; offline unless configured)")
    wandb_project: str = _f("knapsack-rl", "W&B project name")
    # model
    model: str = _f(
        "builtin",
        "'builtin' (tiny Llama, char tokenizer), a local Hugging Face model folder, or a .gguf file",
    )
    gguf_file: str | None = _f(
        None, "GGUF file name inside MODEL (a folder); or give the .gguf path as MODEL"
    )
    chat_template: bool | None = _f(
        None,
        "wrap prompts with the tokenizer's chat template (default: when the tokenizer has one)",
    )
    n_layer: int = _f(2, "built-in model: transformer layers")
    n_embd: int = _f(128, "built-in model: hidden size")
    n_head: int = _f(4, "built-in model: attention heads")
    n_inner: int = _f(512, "built-in model: MLP inner size")
    sft_steps: int = _f(1000, "built-in model: supervised warm-start steps before RL (0: none)")
    sft_batch: int = _f(64, "warm-start batch size (examples)")
    sft_lr: float = _f(3e-3, "warm-start learning rate (AdamW, cosine to 10%)")
    sft_noise: float = _f(
        0.3,
        "warm-start: share of targets replaced by a wrong answer (a noisy teacher RL can correct)",
    )
    sft_weights: tuple[float, ...] | None = _f(
        None,
        "arithmetic warm-start: relative share of each level in the supervised examples "
        "(comma list; default: equal). A small share leaves a level under-trained",
    )
    sft_examples: int = _f(
        50000,
        "warm-start examples (train split, disjoint from the test split; many, so SFT generalises)",
    )
    # task
    task: str = _f(
        "arithmetic", "'arithmetic' (built-in), 'jsonl' (DATASET) or 'reasoning_gym' (RG_NAME)"
    )
    digits: tuple[int, ...] = _f((1, 1, 1, 2), "arithmetic: operand digits per level (comma list)")
    terms: tuple[int, ...] = _f((2, 2, 3, 2), "arithmetic: terms per level (comma list)")
    operators: tuple[str, ...] = _f(
        ("+", "-", "+", "+"), "arithmetic: operators per level (comma list of strings over '+-*')"
    )
    dataset: str | None = _f(None, "jsonl: training file of {prompt, answer} rows")
    test_dataset: str | None = _f(None, "jsonl: held-out file (default: a hashed 10% of DATASET)")
    rg_name: str = _f("basic_arithmetic", "reasoning_gym: generator name")
    reward: str = _f("auto", "'auto' (task default), 'exact_match' or 'math_verify'")
    train_prompts: int = _f(
        2048,
        "size of the training prompt pool (prompts are revisited each epoch; large enough that "
        "RL generalises rather than memorises, small enough that trackers see prompts again)",
    )
    eval_prompts: int = _f(400, "held-out prompts for evaluation")
    # allocation
    method: str = _f(
        defaults.METHOD,
        f"allocation method: {', '.join(TRAIN_METHODS)} (rounds: generate in rounds, "
        "allocating each round from the step's own draws)",
    )
    tracker: str = _f(
        "auto",
        "success-rate tracker: auto (paper->paper, bayes/rounds->beta, else window), paper, "
        "window, beta",
    )
    rounds: int = _f(defaults.ROUNDS, "rounds method: generation rounds per step")
    pilot: int = _f(defaults.PILOT, "rounds method: pilot rollouts per prompt in round 1")
    oversample: int = _f(
        defaults.OVERSAMPLE,
        "rounds method: draw OVERSAMPLE * M prompts per step and pilot each; the step's "
        "rollout budget is unchanged",
    )
    pilot_mode: str = _f(
        "fixed", "rounds method: 'fixed' (PILOT each) or 'prior' (M*PILOT split by the prior)"
    )
    value: str = _f(
        defaults.VALUE, "rounds method: value model (paper, informative, size, coba, grpo)"
    )
    prior_half_life: float = _f(
        defaults.PRIOR_HALF_LIFE, "rounds method: steps until a prompt's own evidence counts half"
    )
    prior_tracker: str | None = _f(
        None,
        "rounds method: a previous run's tracker file (.npz) whose estimates seed the priors",
    )
    prompts_per_step: int = _f(32, "M: prompts per step")
    rollouts_per_prompt: int = _f(
        defaults.ROLLOUTS_PER_PROMPT,
        "mean rollouts per prompt; the step budget is M * this (uniform n)",
    )
    budget: int | None = _f(None, "rollouts per step (overrides M * ROLLOUTS_PER_PROMPT)")
    min_rollouts: int = _f(defaults.MIN_ROLLOUTS, "L: smallest group per prompt")
    max_rollouts: int = _f(defaults.MAX_ROLLOUTS, "U: largest group per prompt")
    window: int = _f(defaults.WINDOW, "window tracker: rewards kept per prompt")
    discount: float | str = _f(
        defaults.BETA_DISCOUNT,
        "beta tracker: forgetting factor per visit, or 'auto' (chosen by predictive likelihood)",
    )
    success_threshold: float = _f(
        defaults.SUCCESS_THRESHOLD,
        "a rollout counts as a success for the tracker when its reward is >= this",
    )
    # generation
    max_new_tokens: int = _f(6, "longest completion (tokens)")
    temperature: float = _f(1.0, "sampling temperature for training rollouts")
    max_batch_tokens: int = _f(
        32768, "generation memory cap: sequences per chunk * (prompt + new tokens)"
    )
    # optimisation
    lr: float = _f(3e-4, "RL learning rate (AdamW)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    updates_per_batch: int = _f(1, "policy updates per batch (PPO epochs)")
    minibatch_rollouts: int = _f(
        512, "rollouts per forward/backward micro-batch (gradient accumulation)"
    )
    clip_eps_low: float = _f(0.2, "PPO ratio clip below: 1 - eps_low")
    clip_eps_high: float = _f(0.28, "PPO ratio clip above: 1 + eps_high (DAPO clip-higher)")
    advantage_clip: float | None = _f(
        defaults.ADVANTAGE_CLIP, "clip advantages to [-c, c] (none: no clipping; old name adv_clip)"
    )
    scale_rewards: bool = _f(True, "divide advantages by the group std (GRPO)")
    kl_coef: float = _f(0.0, "KL penalty to a frozen reference policy (0: off, no reference kept)")
    max_grad_norm: float = _f(1.0, "gradient clipping (<= 0: off)")
    # evaluation
    eval_every: int = _f(10, "evaluate every K steps (0: only at start and end)")
    eval_samples: int = _f(8, "sampled completions per held-out prompt for avg@k / pass@k")
    eval_temperature: float = _f(1.0, "temperature of the sampled evaluation")
    pass_k: tuple[int, ...] = _f((1, 4), "k values for the unbiased pass@k (each <= EVAL_SAMPLES)")

    def validate(self) -> TrainConfig:
        """Check values; raise :class:`ConfigError` naming the field."""
        if self.method not in TRAIN_METHODS:
            raise ConfigError(
                f"method: unknown {self.method!r}; expected one of {', '.join(TRAIN_METHODS)}"
            )
        from knapsack_rl.allocation.rounds import VALUES

        if self.value not in VALUES:
            raise ConfigError(f"value: unknown {self.value!r}; expected one of {', '.join(VALUES)}")
        if self.pilot_mode not in ("fixed", "prior"):
            raise ConfigError(f"pilot_mode: unknown {self.pilot_mode!r}; expected fixed or prior")
        if self.rounds < 1 or self.pilot < 1:
            raise ConfigError(f"rounds and pilot must be >= 1, got {self.rounds} and {self.pilot}")
        if not (self.prior_half_life > 0):
            raise ConfigError(f"prior_half_life must be > 0, got {self.prior_half_life}")
        if self.tracker not in TRACKER_CHOICES:
            raise ConfigError(
                f"tracker: unknown {self.tracker!r}; expected one of {', '.join(TRACKER_CHOICES)}"
            )
        from knapsack_rl.training.tasks import TASKS

        if self.task not in TASKS:
            raise ConfigError(f"task: unknown {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.reward not in ("auto", "exact_match", "math_verify"):
            raise ConfigError(f"reward: unknown {self.reward!r}")
        if self.task == "jsonl" and not self.dataset:
            raise ConfigError("dataset: task 'jsonl' needs --dataset FILE")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device: unknown {self.device!r}")
        for name in (
            "steps",
            "prompts_per_step",
            "rollouts_per_prompt",
            "min_rollouts",
            "max_rollouts",
            "max_new_tokens",
            "threads",
            "updates_per_batch",
            "minibatch_rollouts",
            "oversample",
            "train_prompts",
            "eval_prompts",
            "eval_samples",
            "n_layer",
            "n_embd",
            "n_head",
            "sft_batch",
            "max_batch_tokens",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("save_every", "eval_every", "sft_steps", "sft_examples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.step_prompts > self.train_prompts:
            raise ConfigError(
                f"prompts per step ({self.step_prompts}: prompts_per_step x oversample) > "
                f"train_prompts ({self.train_prompts})"
            )
        self._check_numbers()
        for k in self.pass_k:
            if not 1 <= k <= self.eval_samples:
                raise ConfigError(f"pass_k: {k} is not in 1..eval_samples ({self.eval_samples})")
        if self.min_rollouts > self.max_rollouts:
            raise ConfigError(
                f"min_rollouts ({self.min_rollouts}) > max_rollouts ({self.max_rollouts})"
            )
        m, b = self.step_prompts, self.step_budget
        lo, hi = m * self.min_rollouts, m * self.max_rollouts
        if not lo <= b <= hi:
            why = (
                f" (prompts_per_step x oversample {self.oversample})"
                if m != self.prompts_per_step
                else ""
            )
            raise ConfigError(
                f"budget: {b} rollouts per step cannot be met by {m} prompts{why} with "
                f"{self.min_rollouts} <= rollouts <= {self.max_rollouts} (needs {lo}..{hi})"
            )
        if (
            self.method == "rounds"
            and self.rounds > 1
            and self.pilot_mode == "fixed"
            and m * self.pilot >= b
        ):
            raise ConfigError(
                f"pilot: {m} prompts x {self.pilot} pilot rollouts use the whole budget of "
                f"{b}, leaving nothing for later rounds (lower pilot or oversample)"
            )
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.task == "arithmetic" and not (
            len(self.digits) == len(self.terms) == len(self.operators)
        ):
            raise ConfigError("digits, terms and operators need one entry per level")
        if self.sft_weights is not None and self.task != "arithmetic":
            raise ConfigError("sft_weights: only for the built-in arithmetic task (its levels)")
        if self.sft_weights is not None and (
            len(self.sft_weights) != len(self.digits)
            or min(self.sft_weights) < 0
            or not sum(self.sft_weights) > 0
            or not all(math.isfinite(w) for w in self.sft_weights)
        ):
            raise ConfigError(
                f"sft_weights: give {len(self.digits)} non-negative numbers (one per level) "
                f"with a positive sum, got {self.sft_weights}"
            )
        return self

    def _check_numbers(self) -> None:
        """Every real-valued setting: finite and in its range (one line naming the field)."""
        ranges = {  # name: (low, low inclusive, high, high inclusive)
            "lr": (0, False, math.inf, False),
            "sft_lr": (0, False, math.inf, False),
            "weight_decay": (0, True, math.inf, False),
            "temperature": (0, False, math.inf, False),
            "eval_temperature": (0, False, math.inf, False),
            "kl_coef": (0, True, math.inf, False),
            "max_grad_norm": (-math.inf, False, math.inf, False),  # <= 0: off
            "advantage_clip": (0, False, math.inf, False),
            "clip_eps_low": (0, True, 1, False),
            "clip_eps_high": (0, True, math.inf, False),
            "sft_noise": (0, True, 1, True),
            "discount": (0, False, 1, True),
            "success_threshold": (-math.inf, False, math.inf, False),
        }
        if isinstance(self.discount, str) and self.discount != "auto":
            raise ConfigError(
                f"discount must be a number in (0, 1] or 'auto', got {self.discount!r}"
            )
        for name, (lo, lo_in, hi, hi_in) in ranges.items():
            v = getattr(self, name)
            if (v is None and name == "advantage_clip") or (name == "discount" and v == "auto"):
                continue
            ok = (
                math.isfinite(v)
                and (v >= lo if lo_in else v > lo)
                and (v <= hi if hi_in else v < hi)
            )
            if not ok:
                want = (
                    "a finite number"
                    + ("" if lo == -math.inf else f" {'>=' if lo_in else '>'} {lo}")
                    + ("" if hi == math.inf else f" and {'<=' if hi_in else '<'} {hi}")
                )
                raise ConfigError(f"{name} must be {want}, got {v}")

    @property
    def step_prompts(self) -> int:
        """Prompts drawn per step: ``prompts_per_step``, times ``oversample`` for ``rounds``."""
        return self.prompts_per_step * (self.oversample if self.method == "rounds" else 1)

    @property
    def step_budget(self) -> int:
        """Rollouts per step: ``budget`` or ``prompts_per_step * rollouts_per_prompt``."""
        return (
            self.budget
            if self.budget is not None
            else self.prompts_per_step * self.rollouts_per_prompt
        )

    @property
    def tracker_kind(self) -> str:
        """The tracker actually used (resolves ``auto``)."""
        if self.tracker != "auto":
            return self.tracker
        return {"paper": "paper", "bayes": "beta", "rounds": "beta"}.get(self.method, "window")

    def make_tracker(self):
        """A fresh success-rate tracker of kind :attr:`tracker_kind` with these settings."""
        from knapsack_rl.tracking import make_tracker

        kind = self.tracker_kind
        kw: dict = {"threshold": self.success_threshold}
        if kind == "window":
            kw["window"] = self.window
        elif kind == "beta":
            kw["discount"] = self.discount
        return make_tracker(kind, **kw)

    def make_planner(self, tracker):
        """The :class:`knapsack_rl.RoundPlanner` of ``method="rounds"`` (None otherwise)."""
        if self.method != "rounds":
            return None
        from knapsack_rl.tracking.planner import RoundPlanner
        from knapsack_rl.tracking.priors import PriorModel

        return RoundPlanner(
            tracker,
            rounds=self.rounds,
            pilot="prior" if self.pilot_mode == "prior" else self.pilot,
            pilot_size=self.pilot,
            min_rollouts=self.min_rollouts,
            max_rollouts=self.max_rollouts,
            value=self.value,
            priors=PriorModel(half_life=self.prior_half_life),
        )

    def make_allocator(self):
        """The :class:`knapsack_rl.Allocator` of these settings."""
        from knapsack_rl.allocation import Allocator

        return Allocator(
            method="knapsack" if self.method == "rounds" else self.method,
            min_rollouts=self.min_rollouts,
            max_rollouts=self.max_rollouts,
            rollouts_per_prompt=self.rollouts_per_prompt,
        )


_HINTS: dict = {}


def _hint(f: dataclasses.Field, cls=None):
    for c in (cls, TrainConfig, *_HINTS):
        if c is None:
            continue
        if c not in _HINTS:
            _HINTS[c] = typing.get_type_hints(c)
        if f.name in _HINTS[c]:
            return _HINTS[c][f.name]
    raise KeyError(f.name)


def _base_type(tp):
    """(base type, optional, is_tuple) of an annotation."""
    args = typing.get_args(tp)
    optional = False
    if type(None) in args:
        optional = True
        tp = next(a for a in args if a is not type(None))
    if typing.get_origin(tp) is tuple:
        return typing.get_args(tp)[0], optional, True
    return tp, optional, False


def _convert(f: dataclasses.Field, v, where: str, cls=None):
    base, optional, is_tuple = _base_type(_hint(f, cls))
    if v is None or (optional and isinstance(v, str) and v.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    try:
        if is_tuple:
            items = v.split(",") if isinstance(v, str) else list(v)
            return tuple(_scalar(base, x) for x in items)
        return _scalar(base, v)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _scalar(base, v):
    if base is bool:
        if isinstance(v, bool):
            return v
        s = str(v).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {v!r}")
    if base is int:
        if isinstance(v, bool):
            raise ValueError(f"expected an integer, got {v!r}")
        if isinstance(v, float) and not v.is_integer():
            raise ValueError(f"expected an integer, got {v!r}")
        return int(str(v).strip()) if isinstance(v, str) else int(v)
    if base is float:
        return float(v)
    if set(typing.get_args(base)) == {float, str}:  # a number or a word (discount: "auto")
        try:
            return float(v)
        except ValueError:
            return str(v).strip()
    return str(v).strip() if isinstance(v, str) else str(v)


def load_config_file(path: str | os.PathLike) -> dict:
    """Read a YAML (.yaml/.yml) or TOML (.toml) config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML ({e})") from None
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({e})") from None
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON ({e})") from None
    else:
        raise ConfigError(f"{path}: config files must end in .yaml, .yml, .toml or .json")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    if "train" in data and isinstance(data["train"], dict) and len(data) == 1:
        data = data["train"]  # allow a [train] table
    return data


def add_config_arguments(parser: argparse.ArgumentParser, cls=TrainConfig) -> None:
    """One ``--flag`` per field (defaults suppressed so only given flags override), plus
    hidden flags for the deprecated names."""
    fields = {f.name for f in dataclasses.fields(cls)}
    for old, (new, _) in DEPRECATED.items():
        if new in fields:
            parser.add_argument("--" + old.replace("_", "-"), dest=old, help=argparse.SUPPRESS)
    for f in dataclasses.fields(cls):
        if f.name in getattr(cls, "HIDDEN", ()):
            continue
        base, optional, is_tuple = _base_type(_hint(f, cls))
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_ = f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%")
        if base is bool and not is_tuple:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_
            )
        else:
            meta = f.name.upper()
            parser.add_argument(
                flag, dest=f.name, metavar=meta, default=argparse.SUPPRESS, help=help_
            )


def config_from_args(ns: argparse.Namespace, file_path: str | None = None, cls=TrainConfig):
    """Defaults < ``file_path`` settings < flags given in ``ns``; validated."""
    data: dict = {}
    if file_path:
        data.update(load_config_file(file_path))
    cfg = cls.from_dict(data, source=str(file_path)) if data else cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    given = [(old, DEPRECATED[old][0]) for old in DEPRECATED if getattr(ns, old, None) is not None]
    given += [(k, k) for k in fields if hasattr(ns, k)]  # the new name wins over the old
    for flag_name, name in given:
        flag = f"--{flag_name.replace('_', '-')}"
        _, conv = _renamed(flag_name, flag)
        setattr(cfg, name, conv(_convert(fields[name], getattr(ns, flag_name), flag, cls)))
    return cfg.validate()
