"""Renewing the gateway's certificate before it expires, and rotating its key (``rotate_key``).

Device certificates are short-lived (30 days); the cloud says when to renew
(``renew_after``, two thirds into the validity), and ``enrollment.json`` keeps it.

**One renewal** (``renew``), under the data folder's enrollment lock:

1. reload the identity from disk (a runtime's copy may be older than the files) and make
   the CSR (CN = uid) with the current key, or with a new EC P-256 key, which is written
   into a private staging folder first (``edge.identity.StagedIdentity``), so that a full
   or read-only disk shows before the cloud issues anything;
2. POST ``{"certificate", "csr", "proof"}`` to ``/api/identity/renew``; with a new key,
   ``proof`` is the current key's ECDSA-SHA256 signature over the CSR's DER (the cloud's
   ``enrollment.renew``);
3. check the answer: the certificate is for this key and uid, the device is this one, and
   the certificate validates (``cryptography``'s path validation) up to the root this
   gateway already trusts: a renewal never changes whom the gateway trusts;
4. write the certificate, the chain, the unchanged envelope key and the updated enrollment
   record beside the key, then swap the staged folder with ``identity/`` in one
   ``renameat2(RENAME_EXCHANGE)``: a power cut leaves the old identity or the new one,
   never a key with another key's certificate. The old identity is then deleted (its key
   is no longer needed: the cloud keeps the presented certificate valid only so that a
   renewal whose answer was lost can be tried again). Where the kernel or C library cannot
   exchange, two renames do it (``StagedIdentity.commit``).

A refusal, an unreachable cloud or a bad answer is a ``RenewError`` with one line; the
identity on disk is then unchanged.

**In the runtime** (``Renewer``): a check every hour (jittered, the first a few minutes
after start) renews when ``due``, keeping the key (the cloud's usual case; ``rotate_key``
makes a new one). A failure is logged in one line and tried again after a jittered,
growing delay (1 minute doubling to the hourly check); it is never fatal: the certificate
stays valid for ten more days after ``renew_after``. The ``rotate_key`` command renews
with a new key at once and reports ``done`` ("certificate <serial> until <date>") or
``failed`` with the reason. Renewals run in a worker thread (the HTTP request blocks), one
at a time.

The MQTT link builds its TLS context from the identity's files once, when the link is
made, so a new certificate would not be seen by a reconnect. After a renewal the link is
given a fresh context from the new files (``use_new_certificate``): its next connection
presents the new certificate. The connection already up is not dropped: the broker checked
the old certificate when it connected, and that certificate stays valid (the cloud revokes
it only at the next renewal; the broker applies its CRL when it restarts).

Logging: INFO for a renewal, WARNING for a failure (one line). Never a key or a secret.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import random as _random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from bankiot_core.backoff import Backoff
from bankiot_core.batch import STATUS_DONE, STATUS_FAILED
from edge import identity as files
from edge.cloud_http import CAFileError, HttpRefused, Unreachable, post_json
from edge.enroll import MAX_ANSWER, TIMEOUT, make_csr
from edge.errors import GatewayError
from edge.identity import Identity, StagedIdentity
from edge.settings import check_cloud_url

if TYPE_CHECKING:
    from bankiot_core.gateway import Action
    from edge.runtime import GatewayRuntime

log = logging.getLogger(__name__)

RENEW_PATH = "/api/identity/renew"
LOCK_FILE = ".enroll.lock"  # the lock enrollment takes: one of the two at a time
CHECK_MS = 3_600_000  # how often the runtime looks at the certificate
FIRST_CHECK_MS = 300_000  # the first look, jittered within this after start
DETAIL_MAX = 200  # a command result's detail on the wire


class RenewError(GatewayError):
    """The certificate was not renewed; the identity on disk is unchanged."""


class RenewUnreachable(RenewError):
    """The cloud could not be reached (DNS, connection, TLS, timeout): try again later."""


class RenewRefused(RenewError):
    """The cloud answered with an error; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RenewBadAnswer(RenewError):
    """The cloud's answer is not a certificate for this gateway and key."""


# ---- when --------------------------------------------------------------------------------


