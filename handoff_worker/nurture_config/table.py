"""The mechanism behind the section tables: a section lists its keys, one function reads it.

A section's table lists its keys in the order "Allowed here" shows them, each with the check
that reads its value and the model field it fills. A key left out keeps the model's default, so
the defaults live in one place (`domain.nurture`). Rules that span keys (a nurture names exactly
one method; a reason that is not recycled lists no nurtures) are a section's `check`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handoff_worker.nurture_config.values import STANDARD_LIFECYCLE_STAGES, Fields, as_section, known_fields
from handoff_worker.nurture_config.yaml_reader import Problems, Where


@dataclass(frozen=True)
class Context:
    """What reading a value may depend on besides the value: earlier sections and the reason."""

    stages: frozenset[str] = frozenset(STANDARD_LIFECYCLE_STAGES)
    default_stage: str = "lead"
    reason: str = ""
    # `marketing_notices:` as read (a MarketingNotices, None when unreadable): a reason's
    # `tell_marketing > message` needs its webhook.
    notices: Any = None


Reader = Callable[[Any, Where, Context, Problems], Any]


@dataclass(frozen=True)
class Key:
    name: str
    read: Reader  # returns the value for the model, or None after adding a problem
    attribute: str = ""  # the model's field, when it is named differently from the YAML key

    @property
    def field(self) -> str:
        return self.attribute or self.name


@dataclass(frozen=True)
class Section:
    keys: tuple[Key, ...]
    build: Callable[[dict[str, Any], Context], Any]  # the model from the values read
    example: str  # shown when the section is not a section at all
    required: tuple[str, ...] = ()
    # Rules across keys, run on the raw values before they are read; False: stop here.
    check: Callable[[Fields, Where, Context, Problems], bool] | None = None

    @property
    def allowed(self) -> tuple[str, ...]:
        return tuple(key.name for key in self.keys)


def read_section(section: Section, value: object, where: Where, context: Context, problems: Problems) -> Any:
    """The model a section of the file describes, or None when a problem makes it unusable."""
    mapping = as_section(value, where, problems, section.example)
    if mapping is None:
        return None
    fields = known_fields(mapping, where, section.allowed, problems)
    missing = [name for name in section.required if name not in fields]
    if missing:
        problems.add(where, f"{' and '.join(missing)} missing; write e.g. {section.example}")
    if section.check is not None and not section.check(fields, where, context, problems):
        return None
    values: dict[str, Any] = {}
    for key in section.keys:
        if key.name in fields:
            read = key.read(*fields[key.name], context, problems)
            if read is not None:
                values[key.field] = read
    if any(key.field not in values for key in section.keys if key.name in section.required):
        return None
    return section.build(values, context)


def model(cls: Callable[..., Any]) -> Callable[[dict[str, Any], Context], Any]:
    return lambda values, _context: cls(**values)
