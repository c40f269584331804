"""The fleet certificate authority: an offline-able root and an online issuing CA (EC P-256).

Two tiers, as AWS IoT, Azure DPS and every bank PKI policy expect:

- the **root** (20 years) is made by ``bankiot cloud ca init`` in a folder of its own
  (``--root-dir``, by default next to the data folder, never inside it). Its key signs one
  thing: an issuing CA. Nothing online ever reads it: after ``ca init`` it can go to
  removable media or an HSM-backed vault. The data folder only keeps the root's
  certificate, the trust anchor for verification.
- the **issuing CA** (5 years, ``pathLen 0``) lives in ``DATA_DIR/ca/``; its key signs
  device certificates (30 days), the broker's server certificate, the cloud's client
  identity, and the CRL.

Keys are files of mode 0600 (``keyfiles``); with ``BANKIOT_ROOT_CA_PASSPHRASE`` /
``BANKIOT_CA_PASSPHRASE`` set they are also encrypted under that passphrase.

Certificates are shaped for ``cryptography``'s path validation and for OpenSSL in
Mosquitto: key identifiers on every certificate, critical basic constraints and key usage,
an extended key usage per purpose, and a SAN on each leaf (device leaves carry
``urn:bankiot:device:<uid>``; ``cryptography``'s client verifier requires a SAN). The
subject's CN is what Mosquitto's ``use_identity_as_username`` takes as the user name.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud.identity import keyfiles
from cloud.identity.errors import CAExists, CANotInitialised, InvalidRequest

ROOT_PASSPHRASE_VARIABLE = "BANKIOT_ROOT_CA_PASSPHRASE"
CA_PASSPHRASE_VARIABLE = "BANKIOT_CA_PASSPHRASE"

ROOT_VALIDITY = dt.timedelta(days=20 * 365)
ISSUING_VALIDITY = dt.timedelta(days=5 * 365)
DEVICE_VALIDITY = dt.timedelta(days=30)
SERVICE_VALIDITY = dt.timedelta(days=365)
BACKDATE = dt.timedelta(minutes=5)  # tolerate devices whose clocks run a little behind
CRL_LIFETIME = dt.timedelta(days=7)
CRL_FILE = "crl.pem"  # in the data folder, where Mosquitto's crlfile points

DEVICE_URN = "urn:bankiot:device:"
SERVICE_URN = "urn:bankiot:service:"
ORGANISATION = "bankiot"

PURPOSES = ("device", "service", "server")


@dataclass(frozen=True)
class CAPaths:
    """Where the online CA keeps its files inside the data folder."""

    folder: Path

    @classmethod
    def of(cls, data_dir: Path) -> CAPaths:
        """The CA files of the data folder ``data_dir``."""
        return cls(Path(data_dir) / "ca")

    @property
    def root_cert(self) -> Path:
        return self.folder / "root.pem"

    @property
    def issuing_cert(self) -> Path:
        return self.folder / "issuing.pem"

    @property
    def issuing_key(self) -> Path:
        return self.folder / "issuing.key"

    @property
    def chain(self) -> Path:
        """Issuing then root certificate: the ``cafile`` for Mosquitto and devices."""
        return self.folder / "chain.pem"


def default_root_dir(data_dir: Path) -> Path:
    """Next to the data folder, never inside it: ``bankiot-data`` -> ``bankiot-data-root-ca``."""
    data_dir = Path(data_dir).absolute()
    return data_dir.with_name(data_dir.name + "-root-ca")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Certificate | None,
    signer: ec.EllipticCurvePrivateKey,
    path_length: int,
    now: dt.datetime,
    validity: dt.timedelta,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def pem(*certificates: x509.Certificate) -> bytes:
    """PEM text of ``certificates``, concatenated."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def serial_hex(serial: int) -> str:
    """How the database and the audit log write a serial number: lower-case hex."""
    return "%x" % serial


