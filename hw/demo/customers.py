"""The demo's customers and the kiosk screens they touch.

A customer signs up on the bank's customer pages, asks a kiosk for a pairing code ("Pair a
wearable" on its screen, ``POST /api/action`` as ``kiosk.js`` sends it), and pairs their
wearable on the pairing page with that code, its bind key and their consents, through the
pages' HTML forms. Then they only press their wearable's button at the kiosk: the gateway
checks them in, the cloud sends the kiosk their offers, and ``KioskVisitor`` plays the
customer at the screen (show my offers, accept the first, done).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hw.demo.devices import Customer
from hw.demo.web import Browser, DemoError

# Every purpose: the shopper needs presence at partner shops for the café, and offers in
# the app come with "offers" (``cloud.customers.consent.PURPOSES``).
PURPOSES = ("presence_branch", "presence_partner", "activity", "offers")
PAIRING_LIMIT_S = 60  # the code goes kiosk -> batch -> cloud: slow on a loaded machine


class Kiosk:
    """A kiosk's page API at ``url`` (loopback), one caller at a time."""

    def __init__(self, url: str) -> None:
        self.page = Browser(url)
        self.lock = threading.Lock()

    def state(self) -> dict | None:
        """The screen now; None while the page does not answer."""
        try:
            with self.lock:
                return self.page.api("GET", "/api/state")
        except (DemoError, OSError):
            return None

    def act(self, action: str, **extra: int) -> dict:
        """Touch ``action`` on the screen; the new view (the old one if it was refused)."""
        with self.lock:
            answer = self.page.api(
                "POST", "/api/action", {"action": action, **extra}, ok=(200, 409)
            )
        return answer.get("view", answer) if isinstance(answer, dict) else {}


def sign_up(cloud_url: str, customer: Customer) -> Browser:
    """The customer's browser, signed up (or, on a resumed demo, signed in)."""
    browser = Browser(cloud_url)
    fields = {"email": customer.email, "password": customer.password}
    status, _page = browser.form("/customer/signup", fields)
    if status != 200:
        status, _page = browser.form("/customer/signin", fields)
    if status != 200:
        raise DemoError("%s could not sign up or in (HTTP %d)" % (customer.email, status))
    return browser


def pair(browser: Browser, kiosk: Kiosk, customer: Customer, codes: Callable[[], int]) -> None:
    """Ask ``kiosk`` for a pairing code, wait until it reached the cloud (``codes``: how many
    pairing codes the cloud holds), and pair the wearable with every consent ticked."""
    before = codes()
    view = kiosk.act("pairing")
    code = view.get("pairing_code")
    kiosk.act("back")
    if not code:
        raise DemoError("the kiosk gave no pairing code: %s" % view)
    deadline = time.monotonic() + PAIRING_LIMIT_S
    while codes() <= before:
        if time.monotonic() > deadline:
            raise DemoError(
                "the kiosk's pairing code did not reach the cloud in %d s" % PAIRING_LIMIT_S
            )
        time.sleep(0.2)
    fields = {
        "code": code,
        "wearable": customer.wearable.mac.hex(":").upper(),
        "bind_key": customer.wearable.key.hex(),
        "irk": "",
        **{"consent_" + name: "1" for name in PURPOSES},
    }
    status, page = browser.form("/customer/pair", fields)
    if status != 200 or "paired" not in page.lower():
        raise DemoError("pairing %s failed (HTTP %d)" % (customer.email, status))


class KioskVisitor:
    """Plays the checked-in customer at one kiosk: whenever the screen says checked in, ask
    for the offers, accept the first one, and finish (``done``)."""

    def __init__(self, kiosk: Kiosk, say: Callable[[str], None], branch: str) -> None:
        self.kiosk = kiosk
        self.say = say
        self.branch = branch
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> KioskVisitor:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            view = self.kiosk.state()
            if view is None or view.get("screen") != "checked_in":
                continue
            try:
                shown = self.kiosk.act("offers")
                offers = shown.get("offers") or []
                if offers:  # the watch prints the shown / accepted events as they arrive
                    self.kiosk.act("accept", offer=0)
                self.kiosk.act("done")
            except (DemoError, OSError) as exc:
                self.say("kiosk %s: %s" % (self.branch, exc))
