"""Run the sandbox in-process (tests, the demo) and drive it through its control API."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Any

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from handoff_worker.sandbox.app import CONTROL_PREFIX, create_app
from handoff_worker.sandbox.limits import AccountLimits
from handoff_worker.sandbox.state import Sandbox, load_default_seed
from handoff_worker.sandbox.webhooks import (
    DEFAULT_CLIENT_SECRET,
    DEFAULT_RETRY_DELAYS_S,
    WebhookDispatcher,
    WebhookSettings,
)

DEFAULT_SEED = "default"
SERVE_POLL_S = 0.05  # how soon the serving loop notices it is told to stop


class _FaultAwareHandler(WSGIRequestHandler):
    """Drops the connection without a word when the sandbox is told to be unreachable."""

    def run_wsgi(self) -> None:
        sandbox: Sandbox = self.server.app.config["SANDBOX"]  # type: ignore[attr-defined]  # werkzeug's server keeps the app
        path = self.path.split("?", 1)[0]
        if not path.startswith(CONTROL_PREFIX) and sandbox.faults.unreachable(path):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        super().run_wsgi()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Quiet: the sandbox records requests itself (GET /_sandbox/requests)."""


def build_sandbox(
    seed: dict[str, Any] | str | None = DEFAULT_SEED,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    app_id: int = 424242,
    access_token: str | None = None,
    rate_limit: str = "100/10s",
    daily_limit: int = 500_000,
    webhook_url: str | None = None,
    retry_delays: tuple[float, ...] | list[float] = DEFAULT_RETRY_DELAYS_S,
) -> Sandbox:
    settings = WebhookSettings(
        url=webhook_url, client_secret=client_secret, app_id=app_id, retry_delays_s=list(retry_delays)
    )
    sandbox = Sandbox(
        limits=AccountLimits(rate_limit, daily_limit),
        webhooks=WebhookDispatcher(settings),
        access_token=access_token,
    )
    if isinstance(seed, str) and seed != DEFAULT_SEED:
        raise ValueError(f"seed={seed!r}: give {DEFAULT_SEED!r}, a seed object (see docs/sandbox.md) or None")
    sandbox.portal.seed(load_default_seed() if isinstance(seed, str) else (seed or {}))
    return sandbox


