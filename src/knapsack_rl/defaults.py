"""One set of defaults, used by the allocator, the trackers, the simulator and the CLIs.

The trainer and the TRL adapter take theirs from here too, so a setting means
the same number everywhere. See ``docs/method.md`` for what each one does.
"""

from __future__ import annotations

__all__ = [
    "METHOD",
    "TRAIN_METHOD",
    "MIN_ROLLOUTS",
    "MAX_ROLLOUTS",
    "ROLLOUTS_PER_PROMPT",
    "ALPHA",
    "COST_RULE",
    "POOL",
    "MIN_OBSERVATIONS",
    "WINDOW",
    "BETA_DISCOUNT",
    "SUCCESS_THRESHOLD",
    "ADVANTAGE_CLIP",
    "ROUNDS",
    "PILOT",
    "COMMIT",
    "OVERSAMPLE",
    "VALUE",
    "PRIOR_HALF_LIFE",
]

#: allocation method of :class:`knapsack_rl.Allocator` (and of the TRL and verl adapters)
METHOD = "knapsack"
#: the default method of the reference trainer and the verl adapter (TRL cannot run it):
#: ``pipelined`` learned more than uniform at equal rollouts and at uniform's modelled
#: GPU generation time (BENCHMARKS.md, issue 20)
TRAIN_METHOD = "pipelined"
#: L, the smallest group per prompt
MIN_ROLLOUTS = 2
#: U, the largest group per prompt (``paper`` mode may pass it, as the reference does)
MAX_ROLLOUTS = 128
#: the uniform group size (budget = prompts * this); also the ``paper`` n of prompts not valid
ROLLOUTS_PER_PROMPT = 8
#: ``paper`` fallback confidence
ALPHA = 0.9
#: ``paper`` fallback cost rule: ``probability`` or ``expectation``
COST_RULE = "probability"
#: ``paper`` tracker: a visit shorter than this is pooled with the last rewards up to this many
POOL = 16
#: paper and window trackers: observations before an estimate is trusted ("valid")
MIN_OBSERVATIONS = 8
#: window tracker: rewards kept per prompt
WINDOW = 32
#: beta tracker: forgetting factor per visit
BETA_DISCOUNT = 0.9
#: a reward counts as a success when ``reward >= SUCCESS_THRESHOLD`` (non-binary rewards)
SUCCESS_THRESHOLD = 0.5
#: advantages are clipped to [-ADVANTAGE_CLIP, ADVANTAGE_CLIP] (None: no clipping)
ADVANTAGE_CLIP = 5.0
#: generation rounds per step for ``method="rounds"`` (pilot + rest)
ROUNDS = 2
#: pilot rollouts per prompt in round 1
PILOT = 2
#: ``method="stream"``: the whole budget is requested once this share of the pilot
#: results is back (docs/method.md, "Streaming")
COMMIT = 0.5
#: ``method="rounds"`` draws OVERSAMPLE times the uniform number of prompts per step and
#: pilots each; the step's rollout budget is unchanged (the reference trainer's selection
#: runs picked 2 prompts per uniform prompt with a pilot of 2, BENCHMARKS.md)
OVERSAMPLE = 2
#: value model of ``method="rounds"`` (trainer, simulator, TRL, verl): ``grpo`` with
#: OVERSAMPLE = 2 learned the most in the reference trainer's selection runs
#: (BENCHMARKS.md); ``allocate_round`` itself defaults to the paper's value
VALUE = "grpo"
#: steps after which a prompt's own evidence counts half in its prior
PRIOR_HALF_LIFE = 20.0
