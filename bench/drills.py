"""Fault drills: the whole stack in real processes, broken on purpose, then checked in HubSpot.

    python -m bench.drills [--only NAME] [--deals 24] [--fault-seconds 15] [--markdown PATH]

Each drill starts its own Redis (a throwaway redis-server on a free port), the HubSpot sandbox,
gunicorn and Celery workers, seeds a stream of deals with 1-5 contacts each, has reps lose them with
mixed reasons (signed webhooks to the intake), breaks something, heals it, waits (bounded) for
HubSpot to converge, and checks the sandbox: every lost deal handed off, every eligible contact
enrolled exactly once, no lifecycle stage left cleared, no owner task twice. Exits 1 when any
expectation fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from bench.drills_portal import Stream, Verdict, check, lose, plan_stream, seed_stream
from bench.drills_stack import CLIENT_SECRET, ROOT, Stack, StackConfig
from bench.hostile_yaml import alias_bomb, write_huge_file
from handoff_worker.sandbox.hostile import answer_verdict, build_corpus, send
from handoff_worker.testing import free_port, wait_until

SETTLE_SECONDS = 4.0  # quiet time after convergence in which a late duplicate would show


@dataclass
class DrillOptions:
    deals: int = 24
    fault_seconds: float = 15.0
    converge_timeout: float = 150.0
    seed: int = 7


@dataclass
class DrillResult:
    name: str
    broke: str
    fault_seconds: float
    events_sent: int
    verdict: Verdict
    recover_seconds: float | None
    extra_failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.recover_seconds is not None and not self.extra_failures


# --------------------------------------------------------------------------- shared steps


def events_delivered(stack: Stack) -> int:
    return sum(len(d["events"]) for d in stack.hub.control.webhooks()["deliveries"])


def lose_in_background(stack: Stack, stream: Stream, *, pace: float) -> threading.Thread:
    """Reps lose the stream's deals one by one, `pace` seconds apart, while the drill breaks things."""

    def run() -> None:
        for deal in stream.deals:
            lose(stack.hub.control, deal)
            time.sleep(pace)

    thread = threading.Thread(target=run, name="reps", daemon=True)
    thread.start()
    return thread


def converge(stack: Stack, stream: Stream, *, timeout: float) -> tuple[Verdict, float | None]:
    """Poll HubSpot until every expectation holds (or `timeout`), then re-check after a quiet spell
    so a duplicate arriving late is counted. Returns the verdict and seconds until it first held."""
    began = time.monotonic()
    verdict = check(stack.hub.control, stream)
    while not verdict.ok and time.monotonic() - began < timeout:
        time.sleep(1.0)
        verdict = check(stack.hub.control, stream)
    if not verdict.ok:
        return verdict, None
    recovered = time.monotonic() - began
    time.sleep(SETTLE_SECONDS)
    return check(stack.hub.control, stream), recovered


def _stack(workdir: Path, **config: Any) -> Stack:
    return Stack(workdir, StackConfig(**config))


# --------------------------------------------------------------------------- a. SIGKILL


def drill_worker_sigkill(workdir: Path, options: DrillOptions) -> DrillResult:
    """Kill the worker's pool processes with SIGKILL three times while handoffs run."""
    stream = plan_stream(options.deals, rng=random.Random(options.seed))
    stack = _stack(workdir).start(webs=1, workers=1)
    try:
        seed_stream(stack.hub.control, stream)
        # Slower enrollments widen the window in which a kill lands mid-handoff.
        stack.hub.control.set_faults(latency_ms=150, path_prefixes=["/automation/"])
        reps = lose_in_background(stack, stream, pace=0.25)
        kills = 0
        began = time.monotonic()
        for _ in range(3):
            wait_until(
                lambda: bool(stack.redis().keys("handoff:lock:*")), timeout=30, what="a handoff in flight"
            )
            for pid in stack.pool_pids():
                os.kill(pid, signal.SIGKILL)
                kills += 1
            time.sleep(2.0)
        reps.join()
        stack.hub.control.clear_faults()
        fault = time.monotonic() - began
        verdict, recovered = converge(stack, stream, timeout=options.converge_timeout)
        return DrillResult(
            "worker-sigkill",
            f"SIGKILL of {kills} pool processes in 3 rounds",
            fault,
            events_delivered(stack),
            verdict,
            recovered,
            [] if stack.all_alive() else ["a web or worker main process died"],
        )
    finally:
        stack.stop()


