"""Request and response schemas of the beacons and merchants API (OpenAPI via apiflask)."""

from __future__ import annotations

from apiflask import Schema
from apiflask.fields import Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range, Regexp

from cloud.fleet.beacons import KINDS
from cloud.fleet.schemas import MAX_ID
from cloud.identity.schemas import UTCDateTime

_ADDRESS = {
    "description": "the beacon's fixed radio address (AA:BB:CC:DD:EE:FF): with it, the "
    "branch's gateways listen for the beacon; without it, the beacon is known to the "
    "lookup only",
    "example": "C3:00:00:0A:1B:2C",
}


class BeaconIn(Schema):
    kind = String(required=True, validate=OneOf(KINDS))
    branch = Integer(
        validate=Range(1, MAX_ID), metadata={"description": "the branch it is at (or merchant)"}
    )
    merchant = Integer(
        validate=Range(1, MAX_ID), metadata={"description": "the merchant it is at (or branch)"}
    )
    uuid = String(
        validate=Length(32, 36),
        metadata={
            "description": "iBeacon proximity UUID",
            "example": "f7826da6-4fa2-4e98-8024-bc5b71e0893e",
        },
    )
    major = Integer(validate=Range(0, 0xFFFF), metadata={"description": "iBeacon major"})
    minor = Integer(validate=Range(0, 0xFFFF), metadata={"description": "iBeacon minor"})
    namespace = String(
        validate=Regexp(r"^[0-9A-Fa-f]{20}$"),
        metadata={"description": "Eddystone UID namespace, 20 hex digits"},
    )
    instance = String(
        validate=Regexp(r"^[0-9A-Fa-f]{12}$"),
        metadata={"description": "Eddystone UID instance, 12 hex digits"},
    )
    address = String(validate=Length(12, 17), metadata=_ADDRESS)
    label = String(load_default="", validate=Length(max=200))


class BeaconsQuery(Schema):
    branch = Integer(validate=Range(1, MAX_ID), metadata={"description": "a branch id"})
    merchant = Integer(validate=Range(1, MAX_ID), metadata={"description": "a merchant id"})


class PlaceOut(Schema):
    kind = String(required=True, validate=OneOf(("branch", "merchant")))
    id = Integer(required=True)
    name = String(required=True)


class BeaconOut(Schema):
    id = Integer(required=True)
    kind = String(required=True, validate=OneOf(KINDS))
    identifier = String(
        required=True,
        metadata={
            "description": "what it advertises, canonical: ibeacon:<uuid>:<major>:<minor> or "
            "eddystone:<namespace>:<instance>"
        },
    )
    uuid = String(allow_none=True, required=True)
    major = Integer(allow_none=True, required=True)
    minor = Integer(allow_none=True, required=True)
    namespace = String(allow_none=True, required=True)
    instance = String(allow_none=True, required=True)
    address = String(allow_none=True, required=True, metadata=_ADDRESS)
    branch_id = Integer(allow_none=True, required=True)
    merchant_id = Integer(allow_none=True, required=True)
    place = Nested(PlaceOut, required=True)
    label = String(required=True)
    created_at = UTCDateTime(required=True)
    created_by = String(required=True)


class BeaconsOut(Schema):
    beacons = List(Nested(BeaconOut), required=True)


class MerchantIn(Schema):
    name = String(required=True, validate=Length(1, 200))
    category = String(
        required=True,
        validate=Regexp(r"^[0-9]{4}$"),
        metadata={"description": "merchant category code, ISO 18245 (four digits)"},
    )


class MerchantOut(Schema):
    id = Integer(required=True)
    name = String(required=True)
    category = String(required=True)
    created_at = UTCDateTime(required=True)


class MerchantsOut(Schema):
    merchants = List(Nested(MerchantOut), required=True)


class BeaconAddedOut(BeaconOut):
    """A beacon just registered (its own name in the OpenAPI document)."""


class MerchantAddedOut(MerchantOut):
    """A merchant just added (its own name in the OpenAPI document)."""
