"""Device identity and enrollment: the fleet CA, claim tokens, enrollment and renewal,
re-provisioning, revocation (CRL and explicit checks), the broker's TLS configuration.

Modules, one job each:

- ``ca``: the two-tier fleet CA (offline-able root, online issuing CA), ``ca init``;
- ``keyfiles``: private keys at rest (0600, optionally passphrase-encrypted);
- ``csr``: what a device's CSR must be, and device uids;
- ``claims``: single-use claim tokens, redeemed atomically;
- ``keys``: gateways' envelope keys, wrapped under a key-encryption key;
- ``enrollment``: enroll, re-provision, renew;
- ``revocation``: revoke, publish the CRL, ``check_certificate``;
- ``broker``: the production Mosquitto configuration and its ACL;
- ``runtime``: the area inside a running app (CA, KEK, publishing);
- ``views`` and ``schemas``: the HTTP API under ``/api/identity``.

The data folder holds ``ca/`` (issuing CA key 0600, certificates, chain), ``keys/``
(the envelope KEK, 0600), ``crl.pem`` and ``mosquitto.acl``. The root CA key is not there.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIFlask, HTTPError
from flask import Response

from cloud.identity.errors import IdentityError


def _bodies_required(app: APIFlask, prefix: str) -> None:
    """Say in the OpenAPI document that the request bodies under ``prefix`` are required
    (apiflask leaves ``required`` out, so clients and schemathesis would think an empty
    request valid). Chains to any spec processor registered before."""
    previous = app.spec_callback

    def process(spec: Any) -> Any:
        spec = previous(spec) if previous is not None else spec
        for path, operations in spec.get("paths", {}).items():
            if path.startswith(prefix):
                for operation in operations.values():
                    if isinstance(operation, dict) and "requestBody" in operation:
                        operation["requestBody"]["required"] = True
        return spec

    app.spec_callback = process


def init_app(app: APIFlask) -> None:
    """Register the identity API and turn identity refusals into one-line JSON errors."""
    from cloud.db import session
    from cloud.identity.views import bp

    def refused(error: IdentityError) -> Any:
        session().rollback()
        return app.error_callback(HTTPError(error.status, error.message))

    app.register_error_handler(IdentityError, refused)
    app.register_blueprint(bp)
    _bodies_required(app, bp.url_prefix or "/")
    _limit_device_views(app)


def _failed(response: Response) -> bool:
    return response.status_code >= 400


def _limit_device_views(app: APIFlask) -> None:
    """Refused enrollments and renewals count against the caller's address
    (``ENROLL_RATE_LIMIT``, default 20 per minute): a claim token cannot be guessed, but
    a flood of attempts would still fill the audit log. Successes do not count, so a
    technician enrolling a whole branch is never slowed down."""
    from cloud.people.limits import limit_endpoint

    limit = app.config.get("ENROLL_RATE_LIMIT", "20 per minute")
    for endpoint in ("identity.enroll", "identity.renew"):
        limit_endpoint(app, endpoint, limit, deduct_when=_failed)
