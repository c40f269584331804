"""Audience rules: who a campaign is for, as a small JSON rule tree (no ``eval``, no code).

A rule is one of::

    true                                      everyone
    {"all": [rule, ...]}                      every one of them (at least one)
    {"any": [rule, ...]}                      at least one of them (at least one)
    {"not": rule}                             the opposite
    {"attr": NAME, "op": OP, "value": VALUE}  a test of one customer attribute

Attributes (``ATTRIBUTES``: name -> type and meaning) are what the offers application knows
of a customer when it decides (``attributes``); an attribute it does not know for this
customer is null, and every test of a null is false (also ``ne``: unknown is not "different").
Operators: ``eq``, ``ne``, ``lt``, ``le``, ``gt``, ``ge`` (numbers and text), ``in`` (the value
is a list: the attribute is one of them) and ``has`` (a list attribute holds the value).

``parse`` checks a rule completely (known attributes, operators that fit their type, values
of the attribute's type, at most ``MAX_NODES`` nodes and ``MAX_DEPTH`` levels) and raises
``AudienceError`` with one line naming the place; ``evaluate`` then never fails. It returns
whether the customer is in the audience and the test that decided, in words (a reason).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_NODES = 64
MAX_DEPTH = 8

# name -> (type, meaning); type: "int", "text" or "list" (of text)
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "relationship_days": ("int", "days since the customer's account was opened"),
    "wearables": ("int", "wearables the customer has paired"),
    "branch": ("text", "code of the branch the customer is in now"),
    "purposes": ("list", "purposes the customer consents to now"),
    "segment": ("text", "the customer's segment (analytics; null until profiled)"),
    "income_band": ("text", "the customer's income band (analytics; null until profiled)"),
}
_ORDERING = ("lt", "le", "gt", "ge")
OPERATORS = ("eq", "ne", *_ORDERING, "in", "has")
_WORDS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "in"}


class AudienceError(ValueError):
    """A rule that is not one (the message says where and why)."""


def parse(rule: Any) -> Any:
    """``rule`` (a JSON value, or JSON text) checked; the rule itself. ``AudienceError``."""
    if isinstance(rule, str):
        try:
            rule = json.loads(rule)
        except ValueError as exc:
            raise AudienceError("the audience rule is not JSON: %s" % exc) from None
    count = [0]
    _check(rule, "rule", 1, count)
    return rule


def _check(rule: Any, where: str, depth: int, count: list[int]) -> None:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise AudienceError("the audience rule has more than %d parts" % MAX_NODES)
    if depth > MAX_DEPTH:
        raise AudienceError("%s: rules nest at most %d deep" % (where, MAX_DEPTH))
    if rule is True:
        return
    if not isinstance(rule, dict):
        raise AudienceError("%s: a rule is true or an object, not %r" % (where, rule))
    keys = set(rule)
    if keys in ({"all"}, {"any"}):
        (key,) = keys
        parts = rule[key]
        if not isinstance(parts, list) or not parts:
            raise AudienceError("%s.%s must be a non-empty list of rules" % (where, key))
        for i, part in enumerate(parts):
            _check(part, "%s.%s[%d]" % (where, key, i), depth + 1, count)
        return
    if keys == {"not"}:
        _check(rule["not"], where + ".not", depth + 1, count)
        return
    if keys != {"attr", "op", "value"}:
        raise AudienceError(
            "%s: expected all, any, not, or attr/op/value, not %s" % (where, sorted(keys))
        )
    name, op, value = rule["attr"], rule["op"], rule["value"]
    if name not in ATTRIBUTES:
        raise AudienceError(
            "%s: unknown attribute %r (known: %s)" % (where, name, ", ".join(ATTRIBUTES))
        )
    kind = ATTRIBUTES[name][0]
    if op not in OPERATORS:
        raise AudienceError("%s: unknown operator %r (%s)" % (where, op, ", ".join(OPERATORS)))
    if (op == "has") != (kind == "list"):
        raise AudienceError("%s: %s is for list attributes only" % (where, "has"))
    if op in _ORDERING and kind != "int":
        raise AudienceError("%s: %s compares numbers; %s is %s" % (where, op, name, kind))
    values = value if op == "in" else [value]
    if op == "in" and (not isinstance(value, list) or not value):
        raise AudienceError("%s: in needs a non-empty list" % where)
    for item in values:
        if not _of_type(item, "text" if kind == "list" else kind):
            raise AudienceError("%s: %r is not a value of %s (%s)" % (where, item, name, kind))


def _of_type(value: Any, kind: str) -> bool:
    if kind == "int":
        return type(value) is int
    return isinstance(value, str)


def evaluate(rule: Any, attributes: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a customer with ``attributes`` is in ``rule``'s audience (a rule ``parse``
    accepted), and the test that decided it, in words."""
    if rule is True:
        return True, "everyone"
    if "all" in rule:
        why = ""
        for part in rule["all"]:
            ok, why = evaluate(part, attributes)
            if not ok:
                return False, why
        return True, why if len(rule["all"]) == 1 else "all of %d tests" % len(rule["all"])
    if "any" in rule:
        why = ""
        for part in rule["any"]:
            ok, why = evaluate(part, attributes)
            if ok:
                return True, why
        return False, why if len(rule["any"]) == 1 else "none of %d tests" % len(rule["any"])
    if "not" in rule:
        ok, why = evaluate(rule["not"], attributes)
        return not ok, ("not (%s)" % why)
    name, op, value = rule["attr"], rule["op"], rule["value"]
    actual = attributes.get(name)
    ok = _test(actual, op, value)
    shown = "unknown" if actual is None else json.dumps(actual)
    if op == "has":
        return ok, "%s %s %s" % (name, "holds" if ok else "lacks", json.dumps(value))
    word = _WORDS[op]
    return ok, "%s %s %s%s" % (name, word, json.dumps(value), "" if ok else " (is %s)" % shown)


def _test(actual: Any, op: str, value: Any) -> bool:
    if actual is None:
        return False
    if op == "has":
        return value in actual
    if op == "in":
        return actual in value
    if op == "eq":
        return actual == value
    if op == "ne":
        return actual != value
    if op == "lt":
        return actual < value
    if op == "le":
        return actual <= value
    if op == "gt":
        return actual > value
    return actual >= value
