"""Start-up that refuses to half-run, and what `/readyz` says about what is missing.

The web process is started as the Procfile starts it; the Redis durability checks run against
throw-away `redis-server` processes set up each way, never against the shared test Redis.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from handoff_worker.celery_app import create_celery
from handoff_worker.intake.app import create_app
from handoff_worker.settings import Settings
from handoff_worker.startup import EXIT_CONFIG, durability_warnings
from handoff_worker.testing import free_port, own_lines

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROCFILE_WEB = (ROOT / "Procfile").read_text().split("web:", 1)[1].splitlines()[0].split()


def test_web_without_its_client_secret_exits_with_one_line() -> None:
    command = [str(BIN / PROCFILE_WEB[0]), *PROCFILE_WEB[1:]]
    env = {k: v for k, v in os.environ.items() if k != "HUBSPOT_CLIENT_SECRET"}
    env.update(PORT=str(free_port()), HUBSPOT_CLIENT_SECRET="")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = own_lines(done.stdout + done.stderr)
    assert done.returncode == EXIT_CONFIG, lines
    assert len(lines) == 1, lines
    assert "HUBSPOT_CLIENT_SECRET" in lines[0] and "not started" in lines[0]


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[Callable[..., redis.Redis]]:
    """`redis-server`s started with the given options, each on its own port and in its own folder
    (a server with snapshots writes one when it stops), stopped afterwards."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed: no throw-away Redis can be set up")
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> redis.Redis:
        port = free_port()
        folder = tmp_path / f"redis-{port}"
        folder.mkdir()
        command = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), *options]
        started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        client = redis.Redis(port=port, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return client
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def test_durability_warnings_name_what_can_lose_the_ledger(
    throwaway_redis: Callable[..., redis.Redis],
) -> None:
    volatile = throwaway_redis("--save", "", "--appendonly", "no", "--maxmemory-policy", "allkeys-lru")
    warnings = durability_warnings(volatile)
    assert len(warnings) == 2
    assert "neither AOF nor RDB" in warnings[0] and "appendonly yes" in warnings[0]
    assert "allkeys-lru" in warnings[1] and "noeviction" in warnings[1]
    snapshots = throwaway_redis("--save", "60 1", "--appendonly", "no", "--maxmemory-policy", "noeviction")
    assert durability_warnings(snapshots) == []
    aof = throwaway_redis("--save", "", "--appendonly", "yes", "--maxmemory-policy", "volatile-lru")
    assert [w for w in durability_warnings(aof) if "volatile-lru" in w]


def test_readyz_reports_what_is_missing_and_opens_no_connection_per_call(
    throwaway_redis: Callable[..., redis.Redis],
) -> None:
    server = throwaway_redis("--save", "", "--appendonly", "no")
    port = server.connection_pool.connection_kwargs["port"]
    ops = f"127.0.0.1:{free_port()}"  # /readyz answers only on the internal listener
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "OPS_BIND": ops}
    settings = Settings.from_env(env, dotenv_path=None)
    client = create_app(settings, celery_app=create_celery(settings)).test_client()
    client.get("/readyz", base_url=f"http://{ops}")  # connections are opened on first use
    before = int(server.info("stats")["total_connections_received"])
    for _ in range(20):
        answer = client.get("/readyz", base_url=f"http://{ops}")
    opened = int(server.info("stats")["total_connections_received"]) - before
    assert opened <= 1, f"{opened} new Redis connections for 20 readiness checks"
    assert answer.status_code == 503
    checks = answer.get_json()["checks"]
    assert checks["settings"].startswith("missing: HUBSPOT_CLIENT_SECRET")
    assert checks["redis"] == "ok" and checks["broker"] == "ok"
    assert checks["durability"].startswith("warning: Redis has neither AOF nor RDB")
