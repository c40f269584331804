"""What the guides tell people to type, checked against the real ``bankiot`` command tree.

The guides (``docs/*.md`` and ``README.md``) are read as a newcomer reads them:

- ``bankiot ...`` lines of code blocks (fenced, or indented by four spaces): ``\\``
  continuations joined, ``$`` prompts and ``#`` comments dropped, each command of a line
  (``&&``, ``;``, ``|``) on its own, ``sudo``, ``sudo -u USER``, ``VAR=value`` and a path
  before ``bankiot`` (``/opt/bankiot/bin/bankiot``) skipped. These are *complete* commands:
  required options and arguments must be there.
- ``bankiot ...`` in inline code (`` `bankiot fleet show 42` ``): often a fragment
  (``bankiot flash --port ... ...``), so only the names are checked: the command path, every
  option, and the choices given.

Each is parsed with click's own parser (``make_context`` from the group the ``bankiot``
entry point runs), never run. Guides write placeholders where the reader puts their own
value; ``PLACEHOLDERS`` says what stands in for each when parsing, so that a typed option
(an id, a choice) gets a value of its type. Notation: ``[--json]`` is an optional part (its
option is checked too), ``esp32|picow`` (no spaces) one of the alternatives (the first is
parsed), ``--flag ...`` "a value of your own".

``make TARGET`` in code must be a target of the Makefile, and every relative link of
``docs/*.md`` (and README.md) must name an existing file and, with ``#anchor``, a heading
of it (GitHub's anchor rules).

Some fenced blocks are also *run*, in order, by ``tests/docs/test_walk_operations_technician.py``:
an HTML comment ``<!-- walk: ROLE N -->`` on the line just before the fence (invisible on
GitHub) marks block N of ROLE's walk; ``walk_blocks`` finds them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]

# Placeholder -> the value parsed in its place (the docs' own words for "your value").
PLACEHOLDERS: dict[str, str] = {
    "ID": "12",
    "N": "12",
    "B": "3",
    "OLD": "12",
    "NEW": "13",
    "OLD_ID": "12",
    "NEW_ID": "13",
    "<device>": "42",
    "<id>": "42",
    "X.Y.Z": "1.2.3",
    "PORT": "4000",
}
# Inside a token: socket://127.0.0.1:PORT, 0.0.0.0:910%i (a systemd instance specifier).
TOKEN_PLACEHOLDERS: tuple[tuple[str, str], ...] = ((":PORT", ":4000"), ("%i", "1"))
OPERATORS = {"&&", "||", ";", "|"}
SHELL_PREFIXES = {"sudo", "env", "exec", "time", "nohup"}
ALTERNATIVES = re.compile(r"^([^|\s]+)\|[^|\s]+(\|[^|\s]+)*$")


@dataclass(frozen=True)
class CommandLine:
    """One ``bankiot`` command named in a guide: where, and its arguments after ``bankiot``."""

    source: str  # "docs/operations.md:42"
    args: tuple[str, ...]
    complete: bool  # from a code block: required parameters must be present


@dataclass(frozen=True)
class Problem:
    """A guide's command or link that does not hold; ``str`` is the one-line report."""

    source: str
    text: str
    reason: str

    def __str__(self) -> str:
        return "%s: %s: %s" % (self.source, self.text, self.reason)


