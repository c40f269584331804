"""The Raspberry Pi gateway's configuration file, ``gateway.toml``.

The file is read once at start (``load_settings``) into a frozen ``GatewaySettings``. Every
key is optional; a missing key takes its default. Unknown keys, wrong types and values out of
range are refused with one line naming the file and the key (``SettingsError``): a gateway
never runs on a configuration it half understood. Relative paths are relative to the file's
folder. The default location is ``/etc/bankiot/gateway.toml`` (``BANKIOT_GATEWAY_CONFIG``
names another).

What the cloud configures later (filters, batching, the uplink it prefers: CONFIG downlink
messages, ``bankiot_core.gatewayconfig``) is not here: this file holds what the gateway must
know before it can reach the cloud, and what belongs to the machine (radios, ports, disk).

Example, every key with its default unless marked::

    data_dir = "/var/lib/bankiot"     # identity, queue and state; created with mode 0700
    software_version = "0.1.0"        # reported to the cloud (default: this package's)

    [cloud]
    url = "https://cloud.bank.example"  # no default; `gateway enroll --cloud` may give it
    cafile = "/etc/bankiot/cloud-ca.pem"  # trust this CA for the cloud's HTTPS
                                          # (default: the system's trust store)

    [uplink]
    prefer = "mqtt"                   # "mqtt" or "coap": tried first, the other is the fallback
    mqtt = "mqtts://mqtt.bank.example:8883"  # default: what enrollment received
    coap = "coaps://coap.bank.example"       # default: what enrollment received

    [queue]
    capacity_bytes = 67108864         # sealed batches kept while the uplink is down (64 MiB);
                                      # past it the oldest are dropped and counted

    [sources]
    ble = ["hci0"]                    # BlueZ adapters to scan with; [] for none
    serial = [{ port = "/dev/ttyUSB0", baud = 115200 }]  # ESP32 radios over UART (default: none)

    [updates]                         # signed software updates (edge/updates.py)
    release_keys = ["/etc/bankiot/release-2026.pub"]  # trusted release keys (default: none,
                                      # and every update is refused); never from the network
    trial_minutes = 10                # a new version must be heard by the cloud within this
    max_starts = 3                    # ... and start at most this often; else rolled back
    allow_downgrade = false           # true: accept a release older than the one running

    [kiosk]                           # a screen in the branch (edge/kiosk); absent: no kiosk
    listen = "127.0.0.1:8080"         # the page for Chromium: a loopback address and port
    ticket_prefix = "A"               # tickets A001, A002, ... (1 to 3 letters or digits)
    services = ["Accounts", "Cards", "Loans", "Savings and investments"]  # what a customer
                                      # may ask for (1 to 12, each at most 64 bytes)
    idle_timeout_s = 60               # a screen left alone this long returns to welcome

Rules: ``cloud.url`` is ``https://`` (certificate verified), or ``http://`` to this machine's
loopback address only (``127.0.0.1``, ``::1``, ``localhost``: tests and a cloud on the same
box), never plain HTTP over a network. Uplink endpoints are ``mqtt(s)://host[:port]`` and
``coap(s)://host[:port]``. Adapters are ``hciN``; serial ports are device paths or pyserial
URLs (``socket://``, ``rfc2217://``), each at most once; baud rates 1200 to 4000000.
The kiosk's page listens on the loopback address only (its API has no login: Chromium on the
same machine is its only client).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bankiot_core
from edge.errors import SettingsError

DEFAULT_CONFIG = Path("/etc/bankiot/gateway.toml")
CONFIG_ENV = "BANKIOT_GATEWAY_CONFIG"
DEFAULT_DATA_DIR = Path("/var/lib/bankiot")
DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024
TRIAL_MINUTES_RANGE = (1, 24 * 60)
MAX_STARTS_RANGE = (1, 100)
QUEUE_BYTES_RANGE = (64 * 1024, 64 * 1024 * 1024 * 1024)
BAUD_RANGE = (1200, 4_000_000)
UPLINKS = ("mqtt", "coap")
ENDPOINT_SCHEMES = {"mqtt": ("mqtt", "mqtts"), "coap": ("coap", "coaps")}
_ADAPTER = re.compile(r"hci[0-9]{1,3}\Z")
_LOOPBACK_NAMES = frozenset({"localhost"})
_TICKET_PREFIX = re.compile(r"[A-Z0-9]{1,3}\Z")
DEFAULT_SERVICES = ("Accounts", "Cards", "Loans", "Savings and investments")
IDLE_TIMEOUT_RANGE = (10, 3600)
MAX_SERVICES = 12
MAX_SERVICE_BYTES = 64  # bankiot_core.batch.MAX_KIOSK_DETAIL_BYTES: the service goes on the wire


@dataclass(frozen=True)
class BleSource:
    """A BlueZ adapter to scan with (``hci0``)."""

    adapter: str


@dataclass(frozen=True)
class SerialSource:
    """An ESP32 in radio mode on a serial port (a device path or a pyserial URL)."""

    port: str
    baud: int = 115200


@dataclass(frozen=True)
class KioskSettings:
    """The branch kiosk's ``[kiosk]`` table (module docstring)."""

    host: str = "127.0.0.1"
    port: int = 8080
    ticket_prefix: str = "A"
    services: tuple[str, ...] = DEFAULT_SERVICES
    idle_timeout_s: int = 60