def renew_after(identity: Identity) -> dt.datetime:
    """When ``identity``'s certificate should be renewed: the cloud's ``renew_after`` as
    recorded, else two thirds into the certificate's validity (the cloud's rule)."""
    if identity.renew_after is not None:
        return identity.renew_after
    cert = identity.certificate
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - validity / 3


def due(identity: Identity, now: dt.datetime) -> bool:
    """Whether ``identity``'s certificate should be renewed at ``now`` (aware, any zone)."""
    return now >= renew_after(identity)


# ---- one renewal ---------------------------------------------------------------------------


def post_renewal(
    cloud_url: str, body: dict[str, str], cafile: Path | None = None, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """POST ``body`` to the cloud's renewal endpoint; its JSON answer. Raises
    ``RenewUnreachable``, ``RenewRefused`` (with the cloud's message) or ``RenewBadAnswer``."""
    url = cloud_url + RENEW_PATH
    try:
        status, raw = post_json(url, body, cafile, timeout, MAX_ANSWER)
    except CAFileError as exc:
        raise RenewError(str(exc)) from None
    except HttpRefused as exc:
        raise RenewRefused(
            "the cloud refused the renewal (HTTP %d): %s" % (exc.status, exc.message), exc.status
        ) from None
    except Unreachable as exc:
        raise RenewUnreachable("cannot reach %s: %s" % (cloud_url, exc.reason)) from None
    try:
        answer = json.loads(raw) if status == 200 and len(raw) <= MAX_ANSWER else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise RenewBadAnswer("%s answered HTTP %d, not a certificate bundle" % (url, status))
    return answer


def _text(answer: dict[str, Any], *path: str) -> str:
    value: Any = answer
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    if not isinstance(value, str):
        raise RenewBadAnswer("the cloud's answer lacks %s" % ".".join(path))
    return value


def check_renewal(
    answer: dict[str, Any], key: ec.EllipticCurvePrivateKey, current: Identity, now: dt.datetime
) -> tuple[x509.Certificate, list[x509.Certificate], dt.datetime]:
    """The certificate, chain and ``renew_after`` of the cloud's answer, checked against
    the key sent and the current identity (module docstring, step 3); ``RenewBadAnswer``."""
    try:
        cert = x509.load_pem_x509_certificate(_text(answer, "certificate").encode())
        chain = x509.load_pem_x509_certificates(_text(answer, "ca_chain").encode())
    except ValueError:
        raise RenewBadAnswer("the cloud's certificate or CA chain is not PEM") from None
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not files.same_public_key(
        public, key.public_key()
    ):
        raise RenewBadAnswer("the cloud's certificate is not for the key sent")
    if files.common_name(cert) != current.uid or _text(answer, "device", "uid") != current.uid:
        raise RenewBadAnswer(
            "the cloud's certificate is for %r, not %r" % (files.common_name(cert), current.uid)
        )
    device_id = answer["device"].get("id")
    if type(device_id) is not int or device_id != current.device_id:
        raise RenewBadAnswer("the cloud renewed another device record")
    root = current.ca_chain[-1] if current.ca_chain else None
    if root is None or chain[-1:] != [root]:
        raise RenewBadAnswer("the cloud's CA chain does not end at the root this gateway trusts")
    verifier = PolicyBuilder().store(Store([root])).time(now).build_client_verifier()
    try:
        verifier.verify(cert, chain[:-1])
    except VerificationError as exc:
        raise RenewBadAnswer("the cloud's certificate does not validate: %s" % exc) from None
    try:
        after = dt.datetime.fromisoformat(_text(answer, "renew_after"))
    except ValueError:
        after = None
    if after is None or after.tzinfo is None:
        raise RenewBadAnswer("the cloud's renew_after is not an ISO 8601 time with its offset")
    return cert, chain, after


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """What enrollment locks: one enrollment or renewal at a time per data folder."""
    with (data_dir / LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RenewError("an enrollment or renewal is running in %s" % data_dir) from None
        yield


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux ``renameat2``); False where it is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # a C library without it (musl before 1.2.5)
        return False
    if renameat2(_AT_FDCWD, bytes(a), _AT_FDCWD, bytes(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL):  # kernel or file system without it
        return False
    raise OSError(code, os.strerror(code), str(a))


def _record(current: Identity, cert: x509.Certificate, after: dt.datetime) -> bytes:
    """The enrollment record, with the new certificate's serial and dates."""
    path = current.folder / files.ENROLLMENT_FILE
    record = json.loads(files.read_private(path, secret=False))
    record.update(
        serial="%x" % cert.serial_number,
        not_after=cert.not_valid_after_utc.isoformat(),
        renew_after=after.isoformat(),
        renewed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    return json.dumps(record, indent=2).encode() + b"\n"


def renew(
    identity: Identity,
    cloud_url: str,
    new_key: bool = False,
    cafile: Path | None = None,
    timeout: float = TIMEOUT,
) -> Identity:
    """Renew the certificate of the gateway whose identity is ``identity`` at ``cloud_url``
    (with a new key if ``new_key``) and store it (module docstring); the identity as
    reloaded from disk. Raises ``RenewError`` (``RenewUnreachable``, ``RenewRefused``,
    ``RenewBadAnswer``) or ``IdentityError``; on any error the identity on disk is unchanged."""
    try:
        cloud_url = check_cloud_url(cloud_url)
    except ValueError as exc:
        raise RenewError(str(exc)) from None
    data_dir = identity.folder.parent
    try:
        with _locked(data_dir):
            return _renew_locked(data_dir, identity.uid, cloud_url, new_key, cafile, timeout)
    except OSError as exc:  # the data folder: permissions, full disk
        raise RenewError(
            "cannot write the renewed identity under %s: %s" % (data_dir, exc.strerror or exc)
        ) from None


def _renew_locked(
    data_dir: Path, uid: str, cloud_url: str, new_key: bool, cafile: Path | None, timeout: float
) -> Identity:
    current = files.load_identity(data_dir)
    if current.uid != uid:
        raise RenewError("the identity in %s is now %s's, not %s's" % (data_dir, current.uid, uid))
    key = ec.generate_private_key(ec.SECP256R1()) if new_key else current.key
    csr_pem = make_csr(key, uid)
    proof = ""
    if new_key:
        der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
        proof = base64.b64encode(current.key.sign(der, ec.ECDSA(hashes.SHA256()))).decode()
    pem = serialization.Encoding.PEM
    with StagedIdentity(data_dir) as staged:
        staged.write(files.KEY_FILE, files.key_pem(key))
        body = {"certificate": current.certificate.public_bytes(pem).decode(), "csr": csr_pem}
        answer = post_renewal(cloud_url, {**body, "proof": proof}, cafile, timeout)
        cert, chain, after = check_renewal(answer, key, current, dt.datetime.now(dt.UTC))
        staged.write(files.CERT_FILE, cert.public_bytes(pem))
        staged.write(files.CHAIN_FILE, b"".join(c.public_bytes(pem) for c in chain))
        staged.write(
            files.ENVELOPE_FILE,
            files.envelope_json(current.envelope_version, current.envelope_secret),
        )
        staged.write(files.ENROLLMENT_FILE, _record(current, cert, after))
        if _exchange(staged.folder, current.folder):
            # The staged folder now holds the old identity: leaving the block uncommitted
            # deletes it, old key included.
            files._fsync_folder(data_dir)  # the exchange, durable
        else:
            replaced = staged.commit(force=True)
            if replaced is not None:
                shutil.rmtree(replaced, ignore_errors=True)
    return files.load_identity(data_dir)


# ---- in the runtime ------------------------------------------------------------------------


def use_new_certificate(uplinks: object, identity: Identity) -> int:
    """Give every MQTT-over-TLS link of ``uplinks`` a TLS context read from ``identity``'s
    files, so that its next connection presents the new certificate; how many links."""
    from edge.uplink_mqtt import MqttLink, tls_context

    changed = 0
    for link in getattr(uplinks, "links", {}).values():
        if isinstance(link, MqttLink) and link.tls is not None:
            link.tls = tls_context(
                identity.ca_chain_path, identity.certificate_path, identity.key_path
            )
            changed += 1
    return changed


def _when(cert: x509.Certificate) -> str:
    return cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


class Renewer:
    """Keeps the certificate of the gateway whose data folder is ``data_dir`` renewed, and
    carries out ``rotate_key`` (module docstring). ``cloud_url``: where to renew (the
    settings', else enrollment's); ``cafile``: trust for the cloud's HTTPS; ``clock``: the
    wall clock (aware UTC); ``random``: jitter in [0, 1); ``renew_fn``: ``renew``."""

    def __init__(
        self,
        data_dir: Path,
        cloud_url: str,
        cafile: Path | None = None,
        *,
        check_ms: int = CHECK_MS,
        backoff: Backoff | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        random: Callable[[], float] = _random.random,
        renew_fn: Callable[..., Identity] = renew,
    ) -> None:
        self.data_dir = data_dir
        self.cloud_url = cloud_url
        self.cafile = cafile
        self.check_ms = check_ms
        self.backoff = backoff if backoff is not None else Backoff(60_000, check_ms)
        self.clock = clock
        self.random = random
        self.renew_fn = renew_fn
        self.renewals = 0
        self.failures = 0
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Any, identity: Identity) -> Renewer:
        """The renewer ``gateway.toml`` and the enrolled identity describe."""
        return cls(
            Path(settings.data_dir),
            settings.cloud_url or identity.cloud_url,
            settings.cloud_cafile,
        )

    async def renew_now(self, runtime: GatewayRuntime, new_key: bool) -> Identity:
        """Renew (in a worker thread, one at a time) and make the uplinks use the result."""
        async with self._lock:
            current = await asyncio.to_thread(files.load_identity, self.data_dir)
            renewed = await asyncio.to_thread(
                self.renew_fn, current, self.cloud_url, new_key, self.cafile
            )
        self.renewals += 1
        if runtime.uplinks is not None:
            use_new_certificate(runtime.uplinks, renewed)
        log.info(
            "certificate renewed%s: %s until %s",
            " with a new key" if new_key else "",
            renewed.serial(),
            _when(renewed.certificate),
        )
        return renewed

    def accept(self, runtime: GatewayRuntime, action: Action, now_ms: int) -> asyncio.Task[None]:
        """Carry out ``rotate_key`` in a task; it reports done or failed."""
        return asyncio.ensure_future(self._rotate(runtime, action.command_id))

    async def _rotate(self, runtime: GatewayRuntime, command_id: int) -> None:
        try:
            renewed = await self.renew_now(runtime, new_key=True)
        except GatewayError as exc:
            self.failures += 1
            log.warning("rotate_key failed: %s", exc.message)
            status, detail = STATUS_FAILED, exc.message
        else:
            status = STATUS_DONE
            detail = "certificate %s until %s" % (renewed.serial(), _when(renewed.certificate))
        runtime.engine.report(command_id, status, detail[:DETAIL_MAX], runtime.clock())
        runtime.wake()

    async def check(self, runtime: GatewayRuntime) -> bool:
        """Renew if due; whether the check went through (not due, or renewed)."""
        try:
            current = await asyncio.to_thread(files.load_identity, self.data_dir)
            if due(current, self.clock()):
                await self.renew_now(runtime, new_key=False)
        except GatewayError as exc:
            self.failures += 1
            log.warning("certificate renewal failed (will try again): %s", exc.message)
            return False
        return True

    def next_check_ms(self, succeeded: bool | None) -> int:
        """The delay before the next check: after start (None) a few minutes, after a
        failure the backoff's, else about an hour (between 90 and 100 %), all jittered."""
        if succeeded is None:
            return int(self.random() * FIRST_CHECK_MS)
        if not succeeded:
            return self.backoff.next_delay(self.random)
        self.backoff.reset()
        return self.check_ms - int(self.random() * self.check_ms / 10)

    async def watch(self, runtime: GatewayRuntime, stop: asyncio.Event) -> None:
        """Check periodically until ``stop`` is set."""
        outcome: bool | None = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.next_check_ms(outcome) / 1000)
            if not stop.is_set():
                outcome = await self.check(runtime)
