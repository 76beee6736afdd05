"""Payload parsing and the work each event calls for: pure, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from handoff_worker.domain.events import (
    MAX_MERGED_IDS,
    Disposition,
    EventKind,
    EventParseError,
    UnitKind,
    WatchedProperties,
    WorkUnit,
    decide,
    parse_batch,
    parse_events,
)
from handoff_worker.domain.models import ObjectType

WATCHED = WatchedProperties(
    deal=frozenset({"dealstage", "lost_reason_pick"}), contact=frozenset({"hs_lead_status", "dq_reason"})
)
APP_ID = "4242"


def one(event: dict[str, Any]):
    return decide(parse_events([event])[0], watched=WATCHED, app_id=APP_ID)


def change(type_: str, name: str, object_id: int = 7, **extra: Any) -> dict[str, Any]:
    return {
        "eventId": 1,
        "portalId": 9,
        "occurredAt": 1700000000000,
        "subscriptionType": type_,
        "objectId": object_id,
        "propertyName": name,
        "propertyValue": "x",
        **extra,
    }


@pytest.mark.parametrize(
    ("event", "disposition", "units"),
    [
        (change("deal.propertyChange", "dealstage"), Disposition.WORK, [WorkUnit(UnitKind.DEAL, "7")]),
        (change("deal.propertyChange", "lost_reason_pick"), Disposition.WORK, [WorkUnit(UnitKind.DEAL, "7")]),
        (change("deal.propertyChange", "amount"), Disposition.IRRELEVANT, []),
        (
            change("contact.propertyChange", "hs_lead_status"),
            Disposition.WORK,
            [WorkUnit(UnitKind.CONTACT, "7")],
        ),
        (change("contact.propertyChange", "dq_reason"), Disposition.WORK, [WorkUnit(UnitKind.CONTACT, "7")]),
        (change("contact.propertyChange", "dealstage"), Disposition.IRRELEVANT, []),
        (
            {**change("object.propertyChange", "dealstage"), "objectTypeId": "0-3"},
            Disposition.WORK,
            [WorkUnit(UnitKind.DEAL, "7")],
        ),
        (
            {**change("object.propertyChange", "hs_lead_status"), "objectTypeId": "0-1"},
            Disposition.WORK,
            [WorkUnit(UnitKind.CONTACT, "7")],
        ),
        ({**change("object.propertyChange", "x"), "objectTypeId": "0-2"}, Disposition.UNKNOWN_TYPE, []),
        ({"eventType": "deal.creation", "objectId": 5}, Disposition.WORK, [WorkUnit(UnitKind.DEAL, "5")]),
        ({"eventType": "contact.creation", "objectId": 5}, Disposition.IRRELEVANT, []),
        (
            {"subscriptionType": "deal.restore", "objectId": 5},
            Disposition.WORK,
            [WorkUnit(UnitKind.DEAL, "5")],
        ),
        ({"subscriptionType": "company.creation", "objectId": 5}, Disposition.UNKNOWN_TYPE, []),
        ({"subscriptionType": "deal.somethingNew", "objectId": "x"}, Disposition.UNKNOWN_TYPE, []),
        (
            {"subscriptionType": "deal.deletion", "objectId": 5},
            Disposition.WORK,
            [WorkUnit(UnitKind.FORGET, "5", object_type=ObjectType.DEAL, event="deletion")],
        ),
        (
            {"subscriptionType": "contact.privacyDeletion", "objectId": 6},
            Disposition.WORK,
            [WorkUnit(UnitKind.FORGET, "6", object_type=ObjectType.CONTACT, event="privacy_deletion")],
        ),
        (
            {
                "subscriptionType": "contact.merge",
                "objectId": 10,
                "primaryObjectId": 10,
                "mergedObjectIds": [10, 11],
                "newObjectId": 12,
            },
            Disposition.WORK,
            [
                WorkUnit(
                    UnitKind.FORGET, "10", object_type=ObjectType.CONTACT, event="merge", merged_into="12"
                ),
                WorkUnit(
                    UnitKind.FORGET, "11", object_type=ObjectType.CONTACT, event="merge", merged_into="12"
                ),
                WorkUnit(UnitKind.CONTACT, "12"),
            ],
        ),
        (
            {
                "subscriptionType": "deal.associationChange",
                "associationType": "DEAL_TO_CONTACT",
                "fromObjectId": 30,
                "toObjectId": 40,
            },
            Disposition.WORK,
            [WorkUnit(UnitKind.DEAL, "30")],
        ),
        (
            {
                "subscriptionType": "contact.associationChange",
                "associationType": "CONTACT_TO_DEAL",
                "fromObjectId": 40,
                "toObjectId": 30,
            },
            Disposition.WORK,
            [WorkUnit(UnitKind.DEAL, "30")],
        ),
        (
            {
                "subscriptionType": "deal.associationChange",
                "associationType": "DEAL_TO_CONTACT",
                "fromObjectId": 30,
                "toObjectId": 40,
                "associationRemoved": True,
            },
            Disposition.IRRELEVANT,
            [],
        ),
        (
            {
                "subscriptionType": "deal.associationChange",
                "associationType": "DEAL_TO_COMPANY",
                "fromObjectId": 30,
                "toObjectId": 40,
            },
            Disposition.IRRELEVANT,
            [],
        ),
        (
            change("deal.propertyChange", "dealstage", changeSource="INTEGRATION", sourceId="4242"),
            Disposition.OWN_WRITE,
            [],
        ),
        (
            change("deal.propertyChange", "dealstage", changeSource="INTEGRATION", sourceId=4242),
            Disposition.OWN_WRITE,
            [],
        ),
        (
            change("deal.propertyChange", "dealstage", changeSource="INTEGRATION", sourceId="999"),
            Disposition.WORK,
            [WorkUnit(UnitKind.DEAL, "7")],
        ),
        (
            change("deal.propertyChange", "dealstage", changeSource="CRM_UI", sourceId="4242"),
            Disposition.WORK,
            [WorkUnit(UnitKind.DEAL, "7")],
        ),
    ],
)
def test_decisions(event: dict[str, Any], disposition: Disposition, units: list[WorkUnit]) -> None:
    decision = one(event)
    assert decision.disposition is disposition
    assert list(decision.units) == units


def test_own_write_needs_an_app_id() -> None:
    event = parse_events(
        [change("deal.propertyChange", "dealstage", changeSource="INTEGRATION", sourceId="")]
    )[0]
    assert decide(event, watched=WATCHED, app_id="").disposition is Disposition.WORK


def test_event_type_is_accepted_for_subscription_type() -> None:
    (event,) = parse_events(
        [{"eventType": "deal.propertyChange", "objectId": "12", "propertyName": "dealstage"}]
    )
    assert event.kind is EventKind.PROPERTY_CHANGE
    assert event.object_id == "12"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"subscriptionType": "deal.creation"}, "array of events, got an object"),
        ("[]", "array of events, got a string"),
        ([1], "event [0]: must be a JSON object, got a number"),
        ([{"objectId": 1}], "event [0] field 'subscriptionType': missing"),
        ([{"subscriptionType": 5}], "event [0] field 'subscriptionType': must be a string, got a number"),
        ([{}, {"subscriptionType": "deal.creation"}], "event [0] field 'subscriptionType'"),
        (
            [{"subscriptionType": "deal.unknownThing"}, {"subscriptionType": "deal.creation"}],
            "event [1] field 'objectId': missing",
        ),
        (
            [{"subscriptionType": "deal.creation", "objectId": "abc"}],
            "event [0] field 'objectId': must be a numeric id",
        ),
        (
            [{"subscriptionType": "deal.creation", "objectId": 1, "occurredAt": "soon"}],
            "field 'occurredAt': must be a whole number",
        ),
        (
            [{"subscriptionType": "deal.merge", "objectId": 1, "mergedObjectIds": 2}],
            "field 'mergedObjectIds': must be an array of ids",
        ),
        (
            [{"subscriptionType": "deal.associationChange", "associationRemoved": "no"}],
            "field 'associationRemoved': must be true or false",
        ),
    ],
)
def test_wrong_shapes_name_index_and_field(payload: object, message: str) -> None:
    with pytest.raises(EventParseError) as caught:
        parse_events(payload)
    assert message in str(caught.value)


def test_dedupe_key_ignores_attempt_number_but_not_event_identity() -> None:
    base = change("deal.propertyChange", "dealstage")
    first, retry, other_value = parse_events(
        [base, {**base, "attemptNumber": 3}, {**base, "propertyValue": "y"}]
    )
    assert first.dedupe_key() == retry.dedupe_key()
    assert first.dedupe_key() != other_value.dedupe_key()


# --- hostile values: canonical ids, bounded numbers, refusals one event at a time -----------------


@pytest.mark.parametrize(
    ("sent", "canonical"), [(7, "7"), ("7", "7"), ("0007", "7"), (2**63 - 1, str(2**63 - 1))]
)
def test_ids_are_made_canonical_so_one_record_has_one_spelling(sent: object, canonical: str) -> None:
    (event,) = parse_events([change("deal.propertyChange", "dealstage", objectId=sent)])
    assert event.object_id == canonical


@pytest.mark.parametrize(
    ("sent", "got"),
    [
        ("\u0661\u0662\u0663", "a string that is not ASCII digits"),  # Arabic-Indic 123
        ("\u00b2", "a string that is not ASCII digits"),  # superscript two: isdigit() says yes
        (-5, "a negative number"),
        ("-5", "a string that is not ASCII digits"),
        (0, "zero"),
        ("000", "zero"),
        (2**63, "a number over 2^63-1"),
        ("9" * 5000, "digits over 2^63-1"),
        (7.0, "a number with a fraction or an exponent"),
        (True, "a boolean"),
        (" 7", "a string that is not ASCII digits"),
    ],
)
def test_ids_that_are_not_positive_ascii_64_bit_numbers_refuse_their_event(sent: object, got: str) -> None:
    good = change("deal.propertyChange", "dealstage", 1)
    batch = parse_batch([good, change("deal.propertyChange", "dealstage", objectId=sent), good])
    assert [e.object_id for e in batch.events] == ["1", "1"]
    (refusal,) = batch.refused
    assert refusal.reason == "bad_id"
    assert str(refusal) == f"event [1] field 'objectId': must be a numeric id from 1 to 2^63-1, got {got}"


@pytest.mark.parametrize("field_name", ["occurredAt", "attemptNumber"])
@pytest.mark.parametrize("sent", ["\u00b2", "\u0661", "1" * 5000, 10**30, -1, 1.5, "1e5", "12 ", True, [1]])
def test_odd_numbers_in_occurred_at_or_attempt_number_refuse_only_their_event(
    field_name: str, sent: object
) -> None:
    odd = {**change("deal.propertyChange", "dealstage"), field_name: sent}
    batch = parse_batch([odd, change("deal.creation", "x")])
    assert len(batch.events) == 1
    (refusal,) = batch.refused
    assert (refusal.index, refusal.field_name) == (0, field_name)
    assert "must be a whole number from 0 to 2^63-1" in str(refusal)


def test_numbers_given_as_ascii_digits_are_read() -> None:
    (event,) = parse_events(
        [change("deal.propertyChange", "dealstage", occurredAt="1700000000000", attemptNumber="3")]
    )
    assert (event.occurred_at, event.attempt_number) == (1_700_000_000_000, 3)


def test_a_merge_naming_more_ids_than_the_cap_is_refused_not_fanned_out() -> None:
    def merge(count: int) -> dict[str, Any]:
        ids = list(range(100, 100 + count))
        return {
            "subscriptionType": "contact.merge",
            "objectId": 5,
            "primaryObjectId": 5,
            "mergedObjectIds": ids,
        }

    (at_cap,) = parse_events([merge(MAX_MERGED_IDS)])
    assert len(decide(at_cap, watched=WATCHED, app_id=APP_ID).units) == MAX_MERGED_IDS + 1
    batch = parse_batch([merge(20_000)])
    assert batch.events == ()
    assert batch.refused[0].reason == "too_many_ids"
    assert f"more than the {MAX_MERGED_IDS}" in str(batch.refused[0])


def test_refusals_never_quote_the_value() -> None:
    batch = parse_batch([change("deal.propertyChange", "dealstage", objectId="jane.doe@example.com")])
    assert "jane" not in str(batch.refused[0])


def test_a_lone_surrogate_in_a_value_still_gives_a_dedupe_key() -> None:
    cut, whole = parse_events(
        [
            change("contact.propertyChange", "dq_reason", propertyValue="Too expensive \ud83d"),
            change("contact.propertyChange", "dq_reason", propertyValue="Too expensive \ud83d\ude43"),
        ]
    )
    assert cut.dedupe_key() != whole.dedupe_key()
    assert len(cut.dedupe_key()) == 64
