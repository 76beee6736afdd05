"""The files an operator reads first stay true to the code."""

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from handoff_worker.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_env_example_lists_every_setting_the_code_reads() -> None:
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (ROOT / "handoff_worker/settings.py").read_text()))
    read &= {
        n
        for n in read
        if n.startswith(("HUBSPOT_", "REDIS_", "HANDOFF_", "WEBHOOK_", "TRUSTED_", "RESYNC_", "LOG_", "OPS_"))
    }
    # What the processes read besides Settings: the gunicorn config, metrics, the Procfile's lines.
    reads = (
        r"os\.(?:environ\.get\(|environ\[|getenv\()[\"']([A-Z][A-Z0-9_]+)",  # os.environ.get("X")
        r"_from\(os\.environ, \"([A-Z][A-Z0-9_]+)\"",  # whole_number_from(os.environ, "X", ...)
        r"^[A-Z_]+_VARIABLE = \"([A-Z][A-Z0-9_]+)\"",  # a variable's name kept in a constant
    )
    for module in (ROOT / "handoff_worker").rglob("*.py"):
        if "sandbox" not in module.parts:
            for pattern in reads:
                read |= set(re.findall(pattern, module.read_text(), re.M))
    read |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", (ROOT / "Procfile").read_text()))
    # A commented-out line lists a setting that must stay unset unless used.
    listed = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert {"PORT", "WORKER_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"} <= read, "the scan of the code broke"
    assert read - listed == set(), "settings missing from .env.example"
    assert listed - read == set(), ".env.example lists settings the code does not read"


def test_procfile_runs_the_documented_processes() -> None:
    processes = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert {"web", "worker", "beat"} <= processes.keys()
    assert "handoff_worker.wsgi:app" in processes["web"]
    assert "--max-tasks-per-child" in processes["worker"]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    assert "python3 dev.py test" in readme
    assert re.search(r"^python3 dev.py test$", ci, re.M)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_explains_itself(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_top_level_help_lists_every_subcommand() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "handoff_worker", "--help"], capture_output=True, text=True, check=True
    )
    for name in COMMANDS:
        assert name in result.stdout


# --------------------------------------------------------------------------- dependencies and locks

PROJECT = "handoff-worker"
# lock file -> the pyproject extras it must hold (the runtime dependencies are in every one)
LOCK_EXTRAS = {"production": (), "demo": ("demo",), "dev": ("dev",)}


def _declared(extras: tuple[str, ...]) -> dict[str, Requirement]:
    """pyproject's requirements for an install with `extras`, following the project's own extras
    (dev includes handoff-worker[demo])."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in map(Requirement, project["optional-dependencies"][extra]):
            if canonicalize_name(requirement.name) == PROJECT:
                pending.extend(requirement.extras)
            else:
                wanted.append(requirement)
    return {canonicalize_name(r.name): r for r in wanted}


def _locked(lock: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, what it is there for) from requirements/<lock>.txt."""
    pins: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in (ROOT / "requirements" / f"{lock}.txt").read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if pin:
            name = canonicalize_name(pin.group(1))
            pins[name] = (pin.group(2), [])
        elif name and (via := re.match(r"^\s+#\s+(?:via\s+)?(\S.*)$", line)) and via.group(1) != "via":
            pins[name][1].append(via.group(1).strip())
    return pins


@pytest.mark.parametrize("lock", sorted(LOCK_EXTRAS))
def test_every_declared_dependency_is_locked_at_an_allowed_version(lock: str) -> None:
    locked = _locked(lock)
    problems = []
    for name, requirement in _declared(LOCK_EXTRAS[lock]).items():
        if name not in locked:
            problems.append(f"{requirement} is not in requirements/{lock}.txt")
        elif not requirement.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{requirement} but requirements/{lock}.txt pins {name}=={locked[name][0]}")
    assert not problems, "pyproject.toml and the lock disagree; run `python3 dev.py lock`:\n" + "\n".join(
        problems
    )


@pytest.mark.parametrize("lock", sorted(LOCK_EXTRAS))
def test_the_lock_holds_no_dependency_pyproject_dropped(lock: str) -> None:
    declared = _declared(LOCK_EXTRAS[lock])
    stale = [
        name
        for name, (_, reasons) in _locked(lock).items()
        if f"{PROJECT} (pyproject.toml)" in reasons and name not in declared
    ]
    assert not stale, f"requirements/{lock}.txt still holds {stale} for pyproject; run `python3 dev.py lock`"


def test_production_and_demo_installs_hold_no_development_tool() -> None:
    runtime = set(_declared(()))
    demo_only = set(_declared(("demo",))) - runtime
    dev_only = set(_declared(("dev",))) - runtime - demo_only
    assert demo_only and dev_only
    for lock, unwanted in (("production", demo_only | dev_only), ("demo", dev_only)):
        locked = _locked(lock)
        # A tool may still come in as a dependency of a package the install needs: that is fine.
        present = sorted(
            name for name in unwanted & locked.keys() if not _needed_by_a_package(locked[name][1])
        )
        assert not present, f"requirements/{lock}.txt installs {present}, which it does not need"


def _needed_by_a_package(reasons: list[str]) -> bool:
    return any(not reason.startswith((PROJECT, "-c ", "-r ")) for reason in reasons)


def test_runtime_dependencies_leave_out_demo_and_development_tools() -> None:
    declared = set(_declared(()))
    assert {"fakeredis", "honcho", "pydantic", "pytest"}.isdisjoint(declared)
    assert {"celery", "redis", "flask", "gunicorn", "hubspot-api-client"} <= declared


def test_every_locked_version_is_hashed_for_pip() -> None:
    for lock in LOCK_EXTRAS:
        blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements" / f"{lock}.txt").read_text())
        unhashed = [b.split()[0] for b in blocks if "==" in b.split("\n")[0] and "--hash=sha256:" not in b]
        assert not unhashed, f"requirements/{lock}.txt: no hash for {unhashed}; run `python3 dev.py lock`"


def _dev_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dev_script_reinstalls_when_a_lock_changes(tmp_path: Path) -> None:
    dev = _dev_script()
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    before = {lock: dev.install_fingerprint(lock, tmp_path) for lock in LOCK_EXTRAS}
    lock_file = tmp_path / "requirements" / "dev.txt"
    lock_file.write_text(lock_file.read_text() + "# one more line\n")
    after = {lock: dev.install_fingerprint(lock, tmp_path) for lock in LOCK_EXTRAS}
    assert after["dev"] != before["dev"]
    assert after["demo"] == before["demo"] and after["production"] == before["production"]


def test_dev_script_installs_from_the_locks_it_writes() -> None:
    dev = _dev_script()
    assert set(dev.LOCKS) == set(LOCK_EXTRAS)
    for lock, extras in LOCK_EXTRAS.items():
        assert dev.LOCKS[lock] == extras
        assert "python3 dev.py lock" in (ROOT / "requirements" / f"{lock}.txt").read_text(), lock
    readme = (ROOT / "README.md").read_text()
    assert "python3 dev.py lock" in readme
