"""The dashboards through a test client, on SQLite and PostgreSQL: signing in through the
page (CSRF-protected, the API's session), every page scoped to the caller's branches,
personal data only for branch managers, actions through the same functions as the API,
and the ingest rate counted per minute from what is stored."""

from __future__ import annotations

import datetime as dt

from apiflask import APIFlask
from sqlalchemy import func, select

from cloud.dashboards import rates
from cloud.db import database
from cloud.fleet.control_models import Command
from cloud.fleet.rollout_models import Rollout, RolloutMember
from cloud.ingest.models import BatchReceipt
from tests.cloud.dashboard_actions import (
    Branch,
    Staff,
    add_customer,
    ready_release,
    signed_in,
    withdraw,
)
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.people_actions import add_operator, seed
from tests.cloud.release_actions import Releases

ALICE = "C0:FF:EE:00:00:0A"
BOB = "C0:FF:EE:00:00:0B"
CAROL = "C0:FF:EE:00:00:0C"


def commands_of(app: APIFlask) -> list[tuple[int, str, str, str]]:
    with app.app_context(), database().sessions() as db:
        rows = db.execute(
            select(Command.device_id, Command.name, Command.status, Command.created_by)
        ).all()
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_sign_in_through_the_page_gives_the_apis_session(cloud_app: APIFlask) -> None:
    seed(cloud_app)
    staff = Staff(cloud_app)
    answer = staff.client.get("/dashboard/fleet")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/dashboard/signin?next=/dashboard/fleet"

    forged = staff.post("/dashboard/signin", {"name": "ops", "password": "x"}, token="0" * 64)
    assert forged.status_code == 403
    assert "bankiot_session" not in forged.headers.get("Set-Cookie", "")

    wrong = staff.sign_in("ops", password="not the password")
    assert wrong.status_code == 401
    assert "Wrong name or password." in wrong.get_data(as_text=True)

    right = staff.sign_in("ops", next_path="/dashboard/analytics")
    assert right.status_code == 302
    assert right.headers["Location"] == "/dashboard/analytics"
    assert "HttpOnly" in right.headers["Set-Cookie"]
    assert staff.client.get("/api/auth/session").json["name"] == "ops"  # type: ignore[index]
    assert "ops · operations" in staff.page("/dashboard/fleet")

    staff.post("/dashboard/signout", {}, token=staff.token("/dashboard/fleet"))
    assert staff.client.get("/api/auth/session").status_code == 401
    assert staff.client.get("/dashboard/fleet").status_code == 302


def test_sign_in_goes_only_to_a_dashboard_page_afterwards(cloud_app: APIFlask) -> None:
    seed(cloud_app)
    staff = Staff(cloud_app)
    answer = staff.sign_in("maria", next_path="https://evil.example/dashboard/fleet")
    assert answer.headers["Location"] == "/dashboard/fleet"


