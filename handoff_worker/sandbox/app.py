"""The sandbox's Flask app: what every API request passes (auth, faults, rate limits, the request
log) before HubSpot's API paths (api.py), plus the control API under /_sandbox/ (control.py)."""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request

from handoff_worker.sandbox.api import install_api, json_response
from handoff_worker.sandbox.control import control_blueprint
from handoff_worker.sandbox.errors import SandboxApiError
from handoff_worker.sandbox.faults import InjectedAnswer
from handoff_worker.sandbox.state import Sandbox

CONTROL_PREFIX = "/_sandbox"


def create_app(sandbox: Sandbox) -> Flask:
    app = Flask("handoff_worker.sandbox")
    app.config["SANDBOX"] = sandbox
    app.register_blueprint(control_blueprint(sandbox), url_prefix=CONTROL_PREFIX)
    _install_gatekeeping(app, sandbox)
    install_api(app, sandbox)
    return app


def _error_body(status: int, category: str, message: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}


# ----- auth, limits, faults, recording --------------------------------------------------------------


def _install_gatekeeping(app: Flask, sandbox: Sandbox) -> None:
    @app.errorhandler(SandboxApiError)
    def api_error(error: SandboxApiError) -> Response:
        return json_response(error.body(), error.status)

    @app.before_request
    def gate() -> Response | None:
        g.started = time.monotonic()
        if request.path.startswith(CONTROL_PREFIX):
            return None
        auth_failure = _check_auth(sandbox)
        if auth_failure is not None:
            return auth_failure
        delay = sandbox.faults.latency_s(request.path)
        if delay:
            time.sleep(delay)
        injected = sandbox.faults.injected(request.method, request.path)
        if injected is not None:
            return _injected_failure(sandbox, injected)
        is_search = request.path.endswith("/search")
        verdict = sandbox.limits.check(is_search)
        g.limit_headers = verdict.headers
        if not verdict.allowed:
            return _rate_limited(verdict.policy, verdict.headers)
        return None

    @app.after_request
    def finish(response: Response) -> Response:
        for name, value in getattr(g, "limit_headers", {}).items():
            response.headers.setdefault(name, value)
        if not request.path.startswith(CONTROL_PREFIX):
            _after_answer(sandbox)
            sandbox.record(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string.decode(),
                    "body": request.get_json(silent=True),
                    "status": response.status_code,
                    "at": int(time.time() * 1000),
                    "durationMs": round((time.monotonic() - g.get("started", time.monotonic())) * 1000, 2),
                }
            )
        return response


def _check_auth(sandbox: Sandbox) -> Response | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return json_response(
            _error_body(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
                "you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            ),
            401,
        )
    if sandbox.access_token is not None and not hmac.compare_digest(token, sandbox.access_token):
        return json_response(
            _error_body(
                401, "INVALID_AUTHENTICATION", "The access token provided is not valid for this portal."
            ),
            401,
        )
    return None


def _rate_limited(policy: str, headers: dict[str, str], retry_after_s: int | None = None) -> Response:
    names = {"TEN_SECONDLY_ROLLING": "ten_secondly_rolling", "DAILY": "daily", "SECONDLY": "secondly"}
    body = {
        "status": "error",
        "message": f"You have reached your {names[policy]} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
    }
    response = json_response(body, 429, headers)
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


def _after_answer(sandbox: Sandbox) -> None:
    """Fire the faults that trigger once a request is answered, before the client reads the answer."""
    due = sandbox.faults.after_answer(request.method, request.path)
    for deletion in due.deletions:
        if sandbox.portal.exists(deletion.object_type, deletion.object_id):
            sandbox.webhooks.publish(
                sandbox.portal.delete(deletion.object_type, deletion.object_id, "CRM_UI")
            )
    if due.refusal is not None and sandbox.connections is not None:
        # Every answer closes its connection, so the client's next request needs a new one.
        sandbox.connections.refuse_connections(due.refusal.seconds)


def _injected_failure(sandbox: Sandbox, injected: InjectedAnswer) -> Response:
    status = injected.status
    if injected.body is not None:
        return json_response(injected.body, status)
    if status == 429:
        retry_after = sandbox.faults.settings.retry_after_s
        return _rate_limited("TEN_SECONDLY_ROLLING", {}, retry_after)
    if status >= 500:
        body = {
            "status": "error",
            "message": "internal error" if status != 503 else "Service unavailable, please retry.",
            "correlationId": str(uuid.uuid4()),
            "category": "INTERNAL_ERROR" if status != 503 else "SERVICE_UNAVAILABLE",
        }
        return json_response(body, status)
    return json_response(
        _error_body(status, "INJECTED_FAULT", f"Injected failure with status {status}."), status
    )
