"""Customers: accounts, pairing wearables with a kiosk's code, consents, unpairing.

Pages for a bank's customers (server-rendered, no external network, CSRF-protected forms)
under ``/customer``: sign up, sign in, sign out, the wearables, pair, consents, unpair, and
the data page: see, export, erase (``views``). The rules live in ``pairing`` and
``consent``; accounts and sessions in ``accounts``; codes in ``codes``; what is held and its
export in ``data``; erasure in ``erasure``. Other areas ask ``consent.consented(session, wearable,
purpose)`` before they process a customer's data.

Settings read from the app config (defaults in brackets):

| key | meaning |
|---|---|
| ``CUSTOMER_SIGNIN_RATE_LIMIT`` [5 per minute] | failed sign-ins per client address |
| ``CUSTOMER_CODE_RATE_LIMIT`` [10 per hour] | refused pairing codes per customer and address |
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the customer pages and their rate limits on ``app``."""
    from cloud.customers import views  # the pages import the fleet and people areas

    views.init_app(app)
