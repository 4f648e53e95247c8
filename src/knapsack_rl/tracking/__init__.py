"""Per-prompt success-rate trackers (see :mod:`knapsack_rl.tracking.trackers`)."""

from knapsack_rl.tracking.trackers import (
    TRACKERS,
    BetaTracker,
    PaperTracker,
    Tracker,
    WindowTracker,
    binarize_rewards,
    load_tracker,
    make_tracker,
)

__all__ = [
    "TRACKERS",
    "BetaTracker",
    "PaperTracker",
    "Tracker",
    "WindowTracker",
    "binarize_rewards",
    "load_tracker",
    "make_tracker",
]


def __getattr__(name: str):
    if name == "TrackerStats":  # the old name of PromptStats
        from knapsack_rl.tracking import trackers

        return trackers.TrackerStats
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
