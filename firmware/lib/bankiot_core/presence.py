"""Presence: one ``enter`` and one ``leave`` per visit, from a noisy RSSI stream.

A customer standing at a kiosk is heard ten times a second at an RSSI that jumps by 10 dB
from one frame to the next. Three things turn that into exactly one ``enter`` and one
``leave``:

- smoothing: an exponential moving average in fixed point (sixteenths of a dBm, integers
  only): ``s += (alpha_pct * (16 * rssi - s) + 50) // 100``, starting at the first sample;
- hysteresis: ``enter`` when the average reaches ``enter_dbm`` (after at least
  ``min_samples`` samples); ``leave`` only when it falls below ``leave_dbm``, which is lower;
- a timeout: ``leave`` when the device has not been heard for ``timeout_ms`` (found by the
  pipeline's ``tick``, or by the next frame if no tick came in between); the average then
  starts again from the next sample.

``confidence`` (0..100) says how strongly the average says "here": 0 at or below the leave
threshold, 50 at the enter threshold, 100 one hysteresis band above it; a leave on timeout
has confidence 0.

State lives in the pipeline's per-device record (see ``filters``), packed into one small
int at slot ``base`` to keep the record short: ``average << 9 | samples << 1 | present``, the
average in sixteenths of a dBm (negative: the shifts are arithmetic), the number of samples
in it capped at 255, and 1 while present. Slot 0 of the record is the time the device was
last heard.
"""

from collections import namedtuple

from bankiot_core.ticks import elapsed

PresenceEvent = namedtuple("PresenceEvent", ("kind", "address", "at_ms", "rssi", "confidence"))
"""``kind`` is ``"enter"`` or ``"leave"``; ``address`` the device's identity address;
``at_ms`` the time of the decision as the caller gave it (``now_ms``); ``rssi`` the smoothed
RSSI in whole dBm (rounded); ``confidence`` 0..100 (see the module docstring)."""

ENTER = "enter"
LEAVE = "leave"

_MAX_SAMPLES = 255


class Presence:
    """Enter/leave with hysteresis, timeout and confidence, over the pipeline's records."""

    SLOTS = 1

    def __init__(self, config, base):
        self.enabled = config["presence"]
        self._enter = config["presence_enter_dbm"] * 16
        self._leave = config["presence_leave_dbm"] * 16
        self._band = self._enter - self._leave
        self._alpha = config["presence_alpha_pct"]
        self._min_samples = config["presence_min_samples"]
        self.timeout_ms = config["presence_timeout_ms"]
        self.base = base

    def fresh(self):
        """Initial slot values for a device just admitted: no samples, absent."""
        return [0]

    def confidence(self, s16):
        """0..100 for an average of ``s16`` sixteenths of a dBm (see the module docstring)."""
        c = (s16 - self._leave) * 50 // self._band
        if c < 0:
            return 0
        if c > 100:
            return 100
        return c

    def _leave_event(self, rec, key, now, confidence):
        # Keep the average, drop the presence bit.
        state = rec[self.base]
        rec[self.base] = state & ~1
        return PresenceEvent(LEAVE, key, now, ((state >> 9) + 8) >> 4, confidence)

    def expire(self, rec, key, now):
        """Before a device's frame is used: end a visit the device's silence already ended.

        Returns a ``leave`` event or None. Also restarts the average after such a silence.
        """
        if elapsed(now, rec[0]) < self.timeout_ms:
            return None
        state = rec[self.base]
        rec[self.base] = (state >> 9) << 9 | (state & 1)  # no samples any more
        if state & 1:
            return self._leave_event(rec, key, now, 0)
        return None

    def observe(self, rec, key, rssi, now):
        """Add one RSSI sample; return an ``enter`` or ``leave`` event or None.

        A missing RSSI (None, or 127 as HCI reports it) or one outside -127..20 dBm is not
        a sample.
        """
        if not self.enabled or rssi is None or rssi < -127 or rssi > 20:
            return None
        i = self.base
        state = rec[i]
        present = state & 1
        n = (state >> 1) & 0xFF
        x = rssi * 16
        if n == 0:
            s = x
        else:
            s = state >> 9
            s += (self._alpha * (x - s) + 50) // 100
        if n < _MAX_SAMPLES:
            n += 1
        event = None
        if present:
            if s < self._leave:
                present = 0
                event = PresenceEvent(LEAVE, key, now, (s + 8) >> 4, self.confidence(s))
        elif n >= self._min_samples and s >= self._enter:
            present = 1
            event = PresenceEvent(ENTER, key, now, (s + 8) >> 4, self.confidence(s))
        rec[i] = s << 9 | n << 1 | present
        return event

    def is_present(self, rec):
        """True while the device is between an ``enter`` and a ``leave``."""
        return (rec[self.base] & 1) == 1

    def leave_now(self, rec, key, now):
        """End a visit because the device is forgotten (evicted); a ``leave`` or None."""
        if rec[self.base] & 1:
            return self._leave_event(rec, key, now, 0)
        return None
