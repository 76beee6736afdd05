"""Posting a message to a chat's incoming webhook: Slack and Teams both take `{"text": ...}`.

Not a HubSpot call, so not the gateway's retry policy: a short timeout per attempt and a few
attempts with exponential backoff (tenacity), retrying only what may pass on a second try (no
answer, a refused connection, 429, 5xx). The URL is a secret (whoever holds it can post to the
channel): it is never logged nor put in an error; only the answer's status is.
"""

from __future__ import annotations

import requests
import tenacity

from handoff_worker.errors import MessageNotSent

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_ATTEMPTS = 3
DEFAULT_WAIT_SECONDS = 1.0
# What of a refusal's body is kept: Slack answers e.g. "invalid_payload" or "no_service".
BODY_SHOWN = 100


class _TryAgain(Exception):
    pass


class WebhookPoster:
    def __init__(
        self,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        attempts: int = DEFAULT_ATTEMPTS,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self.wait_seconds = wait_seconds
        self.session = requests.Session()

    def post(self, url: str, text: str) -> None:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential(multiplier=self.wait_seconds, max=10 * self.wait_seconds),
            retry=tenacity.retry_if_exception_type(_TryAgain),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._once(url, text)
        except _TryAgain as exc:
            raise MessageNotSent(f"{exc} ({self.attempts} attempts)") from None

    def _once(self, url: str, text: str) -> None:
        try:
            answer = self.session.post(url, json={"text": text}, timeout=self.timeout_seconds)
        except requests.Timeout:
            raise _TryAgain(f"the webhook did not answer within {self.timeout_seconds:g}s") from None
        except requests.ConnectionError:
            raise _TryAgain("the webhook's host refused or dropped the connection") from None
        except requests.RequestException as exc:
            # The exception's text holds the URL: only its kind is told.
            raise MessageNotSent(f"the webhook URL cannot be used ({type(exc).__name__})") from None
        if answer.status_code == 429 or answer.status_code >= 500:
            raise _TryAgain(f"the webhook answered {answer.status_code}")
        if answer.status_code >= 400:
            raise MessageNotSent(
                f"the webhook refused the message: {answer.status_code} {answer.text[:BODY_SHOWN]!r}"
            )
