"""run_pipelined: a step's pilot carried from the last step's call, the next pilot in this one."""

import numpy as np
import pytest

from knapsack_rl.planning import RoundPlanner, positions, run_batched, run_pipelined
from knapsack_rl.planning.session import AllocationConfig, AllocationSession
from knapsack_rl.tracking import make_tracker


def _planner(**kw):
    return RoundPlanner(make_tracker("beta"), **kw)


def test_config_pipelined_is_a_planned_two_round_method():
    cfg = AllocationConfig(method="pipelined").validate()
    assert cfg.planned and cfg.tracker_kind == "beta" and cfg.step_prompts(8) == 16
    assert isinstance(AllocationSession(cfg).planner, RoundPlanner)
    assert any(
        p.startswith("rounds must be >= 2 for method pipelined")
        for p in AllocationConfig(method="pipelined", rounds=1).problems()
    )
    assert "leaving nothing" in AllocationConfig(method="pipelined").check_step(16, 32)


def test_pilot_counts_are_what_start_requests():
    for prompts, budget in ((16, 64), (16, 20), (5, 10)):
        planner = _planner(pilot=2, min_rollouts=1)
        want = planner.pilot_counts(prompts, budget)
        sends = planner.start(list(range(prompts)), budget)
        np.testing.assert_array_equal(np.bincount(sends, minlength=prompts), want)
        assert want.sum() == min(2 * prompts, budget)


def test_pipelined_steps_match_rounds_with_the_pilot_moved_one_call_earlier():
    """The same rewards give the same groups as ``rounds``; each step has one call (the
    first two), and the next pilot rides in the call that spends the step's budget."""
    p = np.linspace(0.05, 0.95, 40)
    steps = [list(range(s * 8, s * 8 + 16)) for s in range(4)]
    budget = 48

    def reward(ids, pos, salt):  # deterministic per (prompt, k-th rollout of the prompt)
        k = np.zeros(pos.size, np.int64)
        for j in range(pos.size):
            k[j] = np.sum(pos[:j] == pos[j])
        u = np.array([(hash((ids[i], kk, salt)) % 1000) / 1000 for i, kk in zip(pos, k)])
        return (u < p[np.asarray(ids)[pos]]).astype(float)

    rounds = _planner()
    want = []
    for s, ids in enumerate(steps):
        calls = [0]

        def gen(pos, ids=ids, s=s, calls=calls):
            calls[0] += 1
            return reward(ids, pos, (s, calls[0]))

        want.append(run_batched(rounds, ids, budget, gen))

    piped, carried, sizes = _planner(), None, []
    for s, ids in enumerate(steps):
        nxt = steps[s + 1] if s + 1 < len(steps) else None
        ahead = positions(piped.pilot_counts(len(nxt), budget)) if nxt else None
        calls = [1 if s else 0]  # this step's pilot was call 1 (made in the last step)

        def gen(pos, apos, ids=ids, s=s, nxt=nxt, calls=calls):
            calls[0] += 1
            sizes.append((s, pos.size, apos.size))
            got = reward(nxt, apos, (s + 1, 1)) if apos.size else apos
            return reward(ids, pos, (s, calls[0])), got

        got, carried = run_pipelined(piped, ids, budget, gen, pilot_rewards=carried, ahead=ahead)
        np.testing.assert_array_equal(got["attempts"], want[s]["attempts"])
        np.testing.assert_array_equal(got["successes"], want[s]["successes"])
        assert (carried is None) == (nxt is None)
    # step 0: a pilot call of its own, then the rest with the next pilot; later: one call
    assert sizes == [(0, 32, 0), (0, 16, 32), (1, 16, 32), (2, 16, 32), (3, 16, 0)]


class _StopsShort:
    """A planner that asks for 2 rollouts of a 4-rollout budget, then nothing more."""

    def start(self, ids, budget):
        return np.array([0, 1])

    def record(self, index, rewards):
        return np.zeros(0, np.int64)

    def finish(self):
        return {"attempts": np.array([1, 1])}


def test_pipelined_bad_carry_and_a_step_that_stops_short():
    planner = _planner(pilot=2)
    with pytest.raises(ValueError, match="pilot_rewards: 3 rewards carried for a pilot of 8"):
        run_pipelined(planner, [0, 1, 2, 3], 12, lambda a, b: (a * 0.0, b * 0.0), np.ones(3))
    seen = []

    def gen(pos, apos):
        seen.append((pos.size, apos.size))
        return np.ones(pos.size), np.full(apos.size, 0.5)

    # the step never spends its budget: the next pilot still gets generated, in a call of its own
    _, ahead = run_pipelined(_StopsShort(), [0, 1], 4, gen, None, np.arange(3))
    assert seen == [(2, 0), (0, 3)] and ahead.tolist() == [0.5] * 3
