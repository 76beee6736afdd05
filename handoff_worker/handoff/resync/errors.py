"""What stops a sweep."""

from __future__ import annotations

from handoff_worker.errors import HandoffError


class ResyncError(HandoffError):
    """A sweep cannot run or cannot finish correctly."""


class SweepBusyError(ResyncError):
    """Another sweep holds the lock."""
