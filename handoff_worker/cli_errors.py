"""What an ops command says when it cannot do its job: one line for a person that names the setting
to look at (its value masked) and what to do, and a non-zero exit. The traceback is for `--debug`."""

from __future__ import annotations

import re
from importlib import metadata

import redis
from kombu.exceptions import OperationalError as BrokerError

from handoff_worker.errors import HandoffError
from handoff_worker.settings import Settings, mask_url, redis_url_origin

DEBUG_HINT = "--debug shows the traceback"


def explain(exc: Exception) -> str:
    """One line that tells a person what went wrong and what to do, with no secret in it."""
    settings = _settings_or_none()
    cause = _known_cause(exc)
    if isinstance(cause, HandoffError):
        return _scrub(str(cause), settings)
    if isinstance(cause, redis.RedisError | BrokerError):
        return _redis_failure(cause, settings)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return _missing_module(exc.name)
    text = _scrub(str(exc), settings) or "(no message)"
    return f"stopped by an unexpected {type(exc).__name__}: {text} ({DEBUG_HINT}; please report it)"


def _redis_failure(exc: BaseException, settings: Settings | None) -> str:
    where = f"Redis at {mask_url(settings.redis_url) if settings else '(unreadable REDIS_URL)'}"
    where += f" ({redis_url_origin() or 'REDIS_URL from the environment'})"
    detail = _scrub(str(exc), settings).rstrip(". ") or type(exc).__name__
    if isinstance(exc, redis.AuthenticationError) or re.search(r"WRONGPASS|NOAUTH|NOPERM", detail):
        return f"{where} refused the credentials: {detail}. Fix the user name or password in REDIS_URL"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | BrokerError):
        return (
            f"cannot reach {where}: {detail}. Start Redis, or set REDIS_URL (in the environment or "
            ".env) to the Redis the worker uses, then run the command again"
        )
    return (
        f"{where} refused a command: {detail}. Check that Redis's log and settings (memory, "
        "persistence, a read-only replica) let it take writes"
    )


def _missing_module(module: str) -> str:
    extra = _extra_providing(module.partition(".")[0])
    how = f"pip install 'handoff-worker[{extra}]'" if extra else "reinstall handoff-worker"
    return f"this command needs the Python module {module!r}, which is not installed: {how}"


def _extra_providing(top_module: str) -> str | None:
    """The extra of handoff-worker's own metadata that lists a distribution named like the module."""
    try:
        requirements = metadata.requires("handoff-worker") or []
    except metadata.PackageNotFoundError:
        return None
    wanted = _normalise(top_module)
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if name and extra and _normalise(name.group()) == wanted:
            return extra.group(1)
    return None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _known_cause(exc: BaseException) -> BaseException:
    """The first of our own, Redis's or the broker's errors down the chain: a wrapper says less."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, HandoffError | redis.RedisError | BrokerError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return exc


def _settings_or_none() -> Settings | None:
    try:
        return Settings.from_env()
    except HandoffError:
        return None


def _scrub(text: str, settings: Settings | None) -> str:
    """`text` without any secret of the settings in force; on one line."""
    if settings is not None:
        secrets = [settings.redis_url, settings.hubspot_access_token, *settings.hubspot_client_secrets]
        password = _redis_password(settings.redis_url)
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            text = text.replace(secret, mask_url(secret) if secret == settings.redis_url else "***")
        if password and len(password) >= 3:
            text = text.replace(password, "***")
    return " ".join(text.split())


def _redis_password(url: str) -> str | None:
    from redis.connection import parse_url

    try:
        password = parse_url(url).get("password")
    except ValueError:
        return None
    return password if isinstance(password, str) else None
