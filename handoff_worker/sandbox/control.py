"""The control API under /_sandbox/: seed, act as a sales rep, inject faults, read what happened."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request

from handoff_worker.sandbox.errors import validation_error
from handoff_worker.sandbox.faults import FaultSettings
from handoff_worker.sandbox.state import Sandbox, load_default_seed

REP = "CRM_UI"  # what HubSpot reports as the change source for edits made in its UI


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def control_blueprint(sandbox: Sandbox) -> Blueprint:
    blueprint = Blueprint("sandbox_control", __name__)
    _state_routes(blueprint, sandbox)
    _rep_routes(blueprint, sandbox)
    _observation_routes(blueprint, sandbox)
    return blueprint


def _state_routes(blueprint: Blueprint, sandbox: Sandbox) -> None:
    @blueprint.post("/reset")
    def reset() -> Response:
        """Empty the portal, logs and deliveries; then load `seed` ("default", an object, or none)."""
        seed = _body().get("seed")
        sandbox.portal.reset()
        sandbox.webhooks.forget()
        with sandbox.log_lock:
            sandbox.requests_log.clear()
        sandbox.faults.clear()
        limits = sandbox.limits  # fresh counters, same configured limits
        limits.configure(limits.rate_limit, limits.daily_limit, limits.search.limit)
        counts = sandbox.portal.seed(load_default_seed() if seed == "default" else seed or {})
        return _json({"reset": True, "counts": counts})

    @blueprint.post("/seed")
    def seed() -> Response:
        return _json({"counts": sandbox.portal.seed(_body())})

    @blueprint.get("/config")
    def get_config() -> Response:
        return _json(_config(sandbox))

    @blueprint.put("/config")
    def put_config() -> Response:
        body = _body()
        settings = sandbox.webhooks.settings
        for key, attribute in (
            ("webhook_url", "url"),
            ("client_secret", "client_secret"),
            ("app_id", "app_id"),
            ("portal_id", "portal_id"),
            ("retry_delays", "retry_delays_s"),
            ("batch_window", "batch_window_s"),
            ("watched_properties", "watched"),
        ):
            if key in body:
                setattr(settings, attribute, body[key])
        if "access_token" in body:
            sandbox.access_token = body["access_token"]
        if {"rate_limit", "daily_limit", "search_per_second"} & body.keys():
            try:
                sandbox.limits.configure(
                    body.get("rate_limit", sandbox.limits.rate_limit),
                    int(body.get("daily_limit", sandbox.limits.daily_limit)),
                    int(body.get("search_per_second", sandbox.limits.search.limit)),
                )
            except ValueError as exc:
                raise validation_error(f"rate_limit: {exc}") from exc
        return _json(_config(sandbox))

    @blueprint.get("/faults")
    def get_faults() -> Response:
        return _json(sandbox.faults.describe())

    @blueprint.put("/faults")
    def set_faults() -> Response:
        try:
            settings = FaultSettings.from_json(_body())
        except TypeError as exc:
            raise validation_error(f"fault settings: {exc}") from exc
        if settings.refuse_connections_after and sandbox.connections is None:
            raise validation_error(
                "refuse_connections_after needs the sandbox served by SandboxServer (handoff-worker sandbox)."
            )
        sandbox.faults.set(settings)
        return _json(sandbox.faults.describe())

    @blueprint.delete("/faults")
    def clear_faults() -> Response:
        sandbox.faults.clear()
        return _json(sandbox.faults.describe())


def _config(sandbox: Sandbox) -> dict[str, Any]:
    settings = sandbox.webhooks.settings
    return {
        "webhook_url": settings.url,
        "client_secret_set": bool(settings.client_secret),  # never echo the secret itself
        "app_id": settings.app_id,
        "portal_id": settings.portal_id,
        "retry_delays": settings.retry_delays_s,
        "batch_window": settings.batch_window_s,
        "watched_properties": settings.watched,
        "access_token_required": sandbox.access_token is not None,
        "rate_limit": sandbox.limits.rate_limit,
        "daily_limit": sandbox.limits.daily_limit,
        "search_per_second": sandbox.limits.search.limit,
    }


def _rep_routes(blueprint: Blueprint, sandbox: Sandbox) -> None:
    portal, publish = sandbox.portal, sandbox.webhooks.publish

    @blueprint.post("/rep/<object_type>")
    def rep_create(object_type: str) -> Response:
        body = _body()
        created, changes = portal.create(
            object_type, body.get("properties", {}), REP, body.get("associations")
        )
        publish(changes)
        return _json(created, 201)

    @blueprint.patch("/rep/<object_type>/<object_id>")
    def rep_update(object_type: str, object_id: str) -> Response:
        updated, changes = portal.update(object_type, object_id, _body().get("properties", {}), REP)
        publish(changes)
        return _json(updated)

    @blueprint.delete("/rep/<object_type>/<object_id>")
    def rep_delete(object_type: str, object_id: str) -> Response:
        publish(portal.delete(object_type, object_id, REP))
        return Response(status=204)

    @blueprint.post("/rep/<object_type>/merge")
    def rep_merge(object_type: str) -> Response:
        body = _body()
        publish(portal.merge(object_type, str(body["primaryId"]), str(body["mergedId"]), REP))
        return _json({"merged": True, "primaryId": str(body["primaryId"])})

    @blueprint.post("/rep/associate")
    def rep_associate() -> Response:
        body = _body()
        publish(portal.associate("deals", str(body["dealId"]), "contacts", str(body["contactId"]), REP))
        return _json({"associated": True})

    @blueprint.post("/rep/dissociate")
    def rep_dissociate() -> Response:
        body = _body()
        publish(portal.dissociate("deals", str(body["dealId"]), "contacts", str(body["contactId"]), REP))
        return _json({"dissociated": True})


def _observation_routes(blueprint: Blueprint, sandbox: Sandbox) -> None:
    portal = sandbox.portal

    @blueprint.get("/objects/<object_type>")
    def objects(object_type: str) -> Response:
        ids = request.args.get("ids")
        return _json({"results": portal.snapshot(object_type, ids.split(",") if ids else None)})

    @blueprint.get("/associations/<from_type>/<from_id>/<to_type>")
    def associations(from_type: str, from_id: str, to_type: str) -> Response:
        return _json({"ids": portal.associated_ids(from_type, from_id, to_type)})

    @blueprint.get("/enrollments")
    def enrollments() -> Response:
        return _json(portal.enrollments())

    @blueprint.get("/lists")
    def lists() -> Response:
        return _json(portal.list_memberships())

    @blueprint.get("/requests")
    def requests_log() -> Response:
        return _json({"requests": sandbox.logged(request.args.get("path_prefix", ""))})

    @blueprint.delete("/requests")
    def clear_requests() -> Response:
        with sandbox.log_lock:
            sandbox.requests_log.clear()
        return Response(status=204)

    @blueprint.get("/changes")
    def changes() -> Response:
        with portal.lock:
            return _json({"changes": list(portal.changes)})

    @blueprint.get("/webhooks")
    def deliveries() -> Response:
        return _json(sandbox.webhooks.describe())

    @blueprint.post("/webhooks/wait")
    def wait_for_deliveries() -> Response:
        done = sandbox.webhooks.wait_idle(float(_body().get("timeout", 10)))
        return _json({"idle": done, **sandbox.webhooks.describe()}, 200 if done else 408)
