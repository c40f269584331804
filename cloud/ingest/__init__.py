"""Ingest: sealed batches from gateways into the database, exactly once, acknowledged end
to end, over MQTT, CoAP and HTTP.

Modules, one job each:

- ``pipeline``: ``Ingest.handle``: open, check, commit, acknowledge (the one path every
  transport takes);
- ``keys``: the ``KeySource`` protocol (gateways' envelope keys and revocation);
- ``records``: a decoded batch as rows (time base, value columns, events);
- ``store``: the one transaction per batch, and downlink sequence numbers;
- ``models``: receipts, readings, events, gateway health, downlink counters;
- ``retention``: data classes and ``purge_expired``; ``partitions``: PostgreSQL's monthly
  partitions of ``readings``;
- ``stats``: counters for ``/metrics``;
- transports: ``mqtt_worker`` (MQTT 5 shared subscription), ``coap_server`` (aiocoap),
  ``views`` (HTTP, in the web app).

``init_app(app)`` gives the web app its ``Ingest`` (on the app's database, its counters in the
app's metrics registry) and the HTTP endpoint. Keys come from the identity area's records
(``identity_keys.IdentityKeySource``, with the KEK of ``DATA_DIR``);
``set_key_source(app, source)`` replaces them (tests, demos).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apiflask import APIFlask

from cloud.ingest.keys import KeySource
from cloud.ingest.pipeline import Ingest

EXTENSION = "bankiot.ingest"


def init_app(app: APIFlask) -> None:
    """Install HTTP ingest on ``app`` (after ``db`` and ``health``)."""
    from cloud.ingest import views
    from cloud.ingest.identity_keys import IdentityKeySource

    database = app.extensions["bankiot.db"]
    keys = IdentityKeySource.from_config(database, Path(app.config["DATA_DIR"]))
    pipeline = Ingest(database, keys)
    app.extensions[EXTENSION] = pipeline
    registry = app.extensions.get("bankiot.metrics")
    if registry is not None:
        pipeline.stats.register(registry)
    app.register_blueprint(views.bp)
    previous = app.spec_callback

    def spec(document: Any) -> Any:  # the raw request body, after any other area's changes
        document = previous(document) if previous is not None else document
        return views.document_request_body(document, pipeline.max_envelope_bytes)

    app.spec_callback = spec


def set_key_source(app: APIFlask, source: KeySource) -> None:
    """Where ``app``'s ingest finds gateways' keys."""
    app.extensions[EXTENSION].key_source = source
