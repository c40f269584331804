"""Intake: what the radio hears goes in, what the bank may and needs to see comes out.

The one object a gateway driver feeds: ``Intake.advertisement(address, rssi, payload,
now_ms)`` for raw advertising data (the ESP32/Pico W IRQ), ``Intake.heard(address, rssi,
adv, now_ms)`` for an ``advdata.Advertisement`` built from bleak's maps, and
``Intake.gatt(address, uuid, value, now_ms)`` for a wearable's GATT notification. Each
decodes (``dispatch``, ``gatt``), then filters (``filters.FilterPipeline``) and returns a
``filters.Output`` or None. ``tick(now_ms)`` returns the presence events silence caused.

Readings are forwarded without ``packet_id`` (it identifies the frame, it measures nothing),
and trigger-based devices (buttons) take no part in presence.

Bad input never escapes: a frame that claims a supported format and does not parse, fails
its MIC or replays a counter is dropped and counted by error class. A frame from a device
that is not paired is counted as ``frames_not_paired`` whatever went wrong decoding it, so
the counters reveal nothing about strangers' devices.

An encrypted frame that repeats the last accepted counter (``FLAG_REPEAT``) never forwards
readings again, however late it comes; it still counts as a radio sample for presence.

The frame id the duplicate filter sees is the authenticated counter of an encrypted BTHome
frame, else the format's packet id, else a hash of the readings (beacons carry no id).
"""

from bankiot_core.decoded import FLAG_REPEAT, FLAG_TRIGGER_BASED, DecodedFrame
from bankiot_core.dispatch import decode_advertisement, decode_payload
from bankiot_core.errors import AuthenticationError, DecodeError, ReplayError
from bankiot_core.filters import FilterPipeline
from bankiot_core.gatt import decode_gatt

_COUNTER_NAMES = (
    "frames_heard",
    "frames_unsupported",
    "frames_malformed",
    "frames_unauthenticated",
    "frames_replayed",
    "frames_repeated",
)


def _decode_gatt(item, address, keys):
    return decode_gatt(item[0], item[1], address)


class Intake:
    """Decode and filter everything one gateway hears.

    ``config`` is the filter configuration (``filterconfig``); ``keys`` maps device
    addresses (6 bytes, display order) to ``bthome.BindKey`` for encrypted devices; their
    replay state lives in those objects, so the driver can persist ``last_counter``.

    ``repeat_cache`` is how many paired devices' last frame (as heard, with what it
    decoded to) to remember, so that the frame a sensor repeats between measurements is not
    decoded again. It changes nothing but speed: a hit returns exactly what decoding would
    (see ``_cached``). It costs RAM per device, so the Raspberry Pi gateway turns it on and
    the boards leave it off (0).
    """

    def __init__(self, config=None, keys=None, block_cipher=None, repeat_cache=0):
        self.filters = FilterPipeline(config, block_cipher)
        self.keys = keys if keys is not None else {}
        self._cache_size = repeat_cache
        self._cache = {}
        self._counts = {}
        for name in _COUNTER_NAMES:
            self._counts[name] = 0

    def set_keys(self, keys):
        """Decode with ``keys`` from now on (a new map, as in the constructor): a device whose
        key is gone is not decoded from the next frame on, not even from the repeat cache."""
        self.keys = keys
        self._cache.clear()

    def advertisement(self, address, rssi, payload, now_ms):
        """Raw advertising data (AD structures) heard from ``address`` with ``rssi``."""
        return self._take(address, rssi, now_ms, decode_payload, payload)

    def heard(self, address, rssi, adv, now_ms):
        """An ``advdata.Advertisement`` (from bleak's maps) heard from ``address``."""
        return self._take(address, rssi, now_ms, decode_advertisement, adv)

    def gatt(self, address, uuid, value, now_ms):
        """A GATT value (e.g. Heart Rate Measurement) notified by a connected wearable."""
        return self._take(address, None, now_ms, _decode_gatt, (uuid, value))

    def tick(self, now_ms):
        """Housekeeping; returns presence events caused by silence (see FilterPipeline)."""
        return self.filters.tick(now_ms)

    def counters(self):
        """Intake and filter counters in one dict, for health reports."""
        out = dict(self._counts)
        out.update(self.filters.counters())
        return out

    def _take(self, address, rssi, now_ms, decode, data):
        self._counts["frames_heard"] += 1
        frame = self._cached(address, data) if self._cache_size else None
        if frame is None:
            try:
                frame = decode(data, address, self.keys)
            except (DecodeError, AuthenticationError, ReplayError) as exc:
                return self._dropped(address, exc)
            if self._cache_size and frame is not None and self.filters.is_paired(address):
                # Only paired devices: nothing a stranger sent is kept, even here.
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
                self._cache[address] = (data, frame)
        return self._filtered(address, rssi, frame, now_ms)

    def _cached(self, address, data):
        """The frame ``data`` decoded to last time ``address`` sent it, if decoding it now
        would give the same; else None."""
        entry = self._cache.get(address)
        if entry is None or entry[0] != data:
            return None
        frame = entry[1]
        if frame.counter is None:
            return frame  # plaintext decoding is a pure function of the bytes
        # Encrypted: decoding again finds the counter equal to the last accepted one and
        # marks the frame a repeat, unless the key's state moved on (then decode for real).
        key = self.keys.get(frame.address)
        if key is None or key.last_counter != frame.counter:
            return None
        return DecodedFrame(
            frame.address,
            frame.format,
            frame.readings,
            frame.packet_id,
            frame.counter,
            frame.flags | FLAG_REPEAT,
        )

    def _dropped(self, address, exc):
        if address is not None and not self.filters.is_paired(address):
            # Whatever a stranger's device sent, all we record is that it was not ours.
            self.filters.count_not_paired()
            return None
        if isinstance(exc, AuthenticationError):
            self._counts["frames_unauthenticated"] += 1
        elif isinstance(exc, ReplayError):
            self._counts["frames_replayed"] += 1
        else:
            self._counts["frames_malformed"] += 1
        return None

    def _filtered(self, address, rssi, frame, now_ms):
        if frame is None:
            if address is not None and not self.filters.is_paired(address):
                self.filters.count_not_paired()
            else:
                self._counts["frames_unsupported"] += 1
            return None
        source = frame.address if frame.address is not None else address
        if source is None:
            self._counts["frames_malformed"] += 1
            return None
        if frame.counter is not None:
            frame_id = frame.counter
        elif frame.packet_id is not None:
            frame_id = frame.packet_id
        else:
            try:
                frame_id = hash(frame.readings)
            except TypeError:  # a list value (RR intervals): no id, deadband decides
                frame_id = None
        readings = frame.readings
        if frame.flags & FLAG_REPEAT:
            # The last accepted counter again: the device repeating itself or a replay of
            # its latest frame. Never forwarded twice, however late; its RSSI still counts
            # for presence.
            self._counts["frames_repeated"] += 1
            readings = ()
        elif frame.packet_id is not None:
            # The packet id is the frame's identity (above), not a measurement.
            readings = _without_packet_id(readings)
        if frame.flags & FLAG_TRIGGER_BASED:
            # A button advertises only when pressed: its silence says nothing about where
            # it is, so it takes no part in presence.
            rssi = None
        return self.filters.process(source, rssi, now_ms, frame_id, readings)


def _without_packet_id(readings):
    for r in readings:
        if r.metric == "packet_id":
            return tuple([r for r in readings if r.metric != "packet_id"])
    return readings
