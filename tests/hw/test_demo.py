"""``make demo``, headless and bounded: the whole branch network on one machine.

The demo runs as a user runs it (``hw.demo.run.main``: ``bankiot cloud up``, the gateways
and the ESP32 as processes, the bank provisioned over the APIs, customers paired through
the pages' forms). Afterwards the cloud's database must hold readings from every simulated
device the gateways hear (the branches' sensors, thermometers and panic buttons, the
customers' wearables, the thermometer only the ESP32 hears), offers the cloud sent to a
kiosk after a check-in, the overheating ATM cabinet's threshold event, and a fleet alert:
N02's gateway is unplugged once all its devices were heard, the cloud's supervisor opens
its ``offline`` alert (after 30 s, the shortest the cloud allows), the demo plugs it back
in and the alert resolves, which ends the run (``--until-recovered``, which also waits,
bounded, for the shopping app's decision; ``--minutes`` only bounds a run that never
recovers). No process may have logged an error.

Bank data and the partner shop: every demo customer has a stored financial profile from
the statements the demo pushed, holding exactly their simulated customer's transactions;
the customer with a planted house move has it among the life events found; the shopper,
heard by the ESP32 with the partner café's beacon, got one shopping decision (cashback,
instalments or a warning) and one notification in her inbox naming the café. What is
expected comes from the device models' and customers' lists and the population generator,
not from what the demo printed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cloud.analytics.simulation import generate_customer
from cloud.embedded_broker import find_mosquitto
from hw.demo import run
from hw.demo.bank import BRANCHES, MERCHANT
from hw.demo.devices import customers, esp32_air, everyone, heard_by_cloud, shopper
from hw.demo.statements import SEED, account_of
from hw.micropython_runner import MicroPythonUnavailable, find_node
from tests.support.environment import unavailable

pytestmark = [pytest.mark.micropython, pytest.mark.mosquitto]


def rows(database: Path, sql: str) -> list[tuple]:
    connection = sqlite3.connect(database)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


# Condition-driven (``--until-recovered``); the bounds only stop a run that never recovers.
# About a minute on an idle machine; a loaded CI machine can take twice that, so the run
# may last 3 minutes and the test (start, flash and stop included) 5.
@pytest.mark.timeout(300)
def test_demo_network_delivers_readings_offers_and_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if find_mosquitto() is None:
        unavailable("mosquitto is not installed")
    try:
        find_node()
    except MicroPythonUnavailable as exc:
        unavailable(str(exc))
    folder = tmp_path / "demo"
    argv = ["--data-dir", str(folder), "--fresh", "--headless", "--minutes", "3"]
    status = run.main([*argv, "--unplug-after", "0", "--until-recovered"])
    out, err = capsys.readouterr()
    assert status == 0, err + out
    assert "/dashboard/" in out and "Ctrl-C stops everything." in out

    database = folder / "cloud" / "bankiot.sqlite3"
    expected = {**heard_by_cloud(1), **heard_by_cloud(2)}
    expected.update({p.address: p.name for p in esp32_air()})
    stored = {row[0] for row in rows(database, "SELECT DISTINCT device FROM readings")}
    missing = sorted(name for address, name in expected.items() if address not in stored)
    assert missing == [], out
    transports = {row[0] for row in rows(database, "SELECT DISTINCT transport FROM batch_receipts")}
    assert {"mqtt", "coap"} <= transports

    offered = rows(database, "SELECT offered FROM offer_decisions WHERE outcome = 'offered'")
    assert offered, out
    shown = rows(database, "SELECT outcome FROM offer_results")
    assert ("shown",) in shown and ("accepted",) in shown
    cabinet = next(a for a, name in expected.items() if name == "ATM 1 cabinet")
    crossings = rows(
        database,
        "SELECT device FROM device_events WHERE kind = 'threshold' AND device = '%s'" % cabinet,
    )
    assert crossings, out
    assert "THRESHOLD ATM 1 cabinet" in out

    victim = "kiosk-%s" % BRANCHES[1][0].lower()
    offline = rows(
        database,
        "SELECT a.severity, a.state, a.resolved_at IS NOT NULL FROM alerts a"
        " JOIN devices d ON d.id = a.device_id WHERE a.kind = 'offline' AND d.uid = '%s'" % victim,
    )
    assert offline == [("critical", "resolved", 1)], out
    assert "FAULT: %s unplugged" % victim in out
    assert "ALERT offline (critical) open: %s" % victim in out
    assert "%s plugged back in" % victim in out
    assert "ALERT offline (critical) resolved: %s" % victim in out

    logs = sorted((folder / "logs").glob("*.log"))
    assert any(p.name.startswith("kiosk-n0") for p in logs)
    errors = [
        "%s: %s" % (p.name, line)
        for p in logs
        for line in p.read_text(errors="replace").splitlines()
        if "ERROR" in line or "Traceback" in line
    ]
    assert errors == []
    assert "Error" not in err

    check_bank_data_and_shopping(database, out)


def check_bank_data_and_shopping(database: Path, out: str) -> None:
    """The demo customers' profiles and life events, and the shopper's decision and
    notification (module docstring)."""
    numbers = dict(rows(database, "SELECT email, id FROM customers"))
    people = everyone()
    assert {c.email for c in people} <= set(numbers), out
    profiles = dict(rows(database, "SELECT customer_id, accounts FROM customer_profiles"))
    assert {c.email: profiles.get(numbers[c.email]) for c in people} == {
        c.email: 1 for c in people
    }, out
    for customer in people:
        simulated = generate_customer(SEED, customer.simulated)
        stored = rows(
            database,
            "SELECT COUNT(*) FROM bank_transactions t JOIN bank_accounts a"
            " ON a.id = t.account_id WHERE a.identifier = '%s' AND a.customer_id = %d"
            % (account_of(customer.simulated), numbers[customer.email]),
        )
        assert stored == [(len(simulated.transactions),)], customer.email
    mover = customers(1)[0]
    planted = {e.kind for e in generate_customer(SEED, mover.simulated).events}
    assert "moving_house" in planted
    found = rows(
        database,
        "SELECT kind FROM life_event_history WHERE customer_id = %d" % numbers[mover.email],
    )
    assert ("moving_house",) in found, out

    her = numbers[shopper().email]
    decided = rows(
        database,
        "SELECT outcome FROM app_decisions WHERE app = 'shopping' AND customer_id = %d" % her,
    )
    assert len(decided) == 1 and decided[0][0] in {"cashback", "instalments", "warning"}, out
    sent = rows(
        database,
        "SELECT channel, text FROM notifications WHERE customer_id = %d AND source = 'shopping'"
        % her,
    )
    assert len(sent) == 1 and sent[0][0] == "app" and MERCHANT["name"] in sent[0][1], out
    assert "SHOPPING at %s: %s -> %s" % (MERCHANT["name"], shopper().email, decided[0][0]) in out