@dataclass(frozen=True)
class GatewaySettings:
    """A gateway's settings from ``gateway.toml`` (module docstring); ``path`` is the file
    they came from (None: defaults only)."""

    path: Path | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    software_version: str = bankiot_core.VERSION
    cloud_url: str | None = None
    cloud_cafile: Path | None = None
    uplink: str = "mqtt"
    mqtt_url: str | None = None
    coap_url: str | None = None
    queue_capacity_bytes: int = DEFAULT_QUEUE_BYTES
    ble: tuple[BleSource, ...] = (BleSource("hci0"),)
    serial: tuple[SerialSource, ...] = field(default=())
    release_keys: tuple[Path, ...] = field(default=())
    update_trial_minutes: int = 10
    update_max_starts: int = 3
    allow_downgrade: bool = False
    kiosk: KioskSettings | None = None  # None: no [kiosk] table, no kiosk


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, as in a URL) is this machine's loopback."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_cloud_url(url: str) -> str:
    """``url`` without a trailing slash if the gateway may talk to it: ``https://``, or
    ``http://`` to the loopback address only. ``ValueError`` saying why not."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    if parsed.scheme not in ("https", "http") or not host:
        raise ValueError("%r is not an https:// URL" % url)
    if parsed.scheme == "http" and not is_loopback(host):
        raise ValueError(
            "%r: plain http is allowed only to this machine (127.0.0.1, ::1, localhost); "
            "use https://" % url
        )
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValueError("%r: the cloud URL takes no query, fragment or credentials" % url)
    return url.rstrip("/")


def _check_endpoint(kind: str, url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    schemes = ENDPOINT_SCHEMES[kind]
    try:
        parsed.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise ValueError("%r has a bad port" % url) from None
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ValueError("%r is not a %s://host[:port] URL" % (url, " or ".join(schemes)))
    return url


class _Table:
    """One TOML table being read: takes keys, then refuses whatever was not taken."""

    def __init__(self, file: str, prefix: str, data: Mapping[str, Any]) -> None:
        self.file = file
        self.prefix = prefix
        self.data = data
        self.taken: set[str] = set()

    def fail(self, key: str, message: str) -> SettingsError:
        return SettingsError("%s: %s%s %s" % (self.file, self.prefix, key, message))

    def take(self, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        """The value of ``key`` (None if absent) if it is a ``kind``, said as ``what``."""
        self.taken.add(key)
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.fail(key, "must be %s, got %r" % (what, value))
        return value

    def table(self, key: str) -> _Table:
        value = self.take(key, dict, "a table")
        return _Table(self.file, "%s%s." % (self.prefix, key), value or {})

    def integer(self, key: str, low: int, high: int, default: int) -> int:
        value = self.take(key, int, "an integer")
        if value is None:
            return default
        if not low <= value <= high:
            raise self.fail(key, "must be from %d to %d, got %d" % (low, high, value))
        return value

    def text(self, key: str) -> str | None:
        value = self.take(key, str, "a string")
        if value is not None and not value:
            raise self.fail(key, "must not be empty")
        return value

    def checked(self, key: str, check: Any) -> str | None:
        value = self.text(key)
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as exc:
            raise self.fail(key, "is refused: %s" % exc) from None

    def path(self, key: str, base: Path) -> Path | None:
        value = self.text(key)
        return None if value is None else base / Path(value).expanduser()

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.taken)
        if unknown:
            raise self.fail(
                unknown[0], "is not a known key (known here: %s)" % ", ".join(sorted(self.taken))
            )


def parse_settings(data: Mapping[str, Any], path: Path | None = None) -> GatewaySettings:
    """``GatewaySettings`` from the parsed TOML ``data`` (of the file ``path``, which names
    it in errors and anchors relative paths). Raises ``SettingsError``."""
    base = path.parent if path is not None else Path.cwd()
    top = _Table(str(path) if path is not None else "gateway settings", "", data)
    data_dir = top.path("data_dir", base) or DEFAULT_DATA_DIR
    version = top.text("software_version") or bankiot_core.VERSION
    if len(version.encode()) > 32:
        raise top.fail("software_version", "must be at most 32 bytes, got %r" % version)

    cloud = top.table("cloud")
    cloud_url = cloud.checked("url", check_cloud_url)
    cafile = cloud.path("cafile", base)
    cloud.done()

    uplink = top.table("uplink")
    prefer = uplink.text("prefer") or "mqtt"
    if prefer not in UPLINKS:
        raise uplink.fail("prefer", "must be one of %s, got %r" % (", ".join(UPLINKS), prefer))
    mqtt = uplink.checked("mqtt", lambda url: _check_endpoint("mqtt", url))
    coap = uplink.checked("coap", lambda url: _check_endpoint("coap", url))
    uplink.done()

    queue = top.table("queue")
    capacity = queue.integer("capacity_bytes", *QUEUE_BYTES_RANGE, DEFAULT_QUEUE_BYTES)
    queue.done()

    sources = top.table("sources")
    ble, serial = _ble_sources(sources), _serial_sources(sources)
    sources.done()

    updates = top.table("updates")
    key_names = updates.take("release_keys", list, "a list of public key files")
    if any(not isinstance(name, str) or not name for name in key_names or ()):
        raise updates.fail("release_keys", "must list file paths")
    release_keys = tuple(base / Path(name).expanduser() for name in key_names or ())
    trial_minutes = updates.integer("trial_minutes", *TRIAL_MINUTES_RANGE, 10)
    max_starts = updates.integer("max_starts", *MAX_STARTS_RANGE, 3)
    allow_downgrade = bool(updates.take("allow_downgrade", bool, "true or false"))
    updates.done()
    kiosk = _kiosk(top.table("kiosk")) if "kiosk" in data else None
    top.done()
    return GatewaySettings(
        path=path,
        data_dir=data_dir,
        software_version=version,
        cloud_url=cloud_url,
        cloud_cafile=cafile,
        uplink=prefer,
        mqtt_url=mqtt,
        coap_url=coap,
        queue_capacity_bytes=capacity,
        ble=ble,
        serial=serial,
        release_keys=release_keys,
        update_trial_minutes=trial_minutes,
        update_max_starts=max_starts,
        allow_downgrade=allow_downgrade,
        kiosk=kiosk,
    )


def _listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) on the loopback address; ValueError why not."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("%r is not host:port with a port from 1 to 65535" % value)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("%r: the host must be an IP address such as 127.0.0.1" % value) from None
    if not address.is_loopback:
        raise ValueError("%r: the kiosk page listens on the loopback address only" % value)
    return str(address), int(port)


def _kiosk(table: _Table) -> KioskSettings:
    listen = table.text("listen")
    host, port = KioskSettings.host, KioskSettings.port
    if listen is not None:
        try:
            host, port = _listen(listen)
        except ValueError as exc:
            raise table.fail("listen", "is refused: %s" % exc) from None
    prefix = table.text("ticket_prefix") or KioskSettings.ticket_prefix
    if not _TICKET_PREFIX.match(prefix):
        raise table.fail(
            "ticket_prefix", "must be 1 to 3 capital letters or digits, got %r" % prefix
        )
    names = table.take("services", list, "a list of service names")
    services = DEFAULT_SERVICES if names is None else tuple(names)
    if not 1 <= len(services) <= MAX_SERVICES:
        raise table.fail("services", "must list 1 to %d services" % MAX_SERVICES)
    for name in services:
        if not isinstance(name, str) or not name.strip():
            raise table.fail("services", "lists %r: each service is a non-empty name" % (name,))
        if len(name.encode()) > MAX_SERVICE_BYTES:
            raise table.fail(
                "services", "lists %r: longer than %d bytes" % (name, MAX_SERVICE_BYTES)
            )
    if len(set(services)) != len(services):
        raise table.fail("services", "lists a service twice")
    idle = table.integer("idle_timeout_s", *IDLE_TIMEOUT_RANGE, KioskSettings.idle_timeout_s)
    table.done()
    return KioskSettings(host, port, prefix, services, idle)


def _ble_sources(sources: _Table) -> tuple[BleSource, ...]:
    names = sources.take("ble", list, "a list of adapter names")
    if names is None:
        return GatewaySettings.ble
    for name in names:
        if not isinstance(name, str) or not _ADAPTER.match(name):
            raise sources.fail("ble", "lists %r: adapters are named hci0, hci1, ..." % (name,))
    if len(set(names)) != len(names):
        raise sources.fail("ble", "lists an adapter twice")
    return tuple(BleSource(name) for name in names)


def _serial_sources(sources: _Table) -> tuple[SerialSource, ...]:
    entries = sources.take("serial", list, "a list of {port, baud} tables")
    found: list[SerialSource] = []
    for n, entry in enumerate(entries or ()):
        if not isinstance(entry, dict):
            raise sources.fail("serial", "entry %d must be a table {port, baud}" % (n + 1))
        table = _Table(sources.file, "%sserial[%d]." % (sources.prefix, n + 1), entry)
        port = table.text("port")
        if port is None:
            raise table.fail("port", "is required")
        baud = table.integer("baud", *BAUD_RANGE, SerialSource.baud)
        table.done()
        if any(source.port == port for source in found):
            raise table.fail("port", "%r is listed twice" % port)
        found.append(SerialSource(port, baud))
    return tuple(found)


def load_settings(path: Path) -> GatewaySettings:
    """Read and check the ``gateway.toml`` at ``path``. Raises ``SettingsError``."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError("%s: configuration file does not exist" % path) from None
    except OSError as exc:
        raise SettingsError("%s: cannot read: %s" % (path, exc.strerror or exc)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError("%s: not valid TOML: %s" % (path, exc)) from None
    return parse_settings(data, path)


def find_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> GatewaySettings:
    """The settings a command runs with: the file at ``path`` if given (it must exist), else
    ``$BANKIOT_GATEWAY_CONFIG`` (must exist), else ``/etc/bankiot/gateway.toml`` if it
    exists, else the defaults."""
    environ = os.environ if environ is None else environ
    if path is not None:
        return load_settings(path)
    if environ.get(CONFIG_ENV):
        return load_settings(Path(environ[CONFIG_ENV]))
    if DEFAULT_CONFIG.exists():
        return load_settings(DEFAULT_CONFIG)
    return GatewaySettings()
