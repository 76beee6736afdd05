"""HTTP answers and transport failures into our errors, on data."""

from __future__ import annotations

import pytest
import requests
import urllib3.exceptions

from handoff_worker.errors import (
    DailyLimitError,
    NotFoundError,
    PermanentHubSpotError,
    RateLimitedError,
    TransientHubSpotError,
)
from handoff_worker.hubspot.translate import RequestNotSentError, error_from_response, translate

BODY = (
    b'{"status":"error","message":"Property values were not valid",'
    b'"correlationId":"c-1","category":"VALIDATION_ERROR"}'
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, PermanentHubSpotError),
        (401, PermanentHubSpotError),
        (403, PermanentHubSpotError),
        (404, NotFoundError),
        (409, PermanentHubSpotError),
        (423, TransientHubSpotError),
        (477, TransientHubSpotError),
        (500, TransientHubSpotError),
        (502, TransientHubSpotError),
        (504, TransientHubSpotError),
    ],
)
def test_status_decides_the_kind(status: int, kind: type) -> None:
    error = error_from_response(status, {}, BODY, "batch update contacts")
    assert type(error) is kind
    assert (error.status, error.message, error.correlation_id, error.category) == (
        status,
        "Property values were not valid",
        "c-1",
        "VALIDATION_ERROR",
    )
    assert error.operation == "batch update contacts"


def test_429_policies() -> None:
    daily = error_from_response(429, {}, b'{"errorType":"RATE_LIMIT","policyName":"DAILY"}', "op")
    rolling = error_from_response(
        429, {}, b'{"errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}', "op"
    )
    assert isinstance(daily, DailyLimitError) and daily.policy == "DAILY"
    assert type(rolling) is RateLimitedError and rolling.category == "RATE_LIMIT"


def test_body_that_is_not_json_still_gives_a_message() -> None:
    error = error_from_response(502, {}, b"<html>Bad gateway</html>", "op")
    assert error.message == "<html>Bad gateway</html>"
    assert error_from_response(500, {}, b"", "op").message == "HTTP 500 with no message"


def test_transport_failures() -> None:
    # urllib3 wants the connection or pool the failure came from; translate reads only the type
    # and the cause, so none is made here.
    refused = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]  # no connection
    assert isinstance(translate(refused, "op"), RequestNotSentError)
    wrapped = urllib3.exceptions.MaxRetryError(None, "/x", refused)  # type: ignore[arg-type]  # no pool
    assert isinstance(translate(wrapped, "op"), RequestNotSentError)
    slow = urllib3.exceptions.ReadTimeoutError(None, "/x", "slow")  # type: ignore[arg-type]  # no pool
    read_timeout = translate(slow, "op")
    assert type(read_timeout) is TransientHubSpotError
    assert type(translate(requests.ReadTimeout("slow"), "op")) is TransientHubSpotError
    assert type(translate(requests.ConnectionError("reset"), "op")) is TransientHubSpotError


def test_an_sdk_refusal_is_permanent() -> None:
    from hubspot.crm.objects.exceptions import ApiValueError

    error = translate(ApiValueError("Missing the required parameter `object_type`"), "get deal")
    assert type(error) is PermanentHubSpotError and "object_type" in error.message


def test_a_bug_of_ours_is_not_disguised() -> None:
    with pytest.raises(KeyError):
        translate(KeyError("oops"), "op")
