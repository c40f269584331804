"""Analytics: a customer's financial profile and life and financial events, as pure functions.

The functional core of the bank's analytics (no database, no clock, no I/O): it works on
plain transaction records (``records.Transaction``) that the bank area maps its statement
rows into, and returns frozen results.

| module | job |
|---|---|
| ``records`` | the transaction record every function here takes, and ``AnalyticsError`` |
| ``categories`` | ISO 18245 merchant category codes (MCC) to spending categories, as a table |
| ``recurring`` | recurring series (cadence, amount, next due date) from one payee's payments |
| ``balance`` | balance statistics over a window: mean, minimum, volatility |
| ``profile`` | the profile and its incremental state (``ProfileState``) |
| ``events`` | life and financial events from a profile: a score and at most four reasons |
| ``simulation`` | a seeded synthetic population with planted events and their ground truth |
| ``evaluation`` | precision and recall of the event detectors against that ground truth |

The imperative shell beside it (database, Flask): ``adapter`` (a bank transaction row as a
``Transaction``), ``segments`` (pure: segments and income bands over all profiles),
``models`` (``customer_profiles``, ``life_events``, ``life_event_history``), ``store``
(recompute, after each bank import and on demand, carrying the life events' history on;
what offers, export and erasure read), ``views`` (``GET /api/analytics/customers/<id>``,
``GET /api/analytics/life-events/over-time``), ``cli`` (``bankiot analytics recompute``).
``init_app(app)`` registers the API.

``docs/analytics.md`` describes what the profile holds, each event's signals and reasons and
the evaluation with its figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def init_app(app: Flask) -> None:
    """Install the analytics API (``views``) on ``app``."""
    from cloud.analytics import views  # the shell, loaded only by the cloud app

    app.register_blueprint(views.bp)
