"""Checks a process makes before it takes traffic or tasks, and the one line it exits with.

A worker without HUBSPOT_ACCESS_TOKEN or without readable nurture rules would acknowledge every
task and do nothing; a web process without HUBSPOT_CLIENT_SECRET would answer every webhook 401
while HubSpot gives up on them. Both refuse to start instead, with one line on stderr that names
what to fix, and exit with EXIT_CONFIG (the worker's check, which builds its wiring, is
`worker_guards.check_worker`).

The ledger lives in Redis: `durability_warnings` says when that Redis would lose it (no
persistence) or drop it when full (an eviction policy). Those are warnings, not refusals: a
development Redis often runs without persistence.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import redis

from handoff_worker.errors import HandoffError, NurtureConfigError
from handoff_worker.settings import Settings

EXIT_CONFIG = 78  # sysexits.h EX_CONFIG: a configuration error, not worth restarting for
WORKER_REQUIRES = ("HUBSPOT_ACCESS_TOKEN",)
WEB_REQUIRES = ("HUBSPOT_CLIENT_SECRET",)
SAFE_EVICTION_POLICY = "noeviction"


def one_line(exc: HandoffError) -> str:
    """The error as one line: a config error's first problem, with a pointer to the rest."""
    if isinstance(exc, NurtureConfigError) and exc.problems:
        more = len(exc.problems) - 1
        rest = f" (and {more} more: run `handoff-worker config check`)" if more else ""
        first = " ".join(exc.problems[0].split())
        return (first if first.startswith(str(exc.path)) else f"{exc.path}: {first}") + rest
    return " ".join(str(exc).split())


def refuse_to_start(process: str, exc: HandoffError) -> NoReturn:
    """One line on stderr, then exit: the line is all a person reading the log needs."""
    sys.stderr.write(f"handoff-worker {process} not started: {one_line(exc)}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_CONFIG)


def check_web() -> Settings:
    """The web process's settings and rules, or exit with one line naming what is wrong.

    Run by gunicorn_conf.py while gunicorn reads its configuration: before it binds, logs or boots
    a worker, so the one line is all it prints."""
    from handoff_worker.nurture_config.store import RedisLastGood, RulesStore
    from handoff_worker.state import redis_client

    try:
        settings = Settings.from_env(require=WEB_REQUIRES)
        client = redis_client(settings)
        last_good = RedisLastGood(client, settings.handoff_config)
        RulesStore(settings.handoff_config, last_good=last_good).current()
    except HandoffError as exc:
        refuse_to_start("web", exc)
    warn_about_durability("web", client)
    return settings


def missing_settings(settings: Settings, names: tuple[str, ...]) -> list[str]:
    """Which of `names` are unset in `settings` (for /readyz, which runs after start-up)."""
    values = {
        "HUBSPOT_ACCESS_TOKEN": settings.hubspot_access_token,
        "HUBSPOT_CLIENT_SECRET": ",".join(settings.hubspot_client_secrets),
    }
    return [name for name in names if not values.get(name)]


def warn_about_durability(process: str, client: redis.Redis) -> None:
    """One line on stderr per way this Redis can lose the ledger (logging is not set up yet)."""
    for warning in durability_warnings(client):
        sys.stderr.write(f"handoff-worker {process}: warning: {warning}\n")
    sys.stderr.flush()


def _config_value(client: redis.Redis, name: str) -> str | None:
    """A `CONFIG GET` value, or None where CONFIG is disabled (managed Redis services)."""
    try:
        answer = client.config_get(name)
    except redis.ResponseError:
        return None
    value = answer.get(name) if isinstance(answer, dict) else None
    return None if value is None else str(value)


def durability_warnings(client: redis.Redis) -> list[str]:
    """What about this Redis can lose the ledger; empty when it is set up for production."""
    try:
        appendonly = _config_value(client, "appendonly")
        save = _config_value(client, "save")
        policy = _config_value(client, "maxmemory-policy")
        if appendonly is None:
            persistence = client.info("persistence")
            appendonly = "yes" if persistence.get("aof_enabled") in (1, "1") else "no"
        if policy is None:
            policy = str(client.info("memory").get("maxmemory_policy", ""))
    except redis.RedisError as exc:
        return [f"could not check Redis persistence (REDIS_URL): {type(exc).__name__}"]
    warnings = []
    if appendonly != "yes" and save is not None and not save.strip():
        warnings.append(
            "Redis has neither AOF nor RDB persistence: a Redis restart loses the handoff ledger "
            "and queued handoffs (set appendonly yes; see docs/operations.md)"
        )
    if policy and policy != SAFE_EVICTION_POLICY:
        warnings.append(
            f"Redis maxmemory-policy is {policy}: when full it evicts keys, the handoff ledger, locks "
            f"and queued handoffs among them (set maxmemory-policy {SAFE_EVICTION_POLICY}; "
            "see docs/operations.md)"
        )
    return warnings
