"""A bounded ring of advertisements: the BLE IRQ copies into it, a task drains it.

The IRQ handler runs in the BLE stack's context with views into the stack's buffers that
are valid only during the call, so ``put`` copies byte by byte into one ``bytearray``
allocated at start (no allocation, no slicing) and returns. When the ring is full the new
advertisement is dropped and counted (``dropped``): the radio never waits for the gateway.
Advertising data longer than ``max_data`` is cut and counted (``truncated``); legacy
advertisements have at most 31 bytes.

Slot layout: address (6 bytes, as the stack gives it), address type, RSSI + 128, length,
data.
"""

from bankiot_core._compat import const

_HEAD = const(9)  # address 6, type 1, rssi 1, length 1


class AdvRing:
    """``slots`` advertisements of up to ``max_data`` bytes each (module docstring)."""

    def __init__(self, slots=32, max_data=31):
        if slots < 1 or not 1 <= max_data <= 255:
            raise ValueError("ring needs slots >= 1 and max_data in 1..255")
        self.slots = slots
        self.max_data = max_data
        self._stride = _HEAD + max_data
        self._buf = bytearray(slots * self._stride)
        self._head = 0  # oldest slot
        self._count = 0
        self.heard = 0
        self.dropped = 0
        self.truncated = 0

    def __len__(self):
        return self._count

    def put(self, addr_type, addr, rssi, data):
        """Copy one scan result in (IRQ context: no allocation); False if dropped."""
        self.heard += 1
        if self._count >= self.slots:
            self.dropped += 1
            return False
        index = self._head + self._count
        if index >= self.slots:
            index -= self.slots
        buf = self._buf
        o = index * self._stride
        for i in range(6):
            buf[o + i] = addr[i]
        buf[o + 6] = addr_type & 0xFF
        r = rssi + 128
        buf[o + 7] = 0 if r < 0 else (255 if r > 255 else r)
        n = len(data)
        if n > self.max_data:
            n = self.max_data
            self.truncated += 1
        buf[o + 8] = n
        o += _HEAD
        for i in range(n):
            buf[o + i] = data[i]
        self._count += 1
        return True

    def take(self):
        """The oldest advertisement as ``(address, addr_type, rssi, data)`` (new bytes
        objects), or None when the ring is empty. Task context only."""
        if not self._count:
            return None
        o = self._head * self._stride
        buf = self._buf
        address = bytes(buf[o : o + 6])
        addr_type = buf[o + 6]
        rssi = buf[o + 7] - 128
        n = buf[o + 8]
        data = bytes(buf[o + _HEAD : o + _HEAD + n])
        self._head += 1
        if self._head >= self.slots:
            self._head = 0
        self._count -= 1
        return address, addr_type, rssi, data

    def counters(self):
        """``scan_heard``, ``scan_dropped``, ``scan_truncated`` for health."""
        return {
            "scan_heard": self.heard,
            "scan_dropped": self.dropped,
            "scan_truncated": self.truncated,
        }
