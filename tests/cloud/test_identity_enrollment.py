"""Enrollment, re-provisioning and renewal through the HTTP API, on SQLite and PostgreSQL.

Certificates are checked with ``cryptography``'s own path validation against the root
certificate read from the offline root folder, envelope keys by sealing with the portable
core and opening with what the cloud stored.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from sqlalchemy import select
from sqlalchemy.engine import URL

from bankiot_core import cose
from cloud.db import database
from cloud.fleet.models import Device
from cloud.identity import claims
from cloud.identity.keys import envelope_key_lookup, keyring, load_wrapper
from cloud.identity.models import ClaimToken, EnvelopeKey
from cloud.identity.runtime import set_initial_config
from tests.cloud.identity_actions import (
    Cloud,
    audit_actions,
    body,
    certificate,
    create_claim,
    csr_pem,
    device_id,
    enroll,
    enroll_new,
    make_csr,
    new_key,
    running_cloud,
)
from tests.support.pki import TestCA


@pytest.fixture
def cloud(database_url: URL, tmp_path: Path) -> Iterator[Cloud]:
    with running_cloud(database_url, tmp_path, broker_url="mqtts://broker.example:8883") as made:
        yield made


def verify_chain(cloud: Cloud, answer: dict) -> list[x509.Certificate]:
    """Path validation by cryptography, trusting only the root from the offline folder."""
    root = x509.load_pem_x509_certificate((cloud.root_dir / "root.pem").read_bytes())
    intermediates = x509.load_pem_x509_certificates(answer["ca_chain"].encode())
    verifier = PolicyBuilder().store(Store([root])).build_client_verifier()
    return verifier.verify(certificate(answer), intermediates).chain


def open_with_cloud(cloud: Cloud, envelope: bytes, topic: str) -> bytes:
    with cloud.app.app_context(), database().sessions() as db:
        lookup = envelope_key_lookup(db, load_wrapper(cloud.data_dir))
        return cose.open_envelope(envelope, lookup, topic).plaintext


def post_enroll(cloud: Cloud, token: str, csr: str):
    return cloud.client.post("/api/identity/enroll", json={"token": token, "csr": csr})


def test_enrollment_gives_certificate_chain_key_endpoints(cloud: Cloud) -> None:
    set_initial_config(cloud.app, lambda device: {"report_interval_s": 60, "kind": device.kind})
    key, answer = enroll(cloud, create_claim(cloud), "gw-0001")
    cert = certificate(answer)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-0001"
    assert cert.public_key() == key.public_key()
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=29) < validity <= dt.timedelta(days=31)
    assert len(verify_chain(cloud, answer)) == 3  # device, issuing CA, root
    assert answer["serial"] == "%x" % cert.serial_number
    assert answer["renew_after"] < answer["not_after"]

    assert answer["endpoints"] == {
        "mqtt": "mqtts://broker.example:8883",
        "coap": "coap://127.0.0.1:5683",
    }
    assert answer["topics"] == {
        "up": "devices/gw-0001/up",
        "down": "devices/gw-0001/down",
        "branch_down": "branches/%d/down" % cloud.branches["north"],
    }
    assert answer["device"]["kind"] == "gateway" and answer["reprovisioned"] is False
    assert answer["config"] == {"report_interval_s": 60, "kind": "gateway"}

    # the envelope key works end to end: the gateway seals, the cloud opens
    secret = base64.b64decode(answer["envelope_key"]["secret"])
    assert len(secret) == 32 and answer["envelope_key"]["version"] == 1
    envelope = cose.seal(secret, "gw-0001", 1, 7, b"batch", "devices/gw-0001/up")
    assert open_with_cloud(cloud, envelope, "devices/gw-0001/up") == b"batch"

    with cloud.app.app_context(), database().sessions() as db:
        device = db.scalars(select(Device).where(Device.uid == "gw-0001")).one()
        assert (device.status, device.branch_id) == ("active", cloud.branches["north"])
        ring = keyring(db, device, load_wrapper(cloud.data_dir))
        assert ring is not None and ring.sealing_key() == (1, secret)
    served = cloud.client.get("/api/identity/ca.pem")
    assert served.status_code == 200 and served.get_data(as_text=True) == answer["ca_chain"]
    actors = [(actor, action) for actor, action, _ in audit_actions(cloud)]
    assert ("operator:ops", "claim.create") in actors
    assert ("device:gw-0001", "device.enroll") in actors


def test_secrets_are_stored_wrapped_or_hashed_and_never_logged(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = create_claim(cloud)
    _, answer = enroll(cloud, token, "gw-0002")
    secret = base64.b64decode(answer["envelope_key"]["secret"])
    with cloud.app.app_context(), database().sessions() as db:
        wrapped = db.scalars(select(EnvelopeKey.wrapped)).one()
        stored_hash = db.scalars(select(ClaimToken.token_hash)).one()
    assert secret not in wrapped and len(wrapped) == 12 + 32 + 16  # nonce, secret, GCM tag
    assert stored_hash == hashlib.sha256(token.encode()).hexdigest()
    kek = cloud.data_dir / "keys" / "envelope.kek"
    assert stat.S_IMODE(kek.stat().st_mode) == 0o600
    shown = (answer["envelope_key"]["secret"], secret.hex(), token)
    audit_text = repr(audit_actions(cloud))
    for needle in shown:
        assert needle not in caplog.text and needle not in audit_text


def test_a_token_is_single_use(cloud: Cloud) -> None:
    # an unknown token is refused before the CSR is even read
    unknown = post_enroll(cloud, claims.new_token(), "not a CSR")
    assert unknown.status_code == 401
    assert body(unknown)["message"] == "claim token is not valid"
    token = create_claim(cloud)
    enroll(cloud, token, "gw-a")
    response = post_enroll(cloud, token, make_csr("gw-b")[1])
    assert response.status_code == 409
    assert body(response)["message"] == "claim token was already used"
    refused = [d for _, action, d in audit_actions(cloud) if action == "device.enroll.refused"]
    assert refused and refused[-1]["reason"] == "claim token was already used"


def test_refused_attempts_are_rate_limited_successes_are_not(cloud: Cloud) -> None:
    for i in range(3):
        enroll_new(cloud, "gw-ok-%d" % i)  # successes do not count
    for _ in range(20):
        assert post_enroll(cloud, claims.new_token(), "x").status_code == 401
    limited = post_enroll(cloud, create_claim(cloud), make_csr("gw-late")[1])
    assert limited.status_code == 429 and "Retry-After" in limited.headers


def _tampered() -> str:
    _, text = make_csr("gw-t")
    der = bytearray(x509.load_pem_x509_csr(text.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # inside the signature's s
    body64 = base64.encodebytes(bytes(der)).decode()
    return "-----BEGIN CERTIFICATE REQUEST-----\n%s-----END CERTIFICATE REQUEST-----\n" % body64


def _two_names() -> str:
    names = [x509.NameAttribute(NameOID.COMMON_NAME, n) for n in ("gw-x", "gw-y")]
    return csr_pem(x509.Name(names), new_key())


BAD_CSRS = {
    "garbage": (lambda: "hello", "exactly one PEM"),
    "tampered": (_tampered, "signature does not verify"),
    "p384": (lambda: make_csr("gw-p", ec.generate_private_key(ec.SECP384R1()))[1], "P-256"),
    "rsa": (
        lambda: make_csr("gw-r", rsa.generate_private_key(public_exponent=65537, key_size=2048))[1],
        "P-256",
    ),
    "no_cn": (
        lambda: csr_pem(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x")]), new_key()),
        "exactly one common name",
    ),
    "two_cns": (_two_names, "exactly one common name"),
    "slash": (lambda: make_csr("gw/1")[1], "must be 1 to 64"),
    "wildcard": (lambda: make_csr("gw+")[1], "must be 1 to 64"),
    "reserved": (lambda: make_csr("cloud")[1], "reserved"),
    "two_blocks": (lambda: make_csr("gw-1")[1] * 2, "exactly one PEM"),
}


def test_bad_csrs_are_refused_and_the_token_survives(cloud: Cloud) -> None:
    token = create_claim(cloud)
    for case, (make, needle) in BAD_CSRS.items():
        response = post_enroll(cloud, token, make())
        assert response.status_code == 422, case
        message = body(response)["message"]
        assert needle in message and "\n" not in message, (case, message)
    enroll(cloud, token, "gw-good")  # the refused attempts did not use the token up


def test_claims_expire(cloud: Cloud) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    with cloud.app.app_context(), database().sessions() as db:
        _, token = claims.create_claim(
            db, "operator:ops", cloud.branches["north"], "gateway", past, dt.timedelta(days=1)
        )
        db.commit()
    response = post_enroll(cloud, token, make_csr("gw-late")[1])
    assert response.status_code == 410
    assert body(response)["message"].startswith("claim token expired at ")

    # 24 hours unless the claim says otherwise, from 5 minutes to 7 days
    for seconds, status in ((299, 422), (300, 201), (604800, 201), (604801, 422), (None, 201)):
        extra = {} if seconds is None else {"expires_in": seconds}
        response = cloud.client.post(
            "/api/identity/claims",
            json={"branch_id": cloud.branches["north"], "kind": "gateway", **extra},
        )
        assert response.status_code == status, seconds
        if status == 201:
            claim = body(response)
            lifetime = dt.datetime.fromisoformat(claim["expires_at"]) - dt.datetime.fromisoformat(
                claim["created_at"]
            )
            assert lifetime == dt.timedelta(seconds=seconds or 24 * 3600)


def test_a_taken_uid_is_refused_and_the_token_survives(cloud: Cloud) -> None:
    enroll_new(cloud, "gw-dup")
    token = create_claim(cloud, "south")
    response = post_enroll(cloud, token, make_csr("gw-dup")[1])
    assert response.status_code == 409
    assert "already enrolled" in body(response)["message"]
    enroll(cloud, token, "gw-dup2")


def test_reprovisioning_after_a_factory_reset(cloud: Cloud) -> None:
    old_key, first = enroll_new(cloud, "gw-reset")
    old_secret = base64.b64decode(first["envelope_key"]["secret"])
    device = device_id(first)

    cloud.callers.as_technician(cloud.branches["north"])
    response = cloud.client.post(
        "/api/identity/devices/%d/claims" % device, json={"note": "factory reset"}
    )
    assert response.status_code == 201
    reclaim = body(response)
    assert reclaim["device_id"] == device and reclaim["kind"] == "gateway"

    # a re-claim is bound to its device record: another uid cannot use it
    wrong = post_enroll(cloud, reclaim["token"], make_csr("gw-other")[1])
    assert wrong.status_code == 422 and "re-claim is for device gw-reset" in body(wrong)["message"]

    new_key_, second = enroll(cloud, reclaim["token"], "gw-reset")
    assert second["reprovisioned"] is True and device_id(second) == device
    assert certificate(second).public_key() == new_key_.public_key() != old_key.public_key()
    assert second["envelope_key"]["version"] == 2

    # the old key version no longer opens anything; the new one does
    topic = "devices/gw-reset/up"
    old_envelope = cose.seal(old_secret, "gw-reset", 1, 1, b"old", topic)
    with pytest.raises(cose.AuthenticationError):
        open_with_cloud(cloud, old_envelope, topic)
    new_secret = base64.b64decode(second["envelope_key"]["secret"])
    assert open_with_cloud(cloud, cose.seal(new_secret, "gw-reset", 2, 1, b"new", topic), topic)

    # history is kept: the old certificate is listed as revoked, superseded
    history = body(cloud.client.get("/api/identity/devices/%d/certificates" % device))
    assert [h["status"] for h in history] == ["active", "revoked"]
    assert history[1]["serial"] == first["serial"]
    assert history[1]["revocation_reason"] == "superseded"

    # and the re-claim was single use
    again = post_enroll(cloud, reclaim["token"], make_csr("gw-reset")[1])
    assert again.status_code == 409
    details = [d for _, action, d in audit_actions(cloud) if action == "device.reprovision"]
    assert details[0]["revoked_serials"] == [first["serial"]]
    assert details[0]["revoked_key_versions"] == [1]


def test_a_pre_registered_device_enrolls_once_through_its_own_claim(cloud: Cloud) -> None:
    with cloud.app.app_context(), database().sessions() as db:
        record = Device(uid="gw-pre", kind="kiosk", branch_id=cloud.branches["south"])
        db.add(record)
        db.commit()
        record_id = record.id
    reclaim = cloud.client.post("/api/identity/devices/%d/claims" % record_id, json={})
    token = body(reclaim)["token"]
    _, answer = enroll(cloud, token, "gw-pre")
    assert device_id(answer) == record_id and answer["reprovisioned"] is False
    assert answer["device"]["kind"] == "kiosk" and answer["envelope_key"]["version"] == 1
    assert post_enroll(cloud, token, make_csr("gw-pre")[1]).status_code == 409
    actions = [(actor, action) for actor, action, _ in audit_actions(cloud)]
    assert ("device:gw-pre", "device.enroll") in actions


def test_a_new_reclaim_cancels_the_pending_one(cloud: Cloud) -> None:
    _, answer = enroll_new(cloud, "gw-twice")
    url = "/api/identity/devices/%d/claims" % device_id(answer)
    first = body(cloud.client.post(url, json={}))["token"]
    second = body(cloud.client.post(url, json={}))["token"]
    response = post_enroll(cloud, first, make_csr("gw-twice")[1])
    assert response.status_code == 401
    assert body(response)["message"] == "claim token was cancelled"
    enroll(cloud, second, "gw-twice")


def test_the_root_key_is_not_needed_online(cloud: Cloud) -> None:
    shutil.rmtree(cloud.root_dir)
    _, answer = enroll_new(cloud, "gw-offline-root")
    # the chain still verifies against the root certificate kept in the data folder
    root = x509.load_pem_x509_certificate((cloud.data_dir / "ca" / "root.pem").read_bytes())
    verifier = PolicyBuilder().store(Store([root])).build_client_verifier()
    intermediates = x509.load_pem_x509_certificates(answer["ca_chain"].encode())
    assert verifier.verify(certificate(answer), intermediates)
    private = [
        p for p in cloud.data_dir.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
    ]
    assert private == [cloud.data_dir / "ca" / "issuing.key"]


def renew(cloud: Cloud, answer: dict, csr: str, proof: str = ""):
    return cloud.client.post(
        "/api/identity/renew",
        json={"certificate": answer["certificate"], "csr": csr, "proof": proof},
    )


def test_renewal_with_the_same_key(cloud: Cloud) -> None:
    key, first = enroll_new(cloud, "gw-renew")
    response = renew(cloud, first, make_csr("gw-renew", key)[1])
    assert response.status_code == 200
    second = body(response)
    assert certificate(second).public_key() == key.public_key()
    assert second["serial"] != first["serial"]
    assert len(verify_chain(cloud, second)) == 3
    history = body(cloud.client.get("/api/identity/devices/%d/certificates" % device_id(first)))
    assert [h["status"] for h in history] == ["active", "active"]  # presented one kept

    # renewing with the newer certificate supersedes the first
    third = body(renew(cloud, second, make_csr("gw-renew", key)[1]))
    history = body(cloud.client.get("/api/identity/devices/%d/certificates" % device_id(first)))
    statuses = {h["serial"]: (h["status"], h["revocation_reason"]) for h in history}
    assert statuses == {
        third["serial"]: ("active", None),
        second["serial"]: ("active", None),
        first["serial"]: ("revoked", "superseded"),
    }
    renewals = [
        (a, d["presented"])
        for a, action, d in audit_actions(cloud)
        if action == "certificate.renew"
    ]
    assert renewals == [("device:gw-renew", first["serial"]), ("device:gw-renew", second["serial"])]


def _proof(key: ec.EllipticCurvePrivateKey, csr: str) -> str:
    der = x509.load_pem_x509_csr(csr.encode()).public_bytes(serialization.Encoding.DER)
    return base64.b64encode(key.sign(der, ec.ECDSA(hashes.SHA256()))).decode()


def test_renewal_with_a_new_key_needs_a_proof_by_the_current_key(cloud: Cloud) -> None:
    key, first = enroll_new(cloud, "gw-rotate")
    fresh, csr = make_csr("gw-rotate")
    missing = renew(cloud, first, csr)
    assert missing.status_code == 403 and "proof" in body(missing)["message"]
    forged = renew(cloud, first, csr, _proof(fresh, csr))  # signed by the new key, not the old
    assert forged.status_code == 403
    assert body(forged)["message"] == "proof does not verify with the current certificate's key"
    response = renew(cloud, first, csr, _proof(key, csr))
    assert response.status_code == 200
    assert certificate(body(response)).public_key() == fresh.public_key()


def test_renewal_refuses_foreign_mismatched_and_revoked_certificates(
    cloud: Cloud, tmp_path: Path
) -> None:
    key, answer = enroll_new(cloud, "gw-strict")
    foreign = TestCA(tmp_path / "foreign").issue("gw-strict")
    foreign_answer = {"certificate": foreign.cert.read_text()}
    foreign_key = serialization.load_pem_private_key(foreign.key.read_bytes(), None)
    response = renew(cloud, foreign_answer, make_csr("gw-strict", foreign_key)[1])
    assert response.status_code == 403
    assert body(response)["message"].startswith("certificate is not a valid fleet identity")

    mismatch = renew(cloud, answer, make_csr("gw-someone-else", key)[1])
    assert mismatch.status_code == 422

    cloud.client.post("/api/identity/devices/%d/revoke" % device_id(answer), json={})
    revoked = renew(cloud, answer, make_csr("gw-strict", key)[1])
    assert revoked.status_code == 403 and "was revoked" in body(revoked)["message"]
