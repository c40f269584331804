"""Private Mosquitto brokers for tests: plain, TLS with client certificates, per-client ACLs.

Each broker is a real ``mosquitto`` process on a free loopback port with a generated
configuration in a temporary folder. Fixtures:

- ``mosquitto``: one plain anonymous broker for the whole session;
- ``mosquitto_tls``: one broker for the session that requires a client certificate, takes
  the certificate's CN as the username and applies the ACL ``pattern readwrite
  clients/%u/#`` (each client may only use its own subtree) plus a ``cloud`` user that may
  use every topic;
- ``mosquitto_factory``: builds brokers with any of these options for one test (stopped at
  its end), for tests that restart or kill a broker.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.environment import free_port, unavailable, wait_for_port
from tests.support.pki import CertFiles, TestCA

START_LIMIT_S = 60.0  # far above what a start needs: only a broker that never listens hits it

DEFAULT_TLS_ACL = """\
user cloud
topic readwrite #

pattern readwrite clients/%u/#
"""


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = 101) -> str:
    """Hash a password in Mosquitto 2's password-file format (``$7$``: PBKDF2-SHA512)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return "$7$%d$%s$%s" % (
        iterations,
        base64.b64encode(salt).decode(),
        base64.b64encode(digest).decode(),
    )


def find_mosquitto() -> str | None:
    """Path of the mosquitto executable, or None."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )


@dataclass
class MosquittoBroker:
    """A running private broker; ``restart()`` keeps its port, config and persistence."""

    folder: Path
    port: int
    tls: bool
    ca: TestCA | None
    executable: str
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.folder / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.folder / "mosquitto.log"

    def client_cert(self, common_name: str) -> CertFiles:
        """A client certificate signed by this broker's CA (TLS brokers only)."""
        if self.ca is None:
            raise ValueError("this broker was started without TLS")
        return self.ca.issue(common_name)

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [self.executable, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # A generous bound: a loaded CI machine can take seconds to start a process.
        if not wait_for_port(self.host, self.port, timeout=START_LIMIT_S):
            self.stop()
            log = self.log_path.read_text() if self.log_path.exists() else "(no log)"
            raise RuntimeError("mosquitto did not start on port %d:\n%s" % (self.port, log))

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker: SIGTERM (clean, saves persistence) or SIGKILL (a crash)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, *, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same port with the same state."""
        self.stop(kill=kill)
        self.start()


def write_config(
    folder: Path,
    port: int,
    *,
    ca: TestCA | None,
    acl: str | None,
    users: Mapping[str, str] | None,
    persistence: bool,
    extra: str,
) -> None:
    """Write mosquitto.conf (and password and ACL files) for one listener."""
    lines = [
        "user root" if os.geteuid() == 0 else "",
        "log_dest file %s" % (folder / "mosquitto.log"),
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "persistence %s" % ("true" if persistence else "false"),
        "persistence_location %s/" % folder,
        "listener %d 127.0.0.1" % port,
    ]
    if ca is not None:
        server = ca.issue("localhost", server=True)
        lines += [
            "cafile %s" % ca.cert_path,
            "certfile %s" % server.cert,
            "keyfile %s" % server.key,
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false" if users is None else "",
        ]
    if users is not None:
        passwords = folder / "passwords"
        passwords.write_text("".join("%s:%s\n" % (u, hash_password(p)) for u, p in users.items()))
        passwords.chmod(0o600)
        lines += ["password_file %s" % passwords, "allow_anonymous false"]
    elif ca is None:
        lines.append("allow_anonymous true")
    if acl is not None:
        acl_path = folder / "acl"
        acl_path.write_text(acl)
        lines.append("acl_file %s" % acl_path)
    lines.append(extra)
    (folder / "mosquitto.conf").write_text("\n".join(line for line in lines if line) + "\n")


def start_mosquitto(
    folder: Path,
    *,
    tls: bool = False,
    acl: str | None = None,
    users: Mapping[str, str] | None = None,
    persistence: bool = True,
    extra: str = "",
) -> MosquittoBroker:
    """Start a private broker in ``folder`` on a free port and return it.

    ``tls`` requires client certificates (CN becomes the username); ``users`` maps
    usernames to passwords (a password file); ``acl`` is the text of an ACL file;
    ``extra`` is appended to the configuration verbatim.
    """
    executable = find_mosquitto()
    if executable is None:
        raise FileNotFoundError("mosquitto not found: apt-get install mosquitto")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ca = TestCA(folder / "pki") if tls else None
    write_config(folder, port, ca=ca, acl=acl, users=users, persistence=persistence, extra=extra)
    broker = MosquittoBroker(folder=folder, port=port, tls=tls, ca=ca, executable=executable)
    broker.start()
    return broker


def _start_or_unavailable(folder: Path, **options) -> MosquittoBroker:
    try:
        return start_mosquitto(folder, **options)
    except FileNotFoundError as exc:
        unavailable(str(exc))
        raise


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A plain anonymous private broker shared by the session."""
    broker = _start_or_unavailable(tmp_path_factory.mktemp("mosquitto"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def mosquitto_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A private broker requiring client certificates, with per-client ACLs."""
    broker = _start_or_unavailable(
        tmp_path_factory.mktemp("mosquitto-tls"), tls=True, acl=DEFAULT_TLS_ACL
    )
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Start brokers with custom options (see ``start_mosquitto``) for one test."""
    brokers: list[MosquittoBroker] = []

    def make(**options) -> MosquittoBroker:
        broker = _start_or_unavailable(tmp_path / ("mosquitto-%d" % len(brokers)), **options)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()
