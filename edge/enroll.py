"""Enrolling a Raspberry Pi gateway: a key made here, a CSR sent with a claim token, the
identity the cloud answers with checked and stored (``edge.identity``).

The steps, in the order that spends the claim token last:

1. check the cloud URL (``https://``, or ``http://`` to this machine only), the uid, and that
   the gateway is not enrolled already (``--force`` enrolls again, keeping the old identity
   aside);
2. make an EC P-256 key and write it into a private staging folder, so that a full or
   read-only disk shows before the token is spent;
3. POST ``{"token", "csr"}`` to ``/api/identity/enroll`` (TLS verified against the system's
   trust store or ``cafile``; redirects refused: they would drop the request body);
4. check the answer: the certificate is for this key and this uid and is signed by the first
   certificate of the returned chain; the envelope key is 16 to 64 bytes;
5. write the certificate, chain, envelope key and enrollment record, and rename the staged
   folder into place in one step.

A refusal from the cloud (bad, used, expired claim; uid taken) is one line with the cloud's
own message; nothing is written. After step 3 succeeded the claim is used: an error in
steps 4 or 5 says so (ask for a re-claim).

The default uid is ``rpi-`` and 12 hex digits of an HMAC-SHA256 keyed with the machine id
(``/etc/machine-id``) over a fixed application label, as machine-id(5) recommends for
application identifiers: stable for the life of the installation, unique per machine, and
it does not reveal the machine id itself (the uid becomes the MQTT user name, topic names
and the certificate's CN, all seen by the broker and operators). Not the MAC address: a Pi
has several interfaces (Ethernet, WiFi, Bluetooth), WiFi MACs may be randomised, and the
MAC is broadcast to everyone on the network anyway. A re-imaged card gets a new machine id,
hence a new uid: give the old one with ``--uid`` to use a re-claim for the same record.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge import identity as files
from edge.cloud_http import CAFileError, HttpRefused, Unreachable, post_json
from edge.errors import (
    AlreadyEnrolled,
    BadAnswer,
    CloudRefused,
    CloudUnreachable,
    EnrollError,
    GatewayError,
)
from edge.identity import Identity, StagedIdentity
from edge.settings import check_cloud_url

ENROLL_PATH = "/api/identity/enroll"
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
UID_LABEL = b"bankiot gateway uid v1"
UID_PREFIX = "rpi-"
# The cloud's rule for uids (cloud.identity.csr.UID_PATTERN): an MQTT user name and a topic
# level, so no "/", "+", "#" or spaces. Checked here too so a typo costs no claim token.
UID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
TIMEOUT = 30.0
MAX_ANSWER = 256 * 1024
_USED = "; the claim token is now used: ask for a re-claim"


@dataclass(frozen=True)
class Enrolled:
    """An enrollment's outcome: the identity now on disk, and where an older one was put
    aside (None: there was none)."""

    identity: Identity
    replaced: Path | None
    reprovisioned: bool


def machine_uid(candidates: tuple[Path, ...] = MACHINE_ID_FILES) -> str:
    """The default device uid of this machine (module docstring); ``EnrollError`` when no
    machine id can be read."""
    for path in candidates:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if re.fullmatch(r"[0-9a-fA-F]{32}", text):
            digest = hmac.new(bytes.fromhex(text), UID_LABEL, hashlib.sha256).hexdigest()
            return UID_PREFIX + digest[:12]
    raise EnrollError(
        "no machine id in %s: give the device uid with --uid"
        % " or ".join(str(p) for p in candidates)
    )


def check_uid(uid: str) -> str:
    """``uid`` if the cloud would accept it as a device uid; ``EnrollError`` if not."""
    if not UID_PATTERN.match(uid) or uid.lower() == "cloud":
        raise EnrollError(
            "device uid %r must be 1 to 64 of A-Z a-z 0-9 . _ - starting with a letter or "
            "digit (and not 'cloud')" % uid[:80]
        )
    return uid


def make_csr(key: ec.EllipticCurvePrivateKey, uid: str) -> str:
    """The PEM CSR for ``uid`` (its only CN) signed by ``key``."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uid)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# ---- the request ------------------------------------------------------------------------


