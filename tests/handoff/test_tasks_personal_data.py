"""No email or name leaves HubSpot through us: a failed enrollment, everything it writes, grepped.

The legacy enrollment is keyed by email (`/automation/v2/workflows/{id}/enrollments/contacts/{email}`)
and urllib3 puts the URL in its error text, so a connection that fails during enrollment is the
likeliest way for an address to reach the audit, the logs, the retry lines and the dead letter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from worker_support import Worker

from handoff_worker.celery_app import TASK_HANDOFF_DEAL
from handoff_worker.domain.models import RecordKind
from handoff_worker.handoff.audit import recent_audits
from handoff_worker.handoff.deadletter import get_failure
from handoff_worker.handoff.workflow_ids import workflow_id_key
from handoff_worker.settings import Settings
from handoff_worker.tasks import MAX_RETRIES
from handoff_worker.testing import free_port, wait_until

pytestmark = pytest.mark.slow

# Deal 2001's contacts in the sandbox's default seed.
PEOPLE = {
    "3001": ("dana.lee@acme.example", "Dana", "Lee"),
    "3002": ("sam.ortiz@acme.example", "Sam", "Ortiz"),
}


def personal_data_patterns() -> list[re.Pattern[str]]:
    patterns = []
    for email, first, last in PEOPLE.values():
        local, domain = email.split("@")
        # As written, percent-encoded in a URL, or split around an encoded "@".
        patterns.append(re.compile(rf"{re.escape(local)}(@|%40|%2540)", re.IGNORECASE))
        patterns.append(re.compile(re.escape(domain), re.IGNORECASE))
        patterns.append(re.compile(rf"\b{first}\b|\b{last}\b"))
    return patterns


def everything_in_redis(client: redis.Redis) -> Iterator[str]:
    """Every key and every value of the test's database, as text (`repr` of what is not text)."""
    reader: Any = client  # decode_responses=True: redis-py's hints cannot say str rather than bytes
    for key in reader.scan_iter(count=1000):
        yield str(key)
        kind = reader.type(key)
        values: Any
        if kind == "string":
            values = [reader.get(key)]
        elif kind == "hash":
            values = [f"{k}={v}" for k, v in reader.hgetall(key).items()]
        elif kind == "list":
            values = reader.lrange(key, 0, -1)
        elif kind == "set":
            values = reader.smembers(key)
        elif kind == "zset":
            values = [member for member, _ in reader.zrange(key, 0, -1, withscores=True)]
        else:
            values = [repr(item) for item in reader.xrange(key)] if kind == "stream" else []
        yield from (v if isinstance(v, str) else repr(v) for v in values)


def leaks(texts: list[str]) -> list[str]:
    found = []
    for text in texts:
        for pattern in personal_data_patterns():
            match = pattern.search(text)
            if match:
                start = max(match.start() - 80, 0)
                found.append(text[start : match.end() + 40])
    return found


def test_a_failed_enrollment_writes_no_email_or_name_anywhere(
    hub: Any,
    settings_for: Callable[..., Settings],
    tmp_path: Path,
    queue: Celery,
    redis_conn: redis.Redis,
) -> None:
    hub.control.lose_deal("2001", "Pricing")
    # A running worker has the workflow ids mapped already (handoff/workflow_ids.py), so the first
    # request through the proxy is the enrollment itself.
    for workflow_id in ("5102", "5104", "5999"):  # every workflow of the test rules
        redis_conn.set(workflow_id_key(workflow_id), workflow_id)
    # The enrollment goes through an HTTP proxy on a closed port (the SDK's CRM reads ignore proxy
    # settings and succeed): urllib3's error names the request's URL, which holds the email.
    closed = f"http://127.0.0.1:{free_port()}"
    proxy = {"HTTP_PROXY": closed, "http_proxy": closed, "NO_PROXY": None, "no_proxy": None}
    worker = Worker(settings_for(), tmp_path / "worker.log", env=proxy)
    try:
        # A last attempt (the dead letter), then a first one (retried later: the retry line); one
        # after the other, as two at once would meet on the deal's lock.
        queue.send_task(
            TASK_HANDOFF_DEAL, kwargs={"deal_id": "2001", "trigger": "resync"}, retries=MAX_RETRIES
        )
        wait_until(
            lambda: get_failure(redis_conn, RecordKind.DEAL, "2001") is not None,
            timeout=60,
            what="the dead letter",
        )
        queue.send_task(TASK_HANDOFF_DEAL, kwargs={"deal_id": "2001", "trigger": "webhook"})
        wait_until(lambda: "Retry in" in worker.output(), timeout=60, what="a retry line")
    finally:
        worker.stop()

    failure = get_failure(redis_conn, RecordKind.DEAL, "2001")
    assert failure is not None
    # The failure is described, so the test looks at real error text.
    assert "enroll contact in workflow 5102" in failure.error
    assert "HUBSPOT_BASE_URL" in failure.error
    audits = recent_audits(redis_conn)
    assert any(a["outcome"] == "error" and a["errors"] for a in audits)

    written = [worker.output(), *everything_in_redis(redis_conn)]
    assert leaks(written) == []
