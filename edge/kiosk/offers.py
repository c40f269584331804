"""Offers from the downlink: the kiosk's ``OffersSource`` when it runs (``DownlinkOffers``).

When a customer checks in, the cloud decides what to offer them (``cloud.offers``) and sends
this kiosk an OFFERS message on its sealed downlink; the engine opens it and hands it to
``put`` (``Gateway.offers_sink``). The offers wait here, in memory only (they are personal
data: never on disk, gone with the process), one set per wearable, the newest replacing
the one before, until the message's expiry. ``offers_for`` answers the kiosk's "show my
offers": the wearable's offers, ``[]`` when the cloud said there are none, or None ("not
available") when nothing came for it, after waiting up to ``wait_s`` for a message still on
its way (a customer who asks within a second of checking in).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from bankiot_core.downlink import Offers
from edge.kiosk.model import Offer

DEFAULT_WAIT_S = 2.0


class DownlinkOffers:
    """The offers the cloud sent, per wearable, in memory until they expire (module
    docstring). ``clock``: Unix seconds now; ``wait_s``: how long ``offers_for`` waits for
    offers still on their way."""

    def __init__(
        self, clock: Callable[[], float] = time.time, wait_s: float = DEFAULT_WAIT_S
    ) -> None:
        self.clock = clock
        self.wait_s = wait_s
        self._held: dict[bytes, tuple[int, tuple[Offer, ...]]] = {}  # wearable -> expiry, offers
        self._arrived = asyncio.Event()

    def put(self, message: Offers) -> None:
        """An OFFERS message arrived (``Gateway.offers_sink``): keep it until it expires."""
        self._purge()
        if message.expires <= self.clock():
            return  # arrived too late: nothing to show
        offers = tuple(Offer(item.title, item.text, item.id) for item in message.items)
        self._held[bytes(message.wearable)] = (message.expires, offers)
        self._arrived.set()
        self._arrived = asyncio.Event()

    def __len__(self) -> int:
        """How many wearables' offers are held now."""
        self._purge()
        return len(self._held)

    def _purge(self) -> None:
        now = self.clock()
        for wearable in [w for w, (expires, _) in self._held.items() if expires <= now]:
            del self._held[wearable]

    def _lookup(self, wearable: bytes) -> tuple[Offer, ...] | None:
        self._purge()
        held = self._held.get(bytes(wearable))
        return None if held is None else held[1]

    async def offers_for(self, wearable: bytes) -> Sequence[Offer] | None:
        """The wearable's offers (``OffersSource``): a list (maybe empty), or None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while True:
            found = self._lookup(wearable)
            if found is not None:
                return list(found)
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=left)
            except TimeoutError:
                return None
