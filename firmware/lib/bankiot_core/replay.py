"""The opening side's replay window for one gateway's sequence numbers.

A sliding window as in IPsec anti-replay (RFC 4303 3.4.3) and OSCORE's replay protection
(RFC 8613 7.4): ``top`` is the highest sequence number accepted so far; bit ``i`` of the
integer ``bitmap`` says whether ``top - i`` was accepted. A sequence number is fresh if it
is above ``top``, or within the last ``size`` numbers and not yet accepted. Anything else
is a replay (already accepted) or too old (fell out of the window: it cannot be told apart
from a replay, so it is refused too).

Use it in two steps around authentication, as RFC 4303 does:

- ``check(seq)`` before opening (on ``cose.peek_envelope``'s unauthenticated seq): raises
  ``ReplayError`` for an obvious replay, changes nothing, so a forged envelope cannot move
  the window;
- ``accept(seq)`` after the envelope authenticated: checks again and records ``seq``.

Rejections are counted (``counters()``). The window is per gateway, not per key version:
a gateway's sequence numbers run on across key rotations.

``state()`` is the whole window as bytes for the cloud to persist (8 bytes of ``top``
big-endian, then the bitmap in ``size / 8`` bytes, big-endian; all zero before the first
accepted number); ``ReplayWindow.from_state(data)`` restores it. Sequence numbers are ints
from 0 to 2**64 - 1.
"""

from bankiot_core._compat import const
from bankiot_core.errors import ConfigError, DecodeError, ReplayError

DEFAULT_SIZE = const(64)
MAX_SIZE = const(1024)
_SEQ_LIMIT = 1 << 64  # not const(): larger than a small int on the boards
_TOP_BYTES = const(8)


def _check_size(size):
    if type(size) is not int or not 8 <= size <= MAX_SIZE or size % 8:
        raise ConfigError("replay window size must be a multiple of 8 from 8 to %d" % MAX_SIZE)


class ReplayWindow:
    """Anti-replay state of one gateway: ``size`` sequence numbers wide (default 64)."""

    def __init__(self, size=DEFAULT_SIZE):
        _check_size(size)
        self.size = size
        self.top = -1  # highest accepted sequence number; -1 before the first
        self.bitmap = 0  # bit i set: top - i was accepted
        self._mask = (1 << size) - 1
        self._counts = {"accepted": 0, "replayed": 0, "too_old": 0}

    def check(self, seq):
        """Raise ReplayError unless ``seq`` would be accepted now; change nothing else."""
        if type(seq) is not int:
            raise ConfigError("sequence number must be an int, not %s" % type(seq).__name__)
        if not 0 <= seq < _SEQ_LIMIT:
            raise DecodeError("sequence number %d is out of range 0..2**64-1" % seq)
        if seq > self.top:
            return
        offset = self.top - seq
        if offset >= self.size:
            self._counts["too_old"] += 1
            raise ReplayError(
                "sequence number %d is too old: the window starts at %d"
                % (seq, self.top - self.size + 1)
            )
        if (self.bitmap >> offset) & 1:
            self._counts["replayed"] += 1
            raise ReplayError("sequence number %d was already accepted" % seq)

    def accept(self, seq):
        """Record ``seq`` as accepted (its envelope authenticated); ReplayError if not fresh."""
        self.check(seq)
        if seq > self.top:
            shift = seq - self.top
            self.bitmap = ((self.bitmap << shift) | 1) & self._mask if shift < self.size else 1
            self.top = seq
        else:
            self.bitmap |= 1 << (self.top - seq)
        self._counts["accepted"] += 1

    def seen(self, seq):
        """True if ``seq`` was accepted and is still inside the window."""
        offset = self.top - seq
        return 0 <= offset < self.size and bool((self.bitmap >> offset) & 1)

    def counters(self):
        """``{"accepted": n, "replayed": n, "too_old": n}`` since this object was made."""
        return dict(self._counts)

    def state(self):
        """The window as bytes, to persist: top (8 bytes) then the bitmap (size / 8 bytes)."""
        top = self.top if self.top >= 0 else 0
        return top.to_bytes(_TOP_BYTES, "big") + self.bitmap.to_bytes(self.size // 8, "big")

    @classmethod
    def from_state(cls, data):
        """A window restored from ``state()``; its size is implied by the length."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError("replay window state must be bytes, not %s" % type(data).__name__)
        data = bytes(data)
        size = (len(data) - _TOP_BYTES) * 8
        if len(data) <= _TOP_BYTES or size > MAX_SIZE:
            raise DecodeError("replay window state of %d bytes has no valid size" % len(data))
        top = int.from_bytes(data[:_TOP_BYTES], "big")
        bitmap = int.from_bytes(data[_TOP_BYTES:], "big")
        if not bitmap & 1 and (bitmap or top):
            raise DecodeError("replay window state is inconsistent: top is not marked accepted")
        if top + 1 < size and bitmap >> (top + 1):
            raise DecodeError("replay window state marks sequence numbers below 0")
        window = cls(size)
        if bitmap:
            window.top = top
            window.bitmap = bitmap
        return window

    def __repr__(self):
        return "ReplayWindow(size=%d, top=%d, bitmap=0x%x)" % (self.size, self.top, self.bitmap)
