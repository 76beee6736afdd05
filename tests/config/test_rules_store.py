"""Hot reload: good edits are taken in, bad edits never replace the last good rules."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import redis

from handoff_worker.errors import NurtureConfigError
from handoff_worker.nurture_config import content_version
from handoff_worker.nurture_config.store import RedisLastGood, RulesStore

GOOD = "version: 1\nreasons:\n  Pricing:\n    nurture:\n      - workflow: {workflow}\n"
BAD = "version: 1\nreasons:\n  Pricing:\n    nurture:\n      - workflow: not-a-number\n"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def workflow_of(store: RulesStore) -> str | None:
    return store.current().reasons[0].nurtures[0].workflow_id


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "nurture.yaml"
    path.write_text(GOOD.format(workflow=1))
    return path


def test_invalid_file_at_start_up_raises(tmp_path: Path) -> None:
    path = tmp_path / "nurture.yaml"
    path.write_text(BAD)
    with pytest.raises(NurtureConfigError, match="'not-a-number' is not a workflow id"):
        RulesStore(path)


def test_missing_file_at_start_up_raises(tmp_path: Path) -> None:
    with pytest.raises(NurtureConfigError, match="HANDOFF_CONFIG points to"):
        RulesStore(tmp_path / "absent.yaml")


def test_good_edit_is_picked_up_and_changes_the_version(config_file: Path) -> None:
    store = RulesStore(config_file, check_every_seconds=0)
    first_version = store.version
    assert first_version == content_version(GOOD.format(workflow=1))
    assert workflow_of(store) == "1"

    config_file.write_text(GOOD.format(workflow=2))
    assert workflow_of(store) == "2"
    assert store.version == content_version(GOOD.format(workflow=2)) != first_version
    rules, version = store.current_with_version()
    assert rules.reasons[0].nurtures[0].workflow_id == "2" and version == store.version


def test_bad_edit_keeps_last_good_rules_and_logs_each_problem_once(
    config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = RulesStore(config_file, check_every_seconds=0)
    good_version = store.version
    config_file.write_text(BAD)
    with caplog.at_level(logging.ERROR, logger="handoff_worker.nurture_config"):
        for _ in range(3):
            assert workflow_of(store) == "1"
    assert store.version == good_version
    problems = [r.getMessage() for r in caplog.records if "not-a-number" in r.getMessage()]
    assert len(problems) == 1, "a bad version is logged once, not on every check"
    assert f"{config_file}:5 reasons > Pricing > nurture[0] > workflow" in problems[0]
    assert any(good_version in r.getMessage() for r in caplog.records)

    # A different bad version is logged again; fixing the file brings the new rules in.
    caplog.clear()
    config_file.write_text(BAD.replace("not-a-number", "still-wrong"))
    with caplog.at_level(logging.ERROR, logger="handoff_worker.nurture_config"):
        assert workflow_of(store) == "1"
    assert any("still-wrong" in r.getMessage() for r in caplog.records)
    config_file.write_text(GOOD.format(workflow=3))
    assert workflow_of(store) == "3"


def test_deleted_file_keeps_last_good_rules(config_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = RulesStore(config_file, check_every_seconds=0)
    config_file.unlink()
    with caplog.at_level(logging.ERROR, logger="handoff_worker.nurture_config"):
        assert workflow_of(store) == "1"
        assert workflow_of(store) == "1"
    assert sum("does not exist" in r.getMessage() for r in caplog.records) == 1


def test_file_is_checked_only_once_the_interval_has_passed(config_file: Path) -> None:
    clock = ManualClock()
    store = RulesStore(config_file, check_every_seconds=30, clock=clock)
    config_file.write_text(GOOD.format(workflow=2))
    clock.now += 29
    assert workflow_of(store) == "1", "no re-read before the interval"
    clock.now += 1
    assert workflow_of(store) == "2"


def test_check_now_reports_whether_rules_changed(config_file: Path) -> None:
    store = RulesStore(config_file, check_every_seconds=3600)
    assert store.check_now() is False
    config_file.write_text(GOOD.format(workflow=2))
    assert store.check_now() is True
    config_file.write_text(BAD)
    assert store.check_now() is False
    assert workflow_of(store) == "2"


def test_concurrent_readers_only_ever_see_whole_versions(config_file: Path) -> None:
    store = RulesStore(config_file, check_every_seconds=0)
    allowed = {"1", "2"}
    seen: set[str | None] = set()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(200):
                rules, version = store.current_with_version()
                workflow = rules.reasons[0].nurtures[0].workflow_id
                seen.add(workflow)
                assert version == content_version(GOOD.format(workflow=workflow))
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    for workflow in ("2", "1", "2"):
        # Write to a temporary name and rename, as editors and deploys do, so no reader sees a
        # half-written file; the bad version in between must never be taken in.
        for text in (BAD, GOOD.format(workflow=workflow)):
            staging = config_file.with_suffix(".tmp")
            staging.write_text(text)
            staging.replace(config_file)
    for reader in readers:
        reader.join()
    assert errors == []
    assert seen <= allowed


def test_a_process_starting_on_a_broken_file_runs_on_the_last_good_rules_kept_in_redis(
    config_file: Path, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    kept = RedisLastGood(redis_conn, config_file)
    first = RulesStore(config_file, last_good=kept, check_every_seconds=0)  # a process, file good
    config_file.write_text(GOOD.format(workflow=2))
    assert workflow_of(first) == "2"  # a good edit is kept too

    config_file.write_text(BAD)  # then someone saves a broken file, and a new process starts
    with caplog.at_level(logging.ERROR):
        restarted = RulesStore(config_file, last_good=RedisLastGood(redis_conn, config_file))

    assert workflow_of(restarted) == "2"
    assert restarted.version == content_version(GOOD.format(workflow=2))
    assert "'not-a-number' is not a workflow id" in caplog.text
    with pytest.raises(NurtureConfigError):
        RulesStore(config_file)  # without anything kept, a broken file still stops start-up
