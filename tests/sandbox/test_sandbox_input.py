"""What the sandbox says to input a person gets wrong: a clear 400 or a usage error, never an HTML 500."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from click.testing import CliRunner

from handoff_worker.sandbox.commands import sandbox_command
from handoff_worker.sandbox.testing import SandboxServer


@pytest.mark.parametrize("secret", ["", "   "])
def test_an_empty_client_secret_is_refused_before_the_sandbox_starts(secret: str) -> None:
    result = CliRunner().invoke(sandbox_command, ["--port", "0", "--client-secret", secret])
    assert result.exit_code == 2
    assert "--client-secret" in result.output and "empty" in result.output


@pytest.mark.parametrize(
    "associations",
    [
        "3001",
        ["3001"],
        [1],
        [{"to": "3001", "types": []}],
        [{"to": {"id": "3001"}, "types": [{"associationTypeId": "x"}]}],
    ],
    ids=["string", "list-of-ids", "list-of-numbers", "to-not-an-object", "type-id-not-a-number"],
)
@pytest.mark.parametrize("path", ["/crm/v3/objects/deals", "/_sandbox/rep/deals"])
def test_a_wrong_associations_shape_is_a_json_400_that_shows_the_right_one(
    sandbox: SandboxServer, path: str, associations: Any
) -> None:
    answer = requests.post(
        sandbox.url + path,
        json={"properties": {"dealname": "x"}, "associations": associations},
        headers={"Authorization": "Bearer t"},
        timeout=5,
    )
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["category"] == "VALIDATION_ERROR"
    assert "associations" in body["message"] or "associationTypeId" in body["message"]