def post_enrollment(
    cloud_url: str, token: str, csr: str, cafile: Path | None = None, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """POST the claim ``token`` and ``csr`` to the cloud; its JSON answer. Raises
    ``CloudUnreachable`` or ``CloudRefused`` (with the cloud's message, never the token)."""
    url = cloud_url + ENROLL_PATH
    try:
        status, raw = post_json(url, {"token": token, "csr": csr}, cafile, timeout, MAX_ANSWER)
    except CAFileError as exc:
        raise EnrollError(str(exc)) from None
    except HttpRefused as exc:
        if exc.redirect:
            raise CloudRefused(
                "%s redirects (HTTP %d to %s): give the final URL with --cloud"
                % (url, exc.status, exc.location),
                exc.status,
            ) from None
        raise CloudRefused(
            "the cloud refused the enrollment (HTTP %d): %s" % (exc.status, exc.message),
            exc.status,
        ) from None
    except Unreachable as exc:
        raise CloudUnreachable("cannot reach %s: %s" % (cloud_url, exc.reason)) from None
    if status != 201 or len(raw) > MAX_ANSWER:
        raise BadAnswer("%s answered HTTP %d, not an enrollment%s" % (url, status, _USED))
    try:
        answer = json.loads(raw)
    except ValueError:
        raise BadAnswer("%s answered something that is not JSON%s" % (url, _USED)) from None
    if not isinstance(answer, dict):
        raise BadAnswer("%s answered JSON that is not an object%s" % (url, _USED))
    return answer


# ---- the answer -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    version: int
    secret: bytes
    record: dict[str, Any]
    reprovisioned: bool


def _pick(answer: dict[str, Any], *path: str) -> Any:
    value: Any = answer
    for name in path:
        if not isinstance(value, dict) or name not in value:
            raise BadAnswer("the cloud's answer lacks %s%s" % (".".join(path), _USED))
        value = value[name]
    return value


def _typed(answer: dict[str, Any], kind: type, *path: str) -> Any:
    value = _pick(answer, *path)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadAnswer(
            "the cloud's answer has a bad %s (not a %s)%s" % (".".join(path), kind.__name__, _USED)
        )
    return value


def check_answer(
    answer: dict[str, Any], key: ec.EllipticCurvePrivateKey, uid: str, cloud_url: str
) -> _Answer:
    """Check the cloud's enrollment answer against the key and uid sent; ``BadAnswer``."""
    try:
        cert = x509.load_pem_x509_certificate(_typed(answer, str, "certificate").encode())
        chain = x509.load_pem_x509_certificates(_typed(answer, str, "ca_chain").encode())
    except ValueError:
        raise BadAnswer("the cloud's certificate or CA chain is not PEM%s" % _USED) from None
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not files.same_public_key(
        public, key.public_key()
    ):
        raise BadAnswer("the cloud's certificate is not for this gateway's key%s" % _USED)
    if files.common_name(cert) != uid:
        raise BadAnswer(
            "the cloud's certificate is for %r, not %r%s" % (files.common_name(cert), uid, _USED)
        )
    try:
        cert.verify_directly_issued_by(chain[0])
    except (ValueError, TypeError, InvalidSignature, IndexError):
        raise BadAnswer(
            "the cloud's certificate is not signed by its CA chain's issuing CA%s" % _USED
        ) from None
    version = _typed(answer, int, "envelope_key", "version")
    try:
        secret = base64.b64decode(_typed(answer, str, "envelope_key", "secret"), validate=True)
    except (binascii.Error, ValueError):
        raise BadAnswer("the cloud's envelope key is not base64%s" % _USED) from None
    if not 0 <= version <= 0xFFFF or not 16 <= len(secret) <= 64:
        raise BadAnswer("the cloud's envelope key is out of range%s" % _USED)
    if _typed(answer, str, "device", "uid") != uid:
        raise BadAnswer("the cloud enrolled another uid%s" % _USED)
    endpoints = {}
    for name in ("mqtt", "coap"):
        value = _pick(answer, "endpoints", name)
        if value is not None and not isinstance(value, str):
            raise BadAnswer("the cloud's answer has a bad endpoints.%s%s" % (name, _USED))
        endpoints[name] = value
    record = {
        "uid": uid,
        "device_id": _typed(answer, int, "device", "id"),
        "kind": _typed(answer, str, "device", "kind"),
        "branch_id": _typed(answer, int, "device", "branch_id"),
        "cloud": cloud_url,
        "serial": "%x" % cert.serial_number,
        "not_after": cert.not_valid_after_utc.isoformat(),
        "renew_after": _typed(answer, str, "renew_after"),
        "enrolled_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "endpoints": endpoints,
        "topics": {
            name: _typed(answer, str, "topics", name) for name in ("up", "down", "branch_down")
        },
        "config": _typed(answer, dict, "config"),
    }
    reprovisioned = bool(answer.get("reprovisioned"))
    return _Answer(cert, chain, version, secret, record, reprovisioned)


# ---- the whole ---------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """One enrollment at a time per data folder."""
    files.private_folder(data_dir)
    with (data_dir / ".enroll.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EnrollError("another enrollment is running in %s" % data_dir) from None
        yield


def enroll(
    cloud_url: str,
    token: str,
    data_dir: Path,
    uid: str | None = None,
    force: bool = False,
    cafile: Path | None = None,
    timeout: float = TIMEOUT,
) -> Enrolled:
    """Enroll this gateway with the claim ``token`` at ``cloud_url`` and store its identity
    under ``data_dir`` (module docstring). Raises ``EnrollError`` (``CloudUnreachable``,
    ``CloudRefused``, ``BadAnswer``), ``AlreadyEnrolled``; nothing is written unless the
    identity is complete (and the old one, with ``force``, is kept aside)."""
    try:
        cloud_url = check_cloud_url(cloud_url)
    except ValueError as exc:
        raise EnrollError(str(exc)) from None
    token = token.strip()
    if not token:
        raise EnrollError("the claim token is empty")
    uid = check_uid(uid if uid is not None else machine_uid())
    try:
        with _locked(data_dir):
            return _enroll_locked(cloud_url, token, data_dir, uid, force, cafile, timeout)
    except OSError as exc:  # the data folder: permissions, full disk
        raise EnrollError(
            "cannot write the identity under %s: %s" % (data_dir, exc.strerror or exc)
        ) from None


def _enroll_locked(
    cloud_url: str,
    token: str,
    data_dir: Path,
    uid: str,
    force: bool,
    cafile: Path | None,
    timeout: float,
) -> Enrolled:
    folder = files.identity_folder(data_dir)
    if (folder.exists() or folder.is_symlink()) and not force:
        current = files.enrolled_uid(data_dir)
        raise AlreadyEnrolled(
            "this gateway is already enrolled%s (%s): --force enrolls again and keeps the "
            "current identity aside" % (" as %s" % current if current else "", folder)
        )
    key = ec.generate_private_key(ec.SECP256R1())
    with StagedIdentity(data_dir) as staged:
        staged.write(files.KEY_FILE, files.key_pem(key))
        answer = post_enrollment(cloud_url, token, make_csr(key, uid), cafile, timeout)
        try:
            checked = check_answer(answer, key, uid, cloud_url)
            pem = serialization.Encoding.PEM
            staged.write(files.CERT_FILE, checked.certificate.public_bytes(pem))
            staged.write(files.CHAIN_FILE, b"".join(c.public_bytes(pem) for c in checked.chain))
            staged.write(files.ENVELOPE_FILE, files.envelope_json(checked.version, checked.secret))
            staged.write(
                files.ENROLLMENT_FILE, json.dumps(checked.record, indent=2).encode() + b"\n"
            )
            replaced = staged.commit(force)
        except OSError as exc:
            raise EnrollError(
                "cannot write the identity under %s: %s%s" % (data_dir, exc.strerror or exc, _USED)
            ) from None
    try:
        identity = files.load_identity(data_dir)
    except GatewayError as exc:  # e.g. a umask that left the folder open to others
        raise EnrollError("the identity was written but cannot be used: %s" % exc) from None
    return Enrolled(identity, replaced, checked.reprovisioned)
