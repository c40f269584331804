"""A ``KeySource`` over the identity area's records: envelope keys wrapped under the KEK,
and devices' revocation status.

- ``lookup``: ``cloud.identity.keys.envelope_key_lookup`` (valid, unrevoked key versions
  only), unwrapped with the KEK (``keys.load_wrapper``);
- ``is_revoked``: the gateway's device record says ``revoked``.

Answers are cached for ``ttl`` seconds (default 30) so that a busy gateway does not cost a
database query and an unwrap per batch; a revocation or rotation is seen within ``ttl``.
Secrets stay in this process's memory only, never in logs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from cloud.db import Database
from cloud.fleet.models import Device
from cloud.identity.keys import KeyWrapper, envelope_key_lookup, load_wrapper


class IdentityKeySource:
    """Gateways' keys and revocation from the identity tables, cached (module docstring)."""

    def __init__(
        self,
        database: Database,
        wrapper: KeyWrapper,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self._wrapper = wrapper
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[tuple[bytes, int], tuple[float, bytes | None]] = {}
        self._revoked: dict[bytes, tuple[float, bool]] = {}

    def __repr__(self) -> str:
        return "IdentityKeySource(%r)" % self.database.url.split("@")[-1]

    @property
    def wrapper(self) -> KeyWrapper:
        """The KEK (other secrets the cloud keeps at rest derive their keys from it)."""
        return self._wrapper

    @classmethod
    def from_config(cls, database: Database, data_dir: Path) -> IdentityKeySource:
        """The key source of the cloud whose data folder is ``data_dir`` (its KEK)."""
        return cls(database, load_wrapper(data_dir))

    def _cached(self, table: dict, key: object) -> tuple[bool, object]:
        with self._lock:
            found = table.get(key)
            if found is not None and self._clock() - found[0] < self.ttl:
                return True, found[1]
        return False, None

    def _store(self, table: dict, key: object, value: object) -> None:
        with self._lock:
            if len(table) > 100_000:
                table.clear()
            table[key] = (self._clock(), value)

    def lookup(self, gateway_id: bytes, key_version: int) -> bytes | None:
        hit, value = self._cached(self._keys, (bytes(gateway_id), key_version))
        if hit:
            return value  # type: ignore[return-value]
        with self.database.sessions() as session:
            secret = envelope_key_lookup(session, self._wrapper)(gateway_id, key_version)
        self._store(self._keys, (bytes(gateway_id), key_version), secret)
        return secret

    def is_revoked(self, gateway_id: bytes) -> bool:
        hit, value = self._cached(self._revoked, bytes(gateway_id))
        if hit:
            return bool(value)
        try:
            uid = bytes(gateway_id).decode()
        except UnicodeDecodeError:
            return False  # no such device: lookup finds no key for it either
        with self.database.sessions() as session:
            status = session.scalar(select(Device.status).where(Device.uid == uid))
        revoked = status == "revoked"
        self._store(self._revoked, bytes(gateway_id), revoked)
        return revoked
