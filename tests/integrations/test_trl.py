"""Tests of knapsack_rl.integrations.trl on a tiny offline model (CPU, no downloads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import betaln

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from knapsack_rl import allocate_round  # noqa: E402
from knapsack_rl.integrations.trl import (  # noqa: E402
    PLANNER_FILE,
    TRACKER_FILE,
    KnapsackGRPOConfig,
    KnapsackGRPOTrainer,
    _check_trl_version,
    grouped_advantages,
)
from knapsack_rl.tracking import load_tracker  # noqa: E402

torch.set_num_threads(1)
CHARS = "0123456789+-*= "


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for c in CHARS:
        vocab[c] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def make_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=3 + len(CHARS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg)


def make_dataset(n: int) -> Dataset:
    return Dataset.from_dict(
        {"prompt": [f"{i}+{i}=" for i in range(n)], "id": [f"p{i}" for i in range(n)]}
    )


class Recorder:
    """Reward: parity of the number of digits (varied, deterministic); records ids and rewards."""

    __name__ = "digit_parity"

    def __init__(self):
        self.ids: list = []
        self.rewards: list = []

    def __call__(self, prompts, completions, id, **kwargs):
        out = [float(sum(ch.isdigit() for ch in c) % 2) for c in completions]
        self.ids.extend(id)
        self.rewards.extend(out)
        return out


COMMON = dict(
    max_completion_length=6,
    report_to=[],
    use_cpu=True,
    save_strategy="no",
    learning_rate=1e-2,
    disable_tqdm=True,
    logging_steps=1,
    seed=0,
)


def knapsack_args(tmp_path, **kw) -> KnapsackGRPOConfig:
    return KnapsackGRPOConfig(output_dir=str(tmp_path / "run"), **{**COMMON, **kw})


def test_version_check():
    _check_trl_version("1.16.0")
    _check_trl_version("1.16.3.dev0")
    for bad in ("1.15.2", "1.17.0", "2.0.0"):
        with pytest.raises(ImportError, match=r"trl>=1.16,<1.17"):
            _check_trl_version(bad)


class Scaled(Recorder):
    """Recorder's reward times 10 (0 or 10): unscaled advantages pass the default clip of 5."""

    __name__ = "digit_parity_x10"

    def __call__(self, prompts, completions, id, **kwargs):
        return [10.0 * r for r in super().__call__(prompts, completions, id, **kwargs)]


SETTINGS = [  # (scale_rewards, multi_objective_aggregation, reward)
    ("group", "sum_then_normalize", Recorder),
    ("batch", "sum_then_normalize", Scaled),
    ("none", "sum_then_normalize", Scaled),
    ("group", "normalize_then_sum", Scaled),
]


@pytest.mark.parametrize("scale,aggregation,reward", SETTINGS)
def test_uniform_equals_stock_grpo(tmp_path, scale, aggregation, reward):
    """uniform with rollouts_per_prompt == num_generations and default settings: same
    advantages and loss as TRL, under every reward scaling and aggregation."""
    tok, ds = make_tokenizer(), make_dataset(4)
    kw = dict(
        per_device_train_batch_size=8,
        num_generations=4,
        max_steps=1,
        scale_rewards=scale,
        multi_objective_aggregation=aggregation,
    )
    stock = GRPOTrainer(
        model=make_model(),
        reward_funcs=reward(),
        args=GRPOConfig(output_dir=str(tmp_path / "stock"), **COMMON, **kw),
        train_dataset=ds,
        processing_class=tok,
    )
    ours = KnapsackGRPOTrainer(
        model=make_model(),
        reward_funcs=reward(),
        args=knapsack_args(tmp_path, allocation_method="uniform", rollouts_per_prompt=4, **kw),
        train_dataset=ds,
        processing_class=tok,
    )
    batch = [ds[i] for i in (0, 0, 0, 0, 1, 1, 1, 1)]  # what TRL's RepeatSampler hands over
    outs = []
    for tr in (stock, ours):
        tr.model.train()
        tr.current_gradient_accumulation_steps = 1  # set by the training loop otherwise
        torch.manual_seed(123)
        out = tr._generate_and_score_completions([dict(r) for r in batch])
        loss = tr.compute_loss(tr.model, out)
        outs.append((out, loss))
    (a, la), (b, lb) = outs
    assert torch.equal(a["completion_ids"], b["completion_ids"])  # same generations
    adv = a["advantages"]
    assert (adv != 0).any(), "fixed batch should have a group with mixed rewards"
    torch.testing.assert_close(b["advantages"], adv, rtol=0, atol=1e-6)
    torch.testing.assert_close(lb, la, rtol=1e-6, atol=1e-7)
    assert ours.allocation_history[-1]["rollouts"].tolist() == [4, 4]
    if scale == "none":
        assert adv.abs().max() > 5  # the case an always-on clip of 5 would change


