"""Identity and configuration from the files provisioning writes; nothing built in.

The board's identity mirrors the Raspberry Pi gateway's (``edge.identity``), one folder::

    /identity/enrollment.json  {"uid": "gw-...", "endpoints": {"mqtt": "mqtts://host:8883",
                                "coap": "coap://host:5683", "releases": "https://host"},
                                "config": {...settings...}}
    /identity/envelope.json    {"version": N, "secret": "<base64, 16 to 64 bytes>"}: sealing key
    /identity/device.crt       the device certificate (PEM or DER), CN = uid
    /identity/device.key       its private key (PEM or DER)
    /identity/ca.pem           the fleet CA the broker's certificate must chain to
    /config/wifi.json          {"ssid": "...", "key": "..."}
    /config/board.json         optional: {"mode": "gateway" | "radio"}

There are no default credentials anywhere: without ``enrollment.json`` and
``envelope.json`` the board is "not provisioned" (``NotProvisioned``) and says so on the
REPL. A file that is there but wrong raises ``ConfigError`` naming the file and the field.
A ``mqtts`` endpoint needs the certificate, key and CA files.
"""

import binascii
import json
from collections import namedtuple

from app import store
from bankiot_core.errors import ConfigError

IDENTITY_DIR = "/identity"
ENROLLMENT = "/identity/enrollment.json"
ENVELOPE = "/identity/envelope.json"
CERT = "/identity/device.crt"
KEY = "/identity/device.key"
CA = "/identity/ca.pem"
WIFI = "/config/wifi.json"
BOARD = "/config/board.json"

MODES = ("gateway", "radio")
_SCHEMES = {"mqtt": 1883, "mqtts": 8883, "coap": 5683}
_RELEASE_SCHEMES = {"http": 80, "https": 443}

Endpoint = namedtuple("Endpoint", ("scheme", "host", "port"))
"""One uplink endpoint: ``scheme`` ``mqtt``, ``mqtts`` or ``coap``."""

Identity = namedtuple("Identity", ("uid", "key_version", "secret", "endpoints", "settings", "tls"))
"""A provisioned board: ``endpoints`` maps ``mqtt``/``coap`` to an ``Endpoint``; ``tls`` is
``(cert, key, ca)`` paths, or None when no endpoint needs TLS. Never printed: it holds the
sealing secret."""

Wifi = namedtuple("Wifi", ("ssid", "key"))


class NotProvisioned(ConfigError):
    """The identity files are missing: provisioning has not run on this board."""


def parse_endpoint(url, schemes=None):
    """``scheme://host[:port]`` -> ``Endpoint``; ConfigError for anything else.
    ``schemes``: scheme -> default port (default: the uplinks' mqtt, mqtts, coap)."""
    schemes = schemes or _SCHEMES
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError("uplink endpoint %r is not scheme://host[:port]" % (url,))
    scheme, rest = url.split("://", 1)
    if scheme not in schemes:
        allowed = "mqtt, mqtts or coap" if schemes is _SCHEMES else "http or https"
        raise ConfigError("endpoint %r: scheme must be %s" % (url, allowed))
    rest = rest.rstrip("/")
    host = rest
    port = schemes[scheme]
    if ":" in rest:
        host, text = rest.rsplit(":", 1)
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise ConfigError("uplink endpoint %r: bad port" % url)
        port = int(text)
    if not host or "/" in host:
        raise ConfigError("uplink endpoint %r: bad host" % url)
    return Endpoint(scheme, host, port)


def _json(path, data):
    try:
        value = json.loads(data)
    except ValueError:
        raise ConfigError("%s is not JSON" % path) from None
    if not isinstance(value, dict):
        raise ConfigError("%s must hold a JSON object" % path)
    return value


def _field(path, record, name, kind):
    value = record.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError("%s: %s is missing or not a %s" % (path, name, kind.__name__))
    return value


def parse_identity(enrollment, envelope, have_tls_files=True):
    """The ``Identity`` in the bytes of ``enrollment.json`` and ``envelope.json``.

    ``have_tls_files``: whether the certificate, key and CA files exist (a ``mqtts``
    endpoint needs them). Raises ConfigError naming the file and field that are wrong.
    """
    record = _json(ENROLLMENT, enrollment)
    uid = _field(ENROLLMENT, record, "uid", str)
    if not uid or len(uid) > 64:
        raise ConfigError("%s: uid must be 1 to 64 characters" % ENROLLMENT)
    endpoints = {}
    urls = record.get("endpoints") or {}
    if not isinstance(urls, dict):
        raise ConfigError("%s: endpoints must be an object" % ENROLLMENT)
    for name in ("mqtt", "coap"):
        if urls.get(name):
            endpoint = parse_endpoint(urls[name])
            if not endpoint.scheme.startswith(name):
                raise ConfigError(
                    "%s: endpoints.%s is a %s URL" % (ENROLLMENT, name, endpoint.scheme)
                )
            endpoints[name] = endpoint
    if not endpoints:
        raise ConfigError("%s: no uplink endpoint (endpoints.mqtt or endpoints.coap)" % ENROLLMENT)
    if urls.get("releases"):  # where updates come from (``app.updates``); optional
        endpoints["releases"] = parse_endpoint(urls["releases"], _RELEASE_SCHEMES)
    settings = record.get("config") or {}
    if not isinstance(settings, dict):
        raise ConfigError("%s: config must be an object" % ENROLLMENT)
    sealing = _json(ENVELOPE, envelope)
    version = _field(ENVELOPE, sealing, "version", int)
    try:
        secret = binascii.a2b_base64(_field(ENVELOPE, sealing, "secret", str).encode())
    except ValueError:
        raise ConfigError("%s: secret must be base64" % ENVELOPE) from None
    if not 16 <= len(secret) <= 64:
        raise ConfigError("%s: secret must be 16 to 64 bytes" % ENVELOPE)
    tls = None
    mqtt = endpoints.get("mqtt")
    if mqtt is not None and mqtt.scheme == "mqtts":
        if not have_tls_files:
            raise ConfigError("%s: mqtts needs %s, %s and %s" % (ENROLLMENT, CERT, KEY, CA))
        tls = (CERT, KEY, CA)
    return Identity(uid, version, secret, endpoints, settings, tls)


def load_identity():
    """The board's ``Identity``; NotProvisioned if its files are missing (see module)."""
    enrollment = store.read(ENROLLMENT)
    envelope = store.read(ENVELOPE)
    if enrollment is None or envelope is None:
        raise NotProvisioned(
            "not provisioned: %s is missing; enroll this board with bankiot"
            % (ENROLLMENT if enrollment is None else ENVELOPE)
        )
    have_tls = store.exists(CERT) and store.exists(KEY) and store.exists(CA)
    return parse_identity(enrollment, envelope, have_tls)


def load_wifi():
    """The WiFi network to join (``/config/wifi.json``); NotProvisioned if it is missing."""
    data = store.read(WIFI)
    if data is None:
        raise NotProvisioned("not provisioned: %s is missing" % WIFI)
    record = _json(WIFI, data)
    ssid = _field(WIFI, record, "ssid", str)
    key = record.get("key", "")
    if not isinstance(key, str):
        raise ConfigError("%s: key must be text" % WIFI)
    return Wifi(ssid, key)


def load_mode():
    """``gateway`` (the default) or ``radio``, from ``/config/board.json``."""
    data = store.read(BOARD)
    if data is None:
        return "gateway"
    mode = _json(BOARD, data).get("mode", "gateway")
    if mode not in MODES:
        raise ConfigError("%s: mode must be gateway or radio, got %r" % (BOARD, mode))
    return mode
