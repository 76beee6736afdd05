"""Errors of our own. Every message a person reads says what was wrong, where, and what to do."""

from __future__ import annotations


class HandoffError(Exception):
    """Base of every error this project raises on purpose."""


class SettingsError(HandoffError):
    """A setting from the environment or `.env` is missing or malformed."""


class NurtureConfigError(HandoffError):
    """The marketers' YAML is invalid. `problems` lists every problem found, not just the first."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{path}: {len(self.problems)} problem(s) in the nurture config:\n{lines}")


class MessageNotSent(HandoffError):
    """A message to the marketing team's chat webhook did not go out. Its text never holds the
    webhook URL (a secret)."""


class HubSpotError(HandoffError):
    """A HubSpot call failed. Carries what a person needs to find the request in HubSpot's logs."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        operation: str = "",
        correlation_id: str | None = None,
        category: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.operation = operation
        self.correlation_id = correlation_id
        self.category = category
        self.retry_after = retry_after
        parts = [f"HubSpot {operation or 'call'} failed"]
        if status is not None:
            parts.append(f"with HTTP {status}")
        text = " ".join(parts) + f": {message}"
        if correlation_id:
            text += f" (correlationId {correlation_id})"
        super().__init__(text)


class TransientHubSpotError(HubSpotError):
    """Worth retrying: 429, 423, 5xx, timeouts, connection failures."""


class RequestNotSentError(TransientHubSpotError):
    """The connection was refused or never opened: HubSpot surely did not see the request, so
    even a non-idempotent call (creating a task) may be sent again."""


class RateLimitedError(TransientHubSpotError):
    """HubSpot answered 429. `policy` is HubSpot's policyName (TEN_SECONDLY_ROLLING, DAILY...)."""

    def __init__(self, message: str, *, policy: str | None = None, **kwargs: object) -> None:
        self.policy = policy
        super().__init__(message, **kwargs)  # type: ignore[arg-type]  # kwargs mirror HubSpotError's


class DailyLimitError(RateLimitedError):
    """The account's daily budget is spent. Not retried in-process: retry after midnight (HubSpot's
    account time zone), or raise the limit with HubSpot's API limit increase add-on."""


class DailyReserveReachedError(DailyLimitError):
    """Bulk work (sweeps, backfills) stopped: what is left of the account's daily budget is the
    reserve HANDOFF_DAILY_RESERVE keeps for live handoffs and the portal's other integrations.
    Live handoffs go on; bulk work resumes when HubSpot's daily count resets."""


class PermanentHubSpotError(HubSpotError):
    """Retrying will not help (other 4xx): the request or the data must change."""


class NotFoundError(PermanentHubSpotError):
    """The object (deal, contact, workflow, list...) does not exist in the account."""
