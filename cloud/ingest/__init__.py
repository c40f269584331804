"""Ingest: sealed batches from gateways into the database, exactly once, acknowledged end
to end, over MQTT, CoAP and HTTP.

Modules, one job each:

- ``pipeline``: ``Ingest.handle``: open, check, commit, acknowledge (the one path every
  transport takes);
- ``keys``: the ``KeySource`` protocol (gateways' envelope keys and revocation);
- ``records``: a decoded batch as rows (time base, value columns, events);
- ``store``: the one transaction per batch, and downlink sequence numbers;
- ``models``: receipts, readings, events, gateway health, downlink counters;
  ``kiosk_models``: what customers did at branch kiosks;
- ``thresholds``: threshold rules and crossings (pure); ``wearables``: which addresses are
  registered wearables (their readings are health data), remembered for a minute;
- ``retention``: data classes and ``purge_expired``; ``partitions``: PostgreSQL's monthly
  partitions of ``readings``;
- ``stats``: counters for ``/metrics``; ``rejections``: rejected envelopes counted in the
  database per (gateway, reason, hour), read by ``rejection_views``
  (``GET /api/ingest/rejections``);
- transports: ``mqtt_worker`` (MQTT 5 shared subscription), ``coap_server`` (aiocoap),
  ``views`` (HTTP, in the web app).

``init_app(app)`` gives the web app its ``Ingest`` (on the app's database, its counters in the
app's metrics registry), the HTTP endpoint and the rejections' listing. Keys come from the
identity area's records (``identity_keys.IdentityKeySource``, with the KEK of ``DATA_DIR``);
``set_key_source(app, source)`` replaces them (tests, demos). ``ingest_on(database, config)``
builds that ``Ingest`` for the web app and for every service (``service.open_ingest``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apiflask import APIFlask

from cloud.ingest.keys import KeySource
from cloud.ingest.pipeline import Ingest

if TYPE_CHECKING:
    from cloud.db import Database

EXTENSION = "bankiot.ingest"


def ingest_on(
    database: Database, config: Mapping[str, Any], key_source: KeySource | None = None
) -> Ingest:
    """An ``Ingest`` on ``database`` with ``config``'s thresholds (a bad
    ``INGEST_THRESHOLDS`` raises ``ConfigError``), the identity area's keys by default and
    offers at kiosks (``cloud.offers.kiosk``): what the web app and every service run."""
    from cloud.ingest.identity_keys import IdentityKeySource
    from cloud.ingest.thresholds import Thresholds
    from cloud.offers.kiosk import KioskOffers  # offers at kiosks: decided after each check-in

    thresholds = Thresholds.from_config(config)
    if key_source is None:
        key_source = IdentityKeySource.from_config(database, Path(config["DATA_DIR"]))
    return Ingest(database, key_source, thresholds=thresholds, kiosk_offers=KioskOffers())


def init_app(app: APIFlask) -> None:
    """Install HTTP ingest on ``app`` (after ``db`` and ``health``)."""
    from cloud.ingest import rejection_views, views

    pipeline = ingest_on(app.extensions["bankiot.db"], app.config)
    app.extensions[EXTENSION] = pipeline
    registry = app.extensions.get("bankiot.metrics")
    if registry is not None:
        pipeline.stats.register(registry)
    app.register_blueprint(views.bp)
    app.register_blueprint(rejection_views.bp)
    previous = app.spec_callback

    def spec(document: Any) -> Any:  # the raw request body, after any other area's changes
        document = previous(document) if previous is not None else document
        return views.document_request_body(document, pipeline.max_envelope_bytes)

    app.spec_callback = spec


def set_key_source(app: APIFlask, source: KeySource) -> None:
    """Where ``app``'s ingest finds gateways' keys."""
    app.extensions[EXTENSION].key_source = source
