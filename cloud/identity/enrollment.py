"""Enrollment, re-provisioning and renewal: a claim token or a current certificate in, a
device certificate (and, on enrollment, an envelope key) out.

**Enroll** (``enroll``), authenticated by the claim token alone: the CSR is checked first
(``csr``), then the token redeemed atomically (``claims.redeem``), then

- a claim for a branch creates the device record (uid = the CSR's CN, which must be new);
- a re-claim is bound to one device record: the CSR's CN must be that device's uid. Its
  old certificates are revoked (reason ``superseded``) and its envelope key versions
  revoked; the new ones follow, the history stays. Nothing lets a device re-enroll on its
  own: each way back in is one re-claim an operator issued for that record.

Either way the device gets a certificate (30 days), the CA chain, a fresh envelope key
version and is marked ``active``. Everything commits together with the redemption.

**Renew** (``renew``): mTLS is not there to tell us who calls (the web tier may sit behind
a TLS-terminating proxy), so the request carries the device's current certificate and a
new CSR, and possession of the current key is proved by a signature:

- same key (the usual case): the CSR's public key equals the certificate's, so the CSR's
  own self-signature is made with the current key: that is the proof;
- new key (key rotation): ``proof`` is an ECDSA-SHA256 signature by the current key over
  the new CSR's DER bytes.

The current certificate must pass ``check_certificate`` (chains to the fleet CA, not
expired, not revoked). A replayed renewal only yields a certificate for a key the replayer
does not hold. After a renewal, the device's older certificates except the one presented
are revoked (``superseded``): at most two are valid at once, and a renewal whose answer was
lost can be retried with the same certificate.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloud import audit
from cloud.fleet.models import Device
from cloud.identity.ca import DEVICE_VALIDITY, FleetCA, pem, serial_hex
from cloud.identity.claims import redeem
from cloud.identity.csr import csr_key, csr_uid, load_csr, same_key
from cloud.identity.errors import CertificateRefused, InvalidCSR, InvalidRequest, UidTaken
from cloud.identity.keys import KeyWrapper, issue_envelope_key, revoke_envelope_keys
from cloud.identity.models import IssuedCertificate
from cloud.identity.revocation import check_certificate, revoke_certificates

MAX_CERT_CHARS = 8192


@dataclass(frozen=True)
class Issued:
    """A device certificate just signed, and what it replaced."""

    device: Device
    certificate: x509.Certificate
    superseded: list[str]


@dataclass(frozen=True)
class Enrollment(Issued):
    """An enrollment's result: the certificate and the envelope key (shown once)."""

    key_version: int
    secret: bytes
    reprovisioned: bool
    revoked_key_versions: list[int]

    def __repr__(self) -> str:  # never show the secret
        return "Enrollment(device=%r, key_version=%d)" % (self.device.uid, self.key_version)


def _sign_device(
    session: Session, ca: FleetCA, device: Device, key: ec.EllipticCurvePublicKey, now: dt.datetime
) -> tuple[x509.Certificate, IssuedCertificate]:
    cert = ca.sign(key, device.uid, "device", now, DEVICE_VALIDITY)
    row = IssuedCertificate(
        serial=serial_hex(cert.serial_number),
        subject=device.uid,
        purpose="device",
        device_id=device.id,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        pem=pem(cert).decode(),
        issued_at=now,
    )
    session.add(row)
    session.flush()
    return cert, row


