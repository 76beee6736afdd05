"""The whole stack as separate processes, as the Procfile runs it, for drills and the end-to-end bench.

A throwaway `redis-server` on a free port (its data survives a restart through an append-only file
in the run's directory), the HubSpot sandbox in this process, gunicorn web processes and Celery
worker processes started with the same environment variables production uses.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import redis
import requests

from handoff_worker.celery_app import HANDOFF_QUEUE
from handoff_worker.sandbox.testing import SandboxServer
from handoff_worker.testing import children_of, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLIENT_SECRET = "drill-client-secret"
ACCESS_TOKEN = "pat-drill-token"
APP_ID = 424242
WEBHOOK_PATH = "/webhooks/hubspot"
# HubSpot spreads its retries over a day; drills need them within seconds (27 s in all).
SHORT_RETRY_DELAYS = (1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 5.0, 5.0, 5.0)


def rss_kib(pid: int) -> int:
    """Resident memory of one process (VmRSS from /proc), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _stop(process: subprocess.Popen[bytes], *, grace: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class RedisServer:
    """Our own redis-server, so a drill may stop it without touching anyone else's data."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: apt-get install redis-server (or brew install redis)"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                # Append-only so a restart keeps the queue and the ledger, as a managed Redis does.
                *("--appendonly", "yes", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(lambda: _pings(client), timeout=10, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass
class StackConfig:
    budget: str = "1000/10s"
    worker_concurrency: int = 2
    rules_path: Path = ROOT / "config" / "nurture.yaml"
    retry_delays: tuple[float, ...] = SHORT_RETRY_DELAYS
    # None: the URL of the first web process. Set it when something else receives the webhooks.
    public_url: str | None = None


class Stack:
    """Redis, sandbox, web and worker processes; `stop()` ends every process it started."""

    def __init__(self, workdir: Path, config: StackConfig) -> None:
        self.workdir = workdir
        self.config = config
        self.redis_server = RedisServer(workdir / "redis")
        self.webs: list[tuple[subprocess.Popen[bytes], int]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.sandbox: SandboxServer | None = None
        self._logs: list[BinaryIO] = []

    # ----------------------------------------------------------------- start and stop

    def start(self, *, webs: int = 1, workers: int = 1, web_concurrency: int = 2) -> Stack:
        self.redis_server.start()
        self.web_ports = [free_port() for _ in range(webs)]
        public_url = self.config.public_url or self.web_url(0)
        self.sandbox = SandboxServer.start(
            seed="default",
            client_secret=CLIENT_SECRET,
            app_id=APP_ID,
            access_token=ACCESS_TOKEN,
            rate_limit=self.config.budget,
            webhook_url=public_url,
            retry_delays=self.config.retry_delays,
        )
        for index in range(webs):
            self.start_web(index, web_concurrency)
        for _ in range(workers):
            self.start_worker()
        return self

    def stop(self) -> None:
        for worker in self.workers:
            _stop(worker)
        for web, _ in self.webs:
            _stop(web)
        if self.sandbox is not None:
            self.sandbox.stop()
        self.redis_server.stop()
        for log in self._logs:
            log.close()

    def environment(self, **extra: str) -> dict[str, str]:
        assert self.sandbox is not None
        return {
            **os.environ,
            "HUBSPOT_ACCESS_TOKEN": ACCESS_TOKEN,
            "HUBSPOT_CLIENT_SECRET": CLIENT_SECRET,
            "HUBSPOT_APP_ID": str(APP_ID),
            "HUBSPOT_BASE_URL": self.sandbox.url,
            "REDIS_URL": self.redis_server.url,
            "HANDOFF_CONFIG": str(self.config.rules_path),
            "HUBSPOT_RATE_LIMIT": self.config.budget,
            "WEBHOOK_PUBLIC_URL": self.config.public_url or self.web_url(0),
            "LOG_LEVEL": "WARNING",
            **extra,
        }

    def _log(self, name: str) -> BinaryIO:
        log = (self.workdir / f"{name}.log").open("ab")
        self._logs.append(log)
        return log

    def start_web(self, index: int, concurrency: int = 2) -> None:
        port = self.web_ports[index]
        env = self.environment(PORT=str(port), WEB_CONCURRENCY=str(concurrency), WEB_THREADS="8")
        log = self._log(f"web{index}")
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "handoff_worker.wsgi:app", "-c", "handoff_worker/gunicorn_conf.py"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.webs.append((process, port))
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=30, what=f"web{index}")

    def start_worker(
        self, *, env: dict[str, str] | None = None, wait_ready: bool = True
    ) -> subprocess.Popen[bytes]:
        """A worker as the Procfile starts it; `env` changes its environment, and with
        `wait_ready=False` it is returned at once (for a worker expected to refuse to start)."""
        index = len(self.workers)
        log = self._log(f"worker{index}")
        process = subprocess.Popen(
            [
                *(str(BIN / "celery"), "-A", "handoff_worker.celery_app", "worker"),
                *("--queues", HANDOFF_QUEUE, "--concurrency", str(self.config.worker_concurrency)),
                *("--max-tasks-per-child", "1000", "--hostname", f"drill{index}@%h"),
                *("--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "INFO"),
            ],
            cwd=ROOT,
            env=self.environment(**(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(process)
        log_path = self.workdir / f"worker{index}.log"
        if wait_ready:
            wait_until(lambda: b"ready." in log_path.read_bytes(), timeout=60, what=f"worker{index} to start")
        return process

    # ----------------------------------------------------------------- views

    def web_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.web_ports[index]}{WEBHOOK_PATH}"

    @property
    def hub(self) -> SandboxServer:
        assert self.sandbox is not None
        return self.sandbox

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url, decode_responses=True, socket_timeout=5)

    def worker_log(self, index: int = 0) -> str:
        return (self.workdir / f"worker{index}.log").read_text(errors="replace")

    def pool_pids(self) -> list[int]:
        return [pid for worker in self.workers for pid in children_of(worker.pid)]

    def web_pids(self) -> list[int]:
        return [pid for web, _ in self.webs for pid in children_of(web.pid)]

    def all_alive(self) -> bool:
        return all(p.poll() is None for p in self.workers) and all(w.poll() is None for w, _ in self.webs)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False
