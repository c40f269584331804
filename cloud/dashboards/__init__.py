"""Dashboards: server-rendered pages for the bank's staff under ``/dashboard``.

Pages (``views``; staff sign in with their operator account, ``web``):

- ``/dashboard/signin``: the sign-in form (POST: name, password); anyone.
- ``/dashboard/fleet``: branches and devices, open alerts, rollouts in progress, the ingest
  rate; start a rollout to a branch (operations). Every role.
- ``/dashboard/devices/<id>``: a device's health over time, the sensors it hears, its
  commands; send a command, start a rollout (operations). Every role.
- ``/dashboard/branches/<id>``: kiosks, today's check-ins, tickets and requests, customers
  present; service requests, closed with a button (branch managers, operations); the loan
  review queue, approved or declined there (branch managers). Every role.
- ``/dashboard/customers[/<id>]``: customers; one customer's profile, consents, events, the
  stored financial profile and life events with their history, their notifications in
  figures, the applications' decisions and loans, and the decisions made about them.
  Branch managers and operations.
- ``/dashboard/analytics``: the kiosks' and the inbox's offers funnels and campaigns, life
  events per month and kind and per kind, segments (operations); ingest rate and latency.
  Every role.

Everything is scoped to the caller's branches like the APIs; personal data (emails,
wearable addresses) only for ``access.PERSONAL_DATA_ROLES``. Live parts refresh by polling
small JSON endpoints (``<page>/live``); charts are inline SVG drawn on the server
(``charts``); all CSS and script come from this package (no external network). One query
module per page: ``fleet_data``, ``device_data``, ``branch_data``, ``customer_data``,
``analytics_data``, ``rates``; decisions and campaigns are listed with all their columns
by ``optional``.

Settings read from the app config (defaults in brackets):

| key | meaning |
|---|---|
| ``DASHBOARD_POLL_MS`` [5000] | how often open pages ask for updates |
"""

from __future__ import annotations

from flask import Flask, Response, request

from cloud.people.limits import limit_endpoint


def _failed(response: Response) -> bool:
    return response.status_code == 401


def _account() -> str:
    name = request.form.get("name", "")
    return "account:%s" % name.strip().lower()[:64]


def init_app(app: Flask) -> None:
    """Register the dashboards and the sign-in page's rate limits (the login API's)."""
    from cloud.dashboards import views  # noqa: F401  (the routes register on ``web.bp``)
    from cloud.dashboards.web import bp

    app.register_blueprint(bp)
    per_address = app.config.get("LOGIN_RATE_LIMIT", "5 per minute")
    per_account = app.config.get("LOGIN_ACCOUNT_RATE_LIMIT", "20 per hour")
    post = ["POST"]  # only sending counts: the form itself always shows
    limit_endpoint(app, "dashboards.signin", per_address, deduct_when=_failed, methods=post)
    limit_endpoint(
        app, "dashboards.signin", per_account, key_func=_account, deduct_when=_failed, methods=post
    )
