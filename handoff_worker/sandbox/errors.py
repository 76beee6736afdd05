"""HubSpot-shaped error answers raised by the sandbox's portal and turned into JSON by the app."""

from __future__ import annotations

import uuid
from typing import Any


class SandboxApiError(Exception):
    """An API error the sandbox answers as HubSpot would: `status` and a JSON body in HubSpot's shape.

    Named apart from the gateway's `HubSpotError`: this is the other side of the wire.
    """

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
            "category": self.category,
            **self.extra,
        }


def not_found(message: str) -> SandboxApiError:
    return SandboxApiError(404, "OBJECT_NOT_FOUND", message)


def validation_error(message: str, **extra: Any) -> SandboxApiError:
    return SandboxApiError(400, "VALIDATION_ERROR", message, **extra)


def batch_error(category: str, message: str, ids: list[str]) -> dict[str, Any]:
    """One entry of a 207 answer's `errors` list, with every field the SDK's StandardError needs."""
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": {"ids": ids},
        "errors": [],
        "links": {},
    }
