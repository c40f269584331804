"""Rejected envelopes are counted in the database per (gateway, reason, hour): through the
real pipeline, added up across ingest instances, bounded under a storm of forged kids,
never at the cost of an answer, purged by their retention class, and listed for cloud
operations (``GET /api/ingest/rejections``). SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator

import pytest
from apiflask import APIFlask
from sqlalchemy import select, text
from sqlalchemy.engine import URL

from bankiot_core import cose
from cloud.db import Database
from cloud.fleet.models import Branch, Device
from cloud.ingest import rejections, set_key_source
from cloud.ingest.models import utc
from cloud.ingest.pipeline import RESOURCE, Envelope, Ingest
from cloud.ingest.rejections import UNKNOWN, RejectionCount
from cloud.ingest.service import purge
from tests.cloud.fleet_actions import add_branches, add_devices
from tests.cloud.identity_actions import Callers
from tests.cloud.ingest_support import SimGateway, migrated, receipt_count, secret_for, url_text
from tests.cloud.people_actions import body

GATEWAY = "gw-rej"
T0 = dt.datetime(2030, 3, 1, 10, 5, tzinfo=dt.UTC)


@pytest.fixture
def database(database_url: URL) -> Iterator[Database]:
    with migrated(database_url) as db:
        with db.sessions() as session:
            branch = Branch(code="north", name="North")
            session.add_all(
                [
                    Device(uid=GATEWAY, kind="gateway", branch=branch, status="active"),
                    Device(uid="AA:BB:CC:DD:EE:FF", kind="wearable", branch=branch),
                ]
            )
            session.commit()
        yield db


def ingest_at(database: Database, moment: list[dt.datetime], gw: SimGateway) -> Ingest:
    """An ``Ingest`` that knows ``gw``'s key, its clock reading ``moment[0]``."""
    return Ingest(database, gw.keys(), clock=lambda: moment[0])


def counts(database: Database) -> dict[tuple[str, str, dt.datetime], int]:
    """Every stored bucket: (gateway, reason, hour) -> count."""
    with database.sessions() as session:
        rows = session.scalars(select(RejectionCount)).all()
    return {(r.gateway, r.reason, utc(r.hour)): r.count for r in rows}


def forged(seq: int, gateway: str = GATEWAY, aad: str = RESOURCE) -> bytes:
    """An envelope naming ``gateway`` in its kid, sealed with a key that is not its own."""
    return cose.seal(b"k" * 32, gateway, 1, seq, b"\x84\x01\x00\x00\x80", aad)


def test_rejections_through_the_pipeline_land_with_their_sender_and_reason(
    database: Database,
) -> None:
    gw = SimGateway(GATEWAY)
    now = [T0]
    ingest = ingest_at(database, now, gw)
    other = SimGateway("gw-other")  # has a key, but the inventory does not hold it
    other.keys(ingest.key_source)  # type: ignore[arg-type]
    topic = gw.aad
    cases = [
        # forged over CoAP: the kid names an inventory gateway
        (forged(1), RESOURCE, "coap", None, "forged"),
        (forged(2), RESOURCE, "http", None, "forged"),
        # sealed by gw-other, published on gw-rej's topic: the topic's gateway sent it
        (cose.seal_with(other.ring, 1, b"x", topic), topic, "mqtt", GATEWAY, "wrong_gateway"),
        # garbage on gw-rej's topic, and over HTTP where nothing says who sent it
        (b"\xd0\x83garbage", topic, "mqtt", GATEWAY, "malformed"),
        (b"\xd0\x83garbage", RESOURCE, "http", None, "malformed"),
        # a kid naming a gateway the inventory does not hold, or a wearable
        (forged(3, "gw-nowhere"), RESOURCE, "coap", None, "unknown_key"),
        (forged(4, "AA:BB:CC:DD:EE:FF"), RESOURCE, "coap", None, "unknown_key"),
        # authentic, but gw-other is no gateway of the inventory
        (cose.seal_with(other.ring, 2, b"x", RESOURCE), RESOURCE, "coap", None, "undecodable"),
    ]
    for envelope, resource, transport, claimed, reason in cases:
        result = ingest.handle(envelope, resource, transport, claimed)
        assert (result.status, result.reason) == ("rejected", reason)
    gw.hear_many(2)
    gw.flush()
    [(_seq, good)] = gw.outbox()
    assert ingest.handle(good, topic, "mqtt", GATEWAY).status == "accepted"  # not counted
    hour = T0.replace(minute=0)
    assert counts(database) == {
        (GATEWAY, "forged", hour): 2,
        (GATEWAY, "wrong_gateway", hour): 1,
        (GATEWAY, "malformed", hour): 1,
        (UNKNOWN, "malformed", hour): 1,
        (UNKNOWN, "unknown_key", hour): 2,
        (UNKNOWN, "undecodable", hour): 1,
    }

    ingest.key_source.revoke(GATEWAY)  # type: ignore[attr-defined]
    assert ingest.handle(good, topic, "mqtt", GATEWAY).reason == "revoked"
    assert counts(database)[(GATEWAY, "revoked", hour)] == 1
    assert receipt_count(database) == 1


