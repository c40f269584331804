"""The kiosk's shell: the model (``edge.kiosk.model``) joined to the engine, files and clock.

- The engine's ``observer`` (``Kiosk.observer``) hands the model what the filters let
  through. A check-in it decides is not queued from inside the engine's call (the engine is
  in the middle of its own work): it waits in ``_pending`` and goes at the loop's next turn
  (``flush``), or at the next action or view, whichever comes first.
- Every event the model emits gets an id from ``bankiot_core.sequence`` (reserved ahead in
  ``<data_dir>/kiosk-events``: a number is never used twice, across power cuts) and goes
  through ``engine.kiosk``: sealed, urgent, in the durable SQLite queue, delivered exactly
  once when the uplink is there. Offline, it waits there like any reading.
- The ticket count is written (atomically, 0600) to ``<data_dir>/kiosk-tickets.json``
  before the ticket is queued and shown, so a restart never repeats a number that day.
- ``view()`` adds the uplink's state for the page: ``online`` (a link is connected) and
  ``waiting`` (sealed batches not yet acknowledged), so the screen can say that events are
  saved and will be sent.
- Offers and pairing codes are asked of their sources (``edge.kiosk.sources``) only when
  the customer presses for them; a source that fails or is slow means "not available".
  On a running kiosk offers come from the cloud on the downlink (``edge.kiosk.offers``);
  what the customer did with them (shown, accepted, declined) goes up as kiosk events.
  Pairing codes are made here by default (``edge.kiosk.pairing.KioskPairingCodes``), each
  recorded as a pairing event (``record``) before it is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from bankiot_core.sequence import FileCounterStore, SequenceNumbers
from edge.identity import write_private
from edge.kiosk.model import MOVES, Emit, KioskModel, KioskRefused
from edge.kiosk.pairing import KioskPairingCodes
from edge.kiosk.sources import NoOffers, OffersSource, PairingCodes

log = logging.getLogger(__name__)

EVENTS_FILE = "kiosk-events"
TICKETS_FILE = "kiosk-tickets.json"
TICK_S = 1.0  # how often an idle session is looked for without a page asking
ASK_TIMEOUT_S = 5.0  # the longest a customer waits for offers or a pairing code
T = TypeVar("T")


class Uplink(NamedTuple):
    """What the page says about the uplink."""

    online: bool
    waiting: int


def local_day() -> str:
    """Today in the branch's local time zone (the machine's), as ``YYYY-MM-DD``."""
    return dt.date.today().isoformat()


def load_tickets(path: Path) -> tuple[str | None, int]:
    """The ticket count saved at ``path``: ``(day, last)``, or ``(None, 0)`` if none or
    unreadable (a damaged file costs the day's numbering, never the kiosk)."""
    try:
        data = json.loads(path.read_text())
        day, last = data["day"], data["last"]
    except FileNotFoundError:
        return None, 0
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s cannot be read (%s): tickets start again at 1", path, exc)
        return None, 0
    if not isinstance(day, str) or type(last) is not int or last < 0:
        log.warning("%s holds no ticket count: tickets start again at 1", path)
        return None, 0
    return day, last


class Kiosk:
    """One kiosk over ``engine`` (a ``bankiot_core.gateway.Gateway``), keeping its files in
    ``data_dir``. ``clock``: the engine's milliseconds; ``today``: the local date;
    ``uplink``: the uplink's state now; ``wake``: called after an event was queued;
    ``pairing``: where pairing codes come from (default: made here, ``KioskPairingCodes``)."""

    def __init__(
        self,
        model: KioskModel,
        engine: Any,
        data_dir: Path,
        clock: Callable[[], int],
        uplink: Callable[[], Uplink],
        wake: Callable[[], None] = lambda: None,
        today: Callable[[], str] = local_day,
        offers: OffersSource | None = None,
        pairing: PairingCodes | None = None,
    ) -> None:
        self.model = model
        self.engine = engine
        self.clock = clock
        self.uplink = uplink
        self.wake = wake
        self.today = today
        self.offers: OffersSource = offers if offers is not None else NoOffers()
        self.pairing: PairingCodes = pairing or KioskPairingCodes(self.record)
        self.tickets_path = data_dir / TICKETS_FILE
        self.ids = SequenceNumbers(FileCounterStore(str(data_dir / EVENTS_FILE)), block=16)
        self._pending: list[Emit] = []

    @classmethod
    def open(
        cls,
        data_dir: Path,
        engine: Any,
        prefix: str,
        services: Iterable[str],
        idle_ms: int,
        **shell: Any,
    ) -> Kiosk:
        """A kiosk whose ticket count continues from ``data_dir`` (keywords: ``__init__``)."""
        day, last = load_tickets(data_dir / TICKETS_FILE)
        model = KioskModel(prefix, tuple(services), idle_ms, day, last)
        return cls(model, engine, data_dir, **shell)

    # ---- from the engine ------------------------------------------------------------------

    def observer(self, address: bytes, readings: Any, events: Any) -> None:
        """``engine.observer``: what the filters let through (module docstring)."""
        emits = self.model.observe(address, readings, events, self.clock())
        if not emits:
            return
        self._pending += emits
        with contextlib.suppress(RuntimeError):  # no loop (a plain call): flushed later
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Queue the events the observer decided on."""
        pending, self._pending = self._pending, []
        self._send(pending)

    # ---- from the page --------------------------------------------------------------------

    async def act(
        self, action: str, service: int | None = None, offer: int | None = None
    ) -> dict[str, Any]:
        """Do what the customer pressed (``service``: which service, for ``request``;
        ``offer``: which offer, for ``accept`` / ``decline``); the new view.
        ``KioskRefused`` if not possible."""
        self.flush()
        self.model.tick(self.clock())
        if action == "offers":
            if not self.model.may_show_offers():
                raise KioskRefused("offers are shown only to a checked-in customer who asks")
            wearable = self.model.wearable
            assert wearable is not None
            offers = await self._ask(self.offers.offers_for(wearable), "offers")
            if self.model.wearable == wearable:  # still the same session after the wait
                self._send(self.model.show_offers(offers, self.clock()))
        elif action == "pairing":
            if (self.model.screen, "pairing") not in MOVES:  # refuse before asking
                raise KioskRefused("pairing is not possible on the %s screen" % self.model.screen)
            code = await self._ask(self.pairing.pairing_code(), "a pairing code")
            self.model.show_pairing(code, self.clock())
        else:
            day = self.today() if action == "ticket" else ""
            before = (self.model.ticket_day, self.model.ticket_last)
            emits = self.model.act(action, self.clock(), day, service, offer)
            if (self.model.ticket_day, self.model.ticket_last) != before:
                self._save_tickets()
            self._send(emits)
        return self.view()

    def view(self) -> dict[str, Any]:
        """What the page shows now (``KioskModel.view``) with the uplink's state."""
        self.flush()
        self.model.tick(self.clock())
        out = self.model.view()
        state = self.uplink()
        out["online"] = state.online
        out["waiting"] = state.waiting
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """End idle sessions even when no page asks (offers leave memory on time)."""
        while not stop.is_set():
            self.flush()
            self.model.tick(self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=TICK_S)

    def record(self, kind: int, wearable: bytes | None, detail: str) -> None:
        """Queue one kiosk event (a ``batch.KIOSK_*`` kind) made outside the model, such as
        a pairing code; raises (``CoreError``) if it cannot be queued."""
        self._send([Emit(kind, wearable, detail)])

    # ---- inside ---------------------------------------------------------------------------

    async def _ask(self, question: Awaitable[T], what: str) -> T | None:
        """The answer of a cloud-backed source, or None ("not available") if it fails or
        takes longer than ``ASK_TIMEOUT_S``: the customer is standing at the screen."""
        try:
            async with asyncio.timeout(ASK_TIMEOUT_S):
                return await question
        except Exception as exc:  # any failure of a source means "not available" on screen
            log.warning("kiosk could not get %s: %s", what, str(exc) or type(exc).__name__)
            return None

    def _save_tickets(self) -> None:
        data = {"day": self.model.ticket_day, "last": self.model.ticket_last}
        write_private(self.tickets_path, json.dumps(data).encode())

    def _send(self, emits: list[Emit]) -> None:
        if not emits:
            return
        now = self.clock()
        for emit in emits:
            event_id = self.ids.take()  # persisted ahead: never reused
            self.engine.kiosk(emit.kind, event_id, emit.wearable, emit.detail, now)
        self.wake()
