"""Revocation: the CRL for the broker and the cloud's own explicit check, on SQLite and
PostgreSQL. OpenSSL's ``verify -crl_check`` is the independent judge of the CRL."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import URL

from cloud.db import database
from cloud.identity.ca import DEVICE_VALIDITY, load_ca
from cloud.identity.errors import CertificateRefused, CertificateRevoked
from cloud.identity.keys import envelope_key_lookup, load_wrapper
from cloud.identity.revocation import build_crl, check_certificate
from cloud.identity.runtime import refresh_crl_if_stale
from tests.cloud.identity_actions import (
    Cloud,
    audit_actions,
    body,
    certificate,
    device_id,
    enroll_new,
    new_key,
    running_cloud,
)
from tests.support.pki import TestCA


@pytest.fixture
def cloud(database_url: URL, tmp_path: Path) -> Iterator[Cloud]:
    with running_cloud(database_url, tmp_path) as made:
        yield made


def read_crl(cloud: Cloud) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl((cloud.data_dir / "crl.pem").read_bytes())


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def openssl_verify(cloud: Cloud, answer: dict, tmp_path: Path) -> str:
    """``openssl verify -crl_check`` of a device certificate: what Mosquitto's OpenSSL does."""
    leaf = tmp_path / ("%s.pem" % answer["serial"])
    leaf.write_text(answer["certificate"])
    ca = cloud.data_dir / "ca"
    result = subprocess.run(
        [
            "openssl", "verify", "-crl_check",
            "-CAfile", str(ca / "root.pem"),
            "-untrusted", str(ca / "issuing.pem"),
            "-CRLfile", str(cloud.data_dir / "crl.pem"),
            str(leaf),
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    return result.stdout + result.stderr


def test_revoking_a_device_publishes_the_crl_and_the_cloud_refuses_it(
    cloud: Cloud, tmp_path: Path
) -> None:
    _, a = enroll_new(cloud, "gw-bad")
    _, b = enroll_new(cloud, "gw-good")
    before = crl_number(read_crl(cloud))
    assert "OK" in openssl_verify(cloud, a, tmp_path)

    response = cloud.client.post(
        "/api/identity/devices/%d/revoke" % device_id(a),
        json={"reason": "keyCompromise", "note": "stolen from branch"},
    )
    assert response.status_code == 200
    result = body(response)
    assert result["status"] == "revoked"
    assert result["revoked_serials"] == [a["serial"]] and result["revoked_key_versions"] == [1]

    crl = read_crl(cloud)
    issuing = x509.load_pem_x509_certificate((cloud.data_dir / "ca" / "issuing.pem").read_bytes())
    issuing_key = issuing.public_key()
    assert isinstance(issuing_key, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(issuing_key)
    assert crl_number(crl) > before
    entry = crl.get_revoked_certificate_by_serial_number(int(a["serial"], 16))
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(int(b["serial"], 16)) is None
    assert (
        cloud.client.get("/api/identity/crl.pem").data == (cloud.data_dir / "crl.pem").read_bytes()
    )

    assert "certificate revoked" in openssl_verify(cloud, a, tmp_path)
    assert "OK" in openssl_verify(cloud, b, tmp_path)

    with cloud.app.test_request_context():
        with pytest.raises(CertificateRevoked, match=r"revoked at .* \(keyCompromise\)"):
            check_certificate(certificate(a))
        assert check_certificate(certificate(b)).subject == "gw-good"
        with database().sessions() as db:
            lookup = envelope_key_lookup(db, load_wrapper(cloud.data_dir))
            assert lookup(b"gw-bad", 1) is None and lookup(b"gw-good", 1) is not None

    assert "gw-bad" not in (cloud.data_dir / "mosquitto.acl").read_text()
    assert "user gw-good" in (cloud.data_dir / "mosquitto.acl").read_text()
    revocations = [
        (actor, d) for actor, action, d in audit_actions(cloud) if action == "device.revoke"
    ]
    assert revocations == [
        (
            "operator:ops",
            {
                "reason": "keyCompromise",
                "note": "stolen from branch",
                "serials": [a["serial"]],
                "key_versions": [1],
            },
        )
    ]


def test_check_certificate_refuses_expired_foreign_and_unrecorded(
    cloud: Cloud, tmp_path: Path
) -> None:
    _, answer = enroll_new(cloud, "gw-check")
    cert = certificate(answer)
    ca = load_ca(cloud.data_dir, {})
    with cloud.app.app_context(), database().sessions() as db:
        later = cert.not_valid_after_utc + dt.timedelta(seconds=1)
        with pytest.raises(CertificateRefused, match="not a valid fleet identity"):
            check_certificate(cert, db, ca, later)
        foreign = TestCA(tmp_path / "foreign").issue("gw-check")
        with pytest.raises(CertificateRefused, match="not a valid fleet identity"):
            check_certificate(x509.load_pem_x509_certificate(foreign.cert.read_bytes()), db, ca)
        now = dt.datetime.now(dt.UTC)
        unrecorded = ca.sign(new_key().public_key(), "gw-check", "device", now, DEVICE_VALIDITY)
        with pytest.raises(CertificateRefused, match="was not issued by this cloud"):
            check_certificate(unrecorded, db, ca)
        assert check_certificate(cert, db, ca).serial == answer["serial"]


def test_the_crl_forgets_revoked_certificates_once_they_expire(cloud: Cloud) -> None:
    _, answer = enroll_new(cloud, "gw-old")
    cloud.client.post("/api/identity/devices/%d/revoke" % device_id(answer), json={})
    serial = int(answer["serial"], 16)
    ca = load_ca(cloud.data_dir, {})
    with cloud.app.app_context(), database().sessions() as db:
        now = dt.datetime.now(dt.UTC)
        listed = build_crl(db, ca, 5, now)
        entry = listed.get_revoked_certificate_by_serial_number(serial)
        assert entry is not None  # "unspecified" is said by leaving the reason out
        assert not any(isinstance(e.value, x509.CRLReason) for e in entry.extensions)
        later = build_crl(db, ca, 6, certificate(answer).not_valid_after_utc + dt.timedelta(days=1))
        assert later.get_revoked_certificate_by_serial_number(serial) is None
    # a stale or missing CRL is re-signed at start-up (and by `ca crl` from cron)
    (cloud.data_dir / "crl.pem").unlink()
    with cloud.app.test_request_context():
        assert refresh_crl_if_stale() is True
        assert refresh_crl_if_stale() is False
    assert read_crl(cloud).get_revoked_certificate_by_serial_number(serial) is not None
    assert listed.next_update_utc is not None
    lifetime = listed.next_update_utc - now  # X.509 times have whole seconds
    assert dt.timedelta(days=7, seconds=-1) < lifetime <= dt.timedelta(days=7)
