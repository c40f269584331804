"""``edge.kiosk.model``: the kiosk's screens, check-in by possession, tickets, privacy.

The inputs are what ``bankiot_core.gateway.Gateway.observer`` hands on (presence events as
``presence.PresenceEvent``, readings as ``readings.Reading``), built here by hand; the
engine's side is tested with the real engine in ``test_kiosk_server.py``.
"""

from __future__ import annotations

import json

import pytest

from bankiot_core.batch import KIOSK_CHECKIN, KIOSK_REQUEST, KIOSK_TICKET
from bankiot_core.presence import ENTER, LEAVE, PresenceEvent
from bankiot_core.readings import Reading
from edge.kiosk.model import (
    ACTIONS,
    MOVES,
    SCREENS,
    Emit,
    KioskModel,
    KioskRefused,
    Offer,
)

ALICE = bytes.fromhex("a4c138000001")
BOB = bytes.fromhex("a4c138000002")
SERVICES = ("Accounts", "Cards", "Loans")
IDLE_MS = 60_000
DAY = "2026-11-29"
PRESS = Reading("button", "press", "event")
OFFERS = [Offer("Travel card", "No fees abroad for a year")]


def model() -> KioskModel:
    return KioskModel("A", SERVICES, IDLE_MS)


def enter(kiosk: KioskModel, who: bytes, now: int = 0) -> list[Emit]:
    return kiosk.observe(who, (), (PresenceEvent(ENTER, who, now, -55, 80),), now)


def leave(kiosk: KioskModel, who: bytes, now: int = 0) -> list[Emit]:
    return kiosk.observe(who, (), (PresenceEvent(LEAVE, who, now, -90, 0),), now)


def press(kiosk: KioskModel, who: bytes, now: int = 0) -> list[Emit]:
    return kiosk.observe(who, (PRESS,), (), now)


def checked_in(who: bytes = ALICE) -> KioskModel:
    kiosk = model()
    enter(kiosk, who)
    assert press(kiosk, who, 10) == [Emit(KIOSK_CHECKIN, who, "")]
    return kiosk


def test_every_transition_leads_to_a_screen_and_every_action_is_offered_somewhere() -> None:
    targets = set(MOVES.values()) - {"home"}
    assert targets <= set(SCREENS)
    assert {action for _screen, action in MOVES} == ACTIONS
    assert {screen for screen, _action in MOVES} <= set(SCREENS)


def test_a_paired_wearable_near_changes_the_screen_and_its_press_checks_in() -> None:
    kiosk = model()
    assert kiosk.view()["screen"] == "welcome"
    assert enter(kiosk, ALICE) == []
    assert kiosk.view() == {"screen": "near", "checked_in": False}
    assert press(kiosk, ALICE, 5) == [Emit(KIOSK_CHECKIN, ALICE, "")]
    assert kiosk.view() == {"screen": "checked_in", "checked_in": True}


def test_a_press_from_a_wearable_that_is_not_near_checks_nobody_in() -> None:
    kiosk = model()
    assert press(kiosk, ALICE) == []  # heard, but not present: not proof of being here
    assert kiosk.screen == "welcome"
    enter(kiosk, ALICE)
    leave(kiosk, ALICE)
    assert press(kiosk, ALICE) == [] and kiosk.screen == "welcome"


def test_enter_and_press_in_one_frame_check_in() -> None:
    kiosk = model()
    event = PresenceEvent(ENTER, ALICE, 0, -50, 90)
    assert kiosk.observe(ALICE, (PRESS,), (event,), 0) == [Emit(KIOSK_CHECKIN, ALICE, "")]


def test_other_button_events_and_readings_do_not_check_in() -> None:
    kiosk = model()
    enter(kiosk, ALICE)
    assert kiosk.observe(ALICE, (Reading("temperature", 21.5, "°C"),), (), 1) == []
    assert kiosk.observe(ALICE, (Reading("dimmer", "rotate_left", "event"),), (), 2) == []
    assert kiosk.observe(ALICE, (Reading("button_2", "long_press", "event"),), (), 3) == [
        Emit(KIOSK_CHECKIN, ALICE, "")
    ]


def test_a_second_customer_cannot_take_over_a_session() -> None:
    kiosk = checked_in(ALICE)
    enter(kiosk, BOB)
    assert press(kiosk, BOB, 20) == []
    assert kiosk.wearable == ALICE and kiosk.screen == "checked_in"


def test_tickets_are_numbered_per_day_and_carry_the_checked_in_wearable() -> None:
    kiosk = checked_in(ALICE)
    assert kiosk.act("ticket", 20, DAY) == [Emit(KIOSK_TICKET, ALICE, "A001")]
    assert kiosk.view() == {"screen": "ticket", "checked_in": True, "ticket": "A001"}
    kiosk.act("done", 30)
    assert kiosk.act("ticket", 40, DAY) == [Emit(KIOSK_TICKET, None, "A002")]  # a walk-in
    kiosk.act("back", 50)
    assert kiosk.act("ticket", 60, "2026-11-30") == [Emit(KIOSK_TICKET, None, "A001")]
    assert (kiosk.ticket_day, kiosk.ticket_last) == ("2026-11-30", 1)


def test_the_ticket_count_continues_from_what_was_saved_and_grows_past_three_digits() -> None:
    kiosk = KioskModel("B7", SERVICES, IDLE_MS, ticket_day=DAY, ticket_last=998)
    assert kiosk.act("ticket", 0, DAY) == [Emit(KIOSK_TICKET, None, "B7999")]
    kiosk.act("back", 1)
    assert kiosk.act("ticket", 2, DAY) == [Emit(KIOSK_TICKET, None, "B71000")]


