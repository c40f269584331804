"""The OpenAPI document is served, valid, and the API honours it under schemathesis.

schemathesis generates requests from /openapi.json (valid and invalid) and checks every
response: no server errors, responses conforming to their schemas, invalid input refused.
It runs on a SQLite-backed app (the data layer itself is tested on both databases).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from sqlalchemy.engine import make_url

from tests.support.cloud import make_app


def test_openapi_document(client) -> None:
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "bankiot cloud"
    assert {"/healthz", "/readyz", "/metrics"} <= set(spec["paths"])


def _api_app():
    # Built at import: schemathesis turns the document into test cases at collection time.
    folder = Path(tempfile.mkdtemp(prefix="bankiot-schemathesis-"))
    atexit.register(shutil.rmtree, folder, True)
    return make_app(make_url("sqlite:///%s" % (folder / "db.sqlite3")), folder / "data")


# Sealed batches (HTTP ingest) are raw bytes: serialize application/cose like octet-stream.
schemathesis.serializer.alias("application/cose", "application/octet-stream")
schema = schemathesis.openapi.from_wsgi("/openapi.json", _api_app())


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case) -> None:
    case.call_and_validate()


def test_schema_path_is_served_from_the_app_folder() -> None:
    # The document is built from the code, never a stale file in the repository.
    assert not list(Path(__file__).resolve().parents[2].glob("cloud/**/openapi.json"))
