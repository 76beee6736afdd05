"""The control client reads back any number of records, as the drills and benchmarks need."""

from handoff_worker.sandbox.testing import SandboxServer


def test_reading_more_records_by_id_than_one_query_string_holds(sandbox: SandboxServer) -> None:
    ids = [str(i) for i in range(100_000, 114_000)]  # about 98 KB of ids: past the 64 KB URI limit
    sandbox.control.seed({"contacts": [{"id": i, "properties": {"email": f"c{i}@example.com"}} for i in ids]})

    found = sandbox.control.objects("contacts", ids)

    assert sorted(c["id"] for c in found) == ids
