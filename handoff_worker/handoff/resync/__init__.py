"""Resync: find lost deals and unqualified leads that webhooks missed, and hand them off.

A sweep searches HubSpot for every deal in a closed-lost stage and every contact in the
unqualified lead status modified inside a window (window.py), walking the search so that records
modified meanwhile are neither skipped nor doubled (walk.py), and sends each through the same
idempotent handoff as a webhook would (sweep.py); records waiting for a lost reason are re-run or
escalated (waiting.py). Only one sweep runs at a time across every host (lock.py).
"""

from handoff_worker.handoff.resync.errors import ResyncError, SweepBusyError
from handoff_worker.handoff.resync.lock import LOCK_KEY, SweepLock
from handoff_worker.handoff.resync.sweep import (
    DoneCheck,
    HandoffSink,
    LedgerDoneCheck,
    NothingDone,
    ProgressCallback,
    Resync,
    ResyncRequest,
    ResyncSummary,
    WaitingRevisit,
    run_locked,
    send,
)
from handoff_worker.handoff.resync.waiting import WaitingForReason
from handoff_worker.handoff.resync.walk import (
    MODIFIED_PROPERTY,
    SEARCH_PAGE_SIZE,
    SEARCH_RESULT_CAP,
    all_lost_stage_ids,
    chunk_in_filter,
    modified_ms,
    to_ms,
    walk_modified,
)
from handoff_worker.handoff.resync.window import (
    FIRST_SWEEP_LOOKBACK,
    WATERMARK_KEY,
    parse_moment,
    read_watermark,
    scheduled_window,
    write_watermark,
)

__all__ = [
    "FIRST_SWEEP_LOOKBACK",
    "LOCK_KEY",
    "MODIFIED_PROPERTY",
    "SEARCH_PAGE_SIZE",
    "SEARCH_RESULT_CAP",
    "WATERMARK_KEY",
    "DoneCheck",
    "HandoffSink",
    "LedgerDoneCheck",
    "NothingDone",
    "ProgressCallback",
    "Resync",
    "ResyncError",
    "ResyncRequest",
    "ResyncSummary",
    "SweepBusyError",
    "SweepLock",
    "WaitingForReason",
    "WaitingRevisit",
    "all_lost_stage_ids",
    "chunk_in_filter",
    "modified_ms",
    "parse_moment",
    "read_watermark",
    "run_locked",
    "scheduled_window",
    "send",
    "to_ms",
    "walk_modified",
    "write_watermark",
]
