"""The demo's bank statements and partner-shop radios, without running the demo.

Statements: the camt.053 file ``hw.demo.statements`` writes is read back with the cloud's
own camt importer (``cloud.bank.camt``, tested on hand-written statements) and must hold
exactly the simulated customer's transactions (the generator's output, not the writer's),
dates moved by whole weeks into the week before "today", balances chained statement to
statement, MCCs only on card payments. The IBAN check digits are checked against the
ISO 13616 / ECBS example. The café's beacon is decoded with the gateways' Eddystone
decoder (tested against the Eddystone specification's layout).
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest

from bankiot_core.advdata import parse_advertisement
from bankiot_core.beacons import EDDYSTONE_UUID, decode_eddystone
from cloud.analytics.simulation import START, generate_customer
from cloud.bank import camt
from hw.demo import statements
from hw.demo.devices import CAFE_BEACON, Visits, cafe_beacon, esp32_air, everyone, frames, shopper

NOW = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)  # a Sunday


def test_iban_check_digits_match_the_standard_example() -> None:
    # ECBS TR 201 / ISO 13616's United Kingdom example.
    assert statements.iban("WEST", "123456", "98765432") == "GB82WEST12345698765432"
    account = statements.account_of(15)
    digits = "".join(str(int(ch, 36)) for ch in account[4:] + account[:4])
    assert len(account) == 22 and int(digits) % 97 == 1  # the IBAN validity rule


@pytest.mark.parametrize(
    "today", [dt.date(2026, 11, 29), dt.date(2026, 12, 2), dt.date(2027, 3, 1)]
)
def test_the_shift_keeps_weekdays_and_ends_in_the_week_before_today(today: dt.date) -> None:
    last = START + dt.timedelta(days=statements.DAYS - 1)
    moved = last + statements.shift_to(today)
    assert moved.weekday() == last.weekday()
    assert today - dt.timedelta(days=7) <= moved < today


def test_camt_statements_hold_the_simulated_transactions() -> None:
    index = 15
    simulated = generate_customer(statements.SEED, index, statements.DAYS)
    found = statements.statements_of(index, NOW)
    shift = statements.shift_to(NOW.date())
    parsed = camt.parse(found.name, found.data)

    assert {s.account.identifier for s in parsed} == {statements.account_of(index)}
    assert {s.account.currency for s in parsed} == {"GBP"}
    entries = [e for s in parsed for e in s.entries]
    assert len(entries) == len(simulated.transactions) == found.entries
    for entry, tx in zip(entries, simulated.transactions, strict=True):
        signed = entry.amount if entry.direction == "CRDT" else -entry.amount
        assert (signed, entry.booking_date, entry.counterparty_name) == (
            tx.amount,
            tx.booked + shift,
            tx.counterparty,
        )
        card = tx.bank_code == "PMNT-CCRD-POSD"
        assert entry.mcc == ("%04d" % tx.mcc if card and tx.mcc is not None else "")
        code = entry.bank_code
        assert "-".join((code.domain, code.family, code.subfamily)) == tx.bank_code
    assert len({e.servicer_ref for e in entries}) == len(entries)  # a stable key each

    # One statement a month; balances chain; nothing reaches past the data.
    assert parsed[0].opening is not None and parsed[0].opening.amount == simulated.opening_balance
    for before, after in itertools.pairwise(parsed):
        assert before.closing is not None and after.opening is not None
        assert before.closing.amount == after.opening.amount
    total = sum((tx.amount for tx in simulated.transactions), Decimal(0))
    assert parsed[-1].closing is not None
    assert parsed[-1].closing.amount == simulated.opening_balance + total
    assert parsed[-1].closing.on == found.last == START + shift + dt.timedelta(days=547)
    assert simulated.transactions[-1].booked + shift <= found.last < NOW.date()
    months = {(e.booking_date.year, e.booking_date.month) for e in entries if e.booking_date}
    assert len(parsed) == len(months | {(found.last.year, found.last.month)})


def test_every_demo_customer_is_a_different_simulated_customer() -> None:
    people = everyone()
    assert len({c.email for c in people}) == len({c.simulated for c in people}) == len(people)
    assert shopper() in people


def test_the_cafe_beacon_sends_uid_and_telemetry_each_second() -> None:
    beacon = cafe_beacon()
    decoded = []
    for payload in beacon.advertisements(12_345):
        data = parse_advertisement(payload).service_data[EDDYSTONE_UUID]
        decoded.append({r.metric: r.value for r in decode_eddystone(data, beacon.mac).readings})
    uid, tlm = decoded
    assert uid["namespace"] == CAFE_BEACON["namespace"]
    assert uid["instance"] == CAFE_BEACON["instance"]
    assert tlm["uptime"] == 12.3 and tlm["advertisement_count"] == 26
    assert tlm["voltage"] == 2.95 and tlm["temperature"] == 21.5
    # Every second both frames, from the registered address.
    address = CAFE_BEACON["address"]
    sent = [f for f in frames(esp32_air(), 5_000) if f[0] == address]
    assert len(sent) == 2


def test_the_shopper_is_heard_only_on_her_visits() -> None:
    visits = Visits(shopper().wearable, stay_ms=40_000, away_ms=25_000)
    assert visits.advertise(1_000) is None  # not let in yet
    visits.first_ms = 10_000
    heard = {t for t in range(0, 150_000, 1_000) if visits.advertise(t) is not None}
    # Visits [10 s, 50 s), [75 s, 115 s), [140 s, 180 s): away 25 s in between.
    assert min(heard) == 10_000 and {49_000, 75_000, 114_000, 140_000} <= heard
    assert not heard & {9_000, 50_000, 74_000, 115_000, 139_000}
