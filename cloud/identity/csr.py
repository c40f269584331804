"""Certificate signing requests from devices: what is accepted, and device uids.

A CSR is accepted when it is one PEM ``CERTIFICATE REQUEST``, its self-signature checks
out (the sender holds the private key), its key is EC P-256, and its subject has exactly
one common name that is a valid device uid. Nothing else in the CSR is copied into the
certificate: extensions and other subject attributes a device asks for are ignored, the
CA decides them.

A uid is 1 to 64 characters of ``A-Z a-z 0-9 . _ -`` starting with a letter or digit: it
becomes the MQTT user name (``use_identity_as_username``) and a topic level, so it may
not hold ``/``, ``+``, ``#`` or spaces, and it fits the COSE kid (64 bytes). ``cloud`` is
reserved for the cloud's own broker identity.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud.identity.errors import InvalidCSR

UID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
RESERVED_UIDS = frozenset({"cloud"})
MAX_CSR_CHARS = 4096
_PEM_BEGIN = "-----BEGIN CERTIFICATE REQUEST-----"


def check_uid(uid: str) -> str:
    """``uid`` if it may name a device; ``InvalidCSR`` saying why not."""
    if not UID_PATTERN.match(uid):
        raise InvalidCSR(
            "device uid %r must be 1 to 64 of A-Z a-z 0-9 . _ - starting with a letter or digit"
            % uid[:80]
        )
    if uid.lower() in RESERVED_UIDS:
        raise InvalidCSR("device uid %r is reserved" % uid)
    return uid


def load_csr(text: str) -> x509.CertificateSigningRequest:
    """Parse one PEM CSR and check its signature and key; ``InvalidCSR`` if any fails."""
    if len(text) > MAX_CSR_CHARS:
        raise InvalidCSR("CSR is longer than %d characters" % MAX_CSR_CHARS)
    if text.count(_PEM_BEGIN) != 1:
        raise InvalidCSR("CSR must be exactly one PEM CERTIFICATE REQUEST block")
    try:
        csr = x509.load_pem_x509_csr(text.encode())
    except ValueError:
        raise InvalidCSR("CSR is not a valid PEM certificate request") from None
    try:
        key = csr.public_key()
        signed = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError):
        raise InvalidCSR("CSR uses an unsupported key or signature algorithm") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidCSR("CSR key must be EC P-256 (secp256r1)")
    if not signed:
        raise InvalidCSR("CSR signature does not verify")
    return csr


def csr_uid(csr: x509.CertificateSigningRequest) -> str:
    """The device uid the CSR asks for: its subject's only common name."""
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise InvalidCSR("CSR subject must have exactly one common name (the device uid)")
    value = names[0].value
    return check_uid(value if isinstance(value, str) else value.decode(errors="replace"))


def same_key(a: ec.EllipticCurvePublicKey, b: ec.EllipticCurvePublicKey) -> bool:
    """Whether two public keys are the same key."""
    return a.public_numbers() == b.public_numbers()


def csr_key(csr: x509.CertificateSigningRequest) -> ec.EllipticCurvePublicKey:
    """The CSR's public key (``load_csr`` checked it is P-256)."""
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key
