"""A board's identity, made on the technician's machine and redeemed with a claim.

A gateway on a Raspberry Pi makes its own key (``edge.enroll``). An ESP32 or Pico W could
make an EC P-256 key, but not the CSR: MicroPython has no X.509 or ECDSA signing, and doing
it in Python on the board would take minutes of big-integer arithmetic for one signature.
So ``bankiot flash`` makes the key and the CSR here, redeems the claim with the same
request and the same checks of the answer as ``bankiot gateway enroll``, and writes the
key to the board with the rest of the identity. The key and the envelope secret are only
ever in this process's memory (never in a file on this machine); :meth:`Provisioned.wipe`
overwrites the buffers that held them once the board has its copy. (Python does not
promise that no other copy of an object's bytes stays in freed memory: the process ends
right after.)

The files follow ``firmware/app/config.py``: ``/identity/enrollment.json`` (uid, uplink
endpoints and the ``releases`` endpoint, the initial configuration), ``envelope.json``,
``device.crt``, ``device.key``, ``ca.pem``, ``release_keys.json``, ``/config/wifi.json``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.enroll import check_answer, check_uid, make_csr, post_enrollment

IDENTITY_DIR = "/identity"
CONFIG_DIR = "/config"
ENROLLMENT = "/identity/enrollment.json"
ENVELOPE = "/identity/envelope.json"
CERT = "/identity/device.crt"
KEY = "/identity/device.key"
CA = "/identity/ca.pem"
RELEASE_KEYS = "/identity/release_keys.json"
WIFI = "/config/wifi.json"
PRIVATE = (KEY, ENVELOPE, WIFI)  # overwritten before removal when a board is wiped
# What a wipe (decommission) removes: the identity, the network secret, the device's data.
WIPED = (IDENTITY_DIR, WIFI, "/data", "/releases")


def device_uid(board: str, unique_id_hex: str) -> str:
    """The default uid of a board: its kind and ``machine.unique_id()`` in hex
    (``esp32-240ac4123456``). The ESP32's id is its WiFi MAC, which the board sends on air
    anyway, so it reveals nothing new; it stays the same across re-flashing."""
    if not re.fullmatch(r"[0-9a-f]{8,32}", unique_id_hex):
        raise ValueError("the board's unique id %r is not hex" % unique_id_hex[:40])
    return check_uid("%s-%s" % (board, unique_id_hex))


@dataclass
class Provisioned:
    """An enrolled board's identity, in memory: the files to write (device path -> bytes,
    private ones in ``bytearray`` so :meth:`wipe` can overwrite them) and the record."""

    uid: str
    device_id: int
    branch_id: int
    reprovisioned: bool
    files: dict[str, bytearray] = field(repr=False)

    def wipe(self) -> None:
        """Overwrite every file's bytes with zeros and forget them."""
        for data in self.files.values():
            data[:] = bytes(len(data))
        self.files.clear()


def _json(value: Any) -> bytearray:
    return bytearray(json.dumps(value, sort_keys=True).encode())


def enroll_board(
    cloud_url: str,
    token: str,
    uid: str,
    release_keys: Sequence[str] = (),
    wifi: tuple[str, str] | None = None,
    cafile: Path | None = None,
) -> Provisioned:
    """Make a key and CSR for ``uid``, redeem the claim ``token`` at ``cloud_url`` and
    return the board's identity files. Raises ``edge.errors.EnrollError`` (refused,
    unreachable, a bad answer) with a one-line message that never holds the token."""
    key = ec.generate_private_key(ec.SECP256R1())
    answer = post_enrollment(cloud_url, token, make_csr(key, uid), cafile)
    checked = check_answer(answer, key, uid, cloud_url)
    record = checked.record
    pem = serialization.Encoding.PEM
    key_pem = bytearray(
        key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    del key
    endpoints = {name: url for name, url in record["endpoints"].items() if url}
    endpoints["releases"] = cloud_url  # the cloud serves /releases/v1 (firmware.md)
    enrollment = {
        "uid": uid,
        "device_id": record["device_id"],
        "branch_id": record["branch_id"],
        "serial": record["serial"],
        "not_after": record["not_after"],
        "renew_after": record["renew_after"],
        "enrolled_at": record["enrolled_at"],
        "endpoints": endpoints,
        "config": record["config"],
    }
    envelope = {"version": checked.version, "secret": base64.b64encode(checked.secret).decode()}
    files = {
        ENROLLMENT: _json(enrollment),
        ENVELOPE: _json(envelope),
        CERT: bytearray(checked.certificate.public_bytes(pem)),
        KEY: key_pem,
        CA: bytearray(b"".join(c.public_bytes(pem) for c in checked.chain)),
        RELEASE_KEYS: _json({"keys": list(release_keys)}),
    }
    if wifi is not None:
        files[WIFI] = _json({"ssid": wifi[0], "key": wifi[1]})
    return Provisioned(uid, record["device_id"], record["branch_id"], checked.reprovisioned, files)
