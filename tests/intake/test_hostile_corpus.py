"""The hostile-input corpus against the web process started exactly as the Procfile's `web:` line
starts it (whatever server and worker class that line names), with its own Redis.

It asserts what the intake promises whatever arrives: no 5xx except a 503 while Redis is gone,
forged requests answered 401, nothing queued for a refused request, the good events of a batch
queued, /readyz and /metrics unreachable on the public port, and no secret or personal data in
anything the process logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from intake_support import queued_tasks

from handoff_worker.celery_app import HANDOFF_QUEUE, queue_key
from handoff_worker.sandbox.hostile import (
    PERSONAL_DATA,
    WEBHOOK_PATH,
    Expect,
    HostileRequest,
    build_corpus,
    event,
    send,
    sign_v3,
    verdict,
)
from handoff_worker.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "corpus-client-secret-5f0c"
ACCESS_TOKEN = "pat-corpus-token-7d21"
# Settings of the developer's shell must not change what is tested.
_OWN_SETTINGS = ("HUBSPOT_", "WEBHOOK_", "OPS_", "TRUSTED_", "REDIS_", "HANDOFF_", "PORT", "WEB_")


def procfile_web_command() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "web":
            return command.strip()
    raise AssertionError("the Procfile has no web: line")


@dataclass
class Web:
    process: subprocess.Popen[bytes]
    url: str  # the webhook URL, as the server computes it
    ops_url: str
    public_url: str
    log: Path
    redis_url: str

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def web(throwaway_redis: tuple[subprocess.Popen[bytes], str], tmp_path: Path) -> Iterator[Web]:
    _redis_process, redis_url = throwaway_redis
    port, ops_port = free_port(), free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PORT=str(port),
        OPS_BIND=f"127.0.0.1:{ops_port}",
        REDIS_URL=redis_url,
        HUBSPOT_CLIENT_SECRET=SECRET,
        HUBSPOT_APP_ID="424242",
        HUBSPOT_ACCESS_TOKEN=ACCESS_TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    log = tmp_path / "web.log"
    with log.open("wb") as sink:
        # As honcho and Heroku run a Procfile line: through the shell, which `exec`s the server.
        process = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {procfile_web_command()}"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    public = f"http://127.0.0.1:{port}"
    web = Web(process, public + WEBHOOK_PATH, f"http://127.0.0.1:{ops_port}", public, log, redis_url)
    deadline = time.monotonic() + 30
    while not _answers(public + "/healthz"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the Procfile's web process did not start:\n{web.logs()[-3000:]}")
        time.sleep(0.1)
    yield web
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _status(url: str) -> int:
    return requests.get(url, timeout=5).status_code


def _queued_deals(conn: redis.Redis) -> set[str]:
    return {str(t.kwargs.get("deal_id")) for t in queued_tasks(conn)}


def _assert_logs_clean(web: Web) -> None:
    text = web.logs()
    assert text, "the web process logged nothing at all"
    assert SECRET not in text
    assert ACCESS_TOKEN not in text
    for personal in PERSONAL_DATA:
        assert personal not in text, f"{personal!r} reached the log"
    # A JSON-escaped copy is still a copy.
    for personal in PERSONAL_DATA:
        assert json.dumps(personal)[1:-1] not in text
    assert "Traceback" not in text


@pytest.mark.timeout(240)
def test_hostile_corpus_gets_no_5xx_and_queues_nothing_it_refuses(web: Web) -> None:
    conn = redis.Redis.from_url(web.redis_url, decode_responses=True)
    corpus = build_corpus(SECRET, web.url)
    assert len(corpus) > 80
    failures, answered = [], []
    for item in corpus:
        before = conn.llen(queue_key(HANDOFF_QUEUE))
        answer = send(item, web.url)
        answered.append(f"{answer.status} {item.label}")
        problem = verdict(item, answer, before, _queued_deals(conn))
        if problem:
            failures.append(problem)
        if answer.status == 401:
            assert json.loads(answer.body) == {"error": "signature check failed"}, item.label
    assert failures == [], "\n".join(answered)
    assert web.process.poll() is None, "the web process died"
    assert _answers(web.public_url + "/healthz")
    os.killpg(web.process.pid, signal.SIGTERM)
    web.process.wait(timeout=30)
    _assert_logs_clean(web)


@pytest.mark.timeout(60)
def test_readyz_and_metrics_answer_only_on_the_ops_listener(web: Web) -> None:
    for path in ("/readyz", "/metrics"):
        assert _status(web.ops_url + path) == 200, path
        assert _status(web.public_url + path) == 404, path
        assert _status(web.public_url + path + "?x=1") == 404, path
        ops_host = {
            "Host": web.ops_url.removeprefix("http://"),
            "X-Forwarded-Port": web.ops_url.rsplit(":", 1)[1],
        }
        assert requests.get(web.public_url + path, headers=ops_host, timeout=5).status_code == 404, path
    assert _status(web.public_url + "/healthz") == 200


@pytest.mark.timeout(90)
def test_redis_loss_is_a_503_and_forgeries_stay_401(
    web: Web, throwaway_redis: tuple[subprocess.Popen[bytes], str]
) -> None:
    redis_process, _ = throwaway_redis
    redis_process.kill()
    redis_process.wait(timeout=5)
    for deal_id in (1, 2, 3):
        body = json.dumps([event(deal_id, propertyValue=PERSONAL_DATA[0])]).encode()
        now = int(time.time() * 1000)
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign_v3(SECRET, web.url, body, now),
            "X-HubSpot-Request-Timestamp": str(now),
        }
        answer = send(HostileRequest("valid while Redis is gone", body, headers, Expect.EITHER), web.url)
        assert answer.status == 503
        forged = {**headers, "X-HubSpot-Signature-v3": sign_v3(SECRET + "x", web.url, body, now)}
        assert send(HostileRequest("forged", body, forged, Expect.FORGED), web.url).status == 401
    assert _status(web.ops_url + "/readyz") == 503
    assert web.process.poll() is None
    os.killpg(web.process.pid, signal.SIGTERM)
    web.process.wait(timeout=30)
    _assert_logs_clean(web)