def test_uniform_trains_like_stock_grpo(tmp_path):
    """Three training steps with a 0/10 reward and scale_rewards='none' (where an always-on
    advantage clip of 5 used to diverge): same losses and parameters as stock GRPOTrainer."""
    tok, ds = make_tokenizer(), make_dataset(8)
    kw = dict(per_device_train_batch_size=8, num_generations=4, max_steps=3, scale_rewards="none")
    trainers = []
    for cls, args in (
        (GRPOTrainer, GRPOConfig(output_dir=str(tmp_path / "stock"), **COMMON, **kw)),
        (KnapsackGRPOTrainer, knapsack_args(tmp_path, allocation_method="uniform", **kw)),
    ):  # built and trained one after the other: each seeds the global RNGs when built
        tr = cls(
            model=make_model(),
            reward_funcs=Scaled(),
            args=args,
            train_dataset=ds,
            processing_class=tok,
        )
        tr.train()
        trainers.append(tr)
    losses = [[h["loss"] for h in tr.state.log_history if "loss" in h] for tr in trainers]
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-7)
    for (k, v), (_, w) in zip(
        trainers[0].model.state_dict().items(), trainers[1].model.state_dict().items()
    ):
        torch.testing.assert_close(w, v, rtol=1e-5, atol=1e-6, msg=k)


def hand_advantages(rewards, sizes, clip=5.0):
    out, i = [], 0
    for n in sizes:
        g = np.asarray(rewards[i : i + n], dtype=np.float64)
        i += n
        if n < 2 or g.max() == g.min():
            out.extend([0.0] * n)
            continue
        out.extend(np.clip((g - g.mean()) / (g.std(ddof=1) + 1e-4), -clip, clip))
    return np.asarray(out)


def test_knapsack_group_sizes_and_advantages(tmp_path):
    tok, ds = make_tokenizer(), make_dataset(4)
    rec = Recorder()
    tr = KnapsackGRPOTrainer(
        model=make_model(),
        reward_funcs=rec,
        args=knapsack_args(
            tmp_path,
            per_device_train_batch_size=16,
            num_generations=4,
            max_steps=2,
            allocation_method="knapsack",
            min_rollouts=2,
            max_rollouts=10,
            tracker="window",
            tracker_kwargs={"min_observations": 1},
        ),
        train_dataset=ds,
        processing_class=tok,
    )
    # prior evidence: p0 = 0.5, p1 = 0.1, p2 = 1, p3 = 0
    ev = {"p0": [1, 0] * 5, "p1": [1] + [0] * 9, "p2": [1] * 10, "p3": [0] * 10}
    tr.tracker.update([k for k, v in ev.items() for _ in v], [x for v in ev.values() for x in v])
    expected = tr.allocate_rollouts(["p0", "p1", "p2", "p3"]).rollouts
    assert expected.sum() == 16 and len(set(expected.tolist())) > 1

    batch = [ds[i] for i in range(4) for _ in range(4)]
    tr.model.train()
    torch.manual_seed(0)
    out = tr._generate_and_score_completions(batch)
    counts = [rec.ids.count(f"p{i}") for i in range(4)]
    assert counts == expected.tolist()
    assert rec.ids == [f"p{i}" for i in range(4) for _ in range(expected[i])]  # contiguous groups
    assert out["completion_ids"].shape[0] == 16
    want = hand_advantages(rec.rewards, expected)
    np.testing.assert_allclose(out["advantages"].numpy(), want, atol=1e-5)
    assert tr._metrics["train"]["rollouts_per_prompt/max"][-1] == expected.max()
    sizes = np.asarray(expected)
    mixed = [np.ptp(g) > 0 for g in np.split(np.asarray(rec.rewards), np.cumsum(sizes)[:-1])]
    egr = sizes[np.asarray(mixed)].sum() / sizes.sum()
    assert tr._metrics["train"]["effective_gradient_ratio"][-1] == pytest.approx(egr)
    # the tracker took this step's rewards
    assert tr.tracker.stats(["p2"]).attempts[0] == min(32, 10 + expected[2])

    # a few training steps end to end
    tr.train()
    assert tr.state.global_step == 2
    hist = list(tr.allocation_history)[-2:]
    assert all(h["rollouts"].sum() == 16 for h in hist)
    assert any(len(set(h["rollouts"].tolist())) > 1 for h in hist)
    assert all(np.isfinite(x["loss"]) for x in tr.state.log_history if "loss" in x)


