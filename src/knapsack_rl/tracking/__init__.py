"""Per-prompt success-rate trackers (see :mod:`knapsack_rl.tracking.trackers`)."""

from knapsack_rl.tracking.trackers import (
    TRACKERS,
    BetaTracker,
    PaperTracker,
    Tracker,
    TrackerStats,
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
    "TrackerStats",
    "WindowTracker",
    "binarize_rewards",
    "load_tracker",
    "make_tracker",
]
