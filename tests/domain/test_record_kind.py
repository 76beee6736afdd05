"""Record kinds: one name per kind, whatever spelling the caller has (ours or HubSpot's)."""

from __future__ import annotations

import pytest

from handoff_worker.domain.models import ObjectType, RecordKind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("deal", RecordKind.DEAL),
        ("deals", RecordKind.DEAL),
        ("contact", RecordKind.CONTACT),
        ("contacts", RecordKind.CONTACT),
    ],
)
def test_kind_named_singular_or_as_hubspot_object_type(name: str, kind: RecordKind) -> None:
    assert RecordKind.named(name) is kind


@pytest.mark.parametrize("name", ["", "Deal", "companies", "None", "dealss"])
def test_unknown_kind_name_is_refused_with_the_names_allowed(name: str) -> None:
    with pytest.raises(ValueError, match="expected one of contact, contacts, deal, deals"):
        RecordKind.named(name)


@pytest.mark.parametrize(
    ("kind", "object_type"), [(RecordKind.DEAL, ObjectType.DEAL), (RecordKind.CONTACT, ObjectType.CONTACT)]
)
def test_kind_maps_to_its_hubspot_object_type(kind: RecordKind, object_type: ObjectType) -> None:
    assert kind.object_type is object_type


def test_values_are_the_ones_stored_in_redis_keys_and_records() -> None:
    assert [kind.value for kind in RecordKind] == ["deal", "contact"]
    assert f"loss:{RecordKind.DEAL}:1" == "loss:deal:1"
