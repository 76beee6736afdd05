#!/usr/bin/env python3
"""Set-up and everyday commands, with nothing but Python installed.

    python3 dev.py demo     create .venv, install, run `handoff-worker demo`
    python3 dev.py test     create .venv, install, run ruff, mypy and the tests
    python3 dev.py drills   create .venv, install, run the fault drills
    python3 dev.py bench    create .venv, install, run the benchmarks

Extra arguments after `test` go to pytest (e.g. `python3 dev.py test -k intake`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("HANDOFF_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def run(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    code = subprocess.call([str(a) for a in args], cwd=ROOT)
    if code != 0:
        sys.exit(code)


def ensure_venv() -> None:
    """Create the virtual environment and install the project, again whenever pyproject changes."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.is_file() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating the virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"demo", "test", "drills", "bench"}:
        print(__doc__)
        sys.exit(2)
    command, rest = argv[0], argv[1:]
    ensure_venv()
    if command == "demo":
        run(BIN / "handoff-worker", "demo", *rest)
    elif command == "test":
        run(BIN / "ruff", "check", ".")
        run(BIN / "ruff", "format", "--check", ".")
        run(BIN / "mypy")
        run(BIN / "python", "-m", "pytest", *rest)
    elif command == "drills":
        run(BIN / "python", "-m", "bench.drills", *rest)
    elif command == "bench":
        run(BIN / "python", "-m", "bench", *rest)


if __name__ == "__main__":
    main(sys.argv[1:])
