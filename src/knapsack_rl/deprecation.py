"""One place for deprecation warnings: every old name warns the same way, with a removal version."""

from __future__ import annotations

import warnings

#: the release that removes everything deprecated now
REMOVAL = "0.3.0"


def deprecated(old: str, new: str, removal: str = REMOVAL, stacklevel: int = 3) -> None:
    """Warn once per call site that ``old`` is deprecated in favour of ``new`` (DeprecationWarning)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in {removal}; use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
