"""The rule engine on synthetic streams: each window kind against a plain model of what it
promises (hypothesis), consent before anything of the customer is read, the cooldown, the
profile, and rules replaced while running. Pure: no database."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.events.directory import StaticDirectory
from cloud.events.engine import (
    ACTED,
    CANCELLED,
    NO_CONSENT,
    OUTSIDE_WINDOW,
    PROFILE,
    RATE_LIMITED,
    Engine,
    Event,
    replay,
)
from cloud.events.rules import RuleSet, parse_rules

T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
WEARABLE = "C0:FF:EE:00:00:02"
OTHER = "C0:FF:EE:00:00:03"
SENSOR = "A4:C1:38:00:00:01"
ACTION = '[[rule.actions]]\ndo = "alert"\n'


def rules(text: str) -> RuleSet:
    return RuleSet(parse_rules("test.toml", text))


def rule(body: str, rule_id: str = "r") -> RuleSet:
    return rules('[[rule]]\nid = "%s"\nversion = 1\n%s%s' % (rule_id, body, ACTION))


def event(n: int, kind: str, seconds: float, device: str = SENSOR, **data: object) -> Event:
    return Event(n, kind, device, "gw-1", T0 + dt.timedelta(seconds=seconds), data, 7)


def stream(spec: list[tuple[str, int]], device: str = SENSOR) -> list[Event]:
    return [event(i + 1, kind, seconds, device) for i, (kind, seconds) in enumerate(spec)]


PARTNER = frozenset({"presence_partner"})
DEVICES = StaticDirectory()  # no subject is a customer's


# ---- windows against their models -------------------------------------------------------

times = st.lists(st.integers(0, 3600), min_size=0, max_size=40).map(sorted)


@settings(max_examples=150, deadline=None)
@given(times=times, at_least=st.integers(2, 5), minutes=st.integers(1, 20))
def test_count_acts_exactly_when_k_events_since_the_last_act_fall_in_the_window(
    times: list[int], at_least: int, minutes: int
) -> None:
    engine = Engine(
        rule(
            'purpose = "none"\non = "door"\n[rule.window]\ntype = "count"\n'
            "at_least = %d\nminutes = %d\n" % (at_least, minutes)
        )
    )
    events = stream([("door", t) for t in times])
    acted = {d.event_id for d in replay(engine, events, DEVICES, None) if d.reason == ACTED}
    # The model: counting starts after the last act; an event acts when it makes k of them
    # no more than `minutes` apart from the first counted.
    expected, since = set(), 0
    for i, t in enumerate(times):
        counted = [u for u in times[since : i + 1] if t - u <= minutes * 60]
        if len(counted) >= at_least:
            expected.add(i + 1)
            since = i + 1
    assert acted == expected


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.tuples(st.sampled_from("AB"), st.integers(0, 600)), max_size=40),
    minutes=st.integers(1, 5),
)
def test_within_acts_on_b_after_an_unused_a_at_most_n_minutes_before(
    steps: list[tuple[str, int]], minutes: int
) -> None:
    steps = sorted(steps, key=lambda step: step[1])
    engine = Engine(
        rule(
            'purpose = "none"\non = "b"\n[rule.window]\ntype = "within"\nfirst = "a"\n'
            "minutes = %d\n" % minutes
        )
    )
    events = stream([(kind.lower(), t) for kind, t in steps])
    got = [(d.event_id, d.reason) for d in replay(engine, events, DEVICES, None)]
    expected, last_a = [], None
    for i, (kind, t) in enumerate(steps):
        if kind == "A":
            last_a = t
        elif last_a is not None and t - last_a <= minutes * 60:
            expected.append((i + 1, ACTED))
            last_a = None
        else:
            expected.append((i + 1, OUTSIDE_WINDOW))
    assert got == expected


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.tuples(st.sampled_from("SX"), st.integers(0, 3600)), max_size=30),
    minutes=st.integers(1, 20),
    tail=st.integers(0, 3600),
)
def test_absence_fires_at_the_deadline_unless_the_awaited_event_came_first(
    steps: list[tuple[str, int]], minutes: int, tail: int
) -> None:
    steps = sorted(steps, key=lambda step: step[1])
    engine = Engine(
        rule(
            'purpose = "none"\non = "start"\n[rule.window]\ntype = "absence"\nof = "stop"\n'
            "minutes = %d\n" % minutes
        )
    )
    events = stream([("start" if kind == "S" else "stop", t) for kind, t in steps])
    end = (steps[-1][1] if steps else 0) + tail
    got = [
        (d.event_id, d.reason, d.at)
        for d in replay(engine, events, DEVICES, T0 + dt.timedelta(seconds=end))
    ]
    expected, timer = [], None  # (deadline seconds, starting event)
    for i, (kind, t) in enumerate(steps):
        if timer is not None and timer[0] <= t:
            expected.append((timer[1], ACTED, T0 + dt.timedelta(seconds=timer[0])))
            timer = None
        if kind == "S" and timer is None:
            timer = (t + minutes * 60, i + 1)
        elif kind == "X" and timer is not None:
            expected.append((timer[1], CANCELLED, T0 + dt.timedelta(seconds=t)))
            timer = None
    if timer is not None and timer[0] <= end:
        expected.append((timer[1], ACTED, T0 + dt.timedelta(seconds=timer[0])))
    assert got == expected


def test_windows_are_per_subject() -> None:
    engine = Engine(
        rule(
            'purpose = "none"\non = "b"\n[rule.window]\ntype = "within"\nfirst = "a"\nminutes = 5\n'
        )
    )
    events = [event(1, "a", 0, SENSOR), event(2, "b", 10, "A4:C1:38:00:00:09")]
    assert [d.reason for d in replay(engine, events, DEVICES, None)] == [OUTSIDE_WINDOW]


def test_where_filters_the_triggering_events() -> None:
    engine = Engine(rule('purpose = "none"\non = "button"\nwhere = { value = 2 }\n'))
    events = [event(1, "button", 0, value=1), event(2, "button", 1, value=2)]
    assert [d.event_id for d in replay(engine, events, DEVICES, None)] == [2]


# ---- consent, profile, cooldown ---------------------------------------------------------


def test_no_consent_is_a_logged_refusal_and_nothing_of_the_customer_is_read() -> None:
    engine = Engine(
        rule('purpose = ["presence_branch"]\non = "button"\n[rule.profile]\nhome_branch = 7\n')
    )
    directory = StaticDirectory(
        purposes={WEARABLE: frozenset({"activity"})},
        profiles={WEARABLE: {"customer_id": 1, "home_branch": 7}},
    )
    (decision,) = engine.on_event(event(1, "button", 0, WEARABLE), directory)
    assert (decision.reason, decision.acted, decision.actions) == (NO_CONSENT, False, ())
    assert decision.reasons == ("no consent to presence_branch",)
    assert decision.inputs["granted"] == ["activity"] and "profile" not in decision.inputs
    assert decision.customer_id is None
    assert directory.profile_reads == []


def test_consent_withdrawn_drops_the_subjects_window() -> None:
    engine = Engine(
        rule(
            'purpose = "presence_branch"\non = "b"\n[rule.window]\ntype = "within"\n'
            'first = "a"\nminutes = 10\n'
        )
    )
    granted = StaticDirectory(purposes={WEARABLE: frozenset({"presence_branch"})})
    withdrawn = StaticDirectory(purposes={WEARABLE: frozenset()})
    assert engine.on_event(event(1, "a", 0, WEARABLE), granted) == []
    assert [d.reason for d in engine.on_event(event(2, "a", 5, WEARABLE), withdrawn)] == [
        NO_CONSENT
    ]
    # Consent given again: the earlier "a" is gone with the withdrawal.
    assert [d.reason for d in engine.on_event(event(3, "b", 10, WEARABLE), granted)] == [
        OUTSIDE_WINDOW
    ]


def test_a_device_only_rule_never_processes_a_customers_wearable() -> None:
    engine = Engine(rule('purpose = "none"\non = "button"\n'))
    directory = StaticDirectory(purposes={WEARABLE: frozenset({"presence_branch", "activity"})})
    (refused,) = engine.on_event(event(1, "button", 0, WEARABLE), directory)
    assert refused.reason == NO_CONSENT and "devices only" in refused.reasons[0]
    (acted,) = engine.on_event(event(2, "button", 1, SENSOR), directory)
    assert acted.reason == ACTED and directory.profile_reads == []


def test_profile_is_joined_after_consent_and_mismatches_are_explained() -> None:
    engine = Engine(
        rule(
            'purpose = "presence_partner"\non = "enter"\n[rule.profile]\nhome_branch = 7\n'
            "income = { min = 2000 }\n"
        )
    )
    directory = StaticDirectory(
        purposes={WEARABLE: PARTNER, OTHER: PARTNER},
        profiles={
            WEARABLE: {"customer_id": 41, "home_branch": 7, "income": 2500},
            OTHER: {"customer_id": 42, "home_branch": 7, "income": 900},
        },
    )
    ok, low = replay(
        engine, [event(1, "enter", 0, WEARABLE), event(2, "enter", 1, OTHER)], directory, None
    )
    assert (ok.reason, ok.customer_id, ok.inputs["profile"]) == (
        ACTED,
        41,
        {"home_branch": 7, "income": 2500},
    )
    assert (low.reason, low.customer_id) == (PROFILE, None)
    assert low.reasons == ("income is 900, the rule wants >= 2000",)
    assert directory.profile_reads == [WEARABLE, OTHER]


def test_cooldown_rate_limits_per_subject() -> None:
    engine = Engine(rule('purpose = "none"\non = "button"\ncooldown_minutes = 10\n'))
    events = [
        event(1, "button", 0),
        event(2, "button", 60),
        event(3, "button", 30, "A4:C1:38:00:00:09"),
        event(4, "button", 601),
    ]
    got = [(d.event_id, d.reason) for d in replay(engine, events, DEVICES, None)]
    assert got == [(1, ACTED), (2, RATE_LIMITED), (3, ACTED), (4, ACTED)]


def test_a_rule_kept_unchanged_keeps_its_state_a_changed_one_starts_again() -> None:
    text = (
        'purpose = "none"\non = "door"\n[rule.window]\ntype = "count"\nat_least = 2\nminutes = 10\n'
    )
    engine = Engine(rule(text))
    engine.on_event(event(1, "door", 0), DEVICES)
    engine.set_rules(rule(text))
    assert [d.reason for d in engine.on_event(event(2, "door", 1), DEVICES)] == [ACTED]
    engine.on_event(event(3, "door", 2), DEVICES)
    engine.set_rules(rule(text.replace("at_least = 2", "at_least = 3")))
    assert engine.pending() == 0
    assert engine.on_event(event(4, "door", 3), DEVICES) == []


def test_the_same_stream_gives_the_same_decisions() -> None:
    text = 'purpose = "none"\non = "button"\ncooldown_minutes = 1\n'
    events = stream([("button", t) for t in (0, 10, 70, 75, 200)])
    first = replay(Engine(rule(text)), events, DEVICES, None)
    second = replay(Engine(rule(text)), events, DEVICES, None)
    assert first == second and len(first) == 5


# ---- whom and where a rule with a purpose processes -----------------------------------------


def test_a_rule_with_a_purpose_leaves_no_customers_subjects_alone_and_counts_them() -> None:
    engine = Engine(rule('purpose = "presence_branch"\non = "enter"\n'))
    directory = StaticDirectory(
        purposes={WEARABLE: frozenset({"presence_branch"}), OTHER: frozenset()}
    )
    got = replay(
        engine,
        [
            event(1, "enter", 0, SENSOR),  # a beacon's own presence: no customer's
            event(2, "enter", 1, WEARABLE),
            event(3, "enter", 2, OTHER),  # a customer without the consent
            event(4, "enter", 3, "A4:C1:38:00:00:09"),
        ],
        directory,
        None,
    )
    assert [(d.event_id, d.subject, d.reason) for d in got] == [
        (2, WEARABLE, ACTED),
        (3, OTHER, NO_CONSENT),  # refusals about customers are still logged
    ]
    assert engine.not_customer == {"r": 2}
    assert directory.profile_reads == [WEARABLE]


def test_no_window_state_is_kept_for_a_subject_that_is_no_customers() -> None:
    engine = Engine(
        rule(
            'purpose = "presence_branch"\non = "leave"\n[rule.window]\ntype = "absence"\n'
            'of = "enter"\nminutes = 5\n'
        )
    )
    paired = StaticDirectory(purposes={WEARABLE: frozenset({"presence_branch"})})
    engine.on_event(event(1, "leave", 0, SENSOR), paired)
    engine.on_event(event(2, "leave", 0, WEARABLE), paired)
    assert engine.pending() == 1  # the customer's timer only
    # The wearable is unpaired before its timer runs out: nothing is decided about it.
    assert engine.advance(T0 + dt.timedelta(minutes=6), DEVICES) == []
    assert engine.not_customer == {"r": 2} and engine.pending() == 0


def test_at_partner_acts_only_on_events_of_batches_that_report_a_partners_beacon() -> None:
    engine = Engine(
        rules(
            '[[rule]]\nid = "shop"\nversion = 1\npurpose = "presence_partner"\non = "enter"\n'
            'at = "partner"\n' + ACTION + '[[rule]]\nid = "lobby"\nversion = 1\npurpose = '
            '"presence_partner"\non = "enter"\nat = "branch"\n' + ACTION
        )
    )
    directory = StaticDirectory(purposes={WEARABLE: PARTNER}, partner_batches=frozenset({70}))

    def entered(n: int, receipt: int) -> Event:
        return Event(n, "enter", WEARABLE, "gw-1", T0 + dt.timedelta(seconds=n), {}, 7, receipt)

    got = replay(engine, [entered(1, 70), entered(2, 71)], directory, None)
    assert [(d.rule, d.event_id, d.reason) for d in got] == [
        ("shop", 1, ACTED),
        ("lobby", 2, ACTED),
    ]


def test_the_place_is_checked_before_consent_so_branch_visits_leave_no_refusals() -> None:
    engine = Engine(rule('purpose = "presence_partner"\non = "enter"\nat = "partner"\n'))
    directory = StaticDirectory(purposes={WEARABLE: frozenset({"presence_branch"})})
    at_branch = Event(1, "enter", WEARABLE, "gw-1", T0, {}, 7, 70)
    assert engine.on_event(at_branch, directory) == []
    at_shop = Event(2, "enter", WEARABLE, "gw-1", T0, {}, 7, 71)
    directory = StaticDirectory(
        purposes={WEARABLE: frozenset({"presence_branch"})}, partner_batches=frozenset({71})
    )
    assert [d.reason for d in engine.on_event(at_shop, directory)] == [NO_CONSENT]


def test_a_walk_ins_check_in_names_no_device_and_still_takes_a_ticket() -> None:
    engine = Engine(rule('purpose = "presence_branch"\non = "kiosk_checkin"\n'))
    walk_in = Event(1, "kiosk_checkin", "kiosk-n1", "kiosk-n1", T0, {"event_id": 4}, 7)
    (decision,) = engine.on_event(walk_in, DEVICES)
    assert (decision.subject, decision.reason) == ("kiosk-n1", ACTED)
    assert engine.not_customer == {}
