"""Bytes on the wire per reading: sealed CBOR batches against one JSON message per reading.

Goal (issue 4): under 1/5 of the reference.

The readings: one realistic 30-second batch window of a branch, 64 entries from 8 devices:

- 4 thermometers (pvvx/BTHome, 0.01 resolution): temperature and humidity every 10 s, battery
  once: 28 readings;
- 2 wearables: heart rate every 2 s: 30 readings;
- 2 customers' tags: presence enter and leave: 4 events;
- 2 button presses (a customer asking for service): 2 events.

The subject: ``bankiot_core.batcher.Batcher`` with its default limits (presence and buttons
leave at once in small urgent batches, the rest waits for the routine batch), each batch
sealed by ``bankiot_core.cose.seal`` (COSE_Encrypt0, AES-CCM-16-64-128, kid = gateway id +
key version, Partial IV = sequence number). Also shown: the same 64 entries as one single
batch (``batch.encode_batch``), the best case.

The reference, measured in the same run from the same readings: one JSON message per
reading, as ThingsBoard or a Theengs gateway publish them (compact JSON, the device address
in text, a millisecond timestamp), e.g. ``{"id":"A4:C1:38:00:00:01","temperature":21.37,
"ts":1700000000123}``; events as ``{"id":..,"presence":"enter","rssi":-58,"ts":..}``.

Two ratios: payload bytes only, and whole MQTT 3.1.1 PUBLISH packets at QoS 1 (fixed header,
topic, packet id), each side on its usual topic (``devices/<gateway>/batches``;
``home/TheengsGateway/BTtoMQTT/<address>``).

Run: ``.venv/bin/python bench/bytes_per_reading.py [--json]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bankiot_core import cose
from bankiot_core.batch import CLOCK_UNIX_MS, BatchReading, encode_batch
from bankiot_core.batcher import LANE_URGENT, Batcher
from bankiot_core.filters import Output
from bankiot_core.presence import PresenceEvent
from bankiot_core.readings import Reading
from bankiot_core.sequence import MemoryCounterStore, SequenceNumbers

GATEWAY = "gw-0042"
SECRET = bytes(range(32))
TOPIC = "devices/%s/batches" % GATEWAY
UNIX_AT_START = 1_700_000_000_000

THERMOMETERS = [bytes.fromhex("a4c1380000%02x" % i) for i in range(1, 5)]
WEARABLES = [bytes.fromhex("c0ffee0000%02x" % i) for i in range(1, 3)]
TAGS = [bytes.fromhex("d00d000000%02x" % i) for i in range(1, 3)]


def window(seed: int = 4) -> list[tuple[int, Output]]:
    """(ms since the window opened, what the filters let through), in time order."""
    rng = random.Random(seed)
    out: list[tuple[int, Output]] = []
    for n, address in enumerate(THERMOMETERS):
        for k in range(3):
            readings = [
                Reading("temperature", round(rng.uniform(19, 24), 2), "°C"),
                Reading("humidity", round(rng.uniform(35, 60), 2), "%"),
            ]
            if k == 0:
                readings.append(Reading("battery", rng.randint(60, 100), "%"))
            out.append((k * 10000 + n * 1700 + rng.randint(0, 300), Output(address, readings, ())))
    for n, address in enumerate(WEARABLES):
        for k in range(15):
            hr = Reading("heart_rate", rng.randint(62, 95), "bpm")
            out.append((k * 2000 + n * 500 + rng.randint(0, 100), Output(address, (hr,), ())))
    for n, address in enumerate(TAGS):
        enter = PresenceEvent("enter", address, 0, -58 - n, 71)
        leave = PresenceEvent("leave", address, 0, -91, 0)
        at = 3000 + n * 9000
        out.append((at, Output(address, (), (enter._replace(at_ms=at),))))
        press = Reading("button", "press", "event")
        out.append((at + 4000, Output(address, (press,), ())))
        out.append((at + 15000, Output(address, (), (leave._replace(at_ms=at + 15000),))))
    out.sort(key=lambda item: item[0])
    return out


def entries(stream: list[tuple[int, Output]]) -> int:
    return sum(len(o.readings) + len(o.events) for _, o in stream)


def mqtt_publish_size(topic: str, payload_len: int) -> int:
    """Bytes of an MQTT 3.1.1 PUBLISH at QoS 1 (section 3.3): fixed header, topic, packet id."""
    remaining = 2 + len(topic.encode()) + 2 + payload_len
    varint = 1
    while remaining >= 128**varint:
        varint += 1
    return 1 + varint + remaining


def seal(seq: int, plaintext: bytes) -> bytes:
    return cose.seal(SECRET, GATEWAY, 1, seq, plaintext, TOPIC.encode())


def bankiot_lanes(stream: list[tuple[int, Output]]) -> dict[str, Any]:
    """The subject: the batcher's lanes, every batch sealed."""
    batcher = Batcher(SequenceNumbers(MemoryCounterStore()))
    batcher.set_clock(0, UNIX_AT_START)
    ready = []
    for at, output in stream:
        ready += batcher.add(output, at)
    ready += batcher.flush()
    sealed = [seal(r.seq, r.payload) for r in ready]
    return {
        "batches": len(ready),
        "urgent_batches": sum(1 for r in ready if r.lane == LANE_URGENT),
        "plaintext_bytes": sum(len(r.payload) for r in ready),
        "sealed_bytes": sum(len(s) for s in sealed),
        "mqtt_bytes": sum(mqtt_publish_size(TOPIC, len(s)) for s in sealed),
    }


