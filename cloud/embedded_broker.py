"""The broker of ``bankiot cloud up``: a private Mosquitto with the production configuration.

``prepare(config, host, port)`` makes sure ``DATA_DIR/broker/`` holds what
``cloud.identity.broker.write_broker_config`` writes (the broker's server certificate, the
cloud's client identity, ``mosquitto.conf``: mTLS with the fleet CA, certificate CN as user
name, the CRL, the per-device topic ACL) and returns an ``EmbeddedBroker`` to ``start()``
and ``stop()``. The certificates are made once and kept (each is recorded and audited);
``mosquitto.conf`` is rewritten on every start because the port may change.

Why Mosquitto and not an in-process broker (amqtt, MQTT 3.1.1): see docs/operations.md
("One machine: bankiot cloud up"). In short: the same broker, configuration and security as
in production (no anonymous access, a gateway only on its own topics, revoked certificates
refused), MQTT 5 for the ingest worker, and QoS 1 redelivery we already rely on.

``watch(broker, stop)`` sends the broker SIGHUP when the ACL changes (after every enrollment
and revocation), so a newly enrolled gateway's branch topics work without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from cloud.identity.broker import ACL_FILE, BrokerFiles, mosquitto_conf, write_broker_config
from cloud.identity.ca import CRL_FILE, load_ca
from cloud.identity.revocation import publish_crl

log = logging.getLogger(__name__)

FOLDER = "broker"
START_SECONDS = 10.0
STOP_SECONDS = 10.0
WATCH_SECONDS = 2.0
RENEW_BEFORE = dt.timedelta(days=7)  # certificates this close to expiry are made anew
WILDCARDS = ("", "0.0.0.0", "::")


class BrokerError(RuntimeError):
    """The embedded broker cannot be prepared or started; the message says why (one line)."""


def find_mosquitto() -> str | None:
    """Path of the ``mosquitto`` executable, or None."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )


@dataclass
class EmbeddedBroker:
    """A private Mosquitto on ``host:port`` configured from ``files``."""

    files: BrokerFiles
    host: str
    port: int
    executable: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """What gateways are told: ``mqtts://host:port`` (this machine's name when the
        broker listens on every address)."""
        host = socket.getfqdn() if self.host in WILDCARDS else self.host
        return "mqtts://%s:%d" % ("[%s]" % host if ":" in host else host, self.port)

    @property
    def log_path(self) -> Path:
        return self.files.config.parent / "mosquitto.log"

    def client_tls(self) -> ssl.SSLContext:
        """The ingest worker's TLS context: trusts the fleet CA, logs in as user ``cloud``."""
        context = ssl.create_default_context(cafile=str(self.files.ca))
        context.load_cert_chain(str(self.files.cloud_cert), str(self.files.cloud_key))
        return context

    @property
    def pid_path(self) -> Path:
        return self.files.config.parent / "mosquitto.pid"

    def stop_stale(self) -> bool:
        """Stop a Mosquitto a previous ``up`` started with this configuration and left
        running (``up`` was killed: the broker runs in a session of its own, so it outlives
        it, and would hold the port). True if there was one."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0")
        except (OSError, ValueError):
            return False
        if str(self.files.config).encode() not in cmdline:
            return False  # the number was reused by another process: not ours
        log.warning("a broker left by an earlier run (pid %d) is stopped", pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline and Path("/proc/%d" % pid).exists():
            time.sleep(0.05)
        if Path("/proc/%d" % pid).exists():
            os.kill(pid, signal.SIGKILL)
        return True

    def start(self) -> None:
        """Start Mosquitto and wait until it accepts connections (``BrokerError`` if not).
        A broker an earlier, killed ``up`` left running is stopped first."""
        self.stop_stale()
        with self.log_path.open("ab") as output:
            # A session of its own: Ctrl-C in the terminal reaches `up`, which stops the
            # broker last, after the worker has let its last acknowledgements out.
            self.process = subprocess.Popen(
                [self.executable, "-c", str(self.files.config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_path.write_text("%d\n" % self.process.pid)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(
                    "mosquitto exited at start (%s); see %s" % (self._last_log(), self.log_path)
                )
            try:
                with socket.create_connection((connect_host(self.host), self.port), 0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError("mosquitto did not listen on %s:%d" % (self.host, self.port))

    def reload(self) -> None:
        """Make Mosquitto re-read its ACL (SIGHUP)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)

    def stop(self) -> int | None:
        """Stop Mosquitto (SIGTERM, then SIGKILL after ``STOP_SECONDS``); its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("mosquitto did not stop in %.0f s: killed", STOP_SECONDS)
                self.process.kill()
                self.process.wait()
        self.pid_path.unlink(missing_ok=True)
        return self.process.returncode

    def _last_log(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no log"


def connect_host(host: str) -> str:
    """Where a local client connects to reach a listener on ``host``."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _files(data_dir: Path) -> BrokerFiles:
    out = data_dir / FOLDER
    return BrokerFiles(
        config=out / "mosquitto.conf",
        ca=out / "ca.pem",
        server_cert=out / "server.pem",
        server_key=out / "server.key",
        cloud_cert=out / "cloud.pem",
        cloud_key=out / "cloud.key",
        acl=data_dir / ACL_FILE,
        crl=data_dir / CRL_FILE,
    )


