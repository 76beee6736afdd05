"""Faults the sandbox injects on purpose, so tests and drills choose failures through the wire.

Random ones (a share of 429s or 5xxs, latency, a dropped connection) for drills; deterministic
ones for tests: fail the n-th matching call with a status and body, accept a write but leave the
value unchanged (as HubSpot does for a backward lifecycle stage), delete a record after the n-th
matching request, stop accepting connections after the n-th matching request.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class FailNext:
    """The `count` matching requests after the first `skip` ones answer `status` (and `body`)."""

    count: int
    status: int
    path_prefix: str = "/"
    method: str | None = None
    skip: int = 0
    body: Any = None  # JSON answered instead of the sandbox's own error body for `status`


@dataclass
class IgnoreWrite:
    """API writes of `property` (to `value`, when given) are answered as done but change nothing."""

    object_type: str
    property: str
    object_id: str | None = None  # None: every record of the type
    value: str | None = None  # None: any value
    count: int | None = None  # None: every matching write until the faults are cleared


@dataclass
class DeleteAfter:
    """Once the `after`-th matching request is answered, the record is deleted as a rep would."""

    object_type: str
    object_id: str
    path_prefix: str = "/"
    method: str | None = None
    after: int = 1


@dataclass
class RefuseConnectionsAfter:
    """Once the `after`-th matching request is answered, new connections are refused.

    For `seconds`, or until the server is told to accept again (`SandboxServer.accept_connections`):
    the control API is unreachable too while connections are refused.
    """

    path_prefix: str = "/"
    method: str | None = None
    after: int = 1
    seconds: float | None = None


@dataclass(frozen=True)
class InjectedAnswer:
    status: int
    body: Any = None


@dataclass(frozen=True)
class AfterAnswer:
    """What happens once a request has been answered: records to delete, connections to refuse."""

    deletions: tuple[DeleteAfter, ...] = ()
    refusal: RefuseConnectionsAfter | None = None


_RULE_LISTS: dict[str, type] = {
    "fail_next": FailNext,
    "ignore_writes": IgnoreWrite,
    "delete_after": DeleteAfter,
    "refuse_connections_after": RefuseConnectionsAfter,
}


@dataclass
class FaultSettings:
    rate_limit_share: float = 0.0  # share of requests answered 429 TEN_SECONDLY_ROLLING
    server_error_share: float = 0.0  # share answered 502 or 503
    latency_ms: int = 0
    unreachable: bool = False  # close the connection without answering
    retry_after_s: int | None = None  # a Retry-After header on injected 429s
    path_prefixes: list[str] = field(default_factory=list)  # empty: every API path
    fail_next: list[FailNext] = field(default_factory=list)
    ignore_writes: list[IgnoreWrite] = field(default_factory=list)
    delete_after: list[DeleteAfter] = field(default_factory=list)
    refuse_connections_after: list[RefuseConnectionsAfter] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FaultSettings:
        """Settings from the control API's JSON; TypeError names the key that is not known."""
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise TypeError(f"unknown keys {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        settings = cls(**{k: v for k, v in raw.items() if k not in _RULE_LISTS})
        for name, rule_type in _RULE_LISTS.items():
            rules = raw.get(name) or []
            if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
                raise TypeError(f"{name} must be a list of objects")
            setattr(settings, name, [rule_type(**rule) for rule in rules])
        return settings


class ConnectionSwitch(Protocol):
    """The server side that can stop accepting connections (testing.SandboxServer)."""

    def refuse_connections(self, seconds: float | None = None) -> None: ...


def _matches(rule: FailNext | DeleteAfter | RefuseConnectionsAfter, method: str, path: str) -> bool:
    return path.startswith(rule.path_prefix) and rule.method in (None, method)


class Faults:
    """Decides, per request, whether to misbehave. Seeded random so drills can be replayed."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.settings = FaultSettings()

    def set(self, settings: FaultSettings) -> None:
        with self._lock:
            self.settings = settings

    def clear(self) -> None:
        self.set(FaultSettings())

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.settings)

    def _applies(self, path: str) -> bool:
        prefixes = self.settings.path_prefixes
        return not prefixes or any(path.startswith(p) for p in prefixes)

    def unreachable(self, path: str) -> bool:
        with self._lock:
            return self.settings.unreachable and self._applies(path)

    def latency_s(self, path: str) -> float:
        with self._lock:
            return self.settings.latency_ms / 1000 if self._applies(path) else 0.0

    def injected(self, method: str, path: str) -> InjectedAnswer | None:
        """The answer to give instead of the real one, or None to behave."""
        with self._lock:
            for rule in self.settings.fail_next:
                if rule.count <= 0 or not _matches(rule, method, path):
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                rule.count -= 1
                return InjectedAnswer(rule.status, rule.body)
            if not self._applies(path):
                return None
            roll = self._random.random()
            if roll < self.settings.rate_limit_share:
                return InjectedAnswer(429)
            if roll < self.settings.rate_limit_share + self.settings.server_error_share:
                return InjectedAnswer(self._random.choice((502, 503)))
            return None

    def swallows_write(self, object_type: str, object_id: str, name: str, value: str) -> bool:
        """Whether an API write of `name` = `value` is to be answered as done and not made."""
        with self._lock:
            for rule in self.settings.ignore_writes:
                if (
                    rule.object_type == object_type
                    and rule.property == name
                    and rule.object_id in (None, object_id)
                    and rule.value in (None, value)
                    and (rule.count is None or rule.count > 0)
                ):
                    if rule.count is not None:
                        rule.count -= 1
                    return True
            return False

    def after_answer(self, method: str, path: str) -> AfterAnswer:
        """Count an answered request against the triggers; return those that fire now."""
        with self._lock:
            deletions = []
            for deletion in self.settings.delete_after:
                if deletion.after > 0 and _matches(deletion, method, path):
                    deletion.after -= 1
                    if deletion.after == 0:
                        deletions.append(deletion)
            refusal = None
            for rule in self.settings.refuse_connections_after:
                if rule.after > 0 and _matches(rule, method, path):
                    rule.after -= 1
                    if rule.after == 0:
                        refusal = rule
            return AfterAnswer(tuple(deletions), refusal)
