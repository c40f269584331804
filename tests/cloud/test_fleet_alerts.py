"""cloud.fleet.alerts.check_alerts on SQLite and PostgreSQL, fed by real ingest: alerts open
once, follow their condition, resolve themselves, and stay one per (device, kind) even when
two checks run at once."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from cloud.db import Database
from cloud.fleet.alert_rules import Thresholds
from cloud.fleet.alerts import Alert, CheckSummary, alert_check, check_alerts
from cloud.fleet.models import Branch, Device
from cloud.ingest.models import utc
from tests.cloud.alert_actions import START, Site, add_site_rows, alert_rows, open_alerts
from tests.cloud.ingest_support import migrated


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


@pytest.fixture
def site(database: Database) -> Site:
    return Site(database)


def test_offline_opens_once_and_resolves_when_a_batch_arrives(site: Site) -> None:
    gateway = site.ids["gw-a"]
    site.reading("temperature", 21.5, "°C")
    heard = site.now
    site.later(dt.timedelta(seconds=299))
    assert site.check() == CheckSummary(opened=0, updated=0, resolved=0, open=0)
    site.later(dt.timedelta(seconds=1))  # exactly ALERT_OFFLINE_AFTER (300 s) of silence
    assert site.check().opened == 1
    assert open_alerts(site.database) == {
        (gateway, "offline"): (
            "critical",
            {"last_heard_at": heard.isoformat(), "offline_after_seconds": 300},
        )
    }
    for _ in range(3):  # still silent: the same alert, no duplicates
        site.later(dt.timedelta(minutes=10))
        assert site.check() == CheckSummary(opened=0, updated=0, resolved=0, open=1)
    site.reading("temperature", 21.6, "°C")
    resolved_at = site.now
    assert site.check() == CheckSummary(opened=0, updated=0, resolved=1, open=0)
    site.later(dt.timedelta(seconds=300))  # silent again: a new alert, the old one kept
    assert site.check().opened == 1
    rows = alert_rows(site.database)
    assert [(row[1], row[3]) for row in rows] == [("offline", "resolved"), ("offline", "open")]
    assert rows[0][5] is not None and utc(rows[0][5]) == resolved_at


def test_a_gateway_never_heard_is_offline_from_its_registration(database: Database) -> None:
    ids = add_site_rows(database, "south", ("gw-silent", "gateway"), ("kiosk-s", "kiosk"))
    with database.sessions() as db:
        # Registered a day before START, never heard; a retired one raises nothing.
        db.execute(update(Device).where(Device.uid == "kiosk-s").values(status="retired"))
        assert check_alerts(db, Thresholds(), START).opened == 1
        db.commit()
    assert open_alerts(database) == {
        (ids["gw-silent"], "offline"): (
            "critical",
            {"last_heard_at": None, "offline_after_seconds": 300},
        )
    }


def test_queue_growing_warns_then_escalates_then_resolves(site: Site) -> None:
    gateway = site.ids["gw-a"]
    for depth in (1, 2, 3, 4, 5):  # four rises: not yet
        site.health(depth=depth)
        site.later()
    assert site.check().opened == 0
    site.health(depth=6)  # the fifth rise
    assert site.check().opened == 1
    severity, detail = open_alerts(site.database)[(gateway, "queue_growing")]
    assert severity == "warning"
    assert detail["recent_depths"] == [1, 2, 3, 4, 5, 6] and detail["rising_reports"] == 5
    site.later()
    site.health(depth=100)  # ALERT_QUEUE_DEPTH: the same alert, now critical
    assert site.check() == CheckSummary(opened=0, updated=1, resolved=0, open=1)
    severity, detail = open_alerts(site.database)[(gateway, "queue_growing")]
    assert (severity, detail["queue_depth"]) == ("critical", 100)
    site.later()
    site.health(depth=0)  # drained
    assert site.check() == CheckSummary(opened=0, updated=0, resolved=1, open=0)


def test_battery_low_from_gateway_counters(site: Site) -> None:
    gateway = site.ids["gw-a"]
    site.health(battery=15)
    assert site.check().opened == 1
    assert open_alerts(site.database)[(gateway, "battery_low")] == (
        "warning",
        {"battery": 15, "battery_low": 20, "source": "health"},
    )
    site.later()
    site.health(battery=24)  # above 20 but within the hysteresis: still low
    assert site.check() == CheckSummary(opened=0, updated=1, resolved=0, open=1)
    site.later()
    site.health(battery=26)
    assert site.check().resolved == 1


def test_battery_low_from_a_wearables_reading(site: Site) -> None:
    wearable = site.ids[site.wearable]
    site.reading("battery", 12, "%")
    assert site.check().opened == 1
    severity, detail = open_alerts(site.database)[(wearable, "battery_low")]
    assert (severity, detail["battery"], detail["source"]) == ("warning", 12, "reading")
    site.later()
    site.reading("battery", 90, "%")  # a new battery
    assert site.check().resolved == 1
    assert open_alerts(site.database) == {}


def test_a_burst_of_authentication_failures_opens_a_critical_alert(site: Site) -> None:
    gateway = site.ids["gw-a"]
    for unauthenticated, replayed in ((0, 0), (4, 0), (8, 1)):  # 9: one short
        site.health(frames_unauthenticated=unauthenticated, frames_replayed=replayed)
        site.later()
    assert site.check().opened == 0
    site.health(frames_unauthenticated=8, frames_replayed=2)  # 10 in the window
    assert site.check().opened == 1
    severity, detail = open_alerts(site.database)[(gateway, "auth_failures")]
    assert severity == "critical"
    assert (detail["frames_unauthenticated"], detail["frames_replayed"]) == (8, 2)
    site.later(dt.timedelta(minutes=16))  # no reports left in the 15-minute window
    assert site.check().resolved == 1


def test_malformed_frames_open_a_decode_alert(site: Site) -> None:
    for malformed in (0, 60, 130):
        site.health(frames_malformed=malformed)
        site.later()
    site.now -= dt.timedelta(minutes=1)
    assert site.check().opened == 1
    assert list(open_alerts(site.database)) == [(site.ids["gw-a"], "decode_failures")]


def test_counters_reset_by_a_reboot_do_not_alert(site: Site) -> None:
    for unauthenticated in (500, 505, 0, 4):  # the gateway rebooted after 505
        site.health(frames_unauthenticated=unauthenticated, frames_malformed=unauthenticated)
        site.later()
    site.now -= dt.timedelta(minutes=1)
    assert site.check().opened == 0
    assert alert_rows(site.database) == []


def test_a_second_check_at_the_same_time_changes_nothing(site: Site) -> None:
    site.health(depth=150, battery=10, frames_unauthenticated=0)
    site.later()
    site.health(depth=160, battery=10, frames_unauthenticated=30)
    site.reading("battery", 5, "%")
    first = site.check()
    assert first.opened == 4  # queue, both batteries, auth failures
    before = alert_rows(site.database)
    assert site.check() == CheckSummary(opened=0, updated=0, resolved=0, open=first.open)
    assert alert_rows(site.database) == before


def test_one_open_alert_per_device_and_kind_under_concurrent_checks(database: Database) -> None:
    ids = add_site_rows(database, "east", *(("gw-%d" % n, "gateway") for n in range(20)))
    now = START + dt.timedelta(hours=1)  # every gateway silent since registration
    barrier = threading.Barrier(2)
    summaries: list[CheckSummary] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with database.sessions() as db:
                barrier.wait()
                summaries.append(check_alerts(db, Thresholds(), now))
                db.commit()
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(summary.opened for summary in summaries) == len(ids)
    assert sorted(open_alerts(database)) == sorted((i, "offline") for i in ids.values())


def test_the_database_refuses_a_second_open_alert(database: Database) -> None:
    gateway = add_site_rows(database, "west", ("gw-w", "gateway"))["gw-w"]
    with database.sessions() as db:
        device = db.get(Device, gateway)
        assert device is not None
        row = {
            "device_id": gateway,
            "branch_id": device.branch_id,
            "kind": "offline",
            "severity": "critical",
            "state": "open",
            "opened_at": START,
            "detail": {},
        }
        # Resolved ones may be many; open ones one.
        db.execute(insert(Alert), [row, {**row, "state": "resolved"}, {**row, "state": "resolved"}])
        db.commit()
        with pytest.raises(IntegrityError):
            db.execute(insert(Alert), [row])
        db.rollback()


def test_thresholds_come_from_configuration(site: Site) -> None:
    check = alert_check({"ALERT_OFFLINE_AFTER": "600"})
    site.reading("temperature", 21.5, "°C")
    site.later(dt.timedelta(seconds=599))
    with site.database.sessions() as db:
        assert check(db, site.now).opened == 0
    site.later(dt.timedelta(seconds=1))
    with site.database.sessions() as db:
        assert check(db, site.now).opened == 1
        db.commit()
    assert (
        open_alerts(site.database)[(site.ids["gw-a"], "offline")][1]["offline_after_seconds"] == 600
    )


def test_an_open_alert_follows_its_device_to_another_branch(site: Site) -> None:
    """A device moved while its alert was open (a pairing at another branch's kiosk that
    committed just after a check read the device): the next check puts the alert where the
    device is, so the new branch's staff see it."""
    gateway = site.ids["gw-a"]
    site.reading("temperature", 21.5, "°C")
    site.later(dt.timedelta(minutes=10))
    assert site.check().opened == 1
    add_site_rows(site.database, "south")  # a second branch, no devices
    with site.database.sessions() as db:
        south_id = db.scalar(select(Branch.id).where(Branch.code == "south"))
        db.execute(update(Device).where(Device.id == gateway).values(branch_id=south_id))
        db.commit()
    site.later()
    assert site.check() == CheckSummary(opened=0, updated=1, resolved=0, open=1)
    with site.database.sessions() as db:
        assert db.scalars(select(Alert.branch_id).where(Alert.state == "open")).all() == [south_id]