# --------------------------------------------------------------------------- b. duplicates


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The recorder keeps what it needs itself."""


class _Recorder:
    """Stands where HubSpot's webhook target is: keeps every signed batch, answers 204."""

    def __init__(self) -> None:
        self.batches: list[tuple[bytes, dict[str, str]]] = []
        self._server = make_server(
            "127.0.0.1", free_port(), self._app, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}/webhooks/hubspot"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        wanted = ("Content-Type", "X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp")
        self.batches.append((request.get_data(), {h: request.headers.get(h, "") for h in wanted}))
        return Response(status=204)(environ, start_response)

    def stop(self) -> None:
        self._server.shutdown()


def drill_duplicate_batches(workdir: Path, options: DrillOptions) -> DrillResult:
    """Every webhook batch delivered 5 times, shuffled, concurrently to two web processes."""
    stream = plan_stream(options.deals, rng=random.Random(options.seed + 1))
    recorder = _Recorder()
    # Both web processes sit behind the one public URL the batches were signed for.
    stack = _stack(workdir, public_url=recorder.url).start(webs=2, workers=1, web_concurrency=1)
    try:
        seed_stream(stack.hub.control, stream)
        for deal in stream.deals:
            lose(stack.hub.control, deal)
        stack.hub.control.wait_for_webhooks(timeout=30)
        copies = [batch for batch in recorder.batches for _ in range(5)]
        random.Random(options.seed).shuffle(copies)
        targets = [stack.web_url(0), stack.web_url(1)]
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(
                pool.map(
                    lambda item: (
                        requests.post(
                            targets[item[0] % 2], data=item[1][0], headers=item[1][1], timeout=10
                        ).status_code
                    ),
                    enumerate(copies),
                )
            )
        fault = time.monotonic() - began
        refused = [s for s in statuses if s != 204]
        verdict, recovered = converge(stack, stream, timeout=options.converge_timeout)
        events = sum(len(json.loads(body)) for body, _ in copies)
        return DrillResult(
            "duplicate-batches",
            f"{len(recorder.batches)} batches x5, shuffled, 10 at once to 2 web processes",
            fault,
            events,
            verdict,
            recovered,
            [f"{len(refused)} deliveries answered {sorted(set(refused))}"] if refused else [],
        )
    finally:
        stack.stop()
        recorder.stop()


# --------------------------------------------------------------------------- c. HubSpot faults


def drill_hubspot_faults(workdir: Path, options: DrillOptions) -> DrillResult:
    """30% 429s and 10% 5xx for a while, then HubSpot unreachable for a while."""
    stream = plan_stream(options.deals, rng=random.Random(options.seed + 2))
    stack = _stack(workdir).start(webs=1, workers=1)
    try:
        seed_stream(stack.hub.control, stream)
        began = time.monotonic()
        stack.hub.control.set_faults(rate_limit_share=0.3, server_error_share=0.1)
        reps = lose_in_background(stack, stream, pace=options.fault_seconds / max(1, options.deals))
        time.sleep(options.fault_seconds)
        stack.hub.control.set_faults(unreachable=True)
        time.sleep(options.fault_seconds)
        stack.hub.control.clear_faults()
        reps.join()
        fault = time.monotonic() - began
        verdict, recovered = converge(stack, stream, timeout=options.converge_timeout)
        api = [r for r in stack.hub.control.requests("/") if not r["path"].startswith("/_sandbox")]
        injected = sum(1 for r in api if r["status"] in {429, 502, 503})
        return DrillResult(
            "hubspot-429-5xx-down",
            f"30% 429 + 10% 5xx {options.fault_seconds:g} s, then unreachable {options.fault_seconds:g} s",
            fault,
            events_delivered(stack),
            verdict,
            recovered,
            [] if stack.all_alive() else ["a web or worker main process died"],
            [f"{injected} of {len(api)} API calls answered 429/502/503"],
        )
    finally:
        stack.stop()


