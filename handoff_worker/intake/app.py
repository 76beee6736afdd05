"""The intake's Flask app: `POST /webhooks/hubspot` and `/healthz` on every listener; `/readyz` and
`/metrics` only on the internal one named by OPS_BIND.

The webhook handler verifies, parses, dedupes, enqueues and answers. It never calls HubSpot and
applies no business rule; the tasks re-read HubSpot and decide.

Answers: 204 when every readable event is durably queued (or deliberately dropped or a duplicate;
events refused one by one are counted and logged), 401 for a missing, wrong or stale signature,
400 for a body that is not a JSON array, 413 too big, 415 not JSON, 503 when Redis or the queue
cannot take the events (HubSpot then retries). Refusals before the signature is checked tell the
caller only a generic reason; the detail goes to the log. Never a 500 with a traceback; an
unexpected error is a counted 500.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from flask import Flask, Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from handoff_worker.celery_app import HANDOFF_QUEUE, create_celery
from handoff_worker.domain.events import (
    Disposition,
    EventDecision,
    EventParseError,
    WatchedProperties,
    decide_all,
)
from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.domain.rules import LIFECYCLE_PROPERTY
from handoff_worker.intake import metrics
from handoff_worker.intake.broker import publisher_for
from handoff_worker.intake.dispatch import Dispatcher, DispatchResult, QueueUnavailableError
from handoff_worker.intake.readiness import Readiness
from handoff_worker.intake.webhook import HubSpotWebhook, RejectedRequestError
from handoff_worker.settings import Settings
from handoff_worker.state import redis_client as make_redis_client

WEBHOOK_PATH = "/webhooks/hubspot"
# Well inside HubSpot's 5 s: a slow Redis turns into a 503 and a retry, never a timeout.
REDIS_TIMEOUT_SECONDS = 1.0

log = logging.getLogger("handoff_worker.intake")


def _fixed(rules: NurtureRules) -> Callable[[], NurtureRules]:
    return lambda: rules


def watched_properties(rules: NurtureRules) -> WatchedProperties:
    """The property names whose changes can start or unblock a handoff."""
    # A lifecycle stage moved to a sales stage may mean sales has a recycled contact back.
    came_back = {LIFECYCLE_PROPERTY} if rules.came_back.lifecycle_stages else set()
    return WatchedProperties(
        deal=frozenset({"dealstage", rules.deals.reason_property}),
        contact=frozenset({rules.leads.status_property, rules.leads.reason_property, *came_back}),
    )


def create_app(
    settings: Settings,
    *,
    rules: NurtureRules | Callable[[], NurtureRules] | None = None,
    redis_client: redis.Redis | None = None,
    celery_app: Celery | None = None,
) -> Flask:
    """`rules` may be a callable (a `RulesStore`'s `current`), so a saved change to the YAML's
    property names reaches the intake without a restart, as it reaches the workers."""
    app = Flask("handoff_worker.intake")
    replayable = sorted(set(settings.signature_versions) - {"v3"})
    if replayable:
        log.warning(
            "HUBSPOT_SIGNATURE_VERSIONS accepts %s: these signatures carry no timestamp, so a captured "
            "request can be replayed; keep only v3 unless your app cannot send it",
            ", ".join(replayable),
        )
    if settings.trusted_proxy_count > 0:
        hops = settings.trusted_proxy_count
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # the documented way to wrap
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )
    redis_conn = redis_client or make_redis_client(settings, socket_timeout=REDIS_TIMEOUT_SECONDS)
    celery = celery_app or create_celery(settings)
    publisher = publisher_for(
        celery, queue=HANDOFF_QUEUE, socket_timeout=REDIS_TIMEOUT_SECONDS, marks=redis_conn
    )
    intake = _Intake(
        settings=settings,
        webhook=HubSpotWebhook(settings),
        dispatcher=Dispatcher(publisher),
        rules=rules if callable(rules) else _fixed(rules or NurtureRules(reasons=())),
    )
    app.extensions["handoff_intake"] = intake
    readiness = Readiness(settings, redis_conn, publisher, rules_loaded=rules is not None)

    app.add_url_rule(WEBHOOK_PATH, "hubspot_webhook", intake.handle, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", lambda: jsonify(status="ok"))
    app.add_url_rule(
        "/readyz",
        "readyz",
        lambda: _readiness(readiness),
    )
    app.add_url_rule("/metrics", "metrics", _metrics)
    _serve_ops_endpoints_only_on(app, ops_listener_port(settings))
    _register_error_handlers(app)
    return app


# Readiness details and metrics are for operators: answered on the internal listener (OPS_BIND)
# only, never on the port the internet reaches.
OPS_ENDPOINTS = frozenset({"readyz", "metrics"})


def ops_listener_port(settings: Settings) -> str | None:
    return settings.ops_bind.rsplit(":", 1)[1] if settings.ops_bind else None


def _serve_ops_endpoints_only_on(app: Flask, port: str | None) -> None:
    @app.before_request
    def refuse_ops_endpoints_elsewhere() -> None:
        if request.endpoint in OPS_ENDPOINTS and _listener_port(request.environ) != port:
            # The same answer as a path that does not exist: nothing to probe.
            abort(404)


def _listener_port(environ: dict[str, Any]) -> str | None:
    """The local port of the connection the request came in on. gunicorn hands over the socket
    itself, whose address nothing in the request can change (its SERVER_PORT comes from the Host
    header on a unix-socket bind). Other servers set SERVER_PORT from their listener; forwarded
    headers applied by ProxyFix overwrite it, so its saved original is read first."""
    connection = environ.get("gunicorn.socket")
    if connection is not None:
        try:
            address = connection.getsockname()
        except OSError:
            return None
        return str(address[1]) if isinstance(address, tuple) else None
    original = environ.get("werkzeug.proxy_fix.orig") or environ
    port = original.get("SERVER_PORT")
    return str(port) if port else None


class _Intake:
    def __init__(
        self,
        *,
        settings: Settings,
        webhook: HubSpotWebhook,
        dispatcher: Dispatcher,
        rules: Callable[[], NurtureRules],
    ) -> None:
        self.settings = settings
        self.webhook = webhook
        self.dispatcher = dispatcher
        self._rules = rules
        self._watched_for: tuple[NurtureRules, WatchedProperties] | None = None

    @property
    def watched(self) -> WatchedProperties:
        """The watched names of the rules in force, worked out again only when the rules change."""
        rules = self._rules()
        cached = self._watched_for
        if cached is None or cached[0] is not rules:
            cached = self._watched_for = (rules, watched_properties(rules))
        return cached[1]

    def handle(self) -> Response | tuple[Response, int]:
        started = time.perf_counter()
        fields: dict[str, Any] = {"path": WEBHOOK_PATH, "events": 0}
        status, outcome, message, public = self._process(fields)
        duration = time.perf_counter() - started
        metrics.LATENCY.observe(duration)
        metrics.REQUESTS.labels(status=str(status)).inc()
        fields.update(status=status, outcome=outcome, duration_ms=round(duration * 1000, 2))
        level = logging.WARNING if status >= 400 or fields.get("refused_events") else logging.INFO
        log.log(level, message, extra={"fields": fields})
        if status == 204:
            return Response(status=204)
        return jsonify(error=public), status

    def _process(self, fields: dict[str, Any]) -> tuple[int, str, str, str]:
        """(status, outcome tag, log message, what the caller is told). Fills `fields` with counts
        for the log line."""
        try:
            batch = self.webhook.receive(request)
        except RejectedRequestError as exc:
            metrics.REJECTED.labels(reason=exc.reason).inc()
            return exc.status, exc.reason, _rejection_message(exc), exc.public
        events = batch.events
        fields["events"] = len(events)
        metrics.EVENTS_RECEIVED.inc(len(events))
        if batch.refused:
            _count_refusals(batch.refused, fields)
        decisions = decide_all(events, watched=self.watched, app_id=self.settings.hubspot_app_id)
        _count_dispositions(decisions, fields)
        try:
            result = self.dispatcher.dispatch(decisions)
        except QueueUnavailableError as exc:
            metrics.ENQUEUE_FAILURES.inc()
            message = f"events not queued, HubSpot will retry (check REDIS_URL): {exc}"
            return (
                503,
                "queue_unavailable",
                message,
                "events not queued, the queue is unavailable (REDIS_URL)",
            )
        _count_result(result, fields)
        metrics.EVENTS_ACCEPTED.inc(len(events))
        return 204, "accepted", "webhook accepted", ""


# Enough to find the cause in the body HubSpot keeps; a batch of many bad events is one line.
_REFUSALS_LOGGED = 5


def _count_refusals(refused: tuple[EventParseError, ...], fields: dict[str, Any]) -> None:
    """Events refused one by one are acknowledged with the rest of the batch: retrying cannot
    make them readable. They are counted by reason and named (index and field, never the value)."""
    for reason, count in Counter(error.reason for error in refused).items():
        metrics.REFUSED_EVENTS.labels(reason=reason).inc(count)
    fields["refused_events"] = len(refused)
    fields["refusals"] = [str(error) for error in refused[:_REFUSALS_LOGGED]]


def _rejection_message(exc: RejectedRequestError) -> str:
    if exc.status == 401:
        return f"webhook refused, signature check failed: {exc.message}"
    return f"webhook refused: {exc.message}"


def _count_dispositions(decisions: tuple[EventDecision, ...], fields: dict[str, Any]) -> None:
    counts = {d: 0 for d in Disposition}
    for decision in decisions:
        counts[decision.disposition] += 1
    metrics.OWN_WRITES.inc(counts[Disposition.OWN_WRITE])
    metrics.UNKNOWN_TYPES.inc(counts[Disposition.UNKNOWN_TYPE])
    metrics.IRRELEVANT.inc(counts[Disposition.IRRELEVANT])
    fields.update({f"{d.value}_events": n for d, n in counts.items()})


def _count_result(result: DispatchResult, fields: dict[str, Any]) -> None:
    metrics.DUPLICATES.inc(result.duplicates)
    metrics.COALESCED.inc(result.coalesced)
    for task, count in result.published.items():
        metrics.UNITS_ENQUEUED.labels(task=task).inc(count)
    fields.update(
        duplicates=result.duplicates,
        coalesced=result.coalesced,
        units_enqueued=result.units_published,
    )


def _readiness(readiness: Readiness) -> tuple[Response, int]:
    ready, checks = readiness.checks()
    return jsonify(ready=ready, checks=checks), 200 if ready else 503


def _metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        return jsonify(error=exc.description or exc.name), status

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[Response, int]:
        # Logged with its traceback for us and counted, so an alert sees it; the caller only
        # learns that it failed.
        endpoint = request.url_rule.endpoint if request.url_rule else "none"
        metrics.UNEXPECTED_ERRORS.labels(endpoint=endpoint).inc()
        if endpoint == "hubspot_webhook":
            metrics.REQUESTS.labels(status="500").inc()
        log.exception("unexpected error answering %s", request.path, extra={"fields": {"status": 500}})
        return jsonify(error="internal error; the request can be retried"), 500
