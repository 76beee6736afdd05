"""Prometheus metrics of the intake.

Defined once per process (the default registry refuses duplicates, and tests build many apps).
Under gunicorn with several workers set PROMETHEUS_MULTIPROC_DIR to an empty, writable directory
before start-up: every worker then writes its samples there and `/metrics` adds them up.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from handoff_worker import metrics as handoff_metrics

REQUESTS = Counter("handoff_intake_requests", "Webhook requests answered, by HTTP status", ["status"])
REJECTED = Counter("handoff_intake_rejected_requests", "Webhook requests refused, by reason", ["reason"])
REFUSED_EVENTS = Counter(
    "handoff_intake_refused_events",
    "Events of a signed batch refused one by one (unreadable field, bad id), by reason",
    ["reason"],
)
UNEXPECTED_ERRORS = Counter(
    "handoff_intake_unexpected_errors",
    "Requests answered 500 by an unexpected error, by endpoint",
    ["endpoint"],
)
EVENTS_RECEIVED = Counter("handoff_intake_events_received", "Events in accepted, well-formed requests")
EVENTS_ACCEPTED = Counter(
    "handoff_intake_events_accepted", "Events acknowledged after their work was queued (or already was)"
)
DUPLICATES = Counter("handoff_intake_duplicate_events", "Events already seen in an earlier delivery")
COALESCED = Counter(
    "handoff_intake_coalesced_events", "Events whose record already had work queued or shared a unit"
)
OWN_WRITES = Counter("handoff_intake_own_write_events", "Events caused by this app's own writes, dropped")
UNKNOWN_TYPES = Counter("handoff_intake_unknown_type_events", "Events of a type the intake does not know")
IRRELEVANT = Counter("handoff_intake_irrelevant_events", "Events that cannot start or unblock a handoff")
UNITS_ENQUEUED = Counter("handoff_intake_units_enqueued", "Units of work published, by task", ["task"])
ENQUEUE_FAILURES = Counter(
    "handoff_intake_enqueue_failures", "Requests answered 503 because Redis or the queue failed"
)
LATENCY = Histogram(
    "handoff_intake_request_seconds",
    "Time to answer a webhook request",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type: every counted metric of the process group (across
    gunicorn workers in multiprocess mode)."""
    return handoff_metrics.render()
