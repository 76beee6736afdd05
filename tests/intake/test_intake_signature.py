"""Signature checks as pure functions, against the SDK's published test vectors and the SDK's own
signer (never against our own signer)."""

from __future__ import annotations

import pytest
from hubspot.utils.signature import Signature

from handoff_worker.intake import signature as sig

VECTOR_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
VECTOR_URI = "https://www.example.com/webhook_uri"
VECTOR_BODY = b"{'example_field':'example_value'}"
VECTOR_TS = "15000000"
VECTOR_NOW = 15_000_000 + 1_000


def verify(
    headers: dict[str, str], *, secrets=(VECTOR_SECRET,), versions=("v3",), now_ms=VECTOR_NOW, uri=VECTOR_URI
):
    return sig.verify(
        headers, method="POST", uri=uri, body=VECTOR_BODY, secrets=secrets, versions=versions, now_ms=now_ms
    )


def v3(
    signature: str = "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=", ts: str = VECTOR_TS
) -> dict[str, str]:
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": ts}


def test_v3_test_vector_verifies() -> None:
    assert verify(v3()) == "v3"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v1", "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"),
        ("v2", "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"),
    ],
)
def test_legacy_test_vectors_verify_when_enabled(version: str, expected: str) -> None:
    headers = {"X-HubSpot-Signature": expected, "X-HubSpot-Signature-Version": version}
    assert verify(headers, versions=("v3", version)) == version


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_legacy_versions_refused_by_default(version: str) -> None:
    good = Signature.get_signature(VECTOR_SECRET, VECTOR_BODY.decode(), version, VECTOR_URI, "POST")
    headers = {"X-HubSpot-Signature": good, "X-HubSpot-Signature-Version": version}
    with pytest.raises(sig.VersionNotAcceptedError, match="HUBSPOT_SIGNATURE_VERSIONS"):
        verify(headers)


def test_missing_signature() -> None:
    with pytest.raises(sig.MissingSignatureError):
        verify({})


def test_missing_timestamp() -> None:
    with pytest.raises(sig.MissingSignatureError, match="X-HubSpot-Request-Timestamp"):
        verify({"X-HubSpot-Signature-v3": "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="})


def test_non_numeric_timestamp() -> None:
    with pytest.raises(sig.TimestampError):
        verify(v3(ts="yesterday"))


def test_wrong_signature_names_the_settings_to_check() -> None:
    with pytest.raises(sig.SignatureMismatchError) as caught:
        verify(v3(signature="AAAA" + "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="[4:]))
    assert "HUBSPOT_CLIENT_SECRET" in str(caught.value)
    assert "WEBHOOK_PUBLIC_URL" in str(caught.value)
    assert VECTOR_SECRET not in str(caught.value)


def test_wrong_secret() -> None:
    with pytest.raises(sig.SignatureMismatchError):
        verify(v3(), secrets=("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",))


def test_rotation_accepts_old_and_new_secret() -> None:
    assert verify(v3(), secrets=("new-secret-not-yet-used", VECTOR_SECRET)) == "v3"
    assert verify(v3(), secrets=(VECTOR_SECRET, "new-secret-not-yet-used")) == "v3"


@pytest.mark.parametrize(
    ("now_offset_ms", "error"),
    [
        (5 * 60 * 1000 + 1, sig.StaleTimestampError),
        (-(60 * 1000 + 1), sig.FutureTimestampError),
    ],
)
def test_timestamp_window_edges_rejected(now_offset_ms: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        verify(v3(), now_ms=15_000_000 + now_offset_ms)


@pytest.mark.parametrize("now_offset_ms", [5 * 60 * 1000, -60 * 1000, 0])
def test_timestamp_window_edges_accepted(now_offset_ms: int) -> None:
    assert verify(v3(), now_ms=15_000_000 + now_offset_ms) == "v3"


def test_no_secret_configured_names_the_setting() -> None:
    with pytest.raises(sig.SignatureMismatchError, match="HUBSPOT_CLIENT_SECRET"):
        verify(v3(), secrets=())


def test_uri_escapes_are_decoded_before_hashing() -> None:
    # HubSpot hashes the URI with these escapes decoded; the SDK signs the decoded form here.
    decoded = "https://www.example.com/webhook_uri?next=a:b/c@d!e$f'g(h)i*j,k;l"
    encoded = "https://www.example.com/webhook_uri?next=a%3Ab%2fc%40d%21e%24f%27g%28h%29i%2Aj%2Ck%3Bl"
    good = Signature.get_signature(VECTOR_SECRET, VECTOR_BODY.decode(), "v3", decoded, "POST", VECTOR_TS)
    assert verify(v3(signature=good), uri=encoded) == "v3"
    assert sig.canonical_uri("/a%20b%3A") == "/a%20b:"
