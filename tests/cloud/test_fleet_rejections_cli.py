"""``bankiot fleet rejections`` over real HTTP with a token: the envelopes ingest refused, per
gateway and reason (``GET /api/ingest/rejections``), as a table or JSON, filtered; cloud
operations only. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

from apiflask import APIFlask
from click.testing import CliRunner

from cloud.fleet.cli import fleet
from cloud.ingest import rejections
from tests.cloud.customer_actions import database_of
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.people_actions import add_operator, make_token, sign_in


def run(url: str, token: str, *args: str) -> tuple[int, str]:
    env = {"BANKIOT_URL": url, "BANKIOT_TOKEN": token}
    result = CliRunner().invoke(fleet, ["rejections", *args], env=env)
    return result.exit_code, result.output


def test_operations_list_rejections_as_a_table_json_and_filtered(
    cloud_app: APIFlask, served: str
) -> None:
    north = add_branches(cloud_app, "north")["north"]
    add_devices(cloud_app, {"uid": "gw-n1", "branch_id": north, "status": "active"})
    now = dt.datetime.now(dt.UTC)
    refused = [("gw-n1", "forged")] * 3 + [("gw-n1", "unknown_key"), ("gw-x", "malformed")]
    rejections.record(database_of(cloud_app), refused, now)
    add_operator(cloud_app, "ops", "operations")
    add_operator(cloud_app, "maria", "branch_manager", ("north",))
    ops = make_token(sign_in(cloud_app, "ops"))

    code, output = run(served, ops)
    assert code == 0, output
    header, *rows = output.splitlines()
    assert header.split()[:4] == ["gateway", "reason", "count", "hours"]
    assert [row.split()[:4] for row in rows] == [
        ["gw-n1", "forged", "3", "1"],
        ["gw-n1", "unknown_key", "1", "1"],
        ["unknown", "malformed", "1", "1"],
    ]

    code, output = run(served, ops, "--json", "--reason", "forged")
    assert code == 0, output
    answer = json.loads(output)
    assert [(r["gateway"], r["count"]) for r in answer["rejections"]] == [("gw-n1", 3)]
    assert answer["truncated"] is False

    code, output = run(served, ops, "--gateway", "unknown", "--limit", "1")
    assert code == 0 and output.splitlines()[1].split()[:2] == ["unknown", "malformed"]
    code, output = run(served, ops, "--limit", "1")
    assert output.splitlines()[-1].startswith("(more: only the 1 largest")
    tomorrow = (now + dt.timedelta(days=1)).strftime("%Y-%m-%d")
    code, output = run(served, ops, "--since", tomorrow)
    assert (code, output) == (0, "no rejections since %sT00:00:00+00:00\n" % tomorrow)


def test_a_branch_manager_is_refused_in_one_line(cloud_app: APIFlask, served: str) -> None:
    add_branches(cloud_app, "north")
    add_operator(cloud_app, "maria", "branch_manager", ("north",))
    code, output = run(served, make_token(sign_in(cloud_app, "maria")))
    assert code == 1
    assert output.startswith("Error: GET /api/ingest/rejections: HTTP 403")
    assert len(output.splitlines()) == 1
    code, output = run(served, "x", "--reason", "boredom")
    assert code == 2 and "boredom" in output
