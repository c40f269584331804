"""Event rules: what a rule says, and the strict parser of the TOML files that declare them.
No I/O: ``parse_rules`` takes a file's name and text.

A rules file holds ``[[rule]]`` tables::

    [[rule]]
    id = "inbound-callback"        # letters, digits, "-", "_", "."; unique across files
    version = 1                    # raise it when the rule's meaning changes
    description = "Wearable button -> call-back request for branch staff"
    purpose = "presence_branch"    # a consent purpose, a list of them, or "none"
    on = ["button"]                # the event kind(s) that trigger it
    where = { value = 1 }          # optional: the event's data must have these values
    at = "partner"                 # optional: only events heard at this kind of place
    cooldown_minutes = 10          # optional: act at most once per subject in this time

    [rule.window]                  # optional; without it every matching event acts
    type = "within"                # "within": `first` then `on` within `minutes`
    first = ["enter"]
    minutes = 10
    # type = "count": at_least = 3 `on` events within `minutes`
    # type = "absence": no `of` event within `minutes` after an `on` event (a timer)

    [rule.profile]                 # optional: the customer's attributes must match
    home_branch = 3                # equal to a value, or { min = .., max = .. }

    [[rule.actions]]
    do = "callback"                # callback | ticket | alert | notify | offer | app
    message = "Customer pressed their wearable's button"

Action keys: ``message`` (every kind), ``severity`` (alert: ``critical`` or ``warning``),
``channel`` (notify: ``wearable`` or ``app``), ``offer`` (offer: the offer's name).

``at`` (``AT_PLACES``), like ``where``, filters the triggering events, by place:
``"partner"``, an event whose batch also reports a registered partner merchant's beacon
(the same test ingest applies for *presence at partner shops*, ``cloud.ingest.consents``);
``"branch"``, one whose batch reports none. The engine asks its ``Directory`` (the dry run
too, so it decides as the live worker does).

A rule needing a purpose processes a customer's wearable only with their consent to every
purpose it names (``engine``), and nothing else: a subject that is no customer's wearable
(a beacon, a sensor, a stranger's phone) is not processed by it at all, only counted; a
bank keeps nothing about people it has no relationship with. ``"none"`` is for rules about
devices only, and the engine refuses to read any customer's profile for them.

Errors are ``RuleError``, one line naming the file, the rule and the key:
``inbound.toml: rule 'inbound-callback': key 'window.minutes': must be a whole number >= 1``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cloud.customers.consent import BY_NAME as PURPOSES

WINDOW_TYPES = ("within", "count", "absence")
ACTION_KINDS = ("callback", "ticket", "alert", "notify", "offer", "app")
SEVERITIES = ("critical", "warning")
CHANNELS = ("wearable", "app")
PARTNER = "partner"  # heard in a batch that reports a partner merchant's beacon
BRANCH = "branch"  # heard in a batch that reports none
AT_PLACES = (PARTNER, BRANCH)
NO_PURPOSE = "none"
MAX_MINUTES = 7 * 24 * 60  # a week: windows live in memory, per subject
ID_LEN = 64
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_KIND = re.compile(r"[a-z][a-z0-9_]*\Z")
_RULE_KEYS = frozenset(
    (
        "id",
        "version",
        "description",
        "purpose",
        "on",
        "where",
        "at",
        "cooldown_minutes",
        "window",
        "profile",
        "actions",
    )
)
_WINDOW_KEYS = {
    "within": frozenset(("type", "first", "minutes")),
    "count": frozenset(("type", "at_least", "minutes")),
    "absence": frozenset(("type", "of", "minutes")),
}
_ACTION_KEYS = {
    "callback": frozenset(("do", "message")),
    "ticket": frozenset(("do", "message")),
    "alert": frozenset(("do", "message", "severity")),
    "notify": frozenset(("do", "message", "channel")),
    "offer": frozenset(("do", "message", "offer")),
    "app": frozenset(("do", "message")),  # carried out by cloud.apps from the decision
}
Scalar = str | int | float | bool


class RuleError(ValueError):
    """A rules file that cannot be used; the message is one line naming file, rule and key."""


@dataclass(frozen=True)
class Window:
    """A rule's window: ``type`` (``WINDOW_TYPES``), its length, and the other kinds it
    watches (``first`` for within, ``of`` for absence) or ``at_least`` (count)."""

    type: str
    minutes: int
    kinds: frozenset[str] = frozenset()
    at_least: int = 0


@dataclass(frozen=True)
class Bound:
    """A profile attribute's condition: equal to ``equals``, or within [minimum, maximum]."""

    equals: Scalar | None = None
    minimum: float | None = None
    maximum: float | None = None

    def holds(self, value: Any) -> bool:
        """Whether ``value`` meets the condition (a missing value never does)."""
        if value is None:
            return False
        if self.equals is not None:
            return value == self.equals
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        low_ok = self.minimum is None or value >= self.minimum
        return low_ok and (self.maximum is None or value <= self.maximum)


