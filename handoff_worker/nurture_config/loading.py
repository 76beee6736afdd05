"""Reading the nurture file from disk and validating it whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

from handoff_worker.domain.nurture import NurtureRules
from handoff_worker.errors import NurtureConfigError
from handoff_worker.nurture_config.document import rules_from
from handoff_worker.nurture_config.yaml_reader import Problems, parse_yaml


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
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise NurtureConfigError(
            str(path), [f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8"]
        ) from None


def parse_rules(text: str, source: str) -> NurtureRules:
    """Validate YAML `text` (from the file named `source`, used in messages) into rules."""
    problems = Problems(source)
    document = parse_yaml(text, problems)
    rules = rules_from(document, problems) if document is not None else None
    if problems.messages or rules is None:
        raise NurtureConfigError(source, problems.messages)
    return rules


def content_version(text: str) -> str:
    """A short content hash: the rules version recorded beside every handoff."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
