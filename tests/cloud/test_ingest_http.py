"""HTTP ingest (``POST /ingest/v1/batches``) through the Flask test client, on SQLite and
PostgreSQL: the response body is the acknowledgement, errors are clear 4xx, never 5xx."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

from apiflask import APIFlask
from flask.testing import FlaskClient

from bankiot_core import cbor, cose
from bankiot_core.keyring import KeyRing
from cloud.fleet.models import Branch, Device
from cloud.identity.keys import issue_envelope_key, load_wrapper
from cloud.ingest import set_key_source
from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.pipeline import MAX_ENVELOPE_BYTES
from tests.cloud.ingest_support import SimGateway, reading_count, receipt_count, stored_readings

URL = "/ingest/v1/batches"
COSE = "application/cose"


def setup(app: APIFlask, *gateways: SimGateway) -> MemoryKeySource:
    keys = MemoryKeySource()
    for gw in gateways:
        gw.keys(keys)
    set_key_source(app, keys)
    return keys


def post(client: FlaskClient, envelope: bytes, content_type: str = COSE):
    return client.post(URL, data=envelope, content_type=content_type)


def message(response) -> str:
    """The one-line message of a JSON error response."""
    body = response.json
    assert isinstance(body, dict), response.data
    return body["message"]


def test_batches_posted_over_http_are_stored_once_and_acknowledged(
    cloud_app: APIFlask, client: FlaskClient
) -> None:
    gw = SimGateway("gw-http", resource="batches")
    setup(cloud_app, gw)
    gw.hear_many(20)
    gw.hear(bytes.fromhex("A4C138000009"), "button", "press", "event")
    gw.flush()
    sent = gw.outbox()
    for _seq, envelope in sent:
        response = post(client, envelope)
        assert response.status_code == 200
        assert response.mimetype == COSE
        gw.receive(response.data)
    assert len(gw.queue) == 0
    again = post(client, sent[0][1], "application/octet-stream")  # a resend: a duplicate
    assert again.status_code == 200 and gw.receive(again.data) == 0
    database = cloud_app.extensions["bankiot.db"]
    assert Counter(stored_readings(database)) == Counter(gw.accepted)
    assert receipt_count(database) == len(sent)
    metrics = client.get("/metrics").text
    assert (
        'bankiot_ingest_batches_total{outcome="accepted",reason="",transport="http"} %d.0'
        % len(sent)
        in metrics
    )
    assert 'bankiot_ingest_batches_total{outcome="duplicate",reason="",transport="http"} 1.0' in (
        metrics
    )


def test_bad_requests_get_clear_client_errors_and_store_nothing(
    cloud_app: APIFlask, client: FlaskClient
) -> None:
    gw = SimGateway("gw-http", resource="batches")
    keys = setup(cloud_app, gw)
    # Bound to another gateway's uplink topic: no binding of this gateway's opens it.
    sealed_for_another = cose.seal_with(gw.ring, 4, b"x", "devices/gw-other/up")
    cases = [
        (b"garbage", COSE, 401, "malformed"),
        (sealed_for_another, COSE, 401, "forged"),
        (cose.seal(b"x" * 32, "gw-http", 1, 9, b"x", "batches"), COSE, 401, "forged"),
        (cose.seal(b"x" * 32, "gw-nobody", 1, 9, b"x", "batches"), COSE, 401, "unknown_key"),
        (cose.seal_with(gw.ring, 3, cbor.dumps([1]), "batches"), COSE, 422, "undecodable"),
        (b"\x00" * (MAX_ENVELOPE_BYTES + 1), COSE, 413, "over the limit"),
        (b"{}", "application/json", 415, "application/cose"),
    ]
    for body, content_type, status, words in cases:
        response = post(client, body, content_type)
        assert response.status_code == status, (words, response.json)
        assert words in message(response) and "\n" not in message(response)
    keys.revoke("gw-http")
    gw.hear_many(2)
    gw.flush()
    [(_s, envelope)] = gw.outbox()
    response = post(client, envelope)
    assert response.status_code == 403 and "revoked" in message(response)
    database = cloud_app.extensions["bankiot.db"]
    assert receipt_count(database) == 0 and reading_count(database) == 0


def test_without_a_key_source_every_gateway_is_unknown(client: FlaskClient) -> None:
    gw = SimGateway("gw-new", resource="batches")
    gw.hear_many(1)
    gw.flush()
    [(_s, envelope)] = gw.outbox()
    response = post(client, envelope)
    assert response.status_code == 401 and "unknown_key" in message(response)


def test_the_openapi_document_declares_the_raw_body(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert isinstance(spec, dict)
    operation = spec["paths"][URL]["post"]
    body = operation["requestBody"]["content"]
    assert body[COSE]["schema"] == {"type": "string", "format": "binary"}
    assert "at most %d bytes" % MAX_ENVELOPE_BYTES in operation["requestBody"]["description"]
    assert {"200", "401", "403", "413", "415", "422", "503"} <= set(operation["responses"])
    assert "security" not in operation or operation["security"] == []


def test_a_gateway_with_an_identity_key_is_accepted_without_further_wiring(
    cloud_app: APIFlask, client: FlaskClient
) -> None:
    database = cloud_app.extensions["bankiot.db"]
    wrapper = load_wrapper(Path(cloud_app.config["DATA_DIR"]), environ={})
    with database.sessions() as session:
        branch = Branch(code="B042", name="Harbour")
        device = Device(uid="gw-enrolled", kind="gateway", branch=branch, status="active")
        session.add_all([branch, device])
        session.flush()
        _row, secret = issue_envelope_key(session, device, wrapper, dt.datetime.now(dt.UTC))
        session.commit()
    gw = SimGateway("gw-enrolled", resource="batches")
    gw.ring = KeyRing("gw-enrolled", 1, secret)
    gw.hear_many(3)
    gw.flush()
    [(_s, envelope)] = gw.outbox()
    response = post(client, envelope)
    assert response.status_code == 200 and gw.receive(response.data) == 1
    assert reading_count(database) == 3