def test_rounds_allocates_from_pooled_priors(tmp_path):
    """allocation_method="rounds", rounds=1: one-shot from fresh priors pooled by a column; the
    planner updates the tracker and stamps prompts as seen."""
    tok = make_tokenizer()
    ds = make_dataset(4).add_column("level", [0, 0, 1, 1])
    rec = Recorder()
    tr = KnapsackGRPOTrainer(
        model=make_model(),
        reward_funcs=rec,
        args=knapsack_args(
            tmp_path,
            per_device_train_batch_size=16,
            num_generations=4,
            max_steps=1,
            allocation_method="rounds",
            rounds=1,
            oversample=1,
            prior_group_column="level",
            min_rollouts=2,
            max_rollouts=10,
            remove_unused_columns=False,
        ),
        train_dataset=ds,
        processing_class=tok,
    )
    # history: level 0 prompts solved about half the time, level 1 never
    seen = {f"q{i}": (i < 10) for i in range(20)}
    tr.planner.priors.set_groups(list(seen), [0 if v else 1 for v in seen.values()])
    for pid, easy in seen.items():
        tr.tracker.update([pid] * 8, [1, 0] * 4 if easy else [0] * 8)
    rows = [ds[i] for i in range(4)]
    alloc = tr.allocate_rollouts(["p0", "p1", "p2", "p3"], rows)
    assert alloc.rollouts.sum() == 16 and alloc.method == "rounds"
    assert alloc.p[0] > 0.3 and alloc.p[2] < 0.2  # unseen prompts get their level's pool
    assert alloc.rollouts[0] > alloc.rollouts[2]  # a pool that never succeeded is worth little
    tr.planner.finish()
    batch = [ds[i] for i in range(4) for _ in range(4)]
    tr.model.train()
    tr._generate_and_score_completions(batch)
    assert tr.tracker.stats(["p0"]).attempts[0] > 0  # updated through the planner
    assert tr.planner.step == 2
    with pytest.raises(ValueError, match="value"):
        knapsack_args(
            tmp_path,
            allocation_method="rounds",
            value="nope",
            num_generations=4,
            per_device_train_batch_size=16,
        )


class ByPrompt:
    """Reward by prompt id: p0-p3 alternate 1, 0, 1, ... (every pilot of 2 is mixed), p4 and
    p5 always 1, p6 and p7 always 0. Records every scored row's id."""

    __name__ = "by_prompt"

    def __init__(self):
        self.ids: list = []
        self.rewards: list = []
        self.calls = 0
        self._next: dict = {}

    def __call__(self, prompts, completions, id, **kwargs):
        self.calls += 1
        out = []
        for pid in id:
            i = int(pid[1:])
            if i < 4:
                out.append(float(self._next.get(pid, 1)))
                self._next[pid] = 1 - self._next.get(pid, 1)
            else:
                out.append(1.0 if i < 6 else 0.0)
        self.ids.extend(id)
        self.rewards.extend(out)
        return out


def rounds_trainer(tmp_path, reward, **kw) -> KnapsackGRPOTrainer:
    """8 prompts, num_generations 8, 32 rollouts a step: uniform would draw 4 prompts x 8;
    rounds (oversample 2) draws 8, pilots each with 2, plans the other 16."""
    args = dict(per_device_train_batch_size=32, num_generations=8, max_steps=2)
    return KnapsackGRPOTrainer(
        model=make_model(),
        reward_funcs=reward,
        args=knapsack_args(tmp_path, allocation_method="rounds", max_rollouts=16, **{**args, **kw}),
        train_dataset=make_dataset(8),
        processing_class=make_tokenizer(),
    )