def enroll(
    session: Session,
    authority: Callable[[], FleetCA],
    wrapper: KeyWrapper,
    token: str,
    csr_pem: str,
    now: dt.datetime,
) -> Enrollment:
    """Redeem ``token`` for a certificate on ``csr_pem`` and a new envelope key.

    The token is checked first: a caller without a valid one learns nothing else (not
    whether the CSR would do, not whether the CA is there: ``authority`` is called only
    after). The caller commits, or rolls back on any error: the token then stays unused.
    """
    claim = redeem(session, token, now)
    csr = load_csr(csr_pem)
    uid = csr_uid(csr)
    ca = authority()
    reprovisioned = False  # a re-claim for a record that never enrolled is a first enrollment
    superseded: list[str] = []
    revoked_versions: list[int] = []
    if claim.device_id is not None:
        device = session.get(Device, claim.device_id)
        if device is None:  # the FK makes this impossible; say so rather than crash
            raise InvalidRequest("the device of this re-claim no longer exists")
        if device.uid != uid:
            raise InvalidCSR(
                "this re-claim is for device %s; the CSR asks for %s" % (device.uid, uid)
            )
        earlier = select(IssuedCertificate.id).where(IssuedCertificate.device_id == device.id)
        reprovisioned = session.scalar(earlier.limit(1)) is not None
        superseded = revoke_certificates(session, device.id, "superseded", now)
        revoked_versions = revoke_envelope_keys(session, device.id, now)
    else:
        if session.scalar(select(Device.id).where(Device.uid == uid)) is not None:
            raise UidTaken("device uid %s is already enrolled: ask for a re-claim" % uid)
        device = Device(uid=uid, kind=claim.kind, branch_id=claim.branch_id)
        session.add(device)
        try:
            session.flush()
        except IntegrityError:  # a concurrent enrollment took the uid first
            raise UidTaken("device uid %s is already enrolled: ask for a re-claim" % uid) from None
    device.status = "active"
    cert, row = _sign_device(session, ca, device, csr_key(csr), now)
    key, secret = issue_envelope_key(session, device, wrapper, now)
    claim.redeemed_device_id = device.id
    audit.record(
        session,
        "device:%s" % uid,
        "device.reprovision" if reprovisioned else "device.enroll",
        "device:%s" % uid,
        claim_id=claim.id,
        branch_id=device.branch_id,
        serial=row.serial,
        not_after=row.not_after.isoformat(),
        key_version=key.version,
        revoked_serials=superseded,
        revoked_key_versions=revoked_versions,
    )
    return Enrollment(
        device, cert, superseded, key.version, secret, reprovisioned, revoked_versions
    )


def load_certificate(text: str) -> x509.Certificate:
    """One PEM certificate; ``CertificateRefused`` if it is not one (it is the credential)."""
    if len(text) > MAX_CERT_CHARS or text.count("-----BEGIN CERTIFICATE-----") != 1:
        raise CertificateRefused("certificate must be exactly one PEM CERTIFICATE block")
    try:
        return x509.load_pem_x509_certificate(text.encode())
    except ValueError:
        raise CertificateRefused("certificate is not a valid PEM certificate") from None


def _check_proof(cert: x509.Certificate, csr: x509.CertificateSigningRequest, proof: str) -> bool:
    """Check the CSR comes from the holder of ``cert``'s key; return whether its key is new."""
    current = cert.public_key()
    assert isinstance(current, ec.EllipticCurvePublicKey)  # check_certificate passed
    if same_key(csr_key(csr), current):
        return False  # the CSR's self-signature was made with the current key
    if not proof:
        raise CertificateRefused(
            "the CSR has a new key: a proof signed with the current key is required"
        )
    try:
        signature = base64.b64decode(proof, validate=True)
    except binascii.Error:
        raise CertificateRefused("proof must be base64") from None
    try:
        current.verify(
            signature, csr.public_bytes(serialization.Encoding.DER), ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        raise CertificateRefused(
            "proof does not verify with the current certificate's key"
        ) from None
    return True


def renew(
    session: Session,
    authority: Callable[[], FleetCA],
    cert_pem: str,
    csr_pem: str,
    proof: str,
    now: dt.datetime,
) -> Issued:
    """A new certificate for the holder of a current, valid device certificate."""
    cert = load_certificate(cert_pem)
    ca = authority()
    row = check_certificate(cert, session, ca, now)
    device = session.get(Device, row.device_id) if row.device_id is not None else None
    if row.purpose != "device" or device is None:
        raise CertificateRefused("certificate %s is not a device's" % row.serial)
    csr = load_csr(csr_pem)
    uid = csr_uid(csr)
    if uid != device.uid:
        raise InvalidCSR("the CSR asks for %s; the certificate is %s's" % (uid, device.uid))
    new_key = _check_proof(cert, csr, proof)
    new_cert, new_row = _sign_device(session, ca, device, csr_key(csr), now)
    keep = (row.id, new_row.id)
    superseded = revoke_certificates(session, device.id, "superseded", now, keep=keep)
    audit.record(
        session,
        "device:%s" % uid,
        "certificate.renew",
        "device:%s" % uid,
        presented=row.serial,
        serial=new_row.serial,
        not_after=new_row.not_after.isoformat(),
        new_key=new_key,
        revoked_serials=superseded,
    )
    return Issued(device, new_cert, superseded)