def test_a_storm_of_forged_kids_fills_one_bucket(database: Database) -> None:
    gw = SimGateway(GATEWAY)
    ingest = ingest_at(database, [T0], gw)
    storm = [forged(i, "attacker-%d" % i) for i in range(40)]
    results = ingest.handle_many([Envelope(e, RESOURCE, "coap") for e in storm])
    assert {r.reason for r in results} == {"unknown_key"}
    assert counts(database) == {(UNKNOWN, "unknown_key", T0.replace(minute=0)): 40}


def test_two_ingest_instances_add_up_and_hours_are_buckets(database: Database) -> None:
    gw = SimGateway(GATEWAY)
    first, second = [T0 + dt.timedelta(minutes=30)], [T0]
    a, b = ingest_at(database, first, gw), ingest_at(database, second, gw)
    for seq in range(3):
        assert a.handle(forged(seq), RESOURCE, "coap").reason == "forged"
        assert b.handle(forged(seq), RESOURCE, "http").reason == "forged"
    first[0] = T0 + dt.timedelta(hours=1)  # the next hour: a bucket of its own
    a.handle(forged(9), RESOURCE, "coap")
    hour = T0.replace(minute=0)
    assert counts(database) == {
        (GATEWAY, "forged", hour): 6,
        (GATEWAY, "forged", hour + dt.timedelta(hours=1)): 1,
    }
    with database.sessions() as session:
        row = session.get(RejectionCount, (GATEWAY, "forged", hour))
        assert row is not None
        # b's clock is behind a's: first and last seen span both
        assert (utc(row.first_seen), utc(row.last_seen)) == (T0, T0 + dt.timedelta(minutes=30))


