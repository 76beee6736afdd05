"""Webhook intake throughput: gunicorn as the Procfile runs it, hit with signed 100-event batches.

    .venv/bin/python bench/ingest.py [--seconds 5] [--levels 1,4,10,16,32] [--workers 2]
        [--redis redis://127.0.0.1:6379/13] [--max-rate 60000]

For each concurrency level: flush the bench Redis database, build and sign the batches up front
(so the generator, which shares the machine, only sends; its CPU is reported), fire them over
keep-alive connections for a fixed time, then
report events/s acknowledged, p50/p99 acknowledgement latency, and the loss check: every relevant
event acknowledged with 204 must have its dedupe key in Redis, and every deal mentioned must have
a queued unit of work. The Redis database given is FLUSHED.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from handoff_worker.celery_app import HANDOFF_QUEUE, queue_key
from handoff_worker.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0000"
PUBLIC_URL = "https://bench.example.com/webhooks/hubspot"
EVENTS_PER_BATCH = 100
DEALS = 2000  # each batch talks about random deals from this pool


@dataclass
class LevelResult:
    concurrency: int
    seconds: float
    batches: int = 0
    events: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    deals: set[str] = field(default_factory=set)
    exhausted: bool = False  # the pre-signed batches ran out before the time was up
    wall: float = 0.0
    generator_cpu: float = 0.0  # CPU seconds of this process (the load generator)
    server_cpu: float = 0.0  # CPU seconds of gunicorn's master and workers


def sign(body: bytes, timestamp: str) -> str:
    # Written out here rather than imported, so the benchmark does not trust the code it measures.
    message = b"POST" + PUBLIC_URL.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest()).decode()


def start_gunicorn(port: int, redis_url: str, workers: int) -> subprocess.Popen[bytes]:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn), "handoff_worker.wsgi:app", "-c", "handoff_worker/gunicorn_conf.py"]
    return start_web(command, port, redis_url, workers, timeout=20.0)


def start_web(
    command: list[str],
    port: int,
    redis_url: str,
    workers: int,
    *,
    timeout: float,
    stderr: int | None = None,
) -> subprocess.Popen[bytes]:
    """The web process `command` on `port` with `workers` workers, once it answers /healthz."""
    env = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "REDIS_URL": redis_url,
        "HUBSPOT_CLIENT_SECRET": SECRET,
        "HUBSPOT_APP_ID": "1",
        "WEBHOOK_PUBLIC_URL": PUBLIC_URL,
        "HANDOFF_CONFIG": str(ROOT / "config" / "nurture.yaml"),
        "LOG_LEVEL": "WARNING",  # one INFO line per request would measure the terminal instead
    }
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the web process did not answer /healthz within {timeout:g} s")


@dataclass(frozen=True)
class SignedBatch:
    body: bytes
    headers: dict[str, str]
    deal_ids: tuple[str, ...]


def signed_batches(count: int, ids: itertools.count) -> list[SignedBatch]:
    """Build and sign every request before the clock starts, so the generator only sends."""
    rng = random.Random()
    timestamp = str(int(time.time() * 1000))  # valid for 5 minutes, far longer than a level
    batches = []
    for _ in range(count):
        deal_ids = tuple(str(rng.randrange(DEALS) + 1) for _ in range(EVENTS_PER_BATCH))
        events = [
            {
                "eventId": next(ids),
                "portalId": 1,
                "occurredAt": int(timestamp),
                "subscriptionType": "deal.propertyChange",
                "attemptNumber": 0,
                "objectId": int(deal_id),
                "propertyName": "dealstage",
                "propertyValue": "closedlost",
                "changeSource": "CRM_UI",
            }
            for deal_id in deal_ids
        ]
        body = json.dumps(events).encode()
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign(body, timestamp),
            "X-HubSpot-Request-Timestamp": timestamp,
        }
        batches.append(SignedBatch(body, headers, deal_ids))
    return batches


def client_loop(
    port: int,
    stop_at: float,
    result: LevelResult,
    lock: threading.Lock,
    batches: Iterator[SignedBatch],
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies: list[float] = []
    events_ok = sent = errors = 0
    deals: set[str] = set()
    # next() on a shared list iterator is atomic under the GIL: every batch is sent once.
    for batch in batches:
        if time.monotonic() >= stop_at:
            break
        started = time.perf_counter()
        try:
            conn.request("POST", "/webhooks/hubspot", body=batch.body, headers=batch.headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except OSError:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status = 0
        latencies.append(time.perf_counter() - started)
        sent += 1
        if status == 204:
            events_ok += EVENTS_PER_BATCH
            deals.update(batch.deal_ids)
        else:
            errors += 1
    else:
        result.exhausted = True
    conn.close()
    with lock:
        result.latencies.extend(latencies)
        result.events += events_ok
        result.batches += sent
        result.errors += errors
        result.deals |= deals


def process_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def server_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [master, *(int(pid) for pid in children.read_text().split())]


def run_level(
    port: int, concurrency: int, seconds: float, batches: list[SignedBatch], server: int
) -> LevelResult:
    result = LevelResult(concurrency, seconds)
    lock = threading.Lock()
    shared = iter(batches)
    threads = [
        threading.Thread(target=client_loop, args=(port, time.monotonic() + seconds, result, lock, shared))
        for _ in range(concurrency)
    ]
    pids = server_pids(server)
    cpu_before, server_before = time.process_time(), process_cpu_seconds(pids)
    wall_before = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.wall = time.monotonic() - wall_before
    result.generator_cpu = time.process_time() - cpu_before
    result.server_cpu = process_cpu_seconds(pids) - server_before
    return result


def loss_check(r: redis.Redis, result: LevelResult) -> tuple[int, int, int]:
    """(dedupe keys stored, distinct deals acknowledged, deals with a queued or pending unit)."""
    seen = sum(1 for _ in r.scan_iter("handoff:webhook:seen:*", count=5000))
    queued: set[str] = set()
    for raw in r.lrange(queue_key(HANDOFF_QUEUE), 0, -1):
        message = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        queued.add(kwargs["deal_id"])
    return seen, len(result.deals), len(queued & result.deals)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--levels", default="1,4,10,16,32")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument(
        "--max-rate", type=int, default=60_000, help="events/s the pre-signed batches can sustain"
    )
    args = parser.parse_args()

    r = redis.Redis.from_url(args.redis, decode_responses=True)
    port = free_port()
    server = start_gunicorn(port, args.redis, args.workers)
    ids = itertools.count(1)
    rows = []
    try:
        for level in (int(x) for x in args.levels.split(",")):
            r.flushdb()
            batches = signed_batches(int(args.max_rate * args.seconds / EVENTS_PER_BATCH), ids)
            result = run_level(port, level, args.seconds, batches, server.pid)
            seen, deals, deals_queued = loss_check(r, result)
            lost = (result.events - seen) + (deals - deals_queued)
            p50_ms = percentile(result.latencies, 50) * 1000
            p99_ms = percentile(result.latencies, 99) * 1000
            generator_share = result.generator_cpu / (result.generator_cpu + result.server_cpu)
            rows.append(
                f"| {level} | {result.events / result.wall:,.0f} | {p50_ms:.1f} | {p99_ms:.1f} | "
                f"{result.errors} | {result.events:,} / {seen:,} | {deals:,} / {deals_queued:,} | {lost} | "
                f"{result.server_cpu / result.wall:.2f} | {result.generator_cpu / result.wall:.2f} "
                f"({generator_share:.0%}) |"
            )
            if result.exhausted:
                print(f"warning: batches ran out at concurrency {level}; raise --max-rate", flush=True)
            print(rows[-1], flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        r.flushdb()
    print(
        "\n| concurrency | events/s acked | p50 ms | p99 ms | non-204 | events acked / dedupe keys "
        "| deals acked / deals queued | lost | server CPU (cores) | generator CPU (cores, share) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
