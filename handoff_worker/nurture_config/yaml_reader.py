"""The YAML itself: syntax, duplicate keys, and where in the file each problem is.

Nothing here knows what the keys mean; `sections` does. This module turns text into a document
whose mappings remember their lines, and collects problems that name the file, the line and the
path of keys a marketer can follow.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode


@dataclass(frozen=True)
class Where:
    """A place in the file: its line (1-based) and the key path marketers can follow."""

    line: int
    keys: tuple[str, ...] = ()

    def key(self, name: str, line: int) -> Where:
        return Where(line, (*self.keys, name))

    def item(self, index: int, line: int) -> Where:
        *parents, last = self.keys or ("",)
        return Where(line, (*parents, f"{last}[{index}]"))

    def __str__(self) -> str:
        return " > ".join(self.keys) if self.keys else "(top of the file)"


class Problems:
    """Every problem found in one file, so a marketer fixes the file in one pass."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._found: list[tuple[int, str]] = []

    def add(self, where: Where, message: str) -> None:
        self._found.append((where.line, f"{self.source}:{where.line} {where}: {message}"))

    def add_file(self, message: str) -> None:
        self._found.append((0, f"{self.source}: {message}"))

    @property
    def messages(self) -> list[str]:
        """In file order, so a marketer can work down the file."""
        return [message for _, message in sorted(self._found, key=lambda found: found[0])]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    # Duplicates are found on the node tree instead (all of them, with lines); the parser's own
    # check stops at the first one.
    yaml.allow_duplicate_keys = True
    return yaml


def parse_yaml(text: str, problems: Problems) -> CommentedMap | None:
    """The document as a mapping with line numbers, or None with the reason in `problems`."""
    if not text.strip() or _only_comments(text):
        problems.add_file(
            "the file is empty: it needs at least `version: 1` and a `reasons:` section "
            "(see docs/nurture-config.md)"
        )
        return None
    try:
        root = _yaml().compose(text)
        _report_duplicate_keys(root, problems)
        document = _yaml().load(text)
    except MarkedYAMLError as exc:
        problems.add_file(_syntax_message(exc))
        return None
    except YAMLError as exc:  # errors without a position are rare; still say what the parser saw
        problems.add_file(f"the file is not valid YAML: {exc}")
        return None
    if not isinstance(document, CommentedMap):
        problems.add(
            Where(1),
            f"the file must be a set of `key: value` lines (version, reasons, ...), not {kind(document)}",
        )
        return None
    return document


def kind(value: object) -> str:
    """What a marketer wrote, in words: 'the number 6.5', 'a list', "'abc'"."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"yes/no ({str(value).lower()})"
    if isinstance(value, CommentedMap | dict):
        return "a section of keys"
    if isinstance(value, CommentedSeq | list):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"{str(value)!r}"


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _syntax_message(exc: MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
    problem = exc.problem or exc.context or "unreadable YAML"
    hint = ""
    if "'\\t'" in problem or "\t" in problem:
        hint = "; indent with spaces, not tabs"
    return (
        f"YAML syntax error at {where}: {problem}{hint}. Check indentation, colons after keys and "
        "closing quotes or brackets around that spot"
    )


def _report_duplicate_keys(node: Node | None, problems: Problems, path: tuple[str, ...] = ()) -> None:
    if isinstance(node, MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                problems.add(
                    Where(line, (*path, key)),
                    f"'{key}' appears twice (first on line {first_line[key]}); YAML keeps only "
                    "one of them: merge the two entries into one",
                )
            else:
                first_line[key] = line
            _report_duplicate_keys(value_node, problems, (*path, key))
    elif isinstance(node, SequenceNode):
        parent = path[-1] if path else ""
        for index, child in enumerate(node.value):
            _report_duplicate_keys(child, problems, (*path[:-1], f"{parent}[{index}]"))
