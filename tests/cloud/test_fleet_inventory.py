"""GET /api/fleet/devices: scoping, filters, keyset pages, and health joined from ingest."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cloud.fleet_actions import (
    REPORTED,
    add_branches,
    add_devices,
    add_health,
    branch_ids,
    clear_devices,
)
from tests.cloud.identity_actions import Callers
from tests.cloud.people_actions import add_operator, bearer, body, make_token, sign_in

URL = "/api/fleet/devices"


def listing(client: FlaskClient, **params: Any) -> dict:
    response = client.get(URL, query_string=params)
    assert response.status_code == 200, response.json
    return body(response)


def uids(page: dict) -> list[str]:
    return [device["uid"] for device in page["devices"]]


def every_page(client: FlaskClient, **params: Any) -> list[str]:
    """The uids of every page, following ``next``."""
    seen: list[str] = []
    after = None
    while True:
        page = listing(client, **params, **({"after": after} if after is not None else {}))
        seen += uids(page)
        after = page["next"]
        if after is None:
            return seen


@pytest.fixture
def branches(cloud_app: APIFlask) -> dict[str, int]:
    """North: a gateway with health, a kiosk, a retired beacon; south: a gateway."""
    ids = add_branches(cloud_app, "north", "south")
    add_devices(
        cloud_app,
        {"uid": "gw-n1", "branch_id": ids["north"], "name": "Lobby gateway", "model": "rpi4"},
        {"uid": "kiosk-n2", "branch_id": ids["north"], "kind": "kiosk", "status": "active"},
        {"uid": "bcn_n3", "branch_id": ids["north"], "kind": "beacon", "status": "retired"},
        {"uid": "gw-s1", "branch_id": ids["south"], "firmware_version": "1.2.0"},
    )
    return ids


@pytest.fixture
def callers(cloud_app: APIFlask) -> Callers:
    return Callers(cloud_app)


def test_a_branch_manager_sees_only_their_branches(client, callers, branches) -> None:
    callers.as_manager(branches["north"])
    assert sorted(every_page(client)) == ["bcn_n3", "gw-n1", "kiosk-n2"]
    # Asking for another branch finds nothing (not even whether it has devices).
    assert listing(client, branch=branches["south"]) == {"devices": [], "next": None}
    callers.as_technician(branches["south"])
    assert every_page(client) == ["gw-s1"]


def test_operations_see_every_branch(client, callers, branches) -> None:
    callers.as_operations()
    assert sorted(every_page(client)) == ["bcn_n3", "gw-n1", "gw-s1", "kiosk-n2"]
    assert every_page(client, branch=branches["south"]) == ["gw-s1"]


def test_scoping_through_real_sign_in_and_tokens(cloud_app, client, branches) -> None:
    add_operator(cloud_app, "ops", "operations")
    add_operator(cloud_app, "maria", "branch_manager", ("south",))
    maria = sign_in(cloud_app, "maria")
    assert every_page(maria.client) == ["gw-s1"]
    token = make_token(sign_in(cloud_app, "ops"))
    response = client.get(URL, headers=bearer(token))
    assert sorted(uids(body(response))) == ["bcn_n3", "gw-n1", "gw-s1", "kiosk-n2"]


def test_signed_out_callers_are_refused(client, callers, branches) -> None:
    callers.nobody()
    assert client.get(URL).status_code == 401


def test_items_carry_branch_and_device_fields(client, callers, branches) -> None:
    callers.as_operations()
    device = listing(client, q="gw-s1")["devices"][0]
    assert device == {
        "id": device["id"],
        "uid": "gw-s1",
        "kind": "gateway",
        "branch_id": branches["south"],
        "branch_code": "south",
        "name": "",
        "model": "",
        "status": "registered",
        "firmware_version": "1.2.0",
        "last_seen_at": None,
        "health": None,
        "open_alerts": 0,
        "uplink": None,
    }


# (query, uids expected): one table, one database per run (setting up a database is the cost).
FILTER_CASES: list[tuple[dict[str, str], list[str]]] = [
    ({"kind": "kiosk"}, ["kiosk-n2"]),
    ({"kind": "wearable"}, []),
    ({"status": "registered"}, ["gw-n1", "gw-s1"]),
    ({"status": "retired", "kind": "beacon"}, ["bcn_n3"]),
    ({"q": "GW-"}, ["gw-n1", "gw-s1"]),  # case-insensitive
    ({"q": "lobby"}, ["gw-n1"]),  # the name too
    ({"q": "_"}, ["bcn_n3"]),  # LIKE wildcards are taken literally
    ({"q": "%"}, []),
    ({"q": "n", "kind": "gateway"}, ["gw-n1"]),
]


def test_filters(client, callers, branches) -> None:
    callers.as_operations()
    for params, expected in FILTER_CASES:
        assert every_page(client, **params) == expected, params


def test_the_latest_health_is_joined_by_gateway_uid(cloud_app, client, callers, branches) -> None:
    counters = {"depth": 12, "dropped_batches": 3, "dropped_bytes": 4096, "battery": 87}
    add_health(cloud_app, "gw-n1", {**counters, "rssi": -61, "free_heap": None, "sent": 5})
    add_health(cloud_app, "someone-else", {"depth": 99})
    callers.as_operations()
    devices = {device["uid"]: device for device in listing(client)["devices"]}
    assert devices["gw-n1"]["health"] == {
        "reported_at": REPORTED.isoformat(),
        "received_at": (REPORTED + dt.timedelta(seconds=2)).isoformat(),
        "queue_depth": 12,
        "dropped_batches": 3,
        "dropped_bytes": 4096,
        "battery": 87,
        "rssi": -61,
        "free_heap": None,
        "free_disk": None,
    }
    assert devices["gw-s1"]["health"] is None
    assert len(devices) == 4


def test_pages_are_contiguous_and_report_the_next_cursor(client, callers, branches) -> None:
    callers.as_operations()
    first = listing(client, limit=3)
    assert len(first["devices"]) == 3
    assert first["next"] == first["devices"][-1]["id"]
    second = listing(client, limit=3, after=first["next"])
    assert len(second["devices"]) == 1 and second["next"] is None
    assert listing(client, limit=4)["next"] is None  # exactly one full page


def test_bad_queries_are_refused(client, callers, branches) -> None:
    callers.as_operations()
    for params in ({"limit": 0}, {"limit": 501}, {"after": -1}, {"kind": "car"}, {"q": "\x00"}):
        assert client.get(URL, query_string=params).status_code == 422, params


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    homes=st.lists(st.sampled_from(["north", "south", "east"]), max_size=25),
    limit=st.integers(1, 7),
)
def test_pages_list_every_visible_device_exactly_once(
    cloud_app, client, callers, homes: list[str], limit: int
) -> None:
    if "east" not in branch_ids(cloud_app):
        add_branches(cloud_app, "north", "south", "east")
    ids = branch_ids(cloud_app)
    clear_devices(cloud_app)
    add_devices(
        cloud_app,
        *({"uid": "d%d" % n, "branch_id": ids[home]} for n, home in enumerate(homes)),
    )
    callers.as_operations()
    assert sorted(every_page(client, limit=limit)) == sorted("d%d" % n for n in range(len(homes)))
    callers.as_manager(ids["north"], ids["east"])
    expected = ["d%d" % n for n, home in enumerate(homes) if home != "south"]
    assert every_page(client, limit=limit) == expected  # in id order, each once