def test_rounds_pilot_then_planned_rest(tmp_path):
    """rounds=2 in TRL: a pilot of 2 on twice the prompts, the rest planned from the pilot's
    rewards; every row scored once; advantages over each prompt's whole group."""
    reward = ByPrompt()
    tr = rounds_trainer(tmp_path, reward, value="paper")
    assert tr.args.step_prompts == 8 and tr.planner.rounds == 2
    batch = [tr.train_dataset[i] for i in range(8) for _ in range(4)]  # the sampler's layout
    tr.model.train()
    out = tr._generate_and_score_completions(batch)
    (h,) = tr.allocation_history
    pilot, rollouts = h["pilot"], h["rollouts"]
    assert pilot.tolist() == [2] * 8
    assert rollouts.sum() == 32 and rollouts.min() >= 2
    rest = rollouts - pilot
    # the rest is allocate_round on the pilot's draws: paper's value breaks the ties
    plan = allocate_round(
        np.array([1, 1, 1, 1, 2, 2, 0, 0]),
        np.full(8, 2),
        budget=16,
        prior_a=tr.planner.prior_a,
        prior_b=tr.planner.prior_b,
        min_rollouts=2,
        max_rollouts=16,
        value="paper",
    )
    assert rest.tolist() == plan.tolist() and rest[4:].sum() == 16
    # every row is scored exactly once: the pilot's 16, then the planned 16
    assert reward.calls == 2 and len(reward.ids) == 32
    assert reward.ids[:16] == [f"p{i}" for i in range(8) for _ in range(2)]
    assert reward.ids[16:] == [f"p{i}" for i in range(8) for _ in range(rest[i])]
    assert out["completion_ids"].shape[0] == 32 and out["advantages"].shape[0] == 32
    # advantages: each row against its prompt's whole group, from both rounds
    rewards = np.asarray(
        [1.0 if int(x[1:]) in (4, 5) else 0.0 for x in reward.ids], dtype=np.float64
    )
    nxt = {}
    for j, pid in enumerate(reward.ids):
        if int(pid[1:]) < 4:
            rewards[j] = nxt.get(pid, 1)
            nxt[pid] = 1 - nxt.get(pid, 1)
    group = np.asarray([int(x[1:]) for x in reward.ids])
    order = np.argsort(group, kind="stable")
    expected = np.empty(32)
    expected[order] = hand_advantages(rewards[order], rollouts)
    np.testing.assert_allclose(out["advantages"].numpy(), expected, atol=1e-5)
    # the history keeps each group's successes, in all and in the pilot
    np.testing.assert_allclose(h["successes"], np.bincount(group, weights=rewards, minlength=8))
    np.testing.assert_allclose(
        h["pilot_successes"], np.bincount(group[:16], weights=rewards[:16], minlength=8)
    )
    a, b = tr.planner.prior_a, tr.planner.prior_b  # and the prior mean the plan started from
    np.testing.assert_allclose(h["prior_mean"], np.round(a / (a + b), 4))
    # the tracker saw every rollout once
    st = tr.tracker.stats([f"p{i}" for i in range(8)])
    np.testing.assert_allclose(st.attempts, rollouts)
    assert tr.planner.step == 1 and tr._pilot is None
    assert tr.last_allocation.rollouts.tolist() == rollouts.tolist()
    # logged: p4, p5 tie all correct, p6, p7 all wrong; the share of the rest they got
    logged = tr._metrics["train"]
    assert logged["rounds/pilot_all_correct"][-1] == 0.25
    assert logged["rounds/pilot_all_wrong"][-1] == 0.25
    assert logged["rounds/rest_to_tied"][-1] == rest[4:].sum() / 16
    # p4, p5 (all correct) and p6, p7 (all wrong) never break their ties here
    assert logged["rounds/tie_break_realized"][-1] == 0.0
    a, b = tr.planner.prior_a[4:], tr.planner.prior_b[4:]
    m, k = rest[4:], np.array([2, 2, 0, 0])
    stay = np.where(k == 2, betaln(a + k + m, b), betaln(a, b + 2 + m)) - betaln(a + k, b + 2 - k)
    assert logged["rounds/tie_break_predicted"][-1] == pytest.approx(np.mean(1 - np.exp(stay)))


def test_history_counts_successes_not_reward_sums(tmp_path):
    """A reward of 0 or 3 (success: >= 0.5): the history and the pilot metrics count
    successes, as the tracker does, not sums of rewards."""
    base = ByPrompt()

    def scaled(prompts, completions, id, **kw):
        return [3.0 * x for x in base(prompts, completions, id, **kw)]

    tr = rounds_trainer(tmp_path, scaled, value="paper")
    batch = [tr.train_dataset[i] for i in range(8) for _ in range(4)]
    tr.model.train()
    tr._generate_and_score_completions(batch)
    (h,) = tr.allocation_history
    assert np.all(h["successes"] <= h["rollouts"]) and np.all(h["pilot_successes"] <= h["pilot"])
    np.testing.assert_array_equal(h["successes"][4:], [h["rollouts"][4], h["rollouts"][5], 0, 0])
    assert tr._metrics["train"]["rounds/pilot_all_correct"][-1] == 0.25