# --------------------------------------------------------------------------- d. Redis down


def drill_redis_down(workdir: Path, options: DrillOptions) -> DrillResult:
    """Redis stopped while webhooks keep coming, then started again (same data on disk)."""
    stream = plan_stream(options.deals, rng=random.Random(options.seed + 3))
    stack = _stack(workdir).start(webs=1, workers=1)
    try:
        seed_stream(stack.hub.control, stream)
        half = len(stream.deals) // 3
        for deal in stream.deals[:half]:
            lose(stack.hub.control, deal)
        began = time.monotonic()
        stack.redis_server.stop()
        pace = options.fault_seconds / max(1, len(stream.deals) - half)
        for deal in stream.deals[half:]:
            lose(stack.hub.control, deal)
            time.sleep(pace)
        stack.redis_server.start()
        fault = time.monotonic() - began
        stack.hub.control.wait_for_webhooks(timeout=60)
        verdict, recovered = converge(stack, stream, timeout=options.converge_timeout)
        attempts = [a for d in stack.hub.control.webhooks()["deliveries"] for a in d["attempts"]]
        unavailable = sum(1 for a in attempts if a.get("status") == 503)
        other_errors = sorted({a.get("status") for a in attempts if not a["ok"] and a.get("status") != 503})
        failed = stack.hub.control.webhooks()["failed"]
        extra = [f"intake answered {other_errors} while Redis was down"] if other_errors else []
        extra += [f"{failed} webhook deliveries given up"] if failed else []
        extra += [] if unavailable else ["the intake never answered 503 while Redis was down"]
        extra += [] if stack.all_alive() else ["a web or worker main process died"]
        return DrillResult(
            "redis-down",
            f"redis-server stopped {fault:.0f} s while reps kept losing deals",
            fault,
            events_delivered(stack),
            verdict,
            recovered,
            extra,
            [f"{unavailable} deliveries answered 503, then redelivered by the sandbox"],
        )
    finally:
        stack.stop()


# --------------------------------------------------------------------------- e. hostile input


