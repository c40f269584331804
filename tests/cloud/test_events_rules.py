"""Rules files: what parses, and every refusal as one line naming file, rule and key; the
library reloads on change and keeps the previous rules when a file goes bad."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloud.events import defaults
from cloud.events.library import RuleLibrary, load_folder, shipped
from cloud.events.rules import Bound, RuleError, combine, parse_rules

GOOD = """
[[rule]]
id = "linger"
version = 3
description = "A customer stays near the advice desk"
purpose = ["presence_branch", "activity"]
on = "enter"
where = { confidence = 2 }
cooldown_minutes = 30

[rule.window]
type = "absence"
of = ["leave"]
minutes = 15

[rule.profile]
home_branch = 3
income = { min = 1000 }

[[rule.actions]]
do = "notify"
channel = "wearable"
message = "An adviser is free"

[[rule.actions]]
do = "offer"
offer = "advice-voucher"
"""


def test_a_full_rule_parses_to_what_it_says() -> None:
    (rule,) = parse_rules("linger.toml", GOOD)
    assert rule.id == "linger" and rule.version == 3 and rule.source == "linger.toml"
    assert rule.purposes == ("activity", "presence_branch")
    assert rule.on == frozenset({"enter"}) and rule.where == {"confidence": 2}
    assert rule.window is not None
    assert (rule.window.type, rule.window.minutes, rule.window.kinds) == (
        "absence",
        15,
        frozenset({"leave"}),
    )
    assert rule.profile == {"home_branch": Bound(equals=3), "income": Bound(minimum=1000.0)}
    assert [(a.kind, a.channel, a.offer) for a in rule.actions] == [
        ("notify", "wearable", ""),
        ("offer", "app", "advice-voucher"),
    ]
    assert rule.kinds == frozenset({"enter", "leave"}) and rule.horizon_minutes == 30


def test_the_shipped_rules_are_the_seed_inbound_requests() -> None:
    rules = shipped()
    by_id = {rule.id: rule for rule in rules.rules}
    assert by_id["inbound-callback"].on == frozenset({"button"})
    assert [a.kind for a in by_id["inbound-callback"].actions] == ["callback"]
    assert by_id["checkin-ticket"].on == frozenset({"kiosk_checkin"})
    assert [a.kind for a in by_id["checkin-ticket"].actions] == ["ticket"]
    assert all(rule.source == defaults.SOURCE for rule in rules.rules)


def _rule(body: str, rule_id: str = "r1") -> str:
    return '[[rule]]\nid = "%s"\n%s' % (rule_id, body)


BASE = 'version = 1\npurpose = "none"\non = "button"\n'
ACTION = '[[rule.actions]]\ndo = "alert"\n'
ACTIVITY = BASE.replace('"none"', '"activity"')

BAD = [
    ("[[rule]\n", "f.toml: not TOML: "),
    ('[rules]\nid = "x"\n', "f.toml: key 'rules': is not a known key"),
    ('[[rule]]\nid = "no spaces"\n', "f.toml: key 'rule[0].id': must be letters"),
    (_rule('purpose = "none"\non = "button"\n' + ACTION), "rule 'r1': key 'version': is missing"),
    (_rule('version = 0\npurpose = "none"\non = "button"\n' + ACTION), "key 'version': must be"),
    (
        _rule('version = 1\npurpose = "marketing"\non = "button"\n' + ACTION),
        "rule 'r1': key 'purpose': 'marketing' is not a consent purpose",
    ),
    (_rule('version = 1\npurpose = "none"\non = "Button"\n' + ACTION), "key 'on': 'Button'"),
    (_rule(BASE), "rule 'r1': key 'actions': is missing"),
    (_rule(BASE + '[[rule.actions]]\ndo = "sms"\n'), "key 'actions[0].do': must be one of"),
    (
        _rule(BASE + '[[rule.actions]]\ndo = "alert"\nseverity = "fatal"\n'),
        "key 'actions[0].severity': must be one of critical, warning",
    ),
    (
        _rule(BASE + '[[rule.actions]]\ndo = "ticket"\nchannel = "app"\n'),
        "key 'actions[0].channel': is not a known key",
    ),
    (_rule(BASE + '[[rule.actions]]\ndo = "offer"\n'), "key 'actions[0].offer': is missing"),
    (_rule(BASE + "colour = 1\n" + ACTION), "rule 'r1': key 'colour': is not a known key"),
    (
        _rule(BASE + '[rule.window]\ntype = "sometimes"\nminutes = 5\n' + ACTION),
        "key 'window.type': must be one of within, count, absence",
    ),
    (
        _rule(BASE + '[rule.window]\ntype = "within"\nminutes = 5\n' + ACTION),
        "key 'window.first': is missing",
    ),
    (
        _rule(BASE + '[rule.window]\ntype = "count"\nminutes = 0\nat_least = 2\n' + ACTION),
        "key 'window.minutes': must be a whole number from 1 to 10080",
    ),
    (
        _rule(BASE + '[rule.window]\ntype = "count"\nminutes = 5\nat_least = 1\n' + ACTION),
        "key 'window.at_least': must be a whole number from 2",
    ),
    (
        _rule(BASE + '[rule.window]\ntype = "absence"\nminutes = 5\nof = "button"\n' + ACTION),
        "key 'window': watches a kind that also triggers the rule",
    ),
    (
        _rule(BASE + "[rule.profile]\nincome = { min = 1 }\n" + ACTION),
        "rule 'r1': key 'profile': needs a consent purpose",
    ),
    (
        _rule(ACTIVITY + '[rule.profile]\nincome = { min = "x" }\n' + ACTION),
        "key 'profile.income.min': must be a number",
    ),
    (_rule(BASE + ACTION) + _rule(BASE + ACTION), "rule 'r1': key 'id': is used twice"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_rules_file_is_one_line_naming_file_rule_and_key(text: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules("f.toml", text)
    assert message in str(caught.value)
    assert str(caught.value).startswith("f.toml: ")
    assert "\n" not in str(caught.value)


def test_a_file_rule_replaces_a_shipped_one_and_two_files_may_not_share_an_id() -> None:
    replacement = _rule(BASE + ACTION, "inbound-callback").replace("version = 1", "version = 2")
    rules = combine([("ops.toml", replacement)], shipped())
    rule = rules.get("inbound-callback")
    assert rule is not None and rule.version == 2 and rule.source == "ops.toml"
    assert rules.get("checkin-ticket") is not None
    with pytest.raises(RuleError, match=r"b\.toml: rule 'r1': key 'id': is declared in a\.toml"):
        combine([("a.toml", _rule(BASE + ACTION)), ("b.toml", _rule(BASE + ACTION))])


def _write(path: Path, text: str, stamp: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(stamp, stamp))  # a distinct mtime whatever the file system's grain


def test_the_library_reloads_on_change_and_keeps_the_old_rules_when_a_file_goes_bad(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "rules"
    library = RuleLibrary(folder)
    shipped = ["checkin-ticket", "inbound-callback", "partner-shopping"]
    assert [rule.id for rule in library.current().rules] == shipped
    folder.mkdir()
    _write(folder / "ops.toml", _rule(BASE + ACTION, "door-alarm"), 1_000_000_000)
    good = library.current()
    assert good.get("door-alarm") is not None and library.error is None

    _write(folder / "ops.toml", _rule(BASE + ACTION, "door-alarm") + "version = 2\n", 2_000_000_000)
    assert library.current() is good
    assert library.error is not None and library.error.startswith("ops.toml: ")
    assert "the previous ones keep running" in caplog.text

    _write(folder / "ops.toml", _rule(BASE + ACTION, "door-bell"), 3_000_000_000)
    fixed = library.current()
    assert fixed.get("door-bell") is not None and fixed.get("door-alarm") is None
    assert library.error is None


def test_load_folder_without_defaults_and_a_missing_folder(tmp_path: Path) -> None:
    assert load_folder(tmp_path / "absent", with_defaults=False).rules == ()
    (tmp_path / "a.toml").write_text(_rule(BASE + ACTION), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a rules file", encoding="utf-8")
    rules = load_folder(tmp_path, with_defaults=False)
    assert [rule.id for rule in rules.rules] == ["r1"] and rules.sources == ("a.toml",)


def test_at_names_a_place_and_the_shipped_shopping_rule_is_for_partners_only() -> None:
    (parsed,) = parse_rules("t.toml", _rule(BASE + 'at = "partner"\n' + ACTION))
    assert parsed.at == "partner"
    (anywhere,) = parse_rules("t.toml", _rule(BASE + ACTION))
    assert anywhere.at == ""
    with pytest.raises(RuleError) as refused:
        parse_rules("t.toml", _rule(BASE + 'at = "shop"\n' + ACTION))
    assert str(refused.value) == "t.toml: rule 'r1': key 'at': must be one of partner, branch"
    shopping = shipped().get("partner-shopping")
    assert shopping is not None
    assert (shopping.at, shopping.purposes, shopping.version) == (
        "partner",
        ("presence_partner",),
        2,
    )
