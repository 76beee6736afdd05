"""Settings: the environment (and `.env`) read once into one frozen object.

A missing or malformed value stops start-up with a message that names the variable and shows a
good value. Secrets are kept out of `repr()` so they never reach a log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from handoff_worker.errors import SettingsError
from handoff_worker.logs import LOG_FORMATS, LOG_LEVELS

DEFAULT_BASE_URL = "https://api.hubapi.com"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|m)\s*$")
# Everything between the scheme and the LAST "@" is credentials (a password may hold an unencoded
# "@" or "/"); the scheme part also matches typos such as "redis//" or "redis:" so they stay readable.
_URL_CREDENTIALS_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*(?::/*|/+))?.*@", re.S)
_URL_PASSWORD_PARAM_RE = re.compile(r"(?i)([?&;]password=)[^&;#]*")
# .env.example's token and secret: zeros, with the token's `pat-na1-` prefix.
_PLACEHOLDER_RE = re.compile(r"^(pat-[a-z0-9]+-)?[0-]+$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class RateLimit:
    """`requests` allowed in any window of `window_seconds`."""

    requests: int
    window_seconds: float

    def __str__(self) -> str:
        return f"{self.requests}/{self.window_seconds:g}s"

    @classmethod
    def parse(cls, text: str, *, variable: str, example: str) -> RateLimit:
        match = _RATE_RE.match(text)
        if not match:
            raise SettingsError(
                f"{variable}={text!r} is not a rate limit: write requests/window, e.g. {example}"
            )
        count, amount, unit = match.groups()
        size = float(amount) if amount else 1.0
        seconds = size / 1000 if unit == "ms" else size * 60 if unit == "m" else size
        if int(count) <= 0 or seconds <= 0:
            raise SettingsError(f"{variable}={text!r} must allow at least 1 request, e.g. {example}")
        return cls(int(count), seconds)


@dataclass(frozen=True)
class Settings:
    hubspot_access_token: str = field(default="", repr=False)
    # Several secrets, comma separated, so a secret can be rotated without downtime.
    hubspot_client_secrets: tuple[str, ...] = field(default=(), repr=False)
    hubspot_app_id: str = ""
    hubspot_base_url: str = DEFAULT_BASE_URL
    hubspot_timeout_seconds: float = 10.0
    redis_url: str = field(default=DEFAULT_REDIS_URL, repr=False)  # may hold a password
    handoff_config: Path = Path("config/nurture.yaml")
    dry_run: bool = False
    rate_limit: RateLimit = RateLimit(100, 10.0)
    search_rate_limit: RateLimit = RateLimit(5, 1.0)
    # Share of HUBSPOT_RATE_LIMIT that bulk work (sweeps, backfills) may use while live work runs.
    bulk_share: float = 0.7
    # Share of the daily API budget bulk work leaves for live work and the portal's other apps.
    daily_reserve: float = 0.2
    webhook_public_url: str = ""
    signature_versions: tuple[str, ...] = ("v3",)
    webhook_max_body_bytes: int = 1024 * 1024
    trusted_proxy_count: int = 0
    # host:port of the web process's internal listener, the only one answering /readyz and /metrics.
    ops_bind: str = ""
    resync_interval_minutes: int = 15
    resync_lookback_minutes: int = 10
    log_level: str = "INFO"
    # json or text; empty: the process's own default (JSON for the services, text for commands).
    log_format: str = ""

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        dotenv_path: str | os.PathLike[str] | None = ".env",
        require: tuple[str, ...] = (),
    ) -> Settings:
        """Read settings. The process environment wins over `.env`.

        `require` names variables the caller cannot run without (the web app needs the client
        secret, the worker needs the access token).
        """
        env: dict[str, str] = {}
        if dotenv_path is not None and Path(dotenv_path).is_file():
            _check_dotenv_lines(Path(dotenv_path))
            env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        return _parse(env, require)

    def redacted(self) -> dict[str, str]:
        """Every setting as text, secrets masked: safe to print or log."""
        shown: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in {"hubspot_access_token", "hubspot_client_secrets"}:
                shown[f.name] = "(set)" if value else "(not set)"
            elif f.name == "redis_url":
                shown[f.name] = mask_url(value)
            else:
                shown[f.name] = str(value)
        return shown

    def by_variable(self) -> dict[str, str]:
        """`redacted()` keyed by the environment variable each setting is read from."""
        return {_VARIABLES.get(name, name.upper()): value for name, value in self.redacted().items()}


# Settings whose variable is not their field name in capitals.
_VARIABLES = {
    "hubspot_client_secrets": "HUBSPOT_CLIENT_SECRET",
    "dry_run": "HANDOFF_DRY_RUN",
    "rate_limit": "HUBSPOT_RATE_LIMIT",
    "search_rate_limit": "HUBSPOT_SEARCH_RATE_LIMIT",
    "bulk_share": "HANDOFF_BULK_SHARE",
    "daily_reserve": "HANDOFF_DAILY_RESERVE",
    "signature_versions": "HUBSPOT_SIGNATURE_VERSIONS",
}


def _check_dotenv_lines(path: Path) -> None:
    """A `.env` line that is not NAME=value would be skipped without a word (python-dotenv only
    warns), and the setting fall back to its default: say which line instead."""
    from dotenv.parser import parse_stream

    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error:
                text = binding.original.string.strip()
                raise SettingsError(
                    f"{path.absolute()}, line {binding.original.line}: {mask_url(text)!r} is not NAME=value; "
                    "write it as e.g. REDIS_URL=redis://localhost:6379/0 (no colon, no spaces around =)"
                )


def mask_url(url: str) -> str:
    """`url` with its user name, password and any `password=` parameter replaced by `***`, even
    when it is malformed: the only form of a URL setting that may be printed, logged or put in an
    error message."""
    masked = _URL_CREDENTIALS_RE.sub(lambda m: f"{m.group('scheme') or ''}***@", url, count=1)
    return _URL_PASSWORD_PARAM_RE.sub(r"\g<1>***", masked)


def redis_url_origin(
    environ: Mapping[str, str] | None = None, *, dotenv_path: str | os.PathLike[str] = ".env"
) -> str | None:
    """Where REDIS_URL comes from when the environment does not set it, said for a person (None when
    the environment sets it). Run from another folder, a command finds no `.env` and would otherwise
    talk to the default Redis without a word."""
    if (os.environ if environ is None else environ).get("REDIS_URL", "").strip():
        return None
    dotenv = Path(dotenv_path).absolute()
    if not dotenv.is_file():
        return f"REDIS_URL is not set and there is no .env in {dotenv.parent}: the default"
    if (dotenv_values(dotenv).get("REDIS_URL") or "").strip():
        return f"REDIS_URL from {dotenv}"
    return f"REDIS_URL is set neither in the environment nor in {dotenv}: the default"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return None if value is None else value.strip()


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a yes/no value: e.g. {name}=1 (yes) or {name}=0 (no)")


def _number(env: Mapping[str, str], name: str, default: float, *, example: str) -> float:
    raw = _get(env, name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number, e.g. {name}={example}") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r} must not be negative, e.g. {name}={example}")
    return value


def _share(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool) -> float:
    """A fraction: 0.7 or 70%."""
    raw = (_get(env, name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        lowest = "0" if allow_zero else "above 0"
        raise SettingsError(
            f"{name}={raw!r} must be a share from {lowest} to 1 (or a percentage), "
            f"e.g. {name}={default:g} or {name}={default:.0%}"
        )
    return value


def _url(env: Mapping[str, str], name: str, default: str, *, schemes: tuple[str, ...], example: str) -> str:
    raw = _get(env, name)
    if raw is None or raw == "":
        return default
    if not raw.startswith(tuple(f"{s}://" for s in schemes)) or raw[-3:] == "://":
        raise SettingsError(
            f"{name}={mask_url(raw)!r} is not a {'/'.join(schemes)} URL, e.g. {name}={example}"
        )
    return raw.rstrip("/")


def _redis_url(env: Mapping[str, str]) -> str:
    """REDIS_URL, read here as the Redis client will read it, so a malformed one stops start-up
    with its password masked rather than failing later inside a connection."""
    example = "REDIS_URL=redis://localhost:6379/0 (with a password: redis://:PASSWORD@host:6379/0)"
    raw = _get(env, "REDIS_URL")
    if raw is None or raw == "":
        return DEFAULT_REDIS_URL
    shown = mask_url(raw)
    if not raw.startswith(("redis://", "rediss://", "unix://")) or raw[-3:] == "://":
        raise SettingsError(f"REDIS_URL={shown!r} is not a redis/rediss/unix URL, e.g. {example}")
    problem = _redis_url_problem(raw)
    if problem is not None:
        # Explained from the masked URL alone; when that one reads well, the credentials are the
        # problem, and the library's own words would quote a piece of the password.
        problem = _redis_url_problem(shown) or (
            "its user name or password cannot be read: percent-encode @ : / ? # % in them "
            "(e.g. p@ss/word as p%40ss%2Fword)"
        )
        raise SettingsError(f"REDIS_URL={shown!r} is not a valid Redis URL: {problem}; e.g. {example}")
    return raw


def _redis_url_problem(url: str) -> str | None:
    from redis.connection import parse_url

    try:
        parse_url(url)
        parts = urlsplit(url)
    except ValueError as exc:
        return str(exc).rstrip(".")
    database = parts.path.strip("/")
    if parts.scheme != "unix" and database and not re.fullmatch(r"[0-9]+", database):
        return f"the database number {database!r} is not a number (end the URL with /0 to /15)"
    return None


def _public_url(env: Mapping[str, str]) -> str:
    """The exact URL HubSpot calls: HubSpot signs it whole, query included, so a query is kept as
    written (no trailing slash trimmed from it). A fragment is never sent, so it cannot be right."""
    example = "https://handoff.example.com/webhooks/hubspot"
    checked = _url(env, "WEBHOOK_PUBLIC_URL", "", schemes=("http", "https"), example=example)
    raw = _get(env, "WEBHOOK_PUBLIC_URL") or ""
    if "#" in raw:
        raise SettingsError(
            f"WEBHOOK_PUBLIC_URL={raw!r} has a #fragment, which HubSpot never sends: write the webhook "
            f"target URL of the HubSpot app exactly, e.g. WEBHOOK_PUBLIC_URL={example}?source=hubspot"
        )
    return raw if "?" in raw else checked


_BIND_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


def _bind_address(env: Mapping[str, str], name: str, *, example: str) -> str:
    raw = _get(env, name) or ""
    if not raw:
        return ""
    match = _BIND_RE.match(raw)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise SettingsError(
            f"{name}={raw!r} is not a host:port to listen on, e.g. {name}={example} "
            f"(loopback) or {name}=10.0.0.5:9100 (a private interface)"
        )
    return raw


def _parse(env: Mapping[str, str], require: tuple[str, ...]) -> Settings:
    for name in require:
        if not _get(env, name):
            example = {
                "HUBSPOT_ACCESS_TOKEN": "pat-na1-00000000-0000-0000-0000-000000000000 (a private app token)",
                "HUBSPOT_CLIENT_SECRET": "00000000-0000-0000-0000-000000000000 (the app's client secret)",
                "HUBSPOT_APP_ID": "1234567",
            }.get(name, "…")
            raise SettingsError(
                f"{name} is not set: add it to the environment or .env, e.g. {name}={example}"
            )

    secrets = tuple(s.strip() for s in (_get(env, "HUBSPOT_CLIENT_SECRET") or "").split(",") if s.strip())
    for name, values in (
        ("HUBSPOT_ACCESS_TOKEN", [_get(env, "HUBSPOT_ACCESS_TOKEN") or ""]),
        ("HUBSPOT_CLIENT_SECRET", list(secrets)),
    ):
        if any(_PLACEHOLDER_RE.match(value) for value in values):
            raise SettingsError(
                f"{name} is still the placeholder from .env.example: put in the value from HubSpot "
                "(Settings > Integrations > Private apps, or your app's Auth page)"
            )

    app_id = _get(env, "HUBSPOT_APP_ID") or ""
    if app_id and not app_id.isdigit():
        raise SettingsError(
            f"HUBSPOT_APP_ID={app_id!r} must be the numeric app id, e.g. HUBSPOT_APP_ID=1234567"
        )

    versions_raw = _get(env, "HUBSPOT_SIGNATURE_VERSIONS") or "v3"
    versions = tuple(v.strip().lower() for v in versions_raw.split(",") if v.strip())
    unknown = [v for v in versions if v not in {"v1", "v2", "v3"}]
    if unknown or not versions:
        raise SettingsError(
            f"HUBSPOT_SIGNATURE_VERSIONS={versions_raw!r}: allowed are v1, v2, v3, comma separated, "
            "e.g. HUBSPOT_SIGNATURE_VERSIONS=v3"
        )

    public_url = _public_url(env)

    return Settings(
        hubspot_access_token=_get(env, "HUBSPOT_ACCESS_TOKEN") or "",
        hubspot_client_secrets=secrets,
        hubspot_app_id=app_id,
        hubspot_base_url=_url(
            env,
            "HUBSPOT_BASE_URL",
            DEFAULT_BASE_URL,
            schemes=("http", "https"),
            example="http://127.0.0.1:8090 (the sandbox)",
        ),
        hubspot_timeout_seconds=_number(env, "HUBSPOT_TIMEOUT_SECONDS", 10.0, example="10") or 10.0,
        redis_url=_redis_url(env),
        handoff_config=Path(_get(env, "HANDOFF_CONFIG") or "config/nurture.yaml"),
        dry_run=_bool(env, "HANDOFF_DRY_RUN", False),
        rate_limit=RateLimit.parse(
            _get(env, "HUBSPOT_RATE_LIMIT") or "100/10s",
            variable="HUBSPOT_RATE_LIMIT",
            example="HUBSPOT_RATE_LIMIT=100/10s",
        ),
        search_rate_limit=RateLimit.parse(
            _get(env, "HUBSPOT_SEARCH_RATE_LIMIT") or "5/1s",
            variable="HUBSPOT_SEARCH_RATE_LIMIT",
            example="HUBSPOT_SEARCH_RATE_LIMIT=5/1s",
        ),
        bulk_share=_share(env, "HANDOFF_BULK_SHARE", 0.7, allow_zero=False),
        daily_reserve=_share(env, "HANDOFF_DAILY_RESERVE", 0.2, allow_zero=True),
        webhook_public_url=public_url,
        signature_versions=versions,
        webhook_max_body_bytes=int(_number(env, "WEBHOOK_MAX_BODY_BYTES", 1024 * 1024, example="1048576")),
        trusted_proxy_count=int(_number(env, "TRUSTED_PROXY_COUNT", 0, example="1")),
        ops_bind=_bind_address(env, "OPS_BIND", example="127.0.0.1:9100"),
        resync_interval_minutes=int(_number(env, "RESYNC_INTERVAL_MINUTES", 15, example="15")) or 15,
        resync_lookback_minutes=int(_number(env, "RESYNC_LOOKBACK_MINUTES", 10, example="10")),
        log_level=_log_level(env),
        log_format=_log_format(env),
    )


def _log_level(env: Mapping[str, str]) -> str:
    raw = _get(env, "LOG_LEVEL") or "INFO"
    level = "WARNING" if raw.upper() == "WARN" else raw.upper()
    if level not in LOG_LEVELS:
        raise SettingsError(
            f"LOG_LEVEL={raw!r} is not a log level: use one of {', '.join(LOG_LEVELS)}, e.g. LOG_LEVEL=INFO"
        )
    return level


def _log_format(env: Mapping[str, str]) -> str:
    raw = _get(env, "LOG_FORMAT") or ""
    if raw and raw.lower() not in LOG_FORMATS:
        raise SettingsError(
            f"LOG_FORMAT={raw!r} is not a log format: use json (one JSON object a line, for log "
            "search) or text (for a person), e.g. LOG_FORMAT=json"
        )
    return raw.lower()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests build their own with `Settings.from_env({...})`."""
    return Settings.from_env()
