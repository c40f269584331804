"""Pairing codes made at the kiosk: the ``PairingCodes`` the kiosk uses when it runs.

A customer who wants to pair a wearable presses "Pair a wearable"; the kiosk makes a random
code, records it as a ``batch.KIOSK_PAIRING`` event (sealed, urgent, in the durable queue,
like a ticket: no device HTTP API and no credential beyond the gateway's own key) and only
then shows it. The cloud keeps the code as a pairing offer of this kiosk's branch, for 10
minutes, for one use (``cloud.customers``); the customer types it into the customer page,
signed in, with the wearable's details.

Codes are 8 characters of Crockford's base32 alphabet (digits and letters without I, L, O,
U: nothing to misread), 40 random bits from ``secrets``, shown as two groups of four
(``7KQ2-M9XD``); the event carries the 8 characters without the dash. Guessing one live
code among a branch's few takes about 2**39 tries, and the cloud limits tries per account
and per address.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from bankiot_core.batch import KIOSK_PAIRING

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
LENGTH = 8

# What records an event: ``Kiosk.record(kind, wearable, detail)``.
Record = Callable[[int, bytes | None, str], None]


def new_code(choice: Callable[[str], str] = secrets.choice) -> str:
    """A fresh code: ``LENGTH`` characters of ``ALPHABET``, each drawn by ``choice``."""
    return "".join(choice(ALPHABET) for _ in range(LENGTH))


def shown(code: str) -> str:
    """The code as the screen shows it: ``7KQ2-M9XD``."""
    half = len(code) // 2
    return "%s-%s" % (code[:half], code[half:])


class KioskPairingCodes:
    """``edge.kiosk.sources.PairingCodes`` that makes codes here and records each as a
    kiosk pairing event through ``record`` before it is shown (module docstring)."""

    def __init__(self, record: Record, choice: Callable[[str], str] = secrets.choice) -> None:
        self._record = record
        self._choice = choice

    async def pairing_code(self) -> str | None:
        """A new code, already queued for the cloud, as shown (``7KQ2-M9XD``)."""
        code = new_code(self._choice)
        self._record(KIOSK_PAIRING, None, code)  # raises if it cannot be queued: not shown
        return shown(code)
