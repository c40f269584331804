"""Where ingest gets gateways' envelope keys: the ``KeySource`` protocol.

Ingest only reads keys; the identity area issues, rotates and revokes them. A source
answers two questions about a gateway (its id as the bytes of the COSE kid):

- ``lookup(gateway_id, key_version)``: the secret of that key version if it may open
  envelopes now, else None (unknown gateway, retired, revoked or future version). It has the
  signature of ``cose.open_envelope``'s ``key_lookup``.
- ``is_revoked(gateway_id)``: True when the gateway itself is revoked (decommissioned,
  compromised): nothing it sends is stored, whatever key it uses.

``MemoryKeySource`` holds ``KeyRing`` objects in memory: tests, benches, and a demo without
an identity database.
"""

from __future__ import annotations

import threading
from typing import Protocol

from bankiot_core.keyring import KeyRing


class KeySource(Protocol):
    """Envelope keys and revocation status of gateways (see the module docstring)."""

    def lookup(self, gateway_id: bytes, key_version: int) -> bytes | None:
        """The secret of ``gateway_id``'s ``key_version``, or None if it opens nothing."""
        ...

    def is_revoked(self, gateway_id: bytes) -> bool:
        """True if ``gateway_id`` is revoked."""
        ...


class MemoryKeySource:
    """A ``KeySource`` over key rings in memory; thread-safe (ingest calls it from threads)."""

    def __init__(self, rings: list[KeyRing] | None = None) -> None:
        self._rings: dict[bytes, KeyRing] = {}
        self._revoked: set[bytes] = set()
        self._lock = threading.Lock()
        for ring in rings or ():
            self.add(ring)

    def add(self, ring: KeyRing) -> None:
        """Know ``ring``'s gateway (replacing what was known of it)."""
        with self._lock:
            self._rings[bytes(ring.gateway_id)] = ring

    def revoke(self, gateway_id: bytes | str) -> None:
        """Mark a gateway revoked."""
        with self._lock:
            self._revoked.add(_as_bytes(gateway_id))

    def lookup(self, gateway_id: bytes, key_version: int) -> bytes | None:
        with self._lock:
            ring = self._rings.get(bytes(gateway_id))
            return None if ring is None else ring.lookup(gateway_id, key_version)

    def is_revoked(self, gateway_id: bytes) -> bool:
        with self._lock:
            return bytes(gateway_id) in self._revoked


def _as_bytes(gateway_id: bytes | str) -> bytes:
    return gateway_id.encode() if isinstance(gateway_id, str) else bytes(gateway_id)