def test_counting_that_fails_costs_no_answer(
    database: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = SimGateway(GATEWAY)
    ingest = ingest_at(database, [T0], gw)

    def broken(*_args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rejections, "_upsert", broken)
    with caplog.at_level(logging.WARNING, logger="cloud.ingest.pipeline"):
        result = ingest.handle(forged(1), RESOURCE, "coap")
    assert (result.status, result.reason) == ("rejected", "forged")
    assert "1 rejection(s) not counted in the database: disk on fire" in caplog.text
    assert ingest.stats.batches("rejected", "forged") == 1  # still counted in memory
    monkeypatch.undo()

    with database.engine.begin() as connection:  # a real database error this time
        connection.execute(text("DROP TABLE ingest_rejections"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cloud.ingest.pipeline"):
        assert ingest.handle(b"\xd0\x83garbage", RESOURCE, "http").reason == "malformed"
    assert "not counted in the database" in caplog.text
    gw.hear_many(2)
    gw.flush()
    [(_seq, good)] = gw.outbox()
    assert ingest.handle(good, gw.aad, "mqtt", GATEWAY).status == "accepted"


def test_count_rejection_counts_what_a_transport_refused_itself(database: Database) -> None:
    ingest = ingest_at(database, [T0], SimGateway(GATEWAY))
    ingest.count_rejection("internal_error", "mqtt", GATEWAY)
    ingest.count_rejection("malformed", "mqtt")
    hour = T0.replace(minute=0)
    assert counts(database) == {
        (GATEWAY, "internal_error", hour): 1,
        (UNKNOWN, "malformed", hour): 1,
    }
    assert ingest.stats.batches("rejected") == 2


def test_the_purge_drops_buckets_older_than_their_class(
    database: Database, database_url: URL
) -> None:
    moment = [T0 - dt.timedelta(days=100)]
    ingest = ingest_at(database, moment, SimGateway(GATEWAY))
    ingest.handle(forged(1), RESOURCE, "coap")  # 100 days before T0
    moment[0] = T0 - dt.timedelta(days=40)
    ingest.handle(forged(2), RESOURCE, "coap")
    moment[0] = T0 - dt.timedelta(days=1)
    ingest.handle(forged(3), RESOURCE, "coap")
    config = {"DATABASE_URL": url_text(database_url)}
    report = json.loads(purge(config, (), True, now=T0))  # 90 days by default
    assert report["rejections"] == {"deleted": 1, "kept_for": "90 days, 0:00:00"}
    assert len(counts(database)) == 2
    report = json.loads(purge(config, ("rejections=30d",), True, now=T0))
    assert report["rejections"]["deleted"] == 1
    assert [hour for _g, _r, hour in counts(database)] == [
        (T0 - dt.timedelta(days=1)).replace(minute=0)
    ]


def test_operations_list_rejections_per_gateway_and_reason(cloud_app: APIFlask) -> None:
    branches = add_branches(cloud_app, "north")
    add_devices(cloud_app, {"uid": GATEWAY, "branch_id": branches["north"], "status": "active"})
    gw = SimGateway(GATEWAY, resource=RESOURCE)
    set_key_source(cloud_app, gw.keys())
    client = cloud_app.test_client()
    callers = Callers(cloud_app)
    post = {"content_type": "application/cose"}
    for seq in range(3):  # through HTTP ingest, the whole way
        response = client.post("/ingest/v1/batches", data=forged(seq), **post)
        assert response.status_code == 401
    assert client.post("/ingest/v1/batches", data=b"junk", **post).status_code == 401
    wrong = cose.seal(secret_for(GATEWAY, 7), GATEWAY, 7, 1, b"x", RESOURCE)
    assert client.post("/ingest/v1/batches", data=wrong, **post).status_code == 401

    assert client.get("/api/ingest/rejections").status_code == 401
    callers.as_manager(branches["north"])
    assert client.get("/api/ingest/rejections").status_code == 403
    callers.as_operations()

    def listing(**params: object) -> dict:
        response = client.get("/api/ingest/rejections", query_string=params)
        assert response.status_code == 200, response.json
        return body(response)

    everything = listing()
    assert everything["truncated"] is False
    got = [(r["gateway"], r["reason"], r["count"], r["hours"]) for r in everything["rejections"]]
    assert got == [
        (GATEWAY, "forged", 3, 1),
        (GATEWAY, "unknown_key", 1, 1),
        (UNKNOWN, "malformed", 1, 1),
    ]
    first = everything["rejections"][0]
    assert first["first_seen"] <= first["last_seen"]
    assert [r["reason"] for r in listing(gateway=UNKNOWN)["rejections"]] == ["malformed"]
    assert [r["gateway"] for r in listing(reason="forged")["rejections"]] == [GATEWAY]
    limited = listing(limit=1)
    assert len(limited["rejections"]) == 1 and limited["truncated"] is True
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat()
    assert listing(since=later)["rejections"] == []
    bad = client.get("/api/ingest/rejections", query_string={"reason": "boredom"})
    assert bad.status_code == 422
