"""cabinet_drift and beacon_silent through the fleet supervisor's alert check, on SQLite and
PostgreSQL, fed by real ingest: a cabinet sensor's drift opens an alert before any fixed
threshold and resolves once the temperature settles; a branch beacon unheard by its online
gateway opens one, heard again (by its own branch) resolves it, and a branch whose gateways
are all offline gets only ``offline``."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from bankiot_core.address import mac_to_str
from cloud.config import ConfigError
from cloud.db import Database
from cloud.fleet import beacons
from cloud.fleet.models import Device
from cloud.fleet.supervisor import checks_for, run_checks
from cloud.ingest.pipeline import Ingest
from tests.cloud.alert_actions import START, Site, add_site_rows, open_alerts
from tests.cloud.ingest_support import SENSOR, SimGateway, migrated

BEACON = bytes.fromhex("C300000A1B2C")
FIVE = dt.timedelta(minutes=5)


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


@pytest.fixture
def site(database: Database) -> Site:
    site = Site(database)
    with database.sessions() as db:
        branch = db.scalars(select(Device.branch_id).where(Device.uid == "gw-a")).one()
        sensor = Device(
            uid=mac_to_str(SENSOR),
            kind="sensor",
            branch_id=branch,
            status="active",
            created_at=START - dt.timedelta(days=1),
        )
        db.add(sensor)
        db.commit()
        site.ids[sensor.uid] = sensor.id
        site.ids["branch"] = branch
    return site


def supervise(site: Site, **settings: str) -> None:
    """One pass of the supervisor's checks at ``site.now``, with ``settings`` (config keys)."""
    checks = checks_for({key.upper(): value for key, value in settings.items()})
    assert run_checks(site.database, {"alerts": checks["alerts"]}, site.now) == []


def temperature(site: Site, value: float) -> None:
    site.gateway.hear(SENSOR, "temperature", round(value, 2), "°C")
    assert site.deliver() >= 1


def test_a_drifting_cabinet_opens_an_alert_hours_before_a_fixed_threshold(site: Site) -> None:
    sensor = site.ids[mac_to_str(SENSOR)]
    rng = random.Random(5)
    for _ in range(72):  # six quiet hours at 24 °C, a reading every five minutes
        temperature(site, 24 + rng.gauss(0, 0.15))
        site.later(FIVE)
    supervise(site)
    assert (sensor, "cabinet_drift") not in open_alerts(site.database)
    value, opened_after = 24.0, None
    for step in range(1, 25):  # then +1 °C an hour
        value = 24 + step / 12
        temperature(site, value + rng.gauss(0, 0.15))
        supervise(site)
        if (sensor, "cabinet_drift") in open_alerts(site.database):
            opened_after = step
            break
        site.later(FIVE)
    assert opened_after is not None and value < 26.5  # far below a 30 °C threshold
    severity, detail = open_alerts(site.database)[(sensor, "cabinet_drift")]
    assert (severity, detail["metric"], detail["direction"]) == ("warning", "temperature", "up")
    assert detail["baseline"] == pytest.approx(24.0, abs=0.3)
    assert detail["current"] == pytest.approx(value, abs=0.6) and detail["rate_per_hour"] > 0.3
    # It settles where it got to: the drift is over, and once the baseline has caught up
    # (a few of its half-lives) the alert resolves itself.
    for _ in range(4):
        for _ in range(12):
            site.later(FIVE)
            temperature(site, value + rng.gauss(0, 0.15))
        supervise(site)
    assert (sensor, "cabinet_drift") not in open_alerts(site.database)


def heard(site: Site) -> None:
    site.gateway.hear(BEACON, "major", 7)
    assert site.deliver() >= 1


def test_a_silent_beacon_alerts_on_its_branch_while_the_gateway_is_online(
    site: Site,
) -> None:
    gateway = site.ids["gw-a"]
    with site.database.sessions() as db:
        beacon = beacons.add_beacon(
            db,
            kind="ibeacon",
            branch_id=site.ids["branch"],
            uuid="f7826da6-4fa2-4e98-8024-bc5b71e0893e",
            major=7,
            minor=1,
            address=mac_to_str(BEACON),
            label="front door",
            actor="test",
            now=START - dt.timedelta(hours=1),
        )
        db.commit()
        beacon_id = beacon.id
    heard(site)
    last_heard = site.now
    for _ in range(3):  # nine minutes unheard, the gateway reporting its health
        site.later(dt.timedelta(minutes=3))
        site.health(depth=0)
        supervise(site, alert_beacon_silent="600")
    assert open_alerts(site.database) == {}
    site.later(dt.timedelta(minutes=1))
    site.health(depth=0)
    supervise(site, alert_beacon_silent="600")
    severity, detail = open_alerts(site.database)[(gateway, "beacon_silent")]
    assert severity == "warning"
    [silent] = detail["beacons"]
    assert (silent["beacon_id"], silent["address"], silent["label"]) == (
        beacon_id,
        "C3:00:00:0A:1B:2C",
        "front door",
    )
    assert dt.datetime.fromisoformat(silent["last_heard_at"]) >= last_heard - dt.timedelta(
        seconds=1
    )
    assert detail["gateways_online"] == 1 and detail["silent_after_seconds"] == 600

    # Heard by a gateway of another branch: still silent for its own.
    other = SimGateway("gw-b")
    add_site_rows(site.database, "south", ("gw-b", "gateway"))
    ingest = Ingest(site.database, other.keys(), clock=lambda: site.now)
    other.hear(BEACON, "major", 7)
    other.flush()
    for _seq, envelope in other.outbox():
        assert ingest.handle(envelope, other.aad, "mqtt", "gw-b").status == "accepted"
    supervise(site, alert_beacon_silent="600")
    assert (gateway, "beacon_silent") in open_alerts(site.database)

    heard(site)  # its own gateway hears it again
    supervise(site, alert_beacon_silent="600")
    assert (gateway, "beacon_silent") not in open_alerts(site.database)


def test_no_beacon_alert_when_the_branch_gateway_is_offline(site: Site) -> None:
    with site.database.sessions() as db:
        beacons.add_beacon(
            db,
            kind="eddystone",
            branch_id=site.ids["branch"],
            namespace="00112233445566778899",
            instance="aabbccddeeff",
            address=mac_to_str(BEACON),
            actor="test",
            now=START - dt.timedelta(hours=1),
        )
        db.commit()
    heard(site)
    site.later(dt.timedelta(minutes=30))  # the gateway and the beacon both silent
    supervise(site)
    assert set(open_alerts(site.database)) == {(site.ids["gw-a"], "offline")}
    site.health(depth=0)  # the gateway is back, the beacon is not
    supervise(site)
    assert set(open_alerts(site.database)) == {(site.ids["gw-a"], "beacon_silent")}


def test_checks_for_refuses_a_bad_anomaly_setting() -> None:
    with pytest.raises(ConfigError, match="ALERT_DRIFT_LIMIT must be 3 to 1000, not 1"):
        checks_for({"ALERT_DRIFT_LIMIT": "1"})
