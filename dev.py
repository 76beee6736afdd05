#!/usr/bin/env python3
"""Set-up and everyday commands, with nothing but Python installed.

    python3 dev.py demo     create .venv, install, run `handoff-worker demo`
    python3 dev.py test     create .venv, install, run ruff, mypy, the import contracts and the tests
    python3 dev.py drills   create .venv, install, run the fault drills
    python3 dev.py bench    create .venv, install, run the benchmarks
    python3 dev.py lock     rewrite requirements/*.txt from pyproject.toml's dependency lists

Everything is installed from the lock files in requirements/ (exact versions, with hashes): the
demo from demo.txt (what the demo runs, nothing more), the rest from dev.txt; production installs
from production.txt. After changing a dependency list in pyproject.toml, run `python3 dev.py lock`
and commit the lock files with it; `python3 dev.py lock --upgrade` moves every pin to the newest
version allowed. Extra arguments after `test` go to pytest (e.g. `python3 dev.py test -k intake`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("HANDOFF_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"
REQUIREMENTS = ROOT / "requirements"
# lock file -> the pyproject extras it holds. dev.txt is resolved first; the others are resolved
# within its versions, so the three never disagree on a version.
LOCKS: dict[str, tuple[str, ...]] = {"dev": ("dev",), "demo": ("demo",), "production": ()}


def run(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    code = subprocess.call([str(a) for a in args], cwd=ROOT)
    if code != 0:
        sys.exit(code)


def install_fingerprint(lock: str, root: Path = ROOT) -> str:
    """What an install from `lock` depends on: it changes when pyproject or that lock file does."""
    digest = hashlib.sha256((root / "pyproject.toml").read_bytes())
    digest.update((root / "requirements" / f"{lock}.txt").read_bytes())
    return f"{lock} {digest.hexdigest()}"


def ensure_venv(lock: str) -> None:
    """Create the virtual environment and install from `lock`, again whenever it or pyproject
    changes. dev.txt holds everything demo.txt does, so a dev install serves the demo too."""
    installed = STAMP.read_text() if STAMP.is_file() else ""
    if installed in {install_fingerprint(lock), install_fingerprint("dev")}:
        return
    if not (BIN / "python").exists():
        print(f"creating the virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(
        BIN / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--require-hashes",
        "-r",
        REQUIREMENTS / f"{lock}.txt",
    )
    # The project itself: its dependencies are all in the lock already.
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--no-deps", "-e", ".")
    STAMP.write_text(install_fingerprint(lock))


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def ensure_chromium() -> None:
    """The HTML report's test renders the page in a real Chromium (tests/ops/test_report_browser.py).
    Missing: installed from Debian's packages when this runs as root with apt-get, else a stop that
    says how to get it. The test itself installs nothing and fails, never skips, without it."""
    if any(shutil.which(name) for name in CHROMIUM_NAMES):
        return
    if getattr(os, "geteuid", lambda: -1)() == 0 and shutil.which("apt-get"):
        print("chromium is missing: installing Debian's (the HTML report is checked in it)", flush=True)
        os.environ.setdefault("DEBIAN_FRONTEND", "noninteractive")
        run("apt-get", "update")
        run("apt-get", "install", "-y", "chromium")
        return
    sys.exit(
        "chromium is not installed, and the tests check the HTML report in it. Install it, then run "
        "this again: `sudo apt-get install -y chromium` (Debian/Ubuntu), `sudo dnf install chromium` "
        "(Fedora), `brew install --cask chromium` (macOS); any of chromium, chromium-browser or "
        "google-chrome on PATH will do."
    )


def write_locks(extra_args: list[str]) -> None:
    """Resolve pyproject's dependency lists into requirements/*.txt with uv (from the dev install)."""
    if not (BIN / "uv").exists():
        ensure_venv("dev")
    for lock, extras in LOCKS.items():
        command: list[str | Path] = [BIN / "uv", "pip", "compile", "pyproject.toml", "--quiet"]
        command += [arg for extra in extras for arg in ("--extra", extra)]
        # --universal: one lock for every platform and Python >= 3.11, not just this machine's.
        command += ["--universal", "--python-version", "3.11", "--generate-hashes"]
        command += ["--custom-compile-command", "python3 dev.py lock"]
        if lock != "dev":
            command += ["--constraint", "requirements/dev.txt"]
        run(*command, *extra_args, "--output-file", f"requirements/{lock}.txt")


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"demo", "test", "drills", "bench", "lock"}:
        print(__doc__)
        sys.exit(2)
    command, rest = argv[0], argv[1:]
    if command == "lock":
        write_locks(rest)
        return
    ensure_venv("demo" if command == "demo" else "dev")
    if command == "demo":
        run(BIN / "handoff-worker", "demo", *rest)
    elif command == "test":
        ensure_chromium()
        run(BIN / "ruff", "check", ".")
        run(BIN / "ruff", "format", "--check", ".")
        run(BIN / "mypy")
        # The import rules of docs/architecture.md, as contracts in pyproject.toml.
        run(BIN / "lint-imports")
        run(BIN / "python", "-m", "pytest", *rest)
    elif command == "drills":
        run(BIN / "python", "-m", "bench.drills", *rest)
    elif command == "bench":
        run(BIN / "python", "-m", "bench", *rest)


if __name__ == "__main__":
    main(sys.argv[1:])
