"""The JSON Schema editors use agrees with the loader on the shipped file and on broken ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from handoff_worker.errors import NurtureConfigError
from handoff_worker.nurture_config import load_rules

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "config" / "nurture.schema.json"
SHIPPED = ROOT / "config" / "nurture.yaml"
MINIMAL = "version: 1\nreasons:\n  Pricing:\n    nurture:\n      - workflow: 12345\n"


def schema_errors(text: str) -> list[str]:
    schema = json.loads(SCHEMA_PATH.read_text())
    document: Any = YAML(typ="safe").load(text)
    return [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(document)]


def test_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_shipped_file_points_editors_at_the_schema() -> None:
    first_line = SHIPPED.read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=./nurture.schema.json"


def test_shipped_file_validates_against_the_schema() -> None:
    assert schema_errors(SHIPPED.read_text()) == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(MINIMAL, id="minimal"),
        pytest.param(MINIMAL.replace("workflow: 12345", "property: {name: track, value: 3}"), id="property"),
        pytest.param(MINIMAL + "  Competitor:\n    recycle: false\n", id="no-recycle"),
        pytest.param(MINIMAL + "  Other:\n", id="empty-reason"),
        pytest.param(MINIMAL + "owner_tasks:\n  escalate_to_owner: '123'\n", id="quoted-owner"),
    ],
)
def test_schema_and_loader_both_accept(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    load_rules(path)
    assert schema_errors(text) == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(MINIMAL.replace("nurture:", "nuture:"), id="unknown-key"),
        pytest.param(MINIMAL.replace("12345", "abc"), id="workflow-not-numeric"),
        pytest.param(MINIMAL + "        list: 9\n", id="two-methods"),
        pytest.param(MINIMAL.replace("workflow: 12345", "name: x"), id="no-method"),
        pytest.param(MINIMAL.replace("    nurture:", "    recycle: false\n    nurture:"), id="no-recycle"),
        pytest.param(MINIMAL.replace("version: 1", "version: 2"), id="version"),
        pytest.param(MINIMAL + "leads: {enabled: maybe}\n", id="not-yes-no"),
        pytest.param(MINIMAL + "owner_tasks: {sla_hours: 0}\n", id="sla-zero"),
        pytest.param(MINIMAL + "markers: {reason: 'Recycle reason'}\n", id="property-label"),
        pytest.param("version: 1\nreasons: {}\n", id="no-reasons"),
    ],
)
def test_schema_and_loader_both_reject(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(NurtureConfigError):
        load_rules(path)
    assert schema_errors(text) != []
