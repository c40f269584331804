"""``envelopes_rejected``: the fleet alert read from the ingest's durable rejection counts
(``ingest_rejections``), on SQLite and PostgreSQL. Buckets planted in the table, and forged
envelopes through the real pipeline, open it with their reasons; below the threshold, in an
hour out of the window or from the ``unknown`` sender nothing opens; it resolves when the
window is clean; a branch manager sees it for their branch only; the unknown sender's show
on ``/metrics``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from apiflask import APIFlask
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.engine import URL

from bankiot_core import cose
from cloud.config import ConfigError, load_config
from cloud.db import Database, database
from cloud.fleet.alert_rules import Thresholds
from cloud.fleet.alerts import CheckSummary, alert_check, check_alerts
from cloud.fleet.cli import fleet
from cloud.fleet.models import Device
from cloud.fleet.rejection_alerts import unknown_rejections
from cloud.fleet.supervisor import checks_for, run_checks
from cloud.ingest.pipeline import RESOURCE
from cloud.ingest.rejections import UNKNOWN, RejectionCount
from tests.cloud.alert_actions import START, Site, add_site_rows, alert_rows
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.identity_actions import Callers
from tests.cloud.ingest_support import migrated
from tests.cloud.people_actions import add_operator, body, make_token, sign_in

KIND = "envelopes_rejected"
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def migrated_db(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        yield db


@pytest.fixture
def site(migrated_db: Database) -> Site:
    """Branch north with gateway gw-a (and a wearable); the clock at ``START`` (08:00)."""
    return Site(migrated_db)


def plant(db: Database, gateway: str, hour: dt.datetime, **reasons: int) -> None:
    """Add ``reasons`` (reason=count) to ``gateway``'s buckets of ``hour``, first seen at
    five past, last seen at ten to."""
    with db.sessions() as session:
        for reason, count in reasons.items():
            row = session.get(RejectionCount, (gateway, reason, hour))
            if row is None:
                first, last = hour + dt.timedelta(minutes=5), hour + dt.timedelta(minutes=50)
                session.add(
                    RejectionCount(
                        gateway=gateway,
                        reason=reason,
                        hour=hour,
                        count=count,
                        first_seen=first,
                        last_seen=last,
                    )
                )
            else:
                row.count += count
        session.commit()


def rejected(db: Database) -> dict[int, tuple[str, dict]]:
    """The open ``envelopes_rejected`` alerts: device id -> (severity, detail)."""
    return {
        device: (severity, detail)
        for device, kind, severity, state, _o, _r, detail in alert_rows(db)
        if kind == KIND and state == "open"
    }


def check(db: Database, now: dt.datetime, thresholds: Thresholds | None = None) -> CheckSummary:
    with db.sessions() as session:
        summary = check_alerts(session, thresholds or Thresholds(), now)
        session.commit()
    return summary


def forged(seq: int, gateway: str) -> bytes:
    """An envelope naming ``gateway`` in its kid, sealed with a key that is not its own."""
    return cose.seal(b"k" * 32, gateway, 1, seq, b"\x84\x01\x00\x00\x80", RESOURCE)


def test_a_burst_opens_the_alert_with_its_reasons(site: Site) -> None:
    gateway, db = site.ids["gw-a"], site.database
    now = START + dt.timedelta(minutes=30)  # window: the 07:00 and 08:00 buckets
    plant(db, "gw-a", START - HOUR, forged=4)
    plant(db, "gw-a", START, forged=3, wrong_gateway=2)
    check(db, now)
    assert rejected(db) == {}  # 9: one short of ALERT_ENVELOPES_REJECTED (10)
    plant(db, "gw-a", START, wrong_gateway=1)
    assert check(db, now).opened == 1
    assert rejected(db) == {
        gateway: (
            "critical",
            {
                "rejected": 10,
                "reasons": {"forged": 7, "wrong_gateway": 3},
                "threshold": 10,
                "since": (START - HOUR).isoformat(),
                "first_seen": (START - HOUR + dt.timedelta(minutes=5)).isoformat(),
                "last_seen": (START + dt.timedelta(minutes=50)).isoformat(),
            },
        )
    }
    plant(db, "gw-a", START, forged=5)  # more of the same: the same alert, new figures
    assert check(db, now) == CheckSummary(opened=0, updated=1, resolved=0, open=2)  # + offline
    assert rejected(db)[gateway][1]["reasons"] == {"forged": 12, "wrong_gateway": 3}


def test_only_the_window_counts_and_reasons_set_the_severity(site: Site) -> None:
    db = site.database
    other = add_site_rows(db, "south", ("kiosk-b", "kiosk"))["kiosk-b"]
    now = START + dt.timedelta(minutes=30)
    plant(db, "gw-a", START - 2 * HOUR, forged=500)  # 06:00: out of the window
    plant(db, "gw-a", START - HOUR, forged=5)
    plant(db, "kiosk-b", START, malformed=6, undecodable=4)  # no security reason
    check(db, now)
    [(device, (severity, detail))] = rejected(db).items()  # gw-a's 5 in the window: none
    assert (device, severity) == (other, "warning")
    assert (detail["rejected"], detail["reasons"]) == (10, {"malformed": 6, "undecodable": 4})


def test_it_stays_while_the_window_holds_any_and_resolves_when_clean(site: Site) -> None:
    gateway, db = site.ids["gw-a"], site.database
    plant(db, "gw-a", START, forged=12)
    check(db, START + dt.timedelta(minutes=30))  # gw-a was never heard: offline too
    assert rejected(db)[gateway][1]["rejected"] == 12
    plant(db, "gw-a", START + HOUR, forged=1)  # one more at 09:xx
    # 10:00: the window is 09:00-10:00, one rejection: below the threshold, but open already
    check(db, START + 2 * HOUR)
    assert rejected(db)[gateway][1]["rejected"] == 1
    summary = check(db, START + 3 * HOUR)  # 11:00: nothing in 10:00-11:00
    assert summary.resolved == 1 and rejected(db) == {}
    plant(db, "gw-a", START + 3 * HOUR, forged=5)  # closed: the threshold applies again
    check(db, START + 3 * HOUR + dt.timedelta(minutes=5))
    assert [row[3] for row in alert_rows(db) if row[1] == KIND] == ["resolved"]


def test_the_unknown_sender_and_retired_gateways_raise_no_alert(site: Site) -> None:
    db = site.database
    # A device the inventory happens to call "unknown" must not take the unknown bucket.
    add_site_rows(db, "east", (UNKNOWN, "gateway"))
    plant(db, UNKNOWN, START, forged=1000, unknown_key=30)
    plant(db, "gw-a", START, forged=50)
    with db.sessions() as session:
        session.execute(update(Device).where(Device.uid == "gw-a").values(status="revoked"))
        session.commit()
    check(db, START + dt.timedelta(minutes=1))
    assert rejected(db) == {}
    with db.sessions() as session:
        assert unknown_rejections(session, START) == {"forged": 1000, "unknown_key": 30}
        assert unknown_rejections(session, START + 2 * HOUR) == {}


def test_forged_envelopes_through_the_pipeline_open_it(site: Site) -> None:
    gateway, db = site.ids["gw-a"], site.database
    site.reading("temperature", 21.5, "°C")  # heard: no offline alert to muddle the count
    for seq in range(9):
        assert site.ingest.handle(forged(seq, "gw-a"), RESOURCE, "coap").reason == "forged"
    garbage = site.ingest.handle(b"\xd0\x83garbage", site.gateway.aad, "mqtt", "gw-a")
    assert garbage.reason == "malformed"
    for seq in range(20):  # a kid the inventory does not hold: the unknown bucket
        site.ingest.handle(forged(seq, "gw-nowhere"), RESOURCE, "coap")
    summary = check(db, site.now)
    assert summary == CheckSummary(opened=1, updated=0, resolved=0, open=1)
    severity, detail = rejected(db)[gateway]
    assert (severity, detail["rejected"]) == ("critical", 10)
    assert detail["reasons"] == {"forged": 9, "malformed": 1}
    assert detail["first_seen"] == detail["last_seen"] == site.now.isoformat()


def test_the_threshold_comes_from_configuration(site: Site) -> None:
    db = site.database
    config = load_config(environ={"BANKIOT_ALERT_ENVELOPES_REJECTED": "3"})
    assert config["ALERT_ENVELOPES_REJECTED"] == "3"
    plant(db, "gw-a", START, revoked=3)
    # The supervisor's pass, as `bankiot cloud up` runs it.
    assert run_checks(db, {"alerts": checks_for(config)["alerts"]}, START) == []
    assert rejected(db)[site.ids["gw-a"]][1]["threshold"] == 3
    with pytest.raises(ConfigError, match="ALERT_ENVELOPES_REJECTED must be 1 to"):
        alert_check({"ALERT_ENVELOPES_REJECTED": "0"})


# --- Through the API, the CLI and /metrics --------------------------------------------------

REGISTERED = dt.datetime(2030, 5, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def branches(cloud_app: APIFlask) -> dict[str, int]:
    """North (gw-n1) and south (gw-s1), each with a burst of forged envelopes, checked."""
    ids = add_branches(cloud_app, "north", "south")
    common = {"status": "active", "created_at": REGISTERED}
    add_devices(
        cloud_app,
        {"uid": "gw-n1", "branch_id": ids["north"], **common},
        {"uid": "gw-s1", "branch_id": ids["south"], **common},
    )
    db = cloud_app.extensions["bankiot.db"]
    plant(db, "gw-n1", REGISTERED, forged=20)
    plant(db, "gw-s1", REGISTERED, wrong_gateway=11)
    with cloud_app.app_context(), database().sessions() as session:
        check_alerts(session, Thresholds(), REGISTERED + dt.timedelta(minutes=10))
        session.commit()
    return ids


def listed(client: FlaskClient, **params: object) -> list[tuple[str, str]]:
    response = client.get("/api/fleet/alerts", query_string={"kind": KIND, **params})
    assert response.status_code == 200, response.json
    return [(a["device_uid"], a["kind"]) for a in body(response)["alerts"]]


def test_a_branch_manager_sees_their_branchs_only(cloud_app, client, branches) -> None:
    callers = Callers(cloud_app)
    callers.as_manager(branches["north"])
    assert listed(client) == [("gw-n1", KIND)]
    assert listed(client, branch=branches["south"]) == []
    callers.as_operations()
    assert listed(client) == [("gw-n1", KIND), ("gw-s1", KIND)]


def test_the_cli_filters_on_the_kind(cloud_app, served, branches) -> None:
    add_operator(cloud_app, "maria", "branch_manager", ("north",))
    token = make_token(sign_in(cloud_app, "maria"))
    env = {"BANKIOT_URL": served, "BANKIOT_TOKEN": token}
    result = CliRunner().invoke(fleet, ["alerts", "--kind", KIND, "--json"], env=env)
    assert result.exit_code == 0, result.output
    [alert] = json.loads(result.output)
    assert (alert["device_uid"], alert["detail"]["reasons"]) == ("gw-n1", {"forged": 20})


def test_metrics_count_the_kind_and_the_unknown_sender(cloud_app, client, branches) -> None:
    # The gauge sums the window at the time of the scrape: plant in the clock's hour.
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    plant(cloud_app.extensions["bankiot.db"], UNKNOWN, hour, forged=7)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bankiot_open_alerts{kind="envelopes_rejected"} 2.0' in text
    assert 'bankiot_rejections_unknown_sender{reason="forged"} 7.0' in text
    assert 'bankiot_rejections_unknown_sender{reason="malformed"} 0.0' in text
