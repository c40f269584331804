"""The gateway's identity on disk: where it lives, how it is written, and when it is refused.

Layout under the data folder (``data_dir`` in ``gateway.toml``)::

    <data_dir>/                      0700 when the gateway creates it
      identity/                      0700
        device.key        0600  secret  EC P-256 private key (PKCS#8 PEM); made on this machine
        device.crt        0600          the device certificate (PEM), CN = the device uid
        ca.pem            0600          the fleet CA chain (issuing CA, then root)
        envelope.json     0600  secret  {"version": N, "secret": base64}: the sealing key
        enrollment.json   0600          device id, uid, kind, branch, cloud, certificate
                                        serial and validity, uplink endpoints, topics,
                                        the initial configuration
      identity.replaced-<UTC time>/     an identity put aside by ``enroll --force``

Writing: every file is created with mode 0600 from the start (``os.open(..., 0o600)``, never a
``chmod`` afterwards, so no moment exists at which it is readable by others), written to a
temporary name, flushed with ``fsync`` and renamed into place (``write_private``). A whole
identity is assembled the same way in a fresh private folder beside ``identity/``
(``StagedIdentity``) and renamed to ``identity`` in one step, so a power cut leaves either the
old identity, or the new one, never a mixture.

Reading (``load_identity``) refuses, with one line (``InsecureFile``), a secret file (the key,
the envelope key) that group or others can read or write, any identity file or the folder that
another user owns, a folder others can enter, and symbolic links in place of any of them: a
gateway does not run with keys others could have read or swapped. The key is unencrypted on
purpose: the gateway starts unattended, and a passphrase would have to sit on the same disk.

Nothing here logs; ``Identity``'s ``repr`` leaves the key and the secret out.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bankiot_core.keyring import KeyRing
from edge.errors import IdentityCorrupt, InsecureFile, NotEnrolled
from edge.settings import GatewaySettings

IDENTITY_DIR = "identity"
REPLACED_PREFIX = "identity.replaced-"
KEY_FILE = "device.key"
CERT_FILE = "device.crt"
CHAIN_FILE = "ca.pem"
ENVELOPE_FILE = "envelope.json"
ENROLLMENT_FILE = "enrollment.json"
SECRET_FILES = (KEY_FILE, ENVELOPE_FILE)
FILES = (KEY_FILE, CERT_FILE, CHAIN_FILE, ENVELOPE_FILE, ENROLLMENT_FILE)
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def identity_folder(data_dir: Path) -> Path:
    """Where the identity of the gateway whose data folder is ``data_dir`` lives."""
    return data_dir / IDENTITY_DIR


@dataclass(frozen=True)
class Identity:
    """An enrolled gateway's identity, read and checked by ``load_identity``."""

    folder: Path
    uid: str
    device_id: int
    kind: str
    branch_id: int
    cloud_url: str
    certificate: x509.Certificate
    ca_chain: tuple[x509.Certificate, ...]
    envelope_version: int
    endpoints: Mapping[str, str | None]
    topics: Mapping[str, str]
    config: Mapping[str, Any]
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    envelope_secret: bytes = field(repr=False)
    renew_after: dt.datetime | None = None  # the cloud's hint (None: not recorded)

    @property
    def key_path(self) -> Path:
        """The private key's file (for TLS client authentication)."""
        return self.folder / KEY_FILE

    @property
    def certificate_path(self) -> Path:
        return self.folder / CERT_FILE

    @property
    def ca_chain_path(self) -> Path:
        """The fleet CA chain: what the gateway trusts for the broker's certificate."""
        return self.folder / CHAIN_FILE

    def serial(self) -> str:
        """The certificate's serial number, lower-case hex (as the cloud lists it)."""
        return "%x" % self.certificate.serial_number

    def keyring(self) -> KeyRing:
        """The sealing keys for ``bankiot_core.gateway.Gateway``."""
        return KeyRing(self.uid, self.envelope_version, self.envelope_secret)

    def summary(self) -> dict[str, Any]:
        """What may be shown to people: no key, no secret."""
        cert = self.certificate
        return {
            "uid": self.uid,
            "device_id": self.device_id,
            "kind": self.kind,
            "branch_id": self.branch_id,
            "cloud": self.cloud_url,
            "certificate": {
                "serial": self.serial(),
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "issuer": cert.issuer.rfc4514_string(),
            },
            "envelope_key_version": self.envelope_version,
            "endpoints": dict(self.endpoints),
            "topics": dict(self.topics),
            "folder": str(self.folder),
        }


