"""The guides stay true: every ``bankiot`` command they show parses against the real command
tree, every ``make`` target exists, every relative link resolves (``tests/docs/guides.py``).
The checker itself is tested on small snippets, good and bad."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from provisioning.cli import cli
from tests.docs import guides
from tests.docs.guides import CommandLine, check_command, commands_in

GUIDES = guides.guide_paths()
ROLE_GUIDES = ("technicians.md", "branches.md", "operations.md", "scale.md", "gateway.md")


@pytest.fixture(autouse=True)
def _no_bankiot_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Options read BANKIOT_* (BANKIOT_CLAIM, BANKIOT_URL): a reader's shell has none of them.
    import os

    for name in list(os.environ):
        if name.startswith("BANKIOT_"):
            monkeypatch.delenv(name)


def _problems(path: Path) -> list[str]:
    return [
        "%s: bankiot %s: %s" % (line.source, " ".join(line.args), reason)
        for line in commands_in(path)
        if (reason := check_command(cli, line)) is not None
    ]


@pytest.mark.parametrize("path", GUIDES, ids=lambda p: p.name)
def test_every_bankiot_command_in_the_guide_parses(path: Path) -> None:
    assert _problems(path) == []


@pytest.mark.parametrize("name", ROLE_GUIDES)
def test_role_guides_show_complete_commands(name: str) -> None:
    complete = [line for line in commands_in(guides.ROOT / "docs" / name) if line.complete]
    assert len(complete) >= 2, complete


def test_make_targets_named_in_the_guides_exist() -> None:
    targets = guides.make_targets(guides.ROOT / "Makefile")
    named = [(path.name, number, t) for path in GUIDES for number, t in guides.make_calls(path)]
    assert {"demo", "test"} <= {t for _, _, t in named}
    assert [n for n in named if n[2] not in targets] == []


@pytest.mark.parametrize("path", GUIDES, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files_and_headings(path: Path) -> None:
    assert [str(p) for p in guides.link_problems(path)] == []


# The checker, on snippets.


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guide.md"
    path.write_text(text, encoding="utf-8")
    return path


def _check(tmp_path: Path, text: str) -> list[str | None]:
    return [check_command(cli, line) for line in commands_in(_write(tmp_path, text), tmp_path)]


def test_a_flag_that_does_not_exist_fails(tmp_path: Path) -> None:
    snippet = "Run:\n\n```\nbankiot fleet devices --brunch 3 --json\n```\n"
    (reason,) = _check(tmp_path, snippet)
    assert reason is not None and "--brunch" in reason


def test_a_flag_that_does_not_exist_fails_inline_too(tmp_path: Path) -> None:
    (reason,) = _check(tmp_path, "Use `bankiot fleet alerts --stat open` to see them.\n")
    assert reason is not None and "--stat" in reason


def test_an_invalid_choice_and_an_unknown_command_fail(tmp_path: Path) -> None:
    snippet = "```\nbankiot firmware build --board esp33 --version 1.0.0 --key k --out o\n```\n"
    (reason,) = _check(tmp_path, snippet)
    assert reason is not None and "esp33" in reason
    (reason,) = _check(tmp_path, "`bankiot fleet devicez`\n")
    assert reason is not None and "devicez" in reason


def test_a_block_needs_required_options_a_fragment_does_not(tmp_path: Path) -> None:
    (reason,) = _check(tmp_path, "```\nbankiot flash --port /dev/ttyUSB0\n```\n")
    assert reason is not None and "--claim" in reason
    assert _check(tmp_path, "`bankiot flash --port /dev/ttyUSB0 ...`\n") == [None]


def test_continuations_comments_prompts_and_prefixes_are_read_as_a_shell_would(
    tmp_path: Path,
) -> None:
    snippet = (
        "```\n"
        "$ sudo -u bankiot /opt/bankiot/bin/bankiot gateway enroll \\\n"
        "    --cloud https://cloud.example --claim -      # paste the token\n"
        "export X=1 && BANKIOT_URL=u bankiot fleet show ID   # ID: a placeholder\n"
        "bankiot fleet beacons list | remove ID\n"
        "echo not bankiot --brunch\n"
        "```\n"
    )
    lines = commands_in(_write(tmp_path, snippet), tmp_path)
    assert [line.args for line in lines] == [
        ("gateway", "enroll", "--cloud", "https://cloud.example", "--claim", "-"),
        ("fleet", "show", "12"),
        ("fleet", "beacons", "list"),
    ]
    assert [line.source for line in lines] == ["guide.md:2", "guide.md:4", "guide.md:5"]
    assert [check_command(cli, line) for line in lines] == [None, None, None]


def test_optional_parts_and_alternatives(tmp_path: Path) -> None:
    lines = commands_in(_write(tmp_path, "`bankiot fleet alerts [--state open|all] [--jsn]`\n"))
    assert [line.args for line in lines] == [("fleet", "alerts", "--state", "open", "--jsn")]
    reason = check_command(cli, lines[0])
    assert reason is not None and "--jsn" in reason


def test_checker_refuses_a_bad_flag_in_any_group() -> None:
    # Every group and command of the tree is reachable the same way: pick a deep one.
    line = CommandLine("x", ("fleet", "rollout", "start", "--release", "7", "--wave", "1"), False)
    reason = check_command(cli, line)
    assert reason is not None and "--wave" in reason
    assert isinstance(cli, click.Group)


def test_missing_make_target_and_broken_links_are_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## Its part: `x`\n")
    path = tmp_path / "docs" / "guide.md"
    path.write_text(
        "Run `make test`, then `make deploy`.\n\n"
        "```\nmake BOARD=ESP32_GENERIC FROZEN_MANIFEST=m.py\n```\n\n"
        "[ok](other.md#its-part-x) [gone](missing.md) [bad anchor](other.md#nowhere) "
        "[web](https://example.com/x.md)\n",
        encoding="utf-8",
    )
    (tmp_path / "Makefile").write_text("test: setup\n\tpytest\nsetup:\n\ttrue\nX := 1\n")
    assert guides.make_targets(tmp_path / "Makefile") == {"test", "setup"}
    assert [t for _, t in guides.make_calls(path)] == ["test", "deploy"]
    problems = guides.link_problems(path, tmp_path)
    assert [(p.source, p.text, p.reason) for p in problems] == [
        ("docs/guide.md:7", "missing.md", "no such file"),
        ("docs/guide.md:7", "other.md#nowhere", "no heading #nowhere in other.md"),
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        # GitHub's rule: lower case, punctuation other than - and _ removed, spaces to -.
        ("Customers' erasures", "customers-erasures"),
        ("One machine: bankiot cloud up", "one-machine-bankiot-cloud-up"),
        (
            "Flash and enroll an ESP32 or Pico W: `bankiot flash`",
            "flash-and-enroll-an-esp32-or-pico-w-bankiot-flash",
        ),
        ("EMQX (not run here)", "emqx-not-run-here"),
    ],
)
def test_github_anchor(heading: str, anchor: str) -> None:
    assert guides.github_anchor(heading) == anchor


# The walk's marks (``<!-- walk: ROLE N -->`` just before a fence).


def test_walk_blocks_are_found_by_role_and_step(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "<!-- walk: ops 2 -->\n```\nbankiot fleet branches list   # by code\n```\n\n"
        "Text.\n\n<!-- walk: tech 1 -->\n```\nbankiot fleet devices\n```\n\n"
        "1. A step:\n\n   <!-- walk: ops 1 -->\n   ```\n   export A=1\n"
        "   bankiot cloud up \\\n       --data-dir d\n   ```\n\n```\nnot marked\n```\n",
    )
    blocks = guides.walk_blocks(path, "ops", tmp_path)
    assert [(b.source, b.step, b.commands) for b in blocks] == [
        # first lines of the blocks; a continuation joined as the shell joins it
        ("guide.md:17", 1, ("export A=1", "bankiot cloud up      --data-dir d")),
        ("guide.md:3", 2, ("bankiot fleet branches list",)),
    ]
    assert [b.commands for b in guides.walk_blocks(path, "tech", tmp_path)] == [
        ("bankiot fleet devices",)
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("<!-- walk: ops 1 -->\n\n```\nx\n```\n", "just before a fence"),
        ("<!-- walk: ops 1 -->\n```\nx\n```\n<!-- walk: ops 1 -->\n```\ny\n```\n", "twice"),
    ],
)
def test_a_misplaced_or_repeated_walk_mark_is_an_error(
    tmp_path: Path, text: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        guides.walk_blocks(_write(tmp_path, text), "ops", tmp_path)


def test_the_walked_guides_mark_their_blocks() -> None:
    # The walk test runs these; a mark lost in an edit would make it walk less.
    docs = guides.ROOT / "docs"
    assert [b.step for b in guides.walk_blocks(docs / "operations.md", "operations")] == [1, 2]
    technician = guides.walk_blocks(docs / "technicians.md", "technician")
    assert [b.commands[-1].split()[:3] for b in technician] == [
        ["bankiot", "firmware", "build"],
        ["bankiot", "fleet", "claims"],
        ["bankiot", "flash", "--port"],
        ["bankiot", "fleet", "devices"],
    ]