def test_methods_trl_cannot_run_say_why(tmp_path):
    base = dict(per_device_train_batch_size=32, num_generations=8)
    for method in ("stream", "pipelined"):  # the reference trainer's, not TRL's
        with pytest.raises(ValueError, match=f"allocation_method='{method}' needs a generation"):
            knapsack_args(tmp_path, **base, allocation_method=method)


def test_retired_settings_fail_in_the_config(tmp_path):
    base = dict(allocation_method="rounds", per_device_train_batch_size=32, num_generations=8)
    with pytest.raises(ValueError, match="discount='auto' was removed"):
        knapsack_args(tmp_path, **base, tracker_kwargs={"discount": "auto"})
    with pytest.raises(ValueError, match="'coba' was removed in 0.2.0"):
        knapsack_args(tmp_path, **base, value="coba")


@pytest.mark.parametrize("steps_per_generation", [1, 2])
def test_rounds_trains(tmp_path, steps_per_generation):
    """Real training with rounds=2: each generation step draws 8 prompts and spends 32
    rollouts; with steps_per_generation=2 one generation feeds two optimizer steps."""
    reward = ByPrompt()
    s = steps_per_generation
    kw = dict(per_device_train_batch_size=32 // s, steps_per_generation=s, max_steps=2 * s)
    tr = rounds_trainer(tmp_path, reward, **kw)
    tr.train()
    assert tr.state.global_step == 2 * s and len(tr.allocation_history) == 2
    for h in tr.allocation_history:
        assert len(set(h["prompt_ids"])) == 8 and h["rollouts"].sum() == 32
        assert h["pilot"].sum() == 16
    assert len(reward.ids) == 64  # 32 rows per step, each scored once
    assert all(np.isfinite(x["loss"]) for x in tr.state.log_history if "loss" in x)
    assert any("effective_gradient_ratio" in x for x in tr.state.log_history)


def test_rounds_config_errors(tmp_path):
    base = dict(allocation_method="rounds", per_device_train_batch_size=32, num_generations=8)
    with pytest.raises(ValueError, match="pilot"):
        knapsack_args(tmp_path, **base, pilot=4)  # 4 per prompt on average: nothing left
    with pytest.raises(ValueError, match="oversample"):
        knapsack_args(tmp_path, **base, oversample=3)
    with pytest.raises(ValueError, match="rounds"):
        knapsack_args(tmp_path, **base, rounds=3)
    with pytest.raises(ValueError, match="oversample must be a positive integer"):
        knapsack_args(tmp_path, **base, oversample=0)
    # one-shot methods ignore the rounds settings
    assert (
        knapsack_args(tmp_path, per_device_train_batch_size=32, num_generations=8).step_prompts == 4
    )


@pytest.mark.parametrize("iterable", [False, True])
def test_rollouts_per_prompt_sets_prompts_per_step(tmp_path, iterable):
    """rollouts_per_prompt=2 with num_generations=4: 4 prompts share a step's 8 rollouts."""
    tok, ds = make_tokenizer(), make_dataset(8)
    if iterable:
        ds = ds.to_iterable_dataset()
    tr = KnapsackGRPOTrainer(
        model=make_model(),
        reward_funcs=Recorder(),
        args=knapsack_args(
            tmp_path,
            per_device_train_batch_size=8,
            num_generations=4,
            rollouts_per_prompt=2,
            min_rollouts=1,
            max_rollouts=4,
            max_steps=1,
        ),
        train_dataset=ds,
        processing_class=tok,
    )
    tr.train()
    (h,) = tr.allocation_history
    assert len(h["prompt_ids"]) == 4 and len(set(h["prompt_ids"])) == 4
    assert h["rollouts"].sum() == 8


def test_config_from_command_line(tmp_path):
    from transformers import HfArgumentParser

    (cfg,) = HfArgumentParser(KnapsackGRPOConfig).parse_args_into_dataclasses(
        [
            "--output_dir", str(tmp_path), "--use_cpu", "true",
            "--per_device_train_batch_size", "8", "--num_generations", "4",
            "--allocation_method", "paper", "--tracker", "paper",
            "--tracker_kwargs", '{"pool": 8}', "--advantage_clip", "3",
        ]
    )  # fmt: skip
    assert cfg.allocation_method == "paper" and cfg.tracker_kwargs == {"pool": 8}
    assert cfg.advantage_clip == 3.0 and cfg.rollouts_per_prompt == 4
    assert cfg.make_tracker().pool == 8


def test_grouped_advantages_normalize_then_sum_matches_trl_layout():
    torch.manual_seed(0)
    rpf = torch.randint(0, 2, (12, 2)).float()
    w = torch.tensor([1.0, 0.5])
    ours = grouped_advantages(rpf, w, [4, 4, 4], multi_objective_aggregation="normalize_then_sum")
    # TRL's formula with view(-1, 4)
    from trl.trainer.utils import nanstd

    g = rpf.view(-1, 4, 2)
    rk = ((g - g.nanmean(1, keepdim=True)) / (nanstd(g, dim=1, keepdim=True) + 1e-4)).view(-1, 2)
    r = (rk * w).nansum(1)
    ref = torch.nan_to_num((r - r.nanmean()) / (nanstd(r) + 1e-4))
    torch.testing.assert_close(ours, ref)
    lone = grouped_advantages(torch.tensor([[1.0], [0.0], [1.0]]), torch.ones(1), [1, 2])
    assert lone[0] == 0 and lone[1] < 0 < lone[2]


def test_checkpoint_resume_restores_tracker(tmp_path):
    tok, ds = make_tokenizer(), make_dataset(8)  # 2 prompts a step: resume mid-epoch, same prompts
    kw = dict(
        per_device_train_batch_size=8,
        num_generations=4,
        max_steps=3,
        save_strategy="steps",
        save_steps=2,
        allocation_method="knapsack",
        max_rollouts=6,
        tracker="window",
        tracker_kwargs={"min_observations": 1},
    )
    ids = [f"p{i}" for i in range(8)]

    def trainer(evidence):
        tr = KnapsackGRPOTrainer(
            model=make_model(),
            reward_funcs=Recorder(),
            args=knapsack_args(tmp_path, **kw),
            train_dataset=ds,
            processing_class=tok,
        )
        tr.tracker.update([i for i in ids for _ in range(10)], np.concatenate(evidence))
        return tr

    rng = np.random.default_rng(0)
    a = trainer([(rng.random(10) < q).astype(float) for q in np.linspace(0.05, 0.95, 8)])
    a.train()
    ckpt = tmp_path / "run" / "checkpoint-2"
    saved = load_tracker(ckpt / TRACKER_FILE)

    b = trainer([np.zeros(10)] * 8)  # different evidence: only the checkpoint can make b match a
    seen = []
    orig = b.allocate_rollouts

    def spy(prompt_ids):
        if not seen:  # tracker state at the first generation after resuming
            seen.append(b.tracker.state_dict())
        return orig(prompt_ids)

    b.allocate_rollouts = spy
    b.train(resume_from_checkpoint=str(ckpt))
    st = seen[0]
    assert st["ids"] == saved.state_dict()["ids"]
    for k, v in saved.state_dict()["arrays"].items():
        np.testing.assert_array_equal(st["arrays"][k], v)
    ha, hb = list(a.allocation_history), list(b.allocation_history)
    assert len(ha) == 3 and len(hb) == 1
    assert ha[2]["prompt_ids"] == hb[0]["prompt_ids"]
    assert ha[2]["rollouts"].tolist() == hb[0]["rollouts"].tolist()
    assert ha[2]["rollouts"].tolist() != [4, 4]  # not trivially uniform

    c = KnapsackGRPOTrainer(
        model=make_model(),
        reward_funcs=Recorder(),
        args=knapsack_args(tmp_path, **{**kw, "tracker": "beta", "tracker_kwargs": None}),
        train_dataset=ds,
        processing_class=tok,
    )
    with pytest.raises(ValueError, match="'window' tracker but the config asks for tracker='beta'"):
        c.load_tracker_from_checkpoint(str(ckpt))
    (tmp_path / "stock-ckpt").mkdir()
    with pytest.warns(UserWarning, match="fresh 'beta' tracker"):
        c.load_tracker_from_checkpoint(str(tmp_path / "stock-ckpt"))


def test_rounds_checkpoint_restores_planner(tmp_path):
    """rounds: the planner's priors and step are saved with the tracker and restored on resume,
    and the planner uses the restored tracker."""
    kw = dict(save_strategy="steps", save_steps=2, max_steps=3, prior_group_column="id")
    a = rounds_trainer(tmp_path, Recorder(), remove_unused_columns=False, **kw)
    a.train()
    ckpt = tmp_path / "run" / "checkpoint-2"
    saved = json.loads((ckpt / PLANNER_FILE).read_text())
    assert saved["step"] == 2

    b = rounds_trainer(tmp_path, Recorder(), remove_unused_columns=False, **kw)
    seen = []
    orig = b._pilot_round

    def spy(rows, prompt_ids, k):
        if not seen:  # planner state at the first generation after resuming
            seen.append((b.planner.step, b.planner.tracker is b.tracker, b.planner.state_dict()))
        return orig(rows, prompt_ids, k)

    b._pilot_round = spy
    b.train(resume_from_checkpoint=str(ckpt))
    step, same, state = seen[0]
    assert step == 2 and same
    assert json.loads(json.dumps(state)) == saved
    assert b.tracker.stats(["p0"]).attempts[0] > 0  # the checkpoint's evidence, then step 3's


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="multiple of rollouts_per_prompt"):
        knapsack_args(
            tmp_path, per_device_train_batch_size=8, num_generations=4, rollouts_per_prompt=3
        )
    with pytest.raises(ValueError, match="per-prompt budget cannot be met"):
        knapsack_args(tmp_path, per_device_train_batch_size=8, num_generations=4, min_rollouts=8)
    with pytest.raises(ValueError, match="allocation_method"):
        knapsack_args(
            tmp_path, per_device_train_batch_size=8, num_generations=4, allocation_method="x"
        )
    with pytest.raises(ValueError, match="tracker_kwargs"):
        knapsack_args(
            tmp_path, per_device_train_batch_size=8, num_generations=4, tracker_kwargs={"bad": 1}
        )
    with pytest.raises(ValueError, match="tracker_kwargs: not valid JSON"):
        knapsack_args(
            tmp_path, per_device_train_batch_size=8, num_generations=4, tracker_kwargs="{"
        )
    tok, ds = make_tokenizer(), make_dataset(4)
    with pytest.raises(TypeError, match="KnapsackGRPOConfig"):
        KnapsackGRPOTrainer(
            model=make_model(),
            reward_funcs=Recorder(),
            args=GRPOConfig(
                output_dir=str(tmp_path / "g"),
                per_device_train_batch_size=8,
                num_generations=4,
                use_cpu=True,
            ),
            train_dataset=ds,
            processing_class=tok,
        )
    with pytest.raises(ValueError, match="success_reward 'nope'"):
        KnapsackGRPOTrainer(
            model=make_model(),
            reward_funcs=Recorder(),
            args=knapsack_args(
                tmp_path, per_device_train_batch_size=8, num_generations=4, success_reward="nope"
            ),
            train_dataset=ds,
            processing_class=tok,
        )


