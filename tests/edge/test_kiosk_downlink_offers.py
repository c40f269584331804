"""The kiosk's side of offers: ``DownlinkOffers`` (memory only, per wearable, until expiry)
and the model's accept / decline, with the kiosk events they record.
"""

from __future__ import annotations

import asyncio

import pytest

from bankiot_core import batch
from bankiot_core.downlink import OfferItem, Offers
from edge.kiosk.model import CHECKED_IN, OFFERS, Emit, KioskModel, KioskRefused, Offer
from edge.kiosk.offers import DownlinkOffers

A = bytes.fromhex("A4C138000001")
B = bytes.fromhex("A4C138000002")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def message(wearable: bytes, expires: int, *items: tuple[int, str, str]) -> Offers:
    return Offers(wearable, expires, tuple(OfferItem(*item) for item in items))


def test_offers_are_held_per_wearable_replaced_by_the_newest_and_gone_at_expiry() -> None:
    clock = Clock()
    held = DownlinkOffers(clock, wait_s=0)

    async def scenario() -> None:
        held.put(message(A, 1_000_060, (3, "Travel card", "No fees")))
        held.put(message(B, 1_000_030))  # nothing for B today: an answer too
        assert await held.offers_for(A) == [Offer("Travel card", "No fees", 3)]
        assert await held.offers_for(B) == []
        held.put(message(A, 1_000_090, (5, "Savings", "2 %")))  # the newest replaces it
        assert await held.offers_for(A) == [Offer("Savings", "2 %", 5)]
        clock.now = 1_000_030  # B's expired
        assert await held.offers_for(B) is None and len(held) == 1
        clock.now = 1_000_090
        assert await held.offers_for(A) is None and len(held) == 0
        held.put(message(A, 1_000_090, (1, "Late", "")))  # expired on arrival: dropped
        assert len(held) == 0

    asyncio.run(scenario())


def test_a_customer_who_asks_early_waits_for_offers_on_their_way() -> None:
    held = DownlinkOffers(Clock(), wait_s=10)

    async def scenario() -> None:
        asking = asyncio.ensure_future(held.offers_for(A))
        await asyncio.sleep(0)
        held.put(message(B, 1_000_060, (1, "Not yours", "")))  # another wearable's
        await asyncio.sleep(0)
        assert not asking.done()
        held.put(message(A, 1_000_060, (2, "Yours", "")))
        assert await asking == [Offer("Yours", "", 2)]

    asyncio.run(asyncio.wait_for(scenario(), 30))


def checked_in() -> KioskModel:
    model = KioskModel("A", ("Accounts",), 60_000)
    model.observe(A, (), [("enter", A, 0, -50, 90)], 0)
    assert model.observe(A, [("button", "press")], (), 10) == [Emit(batch.KIOSK_CHECKIN, A, "")]
    assert model.screen == CHECKED_IN
    return model


def test_showing_accepting_and_declining_offers_records_each_once() -> None:
    model = checked_in()
    offers = [Offer("Travel card", "No fees", 3), Offer("Savings", "2 %", 17), Offer("x", "")]
    shown = model.show_offers(offers, 20)
    assert model.screen == OFFERS
    assert shown == [
        Emit(batch.KIOSK_OFFER_SHOWN, A, "3"),
        Emit(batch.KIOSK_OFFER_SHOWN, A, "17"),  # the one without an id records nothing
    ]
    assert model.act("accept", 30, offer=0) == [Emit(batch.KIOSK_OFFER_ACCEPTED, A, "3")]
    assert model.act("decline", 40, offer=1) == [Emit(batch.KIOSK_OFFER_DECLINED, A, "17")]
    assert model.act("accept", 45, offer=2) == []
    with pytest.raises(KioskRefused, match="accepted already"):
        model.act("decline", 50, offer=0)
    with pytest.raises(KioskRefused, match=r"offer must be 0\.\.2"):
        model.act("accept", 50, offer=3)
    answers = [o["answer"] for o in model.view()["offers"]]
    assert answers == ["accepted", "declined", "accepted"]
    model.act("back", 60)
    assert model.screen == CHECKED_IN and "offers" not in model.view()
    with pytest.raises(KioskRefused, match="not possible on the checked_in screen"):
        model.act("accept", 70, offer=0)