def test_a_service_request_names_a_configured_service_only() -> None:
    kiosk = checked_in(ALICE)
    assert kiosk.act("services", 20) == []
    assert kiosk.view()["services"] == list(SERVICES)
    with pytest.raises(KioskRefused, match=r"service must be 0\.\.2, got 3"):
        kiosk.act("request", 21, service=3)
    with pytest.raises(KioskRefused, match="service must be"):
        kiosk.act("request", 21, service=None)
    assert kiosk.screen == "services"  # a refusal changes nothing
    assert kiosk.act("request", 22, service=1) == [Emit(KIOSK_REQUEST, ALICE, "Cards")]
    assert kiosk.view() == {"screen": "requested", "checked_in": True, "service": "Cards"}
    assert kiosk.act("back", 23) == [] and kiosk.screen == "checked_in"


def test_actions_not_on_this_screen_are_refused_with_a_reason() -> None:
    kiosk = model()
    with pytest.raises(KioskRefused, match="unknown kiosk action 'dance'"):
        kiosk.act("dance", 0)
    with pytest.raises(KioskRefused, match="done is not possible on the welcome screen"):
        kiosk.act("done", 0)
    with pytest.raises(KioskRefused, match="offers are shown only"):
        kiosk.show_offers(OFFERS, 0)
    checked = checked_in()
    with pytest.raises(KioskRefused, match="pairing is not possible on the checked_in screen"):
        checked.show_pairing("123456", 0)


def test_offers_are_in_no_state_before_the_customer_asks_and_gone_after_done() -> None:
    kiosk = model()
    views = [json.dumps(kiosk.view())]
    enter(kiosk, ALICE)
    views.append(json.dumps(kiosk.view()))
    press(kiosk, ALICE, 10)
    views.append(json.dumps(kiosk.view()))
    kiosk.act("ticket", 11, DAY)
    views.append(json.dumps(kiosk.view()))
    kiosk.act("back", 12)
    views.append(json.dumps(kiosk.view()))
    assert kiosk.offers is None
    assert all("offers" not in view and "Travel card" not in view for view in views)

    kiosk.show_offers(OFFERS, 13)  # "show my offers", after the fetch
    assert kiosk.view()["offers"] == [
        {"title": "Travel card", "text": "No fees abroad for a year", "answer": None}
    ]
    kiosk.act("back", 14)
    assert kiosk.offers is None and "offers" not in kiosk.view()
    kiosk.show_offers(OFFERS, 15)
    kiosk.act("done", 16)
    assert kiosk.offers is None and kiosk.wearable is None
    assert kiosk.view() == {"screen": "near", "checked_in": False}  # Alice is still near


def test_offers_not_available_are_said_so() -> None:
    kiosk = checked_in()
    kiosk.show_offers(None, 20)
    assert kiosk.view() == {
        "screen": "offers",
        "checked_in": True,
        "offers_available": False,
        "offers": [],
    }


def test_the_idle_timeout_ends_the_session_and_forgets_the_offers() -> None:
    kiosk = checked_in()
    kiosk.show_offers(OFFERS, 1_000)
    assert not kiosk.tick(1_000 + IDLE_MS - 1)
    assert kiosk.screen == "offers"
    assert kiosk.tick(1_000 + IDLE_MS)
    assert kiosk.offers is None and kiosk.wearable is None
    assert kiosk.view() == {"screen": "near", "checked_in": False}
    assert not kiosk.tick(10 * IDLE_MS)  # idle screens have nothing to time out


def test_a_touch_restarts_the_idle_timeout_and_walk_ins_time_out_too() -> None:
    kiosk = model()
    kiosk.act("services", 0)
    kiosk.act("request", IDLE_MS - 1, service=0)
    assert not kiosk.tick(IDLE_MS + 10)
    assert kiosk.tick(2 * IDLE_MS)
    assert kiosk.screen == "welcome"


def test_the_customer_walking_away_ends_the_session() -> None:
    kiosk = checked_in(ALICE)
    enter(kiosk, BOB)
    kiosk.show_offers(OFFERS, 20)
    leave(kiosk, ALICE, 30)
    assert kiosk.offers is None and kiosk.wearable is None
    assert kiosk.view() == {"screen": "near", "checked_in": False}  # Bob is near
    leave(kiosk, BOB, 40)
    assert kiosk.screen == "welcome"


def test_the_pairing_screen_shows_a_code_or_says_not_available() -> None:
    kiosk = model()
    kiosk.show_pairing(None, 0)
    assert kiosk.view() == {"screen": "pairing", "checked_in": False, "pairing_code": None}
    kiosk.act("back", 1)
    kiosk.show_pairing("482 913", 2)
    assert kiosk.view()["pairing_code"] == "482 913"
    kiosk.act("back", 3)
    assert kiosk.pairing_code is None and kiosk.screen == "welcome"


def test_nothing_personal_is_ever_in_a_view() -> None:
    """Whatever happens, a view never carries a wearable's address."""
    kiosk = model()
    seen = []
    enter(kiosk, ALICE)
    press(kiosk, ALICE, 1)
    for step in ("ticket", "back", "services"):
        kiosk.act(step, 2, DAY)
        seen.append(kiosk.view())
    kiosk.act("request", 3, service=2)
    seen.append(kiosk.view())
    text = json.dumps(seen).lower()
    assert ALICE.hex() not in text and "a4:c1" not in text