def guide_paths(root: Path = ROOT) -> list[Path]:
    """The guides: README.md and every ``docs/*.md``."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def code_blocks(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each code block as (line number of its first line, its lines): fenced blocks
    (indented fences too, as in list items) and blocks indented by four spaces."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^(\s*)(```+|~~~+)", lines[index])
        if fence:
            indent, marker = fence.group(1), fence.group(2)
            body: list[str] = []
            index += 1
            start = index + 1
            while index < len(lines) and not lines[index].strip().startswith(marker):
                line = lines[index]
                body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
                index += 1
            yield start, body
        elif lines[index].startswith("    ") and (index == 0 or not lines[index - 1].strip()):
            start = index + 1
            body = []
            while index < len(lines) and (lines[index].startswith("    ") or not lines[index]):
                body.append(lines[index][4:])
                index += 1
            yield start, body
            continue
        index += 1


WALK_MARK = re.compile(r"^\s*<!--\s*walk:\s*([a-z]+)\s+(\d+)\s*-->\s*$")


@dataclass(frozen=True)
class WalkBlock:
    """A fenced block marked ``<!-- walk: ROLE N -->``: where, and its commands (logical
    lines: continuations joined, comments dropped, blank lines left out)."""

    source: str  # "docs/operations.md:42", the block's first line
    role: str
    step: int
    commands: tuple[str, ...]


def walk_blocks(path: Path, role: str, root: Path = ROOT) -> list[WalkBlock]:
    """The blocks of ``path`` marked for ``role``'s walk, by step; a step marked twice, or
    a mark not followed by a fence, is a ``ValueError``."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    fenced = {start - 1: (start, body) for start, body in code_blocks(text)}  # fence line
    found: dict[int, WalkBlock] = {}
    for number, line in enumerate(lines, start=1):
        mark = WALK_MARK.match(line)
        if not mark or mark.group(1) != role:
            continue
        if number + 1 not in fenced or not re.match(r"^\s*(```|~~~)", lines[number]):
            raise ValueError("%s:%d: a walk mark must come just before a fence" % (name, number))
        step = int(mark.group(2))
        if step in found:
            raise ValueError("%s:%d: %s step %d is marked twice" % (name, number, role, step))
        start, body = fenced[number + 1]
        commands = tuple(line.strip() for _, line in logical_lines(body) if line.strip())
        found[step] = WalkBlock("%s:%d" % (name, start), role, step, commands)
    return [found[step] for step in sorted(found)]


def _block_lines(text: str) -> set[int]:
    """Line numbers of code blocks, their fences included."""
    return {
        start + offset for start, body in code_blocks(text) for offset in range(-1, len(body) + 1)
    }


def inline_spans(text: str) -> Iterator[tuple[int, str]]:
    """Each inline code span outside code blocks, with its line number."""
    in_block = _block_lines(text)
    for number, line in enumerate(text.splitlines(), start=1):
        if number in in_block:
            continue
        for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", line):
            yield number, span


def _strip_comment(line: str) -> str:
    """The line without a shell comment (``#`` starting a word, outside quotes)."""
    quote = ""
    for position, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1].isspace()):
            return line[:position]
    return line


def logical_lines(body: list[str]) -> Iterator[tuple[int, str]]:
    """Lines of a block with ``\\`` continuations joined, as (offset of the first, text)."""
    pending, first = "", 0
    for offset, raw in enumerate(body):
        line = _strip_comment(raw).rstrip()
        if not pending:
            first = offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield first, pending + line
        pending = ""
    if pending:
        yield first, pending


def _words(line: str) -> list[str]:
    """Shell words of ``line``; ``[--opt value]`` brackets removed, ``a|b`` read as ``a``."""
    line = re.sub(r"^\s*(\$|#)\s+", "", line)
    try:
        words = shlex.split(line)
    except ValueError:
        return []
    out = []
    for word in words:
        word = word.removeprefix("[").removesuffix("]") if word not in ("[", "]") else ""
        if not word:
            continue
        alternative = ALTERNATIVES.match(word)
        out.append(alternative.group(1) if alternative and not word.startswith("-") else word)
    return out


def _commands(words: list[str]) -> Iterator[list[str]]:
    """The simple commands of a word list, split at ``&&``, ``;``, ``|``."""
    current: list[str] = []
    for word in words:
        if word in OPERATORS:
            yield current
            current = []
        elif word.endswith(";") and len(word) > 1:
            current.append(word[:-1])
            yield current
            current = []
        else:
            current.append(word)
    yield current


def bankiot_args(words: list[str]) -> list[str] | None:
    """The arguments after ``bankiot`` if this simple command runs it, else None."""
    index = 0
    while index < len(words):
        word = words[index]
        if word in SHELL_PREFIXES:
            index += 1
            if word == "sudo" and index < len(words) and words[index] == "-u":
                index += 2
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word):
            index += 1
            continue
        break
    if index >= len(words) or words[index].rsplit("/", 1)[-1] != "bankiot":
        return None
    args = []
    skip = False
    for word in words[index + 1 :]:
        if skip:
            skip = False
            continue
        if re.match(r"^\d?[<>]", word):  # a redirection; its target follows when apart
            skip = word in (">", "<", ">>", "2>", "1>")
            continue
        args.append(_substitute(word))
    return args


def _substitute(word: str) -> str:
    if word in PLACEHOLDERS:
        return PLACEHOLDERS[word]
    for placeholder, value in TOKEN_PLACEHOLDERS:
        word = word.replace(placeholder, value)
    return word