class FleetCA:
    """The online issuing CA: signs leaf certificates and CRLs. Never holds the root key."""

    def __init__(
        self, root: x509.Certificate, issuing: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        self.root = root
        self.issuing = issuing
        self._key = key

    def __repr__(self) -> str:
        return "FleetCA(%s)" % self.issuing.subject.rfc4514_string()

    @property
    def chain_pem(self) -> bytes:
        """The issuing CA then the root: what a device or a broker needs to verify us."""
        return pem(self.issuing, self.root)

    def sign(
        self,
        public_key: ec.EllipticCurvePublicKey,
        common_name: str,
        purpose: str,
        now: dt.datetime,
        validity: dt.timedelta,
        hosts: Iterable[str] = (),
    ) -> x509.Certificate:
        """A leaf certificate for ``public_key``; ``purpose`` picks its extensions.

        ``device``: client authentication, SAN ``urn:bankiot:device:<cn>``; ``service``:
        client authentication (the cloud's own MQTT identity); ``server``: server
        authentication, SANs from ``hosts`` (names or IP addresses). The validity never
        outlasts the issuing CA.
        """
        if purpose not in PURPOSES:
            raise ValueError("purpose must be one of %s, not %r" % (", ".join(PURPOSES), purpose))
        not_after = min(now + validity, self.issuing.not_valid_after_utc)
        usage = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if purpose == "server"
            else (ExtendedKeyUsageOID.CLIENT_AUTH)
        )
        names: list[x509.GeneralName]
        if purpose == "server":
            names = [_host_name(host) for host in hosts] or [x509.DNSName(common_name)]
        elif purpose == "service":
            names = [x509.UniformResourceIdentifier(SERVICE_URN + common_name)]
        else:
            names = [x509.UniformResourceIdentifier(DEVICE_URN + common_name)]
        return (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.issuing.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )

    def sign_crl(
        self,
        revoked: Iterable[tuple[int, dt.datetime, str | None]],
        number: int,
        now: dt.datetime,
        next_update: dt.datetime,
    ) -> x509.CertificateRevocationList:
        """A CRL listing ``(serial, revoked_at, reason)``; ``reason`` a ReasonFlags value."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.issuing.subject)
            .last_update(now - BACKDATE)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        for serial, revoked_at, reason in revoked:
            entry = (
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
            )
            if reason and reason != x509.ReasonFlags.unspecified.value:
                # RFC 5280 5.3.1: "unspecified" is expressed by leaving the reason out
                entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags(reason)), False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self._key, hashes.SHA256())


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass(frozen=True)
class InitResult:
    """What ``init_ca`` made."""

    root_created: bool
    root_dir: Path
    paths: CAPaths
    issuing: x509.Certificate


def init_ca(
    data_dir: Path,
    root_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> InitResult:
    """Create the fleet CA: a root in ``root_dir`` (kept if one is there), an issuing CA
    in ``data_dir/ca`` signed by it, and a first empty CRL in ``data_dir/crl.pem``.

    Refuses (``CAExists``) when the data folder already has an issuing CA, and refuses a
    root folder inside the data folder: the root must be able to leave the online machine.
    """
    environ = os.environ if environ is None else environ
    now = now or dt.datetime.now(dt.UTC)
    data_dir = Path(data_dir).absolute()
    root_dir = Path(root_dir).absolute() if root_dir else default_root_dir(data_dir)
    if root_dir == data_dir or data_dir in root_dir.parents:
        raise InvalidRequest(
            "the root CA folder %s must not be inside the data folder %s" % (root_dir, data_dir)
        )
    paths = CAPaths.of(data_dir)
    if paths.issuing_key.exists() or paths.issuing_cert.exists():
        raise CAExists("the fleet CA already exists in %s" % paths.folder)
    root_key_path, root_cert_path = root_dir / "root.key", root_dir / "root.pem"
    root_secret = keyfiles.passphrase(environ, ROOT_PASSPHRASE_VARIABLE)
    root_created = not root_key_path.exists()
    if root_created:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = _ca_certificate(
            _name("bankiot fleet root CA"),
            root_key.public_key(),
            None,
            root_key,
            1,
            now,
            ROOT_VALIDITY,
        )
        keyfiles.write_private_key(root_key_path, root_key, root_secret)
        keyfiles.write_public(root_cert_path, pem(root))
    else:
        root_key = keyfiles.read_private_key(root_key_path, root_secret, ROOT_PASSPHRASE_VARIABLE)
        root = x509.load_pem_x509_certificate(root_cert_path.read_bytes())
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = _ca_certificate(
        _name("bankiot fleet issuing CA %s" % now.strftime("%Y-%m-%d")),
        issuing_key.public_key(),
        root,
        root_key,
        0,
        now,
        ISSUING_VALIDITY,
    )
    del root_key  # the root key's one job is done
    keyfiles.private_folder(paths.folder)
    keyfiles.write_private_key(
        paths.issuing_key, issuing_key, keyfiles.passphrase(environ, CA_PASSPHRASE_VARIABLE)
    )
    keyfiles.write_public(paths.issuing_cert, pem(issuing))
    keyfiles.write_public(paths.root_cert, pem(root))
    keyfiles.write_public(paths.chain, pem(issuing, root))
    # a first, empty CRL: a broker configured with crlfile can start right away
    first_crl = FleetCA(root, issuing, issuing_key).sign_crl([], 1, now, now + CRL_LIFETIME)
    keyfiles.write_public(data_dir / CRL_FILE, first_crl.public_bytes(serialization.Encoding.PEM))
    return InitResult(root_created, root_dir, paths, issuing)


def load_ca(data_dir: Path, environ: Mapping[str, str] | None = None) -> FleetCA:
    """The online issuing CA of ``data_dir``; ``CANotInitialised`` when there is none."""
    environ = os.environ if environ is None else environ
    paths = CAPaths.of(data_dir)
    if not paths.issuing_cert.exists():
        raise CANotInitialised(
            "the fleet CA is not initialised in %s: run `bankiot cloud ca init`" % paths.folder
        )
    key = keyfiles.read_private_key(
        paths.issuing_key,
        keyfiles.passphrase(environ, CA_PASSPHRASE_VARIABLE),
        CA_PASSPHRASE_VARIABLE,
    )
    issuing = x509.load_pem_x509_certificate(paths.issuing_cert.read_bytes())
    root = x509.load_pem_x509_certificate(paths.root_cert.read_bytes())
    return FleetCA(root, issuing, key)
