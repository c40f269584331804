"""Claim tokens: who may make them for which branch, listing, cancelling, and redemption
that stays single-use under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from cloud.db import Database, database
from cloud.fleet.models import Device
from cloud.identity import claims, enrollment
from cloud.identity.ca import load_ca
from cloud.identity.errors import ClaimUsed, IdentityError
from cloud.identity.keys import load_wrapper
from tests.cloud.identity_actions import (
    Cloud,
    body,
    create_claim,
    device_id,
    enroll,
    enroll_new,
    make_csr,
    running_cloud,
)


@pytest.fixture
def cloud(database_url: URL, tmp_path: Path) -> Iterator[Cloud]:
    with running_cloud(database_url, tmp_path) as made:
        yield made


def post_claim(cloud: Cloud, branch: str, kind: str = "gateway"):
    return cloud.client.post(
        "/api/identity/claims", json={"branch_id": cloud.branches[branch], "kind": kind}
    )


def test_claims_are_scoped_to_the_callers_branches(cloud: Cloud) -> None:
    north, south = cloud.branches["north"], cloud.branches["south"]
    _, south_device = enroll_new(cloud, "gw-south", "south")
    south_id = device_id(south_device)

    cloud.callers.nobody()
    assert post_claim(cloud, "north").status_code == 401
    assert cloud.client.get("/api/identity/claims").status_code == 401

    cloud.callers.as_manager(north)
    assert post_claim(cloud, "north").status_code == 201
    # another branch's objects do not exist for this caller (404, not 403)
    assert post_claim(cloud, "south").status_code == 404
    for method, url in (
        ("post", "/api/identity/devices/%d/claims" % south_id),
        ("post", "/api/identity/devices/%d/revoke" % south_id),
        ("get", "/api/identity/devices/%d/certificates" % south_id),
    ):
        response = getattr(cloud.client, method)(url, **({"json": {}} if method == "post" else {}))
        assert response.status_code == 404, url
    listed = body(cloud.client.get("/api/identity/claims"))
    assert {c["branch_id"] for c in listed} == {north}

    cloud.callers.as_technician(south)
    assert post_claim(cloud, "south").status_code == 201
    assert post_claim(cloud, "north").status_code == 404
    revoke = "/api/identity/devices/%d/revoke" % south_id
    assert cloud.client.post(revoke, json={"reason": "because"}).status_code == 422
    assert cloud.client.post(revoke, json={"reason": "cessationOfOperation"}).status_code == 200
    assert cloud.client.post("/api/identity/devices/99999/revoke", json={}).status_code == 404

    cloud.callers.as_operations()
    assert {c["branch_id"] for c in body(cloud.client.get("/api/identity/claims"))} == {
        north,
        south,
    }
    no_branch = cloud.client.post("/api/identity/claims", json={"branch_id": 999, "kind": "kiosk"})
    assert no_branch.status_code == 404


def test_only_enrollable_kinds_get_claims(cloud: Cloud) -> None:
    assert post_claim(cloud, "north", "kiosk").status_code == 201
    assert post_claim(cloud, "north", "beacon").status_code == 422
    with cloud.app.app_context(), database().sessions() as db:
        beacon = Device(uid="aa:bb:cc:dd:ee:ff", kind="beacon", branch_id=cloud.branches["north"])
        db.add(beacon)
        db.commit()
        beacon_id = beacon.id
    response = cloud.client.post("/api/identity/devices/%d/claims" % beacon_id, json={})
    assert response.status_code == 422 and body(response)["message"] == "a beacon does not enroll"


def test_listing_and_cancelling_claims(cloud: Cloud) -> None:
    used = create_claim(cloud)
    enroll(cloud, used, "gw-listed")
    pending = body(post_claim(cloud, "north"))
    statuses = {c["id"]: c["status"] for c in body(cloud.client.get("/api/identity/claims"))}
    assert sorted(statuses.values()) == ["pending", "redeemed"]
    assert all("token" not in c for c in body(cloud.client.get("/api/identity/claims")))

    cloud.callers.as_manager(cloud.branches["south"])
    assert cloud.client.delete("/api/identity/claims/%d" % pending["id"]).status_code == 404
    cloud.callers.as_operations()
    assert cloud.client.delete("/api/identity/claims/%d" % pending["id"]).status_code == 204
    again = cloud.client.delete("/api/identity/claims/%d" % pending["id"])
    assert again.status_code == 422 and body(again)["message"] == (
        "claim %d is cancelled, not pending" % pending["id"]
    )
    refused = cloud.client.post(
        "/api/identity/enroll", json={"token": pending["token"], "csr": make_csr("gw-c")[1]}
    )
    assert refused.status_code == 401
    only = body(cloud.client.get("/api/identity/claims?status=cancelled"))
    assert [c["id"] for c in only] == [pending["id"]]


def _race(url: str, data_dir: Path, token: str, uids: tuple[str, str]) -> list[object]:
    """Two threads, two connections, one token: both enroll at the same moment."""
    db = Database(url)
    ca, wrapper = load_ca(data_dir, {}), load_wrapper(data_dir, {})
    barrier = threading.Barrier(2)
    results: list[object] = []

    def attempt(uid: str) -> None:
        csr = make_csr(uid)[1]
        with db.sessions() as session:
            barrier.wait()
            try:
                done = enrollment.enroll(
                    session, lambda: ca, wrapper, token, csr, dt.datetime.now(dt.UTC)
                )
                session.commit()
                results.append(done.device.uid)
            except IdentityError as exc:
                session.rollback()
                results.append(exc)

    threads = [threading.Thread(target=attempt, args=(uid,)) for uid in uids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.dispose()
    return results


def test_concurrent_redemptions_of_one_token_let_exactly_one_through(
    cloud: Cloud, database_url: URL
) -> None:
    url = database_url.render_as_string(hide_password=False)
    for round_ in range(3):
        token = create_claim(cloud)
        results = _race(url, cloud.data_dir, token, ("gw-r%da" % round_, "gw-r%db" % round_))
        winners = [r for r in results if isinstance(r, str)]
        losers = [r for r in results if isinstance(r, ClaimUsed)]
        assert len(winners) == 1 and len(losers) == 1, results
    with cloud.app.app_context(), database().sessions() as db:
        assert db.query(Device).count() == 3


def test_a_redemption_waiting_on_an_open_one_fails_once_it_commits(
    cloud: Cloud, database_url: URL
) -> None:
    url = database_url.render_as_string(hide_password=False)
    token = create_claim(cloud)
    db = Database(url)
    first = db.sessions()
    claims.redeem(first, token, dt.datetime.now(dt.UTC))  # redeemed, not yet committed
    outcome: list[object] = []

    def second() -> None:
        with db.sessions() as session:
            try:
                outcome.append(claims.redeem(session, token, dt.datetime.now(dt.UTC)))
                session.commit()
            except IdentityError as exc:
                session.rollback()
                outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)  # let the second redemption reach the database and wait on the first
    first.commit()
    first.close()
    thread.join()
    db.dispose()
    assert len(outcome) == 1 and isinstance(outcome[0], ClaimUsed), outcome