def bankiot_one_batch(stream: list[tuple[int, Output]]) -> dict[str, Any]:
    """All entries in one batch, sealed: the best case."""
    records: list[Any] = []
    for at, output in stream:
        records += [event._replace(at_ms=UNIX_AT_START + at) for event in output.events]
        records += [
            BatchReading(output.address, UNIX_AT_START + at, r.metric, r.value, r.unit)
            for r in output.readings
        ]
    plaintext = encode_batch(records, CLOCK_UNIX_MS)
    sealed = seal(0, plaintext)
    return {
        "batches": 1,
        "plaintext_bytes": len(plaintext),
        "sealed_bytes": len(sealed),
        "mqtt_bytes": mqtt_publish_size(TOPIC, len(sealed)),
    }


def address_text(address: bytes) -> str:
    return ":".join("%02X" % b for b in address)


def json_reference(stream: list[tuple[int, Output]]) -> dict[str, Any]:
    """One compact JSON message per reading or event, as ThingsBoard/Theengs publish."""
    payload = 0
    wire = 0
    messages = 0
    for at, output in stream:
        ident = address_text(output.address)
        topic = "home/TheengsGateway/BTtoMQTT/%s" % output.address.hex().upper()
        items: list[dict[str, Any]] = [
            {"id": ident, r.metric: r.value, "ts": UNIX_AT_START + at} for r in output.readings
        ]
        items += [
            {"id": ident, "presence": e.kind, "rssi": e.rssi, "ts": UNIX_AT_START + at}
            for e in output.events
        ]
        for item in items:
            body = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
            payload += len(body)
            wire += mqtt_publish_size(topic, len(body))
            messages += 1
    return {"messages": messages, "payload_bytes": payload, "mqtt_bytes": wire}


def main() -> None:
    parser = argparse.ArgumentParser(description="Bytes on the wire per reading, against JSON.")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    stream = window()
    n = entries(stream)
    lanes = bankiot_lanes(stream)
    single = bankiot_one_batch(stream)
    reference = json_reference(stream)
    figures = {
        "entries": n,
        "devices": len({o.address for _, o in stream}),
        "bankiot_lanes": lanes,
        "bankiot_one_batch": single,
        "json_per_reading": reference,
        "ratio_payload": lanes["sealed_bytes"] / reference["payload_bytes"],
        "ratio_mqtt": lanes["mqtt_bytes"] / reference["mqtt_bytes"],
        "ratio_payload_one_batch": single["sealed_bytes"] / reference["payload_bytes"],
        "ratio_mqtt_one_batch": single["mqtt_bytes"] / reference["mqtt_bytes"],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print("%d entries from %d devices" % (n, figures["devices"]))
    print(
        "bankiot, two lanes:   %d batches (%d urgent), %d B CBOR, %d B sealed = %.1f B/reading"
        % (
            lanes["batches"],
            lanes["urgent_batches"],
            lanes["plaintext_bytes"],
            lanes["sealed_bytes"],
            lanes["sealed_bytes"] / n,
        )
    )
    print(
        "bankiot, one batch:   %d B CBOR, %d B sealed = %.1f B/reading"
        % (single["plaintext_bytes"], single["sealed_bytes"], single["sealed_bytes"] / n)
    )
    print(
        "JSON, one per reading: %d messages, %d B = %.1f B/reading"
        % (reference["messages"], reference["payload_bytes"], reference["payload_bytes"] / n)
    )
    print(
        "ratio bankiot / JSON, payload: %.3f (one batch %.3f); as MQTT QoS 1 packets: %.3f "
        "(one batch %.3f); goal < 0.200"
        % (
            figures["ratio_payload"],
            figures["ratio_payload_one_batch"],
            figures["ratio_mqtt"],
            figures["ratio_mqtt_one_batch"],
        )
    )


if __name__ == "__main__":
    main()
