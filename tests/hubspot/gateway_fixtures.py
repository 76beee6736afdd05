"""Shared data for the gateway tests: the sandbox seed and settings pointing at a sandbox."""

from __future__ import annotations

from typing import Any

from handoff_worker.settings import Settings

TOKEN = "pat-test-token"
REASON_PROPERTY = "lost_reason_picklist"


def gateway_seed() -> dict[str, Any]:
    """A small portal: one deal with 3 contacts, one with 1,201 (to page), a pipeline whose
    'Closed lost' label lies, two workflows, two lists and a dropdown property."""
    contacts = [
        {"id": str(n), "email": f"c{n}@example.com", "lifecyclestage": "customer"} for n in range(1, 4)
    ]
    many = [{"id": str(1000 + n), "email": f"m{n}@example.com"} for n in range(1201)]
    return {
        "properties": {
            "deals": [
                {
                    "name": REASON_PROPERTY,
                    "label": "Lost reason",
                    "options": [{"value": "price", "label": "Price"}, {"value": "timing", "label": "Timing"}],
                }
            ]
        },
        "pipelines": [
            {
                "id": "default",
                "label": "Sales",
                "stages": [
                    {
                        "id": "appointmentscheduled",
                        "label": "Appointment",
                        "isClosed": False,
                        "probability": 0.2,
                    },
                    {"id": "closedwon", "label": "Won", "isClosed": True, "probability": 1.0},
                    {"id": "closedlost", "label": "Lost", "isClosed": True, "probability": 0.0},
                    {"id": "fake", "label": "Closed lost", "isClosed": True, "probability": 0.8},
                ],
            }
        ],
        "workflows": [
            {"id": 501, "name": "Price nurture", "flow_id": "9001"},
            {"id": 502, "name": "Off", "enabled": False, "flow_id": "9002"},
        ],
        "lists": [
            {"id": "77", "name": "Recycled"},
            {"id": "78", "name": "Active", "processingType": "DYNAMIC"},
        ],
        "contacts": contacts + many,
        "deals": [
            {
                "id": "500",
                "dealname": "Acme",
                "dealstage": "closedlost",
                REASON_PROPERTY: "price",
                "amount": "10",
            },
            {"id": "600", "dealname": "Big", "dealstage": "closedlost"},
        ],
        "associations": [{"deal": "500", "contact": str(n)} for n in range(1, 4)]
        + [{"deal": "600", "contact": c["id"]} for c in many],
    }


def settings_for(url: str, **overrides: str) -> Settings:
    env = {"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_BASE_URL": url, "HUBSPOT_TIMEOUT_SECONDS": "2"}
    env.update(overrides)
    return Settings.from_env(env, dotenv_path=None)


def hammer(url: str, redis_url: str, budget: str, calls: int, search: bool) -> tuple[int, list[str]]:
    """One worker process: `calls` requests through its own gateway and the shared limiter.
    Returns the requests it sent and the errors it met. Waits are real here."""
    import redis

    from handoff_worker.domain.models import ObjectType, SearchFilter
    from handoff_worker.hubspot.gateway import build_gateway

    connection = redis.Redis.from_url(redis_url)
    # A generous timeout: on a loaded machine a 2 s timeout fires, the retry sends the call twice,
    # and the test would measure the machine instead of the shared budget.
    settings = settings_for(
        url, HUBSPOT_RATE_LIMIT=budget, HUBSPOT_SEARCH_RATE_LIMIT=budget, HUBSPOT_TIMEOUT_SECONDS="30"
    )
    gateway = build_gateway(settings, connection)
    errors: list[str] = []
    for _ in range(calls):
        try:
            if search:
                gateway.search(
                    ObjectType.DEAL, [[SearchFilter("dealstage", "EQ", "closedlost")]], properties=[]
                )
            else:
                gateway.get_deal("500", ["dealname"])
        except Exception as exc:  # reported to the parent test, which fails on any
            errors.append(repr(exc))
    connection.close()
    return gateway.calls_made, errors
