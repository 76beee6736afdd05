"""The intake follows the marketers' YAML like the workers do: a renamed reason property counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis
from celery import Celery
from intake_support import deal_stage_event, encode, make_settings, post, queued_tasks

from handoff_worker.intake.app import create_app
from handoff_worker.nurture_config import RulesStore

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "nurture.yaml"


def test_a_renamed_reason_property_is_watched_without_a_restart(
    tmp_path: Path, redis_url: str, redis_conn: redis.Redis, celery_app: Celery
) -> None:
    config = tmp_path / "nurture.yaml"
    shutil.copy(SHIPPED, config)
    store = RulesStore(config, check_every_seconds=0)
    client = create_app(make_settings(redis_url), rules=store.current, celery_app=celery_app).test_client()

    def reason_filled_in(deal_id: int) -> bytes:
        return encode([deal_stage_event(deal_id, propertyName="lost_reason_v2", propertyValue="Pricing")])

    assert post(client, reason_filled_in(501)).status_code == 204
    assert queued_tasks(redis_conn) == [], "not a watched property yet"

    text = config.read_text().replace(
        "reason_property: closed_lost_reason", "reason_property: lost_reason_v2"
    )
    config.write_text(text)

    assert post(client, reason_filled_in(502)).status_code == 204
    assert [t.kwargs.get("deal_id") for t in queued_tasks(redis_conn)] == ["502"]
