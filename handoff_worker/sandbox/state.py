"""What one sandbox process holds, shared by the HubSpot API routes and the control API."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from handoff_worker.sandbox.faults import ConnectionSwitch, Faults
from handoff_worker.sandbox.limits import AccountLimits
from handoff_worker.sandbox.portal import Portal
from handoff_worker.sandbox.webhooks import WebhookDispatcher, WebhookSettings

MAX_REQUEST_LOG = 100_000


def load_default_seed() -> dict[str, Any]:
    text = resources.files("handoff_worker.sandbox").joinpath("default_seed.json").read_text()
    seed: dict[str, Any] = json.loads(text)
    return seed


@dataclass
class Sandbox:
    """Everything one sandbox process holds: the portal, limits, faults, webhooks and logs."""

    portal: Portal = field(default_factory=Portal)
    limits: AccountLimits = field(default_factory=AccountLimits)
    faults: Faults = field(default_factory=Faults)
    webhooks: WebhookDispatcher = field(default_factory=lambda: WebhookDispatcher(WebhookSettings()))
    access_token: str | None = None
    connections: ConnectionSwitch | None = None  # set by the server that can refuse connections
    requests_log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_REQUEST_LOG))
    log_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.portal.write_faults is None:
            self.portal.write_faults = self.faults

    def record(self, entry: dict[str, Any]) -> None:
        with self.log_lock:
            self.requests_log.append(entry)

    def logged(self, path_prefix: str = "") -> list[dict[str, Any]]:
        with self.log_lock:
            return [e for e in self.requests_log if e["path"].startswith(path_prefix)]
