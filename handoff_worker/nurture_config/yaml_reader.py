"""The YAML itself: syntax, duplicate keys, and where in the file each problem is.

Nothing here knows what the keys mean; `sections` does. This module turns text into a document
whose mappings remember their lines, and collects problems that name the file, the line and the
path of keys a marketer can follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    Event,
    ScalarEvent,
)
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.reader import ReaderError

# The file is read by every worker and web process, inside tasks and requests, so what it may
# contain is bounded: no construct makes reading it cost more than a pass over its text.
# The deepest place a marketer writes is 6 levels down (reasons > Pricing > nurture > item >
# property > name); past this depth, the parser's recursion ends in a crash, not a message.
MAX_NESTING = 20
# Each `[` or `{` still open on a line costs the YAML scanner a step on every later token of that
# line, so one long line of brackets takes minutes. No sensible file opens more than a few.
MAX_BRACKETS_PER_LINE = 64
# A number longer than this is never an id or a count of hours; at 4,300 digits Python refuses
# to convert it at all.
MAX_NUMBER_LENGTH = 30
_NUMBER_RE = re.compile(r"^[-+]?(0x[0-9a-fA-F_]+|0o[0-7_]+|[0-9._]*[0-9][0-9._]*([eE][-+]?[0-9]+)?)$")
# Characters that escape sequences can put in a value but that HubSpot, Redis and the logs
# cannot carry: C0 controls (not tab or newline) and lone halves of a UTF-16 surrogate pair.
_UNSTORABLE_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_YAML_TAG_PREFIX = "tag:yaml.org,2002:"
MAX_SHOWN = 50


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

    def add_line(self, line: int, message: str) -> None:
        """A problem at a line that belongs to no key (found before the keys are known)."""
        self._found.append((line, f"{self.source}:{line} {message}"))

    def add_file(self, message: str) -> None:
        self._found.append((0, f"{self.source}: {message}"))

    @property
    def messages(self) -> list[str]:
        """In file order, so a marketer can work down the file; past the first `MAX_SHOWN`, a
        count, so a file of thousands of mistakes does not log thousands of lines per process."""
        ordered = [message for _, message in sorted(self._found, key=lambda found: found[0])]
        if len(ordered) <= MAX_SHOWN:
            return ordered
        hidden = len(ordered) - MAX_SHOWN
        return [*ordered[:MAX_SHOWN], f"{self.source}: {hidden} more problem(s) after these; fix these first"]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    # Duplicates are found on the node tree instead (all of them, with lines); the parser's own
    # check stops at the first one.
    yaml.allow_duplicate_keys = True
    return yaml


def _compose_and_load(text: str, problems: Problems) -> object:
    """One pass of the round-trip parser (the slow part of reading): the node tree is checked for
    duplicate keys and merges, then built into the document with its line numbers."""
    yaml = _yaml()
    constructor, parser = yaml.get_constructor_parser(text)
    try:
        root = constructor.composer.get_single_node()
        if root is None or _check_mappings(root, problems):
            return None  # a merge: what the merged keys would say is beside the point
        return constructor.construct_document(root)
    finally:
        parser.dispose()


def parse_yaml(text: str, problems: Problems) -> CommentedMap | None:
    """The document as a mapping with line numbers, or None with the reason in `problems`."""
    if not text.strip() or _only_comments(text):
        problems.add_file(
            "the file is empty: it needs at least `version: 1` and a `reasons:` section "
            "(see docs/nurture-config.md)"
        )
        return None
    if not _brackets_within_bounds(text, problems):
        return None
    try:
        if not _only_plain_yaml(text, problems):
            return None
        document = _compose_and_load(text, problems)
        if document is None and problems.messages:
            return None
    except MarkedYAMLError as exc:
        misaligned = _indentation_problem(exc, text)
        if misaligned is not None:
            problems.add_line(*misaligned)
        else:
            problems.add_file(_syntax_message(exc))
        return None
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else 0
        shown = f"U+{exc.character:04X}" if isinstance(exc.character, int) else "a character"
        problems.add_line(
            line,
            f"{shown} is a control character, which YAML does not allow in a file; remove it "
            "(it is often pasted in invisibly from another program)",
        )
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
        return f"the number {_shortened(str(value))}"
    return repr(_shortened(str(value)))


def _shortened(text: str) -> str:
    """Long values are cut in messages, so a pasted paragraph does not flood the logs."""
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


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


def _indentation_problem(exc: MarkedYAMLError, text: str) -> tuple[int, str] | None:
    """(line, message) in a marketer's words when the parser's complaint is a line indented wrongly
    (its own words, '<block end>' and 'mapping values', say nothing to one); None otherwise."""
    mark = exc.problem_mark
    problem = exc.problem or ""
    lines = text.splitlines()
    if mark is None or mark.line >= len(lines):
        return None
    line = lines[mark.line]
    indent = line[: len(line) - len(line.lstrip())]
    key = line.strip().split(":", 1)[0][:40]
    if "\t" in indent:
        return mark.line + 1, (
            f"this line is indented with a tab; the nurture file is indented with spaces only: "
            f"replace the tab with spaces so '{key}' lines up with the keys of its section"
        )
    above_line = next((n for n in range(mark.line - 1, -1, -1) if _is_content(lines[n])), None)
    if above_line is None:
        return None
    above = lines[above_line]
    above_column = len(above) - len(above.lstrip()) + 1
    column = len(indent) + 1
    if "expected <block end>" in problem:
        return mark.line + 1, (
            f"this line is indented differently from the lines around it (column {column}; line "
            f"{above_line + 1} starts at column {above_column}); the keys of one section must line "
            f"up in the same column: indent '{key}' and the keys beside it alike"
        )
    if "mapping values are not allowed" in problem and column > above_column and not _opens_section(above):
        return mark.line + 1, (
            f"this line is indented further than the line above it (column {column}, not "
            f"{above_column}), so YAML reads it as the rest of that line's value; keys of one "
            f"section must line up: move '{key}' left to column {above_column}"
        )
    return None


def _is_content(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _opens_section(line: str) -> bool:
    """`key:` with nothing after it (but a comment): the next line may be indented further."""
    return line.split(" #", 1)[0].rstrip().endswith(":")


def _brackets_within_bounds(text: str, problems: Problems) -> bool:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.count("[") + line.count("{") > MAX_BRACKETS_PER_LINE:
            problems.add_line(
                number,
                f"this line opens more than {MAX_BRACKETS_PER_LINE} lists or sections with [ or {{; "
                "write them one per line, indented (see docs/nurture-config.md)",
            )
            return False
    return True


def _only_plain_yaml(text: str, problems: Problems) -> bool:
    """Refuse, from the parser's events and before anything is built, what a marketer never
    needs and what makes reading unbounded: aliases (an alias bomb is a few hundred bytes that
    expand to billions of values), tags (they ask for objects to be built), deep nesting,
    numbers too long to be numbers, and characters that cannot be stored."""
    plain = True
    depth = 0
    alias_lines: set[int] = set()
    # The plain parser: the same grammar as the round-trip one, without its comment bookkeeping.
    for event in YAML(typ="safe", pure=True).parse(text):
        line = event.start_mark.line + 1
        if isinstance(event, AliasEvent):
            if line in alias_lines:
                continue  # one message per line: a bomb has dozens
            alias_lines.add(line)
            plain = False
            problems.add_line(
                line,
                f"*{event.anchor} repeats another part of the file by reference (a YAML "
                "alias); the nurture file does not accept aliases or `<<:` merges: write the value "
                "out where it is used",
            )
        elif getattr(event, "tag", None) is not None:
            plain = False
            problems.add_line(
                line,
                f"the tag {_shown_tag(event)} is not accepted in the nurture file; remove "
                "it (put a value in quotes to make it text)",
            )
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                problems.add_line(
                    line,
                    f"lists and sections are nested more than {MAX_NESTING} levels deep; "
                    "the nurture file needs at most 6: check the indentation",
                )
                return False
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
        elif isinstance(event, ScalarEvent):
            for message in _scalar_problems(event):
                plain = False
                problems.add_line(line, message)
    return plain


def _shown_tag(event: Event) -> str:
    tag = str(getattr(event, "tag", ""))
    return "!!" + tag.removeprefix(_YAML_TAG_PREFIX) if tag.startswith(_YAML_TAG_PREFIX) else tag


def _scalar_problems(event: ScalarEvent) -> list[str]:
    value = str(event.value)
    found = []
    if event.style is None and len(value) > MAX_NUMBER_LENGTH and _NUMBER_RE.match(value):
        found.append(
            f"{_shortened(value)} is too long to be a number here; HubSpot ids have at most 20 "
            "digits: copy the id again"
        )
    unstorable = _UNSTORABLE_RE.search(value)
    if unstorable is not None:
        found.append(
            f"{_shortened(value)!r} contains the character U+{ord(unstorable.group()):04X}, which "
            "HubSpot cannot store (a control character, or half of an emoji cut in two): remove it "
            "or retype the text"
        )
    return found


def _check_mappings(node: Node | None, problems: Problems, path: tuple[str, ...] = ()) -> int:
    """Duplicate keys and `<<:` merges, every one with its line; returns how many merges. The tree
    has no aliases by now, so each node is visited once."""
    merges = 0
    if isinstance(node, MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key_node.tag == _YAML_TAG_PREFIX + "merge":
                merges += 1
                problems.add(
                    Where(line, (*path, key)),
                    "`<<:` merges another section in; the nurture file does not accept merges: "
                    "write the keys out in this section",
                )
            elif key in first_line:
                problems.add(
                    Where(line, (*path, key)),
                    f"'{key}' appears twice (first on line {first_line[key]}); YAML keeps only "
                    "one of them: merge the two entries into one",
                )
            else:
                first_line[key] = line
            merges += _check_mappings(value_node, problems, (*path, key))
    elif isinstance(node, SequenceNode):
        parent = path[-1] if path else ""
        for index, child in enumerate(node.value):
            merges += _check_mappings(child, problems, (*path[:-1], f"{parent}[{index}]"))
    return merges


class KeyLines:
    """The line of each key of a valid nurture file, for problems found after reading it (by
    asking HubSpot), so they point into the file as reading problems do."""

    def __init__(self, text: str) -> None:
        self._document = _yaml().load(text)

    def line(self, path: tuple[str | int, ...]) -> int | None:
        """The line of the deepest key of `path` the file has (a reason's label matched as rules
        match it, ignoring case and spacing; an int is an item of a list); None if not even the
        first is written (a default)."""
        node, found = self._document, None
        for step in path:
            if isinstance(node, CommentedMap) and isinstance(step, str):
                key = next((key for key in node if _folded(str(key)) == _folded(step)), None)
                if key is None:
                    break
                found = int(node.lc.key(key)[0]) + 1
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(step, int) and step < len(node):
                found = int(node.lc.item(step)[0]) + 1
                node = node[step]
            else:
                break
        return found


def _folded(label: str) -> str:
    return " ".join(label.split()).casefold()