def drill_hostile_input(workdir: Path, options: DrillOptions) -> DrillResult:
    """Forged, stale, future, malformed and huge requests at the intake, then a normal stream."""
    stream = plan_stream(max(4, options.deals // 3), rng=random.Random(options.seed + 4))
    stack = _stack(workdir).start(webs=1, workers=1)
    try:
        seed_stream(stack.hub.control, stream)
        corpus = build_corpus(CLIENT_SECRET, stack.web_url(0))
        began = time.monotonic()
        failures, answers = [], []
        for item in corpus:
            answer = send(item, stack.web_url(0))
            answers.append(f"{answer.status} {item.label}")
            problem = answer_verdict(item, answer)
            if problem:
                failures.append(problem)
        fault = time.monotonic() - began
        if not stack.all_alive():
            failures.append("a web process died")
        for deal in stream.deals:
            lose(stack.hub.control, deal)
        verdict, recovered = converge(stack, stream, timeout=options.converge_timeout)
        return DrillResult(
            "hostile-input",
            f"{len(corpus)} hostile requests ({sum(c.forged for c in corpus)} forged)",
            fault,
            events_delivered(stack),
            verdict,
            recovered,
            failures,
            answers,
        )
    finally:
        stack.stop()


# --------------------------------------------------------------------------- stalled uploads

STALLED_UPLOADS = 100


def drill_stalled_uploads(workdir: Path, options: DrillOptions) -> DrillResult:
    """100 uploads stalled at the intake (each cut off one replaced) while reps lose a burst of deals."""
    from bench.slow_uploads import StalledUploads

    stream = plan_stream(options.deals, rng=random.Random(options.seed + 6))
    stack = _stack(workdir).start(webs=1, workers=1)
    try:
        seed_stream(stack.hub.control, stream)
        healthz_url = f"http://127.0.0.1:{stack.web_ports[0]}/healthz"
        # A byte every 0.25 s per connection, and one cut off is replaced within 0.25 s.
        stalled = StalledUploads(stack.web_ports[0], STALLED_UPLOADS, every=0.25, keep_open=True)
        began, began_ms = time.monotonic(), time.time() * 1000
        reps = lose_in_background(stack, stream, pace=0.05)
        slowest_healthz, healthz_failures = 0.0, 0
        while reps.is_alive() or time.monotonic() - began < options.fault_seconds:
            started = time.perf_counter()
            try:
                ok = requests.get(healthz_url, timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            slowest_healthz = max(slowest_healthz, time.perf_counter() - started)
            healthz_failures += not ok
            time.sleep(0.2)
        reps.join()
        fault = time.monotonic() - began
        stalled.keep_open = False
        ended_ms = time.time() * 1000
        # The server must cut off the last ones by itself; past a bound the drill closes them.
        cut_off_by = time.monotonic() + 20
        while stalled.open_count() and time.monotonic() < cut_off_by:
            time.sleep(0.2)
        still_open = stalled.open_count()
        opened, lifetimes = len(stalled.sockets), stalled.lifetimes()
        stalled.close()
        verdict, recovered = converge(stack, stream, timeout=options.converge_timeout)
        attempts = [a for d in stack.hub.control.webhooks()["deliveries"] for a in d["attempts"]]
        failed = [a.get("status") or a.get("error") for a in attempts if not a["ok"]]
        during = sum(began_ms <= a["at"] <= ended_ms for a in attempts)
        extra = [f"{len(failed)} deliveries failed: {sorted(set(map(str, failed)))}"] if failed else []
        extra += [f"/healthz failed {healthz_failures} times"] if healthz_failures else []
        extra += [] if during else ["no webhook was delivered while the uploads stalled"]
        extra += [f"{still_open} stalled uploads never cut off"] if still_open else []
        extra += [] if stack.all_alive() else ["a web or worker main process died"]
        return DrillResult(
            "stalled-uploads",
            f"{STALLED_UPLOADS} uploads stalled at the intake for {fault:.0f} s during a burst of losses",
            fault,
            events_delivered(stack),
            verdict,
            recovered,
            extra,
            [
                f"{len(attempts)} webhook deliveries ({during} while the uploads stalled), {len(failed)} "
                f"failed; slowest /healthz {slowest_healthz * 1000:.0f} ms; {opened} stalled uploads "
                f"opened, {len(lifetimes)} cut off"
                + (f" after {lifetimes[0]:.1f}-{lifetimes[-1]:.1f} s" if lifetimes else "")
            ],
        )
    finally:
        stack.stop()


# --------------------------------------------------------------------------- f. broken and hostile YAML


BROKEN_YAML_TAIL = "\n  Pricing:\n\tnurture: [workflow: not-a-number\n"


@dataclass(frozen=True)
class RulesBreak:
    """A bad nurture file saved over the good one under a running worker and web process."""

    name: str
    broke: str
    save: Callable[[Path], None]  # writes the bad file over the one at that path


def _save_over(rules: Path, write: Callable[[Path], object]) -> None:
    # Written beside the file and renamed over it, as editors and deploys do, so a reload never
    # sees half of a file that takes a while to write.
    staging = rules.with_suffix(".saving")
    write(staging)
    staging.replace(rules)


RULES_BREAKS = [
    RulesBreak(
        "broken-nurture-yaml",
        "nurture.yaml broken (tab, unclosed list) under a running worker",
        lambda rules: _save_over(rules, lambda to: to.write_text(rules.read_text() + BROKEN_YAML_TAIL)),
    ),
    RulesBreak(
        "alias-bomb-yaml",
        f"a {len(alias_bomb().encode())}-byte alias bomb saved as nurture.yaml under a running worker",
        lambda rules: _save_over(rules, lambda to: to.write_text(alias_bomb())),
    ),
    RulesBreak(
        "huge-yaml",
        "a 60 MB nurture.yaml (valid YAML) saved under a running worker",
        lambda rules: _save_over(rules, lambda to: write_huge_file(to, 60, start=rules.read_text())),
    ),
]


def drill_rules_break(brk: RulesBreak) -> Callable[[Path, DrillOptions], DrillResult]:
    def drill(workdir: Path, options: DrillOptions) -> DrillResult:
        """A bad nurture file mid-stream: worker and web must keep their last good rules."""
        rules = workdir / "nurture.yaml"
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "config" / "nurture.yaml", rules)
        stream = plan_stream(options.deals, rng=random.Random(options.seed + 5))
        stack = _stack(workdir, rules_path=rules).start(webs=1, workers=1)
        try:
            seed_stream(stack.hub.control, stream)
            half = len(stream.deals) // 2
            for deal in stream.deals[:half]:
                lose(stack.hub.control, deal)
            # Break the file only once the worker has run on the good rules (its pool processes
            # read the file on their first task).
            wait_until(
                lambda: check(stack.hub.control, stream, stream.deals[:half]).ok,
                timeout=options.converge_timeout,
                what="the first half handed off on the good rules",
                every=1.0,
            )
            began = time.monotonic()
            brk.save(rules)
            # Worker and web re-read the file every 30 s: keep losing deals across a whole interval.
            pace = 35.0 / max(1, len(stream.deals) - half)
            for deal in stream.deals[half:]:
                lose(stack.hub.control, deal)
                time.sleep(pace)
            fault = time.monotonic() - began
            verdict, recovered = converge(stack, stream, timeout=options.converge_timeout)
            refused = {
                "worker": "is invalid; the rules of version" in stack.worker_log(0),
                "web": "is invalid; the rules of version"
                in (workdir / "web0.log").read_text(errors="replace"),
            }
            versions = {a["config_version"] for a in _audits(stack)}
            extra = [
                f"the {who} never logged that it refused the file" for who, ok in refused.items() if not ok
            ]
            extra += (
                []
                if len(versions) == 1
                else [f"audits name {len(versions)} rule versions: {sorted(versions)}"]
            )
            extra += [] if stack.all_alive() else ["a web or worker main process died"]
            return DrillResult(
                brk.name,
                brk.broke,
                fault,
                events_delivered(stack),
                verdict,
                recovered,
                extra,
                [
                    f"{who} logged the refusal and kept the last good version"
                    for who, ok in refused.items()
                    if ok
                ],
            )
        finally:
            stack.stop()

    return drill


# --------------------------------------------------------------------------- g. poison messages


def poison_messages(count: int) -> list[bytes]:
    """`count` messages a worker cannot run, cycling through the ways a queue message can be bad."""
    from handoff_worker.celery_app import TASK_HANDOFF_DEAL
    from handoff_worker.intake.broker import TaskCall, encode_task_message

    def task(kwargs: dict[str, Any], *, name: str = TASK_HANDOFF_DEAL, body: object = None) -> bytes:
        message = json.loads(encode_task_message(TaskCall.new(name, kwargs), queue="handoff", origin="drill"))
        if body is not None:
            message["body"] = body
        return json.dumps(message).encode()

    makers: list[Callable[[int], bytes]] = [
        lambda n: f"not json {n}".encode(),
        lambda n: json.dumps({"n": n}).encode(),  # JSON, but not a message envelope
        lambda n: task({"deal_id": str(n)}, body="%%% not base64"),
        lambda n: task({"deal_id": str(n)}, name="handoff_worker.retired_task"),
        lambda n: task({"deal": str(n)}),  # an argument the task does not take
    ]
    return [makers[n % len(makers)](n) for n in range(count)]


def drill_poison_messages(workdir: Path, options: DrillOptions) -> DrillResult:
    """Messages no worker can run pushed into the queue between real handoffs."""
    from handoff_worker.celery_app import HANDOFF_QUEUE, queue_key
    from handoff_worker.setaside import list_set_aside

    stream = plan_stream(options.deals, rng=random.Random(options.seed + 6))
    stack = _stack(workdir).start(webs=1, workers=1)
    try:
        seed_stream(stack.hub.control, stream)
        poison = poison_messages(5 * len(stream.deals))
        began = time.monotonic()
        reps = lose_in_background(stack, stream, pace=options.fault_seconds / max(1, len(stream.deals)))
        client = stack.redis()
        for chunk in range(0, len(poison), 5):
            client.lpush(queue_key(HANDOFF_QUEUE), *poison[chunk : chunk + 5])
            time.sleep(options.fault_seconds / max(1, len(poison) // 5))
        reps.join()
        fault = time.monotonic() - began
        verdict, recovered = converge(stack, stream, timeout=options.converge_timeout)
        kept = list_set_aside(client)
        log = stack.worker_log(0)
        extra = [] if stack.all_alive() else ["the worker's main process died"]
        extra += (
            [] if len(kept) == len(poison) else [f"{len(kept)} of {len(poison)} poison messages set aside"]
        )
        extra += ["the worker logged an unrecoverable error"] if "Unrecoverable error" in log else []
        return DrillResult(
            "poison-messages",
            f"{len(poison)} unrunnable messages (5 kinds) pushed into the queue among the handoffs",
            fault,
            events_delivered(stack),
            verdict,
            recovered,
            extra,
            [f"{len(kept)} of {len(poison)} set aside for `failures`; worker main process alive"],
        )
    finally:
        stack.stop()


# --------------------------------------------------------------------------- h. no token


def drill_worker_without_token(workdir: Path, options: DrillOptions) -> DrillResult:
    """A worker started without HUBSPOT_ACCESS_TOKEN while webhooks arrive, then a good one."""
    from handoff_worker.celery_app import HANDOFF_QUEUE, queue_key
    from handoff_worker.startup import EXIT_CONFIG

    stream = plan_stream(options.deals, rng=random.Random(options.seed + 7))
    stack = _stack(workdir).start(webs=1, workers=0)
    try:
        seed_stream(stack.hub.control, stream)
        began = time.monotonic()
        reps = lose_in_background(stack, stream, pace=options.fault_seconds / max(1, len(stream.deals)))
        refused = stack.start_worker(env={"HUBSPOT_ACCESS_TOKEN": ""}, wait_ready=False)
        code = refused.wait(timeout=60)
        exit_seconds = time.monotonic() - began
        stack.workers.remove(refused)
        reps.join()
        stack.hub.control.wait_for_webhooks(timeout=60)
        waiting = stack.redis().llen(queue_key(HANDOFF_QUEUE))
        fault = time.monotonic() - began
        output = [line for line in stack.worker_log(0).splitlines() if line.strip()]
        ours = [line for line in output if line.startswith("handoff-worker worker not started")]
        # Celery's warning about running as root (the drills may) is not the worker's own output.
        root_warning = ("SecurityWarning", "not recommended", "--uid option", "User information", "_warn_or")
        own = [line for line in output if not any(w in line for w in root_warning)]
        stack.start_worker()
        verdict, recovered = converge(stack, stream, timeout=options.converge_timeout)
        extra = [] if code == EXIT_CONFIG else [f"the worker without a token exited with {code}"]
        one_line = len(own) == 1 and own == ours and "HUBSPOT_ACCESS_TOKEN" in ours[0]
        extra += [] if one_line else [f"not a one-line refusal: {own[:5]}"]
        extra += ["the refused worker said ready"] if any("ready." in line for line in output) else []
        extra += [] if waiting else ["nothing waited in the queue for a worker that can run it"]
        return DrillResult(
            "worker-without-token",
            "worker started with no HUBSPOT_ACCESS_TOKEN while deals were lost; a good one later",
            fault,
            events_delivered(stack),
            verdict,
            recovered,
            extra,
            [
                f"exited {code} after {exit_seconds:.1f} s with {len(own)} line(s) of its own output "
                f"({len(ours)} naming the setting, {len(output) - len(own)} of Celery's root warning); "
                f"{waiting} handoffs waited in the queue, none acknowledged"
            ],
        )
    finally:
        stack.stop()


def _audits(stack: Stack) -> list[dict[str, Any]]:
    from handoff_worker.handoff.audit import recent_audits

    return recent_audits(stack.redis(), 100_000)


# --------------------------------------------------------------------------- the run

DRILLS: dict[str, Callable[[Path, DrillOptions], DrillResult]] = {
    "worker-sigkill": drill_worker_sigkill,
    "duplicate-batches": drill_duplicate_batches,
    "hubspot-429-5xx-down": drill_hubspot_faults,
    "redis-down": drill_redis_down,
    "hostile-input": drill_hostile_input,
    "stalled-uploads": drill_stalled_uploads,
    **{brk.name: drill_rules_break(brk) for brk in RULES_BREAKS},
    "poison-messages": drill_poison_messages,
    "worker-without-token": drill_worker_without_token,
}

TABLE_HEADER = (
    "| drill | what broke | fault s | events sent | handoffs expected | handoffs done | duplicates "
    "| repeat enroll calls | recover s | result |\n|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(result: DrillResult) -> str:
    verdict = result.verdict
    recover = f"{result.recover_seconds:.1f}" if result.recover_seconds is not None else "never"
    return (
        f"| {result.name} | {result.broke} | {result.fault_seconds:.0f} | {result.events_sent} "
        f"| {verdict.expected} | {verdict.done} | {verdict.duplicates} | {verdict.repeat_calls} "
        f"| {recover} | {'pass' if result.ok else 'FAIL'} |"
    )


def report(result: DrillResult) -> None:
    print(table_row(result), flush=True)
    for note in result.notes:
        print(f"    {note}")
    for problem in [*result.extra_failures, *result.verdict.problems[:10]]:
        print(f"    PROBLEM: {problem}")
    if result.verdict.cleared:
        print(f"    PROBLEM: {result.verdict.cleared} contacts left with an empty lifecycle stage")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(DRILLS), action="append", help="run only this drill")
    parser.add_argument("--deals", type=int, default=DrillOptions.deals, help="lost deals per drill")
    parser.add_argument("--fault-seconds", type=float, default=DrillOptions.fault_seconds)
    parser.add_argument("--converge-timeout", type=float, default=DrillOptions.converge_timeout)
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    args = parser.parse_args(argv)
    options = DrillOptions(args.deals, args.fault_seconds, args.converge_timeout)
    workroot = Path(tempfile.mkdtemp(prefix="handoff-drills-"))
    print(f"logs in {workroot}\n\n{TABLE_HEADER}", flush=True)
    results = []
    began = time.monotonic()
    for name in args.only or list(DRILLS):
        try:
            result = DRILLS[name](workroot / name, options)
        except Exception as exc:  # a drill that cannot even run is a failed drill, not a crash
            print(f"| {name} | drill could not run: {exc!r} | | | | | | | | FAIL |", flush=True)
            results.append(False)
            continue
        report(result)
        results.append(result.ok)
    print(f"\n{sum(results)}/{len(results)} drills passed in {time.monotonic() - began:.0f} s")
    if all(results) and not args.keep:
        shutil.rmtree(workroot, ignore_errors=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
