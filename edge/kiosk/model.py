"""The kiosk's screens and what moves between them: the functional core, no I/O.

A branch kiosk is a gateway with a screen. This model decides what the screen shows; the
shell (``edge.kiosk.service``) feeds it what the engine's filters let through and what the
customer touched, and sends the events it returns through the engine's durable queue.

Screens (``SCREENS``)::

    welcome     nobody checked in, no paired wearable near
    near        a paired wearable is near: "press its button to check in"
    checked_in  a customer checked in: ticket, service request, "show my offers", done
    ticket      a queue ticket, shown big
    services    the configured services, as large buttons (categories, no free text)
    requested   the service request is confirmed
    offers      the checked-in customer's offers (only after they asked for them)
    pairing     the wearable pairing code (or "not available")

Rules:

- Check-in is proof of possession: a ``button`` press heard from a paired wearable that is
  present (a presence ``enter`` without a ``leave`` since) checks it in, on ``welcome`` or
  ``near`` only; a press during someone else's session does nothing. Nothing on screen
  names the customer, before or after.
- Walk-ins (nobody checked in) may take a ticket and request a service; their events carry
  no wearable.
- Offers exist in the model only between "show my offers" and the end of the session
  (``done``, the idle timeout, or the customer's wearable leaving): ``view()`` carries them
  on the ``offers`` screen and nowhere else. Showing them records an ``offer_shown`` event
  per offer, and the customer may accept or decline each once (``accept`` / ``decline``
  with the offer's index): ``offer_accepted`` / ``offer_declined``, the offer's id as
  detail, so the bank learns what became of its campaign.
- Idle timeout: a screen other than ``welcome``/``near`` untouched for ``idle_ms`` ends the
  session (``tick``).
- Tickets are numbered per day (``day`` comes from the caller: the branch's local date),
  ``prefix`` + at least three digits: A001, A002, ... A999, A1000; the first ticket of a
  new day is 001 again. The count is state the shell persists (``ticket_day``,
  ``ticket_last``) so that a restart never hands out a number twice in one day.

Transitions are data (``MOVES``): an action allowed on a screen, and where it leads.
Anything else raises ``KioskRefused`` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from bankiot_core.batch import (
    KIOSK_CHECKIN,
    KIOSK_OFFER_ACCEPTED,
    KIOSK_OFFER_DECLINED,
    KIOSK_OFFER_SHOWN,
    KIOSK_REQUEST,
    KIOSK_TICKET,
)
from bankiot_core.presence import ENTER, LEAVE
from edge.errors import GatewayError

WELCOME = "welcome"
NEAR = "near"
CHECKED_IN = "checked_in"
TICKET = "ticket"
SERVICES = "services"
REQUESTED = "requested"
OFFERS = "offers"
PAIRING = "pairing"
SCREENS = (WELCOME, NEAR, CHECKED_IN, TICKET, SERVICES, REQUESTED, OFFERS, PAIRING)
IDLE = (WELCOME, NEAR)  # the screens nobody is using
HOME = "home"  # in MOVES: back to checked_in in a session, else welcome or near

# (screen, action) -> where it leads; "any idle" screens share their rows.
MOVES: dict[tuple[str, str], str] = {}
for _idle in IDLE:
    MOVES[(_idle, "ticket")] = TICKET
    MOVES[(_idle, "services")] = SERVICES
    MOVES[(_idle, "pairing")] = PAIRING
MOVES.update(
    {
        (CHECKED_IN, "ticket"): TICKET,
        (CHECKED_IN, "services"): SERVICES,
        (CHECKED_IN, "offers"): OFFERS,
        (CHECKED_IN, "done"): HOME,
        (SERVICES, "request"): REQUESTED,
        (SERVICES, "back"): HOME,
        (TICKET, "back"): HOME,
        (REQUESTED, "back"): HOME,
        (OFFERS, "back"): HOME,
        (OFFERS, "accept"): OFFERS,
        (OFFERS, "decline"): OFFERS,
        (PAIRING, "back"): HOME,
        (TICKET, "done"): HOME,
        (REQUESTED, "done"): HOME,
        (OFFERS, "done"): HOME,
    }
)
ACTIONS = frozenset(action for _screen, action in MOVES)
FETCHED = frozenset(("offers", "pairing"))  # need the cloud's answer: show_offers, show_pairing
BUTTON_PRESSES = frozenset(("press", "double_press", "triple_press", "long_press"))
ANSWERS = {
    "accept": (KIOSK_OFFER_ACCEPTED, "accepted"),
    "decline": (KIOSK_OFFER_DECLINED, "declined"),
}


class KioskRefused(GatewayError):
    """An action the kiosk cannot take now (unknown, or not on this screen)."""


class Emit(NamedTuple):
    """An event for the engine's queue: ``batch.KioskEvent``'s ``kind``, ``wearable`` (6-byte
    identity address or None) and ``detail`` (the ticket or the service)."""

    kind: int
    wearable: bytes | None
    detail: str


@dataclass(frozen=True)
class Offer:
    """One offer for a checked-in customer, as the screen shows it; ``id``: the campaign's
    (``downlink.OfferItem``), None for one without (nothing is recorded for it)."""

    title: str
    text: str
    id: int | None = None


def ticket_text(prefix: str, number: int) -> str:
    """The ticket as printed on screen: ``A007``, ``A1000``."""
    return "%s%03d" % (prefix, number)


class KioskModel:
    """The screens of one kiosk (module docstring). ``services``: the service categories;
    ``idle_ms``: the idle timeout; ``ticket_day``/``ticket_last``: the ticket count restored
    from the last run (None/0: none yet)."""

    def __init__(
        self,
        prefix: str,
        services: Sequence[str],
        idle_ms: int,
        ticket_day: str | None = None,
        ticket_last: int = 0,
    ) -> None:
        self.prefix = prefix
        self.services = tuple(services)
        self.idle_ms = idle_ms
        self.ticket_day = ticket_day
        self.ticket_last = ticket_last
        self.present: set[bytes] = set()  # paired wearables near now
        self.screen = WELCOME
        self.wearable: bytes | None = None  # the checked-in customer's, during a session
        self.ticket: str | None = None  # on the ticket screen
        self.service: str | None = None  # on the requested screen
        self.offers: tuple[Offer, ...] | None = None  # on the offers screen; None: none
        self.answers: dict[int, str] = {}  # offer index -> "accepted" / "declined"
        self.pairing_code: str | None = None  # on the pairing screen
        self.touched_ms = 0

    # ---- what the radio says --------------------------------------------------------------

    def observe(
        self, address: bytes, readings: Iterable[Any], events: Iterable[Any], now_ms: int
    ) -> list[Emit]:
        """What the filters let through for ``address``: presence events first (a frame
        that brings a wearable near and its press check it in together), then readings."""
        emits: list[Emit] = []
        for event in events:
            if event[0] == ENTER:
                self.present.add(address)
            elif event[0] == LEAVE:
                self.present.discard(address)
                if address == self.wearable:
                    self._end()  # the customer walked away: nothing of theirs stays
        for reading in readings:
            metric, value = reading[0], reading[1]
            pressed = metric == "button" or metric.startswith("button_")
            if pressed and value in BUTTON_PRESSES:
                emits += self._check_in(address, now_ms)
        self._settle()
        return emits

    def _check_in(self, address: bytes, now_ms: int) -> list[Emit]:
        if self.screen not in IDLE or address not in self.present:
            return []
        self.wearable = address
        self.screen = CHECKED_IN
        self.touched_ms = now_ms
        return [Emit(KIOSK_CHECKIN, address, "")]

    # ---- what the customer touched --------------------------------------------------------

    def act(
        self,
        action: str,
        now_ms: int,
        day: str = "",
        service: int | None = None,
        offer: int | None = None,
    ) -> list[Emit]:
        """The customer pressed ``action`` on the screen (``day``: today's local date, for a
        ticket; ``service``: the index of the service asked for; ``offer``: the index of the
        offer accepted or declined). ``KioskRefused`` if the action is unknown or not
        offered on this screen; nothing changes then."""
        target = MOVES.get((self.screen, action))
        if target is None:
            if action not in ACTIONS:
                raise KioskRefused("unknown kiosk action %r" % action)
            raise KioskRefused("%s is not possible on the %s screen" % (action, self.screen))
        if action == "request" and (
            type(service) is not int or not 0 <= service < len(self.services)
        ):
            raise KioskRefused("service must be 0..%d, got %r" % (len(self.services) - 1, service))
        if action in FETCHED:
            raise KioskRefused("%s is shown once fetched (show_%s)" % (action, action))
        if action in ANSWERS:
            return self._answer(action, offer, now_ms)
        emits: list[Emit] = []
        self.touched_ms = now_ms
        if action == "ticket":
            if not day:
                raise KioskRefused("a ticket needs today's date")
            self.ticket = self._next_ticket(day)
            emits.append(Emit(KIOSK_TICKET, self.wearable, self.ticket))
        elif action == "request":
            assert service is not None
            self.service = self.services[service]
            emits.append(Emit(KIOSK_REQUEST, self.wearable, self.service))
        if target == HOME:
            if action == "done" or self.wearable is None:
                self._end()
            else:
                self._home()
        else:
            self.screen = target
        self._settle()
        return emits

    def may_show_offers(self) -> bool:
        """Whether "show my offers" may be answered now (a checked-in customer asked)."""
        return self.screen == CHECKED_IN and self.wearable is not None

    def show_offers(self, offers: Sequence[Offer] | None, now_ms: int) -> list[Emit]:
        """The checked-in customer asked for their offers, and these were fetched (None: the
        offers service is not available); an ``offer_shown`` event per offer with an id.
        ``KioskRefused`` outside a session."""
        if not self.may_show_offers():
            raise KioskRefused("offers are shown only to a checked-in customer who asks")
        self.offers = tuple(offers) if offers is not None else None
        self.answers = {}
        self.screen = OFFERS
        self.touched_ms = now_ms
        return [
            Emit(KIOSK_OFFER_SHOWN, self.wearable, "%d" % o.id)
            for o in self.offers or ()
            if o.id is not None
        ]

    def _answer(self, action: str, offer: int | None, now_ms: int) -> list[Emit]:
        offers = self.offers or ()
        if type(offer) is not int or not 0 <= offer < len(offers):
            raise KioskRefused("offer must be 0..%d, got %r" % (len(offers) - 1, offer))
        if offer in self.answers:
            raise KioskRefused("that offer was %s already" % self.answers[offer])
        kind, word = ANSWERS[action]
        self.answers[offer] = word
        self.touched_ms = now_ms
        chosen = offers[offer]
        if chosen.id is None:
            return []
        return [Emit(kind, self.wearable, "%d" % chosen.id)]

    def show_pairing(self, code: str | None, now_ms: int) -> None:
        """Show a wearable pairing code (None: pairing is not available). ``KioskRefused``
        during a session or another screen's errand."""
        if (self.screen, "pairing") not in MOVES:
            raise KioskRefused("pairing is not possible on the %s screen" % self.screen)
        self.pairing_code = code
        self.screen = PAIRING
        self.touched_ms = now_ms

    # ---- time -----------------------------------------------------------------------------

    def tick(self, now_ms: int) -> bool:
        """End a session left alone for ``idle_ms``; whether it ended one."""
        if self.screen in IDLE or now_ms - self.touched_ms < self.idle_ms:
            return False
        self._end()
        return True

    # ---- what the page may show -----------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """The screen and only what it shows: never a name or an address; offers only on
        the offers screen, the ticket only on the ticket screen."""
        out: dict[str, Any] = {"screen": self.screen, "checked_in": self.wearable is not None}
        if self.screen == TICKET:
            out["ticket"] = self.ticket
        elif self.screen == SERVICES:
            out["services"] = list(self.services)
        elif self.screen == REQUESTED:
            out["service"] = self.service
        elif self.screen == OFFERS:
            out["offers_available"] = self.offers is not None
            out["offers"] = [
                {"title": o.title, "text": o.text, "answer": self.answers.get(i)}
                for i, o in enumerate(self.offers or ())
            ]
        elif self.screen == PAIRING:
            out["pairing_code"] = self.pairing_code
        return out

    # ---- inside ---------------------------------------------------------------------------

    def _next_ticket(self, day: str) -> str:
        if day != self.ticket_day:
            self.ticket_day = day
            self.ticket_last = 0
        self.ticket_last += 1
        return ticket_text(self.prefix, self.ticket_last)

    def _home(self) -> None:
        """Back to the session's menu, dropping what the screen showed."""
        self.ticket = None
        self.service = None
        self.offers = None
        self.answers = {}
        self.pairing_code = None
        self.screen = CHECKED_IN

    def _end(self) -> None:
        """The session is over: forget the customer and everything shown to them."""
        self.wearable = None
        self.ticket = None
        self.service = None
        self.offers = None
        self.answers = {}
        self.pairing_code = None
        self.screen = WELCOME
        self._settle()

    def _settle(self) -> None:
        """An idle screen follows who is near."""
        if self.screen in IDLE:
            self.screen = NEAR if self.present else WELCOME