@dataclass(frozen=True)
class Action:
    """What a rule does when it acts: ``kind`` (``ACTION_KINDS``) and its parameters."""

    kind: str
    message: str = ""
    severity: str = "warning"
    channel: str = "app"
    offer: str = ""


@dataclass(frozen=True)
class Rule:
    """One rule, as parsed (module docstring); ``source``: the file it came from."""

    id: str
    version: int
    purposes: tuple[str, ...]  # empty: device-only
    on: frozenset[str]
    actions: tuple[Action, ...]
    description: str = ""
    where: Mapping[str, Scalar] = field(default_factory=dict)
    at: str = ""  # "" (anywhere) or one of AT_PLACES
    cooldown_minutes: int = 0
    window: Window | None = None
    profile: Mapping[str, Bound] = field(default_factory=dict)
    source: str = ""

    @property
    def kinds(self) -> frozenset[str]:
        """Every event kind the rule looks at."""
        return self.on | (self.window.kinds if self.window else frozenset())

    @property
    def horizon_minutes(self) -> int:
        """How far back events matter to this rule (its window, its cooldown)."""
        return max(self.window.minutes if self.window else 0, self.cooldown_minutes)


@dataclass(frozen=True)
class RuleSet:
    """Rules by id, in id order; ``sources``: the files they came from."""

    rules: tuple[Rule, ...] = ()
    sources: tuple[str, ...] = ()

    def get(self, rule_id: str) -> Rule | None:
        """The rule ``rule_id``, or None."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None


class _Where:
    """Where an error is: file, rule, key; ``fail`` raises ``RuleError`` there."""

    def __init__(self, source: str, rule: str | None = None) -> None:
        self.source, self.rule = source, rule

    def fail(self, key: str | None, message: str) -> RuleError:
        parts = [self.source]
        if self.rule is not None:
            parts.append("rule %r" % self.rule)
        if key is not None:
            parts.append("key %r" % key)
        return RuleError("%s: %s" % (": ".join(parts), message))


def _table(where: _Where, key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise where.fail(key, "must be a table")
    return value


def _whole(where: _Where, key: str, value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise where.fail(key, "must be a whole number from %d to %d" % (low, high))
    return value


def _text(where: _Where, key: str, value: Any, limit: int = 500) -> str:
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise where.fail(key, "must be text of at most %d characters" % limit)
    return value


def _kinds(where: _Where, key: str, value: Any) -> frozenset[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise where.fail(key, "must be an event kind or a non-empty list of them")
    for item in items:
        if not isinstance(item, str) or not _KIND.match(item) or len(item) > 64:
            raise where.fail(key, "%r is not an event kind (lower case, digits, _)" % (item,))
    return frozenset(items)


def _unknown(where: _Where, prefix: str, table: Mapping[str, Any], known: Iterable[str]) -> None:
    extra = sorted(set(table) - set(known))
    if extra:
        raise where.fail(prefix + extra[0], "is not a known key")


def _purposes(where: _Where, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise where.fail("purpose", 'must be a consent purpose, a list of them, or "none"')
    if items == [NO_PURPOSE]:
        return ()
    for item in items:
        if item not in PURPOSES:
            raise where.fail(
                "purpose",
                "%r is not a consent purpose (%s, or none)" % (item, ", ".join(sorted(PURPOSES))),
            )
    return tuple(sorted(set(items)))


def _scalar(where: _Where, key: str, value: Any) -> Scalar:
    if not isinstance(value, str | int | float | bool):
        raise where.fail(key, "must be text, a number or true/false")
    return value


def _window(where: _Where, value: Any) -> Window:
    table = _table(where, "window", value)
    kind = table.get("type")
    if kind not in WINDOW_TYPES:
        raise where.fail("window.type", "must be one of %s" % ", ".join(WINDOW_TYPES))
    _unknown(where, "window.", table, _WINDOW_KEYS[kind])
    if "minutes" not in table:
        raise where.fail("window.minutes", "is missing")
    minutes = _whole(where, "window.minutes", table["minutes"], 1, MAX_MINUTES)
    if kind == "within":
        if "first" not in table:
            raise where.fail("window.first", "is missing")
        return Window(kind, minutes, _kinds(where, "window.first", table["first"]))
    if kind == "absence":
        if "of" not in table:
            raise where.fail("window.of", "is missing")
        return Window(kind, minutes, _kinds(where, "window.of", table["of"]))
    if "at_least" not in table:
        raise where.fail("window.at_least", "is missing")
    return Window(
        kind, minutes, at_least=_whole(where, "window.at_least", table["at_least"], 2, 10000)
    )


def _profile(where: _Where, value: Any) -> dict[str, Bound]:
    table = _table(where, "profile", value)
    out: dict[str, Bound] = {}
    for name, condition in table.items():
        key = "profile." + name
        if isinstance(condition, dict):
            _unknown(where, key + ".", condition, ("min", "max"))
            bounds = []
            for end in ("min", "max"):
                number = condition.get(end)
                if number is not None and (
                    isinstance(number, bool) or not isinstance(number, int | float)
                ):
                    raise where.fail("%s.%s" % (key, end), "must be a number")
                bounds.append(None if number is None else float(number))
            if bounds == [None, None]:
                raise where.fail(key, "needs min, max or both")
            out[name] = Bound(minimum=bounds[0], maximum=bounds[1])
        else:
            out[name] = Bound(equals=_scalar(where, key, condition))
    return out


def _action(where: _Where, index: int, value: Any) -> Action:
    prefix = "actions[%d]" % index
    table = _table(where, prefix, value)
    kind = table.get("do")
    if kind not in ACTION_KINDS:
        raise where.fail(prefix + ".do", "must be one of %s" % ", ".join(ACTION_KINDS))
    _unknown(where, prefix + ".", table, _ACTION_KEYS[kind])
    message = _text(where, prefix + ".message", table.get("message", ""))
    severity = table.get("severity", "warning")
    if severity not in SEVERITIES:
        raise where.fail(prefix + ".severity", "must be one of %s" % ", ".join(SEVERITIES))
    channel = table.get("channel", "app")
    if channel not in CHANNELS:
        raise where.fail(prefix + ".channel", "must be one of %s" % ", ".join(CHANNELS))
    offer = _text(where, prefix + ".offer", table.get("offer", ""), 64)
    if kind == "offer" and not offer:
        raise where.fail(prefix + ".offer", "is missing")
    return Action(kind, message, severity, channel, offer)


def _rule(source: str, index: int, value: Any) -> Rule:
    if not isinstance(value, dict):
        raise _Where(source).fail("rule[%d]" % index, "must be a table")
    rule_id = value.get("id")
    if not isinstance(rule_id, str) or len(rule_id) > ID_LEN or not _ID.match(rule_id):
        raise _Where(source).fail(
            "rule[%d].id" % index, "must be letters, digits, '-', '_' or '.' (at most 64)"
        )
    where = _Where(source, rule_id)
    _unknown(where, "", value, _RULE_KEYS)
    for required in ("version", "purpose", "on", "actions"):
        if required not in value:
            raise where.fail(required, "is missing")
    actions = value["actions"]
    if not isinstance(actions, list) or not actions:
        raise where.fail("actions", "must be a non-empty array of tables ([[rule.actions]])")
    window = _window(where, value["window"]) if "window" in value else None
    at = value.get("at", "")
    if "at" in value and at not in AT_PLACES:
        raise where.fail("at", "must be one of %s" % ", ".join(AT_PLACES))
    on = _kinds(where, "on", value["on"])
    if window is not None and window.kinds & on:
        raise where.fail("window", "watches a kind that also triggers the rule")
    return Rule(
        id=rule_id,
        version=_whole(where, "version", value["version"], 1, 2**31 - 1),
        purposes=_purposes(where, value["purpose"]),
        on=on,
        actions=tuple(_action(where, i, item) for i, item in enumerate(actions)),
        description=_text(where, "description", value.get("description", "")),
        where={
            k: _scalar(where, "where." + k, v)
            for k, v in _table(where, "where", value.get("where", {})).items()
        },
        at=at,
        cooldown_minutes=_whole(
            where, "cooldown_minutes", value.get("cooldown_minutes", 0), 0, MAX_MINUTES
        ),
        window=window,
        profile=_profile(where, value.get("profile", {})),
        source=source,
    )


def parse_rules(source: str, text: str) -> tuple[Rule, ...]:
    """The rules of the file named ``source`` holding ``text``; ``RuleError`` otherwise.

    Device-only rules (purpose ``none``) may not have profile conditions: they must not
    read customers' data."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _Where(source).fail(None, "not TOML: %s" % str(exc).splitlines()[0]) from None
    _unknown(_Where(source), "", document, ("rule",))
    items = document.get("rule", [])
    if not isinstance(items, list):
        raise _Where(source).fail("rule", "must be an array of tables ([[rule]])")
    rules = tuple(_rule(source, i, item) for i, item in enumerate(items))
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise _Where(source, rule.id).fail("id", "is used twice in the file")
        seen.add(rule.id)
        if not rule.purposes and rule.profile:
            raise _Where(source, rule.id).fail(
                "profile", "needs a consent purpose: a rule with purpose none reads no profile"
            )
    return rules


def combine(files: Iterable[tuple[str, str]], base: RuleSet | None = None) -> RuleSet:
    """One rule set from ``files`` (name, text), in the given order, over ``base`` (a rule
    of ``base`` is replaced by one of the files with the same id). The same id in two files
    is a ``RuleError``."""
    by_id = {rule.id: rule for rule in (base.rules if base else ())}
    from_files: dict[str, str] = {}
    sources = list(base.sources if base else ())
    for name, text in files:
        sources.append(name)
        for rule in parse_rules(name, text):
            if rule.id in from_files:
                raise _Where(name, rule.id).fail(
                    "id", "is declared in %s already" % from_files[rule.id]
                )
            from_files[rule.id] = name
            by_id[rule.id] = rule
    return RuleSet(tuple(by_id[key] for key in sorted(by_id)), tuple(sources))
