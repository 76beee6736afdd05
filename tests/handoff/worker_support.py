"""A real `celery worker` process as the Procfile starts it, for tests that watch it work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from handoff_worker.settings import Settings
from handoff_worker.testing import wait_until

CELERY = str(Path(sys.executable).with_name("celery"))


class Worker:
    """`celery -A handoff_worker.celery_app worker` on the test's Redis, pointed at the sandbox.

    `env` adds to (or, with a None value, removes from) the environment the worker starts with.
    `wait_ready=False` returns at once, for tests of a worker that must refuse to start.
    """

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        env: dict[str, str | None] | None = None,
        wait_ready: bool = True,
        concurrency: int = 2,
    ) -> None:
        environment: dict[str, str | None] = {
            **os.environ,
            "REDIS_URL": settings.redis_url,
            "HUBSPOT_BASE_URL": settings.hubspot_base_url,
            "HUBSPOT_ACCESS_TOKEN": settings.hubspot_access_token,
            "HANDOFF_CONFIG": str(settings.handoff_config),
            "HUBSPOT_RATE_LIMIT": "1000/1s",
            **(env or {}),
        }
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                CELERY,
                "-A",
                "handoff_worker.celery_app",
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
            ],
            env={k: v for k, v in environment.items() if v is not None},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if wait_ready:
            wait_until(lambda: b"ready." in log_path.read_bytes(), timeout=30, what="the worker to start")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
