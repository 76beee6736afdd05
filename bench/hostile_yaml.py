"""Hostile nurture files: what each costs to read and refuse, in this process.

    python -m bench.hostile_yaml [--repeat 3]

Every file a reload may meet is read inside a Celery task or a web request, so each must be
refused (or accepted) in bounded time. This builds the worst shapes found for the YAML reader,
each just under the size cap, and times `parse_rules` on them (the best of `--repeat` runs).
`bench/drills.py` saves some of them under a running worker; the tests in
`tests/config/test_hostile_yaml.py` check the messages.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.errors import NurtureConfigError
from handoff_worker.nurture_config import load_rules, parse_rules
from handoff_worker.nurture_config.loading import MAX_FILE_BYTES

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (ROOT / "config" / "nurture.yaml").read_text(encoding="utf-8")


def alias_bomb(levels: int = 9) -> str:
    """About 450 bytes that expand to 9**levels values for a reader that follows aliases."""
    lines = ["version: 1", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    lines.append("reasons:\n  Pricing:\n    nurture:\n      - workflow: 12345")
    return "\n".join(lines) + "\n"


def write_huge_file(path: Path, megabytes: int, *, start: str = SHIPPED) -> None:
    """`start`, then valid reasons (not nurtured) until the file is `megabytes` long."""
    with path.open("w", encoding="utf-8") as out:
        out.write(start)
        number = 0
        while out.tell() < megabytes * 1024 * 1024:
            out.write(f"  Extra reason {number}:\n    recycle: false\n")
            number += 1


def _fill(head: str, unit: str, tail: str = "") -> str:
    """`head`, then `unit` (with `{}` numbered) as often as fits under the size cap, then `tail`."""
    parts = [head]
    size = len(head) + len(tail)
    number = 0
    while True:
        part = unit.format(number) if "{}" in unit else unit
        if size + len(part) > MAX_FILE_BYTES - 64:
            break
        parts.append(part)
        size += len(part)
        number += 1
    return "".join([*parts, tail])


def deep_block_nesting() -> str:
    return "version: 1\nx:\n" + "".join(f"{' ' * level}k{level}:\n" for level in range(1, 500))


SHAPES: dict[str, Callable[[], str]] = {
    "the shipped config/nurture.yaml": lambda: SHIPPED,
    "alias bomb (9 levels)": alias_bomb,
    "valid: reasons up to the cap": lambda: _fill(
        "version: 1\nreasons:\n", "  Reason {}:\n    nurture:\n      - workflow: 12345\n"
    ),
    "an alias on every line (up to the cap)": lambda: _fill("version: 1\na: &a 1\nx:\n", "  - *a\n"),
    "one line of [[[[": lambda: "version: 1\nx: " + "[" * (MAX_FILE_BYTES - 20) + "\n",
    "lines of 20 nested [ ]": lambda: _fill("version: 1\nx:\n", "  - " + "[" * 20 + "]" * 20 + "\n"),
    "500 levels of indentation": deep_block_nesting,
    "one value as long as the cap": lambda: _fill("version: 1\nreasons:\n  Pricing:\n    value: ", "x", "\n"),
    "one flow mapping of 10,000 keys": lambda: _fill("version: 1\nx: {", "k{}: 1, ", "z: 1}\n"),
    "10,000 unknown keys": lambda: _fill("version: 1\nreasons: {}\n", "k{}: blue\n"),
    "one number of 5,000 digits": lambda: (
        "version: 1\nreasons: {P: {nurture: [{workflow: %s}]}}\n" % ("1" * 5000)
    ),
}


def time_one(text: str, repeat: int, read: Callable[[], object] | None = None) -> tuple[float, str]:
    best = float("inf")
    outcome = ""
    for _ in range(repeat):
        began = time.perf_counter()
        try:
            rules = read() if read is not None else parse_rules(text, "hostile.yaml")
            assert isinstance(rules, NurtureRules)
            outcome = f"accepted ({len(rules.reasons)} reasons)"
        except NurtureConfigError as exc:
            outcome = f"refused: {exc.problems[0].removeprefix('hostile.yaml')[:90]}"
        best = min(best, time.perf_counter() - began)
    return best, outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print("| file | bytes | read and checked in | outcome |\n|---|---|---|---|")
    for name, build in SHAPES.items():
        text = build()
        seconds, outcome = time_one(text, args.repeat)
        print(f"| {name} | {len(text.encode()):,} | {seconds * 1000:,.0f} ms | {outcome} |", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        huge = Path(folder) / "nurture.yaml"
        write_huge_file(huge, 60)
        seconds, outcome = time_one("", args.repeat, lambda: load_rules(huge))
        outcome = outcome.replace(f"{folder}/", "")
        size = huge.stat().st_size
        print(f"| 60 MB of valid reasons, from disk | {size:,} | {seconds * 1000:,.0f} ms | {outcome} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
