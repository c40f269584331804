"""Radio mode: the board only listens, and streams what it hears to a Raspberry Pi over UART.

Each advertisement taken from the ring becomes one ``bankiot_core.radio`` advert message
inside one ``bankiot_core.framing`` frame (COBS + CRC-32, zero-delimited), written to the
UART; every ``status_interval_ms`` a status message carries the software version, uptime
and counters. The Pi's ``edge.serial_source`` reads them. No network, no keys: a radio
board needs no identity, only ``/config/board.json`` saying ``{"mode": "radio"}``.
"""

from bankiot_core import framing, radio
from bankiot_core.errors import CoreError
from bankiot_core.ticks import elapsed

_U32 = 0xFFFFFFFF


class RadioStreamer:
    """Frames from ``ring`` onto ``uart`` (anything with ``write(bytes)``)."""

    def __init__(self, uart, ring, software, status_interval_ms=10000):
        self.uart = uart
        self.ring = ring
        self.software = software
        self.status_interval_ms = status_interval_ms
        self.sent = 0
        self.refused = 0
        self.uart_errors = 0
        self._status_at = None
        self._uptime_ms = 0
        self._last = None

    def pump(self, now_ms, limit=32):
        """Frame and write up to ``limit`` advertisements, and a status when due."""
        if self._last is not None:
            self._uptime_ms += elapsed(now_ms, self._last)
        self._last = now_ms
        for _ in range(limit):
            item = self.ring.take()
            if item is None:
                break
            try:
                message = radio.encode_advert(item[0], item[1] & 3, item[2], item[3])
            except CoreError:
                self.refused += 1
                continue
            self._write(framing.encode_frame(message))
            self.sent += 1
        if self._status_at is None or elapsed(now_ms, self._status_at) >= self.status_interval_ms:
            self._status_at = now_ms
            self._write(framing.encode_frame(self.status()))

    def status(self):
        """The CBOR of a status message now."""
        counters = self.ring.counters()
        counters["sent"] = self.sent
        counters["refused"] = self.refused
        counters["uart_errors"] = self.uart_errors
        for name in counters:
            counters[name] &= _U32
        return radio.encode_status(self.software, (self._uptime_ms // 1000) & _U32, counters)

    def _write(self, frame):
        try:
            self.uart.write(frame)
        except OSError:
            self.uart_errors += 1
