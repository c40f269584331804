"""Replacing and decommissioning devices (``cloud.fleet.replacement`` and its API), on
SQLite and PostgreSQL. Revocation is judged by the CRL the cloud publishes (parsed with
``cryptography``) and by ``check_certificate``, not by the rows the code wrote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy.engine import URL

from cloud.db import database
from cloud.identity.ca import load_ca
from cloud.identity.errors import CertificateRevoked
from cloud.identity.revocation import check_certificate
from tests.cloud.identity_actions import (
    Cloud,
    audit_actions,
    body,
    certificate,
    device_id,
    enroll_new,
    running_cloud,
)

SETTINGS = {"batch_max_delay_ms": 5000, "health_interval_ms": 30000}


@pytest.fixture
def cloud(database_url: URL, tmp_path: Path) -> Iterator[Cloud]:
    with running_cloud(database_url, tmp_path) as made:
        yield made


def configure(cloud: Cloud, device: int, settings: dict[str, Any]) -> int:
    response = cloud.client.put(
        "/api/fleet/devices/%d/config" % device, json={"settings": settings}
    )
    assert response.status_code == 200, response.json
    return body(response)["revision"]


def crl_serials(cloud: Cloud) -> set[int]:
    crl = x509.load_pem_x509_crl(cloud.client.get("/api/identity/crl.pem").data)
    return {entry.serial_number for entry in crl}


def test_replacement_takes_over_configuration_and_revokes_the_old_identity(cloud: Cloud) -> None:
    _key, old = enroll_new(cloud, "gw-old")
    _key, new = enroll_new(cloud, "gw-new")
    configure(cloud, device_id(old), SETTINGS)
    cloud.callers.as_technician(cloud.branches["north"])
    response = cloud.client.post(
        "/api/fleet/devices/%d/replace" % device_id(old), json={"by": device_id(new)}
    )
    assert response.status_code == 200, response.json
    answer = body(response)
    assert answer["old"]["status"] == "revoked" and answer["new"]["status"] == "active"
    assert answer["revoked_serials"] == [old["serial"]]
    config = body(cloud.client.get("/api/fleet/devices/%d/config" % device_id(new)))
    assert config["revision"] == answer["config_revision"] == 1
    assert {k: config["settings"][k] for k in SETTINGS} == SETTINGS
    old_cert, new_cert = certificate(old), certificate(new)
    assert old_cert.serial_number in crl_serials(cloud)
    assert new_cert.serial_number not in crl_serials(cloud)
    with cloud.app.app_context(), database().sessions() as db:
        ca = load_ca(cloud.data_dir)
        with pytest.raises(CertificateRevoked):
            check_certificate(old_cert, db, ca)
        assert check_certificate(new_cert, db, ca).subject == "gw-new"
    replace = [a for a in audit_actions(cloud) if a[1] == "device.replace"]
    assert replace == [
        (
            "operator:tom",
            "device.replace",
            {
                "replaced_by": "gw-new",
                "branch_id": cloud.branches["north"],
                "config_revision": 1,
            },
        )
    ]


def test_replacing_a_device_without_configuration_copies_nothing(cloud: Cloud) -> None:
    _key, old = enroll_new(cloud, "gw-old")
    _key, new = enroll_new(cloud, "gw-new")
    response = cloud.client.post(
        "/api/fleet/devices/%d/replace" % device_id(old), json={"by": device_id(new)}
    )
    assert response.status_code == 200, response.json
    assert body(response)["config_revision"] is None
    config = body(cloud.client.get("/api/fleet/devices/%d/config" % device_id(new)))
    assert config["revision"] is None


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("itself", 422, "cannot replace itself"),
        ("other branch", 422, "claim the new device for the old one's branch"),
        ("revoked new", 409, "only an active device can take over"),
        ("unseen", 404, "no device"),
    ],
)
def test_replacement_refusals_change_nothing(
    cloud: Cloud, case: str, status: int, words: str
) -> None:
    _key, old = enroll_new(cloud, "gw-old")
    _key, new = enroll_new(cloud, "gw-new", "south" if case == "other branch" else "north")
    by = device_id(old) if case == "itself" else device_id(new)
    if case == "revoked new":
        cloud.client.post("/api/identity/devices/%d/revoke" % by, json={})
    if case == "unseen":
        cloud.callers.as_technician(cloud.branches["south"])
    response = cloud.client.post("/api/fleet/devices/%d/replace" % device_id(old), json={"by": by})
    assert response.status_code == status
    assert words in body(response)["message"]
    cloud.callers.as_operations()
    assert body(cloud.client.get("/api/devices/%d" % device_id(old)))["status"] == "active"


def test_decommission_revokes_cancels_commands_and_takes_the_device_out(cloud: Cloud) -> None:
    _key, gateway = enroll_new(cloud, "gw-1")
    ident = device_id(gateway)
    sent = cloud.client.post("/api/fleet/commands", json={"devices": [ident], "name": "rescan"})
    assert sent.status_code == 201, sent.json
    (command,) = body(sent)["commands"]
    cloud.callers.as_manager(cloud.branches["north"])
    response = cloud.client.post(
        "/api/fleet/devices/%d/decommission" % ident, json={"note": "branch closed"}
    )
    assert response.status_code == 200, response.json
    answer = body(response)
    assert answer["device"]["status"] == "decommissioned"
    assert answer["revoked_serials"] == [gateway["serial"]]
    assert answer["revoked_key_versions"] == [gateway["envelope_key"]["version"]]
    assert certificate(gateway).serial_number in crl_serials(cloud)
    one = body(cloud.client.get("/api/fleet/commands/%d" % command["id"]))
    assert one["status"] == "cancelled"
    # It takes no configuration any more, and a second decommission is a conflict.
    refused = cloud.client.put("/api/fleet/devices/%d/config" % ident, json={"settings": SETTINGS})
    assert refused.status_code == 422 and "decommissioned" in body(refused)["message"]
    again = cloud.client.post("/api/fleet/devices/%d/decommission" % ident, json={})
    assert again.status_code == 409
    actions = [a[1] for a in audit_actions(cloud)]
    assert actions[-3:] == ["device.revoke", "command.cancel", "device.decommission"]


def test_decommission_of_another_branchs_device_is_not_found(cloud: Cloud) -> None:
    _key, gateway = enroll_new(cloud, "gw-1", "north")
    cloud.callers.as_technician(cloud.branches["south"])
    response = cloud.client.post("/api/fleet/devices/%d/decommission" % device_id(gateway), json={})
    assert response.status_code == 404
    cloud.callers.nobody()
    response = cloud.client.post("/api/fleet/devices/%d/decommission" % device_id(gateway), json={})
    assert response.status_code == 401
