"""What the kiosk tests share: a wearable's BTHome frames, a gateway runtime over SQLite with
the kiosk wired as ``runtime.build`` wires it, and the kiosk events found in its queue.

Frames are BTHome v2 (bthome.io) as ``tests/core/gateway_scenario.py`` builds them: flags,
service data 0xFCD2, device info 0x40 (v2, plain), then objects: 0x00 packet id (uint8,
which makes each frame new to the duplicate filter), 0x02 temperature (sint16 LE, x0.01
degC), 0x3A button (0x01: press).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from bankiot_core import batch, cose
from bankiot_core.backoff import Backoff
from bankiot_core.keyring import KeyRing
from edge import runtime
from edge.heard import Heard
from edge.kiosk.server import KioskPage, open_page
from edge.settings import KioskSettings
from edge.uplink import GatewayOutbox, Uplinks, uplink_aad
from edge.uplink_mqtt import MqttLink

SECRET = bytes(range(96, 128))  # a test secret, never a real key
WEARABLE = "A4:C1:38:00:00:01"
WEARABLE_ADDRESS = bytes.fromhex("A4C138000001")
# Presence on for the wearable, entered at -70 dBm after two samples (the defaults).
ENGINE_SETTINGS = {"paired": [WEARABLE], "presence": True, "batch_max_delay_ms": 200}
SERVICES = ("Accounts", "Cards", "Loans")


def frame(packet: int, *objects: bytes) -> bytes:
    """A BTHome v2 advertisement with packet id ``packet`` and the given objects."""
    body = bytes.fromhex("d2fc40") + bytes((0x00, packet & 0xFF)) + b"".join(objects)
    return bytes.fromhex("020106") + bytes((len(body) + 1, 0x16)) + body


def temperature(centi: int) -> bytes:
    return b"\x02" + struct.pack("<h", centi)


PRESS = b"\x3a\x01"


class Branch:
    """A gateway runtime with a kiosk, over SQLite in ``data_dir`` (no uplink unless given),
    built as ``runtime.build`` builds one."""

    def __init__(
        self,
        data_dir: Path,
        uid: str,
        port: int,
        clock: Any = None,
        resend_ms: int = 1000,
        **sources: Any,
    ) -> None:
        self.uid = uid
        self.ring = KeyRing(uid, 1, SECRET)
        engine = runtime.open_engine(
            data_dir,
            self.ring,
            uplink_aad(uid),
            "1.0.0",
            1 << 20,
            settings=ENGINE_SETTINGS,
            resend_ms=resend_ms,  # no cloud acknowledges: unacknowledged batches go again
        )
        options: dict[str, Any] = {} if clock is None else {"clock": clock}
        self.runtime = runtime.GatewayRuntime(engine, data_dir / runtime.STATE_FILE, **options)
        self.settings = KioskSettings(port=port, services=SERVICES, idle_timeout_s=60)
        self.page: KioskPage = open_page(self.settings, self.runtime, **sources)
        self.runtime.kiosk = self.page
        self.packet = 0

    def use_mqtt(self, host: str, port: int) -> Branch:
        """An MQTT uplink to the broker at ``host``:``port`` as the only link, with short
        backoffs (20 to 400 ms) so that a test sees it come back soon; this branch."""
        link = MqttLink(self.uid, host, port, keepalive_s=5)
        self.runtime.uplinks = Uplinks(
            GatewayOutbox(self.runtime.engine),
            {"mqtt": link},
            self.runtime.on_downlink,
            "mqtt",
            backoff=Backoff(20, 400),
            busy_backoff=Backoff(20, 400),
        )
        return self

    def hear(self, *objects: bytes, rssi: int = -50) -> None:
        """The wearable's radio sends one frame with ``objects``."""
        self.packet += 1
        payload = frame(self.packet, *objects)
        at = self.runtime.clock()
        self.runtime.on_heard(Heard("ble:hci0", WEARABLE_ADDRESS, 0, rssi, None, payload, at))

    def come_near(self) -> None:
        """Two strong frames: presence enters (two samples at -50 dBm, over -70)."""
        self.hear(temperature(2100))
        self.hear(temperature(2200))

    def kiosk_events(self) -> list[tuple[str, int, str | None, str]]:
        """The kiosk events sealed in the queue: ``(kind, id, wearable hex, detail)``."""
        return opened_kiosk_events(self.runtime.engine, self.ring, self.uid)


def kiosk_events_of(envelope: bytes, ring: KeyRing, uid: str) -> list[batch.KioskEvent]:
    """The kiosk records in one sealed batch, opened with the core as the cloud does."""
    opened = cose.open_envelope(envelope, ring.lookup, uplink_aad(uid))
    records = batch.decode_batch(opened.plaintext).records
    return [record for record in records if isinstance(record, batch.KioskEvent)]


def describe(event: batch.KioskEvent) -> tuple[str, int, str | None, str]:
    wearable = None if event.wearable is None else event.wearable.hex()
    return (batch.KIOSK_KINDS[event.kind], event.id, wearable, event.detail)


def opened_kiosk_events(
    engine: Any, ring: KeyRing, uid: str
) -> list[tuple[str, int, str | None, str]]:
    """Every kiosk event in ``engine``'s durable queue, in sequence order."""
    found = []
    for seq in engine.queue.seqs():
        envelope = engine.queue._storage.get(seq)
        found += [describe(event) for event in kiosk_events_of(envelope, ring, uid)]
    return found
