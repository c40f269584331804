"""Pairing codes as customers type them, and as the cloud keeps them. No I/O.

A kiosk's code (``edge.kiosk.pairing``) is 8 characters of Crockford's base32 alphabet,
shown as ``7KQ2-M9XD``. What a customer types is read the Crockford way: case, spaces and
dashes do not matter, ``O`` is ``0`` and ``I``/``L`` are ``1``. An offer lives
``OFFER_LIFETIME`` after the kiosk showed it.

The cloud keeps only a digest of the 8 characters: HMAC-SHA256 under a key derived from the
cloud's KEK (``KEY_PURPOSE``, ``cloud.identity.keys.KeyWrapper.derive``), not a plain hash.
A code carries 40 bits: anyone holding a plain SHA-256 of it (a database copy, a backup)
could try all 2**40 codes in hours and learn the live ones; without the KEK the digest
tells nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Protocol

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 8
OFFER_LIFETIME = dt.timedelta(minutes=10)
KEY_PURPOSE = "pairing codes"
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


class CodeFormatError(ValueError):
    """Text that cannot be a pairing code; the message says why, in one line."""


def normalize(text: str) -> str:
    """The 8-character code ``text`` spells; CodeFormatError if it spells none."""
    code = text.upper().replace("-", "").replace(" ", "").translate(_READ_AS)
    if len(code) != LENGTH or any(char not in ALPHABET for char in code):
        raise CodeFormatError(
            "a pairing code is the 8 letters and digits the kiosk shows, like 7KQ2-M9XD"
        )
    return code


class _Deriver(Protocol):
    def derive(self, purpose: str) -> bytes: ...


def key_from(wrapper: _Deriver) -> bytes:
    """The digest key the cloud's KEK (a ``KeyWrapper``) derives for pairing codes."""
    return wrapper.derive(KEY_PURPOSE)


def digest(code: str, key: bytes) -> str:
    """The stored form of a normalized ``code``: HMAC-SHA256 under ``key`` (``key_from``),
    hex."""
    if len(key) < 16:
        raise ValueError("the pairing code key must be at least 16 bytes")
    return hmac.new(key, code.encode("ascii"), hashlib.sha256).hexdigest()