class SandboxServer:
    """A sandbox on a free local port, served by werkzeug's threaded server in a daemon thread."""

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        self._app = create_app(sandbox)
        self._host = host
        self._server = self._listen(port)
        self._port = self._server.server_port
        self.url = f"http://{host}:{self._port}"
        self.control = SandboxControl(self.url)
        self._thread = self._serving_thread()
        self._switch = threading.Lock()
        self._refusing = False
        self._reopen_timer: threading.Timer | None = None
        sandbox.connections = self

    def _listen(self, port: int) -> BaseWSGIServer:
        return make_server(self._host, port, self._app, threaded=True, request_handler=_FaultAwareHandler)

    def _serving_thread(self) -> threading.Thread:
        return threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SERVE_POLL_S},
            name="sandbox-http",
            daemon=True,
        )

    @classmethod
    def start(
        cls,
        seed: dict[str, Any] | str | None = DEFAULT_SEED,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        app_id: int = 424242,
        access_token: str | None = None,
        rate_limit: str = "100/10s",
        webhook_url: str | None = None,
        retry_delays: tuple[float, ...] | list[float] = DEFAULT_RETRY_DELAYS_S,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> SandboxServer:
        sandbox = build_sandbox(
            seed=seed,
            client_secret=client_secret,
            app_id=app_id,
            access_token=access_token,
            rate_limit=rate_limit,
            webhook_url=webhook_url,
            retry_delays=retry_delays,
        )
        server = cls(sandbox, host, port)
        server._thread.start()
        return server

    def wait(self) -> None:
        """Block until the server stops (the CLI waits here until Ctrl-C)."""
        self._thread.join()

    def stop(self) -> None:
        self.accept_connections()
        self._server.shutdown()
        self._server.server_close()
        self.sandbox.webhooks.stop()
        self.control.close()

    def refuse_connections(self, seconds: float | None = None) -> None:
        """Stop listening: connections are refused, as when HubSpot cannot be reached at all.

        A client then fails before sending anything. Lasts `seconds`, or until accept_connections()
        (the control API is unreachable meanwhile, so it comes back only from this process).
        """
        with self._switch:
            if self._refusing:
                return
            self._refusing = True
            # The loop stops within SERVE_POLL_S; only a closed socket refuses (a listening one
            # would queue the connection and leave the client waiting for an answer instead).
            self._server.shutdown()
            self._server.server_close()
            if seconds is not None:
                self._reopen_timer = threading.Timer(seconds, self.accept_connections)
                self._reopen_timer.daemon = True
                self._reopen_timer.start()

    @property
    def refusing_connections(self) -> bool:
        return self._refusing

    def accept_connections(self) -> None:
        """Listen again on the same port after refuse_connections(); nothing when already listening."""
        with self._switch:
            if self._reopen_timer is not None:
                self._reopen_timer.cancel()
                self._reopen_timer = None
            if not self._refusing:
                return
            self._server = self._listen(self._port)
            self._thread = self._serving_thread()
            self._thread.start()
            self._refusing = False


@dataclass
class SandboxControl:
    """A small client for /_sandbox/; each method mirrors one control endpoint."""

    url: str
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self._session.request(
            method,
            f"{self.url}{CONTROL_PREFIX}{path}",
            json=body,
            params=params or None,
            timeout=self.timeout_s,
        )
        if response.status_code >= 400 and response.status_code != 408:
            raise RuntimeError(
                f"sandbox control {method} {path} answered {response.status_code}: {response.text[:500]}"
            )
        return response.json() if response.content else None

    # state
    def reset(self, seed: dict[str, Any] | str | None = DEFAULT_SEED) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/reset", {"seed": seed})
        return result

    def seed(self, seed: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/seed", seed)
        return result

    def configure(self, **settings: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", "/config", settings)
        return result

    def config(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/config")
        return result

    # faults
    def set_faults(self, **faults: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", "/faults", faults)
        return result

    def fail_next(self, count: int, status: int, path_prefix: str = "/", method: str | None = None) -> None:
        rule = {"count": count, "status": status, "path_prefix": path_prefix, "method": method}
        self.set_faults(fail_next=[rule])

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def add_faults(self, **rules: list[dict[str, Any]]) -> dict[str, Any]:
        """Add rules to the faults already set (set_faults replaces them all)."""
        current: dict[str, Any] = self._call("GET", "/faults")
        for name, added in rules.items():
            current[name] = [*current.get(name, []), *added]
        return self.set_faults(**current)

    def fail_call(
        self,
        nth: int,
        status: int,
        path_prefix: str = "/",
        method: str | None = None,
        body: Any = None,
        count: int = 1,
    ) -> None:
        """The `nth` matching request from now (and `count` - 1 after it) answers `status` / `body`."""
        rule = {"count": count, "status": status, "path_prefix": path_prefix, "method": method}
        self.add_faults(fail_next=[{**rule, "skip": nth - 1, "body": body}])

    def ignore_writes(
        self,
        object_type: str,
        property_name: str,
        object_id: str | None = None,
        value: str | None = None,
        count: int | None = None,
    ) -> None:
        """API writes of the property answer success and change nothing (every one unless `count`)."""
        rule = {"object_type": object_type, "property": property_name, "object_id": object_id}
        self.add_faults(ignore_writes=[{**rule, "value": value, "count": count}])

    def delete_after(
        self, object_type: str, object_id: str, path_prefix: str, method: str | None = None, after: int = 1
    ) -> None:
        """Delete the record (as a rep) once the `after`-th matching request from now is answered."""
        rule = {"object_type": object_type, "object_id": object_id, "path_prefix": path_prefix}
        self.add_faults(delete_after=[{**rule, "method": method, "after": after}])

    def refuse_connections_after(
        self, path_prefix: str, method: str | None = None, after: int = 1, seconds: float | None = None
    ) -> None:
        """Refuse connections once the `after`-th matching request is answered (see SandboxServer)."""
        rule = {"path_prefix": path_prefix, "method": method, "after": after, "seconds": seconds}
        self.add_faults(refuse_connections_after=[rule])

    # acting as a sales rep
    def rep_create(
        self, object_type: str, properties: dict[str, Any], associations: list | None = None
    ) -> dict:
        result: dict[str, Any] = self._call(
            "POST", f"/rep/{object_type}", {"properties": properties, "associations": associations or []}
        )
        return result

    def rep_update(self, object_type: str, object_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "PATCH", f"/rep/{object_type}/{object_id}", {"properties": properties}
        )
        return result

    def lose_deal(self, deal_id: str, reason: str | None, stage: str = "closedlost") -> dict[str, Any]:
        properties = {"dealstage": stage}
        if reason is not None:
            properties["closed_lost_reason"] = reason
        return self.rep_update("deals", deal_id, properties)

    def rep_delete(self, object_type: str, object_id: str) -> None:
        self._call("DELETE", f"/rep/{object_type}/{object_id}")

    def rep_merge(self, object_type: str, primary_id: str, merged_id: str) -> None:
        self._call("POST", f"/rep/{object_type}/merge", {"primaryId": primary_id, "mergedId": merged_id})

    def associate(self, deal_id: str, contact_id: str) -> None:
        self._call("POST", "/rep/associate", {"dealId": deal_id, "contactId": contact_id})

    def dissociate(self, deal_id: str, contact_id: str) -> None:
        self._call("POST", "/rep/dissociate", {"dealId": deal_id, "contactId": contact_id})

    # reading what happened
    def objects(self, object_type: str, ids: list[str] | None = None) -> list[dict[str, Any]]:
        if not ids:
            everything: list[dict[str, Any]] = self._call("GET", f"/objects/{object_type}")["results"]
            return everything
        # In chunks: thousands of ids in one query string pass the server's URI limit (414).
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            chunk = ",".join(ids[start : start + 500])
            found += self._call("GET", f"/objects/{object_type}", ids=chunk)["results"]
        return found

    def object(self, object_type: str, object_id: str) -> dict[str, Any]:
        found = self.objects(object_type, [object_id])
        if not found:
            raise KeyError(f"no {object_type} {object_id} in the sandbox")
        return found[0]

    def associated_ids(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        result: list[str] = self._call("GET", f"/associations/{from_type}/{from_id}/{to_type}")["ids"]
        return result

    def enrollments(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/enrollments")
        return result

    def list_memberships(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/lists")
        return result

    def requests(self, path_prefix: str = "") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/requests", path_prefix=path_prefix)["requests"]
        return result

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def changes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/changes")["changes"]
        return result

    def webhooks(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/webhooks")
        return result

    def wait_for_webhooks(self, timeout: float = 10.0) -> dict[str, Any]:
        """Block until every webhook delivery has succeeded or given up; raises on timeout."""
        result: dict[str, Any] = self._call("POST", "/webhooks/wait", {"timeout": timeout})
        if not result["idle"]:
            raise TimeoutError(f"webhook deliveries still pending after {timeout}s: {result['pending']}")
        return result
