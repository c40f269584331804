"""Where the kiosk gets what only the cloud knows: a customer's offers, a pairing code.

Offers come from the cloud's offers application (``cloud.offers``) on the kiosk's sealed
downlink: a running kiosk serves them with ``edge.kiosk.offers.DownlinkOffers`` (what
``server.open_page`` sets up); ``NoOffers`` answers "not available" and the screen says so.
Pairing codes need no endpoint: the running kiosk
makes them itself and sends each in its sealed batches (``edge.kiosk.pairing``, the
default); ``NoPairingCodes`` turns pairing off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from edge.kiosk.model import Offer


class OffersSource(Protocol):
    """The offers for the customer whose paired wearable checked in."""

    async def offers_for(self, wearable: bytes) -> Sequence[Offer] | None:
        """Offers for the wearable's owner (identity address, 6 bytes); ``[]`` when there
        are none, None when the service cannot answer (offline, not configured)."""
        ...


class PairingCodes(Protocol):
    """A short-lived code a customer types into the bank's customer page to pair a new
    wearable."""

    async def pairing_code(self) -> str | None:
        """A code to show, or None when pairing is not available."""
        ...


class NoOffers:
    """The default ``OffersSource``: the offers service is not available."""

    async def offers_for(self, wearable: bytes) -> Sequence[Offer] | None:
        return None


class NoPairingCodes:
    """``PairingCodes`` for a kiosk that offers no pairing: "not available"."""

    async def pairing_code(self) -> str | None:
        return None
