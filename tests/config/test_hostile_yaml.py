"""Hostile nurture files: each is refused with a message that names its line and what to do, and
none makes reading hang, whatever it holds. The timeout marker is the hang guard."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from handoff_worker.errors import NurtureConfigError
from handoff_worker.nurture_config import load_rules, parse_rules
from handoff_worker.nurture_config.loading import MAX_FILE_BYTES
from handoff_worker.nurture_config.store import RulesStore

MINIMAL = "version: 1\nreasons:\n  Pricing:\n    nurture:\n      - workflow: 12345\n"
ALIAS = "repeats another part of the file by reference (a YAML alias); the nurture file does not accept"


def alias_bomb() -> str:
    """'Billion laughs': 9 levels of 9 aliases each, 9**9 values for a reader that follows them."""
    lines = ["version: 1", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "\n".join([*lines, "reasons: {Pricing: {nurture: [{workflow: 1}]}}"]) + "\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(NurtureConfigError) as caught:
        parse_rules(text, "nurture.yaml")
    return caught.value.problems


HOSTILE = [
    pytest.param(alias_bomb(), f"nurture.yaml:3 *a {ALIAS}", id="alias-bomb"),
    pytest.param(
        "version: 1\nx: &a [*a]\nreasons: {P: {}}\n", f"nurture.yaml:2 *a {ALIAS}", id="self-reference"
    ),
    pytest.param(
        "version: 1\nx: &a {k: *a}\nreasons: {P: {}}\n", f"nurture.yaml:2 *a {ALIAS}", id="self-reference-map"
    ),
    pytest.param(
        "version: 1\nbase: &b {a: 1, a: 2}\ncopy: *b\nreasons: {P: {}}\n",
        f"nurture.yaml:3 *b {ALIAS}",
        id="duplicate-keys-through-an-alias",
    ),
    pytest.param(
        "version: 1\nshared: &quiet\n  recycle: false\nreasons:\n  Competitor:\n    <<: *quiet\n",
        f"nurture.yaml:6 *quiet {ALIAS} aliases or `<<:` merges: write the value out where it is used",
        id="merge-key-with-alias",
    ),
    pytest.param(
        "version: 1\nreasons:\n  Competitor:\n    <<: {recycle: false}\n",
        "nurture.yaml:4 reasons > Competitor > <<: `<<:` merges another section in; the nurture file "
        "does not accept merges: write the keys out in this section",
        id="merge-key-inline",
    ),
    pytest.param(
        MINIMAL + "x: !!python/object/apply:os.system ['echo hi']\n",
        "nurture.yaml:6 the tag !!python/object/apply:os.system is not accepted in the nurture file; "
        "remove it (put a value in quotes to make it text)",
        id="python-object-tag",
    ),
    pytest.param(
        MINIMAL.replace("12345", "!!int '12345'"),
        "nurture.yaml:5 the tag !!int is not accepted",
        id="int-tag",
    ),
    pytest.param(MINIMAL.replace("12345", "!secret 12345"), "nurture.yaml:5 the tag !secret", id="local-tag"),
    pytest.param(
        "version: 1\nx: " + "[" * 5000 + "]" * 5000 + "\nreasons: {P: {}}\n",
        "nurture.yaml:2 this line opens more than 64 lists or sections with [ or {; write them one per "
        "line, indented",
        id="deep-flow-nesting-on-one-line",
    ),
    pytest.param(
        "version: 1\nx:\n" + "".join(f"{' ' * level}k{level}:\n" for level in range(1, 400)),
        "nurture.yaml:22 lists and sections are nested more than 20 levels deep; the nurture file needs "
        "at most 6: check the indentation",
        id="deep-block-nesting",
    ),
    pytest.param(
        "version: 1\nx:\n" + "  [\n" * 40 + "  ]\n" * 40 + "reasons: {P: {}}\n",
        "nested more than 20 levels deep",
        id="deep-nesting-over-many-lines",
    ),
    pytest.param(
        MINIMAL.replace("12345", "1" * 5000),
        "nurture.yaml:5 1111111111111111111111111111111111111111... (5000 characters) is too long to be a "
        "number here; HubSpot ids have at most 20 digits: copy the id again",
        id="5000-digit-id",
    ),
    pytest.param(
        MINIMAL.replace("12345", "0x" + "f" * 5000), "is too long to be a number here", id="huge-hex"
    ),
    pytest.param(
        MINIMAL + "owner_tasks:\n  sla_hours: 1" + "0" * 5000 + "\n",
        "is too long to be a number",
        id="huge-hours",
    ),
    pytest.param(
        MINIMAL.replace("12345", "'" + "7" * 5000 + "'"),
        "nurture.yaml:5 reasons > Pricing > nurture[0] > workflow: "
        "'7777777777777777777777777777777777777777... (5000 characters)' is not a workflow id",
        id="5000-digit-id-in-quotes",
    ),
    pytest.param(
        MINIMAL.replace("12345", "1" * 25),
        "nurture.yaml:5 reasons > Pricing > nurture[0] > workflow: the number 1111111111111111111111111 is "
        "not a workflow id",
        id="25-digit-id",
    ),
    pytest.param(
        MINIMAL.replace("Pricing", '"Pricing \\ud83d"'),
        "nurture.yaml:3 'Pricing \\ud83d' contains the character U+D83D, which HubSpot cannot store (a "
        "control character, or half of an emoji cut in two): remove it or retype the text",
        id="half-an-emoji",
    ),
    pytest.param(
        MINIMAL + 'x: "nul \\0 here"\n',
        "nurture.yaml:6 'nul \\x00 here' contains the character U+0000",
        id="nul",
    ),
    pytest.param(
        MINIMAL + "x: bell \x07\n",
        "nurture.yaml:6 U+0007 is a control character, which YAML does not allow in a file; remove it",
        id="raw-control-character",
    ),
    pytest.param(
        "%YAML 1.1\n---\n" + MINIMAL,
        "nurture.yaml: the file could not be read (IndexError: ",
        id="yaml-directive-breaks-the-parser",
    ),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("text", "expected"), HOSTILE)
def test_hostile_file_is_refused_with_its_line_and_what_to_do(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert any(problem.startswith(expected) or expected in problem for problem in problems), problems


@pytest.mark.timeout(20)
def test_an_alias_bomb_is_reported_once_per_line() -> None:
    problems = problems_of(alias_bomb())
    assert [p.split(" ", 1)[0] for p in problems] == [f"nurture.yaml:{line}" for line in range(3, 11)]


@pytest.mark.timeout(20)
def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "nurture.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_rules(path).reasons[0].nurtures[0].workflow_id == "12345"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.replace("12345", "abc").encode())
    with pytest.raises(NurtureConfigError, match="yaml:5 reasons > Pricing > nurture"):
        load_rules(path)


SLA = [
    pytest.param(".inf", "the number inf is not a number of hours a deal owner can be given", id="infinite"),
    pytest.param(
        "-.inf", "the number -inf is not a number of hours a deal owner can be given", id="minus-inf"
    ),
    pytest.param("1e999", "the number inf is not a number of hours a deal owner can be given", id="overflow"),
    pytest.param(
        "1e308", "the number 1e+308 is not a number of hours a deal owner can be given", id="absurd"
    ),
    pytest.param(
        "8761", "the number 8761 is not a number of hours a deal owner can be given", id="over-a-year"
    ),
    pytest.param("0", "the number 0 is not a number of hours a deal owner can be given", id="zero"),
    pytest.param("-4", "the number -4 is not a number of hours a deal owner can be given", id="negative"),
    pytest.param(".nan", "the number nan is not a number of hours; write e.g. sla_hours: 24", id="nan"),
]


@pytest.mark.parametrize(("hours", "expected"), SLA)
def test_sla_hours_must_be_a_finite_sane_number(hours: str, expected: str) -> None:
    problems = problems_of(MINIMAL + f"owner_tasks:\n  sla_hours: {hours}\n")
    assert problems == [f"nurture.yaml:7 owner_tasks > sla_hours: {expected}" + _range_hint(expected)]


def _range_hint(expected: str) -> str:
    if "can be given" in expected:
        return "; write more than 0 and at most 8760 (a year), e.g. sla_hours: 24"
    return ""


def test_sla_hours_of_a_year_is_accepted() -> None:
    rules = parse_rules(MINIMAL + "owner_tasks:\n  sla_hours: 8760\n", "nurture.yaml")
    assert rules.owner_tasks.sla_hours == 8760.0


def test_numbers_that_are_not_finite_are_not_text() -> None:
    problems = problems_of(MINIMAL.replace("    nurture:", "    value: .nan\n    nurture:"))
    assert problems == [
        "nurture.yaml:4 reasons > Pricing > value: the number nan is not allowed; write some text, "
        "e.g. pricing"
    ]


@pytest.mark.timeout(20)
def test_a_file_over_the_size_cap_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "nurture.yaml"
    with path.open("w") as out:
        out.write(MINIMAL)
        for number in range(600_000):  # about 20 MB of valid reasons
            out.write(f"  Reason {number}:\n    recycle: false\n")
    size_kib = path.stat().st_size // 1024
    with pytest.raises(NurtureConfigError) as caught:
        load_rules(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"HANDOFF_CONFIG points to {path}, which is {size_kib:,} KiB")
    assert f"the nurture file may be at most {MAX_FILE_BYTES // 1024} KiB" in problem


def test_text_over_the_size_cap_is_refused() -> None:
    text = MINIMAL + "# " + "x" * MAX_FILE_BYTES + "\n"
    assert problems_of(text) == [
        f"nurture.yaml is {len(text) / 1024:,.0f} KiB; the nurture file may be at most "
        f"{MAX_FILE_BYTES // 1024} KiB: check that the right file was saved there"
    ]


def test_a_thousand_mistakes_give_fifty_messages_and_a_count() -> None:
    problems = problems_of(MINIMAL + "".join(f"colour{n}: blue\n" for n in range(1000)))
    assert len(problems) == 51
    assert problems[-1] == "nurture.yaml: 950 more problem(s) after these; fix these first"


HOSTILE_SAVES = [
    pytest.param(alias_bomb(), "repeats another part of the file", id="alias-bomb"),
    pytest.param("%YAML 1.1\n---\n" + MINIMAL, "could not be read (IndexError", id="parser-crash"),
    pytest.param(MINIMAL + "# " + "x" * MAX_FILE_BYTES + "\n", "may be at most", id="over-the-cap"),
    pytest.param(MINIMAL + "owner_tasks: {sla_hours: .inf}\n", "number of hours", id="infinite-sla"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("text", "logged"), HOSTILE_SAVES)
def test_a_hostile_save_under_a_running_store_keeps_the_last_good_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, logged: str
) -> None:
    path = tmp_path / "nurture.yaml"
    path.write_text(MINIMAL)
    store = RulesStore(path, check_every_seconds=0)
    good = store.version
    path.write_text(text)
    with caplog.at_level(logging.ERROR, logger="handoff_worker.nurture_config"):
        rules, version = store.current_with_version()
    assert version == good and rules.reasons[0].nurtures[0].workflow_id == "12345"
    assert any(logged in record.getMessage() for record in caplog.records)
    path.write_text(MINIMAL.replace("12345", "678"))  # fixing the file is enough: no restart
    assert store.current().reasons[0].nurtures[0].workflow_id == "678"
