"""The branch kiosk: a gateway with a screen, Chromium in kiosk mode showing a local page.

- ``model``: the screens and their transitions, check-in by a paired wearable's button,
  tickets, service requests, the privacy rule for offers (pure, no I/O);
- ``sources``: the interfaces to what only the cloud knows (offers, pairing codes), with
  "not available" defaults;
- ``service``: the shell joining the model to the engine (``engine.observer`` in,
  ``engine.kiosk`` out: the durable queue), the event ids and the ticket count on disk;
- ``server``: the aiohttp server for the page (``index.html``, ``kiosk.css``,
  ``kiosk.js``) and its API.

``edge.runtime`` creates it when ``gateway.toml`` has a ``[kiosk]`` table.

``deploy`` (with ``deploy_plan``, what it writes, and ``systemd``, how units are enabled) is
``bankiot kiosk deploy``: a Raspberry Pi made a kiosk of a branch in one idempotent step.
"""
