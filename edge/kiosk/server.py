"""The kiosk's local web server (aiohttp): the page Chromium shows, and its small API.

Routes::

    GET  /                 the page (index.html; kiosk.css and kiosk.js beside it)
    GET  /kiosk.css, /kiosk.js
    GET  /api/state        the view (``Kiosk.view``): the screen and only what it shows
    POST /api/action       {"action": "ticket" | "services" | "request" | "offers" |
                            "accept" | "decline" | "pairing" | "back" | "done",
                            "service": <index, for request>, "offer": <index, for
                            accept and decline>}
                           -> 200 and the new view; 409 {"error", "view"} if the action is
                           not possible now; 400 {"error"} for a body that is not that

The page polls ``/api/state`` (twice a second): a check-in made by a button press appears
without a touch. Everything is served from the package: no external network, no CDN.

It listens on the loopback address by default (``[kiosk] listen``); the API has no login,
so requests must name this server in ``Host`` (what a DNS-rebinding page cannot do) and
POSTs must be JSON (what a plain cross-site form cannot send). Responses carry a strict
Content-Security-Policy (only this origin's scripts and styles) and ``no-store``.

Logging: INFO when it listens, WARNING when the port cannot be bound (it tries again every
``RETRY_S``; the gateway goes on without a screen meanwhile), ERROR with the traceback when
an event cannot be queued (the customer sees "please ask at the counter").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bankiot_core.errors import CoreError
from edge.kiosk.model import KioskRefused
from edge.kiosk.offers import DownlinkOffers
from edge.kiosk.service import Kiosk, Uplink

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).parent
FILES = {
    "/": ("index.html", "text/html"),
    "/kiosk.css": ("kiosk.css", "text/css"),
    "/kiosk.js": ("kiosk.js", "text/javascript"),
}
RETRY_S = 5.0
MAX_BODY = 1024
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
KIOSK_KEY = web.AppKey("kiosk", Kiosk)
HOSTS_KEY = web.AppKey("hosts", frozenset)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` headers a request may carry: this server by address, or ``localhost``
    when it listens on the loopback address."""
    literal = "[%s]" % host if ":" in host else host
    names = {literal}
    if host in ("127.0.0.1", "::1"):
        names |= {"localhost", "127.0.0.1", "[::1]"}
    return frozenset("%s:%d" % (name, port) for name in names)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests for another host name, and POSTs that are not JSON; add headers."""
    if request.host not in request.app[HOSTS_KEY]:
        return web.json_response({"error": "unknown host"}, status=421, headers=HEADERS)
    if request.method == "POST" and request.content_type != "application/json":
        return web.json_response({"error": "send JSON"}, status=415, headers=HEADERS)
    response = await handler(request)
    response.headers.update(HEADERS)
    return response


async def page(request: web.Request) -> web.StreamResponse:
    name, content_type = FILES[request.path]
    body = (PAGE_DIR / name).read_bytes()
    return web.Response(body=body, content_type=content_type, charset="utf-8")


async def state(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[KIOSK_KEY].view())


async def action(request: web.Request) -> web.StreamResponse:
    kiosk = request.app[KIOSK_KEY]
    try:
        body = json.loads(await request.content.read(MAX_BODY + 1) or b"null")
    except ValueError:
        body = None
    name = body.get("action") if isinstance(body, dict) else None
    service = body.get("service") if isinstance(body, dict) else None
    offer = body.get("offer") if isinstance(body, dict) else None
    if (
        not isinstance(name, str)
        or (service is not None and type(service) is not int)
        or (offer is not None and type(offer) is not int)
    ):
        message = (
            'send {"action": name} (and "service": an index for a request, "offer": an '
            "index to accept or decline)"
        )
        return web.json_response({"error": message}, status=400)
    try:
        view = await kiosk.act(name, service, offer)
    except KioskRefused as exc:
        return web.json_response({"error": exc.message, "view": kiosk.view()}, status=409)
    except (CoreError, OSError):
        log.exception("a kiosk event could not be queued")
        error = "the kiosk could not save this: please ask at the counter"
        return web.json_response({"error": error, "view": kiosk.view()}, status=500)
    return web.json_response(view)


def make_app(kiosk: Kiosk, host: str, port: int) -> web.Application:
    """The kiosk's web application, answering to ``host:port`` (``allowed_hosts``)."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[KIOSK_KEY] = kiosk
    app[HOSTS_KEY] = allowed_hosts(host, port)
    for path in FILES:
        app.router.add_get(path, page)
    app.router.add_get("/api/state", state)
    app.router.add_post("/api/action", action)
    return app


async def serve(kiosk: Kiosk, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve the page on ``host:port`` and end idle sessions until ``stop`` is set. A port
    that cannot be bound is tried again every ``RETRY_S`` (the gateway runs on meanwhile)."""
    runner = web.AppRunner(make_app(kiosk, host, port), access_log=None)
    await runner.setup()
    ticker = asyncio.ensure_future(kiosk.run(stop))
    try:
        while not stop.is_set():
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                log.warning("kiosk page cannot listen on %s:%d: %s", host, port, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=RETRY_S)
                continue
            log.info("kiosk page on http://%s:%d/", host, port)
            await stop.wait()
    finally:
        await runner.cleanup()
        await ticker


class KioskPage:
    """A kiosk and the address its page is served on: what ``edge.runtime`` runs."""

    def __init__(self, kiosk: Kiosk, host: str, port: int) -> None:
        self.kiosk = kiosk
        self.host = host
        self.port = port

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set (``serve``)."""
        await serve(self.kiosk, self.host, self.port, stop)


def uplink_state(runtime: Any) -> Uplink:
    """The uplink as the page shows it, from a ``GatewayRuntime``: connected now (a link is
    up), and the sealed batches waiting in the queue for the cloud's acknowledgement."""
    connected = getattr(runtime.uplinks, "connected", None)
    online = bool(connected is not None and connected.is_set())
    return Uplink(online, len(runtime.engine.queue))


def open_page(settings: Any, runtime: Any, **sources: Any) -> KioskPage:
    """The kiosk ``settings`` (``edge.settings.KioskSettings``) describe, over a
    ``GatewayRuntime``'s engine and data folder; it becomes the engine's observer.
    ``sources``: ``offers`` and ``pairing`` (``edge.kiosk.sources``; default: offers from
    the downlink, ``DownlinkOffers``, which becomes the engine's ``offers_sink``, and
    pairing codes made here)."""
    offers = sources.get("offers")
    if offers is None:
        offers = sources["offers"] = DownlinkOffers()
    if isinstance(offers, DownlinkOffers):
        runtime.engine.offers_sink = offers.put
    kiosk = Kiosk.open(
        runtime.state_path.parent,
        runtime.engine,
        settings.ticket_prefix,
        settings.services,
        settings.idle_timeout_s * 1000,
        clock=runtime.clock,
        uplink=lambda: uplink_state(runtime),
        wake=runtime.wake,
        **sources,
    )
    runtime.engine.observer = kiosk.observer
    return KioskPage(kiosk, settings.host, settings.port)
