"""HubSpot's API paths as the sandbox serves them: CRM objects, pipelines, associations,
automation and lists, properties and owners. Auth, limits and faults are applied before these run
(app.py)."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Flask, Response, request

from handoff_worker.sandbox.errors import SandboxApiError, batch_error, validation_error
from handoff_worker.sandbox.records import iso_from_ms
from handoff_worker.sandbox.search import search
from handoff_worker.sandbox.state import Sandbox

MAX_BATCH = 100
MAX_ASSOCIATION_BATCH = 1000


def install_api(app: Flask, sandbox: Sandbox) -> None:
    _install_objects(app, sandbox)
    _install_associations(app, sandbox)
    _install_automation(app, sandbox)
    _install_schema(app, sandbox)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, mimetype="application/json")


# ----- CRM objects ----------------------------------------------------------------------------------


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise validation_error("Request body must be a JSON object.")
    return body


def _property_names(raw: str | None) -> list[str] | None:
    names = [n for n in (raw or "").split(",") if n]
    names += [n for n in request.args.getlist("properties")[1:] if n]
    return names or None


def _batch_answer(results: list[Any], errors: list[dict[str, Any]], started: int) -> Response:
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": iso_from_ms(started),
        "completedAt": iso_from_ms(int(time.time() * 1000)),
    }
    if errors:
        body["errors"] = errors
        body["numErrors"] = sum(len(e["context"]["ids"]) for e in errors)
        return json_response(body, 207)
    return json_response(body)


def _check_batch_size(inputs: list[Any], limit: int = MAX_BATCH) -> None:
    if len(inputs) > limit:
        raise validation_error(f"Batch input is limited to {limit} inputs, got {len(inputs)}.")


def _install_objects(app: Flask, sandbox: Sandbox) -> None:
    portal, publish = sandbox.portal, sandbox.webhooks.publish

    @app.get("/crm/v3/objects/<object_type>/<object_id>")
    def read_object(object_type: str, object_id: str) -> Response:
        return json_response(
            portal.read(object_type, object_id, _property_names(request.args.get("properties")))
        )

    @app.post("/crm/v3/objects/<object_type>")
    def create_object(object_type: str) -> Response:
        body = _body()
        created, changes = portal.create(
            object_type, body.get("properties", {}), "INTEGRATION", body.get("associations")
        )
        publish(changes)
        return json_response(created, 201)

    @app.patch("/crm/v3/objects/<object_type>/<object_id>")
    def update_object(object_type: str, object_id: str) -> Response:
        updated, changes = portal.update(object_type, object_id, _body().get("properties", {}), "INTEGRATION")
        publish(changes)
        return json_response(updated)

    @app.delete("/crm/v3/objects/<object_type>/<object_id>")
    def archive_object(object_type: str, object_id: str) -> Response:
        publish(portal.delete(object_type, object_id, "INTEGRATION"))
        return Response(status=204)

    @app.post("/crm/v3/objects/<object_type>/batch/read")
    def batch_read(object_type: str) -> Response:
        started = int(time.time() * 1000)
        body = _body()
        inputs = body.get("inputs", [])
        _check_batch_size(inputs)
        found, errors = portal.batch_read(
            object_type, [str(i.get("id")) for i in inputs], body.get("properties") or None
        )
        return _batch_answer(found, errors, started)

    @app.post("/crm/v3/objects/<object_type>/batch/update")
    def batch_update(object_type: str) -> Response:
        started = int(time.time() * 1000)
        inputs = _body().get("inputs", [])
        _check_batch_size(inputs)
        results, errors, changes = portal.batch_update(object_type, inputs, "INTEGRATION")
        publish(changes)
        return _batch_answer(results, errors, started)

    @app.post("/crm/v3/objects/<object_type>/batch/create")
    def batch_create(object_type: str) -> Response:
        started = int(time.time() * 1000)
        inputs = _body().get("inputs", [])
        _check_batch_size(inputs)
        results = []
        for item in inputs:
            created, changes = portal.create(
                object_type, item.get("properties", {}), "INTEGRATION", item.get("associations")
            )
            publish(changes)
            results.append(created)
        response = _batch_answer(results, [], started)
        response.status_code = 201
        return response

    @app.post("/crm/v3/objects/<object_type>/search")
    def search_objects(object_type: str) -> Response:
        return json_response(search(portal, object_type, _body()))

    @app.get("/crm/v3/pipelines/<object_type>")
    def pipelines(object_type: str) -> Response:
        with portal.lock:
            chosen = portal.pipelines if portal.resolve_type(object_type) == "deals" else []
            return json_response({"results": [_pipeline_to_api(p) for p in chosen]})


def _pipeline_to_api(pipeline: dict[str, Any]) -> dict[str, Any]:
    stamp = "2024-01-01T00:00:00.000Z"
    stages = [
        {
            "id": stage["id"],
            "label": stage.get("label", stage["id"]),
            "displayOrder": stage.get("displayOrder", i),
            "metadata": {
                "isClosed": "true" if stage.get("isClosed") else "false",
                "probability": str(float(stage.get("probability", 0.0))),
            },
            "createdAt": stamp,
            "updatedAt": stamp,
            "archived": False,
            "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
        }
        for i, stage in enumerate(pipeline.get("stages", []))
    ]
    return {
        "id": pipeline["id"],
        "label": pipeline.get("label", pipeline["id"]),
        "displayOrder": pipeline.get("displayOrder", 0),
        "stages": stages,
        "createdAt": stamp,
        "updatedAt": stamp,
        "archived": False,
    }


# ----- associations v4 ------------------------------------------------------------------------------


def _install_associations(app: Flask, sandbox: Sandbox) -> None:
    portal = sandbox.portal

    @app.get("/crm/v4/objects/<from_type>/<from_id>/associations/<to_type>")
    def list_associations(from_type: str, from_id: str, to_type: str) -> Response:
        if not portal.exists(from_type, from_id):
            raise SandboxApiError(404, "OBJECT_NOT_FOUND", f"{from_type} {from_id} does not exist.")
        limit = min(int(request.args.get("limit", 500)), 500)
        after = int(request.args.get("after") or 0)
        linked = portal.associated_ids(from_type, from_id, to_type)
        types = portal.association_types(from_type, to_type)
        page = linked[after : after + limit]
        body: dict[str, Any] = {"results": [{"toObjectId": int(i), "associationTypes": types} for i in page]}
        if after + limit < len(linked):
            body["paging"] = {"next": {"after": str(after + limit), "link": None}}
        return json_response(body)

    @app.post("/crm/v4/associations/<from_type>/<to_type>/batch/read")
    def batch_read_associations(from_type: str, to_type: str) -> Response:
        started = int(time.time() * 1000)
        inputs = _body().get("inputs", [])
        _check_batch_size(inputs, MAX_ASSOCIATION_BATCH)
        types = portal.association_types(from_type, to_type)
        results, missing = [], []
        for item in inputs:
            from_id = str(item.get("id"))
            if not portal.exists(from_type, from_id):
                missing.append(from_id)
                continue
            linked = portal.associated_ids(from_type, from_id, to_type)
            results.append(
                {
                    "from": {"id": from_id},
                    "to": [{"toObjectId": int(i), "associationTypes": types} for i in linked],
                }
            )
        errors = []
        if missing:
            errors.append(batch_error("OBJECT_NOT_FOUND", f"No {from_type} with ids {missing}.", missing))
        return _batch_answer(results, errors, started)


# ----- automation and lists -------------------------------------------------------------------------


def _install_automation(app: Flask, sandbox: Sandbox) -> None:
    portal = sandbox.portal

    @app.post("/automation/v2/workflows/<int:workflow_id>/enrollments/contacts/<path:email>")
    def enroll(workflow_id: int, email: str) -> Response:
        portal.enroll(workflow_id, email)
        return Response(status=204)

    @app.delete("/automation/v2/workflows/<int:workflow_id>/enrollments/contacts/<path:email>")
    def unenroll(workflow_id: int, email: str) -> Response:
        portal.unenroll(workflow_id, email)
        return Response(status=204)

    @app.get("/automation/v2/workflows/enrollments/contacts/<contact_id>")
    def enrollments_of(contact_id: str) -> Response:
        return json_response(portal.enrollments_of(contact_id))

    @app.get("/automation/v4/flows")
    def flows() -> Response:
        limit = int(request.args.get("limit", 100))
        after = int(request.args.get("after") or 0)
        every = portal.flows()
        body: dict[str, Any] = {"results": every[after : after + limit]}
        if after + limit < len(every):
            body["paging"] = {"next": {"after": str(after + limit)}}
        return json_response(body)

    @app.get("/automation/v4/flows/<flow_id>")
    def flow(flow_id: str) -> Response:
        match = next((f for f in portal.flows() if f["id"] == flow_id), None)
        if match is None:
            raise SandboxApiError(404, "OBJECT_NOT_FOUND", f"Flow {flow_id} does not exist.")
        return json_response(match)

    @app.post("/automation/v4/workflow-id-mappings/batch/read")
    def workflow_id_mappings() -> Response:
        started = int(time.time() * 1000)
        inputs = _body().get("inputs", [])
        _check_batch_size(inputs)
        results, errors = portal.workflow_id_mappings(inputs)
        return _batch_answer(results, errors, started)

    @app.get("/crm/v3/lists/<list_id>")
    def get_list(list_id: str) -> Response:
        return json_response(portal.get_list(list_id))

    @app.put("/crm/v3/lists/<list_id>/memberships/add")
    def add_members(list_id: str) -> Response:
        record_ids = request.get_json(silent=True)
        if not isinstance(record_ids, list):
            raise validation_error("Request body must be a JSON array of record ids.")
        return json_response(portal.add_to_list(list_id, [str(r) for r in record_ids]))

    @app.put("/crm/v3/lists/<list_id>/memberships/remove")
    def remove_members(list_id: str) -> Response:
        record_ids = request.get_json(silent=True)
        if not isinstance(record_ids, list):
            raise validation_error("Request body must be a JSON array of record ids.")
        return json_response(portal.remove_from_list(list_id, [str(r) for r in record_ids]))

    @app.get("/crm/v3/lists/<list_id>/memberships")
    def list_members(list_id: str) -> Response:
        limit = int(request.args.get("limit", 100))
        if not 1 <= limit <= 250:
            raise validation_error("limit must be between 1 and 250.")
        return json_response(portal.list_members_page(list_id, request.args.get("after"), limit))


def _install_schema(app: Flask, sandbox: Sandbox) -> None:
    portal = sandbox.portal

    @app.get("/crm/v3/properties/<object_type>/<name>")
    def get_property(object_type: str, name: str) -> Response:
        return json_response(portal.get_property(object_type, name))

    @app.post("/crm/v3/properties/<object_type>")
    def create_property(object_type: str) -> Response:
        return json_response(portal.create_property(object_type, _body()), 201)

    @app.get("/crm/v3/owners/")
    @app.get("/crm/v3/owners")
    def owners() -> Response:
        with portal.lock:
            return json_response({"results": list(portal.owners)})
