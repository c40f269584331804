"""Revocation: revoke a device's certificates and keys, publish the CRL, refuse revoked
identities.

Two places enforce a revocation, because they cannot share one check:

- **the broker**: Mosquitto reads ``DATA_DIR/crl.pem`` (its ``crlfile``) when it starts.
  The CRL is signed by the issuing CA, rewritten after every revocation (and by
  ``bankiot cloud ca crl``, to run daily from cron: a CRL is valid for 7 days and OpenSSL
  refuses every client once it has expired), and lists revoked certificates until they
  expire. Restart the broker (or reload it where it re-reads the file) to apply it.
- **the cloud itself**: ``check_certificate`` verifies the chain with ``cryptography``'s
  verifier (which does not consult CRLs) and then looks the serial number up explicitly.

The CRL is rendered and written under an exclusive ``flock`` (``keyfiles.publish_locked``)
from what the database has committed, so of two concurrent revocations the last file
written lists both. CRL numbers go up by one from the file's previous number.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud import audit
from cloud.fleet.models import Device
from cloud.identity import keyfiles
from cloud.identity.ca import CRL_FILE, CRL_LIFETIME, FleetCA, pem, serial_hex
from cloud.identity.claims import cancel_pending
from cloud.identity.errors import CertificateRefused, CertificateRevoked
from cloud.identity.keys import revoke_envelope_keys
from cloud.identity.models import IssuedCertificate, utc

# The RFC 5280 reasons an operator may give (cryptography's x509.ReasonFlags values).
REASONS = (
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)


def revoke_certificates(
    session: Session,
    device_id: int,
    reason: str,
    now: dt.datetime,
    keep: tuple[int, ...] = (),
) -> list[str]:
    """Revoke a device's unrevoked certificates (but those with ids in ``keep``); return
    their serials."""
    rows = list(
        session.scalars(
            select(IssuedCertificate).where(
                IssuedCertificate.device_id == device_id,
                IssuedCertificate.revoked_at.is_(None),
                IssuedCertificate.id.not_in(keep),
            )
        )
    )
    for row in rows:
        row.revoked_at = now
        row.revocation_reason = reason
    return [row.serial for row in rows]


@dataclass(frozen=True)
class Revoked:
    """What a device revocation took away."""

    serials: list[str]
    key_versions: list[int]


def revoke_device(
    session: Session, actor: str, device: Device, reason: str, now: dt.datetime, note: str = ""
) -> Revoked:
    """Revoke every certificate and envelope key of ``device`` and cancel its pending
    claims; the device record and its history stay. Publish the CRL after the commit."""
    serials = revoke_certificates(session, device.id, reason, now)
    versions = revoke_envelope_keys(session, device.id, now)
    cancel_pending(session, device.id, now)
    device.status = "revoked"
    audit.record(
        session,
        actor,
        "device.revoke",
        "device:%s" % device.uid,
        reason=reason,
        note=note,
        serials=serials,
        key_versions=versions,
    )
    return Revoked(serials, versions)


def _previous_number(path: Path) -> int:
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (FileNotFoundError, ValueError, x509.ExtensionNotFound):
        return 0


def build_crl(
    session: Session, ca: FleetCA, number: int, now: dt.datetime
) -> x509.CertificateRevocationList:
    """The CRL of every revoked certificate that has not expired yet."""
    rows = session.execute(
        select(
            IssuedCertificate.serial,
            IssuedCertificate.revoked_at,
            IssuedCertificate.revocation_reason,
        ).where(IssuedCertificate.revoked_at.is_not(None), IssuedCertificate.not_after > now)
    )
    entries = [(int(serial, 16), utc(at), reason) for serial, at, reason in rows if at]
    return ca.sign_crl(entries, number, now, now + CRL_LIFETIME)


def publish_crl(session: Session, ca: FleetCA, data_dir: Path, now: dt.datetime) -> Path:
    """Write ``data_dir/crl.pem`` from what the database has committed (atomically, under a
    lock); ``session`` only lends its connection settings."""
    path = Path(data_dir) / CRL_FILE

    def render() -> bytes:
        # a session of its own: read what is committed now, not the caller's snapshot
        with Session(session.get_bind()) as reader:
            crl = build_crl(reader, ca, _previous_number(path) + 1, now)
        return crl.public_bytes(serialization.Encoding.PEM)

    return keyfiles.publish_locked(path, render)


def crl_needs_refresh(data_dir: Path, now: dt.datetime) -> bool:
    """True when ``crl.pem`` is missing, unreadable or past half its lifetime."""
    try:
        crl = x509.load_pem_x509_crl((Path(data_dir) / CRL_FILE).read_bytes())
    except (FileNotFoundError, ValueError):
        return True
    next_update = crl.next_update_utc
    return next_update is None or next_update - now < CRL_LIFETIME / 2


def check_certificate(
    cert: x509.Certificate,
    session: Session | None = None,
    ca: FleetCA | None = None,
    now: dt.datetime | None = None,
) -> IssuedCertificate:
    """The record of ``cert`` if it is a valid, unrevoked identity issued by ``ca``.

    Raises ``CertificateRefused`` (does not chain to the fleet root through the issuing
    CA, expired, wrong usage, or not in our records) or ``CertificateRevoked``. ``session``
    and ``ca`` default to the current app's (the asyncio ingest services pass their own).
    """
    if session is None or ca is None:
        from cloud.identity import runtime

        session = session if session is not None else runtime.db_session()
        ca = ca if ca is not None else runtime.authority()
    now = now or dt.datetime.now(dt.UTC)
    verifier = PolicyBuilder().store(Store([ca.root])).time(now).build_client_verifier()
    try:
        verifier.verify(cert, [ca.issuing])
    except VerificationError as exc:
        raise CertificateRefused(
            "certificate is not a valid fleet identity: %s" % str(exc).splitlines()[0]
        ) from None
    row = session.scalar(
        select(IssuedCertificate).where(IssuedCertificate.serial == serial_hex(cert.serial_number))
    )
    if row is None or row.pem != pem(cert).decode():
        raise CertificateRefused(
            "certificate %s was not issued by this cloud" % serial_hex(cert.serial_number)
        )
    if row.revoked_at is not None:
        raise CertificateRevoked(
            "certificate %s of %s was revoked at %s (%s)"
            % (row.serial, row.subject, utc(row.revoked_at).isoformat(), row.revocation_reason)
        )
    return row