def uplink_endpoints(settings: GatewaySettings, identity: Identity) -> dict[str, str | None]:
    """The uplink endpoints to use: ``gateway.toml``'s where set, else enrollment's."""
    return {
        "mqtt": settings.mqtt_url or identity.endpoints.get("mqtt"),
        "coap": settings.coap_url or identity.endpoints.get("coap"),
    }


# ---- writing ---------------------------------------------------------------------------


def private_folder(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700 if it does not exist."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _fsync_folder(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600: a new temporary file beside it
    (created 0600), fsync, rename over ``path``, fsync the folder."""
    fd, temporary = -1, path.with_name(".%s.%s.tmp" % (path.name, os.urandom(6).hex()))
    try:
        fd = os.open(temporary, _OPEN_NEW, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM (how ``device.key`` holds it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def envelope_json(version: int, secret: bytes) -> bytes:
    """The content of ``envelope.json``."""
    return json.dumps({"version": version, "secret": base64.b64encode(secret).decode()}).encode()


class StagedIdentity:
    """A new identity assembled in a private temporary folder beside ``identity/``, put in
    place by ``commit`` in one rename; use it as a context manager (discarded unless
    committed)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = private_folder(data_dir)
        self.folder = Path(tempfile.mkdtemp(prefix=".identity-new-", dir=data_dir))  # 0700
        self.committed = False

    def __enter__(self) -> StagedIdentity:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            shutil.rmtree(self.folder, ignore_errors=True)

    def write(self, name: str, data: bytes) -> None:
        """Write one identity file (``FILES``) into the staged folder."""
        if name not in FILES:
            raise ValueError("%r is not an identity file" % name)
        write_private(self.folder / name, data)

    def commit(self, force: bool = False) -> Path | None:
        """Put the staged identity in place. An existing one is refused (``FileExistsError``)
        unless ``force``, which renames it to ``identity.replaced-<UTC time>`` first;
        returns where it went (None: there was none)."""
        missing = [name for name in FILES if not (self.folder / name).exists()]
        if missing:
            raise ValueError("staged identity lacks %s" % ", ".join(missing))
        target = identity_folder(self.data_dir)
        replaced = None
        if target.exists() or target.is_symlink():
            if not force:
                raise FileExistsError("%s already exists" % target)
            replaced = _aside(self.data_dir)
            os.rename(target, replaced)
        os.rename(self.folder, target)
        self.committed = True
        _fsync_folder(self.data_dir)
        return replaced


def _aside(data_dir: Path) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate, n = data_dir / (REPLACED_PREFIX + stamp), 1
    while candidate.exists():
        n += 1
        candidate = data_dir / ("%s%s-%d" % (REPLACED_PREFIX, stamp, n))
    return candidate


# ---- reading ---------------------------------------------------------------------------


def _check_owner_and_mode(path: Path, info: os.stat_result, forbidden: int, what: str) -> None:
    if info.st_uid != os.geteuid():
        raise InsecureFile(
            "%s is owned by uid %d, not by the gateway's user (uid %d): the gateway refuses "
            "to use it" % (path, info.st_uid, os.geteuid())
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & forbidden:
        raise InsecureFile(
            "%s is %s by group or others (mode %04o): the gateway refuses to run with it; "
            "chmod %s it" % (path, what, mode, "700" if stat.S_ISDIR(info.st_mode) else "600")
        )


def _check_folder(folder: Path) -> None:
    try:
        info = folder.lstat()
    except FileNotFoundError:
        raise NotEnrolled(
            "%s does not exist: this gateway is not enrolled (bankiot gateway enroll)" % folder
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise InsecureFile("%s is not a folder (a symbolic link?): refused" % folder)
    _check_owner_and_mode(folder, info, 0o077, "accessible")


def read_private(path: Path, secret: bool) -> bytes:
    """The bytes of the identity file ``path`` after checking, on the open file itself, that
    it is a regular file (not a link) of this user, and for a ``secret`` one that group and
    others have no access; ``InsecureFile`` or ``IdentityCorrupt`` if not."""
    try:
        fd = os.open(path, _OPEN_READ)
    except FileNotFoundError:
        raise IdentityCorrupt("%s is missing: the identity is incomplete" % path) from None
    except OSError as exc:  # ELOOP: a symbolic link
        raise InsecureFile("%s cannot be opened safely: %s" % (path, exc.strerror)) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InsecureFile("%s is not a regular file: refused" % path)
        if secret:
            _check_owner_and_mode(path, info, 0o077, "readable")
        else:
            _check_owner_and_mode(path, info, 0o022, "writable")
        return f.read()


def _load_key(path: Path, data: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise IdentityCorrupt("%s is not an unencrypted PEM private key" % path) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise IdentityCorrupt("%s is not an EC P-256 key" % path)
    return key


def _load_certificates(path: Path, data: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise IdentityCorrupt("%s does not hold PEM certificates" % path) from None
    return certs


def _load_json(path: Path, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise IdentityCorrupt("%s is not valid JSON" % path) from None
    if not isinstance(value, dict):
        raise IdentityCorrupt("%s must hold a JSON object" % path)
    return value


def _envelope(path: Path, value: Mapping[str, Any]) -> tuple[int, bytes]:
    version = value.get("version")
    if type(version) is not int or not 0 <= version <= 0xFFFF:
        raise IdentityCorrupt("%s: version must be an integer from 0 to 65535" % path)
    try:
        secret = base64.b64decode(value.get("secret", ""), validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise IdentityCorrupt("%s: secret must be base64" % path) from None
    if not 16 <= len(secret) <= 64:
        raise IdentityCorrupt("%s: secret must be 16 to 64 bytes" % path)
    return version, secret


def common_name(cert: x509.Certificate) -> str | None:
    """The certificate subject's only common name, or None."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        return None
    return names[0].value


def same_public_key(a: ec.EllipticCurvePublicKey, b: ec.EllipticCurvePublicKey) -> bool:
    """Whether two public keys are the same key."""
    return a.public_numbers() == b.public_numbers()


def load_identity(data_dir: Path) -> Identity:
    """The identity of the gateway whose data folder is ``data_dir``, checked (module
    docstring). Raises ``NotEnrolled``, ``InsecureFile`` or ``IdentityCorrupt``."""
    folder = identity_folder(data_dir)
    _check_folder(folder)
    paths = {name: folder / name for name in FILES}
    raw = {name: read_private(path, name in SECRET_FILES) for name, path in paths.items()}
    key = _load_key(paths[KEY_FILE], raw[KEY_FILE])
    certs = _load_certificates(paths[CERT_FILE], raw[CERT_FILE])
    if len(certs) != 1:
        raise IdentityCorrupt("%s must hold exactly one certificate" % paths[CERT_FILE])
    chain = _load_certificates(paths[CHAIN_FILE], raw[CHAIN_FILE])
    version, secret = _envelope(
        paths[ENVELOPE_FILE], _load_json(paths[ENVELOPE_FILE], raw[ENVELOPE_FILE])
    )
    record = _load_json(paths[ENROLLMENT_FILE], raw[ENROLLMENT_FILE])
    cert = certs[0]
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not same_public_key(
        public, key.public_key()
    ):
        raise IdentityCorrupt(
            "%s is not the certificate of %s" % (paths[CERT_FILE], paths[KEY_FILE])
        )
    try:
        identity = Identity(
            folder=folder,
            uid=_field(record, "uid", str),
            device_id=_field(record, "device_id", int),
            kind=_field(record, "kind", str),
            branch_id=_field(record, "branch_id", int),
            cloud_url=_field(record, "cloud", str),
            certificate=cert,
            ca_chain=tuple(chain),
            envelope_version=version,
            endpoints=_field(record, "endpoints", dict),
            topics=_field(record, "topics", dict),
            config=_field(record, "config", dict),
            key=key,
            envelope_secret=secret,
            renew_after=_time(record, "renew_after"),
        )
    except KeyError as exc:
        raise IdentityCorrupt("%s: %s" % (paths[ENROLLMENT_FILE], exc.args[0])) from None
    if common_name(cert) != identity.uid:
        raise IdentityCorrupt(
            "%s is not for device %s (its CN is %r)"
            % (paths[CERT_FILE], identity.uid, common_name(cert))
        )
    return identity


def _field(record: Mapping[str, Any], name: str, kind: type) -> Any:
    value = record.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise KeyError("%s must be a %s" % (name, kind.__name__))
    return value


def _time(record: Mapping[str, Any], name: str) -> dt.datetime | None:
    """An ISO 8601 time with its offset from the record; None when absent."""
    value = record.get(name)
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise KeyError("%s must be an ISO 8601 time with its UTC offset" % name)
    return when


def enrolled_uid(data_dir: Path) -> str | None:
    """The uid recorded in an existing identity's ``enrollment.json`` (for messages), or
    None when there is none or it cannot be read."""
    try:
        record = json.loads((identity_folder(data_dir) / ENROLLMENT_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    uid = record.get("uid") if isinstance(record, dict) else None
    return uid if isinstance(uid, str) else None
