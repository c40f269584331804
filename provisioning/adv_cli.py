"""``bankiot adv``: decode what a sensor, beacon or wearable sends, for technicians.

The command runs the same portable decoders the gateways run, so what it prints is what a
gateway would forward (before the edge filters).
"""

from __future__ import annotations

import binascii
import json
from typing import Any

import click

from bankiot_core.address import mac_from_str, mac_to_str
from bankiot_core.advdata import advertisement_from_bleak, parse_advertisement, uuid_from_str
from bankiot_core.bthome import BindKey
from bankiot_core.decoded import (
    FLAG_ENCRYPTED,
    FLAG_MAC_INCLUDED,
    FLAG_PARTIAL,
    FLAG_REPEAT,
    FLAG_TRIGGER_BASED,
    DecodedFrame,
)
from bankiot_core.dispatch import decode_advertisement
from bankiot_core.errors import CoreError
from bankiot_core.gatt import decode_gatt

_FLAG_NAMES = (
    (FLAG_ENCRYPTED, "encrypted"),
    (FLAG_TRIGGER_BASED, "trigger_based"),
    (FLAG_MAC_INCLUDED, "mac_included"),
    (FLAG_REPEAT, "repeat"),
    (FLAG_PARTIAL, "partial"),
)


def _hex(what: str, text: str) -> bytes:
    cleaned = "".join(text.split()).replace(":", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    try:
        return binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError):
        raise click.ClickException("%s %r is not hex bytes" % (what, text)) from None


def _keyed_hex(what: str, text: str) -> tuple[str, bytes]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.ClickException("%s %r must look like KEY=HEX" % (what, text))
    return key, _hex(what, value)


def _int_id(what: str, text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise click.ClickException("%s id %r is not hex" % (what, text)) from None


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def frame_to_json(frame: DecodedFrame) -> dict[str, Any]:
    """The JSON object ``bankiot adv decode`` prints for a decoded frame."""
    return {
        "format": frame.format,
        "address": mac_to_str(frame.address) if frame.address else None,
        "readings": {r.metric: _json_value(r.value) for r in frame.readings},
        "units": {r.metric: r.unit for r in frame.readings if r.unit},
        "packet_id": frame.packet_id,
        "counter": frame.counter,
        "flags": [name for bit, name in _FLAG_NAMES if frame.flags & bit],
    }


@click.group()
def adv() -> None:
    """Decode BLE advertisements and GATT values."""


@adv.command("decode")
@click.argument("raw", nargs=-1)
@click.option(
    "--service-data",
    "service_data",
    multiple=True,
    metavar="UUID=HEX",
    help="Service data as bleak reports it, e.g. fcd2=4002c409 (repeatable).",
)
@click.option(
    "--manufacturer-data",
    "manufacturer_data",
    multiple=True,
    metavar="[ID=]HEX",
    help="Manufacturer data: ID=HEX as bleak reports it (4c=0215...), or HEX starting with "
    "the company id as sent on air (4c000215...).",
)
@click.option("--gatt", "gatt", metavar="UUID=HEX", help="A GATT value, e.g. 2a37=0648.")
@click.option("--mac", help="The advertiser's address, AA:BB:CC:DD:EE:FF.")
@click.option("--key", help="The device's BTHome bind key (32 hex digits).")
def decode_command(
    raw: tuple[str, ...],
    service_data: tuple[str, ...],
    manufacturer_data: tuple[str, ...],
    gatt: str | None,
    mac: str | None,
    key: str | None,
) -> None:
    """Decode one advertisement (RAW: its AD structures in hex, spaces allowed) and print
    one JSON object with its format, address, readings and flags.

    Exits non-zero with one line when the input cannot be decoded.
    """
    sources = sum(1 for s in (raw, service_data or manufacturer_data, gatt) if s)
    if sources != 1:
        raise click.UsageError(
            "give exactly one of: RAW hex, --service-data/--manufacturer-data, or --gatt"
        )
    try:
        address = mac_from_str(mac) if mac else None
        keys = None
        if key:
            if address is None:
                raise click.UsageError("--key needs --mac: the bind key belongs to an address")
            keys = {address: BindKey(key)}
        if gatt:
            uuid, value = _keyed_hex("--gatt", gatt)
            frame = decode_gatt(uuid_from_str(uuid), value, address)
        else:
            if raw:
                adv_record = parse_advertisement(_hex("advertisement", "".join(raw)))
            else:
                services = {}
                for item in service_data:
                    uuid, value = _keyed_hex("--service-data", item)
                    services[uuid_from_str(uuid)] = value
                makers = {}
                for item in manufacturer_data:
                    if "=" in item:
                        company, value = _keyed_hex("--manufacturer-data", item)
                        makers[_int_id("--manufacturer-data", company)] = value
                    else:
                        value = _hex("--manufacturer-data", item)
                        if len(value) < 2:
                            raise click.ClickException(
                                "--manufacturer-data needs at least the 2-byte company id"
                            )
                        makers[value[0] | (value[1] << 8)] = value[2:]
                adv_record = advertisement_from_bleak(services, makers)
            decoded = decode_advertisement(adv_record, address, keys)
            if decoded is None:
                raise click.ClickException(
                    "no supported format in this advertisement "
                    "(BTHome, ATC1441/pvvx, iBeacon, Eddystone)"
                )
            frame = decoded
    except CoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(frame_to_json(frame), sort_keys=True))