def commands_in(path: Path, root: Path = ROOT) -> list[CommandLine]:
    """Every ``bankiot`` command a guide names (module docstring)."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    found = []
    for start, body in code_blocks(text):
        for offset, line in logical_lines(body):
            for words in _commands(_words(line)):
                args = bankiot_args(words)
                if args is not None:
                    found.append(CommandLine("%s:%d" % (name, start + offset), tuple(args), True))
    for number, span in inline_spans(text):
        for words in _commands(_words(span)):
            args = bankiot_args(words)
            if args is not None:
                found.append(CommandLine("%s:%d" % (name, number), tuple(args), False))
    return found


def _rest(ctx: click.Context) -> list[str]:
    # What a group left for its subcommand (click 8 keeps the first word apart).
    return [*getattr(ctx, "_protected_args", []), *ctx.args]


def _fill_ellipses(args: list[str]) -> list[str]:
    """In a fragment, ``...`` after an option is its value; elsewhere "and so on"."""
    out = []
    for index, arg in enumerate(args):
        if arg != "...":
            out.append(arg)
        elif index and args[index - 1].startswith("-"):
            out.append("x")
    return out


def check_command(root_command: click.Command, line: CommandLine) -> str | None:
    """None if click accepts ``line`` for the real command tree, else why not.

    Both kinds are parsed strictly (names, choices, types); an inline fragment may leave
    out required parameters, a code block's command may not. ``--help`` is dropped (it
    would exit) and makes the line a fragment. A path that must exist is not looked for:
    the reader's files are not here.
    """
    args = [a for a in line.args if a not in ("--help", "-h")]
    complete = line.complete and len(args) == len(line.args)
    args = args if complete else _fill_ellipses(args)
    command, name = root_command, "bankiot"
    parent: click.Context | None = None
    try:
        while isinstance(command, click.Group):
            if not args and not complete:
                return None
            ctx = command.make_context(name, list(args), parent=parent)
            rest = _rest(ctx)
            if not rest:  # a group that runs by itself (`fleet alerts`), or a fragment
                ok = command.invoke_without_command or not complete
                return None if ok else "%s needs a subcommand" % name
            sub_name, sub, args = command.resolve_command(ctx, rest)
            if sub is None or sub_name is None:
                return "no command %r" % rest[0]
            command, name, parent = sub, sub_name, ctx
        command.make_context(name, list(args), parent=parent)
    except click.MissingParameter as exc:
        return None if not complete else exc.format_message()
    except click.BadParameter as exc:
        return None if "does not exist" in exc.format_message() else exc.format_message()
    except click.UsageError as exc:
        return exc.format_message()
    return None


def make_targets(makefile: Path) -> set[str]:
    """The targets a Makefile defines."""
    text = makefile.read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.MULTILINE))


def make_calls(path: Path) -> Iterator[tuple[int, str]]:
    """``make TARGET`` in a guide's code (blocks and inline), with its line number.
    ``make VAR=value`` (another project's Makefile, as MicroPython's) is not ours."""
    text = path.read_text(encoding="utf-8")
    spans = [
        (start + offset, line)
        for start, body in code_blocks(text)
        for offset, line in enumerate(body)
    ]
    for number, span in [*spans, *inline_spans(text)]:
        for words in _commands(_words(_strip_comment(span))):
            if len(words) >= 2 and words[0] == "make" and "=" not in words[1]:
                yield number, words[1]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (outside code blocks)."""
    text = path.read_text(encoding="utf-8")
    skip = _block_lines(text)
    found: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        heading = re.match(r"^#{1,6}\s+(.*)$", line)
        if heading and number not in skip:
            slug = github_anchor(heading.group(1))
            base, count = slug, 0
            while slug in found:  # GitHub numbers repeated headings: slug-1, slug-2
                count += 1
                slug = "%s-%d" % (base, count)
            found.add(slug)
    return found


def link_problems(path: Path, root: Path = ROOT) -> list[Problem]:
    """Relative links of ``path`` to a missing file, or to a heading the file lacks."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    skip = _block_lines(text)
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if number in skip:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto:
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            where = "%s:%d" % (name, number)
            if not linked.exists():
                problems.append(Problem(where, target, "no such file"))
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(
                    Problem(where, target, "no heading #%s in %s" % (anchor, linked.name))
                )
    return problems