def _usable(files: BrokerFiles, hostnames: tuple[str, ...], now: dt.datetime) -> bool:
    """Whether the certificates of an earlier start can serve ``hostnames`` for a while."""
    try:
        server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        cloud = x509.load_pem_x509_certificate(files.cloud_cert.read_bytes())
    except (OSError, ValueError):
        return False
    if not (files.server_key.exists() and files.cloud_key.exists()):
        return False
    if min(server.not_valid_after_utc, cloud.not_valid_after_utc) - now < RENEW_BEFORE:
        return False
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(n) for n in san.get_values_for_type(x509.DNSName)}
    names |= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    return set(hostnames) <= names


def broker_hostnames(host: str) -> tuple[str, ...]:
    """The names the broker's certificate carries: local names, and ``host`` (this
    machine's name when ``host`` is every address)."""
    names = ["localhost", "127.0.0.1"]
    specific = socket.getfqdn() if host in WILDCARDS else host
    if specific not in names:
        names.append(specific)
    return tuple(names)


def conf_text(files: BrokerFiles, host: str, port: int) -> str:
    """The production ``mosquitto.conf`` plus what running it privately needs."""
    extra = [
        # As root, Mosquitto would switch to user "mosquitto", who cannot read the keys.
        "user root" if os.geteuid() == 0 else "",
        "log_dest stderr",
        "set_tcp_nodelay true",
        "",
    ]
    return mosquitto_conf(files, host, port) + "\n".join(line for line in extra if line) + "\n"


def prepare(config: dict[str, Any], host: str, port: int) -> EmbeddedBroker:
    """The embedded broker of ``config``'s data folder on ``host:port``, ready to start.

    Needs the fleet CA; issues the broker's and the cloud's certificates on first use and
    publishes the CRL and the ACL. ``BrokerError`` when Mosquitto is not installed.
    """
    from cloud.identity.broker import publish_acl
    from cloud.identity.keyfiles import write_public
    from cloud.people.commands import actor, database

    executable = find_mosquitto()
    if executable is None:
        raise BrokerError(
            "mosquitto is not installed (apt-get install mosquitto), "
            "or give --broker mqtt://HOST:PORT of a broker you run"
        )
    data_dir = Path(config["DATA_DIR"]).absolute()
    files = _files(data_dir)
    hostnames = broker_hostnames(host)
    now = dt.datetime.now(dt.UTC)
    ca = load_ca(data_dir)
    with database(config) as session:
        if not _usable(files, hostnames, now):
            files.config.unlink(missing_ok=True)  # write_broker_config refuses to overwrite
            files = write_broker_config(
                session, ca, data_dir, files.config.parent, host, port, hostnames, now, actor()
            )
            session.commit()
        if not files.crl.exists():
            publish_crl(session, ca, data_dir, now)
        publish_acl(session, data_dir, now)
    write_public(files.config, conf_text(files, host, port).encode())
    return EmbeddedBroker(files, host, port, executable)


def _mtimes(paths: tuple[Path, ...]) -> tuple[float, ...]:
    stamps = []
    for path in paths:
        try:
            stamps.append(path.stat().st_mtime)
        except OSError:
            stamps.append(0.0)
    return tuple(stamps)


async def watch(broker: EmbeddedBroker, stop: asyncio.Event) -> None:
    """SIGHUP the broker whenever the ACL file changes, until ``stop`` is set."""
    seen = _mtimes((broker.files.acl,))
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WATCH_SECONDS)
        now = _mtimes((broker.files.acl,))
        if now != seen:
            seen = now
            log.info("broker ACL changed: reloading the broker")
            broker.reload()
