"""Success-rate trackers: paper numbers by hand, window, beta, persistence."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from knapsack_rl import Allocator
from knapsack_rl.allocation.stats import PromptStats
from knapsack_rl.allocation.values import fit_beta_prior
from knapsack_rl.io import InputError
from knapsack_rl.tracking import (
    BetaTracker,
    PaperTracker,
    TrackerStats,
    WindowTracker,
    binarize_rewards,
    load_tracker,
    make_tracker,
)


def visit(tracker, pid, rewards):
    tracker.update([pid] * len(rewards), rewards)


def test_binarize():
    assert binarize_rewards([-1, 0, 1, 1]).tolist() == [0, 0, 1, 1]
    assert binarize_rewards([0.0, 1.0]).tolist() == [0, 1]
    assert binarize_rewards([0.2, 0.7], threshold=0.5).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"rewards\[1\] = 0.5"):
        binarize_rewards([1, 0.5])
    with pytest.raises(ValueError, match="not finite"):
        binarize_rewards([1, float("nan")], threshold=0.5)


def test_paper_tracker_by_hand():
    t = PaperTracker()
    visit(t, "a", [1, 0, 1, 1])  # 4 observations: not valid yet (p reported as 0)
    st = t.stats(["a"])
    assert not st.valid[0] and st.p[0] == 0.0
    visit(t, "a", [0, 0, 0, 0])  # 8 observations: valid; visit < 16 -> pooled 3/8
    st = t.stats(["a"])
    assert st.valid[0] and st.p[0] == pytest.approx(3 / 8)
    visit(t, "a", [1] * 4 + [0] * 12)  # a visit of 16: its own mean
    assert t.stats(["a"]).p[0] == pytest.approx(4 / 16)
    visit(t, "a", [1] * 6)  # pooled last 16: the visit's 6 ones + the last 10 zeros before
    assert t.stats(["a"]).p[0] == pytest.approx(6 / 16)
    visit(t, "a", [-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, 1, 1])  # -1 -> 0
    assert t.stats(["a"]).p[0] == pytest.approx(10 / 18)
    st = t.stats(["a", "never"])
    assert st.valid.tolist() == [True, False] and st.p[1] == 0.0
    assert st.attempts.tolist() == [16.0, 0.0]


def test_paper_tracker_pool_and_validity_options():
    t = make_tracker("paper", pool=4, min_observations=3)
    t.update([7, 7], [1, 1])
    assert not t.stats([7]).valid[0]
    t.update([7], [0])
    st = t.stats([7])
    assert st.valid[0] and st.p[0] == pytest.approx(2 / 3)
    t.update([7, 7], [0, 0])  # last 4: 1, 0, 0, 0
    assert t.stats([7]).p[0] == pytest.approx(1 / 4)


def test_interleaved_ids_form_one_visit():
    t = PaperTracker()
    t.update(["a", "b", "a", "b", "a", "b", "a", "b"] * 2, [1, 0] * 8)
    st = t.stats(["a", "b"])
    assert st.valid.tolist() == [True, True]
    assert st.p.tolist() == [1.0, 0.0]


def test_non_binary_rewards_rejected_unless_threshold():
    t = PaperTracker()
    with pytest.raises(ValueError, match="not binary"):
        t.update(["a", "a"], [0.3, 1.0])
    t = PaperTracker(threshold=0.5)
    t.update(["a"] * 8, [0.3, 0.9] * 4)
    assert t.stats(["a"]).p[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="prompt ids"):
        t.update(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="prompt ids"):
        t.update(np.array([1, 2]), [1.0])


def test_window_tracker():
    t = WindowTracker(window=4, min_observations=2)
    assert t.stats(["x"]).p[0] == 0.5  # nothing seen yet
    t.update(["a"] * 4, [1, 1, 0, 0])
    t.update(["a"] * 2, [1, 1])  # last 4: 0, 0, 1, 1
    t.update(["b"], [1])
    st = t.stats(["a", "b", "new"])
    assert st.p[0] == pytest.approx(0.5) and st.p[1] == 1.0
    assert st.valid.tolist() == [True, False, False]
    assert st.p[2] == pytest.approx(3 / 5)  # unseen: mean over every stored reward
    assert st.successes.tolist() == [2.0, 1.0, 0.0]
    assert st.attempts.tolist() == [4.0, 1.0, 0.0]


def test_beta_tracker_discount_and_fixed_prior():
    t = BetaTracker(discount=0.5, prior=(1.0, 1.0))
    t.update(["a"] * 4, [1, 1, 1, 0])  # s = 3, f = 1
    t.update(["a"] * 2, [0, 0])  # s = 1.5, f = 0.5 + 2
    st = t.stats(["a", "unseen"])
    assert st.successes[0] == pytest.approx(1.5) and st.attempts[0] == pytest.approx(4.0)
    assert st.p[0] == pytest.approx(2.5 / 6)
    assert st.p[1] == pytest.approx(0.5) and st.valid.all()
    assert st.prior == (1.0, 1.0)


def test_beta_tracker_auto_discount_was_removed():
    with pytest.raises(ValueError, match="removed in 0.2.0"):
        BetaTracker(discount="auto")


def test_tracker_stats_alias_warns_with_its_removal_version():
    import knapsack_rl.tracking as tracking
    from knapsack_rl.allocation import PromptStats

    with pytest.warns(DeprecationWarning, match="removed in 0.3.0"):
        assert tracking.TrackerStats is PromptStats


def test_beta_tracker_empirical_bayes_prior():
    rng = np.random.default_rng(0)
    t = BetaTracker(discount=1.0)
    p = rng.beta(2, 6, 400)
    ids = np.repeat(np.arange(400), 16)
    t.update(ids, (rng.random(ids.size) < p[ids]).astype(float))
    st = t.stats([0, 1, "new"])
    a0, b0 = st.prior
    assert (a0, b0) == fit_beta_prior(t._s[:400], t._s[:400] + t._f[:400])
    assert st.p[2] == pytest.approx(a0 / (a0 + b0))  # unseen prompt: the prior mean
    assert 0.15 < st.p[2] < 0.35
    assert st.attempts[2] == 0 and st.ids == [0, 1, "new"]
    r = Allocator(method="bayes").allocate(st, budget=24)
    assert r.rollouts.sum() == 24
    # the allocator uses the tracker's prior, not one refitted to the batch
    assert r.prior == (a0, b0)
    want = Allocator(method="bayes").allocate(
        successes=st.successes, attempts=st.attempts, prior=(a0, b0), budget=24
    )
    assert np.array_equal(r.rollouts, want.rollouts)
    assert np.allclose(r.p, st.p)


def test_stats_feed_every_method():
    t = PaperTracker()
    t.update(["a"] * 8 + ["b"] * 4, [1, 0] * 4 + [1] * 4)
    st = t.stats(["a", "b"])
    assert isinstance(st, PromptStats) and TrackerStats is PromptStats
    assert st.valid.tolist() == [True, False] and st.p.tolist() == [0.5, 0.0]
    assert not hasattr(t, "allocation_inputs")  # trackers know no method names
    r = Allocator(method="paper").allocate(st, budget=16)
    # base: a 2, b (invalid) n = 8, R = 6; fallback C = floor(3.32) = 3 < 6: surplus 3 to
    # the p_hat = 0 prompts (b, invalid); the knapsack gives a the other 3
    assert r.rollouts.tolist() == [5, 11]
    # knapsack takes p only (b's p = 0 gets the minimum), bayes the counts
    k = Allocator().allocate(st, budget=16)
    assert np.array_equal(k.rollouts, Allocator().allocate(st.p, budget=16).rollouts)
    b = Allocator(method="bayes").allocate(st, budget=16)
    want = Allocator(method="bayes").allocate(
        successes=st.successes, attempts=st.attempts, budget=16
    )
    assert np.array_equal(b.rollouts, want.rollouts)


# -- test oracles: the plain per-visit updates that the vectorised ones must match
def _ring_append(buf, j, s):
    width = buf.width
    tail = s[-width:]
    buf.ring[j, (buf.head[j] + np.arange(tail.size)) % width] = tail
    buf.head[j] = (buf.head[j] + tail.size) % width
    buf.fill[j] = min(width, buf.fill[j] + tail.size)


def _record_paper(t, j, s):
    buf = t._buf
    _ring_append(buf, j, s)
    t._count[j] += s.size
    if s.size >= t.pool:
        t._p[j] = float(s.mean())
    else:
        t._p[j] = float(buf.ring[j, : buf.fill[j]].mean())  # last `pool` pooled


def _record_window(t, j, s):
    _ring_append(t._buf, j, s)


def _record_beta(t, j, s):
    k = int(s.sum())
    t._s[j] = t.discount * t._s[j] + k
    t._f[j] = t.discount * t._f[j] + (s.size - k)


_ORACLE = {PaperTracker: _record_paper, WindowTracker: _record_window, BetaTracker: _record_beta}


class _PerVisit:
    """Mixin: record visit by visit with the oracle above (the plain reference path)."""

    def _record_visits(self, dense, group, succ):
        order = np.argsort(group, kind="stable")
        ends = np.cumsum(np.bincount(group, minlength=dense.size))
        starts = ends - np.bincount(group, minlength=dense.size)
        for j, a, b in zip(dense.tolist(), starts.tolist(), ends.tolist()):
            _ORACLE[type(self).__mro__[2]](self, j, succ[order[a:b]])


@pytest.mark.parametrize(
    "cls, kw",
    [
        (PaperTracker, {}),
        (PaperTracker, {"pool": 4}),
        (WindowTracker, {"window": 5}),
        (BetaTracker, {"discount": 0.7}),
    ],
)
def test_vectorised_update_matches_per_visit(cls, kw):
    plain = type("Plain", (_PerVisit, cls), {})(**kw)
    fast_int = cls(**kw)
    fast_str = cls(**kw)
    rng = np.random.default_rng(1)
    for _ in range(40):
        ids = np.repeat(rng.integers(0, 60, 12), rng.integers(1, 30, 12))
        ids = ids[rng.permutation(ids.size)]
        rewards = rng.integers(-1, 2, ids.size).astype(float)
        plain.update(ids.astype(object), rewards)  # dict grouping, one visit at a time
        fast_int.update(ids, rewards)
        fast_str.update([str(i) for i in ids.tolist()], rewards)
    a, b, c = plain.state_dict(), fast_int.state_dict(), fast_str.state_dict()
    assert a["ids"] == b["ids"] and [str(i) for i in a["ids"]] == c["ids"]
    for k in a["arrays"]:
        assert np.array_equal(a["arrays"][k], b["arrays"][k])
        assert np.array_equal(a["arrays"][k], c["arrays"][k])


def test_many_prompts():
    t = PaperTracker()
    ids = np.repeat(np.arange(200_000), 2)
    t.update(ids, np.tile([1.0, 0.0], 200_000))
    t.update(ids, np.tile([1.0, 1.0], 200_000))
    assert len(t) == 200_000
    st = t.stats([0, 199_999])
    assert st.valid.tolist() == [False, False] and st.attempts.tolist() == [4.0, 4.0]


def _history(tracker):
    rng = np.random.default_rng(2)
    for _ in range(12):
        ids = rng.choice(50, 16, replace=False)
        pid = np.repeat(ids, rng.integers(1, 20, 16))
        tracker.update([f"p{i}" for i in pid], (rng.random(pid.size) < 0.4).astype(float))


@pytest.mark.parametrize(
    "kind, method", [("paper", "paper"), ("window", "knapsack"), ("beta", "bayes")]
)
def test_save_load_round_trip(tmp_path, kind, method):
    t = make_tracker(kind)
    _history(t)
    path = tmp_path / "state.npz"
    t.save(path)
    u = load_tracker(path)
    assert type(u) is type(t) and len(u) == len(t)
    ids = [f"p{i}" for i in range(60)]  # includes unseen ids
    s1, s2 = t.stats(ids), u.stats(ids)
    for f in ("p", "valid", "successes", "attempts"):
        assert np.array_equal(getattr(s1, f), getattr(s2, f))
    assert s1.prior == s2.prior
    alloc = Allocator(method=method)
    r1 = alloc.allocate(t.stats(ids), budget=8 * 60).rollouts
    r2 = alloc.allocate(u.stats(ids), budget=8 * 60).rollouts
    assert np.array_equal(r1, r2)
    # resuming: the same further updates keep the two identical
    for tr in (t, u):
        tr.update(["p1"] * 3 + ["p99"] * 2, [1, 0, 1, 1, 1])
    assert t.state_dict()["ids"] == u.state_dict()["ids"]
    for k, v in t.state_dict()["arrays"].items():
        assert np.array_equal(v, u.state_dict()["arrays"][k])


def test_state_dict_round_trip():
    t = make_tracker("paper", pool=8, min_observations=4, threshold=0.5)
    _history(t)
    u = make_tracker("paper", pool=8, min_observations=4, threshold=0.5)
    u.load_state_dict(t.state_dict())
    ids = [f"p{i}" for i in range(50)]
    assert np.array_equal(t.stats(ids).p, u.stats(ids).p)
    with pytest.raises(ValueError, match="tracker"):
        make_tracker("window").load_state_dict(t.state_dict())


def test_atomic_save_keeps_previous_file(tmp_path, monkeypatch):
    t = make_tracker("paper")
    t.update(["a"] * 8, [1, 0] * 4)
    path = tmp_path / "tracker.npz"
    t.save(path)
    before = path.read_bytes()
    t.update(["b"] * 8, [1] * 8)

    def broken_write(self, data):  # writes half the bytes, then the "machine dies"
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(pathlib.Path, "write_bytes", broken_write)
    with pytest.raises(OSError, match="disk full"):
        t.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracker.npz"]  # no temp left
    u = load_tracker(path)
    assert len(u) == 1 and u.stats(["a"]).p[0] == 0.5


def test_make_tracker_errors():
    with pytest.raises(ValueError, match="unknown tracker"):
        make_tracker("kalman")
    with pytest.raises(ValueError):
        BetaTracker(discount=0.0)
    with pytest.raises(ValueError):
        BetaTracker(prior=(0.0, 1.0))
    with pytest.raises(ValueError):
        PaperTracker(pool=0)


@pytest.mark.parametrize("kind", ["paper", "window", "beta"])
def test_stats_before_any_update(kind):
    st = make_tracker(kind).stats(["a", 3])
    assert st.p.shape == (2,) and st.attempts.tolist() == [0.0, 0.0]


# -------------------------------------------------------- tracker files (issue 10, item 7)
@pytest.mark.parametrize("kind", ["paper", "window", "beta"])
def test_tuple_ids_round_trip(tmp_path, kind):
    t = make_tracker(kind)
    ids = [("task", 1), ("task", 2), ("other", ("x", 3))]
    t.update([ids[0]] * 8 + [ids[1]] * 8 + [ids[2]] * 2, [1, 0] * 9)
    t.save(tmp_path / "t.npz")
    u = load_tracker(tmp_path / "t.npz")
    assert ids[0] in u and ids[2] in u
    assert np.array_equal(t.stats(ids).p, u.stats(ids).p)


def _saved(tmp_path, kind="paper"):
    t = make_tracker(kind)
    _history(t)
    path = tmp_path / "t.npz"
    t.save(path)
    return path


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, I am a text file\n", b"PK\x03\x04 truncated zip", None],
    ids=["empty", "text", "bad-zip", "truncated"],
)
def test_corrupt_tracker_file_names_the_file(tmp_path, content):
    path = _saved(tmp_path)
    if content is None:
        data = path.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(InputError, match="t.npz: not a valid tracker file") as e:
        load_tracker(path)
    assert "pickled" not in str(e.value)


def test_missing_tracker_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_tracker(tmp_path / "nope.npz")


def _rewrite(path, drop=None, change=None):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    if drop:
        del arrays[drop]
    if change:
        k, fn = change
        arrays[k] = fn(arrays[k])
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "kind, drop, change, needle",
    [
        ("paper", "count", None, "no array 'count'"),
        ("window", "ring", None, "no array 'ring'"),
        ("beta", "f", None, "no array 'f'"),
        ("beta", None, ("s", lambda a: a - 100.0), "negative"),
        ("paper", None, ("count", lambda a: -a), "negative"),
        ("window", None, ("fill", lambda a: a[:-1]), "shape"),
        ("paper", None, ("ring", lambda a: a * 3), "0 and 1"),
    ],
)
def test_inconsistent_tracker_file_rejected(tmp_path, kind, drop, change, needle):
    path = _saved(tmp_path, kind)
    _rewrite(path, drop, change)
    with pytest.raises(InputError, match=needle):
        load_tracker(path)
