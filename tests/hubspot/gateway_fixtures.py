"""Shared data for the gateway tests: the sandbox seed and settings pointing at a sandbox."""

from __future__ import annotations

import socket
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


def unused_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
