"""``GET /api/analytics/customers/<id>`` (SQLite and PostgreSQL): a branch manager sees
their customers' profile and life events with reasons, cloud operations every customer by
number only, a technician nothing, another branch's manager a 404."""

from __future__ import annotations

import datetime as dt

from apiflask import APIFlask

from cloud.bank.service import import_file
from cloud.db import database
from tests.cloud.analytics_samples import month_statement
from tests.cloud.dashboard_actions import add_customer
from tests.cloud.people_actions import add_operator, body, seed, sign_in

ALICE = "C0:FF:EE:00:00:0A"
NOW = dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.UTC)


def import_for(app: APIFlask, customer_id: int, months: range) -> None:
    with app.app_context(), database().sessions() as db:
        for month in months:
            name, content = month_statement(month)
            import_file(db, name, content, customer_id=customer_id, actor="test", now=NOW)


def test_managers_see_reasons_operations_see_numbers_only(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    add_operator(cloud_app, "sam", "branch_manager", ("south",))
    alice = add_customer(cloud_app, "alice@example.com", ALICE, fleet.north, ("presence_branch",))
    path = "/api/analytics/customers/%d" % alice

    maria = sign_in(cloud_app, "maria").client
    before = body(maria.get(path))
    assert (before["profile"], before["life_events"]) == (None, [])

    import_for(cloud_app, alice, range(1, 12))
    seen = body(maria.get(path))
    assert seen["personal"] is True and seen["email"] == "alice@example.com"
    profile = seen["profile"]
    assert (profile["as_of"], profile["income_monthly"], profile["segment"]) == (
        "2026-11-30",
        "3100.00",
        "saver",
    )
    assert profile["summary"]["income"]["salaries"][0]["payee"] == "NEWCO AG"
    (event,) = seen["life_events"]
    assert event["kind"] == "job_change" and "NEWCO AG" in event["reasons"][0]

    ops = body(sign_in(cloud_app, "ops").client.get(path))
    assert ops["personal"] is False and ops["email"] is None
    assert ops["profile"]["segment"] == "saver" and ops["profile"]["summary"] is None
    assert [(e["kind"], e["reasons"]) for e in ops["life_events"]] == [("job_change", None)]
    assert "NEWCO" not in str(ops) and "alice" not in str(ops)

    assert sign_in(cloud_app, "tom").client.get(path).status_code == 403
    assert sign_in(cloud_app, "sam").client.get(path).status_code == 404
    assert maria.get("/api/analytics/customers/%d" % (alice + 1000)).status_code == 404
    assert cloud_app.test_client().get(path).status_code == 401