def test_example_script_tiny(tmp_path, capsys):
    """examples/trl_arithmetic.py end to end with its random tiny model."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "trl_arithmetic.py"
    spec = importlib.util.spec_from_file_location("trl_arithmetic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "ex"
    argv = ["--tiny", "--steps", "2", "--eval-size", "6", "--output-dir", str(out)]
    assert mod.main(argv) == 0
    lines = (out / "allocations.jsonl").read_text().splitlines()
    assert len(lines) == 2 and sum(json.loads(lines[0])["rollouts"]) == 32
    for rec in map(json.loads, lines):  # one group per distinct prompt, within the bounds
        ids, n = rec["prompt_ids"], rec["rollouts"]
        assert len(set(ids)) == len(ids) == len(n) and sum(n) == 32 and min(n) >= 2
    assert json.loads((out / "config.json").read_text())["allocation_method"] == "knapsack"
    assert "greedy accuracy" in capsys.readouterr().out
    # rounds: 8 prompts a step, a pilot of 2 each, then 16 planned rollouts
    assert mod.main([*argv, "--method", "rounds", "--output-dir", str(tmp_path / "r")]) == 0
    for rec in map(json.loads, (tmp_path / "r" / "allocations.jsonl").read_text().splitlines()):
        assert (
            len(rec["prompt_ids"]) == 8 and rec["pilot"] == [2] * 8 and sum(rec["rollouts"]) == 32
        )
    # --oversample 1: rounds on the uniform step's own 4 prompts
    argv1 = [*argv, "--method", "rounds", "--oversample", "1", "--output-dir", str(tmp_path / "o")]
    assert mod.main(argv1) == 0
    rec = json.loads((tmp_path / "o" / "allocations.jsonl").read_text().splitlines()[0])
    assert len(rec["prompt_ids"]) == 4 and sum(rec["rollouts"]) == 32
    # a setting that cannot work: one line naming it, exit 2, before the model loads
    capsys.readouterr()
    assert mod.main(["--tiny", "--method", "rounds", "--prompts", "8", "--rollouts", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trl_arithmetic: error:") and "pilot" in err and "Traceback" not in err


def _two_process_main(output_dir: str) -> None:
    """Body of test_two_processes_cpu, run under torchrun (2 CPU processes, gloo)."""
    from accelerate.utils import gather_object

    tok, ds = make_tokenizer(), make_dataset(4)
    rec = Recorder()
    tr = KnapsackGRPOTrainer(
        model=make_model(),
        reward_funcs=rec,
        args=KnapsackGRPOConfig(
            output_dir=output_dir,
            **{**COMMON, "learning_rate": 1e-2},
            per_device_train_batch_size=8,  # 16 rows over 2 processes: 4 prompts x 4
            num_generations=4,
            max_steps=2,
            min_rollouts=2,
            max_rollouts=10,
            tracker="window",
            tracker_kwargs={"min_observations": 1},
        ),
        train_dataset=ds,
        processing_class=tok,
    )
    acc = tr.accelerator
    assert acc.num_processes == 2, acc.num_processes
    ev = {"p0": [1, 0] * 5, "p1": [1] + [0] * 9, "p2": [1] * 10, "p3": [0] * 10}
    tr.tracker.update([k for k, v in ev.items() for _ in v], [x for v in ev.values() for x in v])
    expected = tr.allocate_rollouts(["p0", "p1", "p2", "p3"]).rollouts
    assert expected[0] + expected[1] > 8  # a group spans the two processes
    batch = [ds[i] for i in range(4) for _ in range(4)]
    tr.model.train()
    torch.manual_seed(acc.process_index)
    out = tr._generate_and_score_completions(
        batch[acc.process_index * 8 : (acc.process_index + 1) * 8]
    )
    assert out["advantages"].shape[0] == 8
    ids, rewards = gather_object(rec.ids), gather_object(rec.rewards)
    adv = gather_object(out["advantages"].tolist())
    allocs = gather_object([tr.allocation_history[-1]["rollouts"].tolist()])
    assert allocs[0] == allocs[1] == expected.tolist()
    assert ids == [f"p{i}" for i in range(4) for _ in range(expected[i])]
    np.testing.assert_allclose(adv, hand_advantages(rewards, expected), atol=1e-5)
    tr.train()
    hists = gather_object([[h["rollouts"].tolist() for h in tr.allocation_history]])
    fills = gather_object([tr.tracker.state_dict()["arrays"]["fill"].tolist()])
    assert hists[0] == hists[1] and fills[0] == fills[1]  # same allocations and trackers

    # rounds=2: each process generates half the pilot, then half the planned rest
    reward = ByPrompt()
    tr = KnapsackGRPOTrainer(
        model=make_model(),
        reward_funcs=reward,
        args=KnapsackGRPOConfig(
            output_dir=output_dir + "-rounds",
            **COMMON,
            per_device_train_batch_size=16,  # 32 rows over 2 processes
            num_generations=8,
            max_steps=2,
            allocation_method="rounds",
            value="paper",
            max_rollouts=16,
        ),
        train_dataset=make_dataset(8),
        processing_class=tok,
    )
    batch = [tr.train_dataset[i] for i in range(8) for _ in range(4)]
    tr.model.train()
    out = tr._generate_and_score_completions(
        batch[acc.process_index * 16 : (acc.process_index + 1) * 16]
    )
    h = tr.allocation_history[-1]
    hist = gather_object([[h["pilot"].tolist(), h["rollouts"].tolist()]])
    assert hist[0] == hist[1] and hist[0][0] == [2] * 8  # same plan on both ranks
    rollouts = h["rollouts"]
    assert reward.calls == 2 and len(reward.ids) == 16  # each row scored once, 16 per process
    ids, rewards = gather_object(reward.ids), gather_object(reward.rewards)
    group = np.asarray([int(x[1:]) for x in ids])
    assert np.bincount(group, minlength=8).tolist() == rollouts.tolist()
    order = np.argsort(group, kind="stable")
    expected_adv = np.empty(32)
    expected_adv[order] = hand_advantages(np.asarray(rewards)[order], rollouts)
    np.testing.assert_allclose(gather_object(out["advantages"].tolist()), expected_adv, atol=1e-5)
    tr.train()
    hists = gather_object([[h["rollouts"].tolist() for h in tr.allocation_history]])
    assert hists[0] == hists[1] and len(hists[0]) == 3
    if acc.is_main_process:
        print("MULTIPROCESS OK", expected.tolist(), rollouts.tolist())


@pytest.mark.slow
def test_two_processes_cpu(tmp_path):
    """2 CPU processes (torchrun, gloo): groups span processes, allocations agree, training runs."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*cmd, __file__, str(tmp_path / "mp")], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MULTIPROCESS OK" in proc.stdout


if __name__ == "__main__":
    _two_process_main(sys.argv[1])
