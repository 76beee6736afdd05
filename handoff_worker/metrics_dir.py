"""The multiprocess directory of a process group, chosen before prometheus_client is imported.

prometheus-client decides when it is first imported whether a process counts in memory or in files
under PROMETHEUS_MULTIPROC_DIR, and a forked process inherits that decision. So the parent of a
process group (gunicorn's master, a Celery worker's main process) sets the variable here, before it
or any process of the group imports the metrics; this module imports nothing that imports it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None


def use_multiprocess_dir(group: str) -> str:
    """Called once by the parent of a process group (gunicorn's master, a Celery worker's main
    process) when it starts, before any process of the group counts anything: the group's
    directory, made empty, and set in the environment its processes inherit.

    PROMETHEUS_MULTIPROC_DIR, when set, is used as given (one directory per process group);
    otherwise a directory of this group's own, under the system's temporary directory and named
    after the parent's pid, so two groups on one host never share or empty each other's files.
    """
    directory = multiprocess_dir()
    if directory is None:
        base = Path(tempfile.gettempdir()) / "handoff-worker-metrics"
        _remove_dead_groups(base)
        directory = str(base / f"{group}-{os.getpid()}")
    if _counting_in_memory():
        raise RuntimeError(
            "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: this process "
            "group would count in each process's memory. Set the variable before the process starts."
        )
    os.environ[MULTIPROC_DIR_VARIABLE] = directory
    prepare_multiprocess_dir()
    return directory


def _counting_in_memory() -> bool:
    values = sys.modules.get("prometheus_client.values")
    return values is not None and not getattr(values.ValueClass, "_multiprocess", False)


def _remove_dead_groups(base: Path) -> None:
    """Directories of groups whose parent is gone (a crash or a restart): nothing reads them."""
    for directory in base.glob("*-*"):
        pid = directory.name.rpartition("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(directory, ignore_errors=True)


def prepare_multiprocess_dir() -> None:
    """Creates the group's directory and removes the files a previous run left (they would be
    added to this run's counts, and a reused process id would continue an old file)."""
    directory = multiprocess_dir()
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    own = f"_{os.getpid()}.db"
    for stale in path.glob("*.db"):
        if not stale.name.endswith(own):  # this process's own, created when this module was imported
            stale.unlink(missing_ok=True)
