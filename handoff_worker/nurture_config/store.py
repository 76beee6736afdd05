"""The rules a running process uses: re-read from the file, and the last good ones kept in Redis.

The web process and the workers both build their rules here, so the web process needs nothing
of the handoff code to know which properties matter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis

from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.errors import NurtureConfigError
from handoff_worker.nurture_config.loading import content_version, parse_rules, read_config_text
from handoff_worker.state import KEY_PREFIX

log = logging.getLogger(__name__)


class LastGoodText(Protocol):
    """Somewhere shared to keep the text of the last valid file, so a process that starts while
    the file is broken still has the last good rules (`RedisLastGood` keeps it in Redis)."""

    def load(self) -> str | None: ...

    def save(self, text: str) -> None: ...


class RulesStore:
    """The rules in force, re-read from the file at most every `check_every_seconds`.

    A valid change replaces the rules whole; an invalid change is logged (each problem once per
    bad version of the file) and the last good rules stay in force, so no handoff ever runs on a
    half-edited file. At start-up an invalid file raises `NurtureConfigError`, unless `last_good`
    holds the text of an earlier valid file: then that runs, with the file's problems logged.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        check_every_seconds: float = 30.0,
        named_by: str = "HANDOFF_CONFIG",
        clock: Callable[[], float] = time.monotonic,
        last_good: LastGoodText | None = None,
    ) -> None:
        self.path = Path(path)
        self.check_every_seconds = check_every_seconds
        self._named_by = named_by
        self._clock = clock
        self._lock = threading.Lock()
        self._last_good = last_good
        self._last_rejected_version: str | None = None
        # One tuple, swapped in one assignment, so readers never see rules and version disagree.
        self._state: tuple[NurtureRules, str] = self._first_rules()
        self._next_check = clock() + check_every_seconds

    def _first_rules(self) -> tuple[NurtureRules, str]:
        try:
            text = read_config_text(self.path, named_by=self._named_by)
            rules = parse_rules(text, str(self.path))
        except NurtureConfigError as exc:
            saved = self._last_good.load() if self._last_good is not None else None
            if saved is None:
                raise
            version = content_version(saved)
            log.error(
                "%s is invalid; running on the last good rules (version %s) until it is fixed",
                self.path,
                version,
            )
            for problem in exc.problems:
                log.error("nurture config problem: %s", problem)
            return parse_rules(saved, f"{self.path} (last good version {version})"), version
        self._remember(text)
        return rules, content_version(text)

    def _remember(self, text: str) -> None:
        if self._last_good is not None:
            self._last_good.save(text)

    @property
    def version(self) -> str:
        """Content hash of the file the rules in force came from."""
        return self._state[1]

    def current(self) -> NurtureRules:
        """The rules in force, after re-reading the file if the check interval has passed."""
        if self._clock() >= self._next_check:
            self.check_now()
        return self._state[0]

    def current_with_version(self) -> tuple[NurtureRules, str]:
        """Rules and their version read together, for audit records."""
        self.current()
        return self._state

    def check_now(self) -> bool:
        """Re-read the file now. True when new rules were taken in."""
        # A thread that finds another one checking simply keeps using the rules in force.
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._next_check = self._clock() + self.check_every_seconds
            return self._reload()
        finally:
            self._lock.release()

    def _reload(self) -> bool:
        try:
            text = read_config_text(self.path, named_by=self._named_by)
        except NurtureConfigError as exc:
            self._reject(f"unreadable:{exc.problems}", exc)
            return False
        version = content_version(text)
        if version == self._state[1]:
            return False
        try:
            rules = parse_rules(text, str(self.path))
        except NurtureConfigError as exc:
            self._reject(version, exc)
            return False
        self._state = (rules, version)
        self._last_rejected_version = None
        self._remember(text)
        log.info("nurture rules reloaded from %s (version %s)", self.path, version)
        return True

    def _reject(self, version: str, error: NurtureConfigError) -> None:
        if version == self._last_rejected_version:
            return
        self._last_rejected_version = version
        log.error(
            "%s changed but is invalid; the rules of version %s stay in force until it is fixed",
            self.path,
            self._state[1],
        )
        for problem in error.problems:
            log.error("nurture config problem: %s", problem)


class RedisLastGood:
    """Keeps the text of the last valid nurture file in Redis, so a process that starts while the
    file is broken runs on the last good rules instead of failing every handoff."""

    def __init__(self, client: redis.Redis, config_path: Path | str) -> None:
        self.client = client
        self.key = f"{KEY_PREFIX}rules:last-good:{config_path}"

    def load(self) -> str | None:
        try:
            text = self.client.get(self.key)
        except redis.RedisError as exc:
            log.warning("could not read the last good nurture rules from Redis: %s", exc)
            return None
        return None if text is None else str(text)

    def save(self, text: str) -> None:
        try:
            self.client.set(self.key, text)
        except redis.RedisError as exc:
            log.warning("could not keep the nurture rules in Redis as the last good ones: %s", exc)
