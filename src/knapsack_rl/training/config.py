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
from knapsack_rl.deprecation import REMOVAL, deprecated
from knapsack_rl.planning.session import ALLOCATION_METHODS, AllocationConfig

TRAIN_METHODS = ALLOCATION_METHODS

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
#: settings that were retired: name -> the one value still accepted (and ignored)
RETIRED = {"pilot_mode": "fixed"}


def _renamed(key: str, where: str) -> tuple[str, typing.Callable]:
    """The current name of ``key`` and the conversion of its old values (DeprecationWarning)."""
    if key not in DEPRECATED:
        return key, lambda v: v
    new, conv = DEPRECATED[key]
    deprecated(f"{where}: {key!r}", repr(new), stacklevel=4)
    return new, conv


def _retired(key: str, value, where: str) -> None:
    """Accept a retired setting at its one remaining value (DeprecationWarning), else fail."""
    keep = RETIRED[key]
    if str(value).strip().lower() != keep:
        raise ConfigError(
            f"{where}: {key}={value!r} was removed in 0.2.0 (measured, not adopted); "
            f"only {keep!r} is left, so drop the setting"
        )
    warnings.warn(
        f"{where}: {key!r} has no effect and will be removed in {REMOVAL}",
        DeprecationWarning,
        stacklevel=3,
    )


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
            if k.replace("-", "_") in RETIRED:
                _retired(k.replace("-", "_"), v, source)
                continue
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
        defaults.TRAIN_METHOD,
        f"allocation method: {', '.join(TRAIN_METHODS)} (rounds: generate in rounds, "
        "allocating each round from the step's own draws; stream: allocate as completions "
        "return, in the order a GPU engine would return them; pipelined: rounds, with the "
        "next step's pilot generated in this step's rest call, one barrier per step)",
    )
    tracker: str = _f(
        "auto",
        "success-rate tracker: auto (paper->paper, bayes and the planned methods->beta, else window), "
        "paper, window, beta",
    )
    rounds: int = _f(defaults.ROUNDS, "rounds/pipelined: generation rounds per step")
    pilot: int = _f(defaults.PILOT, "rounds/stream/pipelined: pilot rollouts per prompt")
    oversample: int = _f(
        defaults.OVERSAMPLE,
        "rounds/stream/pipelined: draw OVERSAMPLE * M prompts per step and pilot each; the step's "
        "rollout budget is unchanged",
    )
    value: str = _f(defaults.VALUE, "rounds/stream/pipelined: value model (grpo, paper)")
    commit: float = _f(
        defaults.COMMIT,
        "stream: the whole budget is requested once this share of the pilot results is back",
    )
    concurrency: int | None = _f(
        None,
        "stream: most rollouts in flight (the modelled engine's slots); none: the whole step",
    )
    prior_half_life: float = _f(
        defaults.PRIOR_HALF_LIFE,
        "rounds/stream/pipelined: steps until a prompt's own evidence counts half",
    )
    prior_tracker: str | None = _f(
        None,
        "rounds/stream/pipelined: a previous run's tracker file (.npz) whose estimates seed the priors",
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
    discount: float = _f(defaults.BETA_DISCOUNT, "beta tracker: forgetting factor per visit")
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
        self._check_retired()
        self._check_numbers()  # before the choices: the tracker they build needs sane numbers
        self._check_choices()
        self._check_counts()
        self._check_budget()
        self._check_model_and_task()
        return self

    def _check_retired(self) -> None:
        if isinstance(self.discount, str):
            raise ConfigError(
                f"discount: {self.discount!r} was removed in 0.2.0 (measured, not adopted); "
                "give a number in (0, 1]"
            )

    def _check_choices(self) -> None:
        for problem in self.allocation.problems():  # method, value, tracker, rounds, ...
            raise ConfigError(problem)
        from knapsack_rl.training.tasks import TASKS

        if self.task not in TASKS:
            raise ConfigError(f"task: unknown {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.reward not in ("auto", "exact_match", "math_verify"):
            raise ConfigError(f"reward: unknown {self.reward!r}")
        if self.task == "jsonl" and not self.dataset:
            raise ConfigError("dataset: task 'jsonl' needs --dataset FILE")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device: unknown {self.device!r}")

    def _check_counts(self) -> None:
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("save_every", "eval_every", "sft_steps", "sft_examples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for k in self.pass_k:
            if not 1 <= k <= self.eval_samples:
                raise ConfigError(f"pass_k: {k} is not in 1..eval_samples ({self.eval_samples})")

    def _check_budget(self) -> None:
        if self.step_prompts > self.train_prompts:
            raise ConfigError(
                f"prompts per step ({self.step_prompts}: prompts_per_step x oversample) > "
                f"train_prompts ({self.train_prompts})"
            )
        if self.min_rollouts > self.max_rollouts:
            raise ConfigError(
                f"min_rollouts ({self.min_rollouts}) > max_rollouts ({self.max_rollouts})"
            )
        m, b = self.step_prompts, self.step_budget
        problem = self.allocation.check_step(m, b)
        if problem is not None and problem.startswith("budget") and m != self.prompts_per_step:
            problem = problem.replace(
                f"by {m} prompts",
                f"by {m} prompts (prompts_per_step x oversample {self.oversample})",
            )
        if problem is not None:
            raise ConfigError(problem)

    def _check_model_and_task(self) -> None:
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

    def _check_numbers(self) -> None:
        """Every real-valued setting: finite and in its range (one line naming the field)."""
        for name, (lo, lo_in, hi, hi_in) in _RANGES.items():
            v = getattr(self, name)
            if v is None and name == "advantage_clip":
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
        """Prompts drawn per step: ``prompts_per_step``, times ``oversample`` for
        ``rounds`` and ``stream``."""
        return self.allocation.step_prompts(self.prompts_per_step)

    @property
    def step_budget(self) -> int:
        """Rollouts per step: ``budget`` or ``prompts_per_step * rollouts_per_prompt``."""
        return (
            self.budget
            if self.budget is not None
            else self.prompts_per_step * self.rollouts_per_prompt
        )

    @property
    def allocation(self) -> AllocationConfig:
        """The allocation section as the engine-agnostic :class:`AllocationConfig`."""
        cfg = AllocationConfig(
            method=self.method,
            tracker=self.tracker,
            value=self.value,
            rounds=self.rounds,
            pilot=self.pilot,
            oversample=self.oversample,
            commit=self.commit,
            concurrency=self.concurrency,
            prior_half_life=self.prior_half_life,
            prior_tracker=self.prior_tracker,
            rollouts_per_prompt=self.rollouts_per_prompt,
            min_rollouts=self.min_rollouts,
            max_rollouts=self.max_rollouts,
            success_threshold=self.success_threshold,
        )
        if cfg.tracker_kind == "window":
            cfg.tracker_kwargs = {"window": self.window}
        elif cfg.tracker_kind == "beta":
            cfg.tracker_kwargs = {"discount": self.discount}
        return cfg

    @property
    def tracker_kind(self) -> str:
        """The tracker actually used (resolves ``auto``)."""
        return self.allocation.tracker_kind

    def make_tracker(self):
        """A fresh success-rate tracker of kind :attr:`tracker_kind` with these settings."""
        return self.allocation.make_tracker()

    def make_allocator(self):
        """The :class:`knapsack_rl.Allocator` of these settings."""
        return self.allocation.make_allocator()

    def sections(self) -> dict[str, dict]:
        """The settings grouped as ``{section: {name: value}}`` (run, model, task,
        allocation, generation, optimisation, evaluation)."""
        d = self.to_dict()
        return {sec: {k: d[k] for k in names} for sec, names in SECTIONS.items()}


#: the settings by section, in the order ``--help`` prints them
SECTIONS: dict[str, tuple[str, ...]] = {}
_SECTION_STARTS = {
    "run_dir": "run",
    "model": "model",
    "task": "task",
    "method": "allocation",
    "max_new_tokens": "generation",
    "lr": "optimisation",
    "eval_every": "evaluation",
}
_sec = "run"
for _f_ in dataclasses.fields(TrainConfig):
    _sec = _SECTION_STARTS.get(_f_.name, _sec)
    SECTIONS[_sec] = (*SECTIONS.get(_sec, ()), _f_.name)
del _sec, _f_

_POSITIVE = (
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
)
_RANGES = {  # name: (low, low inclusive, high, high inclusive)
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
    if f.name == "discount" and isinstance(v, str) and v.strip().lower() == "auto":
        raise ConfigError(
            f"{where}: 'auto' was removed in 0.2.0 (measured, not adopted); give a number in (0, 1]"
        )
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
    """One ``--flag`` per field (defaults suppressed so only given flags override), in one
    argument group per section, plus hidden flags for the deprecated and retired names."""
    fields = {f.name for f in dataclasses.fields(cls)}
    for old, (new, _) in DEPRECATED.items():
        if new in fields:
            parser.add_argument("--" + old.replace("_", "-"), dest=old, help=argparse.SUPPRESS)
    if issubclass(cls, TrainConfig):
        for old in RETIRED:
            parser.add_argument("--" + old.replace("_", "-"), dest=old, help=argparse.SUPPRESS)
    sections = {
        **SECTIONS,
        "more": tuple(n for n in fields if not any(n in v for v in SECTIONS.values())),
    }
    groups = {
        n: parser.add_argument_group(f"{sec} settings")
        for sec, names in sections.items()
        for n in names
    }
    for f in dataclasses.fields(cls):
        if f.name in getattr(cls, "HIDDEN", ()):
            continue
        base, optional, is_tuple = _base_type(_hint(f, cls))
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_ = f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%")
        group = groups.get(f.name, parser)
        if base is bool and not is_tuple:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_
            )
        else:
            meta = f.name.upper()
            group.add_argument(
                flag, dest=f.name, metavar=meta, default=argparse.SUPPRESS, help=help_
            )


def config_from_args(ns: argparse.Namespace, file_path: str | None = None, cls=TrainConfig):
    """Defaults < ``file_path`` settings < flags given in ``ns``; validated."""
    data: dict = {}
    if file_path:
        data.update(load_config_file(file_path))
    cfg = cls.from_dict(data, source=str(file_path)) if data else cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for old in RETIRED if issubclass(cls, TrainConfig) else ():
        if getattr(ns, old, None) is not None:
            _retired(old, getattr(ns, old), f"--{old.replace('_', '-')}")
    given = [(old, DEPRECATED[old][0]) for old in DEPRECATED if getattr(ns, old, None) is not None]
    given += [(k, k) for k in fields if hasattr(ns, k)]  # the new name wins over the old
    for flag_name, name in given:
        flag = f"--{flag_name.replace('_', '-')}"
        _, conv = _renamed(flag_name, flag)
        setattr(cfg, name, conv(_convert(fields[name], getattr(ns, flag_name), flag, cls)))
    return cfg.validate()
