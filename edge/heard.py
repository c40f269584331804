"""What a radio source hands on: one ``Heard`` record per advertisement.

The Raspberry Pi gateway's sources (``edge.ble_source`` for the Pi's own adapter through
bleak, ``edge.serial_source`` for an ESP32 in radio mode on a UART) know nothing of the
gateway engine: each calls ``on_heard(Heard)`` on the event loop's thread, and the wiring
feeds the engine (``bankiot_core.gateway.Gateway``)::

    if heard.adv is not None:
        gateway.heard(heard.address, heard.rssi, heard.adv, now_ms)
    else:
        gateway.advertisement(heard.address, heard.rssi, heard.payload, now_ms)

``on_heard`` may be ``asyncio.Queue.put_nowait`` or any function that returns at once: it is
called from inside bleak's detection callback, where nothing may block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from bankiot_core.advdata import Advertisement


class Heard(NamedTuple):
    """One advertisement heard by one source.

    - ``source``: which radio heard it (``"ble:hci0"``, ``"serial:/dev/ttyUSB0"``), for
      per-adapter health;
    - ``address``: the device's 6-byte address in display order;
    - ``address_type``: 0 public, 1 random, 2 and 3 identity addresses (HCI), or None when
      the source does not say (bleak does not, portably);
    - ``rssi``: dBm;
    - ``adv``: an ``advdata.Advertisement`` (bleak's maps already turned into the core's
      record), or None when ``payload`` carries the raw AD structures instead;
    - ``payload``: the raw advertising data (from a serial radio), or None;
    - ``at_ms``: when it arrived, in milliseconds of ``time.monotonic``.
    """

    source: str
    address: bytes
    address_type: int | None
    rssi: int
    adv: Advertisement | None
    payload: bytes | None
    at_ms: int


OnHeard = Callable[[Heard], object]
"""What a source calls for every advertisement (its result is ignored)."""


def monotonic_ms() -> int:
    """Milliseconds of the monotonic clock, the time base of ``Heard.at_ms``."""
    return time.monotonic_ns() // 1_000_000
