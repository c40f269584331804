"""Beacons of branches and partner merchants: the API, who may do what, what the branch's
gateways are configured to listen for, and the lookup the analytics use. On SQLite and
PostgreSQL (``cloud_app`` runs on both).

The beacons' identifiers in the lookup tests come from the portable core's own decoders fed
the advertisement bytes the iBeacon and Eddystone specifications lay out.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select

from bankiot_core.beacons import decode_eddystone, decode_ibeacon
from cloud.audit import AuditEvent
from cloud.db import database
from cloud.fleet import beacons
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.identity_actions import Callers, body

UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
NAMESPACE = "edd1ebeac04e5defa017"
INSTANCE = "0badc0ffee01"
ADDRESS = "C3:00:00:0A:1B:2C"


@pytest.fixture
def fleet(cloud_app: APIFlask) -> dict[str, Any]:
    """North: a gateway, a kiosk (both in service), a revoked gateway; south: a gateway."""
    branches = add_branches(cloud_app, "north", "south")
    gateway, kiosk, revoked, south = add_devices(
        cloud_app,
        {"uid": "gw-n1", "branch_id": branches["north"], "status": "active"},
        {"uid": "kiosk-n", "branch_id": branches["north"], "kind": "kiosk", "status": "active"},
        {"uid": "gw-old", "branch_id": branches["north"], "status": "revoked"},
        {"uid": "gw-s1", "branch_id": branches["south"], "status": "active"},
    )
    return {**branches, "gateway": gateway, "kiosk": kiosk, "revoked": revoked, "s1": south}


@pytest.fixture
def callers(cloud_app: APIFlask) -> Callers:
    callers = Callers(cloud_app)
    callers.as_operations()
    return callers


def ibeacon(branch: int, major: int = 7, minor: int = 1, **more: Any) -> dict[str, Any]:
    return {
        "kind": "ibeacon",
        "branch": branch,
        "uuid": UUID,
        "major": major,
        "minor": minor,
        **more,
    }


def post(client: FlaskClient, json_body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = client.post("/api/fleet/beacons", json=json_body)
    assert response.status_code == status, response.json
    return body(response)


def desired(client: FlaskClient, device: int) -> dict[str, Any]:
    return body(client.get("/api/fleet/devices/%d/config" % device))


def test_register_list_and_remove_beacons_of_a_branch_and_a_merchant(
    client: FlaskClient, callers: Callers, fleet: dict[str, Any]
) -> None:
    merchant = client.post("/api/fleet/merchants", json={"name": "Café Nord", "category": "5814"})
    assert merchant.status_code == 201, merchant.json
    shop = body(merchant)["id"]
    north = post(client, ibeacon(fleet["north"], address=ADDRESS.lower(), label="entrance"))
    cafe = post(
        client,
        {
            "kind": "eddystone",
            "merchant": shop,
            "namespace": NAMESPACE.upper(),
            "instance": INSTANCE,
        },
    )

    assert north["identifier"] == "ibeacon:%s:7:1" % UUID
    assert north["address"] == ADDRESS
    assert north["place"] == {"kind": "branch", "id": fleet["north"], "name": "Branch north"}
    assert cafe["identifier"] == "eddystone:%s:%s" % (NAMESPACE, INSTANCE)
    assert cafe["place"] == {"kind": "merchant", "id": shop, "name": "Café Nord"}
    listed = body(client.get("/api/fleet/beacons"))["beacons"]
    assert [b["id"] for b in listed] == [north["id"], cafe["id"]]
    only = body(client.get("/api/fleet/beacons", query_string={"merchant": shop}))["beacons"]
    assert [b["id"] for b in only] == [cafe["id"]]
    assert body(client.get("/api/fleet/merchants"))["merchants"][0]["category"] == "5814"

    assert client.delete("/api/fleet/beacons/%d" % north["id"]).status_code == 204
    assert client.delete("/api/fleet/beacons/%d" % north["id"]).status_code == 404
    assert [b["id"] for b in body(client.get("/api/fleet/beacons"))["beacons"]] == [cafe["id"]]


def test_duplicates_and_bad_identifiers_are_refused(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, fleet: dict[str, Any]
) -> None:
    first = post(client, ibeacon(fleet["north"], address=ADDRESS))
    same_identifier = post(client, ibeacon(fleet["south"], uuid=UUID.upper()), status=409)
    assert "beacon %d" % first["id"] in same_identifier["message"]
    same_address = post(client, ibeacon(fleet["south"], minor=2, address=ADDRESS), status=409)
    assert "address %s" % ADDRESS in same_address["message"]
    merchant = {"name": "Shop", "category": "5411"}
    assert client.post("/api/fleet/merchants", json=merchant).status_code == 201
    assert client.post("/api/fleet/merchants", json=merchant).status_code == 409
    refused = [
        ibeacon(fleet["north"], uuid="not-a-uuid-at-all-not-a-uuid-at-all"),
        ibeacon(fleet["north"], minor=70000),
        {**ibeacon(fleet["north"], minor=3), "merchant": 1},
        {"kind": "ibeacon", "branch": fleet["north"], "uuid": UUID, "major": 1},
        {"kind": "eddystone", "branch": fleet["north"], "namespace": "00", "instance": INSTANCE},
        ibeacon(fleet["north"], minor=4, address="not an address"),
    ]
    for json_body in refused:
        assert client.post("/api/fleet/beacons", json=json_body).status_code == 422, json_body
    bad_category = client.post("/api/fleet/merchants", json={"name": "X", "category": "54"})
    assert bad_category.status_code == 422
    assert post(client, ibeacon(999, minor=5), status=404)["message"] == "no branch 999"
    assert len(body(client.get("/api/fleet/beacons"))["beacons"]) == 1
    with cloud_app.app_context(), database().sessions() as db:
        actions = db.scalars(select(AuditEvent.action).where(AuditEvent.action.like("beacon.%")))
        assert list(actions) == ["beacon.add"]


def test_branch_managers_act_on_their_branch_only(
    client: FlaskClient, callers: Callers, fleet: dict[str, Any]
) -> None:
    south = post(client, ibeacon(fleet["south"]))
    shop = body(client.post("/api/fleet/merchants", json={"name": "Shop", "category": "5411"}))
    callers.as_manager(fleet["north"])

    mine = post(client, ibeacon(fleet["north"], minor=2))
    assert post(client, ibeacon(fleet["south"], minor=3), status=404)["message"].startswith("no ")
    at_shop = {"kind": "ibeacon", "merchant": shop["id"], "uuid": UUID, "major": 1, "minor": 4}
    assert post(client, at_shop, status=403)["message"].startswith("only cloud operations")
    assert [b["id"] for b in body(client.get("/api/fleet/beacons"))["beacons"]] == [mine["id"]]
    listing = client.get("/api/fleet/beacons", query_string={"branch": fleet["south"]})
    assert listing.status_code == 404
    assert client.delete("/api/fleet/beacons/%d" % south["id"]).status_code == 404
    merchant = {"name": "S", "category": "5411"}
    assert client.post("/api/fleet/merchants", json=merchant).status_code == 403
    callers.as_technician(fleet["north"])
    assert client.get("/api/fleet/beacons").status_code == 403
    callers.nobody()
    assert client.get("/api/fleet/beacons").status_code == 401


def test_a_branchs_beacons_join_its_gateways_configuration(
    client: FlaskClient, callers: Callers, fleet: dict[str, Any]
) -> None:
    ops = client.put(
        "/api/fleet/config",
        json={"branch": fleet["north"], "settings": {"paired": ["AA:00:00:00:00:01"]}},
    )
    assert ops.status_code == 200, ops.json
    post(client, ibeacon(fleet["north"], minor=1))  # no address: the edge cannot allow it
    assert desired(client, fleet["gateway"])["revision"] == 1

    beacon = post(client, ibeacon(fleet["north"], minor=2, address=ADDRESS))

    gateway, kiosk = desired(client, fleet["gateway"]), desired(client, fleet["kiosk"])
    assert gateway["settings"]["paired"] == ["AA:00:00:00:00:01", ADDRESS]
    assert (gateway["revision"], kiosk["revision"]) == (2, 2)
    assert kiosk["settings"] == gateway["settings"]
    assert desired(client, fleet["revoked"])["revision"] is None
    assert desired(client, fleet["s1"])["revision"] is None
    # An operator's new configuration keeps the branch's beacons paired.
    again = client.put(
        "/api/fleet/config", json={"branch": fleet["north"], "settings": {"presence": False}}
    )
    assert again.status_code == 200, again.json
    assert desired(client, fleet["kiosk"])["settings"] == {"presence": False, "paired": [ADDRESS]}

    assert client.delete("/api/fleet/beacons/%d" % beacon["id"]).status_code == 204

    after = desired(client, fleet["kiosk"])
    assert after["settings"] == {"presence": False, "paired": []}
    assert after["revision"] == 4


def test_join_addresses_compares_addresses_not_text() -> None:
    settings = {"paired": ["aa-00-00-00-00-01", "C3:00:00:0A:1B:2C"], "presence": True}
    assert beacons.join_addresses(settings, ["C3:00:00:0A:1B:2C", "C3:00:00:0A:1B:2D"]) == {
        "paired": ["aa-00-00-00-00-01", "C3:00:00:0A:1B:2C", "C3:00:00:0A:1B:2D"],
        "presence": True,
    }
    assert beacons.join_addresses(settings, [], dropped=["AA:00:00:00:00:01"]) == {
        "paired": ["C3:00:00:0A:1B:2C"],
        "presence": True,
    }
    assert beacons.join_addresses({}, []) == {}


def ibeacon_frame(uuid: str, major: int, minor: int) -> bytes:
    """Apple manufacturer data after the company id, as the iBeacon specification lays it
    out: type 0x02, length 0x15, UUID, major, minor (big-endian), measured power."""
    return (
        b"\x02\x15" + bytes.fromhex(uuid.replace("-", "")) + struct.pack(">HHb", major, minor, -59)
    )


def eddystone_uid_frame(namespace: str, instance: str) -> bytes:
    """Eddystone-UID service data: frame type 0x00, TX power, namespace, instance, RFU."""
    return b"\x00\xee" + bytes.fromhex(namespace) + bytes.fromhex(instance) + b"\x00\x00"


def readings_of(frame: Any) -> dict[str, Any]:
    return {reading.metric: reading.value for reading in frame.readings}


def test_what_a_beacon_heard_means(
    cloud_app: APIFlask, client: FlaskClient, callers: Callers, fleet: dict[str, Any]
) -> None:
    shop = body(client.post("/api/fleet/merchants", json={"name": "Café Nord", "category": "5814"}))
    north = post(client, ibeacon(fleet["north"], major=300, minor=65535, address=ADDRESS))
    cafe = post(
        client,
        {"kind": "eddystone", "merchant": shop["id"], "namespace": NAMESPACE, "instance": INSTANCE},
    )
    heard_north = readings_of(decode_ibeacon(ibeacon_frame(UUID, 300, 65535)))
    heard_cafe = readings_of(decode_eddystone(eddystone_uid_frame(NAMESPACE, INSTANCE)))
    stranger = readings_of(decode_ibeacon(ibeacon_frame(UUID, 300, 1)))

    with cloud_app.app_context(), database().sessions() as db:
        at_branch = beacons.place_of(db, heard_north)
        at_shop = beacons.place_of(db, heard_cafe)
        by_address = beacons.place_of(db, address=ADDRESS.lower())
        unknown = beacons.place_of(db, stranger)
        many = beacons.find_places(
            db,
            identifiers=[beacons.identifier_of(heard_cafe) or "", "ibeacon:nothing"],
            addresses=[ADDRESS, "11:22:33:44:55:66", "junk"],
        )

    assert at_branch is not None and at_shop is not None
    assert (at_branch.kind, at_branch.id, at_branch.code, at_branch.beacon_id) == (
        "branch",
        fleet["north"],
        "north",
        north["id"],
    )
    assert (at_shop.kind, at_shop.name, at_shop.category, at_shop.beacon_id) == (
        "merchant",
        "Café Nord",
        "5814",
        cafe["id"],
    )
    assert by_address == at_branch
    assert unknown is None
    assert set(many) == {cafe["identifier"], ADDRESS}
    assert beacons.identifier_of({"uuid": UUID, "major": 1}) is None
    assert beacons.identifier_of({"temperature": 21.5}) is None
