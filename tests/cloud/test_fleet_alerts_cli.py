"""``bankiot fleet alerts`` and ``bankiot fleet alerts ack ID`` over real HTTP with a token."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from apiflask import APIFlask
from click.testing import CliRunner

from cloud.db import database
from cloud.fleet.alert_rules import Thresholds
from cloud.fleet.alerts import check_alerts
from cloud.fleet.cli import fleet
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.people_actions import add_operator, make_token, sign_in

REGISTERED = dt.datetime(2030, 5, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def maria(cloud_app: APIFlask) -> str:
    """Offline alerts for gw-n1 and gw-n2 (north) and gw-s1 (south); maria manages north.
    Her API token."""
    ids = add_branches(cloud_app, "north", "south")
    common = {"status": "active", "created_at": REGISTERED}
    add_devices(
        cloud_app,
        {"uid": "gw-n1", "branch_id": ids["north"], **common},
        {"uid": "gw-n2", "branch_id": ids["north"], **common},
        {"uid": "gw-s1", "branch_id": ids["south"], **common},
    )
    with cloud_app.app_context(), database().sessions() as db:
        check_alerts(db, Thresholds(), REGISTERED + dt.timedelta(hours=1))
        db.commit()
    add_operator(cloud_app, "maria", "branch_manager", ("north",))
    return make_token(sign_in(cloud_app, "maria"))


def run(url: str, token: str | None, *args: str) -> tuple[int, str]:
    env = {"BANKIOT_URL": url, "BANKIOT_TOKEN": token}
    result = CliRunner().invoke(fleet, ["alerts", *args], env=env)
    return result.exit_code, result.output


def test_alerts_as_json(served: str, maria: str) -> None:
    code, output = run(served, maria, "--json")
    assert code == 0, output
    alerts = json.loads(output)
    assert [(a["device_uid"], a["kind"], a["state"]) for a in alerts] == [
        ("gw-n1", "offline", "open"),
        ("gw-n2", "offline", "open"),
    ]


def test_alerts_table_ack_and_filters(served: str, maria: str) -> None:
    code, output = run(served, maria)
    assert code == 0, output
    header, *rows = output.splitlines()
    assert header.split()[:4] == ["id", "state", "severity", "kind"]
    assert [row.split()[1:6] for row in rows] == [
        ["open", "critical", "offline", "gw-n1", "north"],
        ["open", "critical", "offline", "gw-n2", "north"],
    ]
    first = rows[0].split()[0]
    code, output = run(served, maria, "ack", first)
    assert code == 0, output
    assert output.startswith("alert %s (offline on gw-n1) acknowledged by operator:maria" % first)
    code, output = run(served, maria)
    assert output.splitlines()[1].split()[-1] == "operator:maria"
    assert run(served, maria, "--state", "resolved") == (0, "no resolved alerts\n")
    assert run(served, maria, "--kind", "battery_low", "--state", "all") == (0, "no alerts\n")


def test_errors_are_one_line(served: str, maria: str) -> None:
    code, output = run(served, maria, "ack", "999999")
    assert code == 1 and output == "Error: POST /api/fleet/alerts/999999/ack: HTTP 404 Not Found\n"
    code, output = run(served, None)
    assert code == 1 and output.startswith("Error: no API token")
    code, output = run(served, maria, "--state", "closed")
    assert code == 2 and "Invalid value for '--state'" in output
