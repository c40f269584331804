"""A gateway's sealing keys across a rotation: the current version and, during a rollover,
the previous one.

The same object serves both ends. The gateway seals with the current key
(``sealing_key()``, or ``cose.seal_with(ring, ...)``). The cloud opens with either key that
is still valid (``lookup`` is the ``key_lookup`` of ``cose.open_envelope``), because
batches sealed under the old version may still sit in the gateway's queue when the new
version arrives.

A rotation, step by step:

1. ``rotate(new_version, new_key)``: the new key becomes current, the old one previous.
   Versions only go up. Only two versions are ever valid: rotating again while a previous
   version is still valid raises ``LocalError`` (retire it first).
2. ``retire()``: the previous version stops opening anything, explicitly, when the operator
   (or the cloud, once the gateway's queue has drained past the rotation) says so. Its bytes
   are overwritten in the ring and its cached derivations dropped.

Keys are never shown: ``repr`` and every error name versions, never key bytes. Keys are 16
to 64 bytes (``cose`` derives the AES key and IV from them); versions are 0 to 65535 (they
travel in the COSE kid).
"""

from bankiot_core import cose
from bankiot_core.errors import ConfigError, LocalError

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _check_version(version):
    if type(version) is not int:
        raise ConfigError("key version must be an int, not %s" % type(version).__name__)
    if not 0 <= version <= cose.MAX_KEY_VERSION:
        raise ConfigError("key version %d is out of range 0..%d" % (version, cose.MAX_KEY_VERSION))


def _check_key(key, version):
    if not isinstance(key, _BYTES_LIKE):
        raise ConfigError("key of version %d must be bytes, not %s" % (version, type(key).__name__))
    if not 16 <= len(key) <= 64:
        raise ConfigError("key of version %d must be 16 to 64 bytes, not %d" % (version, len(key)))
    return bytearray(key)  # our own copy, so retiring can overwrite it


def _wipe(key):
    for i in range(len(key)):
        key[i] = 0


class KeyRing:
    """One gateway's keys: ``current`` (seals and opens) and maybe ``previous`` (opens only).

    ``gateway_id`` is bytes or str (kept as bytes); ``previous`` is ``(version, key)`` or
    None, for a ring restored in the middle of a rollover.
    """

    def __init__(self, gateway_id, version, key, previous=None):
        self.gateway_id = cose.gateway_bytes(gateway_id)
        _check_version(version)
        self._current = (version, _check_key(key, version))
        self._previous = None
        if previous is not None:
            old_version, old_key = previous
            _check_version(old_version)
            if old_version >= version:
                raise ConfigError(
                    "previous key version %d must be lower than current %d" % (old_version, version)
                )
            self._previous = (old_version, _check_key(old_key, old_version))

    @property
    def current_version(self):
        """The version that seals."""
        return self._current[0]

    @property
    def previous_version(self):
        """The version still accepted for opening during a rollover, or None."""
        return None if self._previous is None else self._previous[0]

    def versions(self):
        """The versions that open envelopes now, newest first."""
        if self._previous is None:
            return (self._current[0],)
        return (self._current[0], self._previous[0])

    def sealing_key(self):
        """``(version, key)`` to seal with: always the current version."""
        return self._current[0], bytes(self._current[1])

    def opening_key(self, version):
        """The key of ``version`` if it may open envelopes now, else None."""
        if version == self._current[0]:
            return bytes(self._current[1])
        if self._previous is not None and version == self._previous[0]:
            return bytes(self._previous[1])
        return None

    def lookup(self, gateway_id, version):
        """``cose.open_envelope``'s ``key_lookup``: the key, or None for another gateway."""
        if bytes(gateway_id) != self.gateway_id:
            return None
        return self.opening_key(version)

    def rotate(self, version, key):
        """Make ``(version, key)`` current; the current key becomes the previous one."""
        if self._previous is not None:
            raise LocalError(
                "key version %d is still valid: retire it before rotating to %d"
                % (self._previous[0], version)
            )
        _check_version(version)
        if version <= self._current[0]:
            raise ConfigError(
                "new key version %d must be higher than current %d" % (version, self._current[0])
            )
        new_key = _check_key(key, version)
        if new_key == self._current[1]:
            raise ConfigError("key version %d repeats the current key" % version)
        self._previous = self._current
        self._current = (version, new_key)

    def retire(self, version=None):
        """Stop accepting the previous version (``version`` checks which); return it."""
        if self._previous is None:
            raise LocalError("no previous key version to retire")
        old_version, old_key = self._previous
        if version is not None and version != old_version:
            raise ConfigError(
                "cannot retire version %r: the previous version is %d" % (version, old_version)
            )
        self._previous = None
        cose.forget_key(old_key)
        _wipe(old_key)
        return old_version

    def __repr__(self):
        return "KeyRing(gateway=%r, current=%d, previous=%r)" % (
            self.gateway_id,
            self._current[0],
            self.previous_version,
        )


def lookup_in(rings):
    """A ``key_lookup`` over ``rings``, a dict of gateway id (bytes) to ``KeyRing``."""

    def lookup(gateway_id, version):
        ring = rings.get(bytes(gateway_id))
        return None if ring is None else ring.lookup(gateway_id, version)

    return lookup
