"""Reading the nurture file from disk and validating it whole."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.errors import NurtureConfigError
from handoff_worker.nurture_config.document import rules_from
from handoff_worker.nurture_config.yaml_reader import Problems, parse_yaml

log = logging.getLogger(__name__)

# Far above any real file (the shipped one is 4 KiB; 100 reasons with three nurtures and notes are
# about 30 KiB), and small enough that the reload a task or request may run stays short: reading a
# file at the cap takes a few seconds of pure-Python parsing (docs/reliability.md).
MAX_FILE_BYTES = 128 * 1024


def load_rules(path: str | Path, *, named_by: str = "HANDOFF_CONFIG") -> NurtureRules:
    """Read and validate the nurture YAML at `path`.

    `named_by` says where the path came from (a setting or a command-line option) so a missing
    file's message tells the reader what to change. Raises `NurtureConfigError` listing every
    problem found.
    """
    return parse_rules(read_config_text(path, named_by=named_by), str(path))


def read_config_text(path: str | Path, *, named_by: str = "HANDOFF_CONFIG") -> str:
    file = Path(path)
    if not file.is_file():
        what = "is a folder, not a file" if file.is_dir() else "which does not exist"
        raise NurtureConfigError(
            str(path),
            [
                f"{named_by} points to {path} {what}: set {named_by} to the nurture YAML's path "
                "(the project ships config/nurture.yaml to start from)"
            ],
        )
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)  # never more, however large the file has grown
    except OSError as exc:
        raise NurtureConfigError(
            str(path),
            [
                f"{named_by} points to {path}, which cannot be read ({exc.strerror or exc}): "
                "check its permissions"
            ],
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise NurtureConfigError(str(path), [_too_large(f"{named_by} points to {path}, which", file)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NurtureConfigError(
            str(path), [f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8"]
        ) from None


def _too_large(subject: str, file: Path | None = None, size: int | None = None) -> str:
    if size is None and file is not None:
        try:
            size = file.stat().st_size
        except OSError:
            size = None
    shown = f"{size / 1024:,.0f} KiB" if size is not None else "too large"
    return (
        f"{subject} is {shown}; the nurture file may be at most {MAX_FILE_BYTES // 1024} KiB: "
        "check that the right file was saved there"
    )


def parse_rules(text: str, source: str) -> NurtureRules:
    """Validate YAML `text` (from the file named `source`, used in messages) into rules."""
    if len(text) > MAX_FILE_BYTES:  # characters: at least as many bytes
        raise NurtureConfigError(source, [_too_large(source, size=len(text.encode("utf-8", "replace")))])
    problems = Problems(source)
    try:
        document = parse_yaml(text, problems)
        rules = rules_from(document, problems) if document is not None else None
    except Exception as exc:
        # Whatever the file holds, a bad file must reach the one error every caller handles by
        # keeping the last good rules, never a crash in a task or a request.
        log.debug("reading %s failed unexpectedly", source, exc_info=True)
        detail = str(exc)
        detail = detail if len(detail) <= 120 else detail[:100] + "..."
        raise NurtureConfigError(
            source,
            [
                f"{source}: the file could not be read ({type(exc).__name__}: {detail}); compare it "
                "with the examples in docs/nurture-config.md and write its values out plainly"
            ],
        ) from None
    if problems.messages or rules is None:
        raise NurtureConfigError(source, problems.messages)
    return rules


def content_version(text: str) -> str:
    """A short content hash: the rules version recorded beside every handoff."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