def test_pages_show_only_the_callers_branches(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    maria = signed_in(cloud_app, "maria")  # branch manager of north
    page = maria.page("/dashboard/fleet")
    assert "gw-n1" in page and "gw-s1" not in page
    assert maria.client.get("/dashboard/devices/%d" % fleet.south_device).status_code == 404
    assert maria.client.get("/dashboard/devices/%d/live" % fleet.south_device).status_code == 404
    assert maria.client.get("/dashboard/branches/%d" % fleet.south).status_code == 404
    assert maria.client.get("/dashboard/branches/%d/live" % fleet.south).status_code == 404
    assert "gw-n1" in maria.page("/dashboard/devices/%d" % fleet.north_device)
    live = maria.client.get("/dashboard/fleet/live").json
    assert live is not None and "gw-n1" in live["regions"]["fleet-table"]
    assert "gw-s1" not in live["regions"]["fleet-table"]

    ops = signed_in(cloud_app, "ops")
    page = ops.page("/dashboard/fleet")
    assert "gw-n1" in page and "gw-s1" in page
    nobody = Staff(cloud_app).client.get("/dashboard/fleet/live")
    assert nobody.status_code == 401 and nobody.json == {"error": "signed out"}


def test_a_command_form_needs_the_session_token_and_the_catalogue_role(
    cloud_app: APIFlask,
) -> None:
    fleet = seed(cloud_app)
    tom = signed_in(cloud_app, "tom")  # technician in south
    path = "/dashboard/devices/%d/command" % fleet.south_device
    refused = tom.post(path, {"name": "reboot"}, token="0" * 64)
    assert refused.status_code == 403
    assert commands_of(cloud_app) == []

    sent = tom.post(path, {"name": "reboot"})
    assert sent.status_code == 302
    assert commands_of(cloud_app) == [(fleet.south_device, "reboot", "pending", "operator:tom")]
    assert "reboot" in tom.page(sent.headers["Location"])

    reset = tom.post(path, {"name": "factory_reset"})
    assert reset.status_code == 403
    assert "a technician may not send &#39;factory_reset&#39;" in reset.get_data(as_text=True)
    other = tom.post("/dashboard/devices/%d/command" % fleet.north_device, {"name": "reboot"})
    assert other.status_code == 404
    assert len(commands_of(cloud_app)) == 1


def test_operations_start_a_rollout_from_the_device_page(rel: Releases) -> None:
    north = add_branches(rel.app, "north")["north"]
    (gateway,) = add_devices(
        rel.app,
        {
            "uid": "gw-n1",
            "branch_id": north,
            "model": "esp32",
            "status": "active",
            "firmware_version": "1.4.0",
        },
    )
    add_operator(rel.app, "ops", "operations")
    add_operator(rel.app, "maria", "branch_manager", ("north",))
    release = ready_release(rel)
    maria = signed_in(rel.app, "maria")
    path = "/dashboard/devices/%d/rollout" % gateway
    assert maria.post(path, {"release_id": str(release)}).status_code == 403

    ops = signed_in(rel.app, "ops")
    assert "1.5.0" in ops.page("/dashboard/devices/%d" % gateway)  # offered in the form
    answer = ops.post(path, {"release_id": str(release)})
    assert answer.status_code == 302
    with rel.app.app_context(), database().sessions() as db:
        rollout = db.scalars(select(Rollout)).one()
        member = db.scalars(select(RolloutMember)).one()
        assert (rollout.target, rollout.created_by) == ({"devices": [gateway]}, "operator:ops")
        assert (member.device_id, member.state) == (gateway, "updating")  # the canary
    assert commands_of(rel.app) == [(gateway, "update", "pending", "rollout:%d" % rollout.id)]
    assert "Rollout %d started" % rollout.id in ops.page(answer.headers["Location"])
    assert "rollout-%d" % rollout.id in ops.page("/dashboard/fleet")
    again = ops.post(path, {"release_id": str(release)})
    assert again.status_code == 409  # one device, one rollout at a time: said on the page
    assert "in another rollout" in again.get_data(as_text=True)


def test_ingest_rate_is_counted_per_minute_in_the_callers_branches(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    now = dt.datetime(2026, 11, 29, 10, 30, 20, tzinfo=dt.UTC)
    receipts = [  # (gateway, minutes before 10:30, readings)
        ("gw-n1", 0, 5),
        ("gw-n1", 0, 3),
        ("gw-n1", 2, 1),
        ("gw-s1", 0, 7),
        ("gw-n1", 61, 9),  # older than the hour shown
    ]
    with cloud_app.app_context(), database().sessions() as db:
        for seq, (gateway, minutes, readings) in enumerate(receipts):
            at = now.replace(second=5) - dt.timedelta(minutes=minutes)
            db.add(
                BatchReceipt(
                    gateway=gateway,
                    key_version=1,
                    seq=seq,
                    received_at=at,
                    transport="mqtt",
                    readings=readings,
                    events=0,
                    envelope_bytes=100,
                )
            )
        db.commit()
        north = rates.ingest_buckets(db, [fleet.north], now)
        everyone = rates.ingest_buckets(db, None, now)
    assert len(north) == 60
    assert north[-1].start == dt.datetime(2026, 11, 29, 10, 30, tzinfo=dt.UTC)
    assert (north[-1].batches, north[-1].readings) == (2, 8)
    assert (north[-3].batches, north[-3].readings) == (1, 1)
    assert sum(b.batches for b in north) == 3
    assert (everyone[-1].batches, everyone[-1].readings) == (3, 15)


def test_branch_page_counts_consenting_customers_and_names_them_to_managers_only(
    cloud_app: APIFlask,
) -> None:
    fleet = seed(cloud_app)
    add_devices(cloud_app, {"uid": "kiosk-n1", "kind": "kiosk", "branch_id": fleet.north})
    alice = add_customer(cloud_app, "alice@example.com", ALICE, fleet.north, ("presence_branch",))
    add_customer(cloud_app, "bob@example.com", BOB, fleet.north, ("activity",))
    add_customer(cloud_app, "carol@example.com", CAROL, fleet.north, ("presence_branch",))
    branch = Branch(cloud_app, "gw-n1", "kiosk-n1")
    for wearable in (ALICE, BOB, CAROL):
        branch.presence("gw-n1", wearable, "enter")
    branch.presence("gw-n1", CAROL, "leave")
    branch.check_in("kiosk-n1", ALICE)
    branch.check_in("kiosk-n1", None)  # a walk-in

    path = "/dashboard/branches/%d" % fleet.north
    maria = signed_in(cloud_app, "maria")
    page = maria.page(path)
    assert 'id="count-present">1<' in page and 'id="count-checkin">2<' in page
    assert "alice@example.com" in page and "bob@" not in page and "carol@" not in page
    assert ALICE in page and "walk-in" in page

    ops = signed_in(cloud_app, "ops")
    page = ops.page(path)
    assert 'id="count-present">1<' in page
    assert "alice@example.com" not in page and ALICE not in page
    assert "a customer" in page and "branch managers only" in page

    withdraw(cloud_app, alice, "presence_branch")
    live = maria.client.get(path + "/live").json
    assert live is not None and 'id="count-present">0<' in live["regions"]["branch-counts"]


def test_customer_page_names_the_customer_to_branch_managers_only(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    add_operator(cloud_app, "sam", "branch_manager", ("south",))
    alice = add_customer(
        cloud_app, "alice@example.com", ALICE, fleet.north, ("presence_branch", "activity")
    )
    path = "/dashboard/customers/%d" % alice
    maria = signed_in(cloud_app, "maria")
    assert "alice@example.com" in maria.page("/dashboard/customers")
    page = maria.page(path)
    assert "alice@example.com" in page and ALICE in page
    # the two purposes alice ticked; partner shops and personalised offers not
    assert page.count(">Given<") == 2 and page.count(">Not given<") == 2

    ops = signed_in(cloud_app, "ops")
    page = ops.page(path)
    assert "Customer #%d" % alice in page
    assert "alice@example.com" not in page and ALICE not in page
    assert signed_in(cloud_app, "tom").client.get(path).status_code == 403
    assert signed_in(cloud_app, "sam").client.get(path).status_code == 404
    assert "alice@" not in signed_in(cloud_app, "sam").page("/dashboard/customers")


def test_every_page_answers_every_role(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    pages = {
        "ops": ["/dashboard/fleet", "/dashboard/analytics", "/dashboard/customers"],
        "maria": ["/dashboard/branches/%d" % fleet.north, "/dashboard/analytics"],
        "tom": ["/dashboard/devices/%d" % fleet.south_device, "/dashboard/analytics"],
    }
    for name, paths in pages.items():
        staff = signed_in(cloud_app, name)
        for path in paths:
            response = staff.client.get(path)
            assert response.status_code == 200, (name, path)
            policy = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "default-src 'none'" in policy
            assert "http" not in response.get_data(as_text=True).split("<main>")[0]  # no CDN
            live = staff.client.get(path.rstrip("/") + "/live")
            assert live.status_code in (200, 404)
    count = select(func.count()).select_from(Command)
    with cloud_app.app_context(), database().sessions() as db:
        assert db.scalar(count) == 0
