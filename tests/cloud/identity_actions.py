"""Actions the identity tests share: an app with a fleet CA, callers, CSRs, enrollments.

Like the Flask tutorial's ``AuthActions``: small verbs over the real app and database.
Callers are set through ``cloud.access.set_authenticator`` (the contract areas build on),
so these tests do not depend on how people sign in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apiflask import APIFlask
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient
from sqlalchemy.engine import URL

from cloud.access import Principal, set_authenticator
from cloud.db import database
from cloud.identity.ca import init_ca
from tests.cloud.people_actions import add_branch
from tests.support.cloud import make_app


class Callers:
    """Who the app thinks is calling: ``as_operations()``, ``as_manager(branch)``, ..."""

    def __init__(self, app: APIFlask) -> None:
        self.principal: Principal | None = None
        set_authenticator(app, lambda: self.principal)

    def nobody(self) -> None:
        self.principal = None

    def as_operations(self, name: str = "ops") -> None:
        self.principal = Principal("operator", name, "operations", None)

    def as_manager(self, *branches: int, name: str = "maria") -> None:
        self.principal = Principal("operator", name, "branch_manager", frozenset(branches))

    def as_technician(self, *branches: int, name: str = "tom") -> None:
        self.principal = Principal("operator", name, "technician", frozenset(branches))


@dataclass
class Cloud:
    """An app on a migrated database with an initialised fleet CA, and a client."""

    app: APIFlask
    client: FlaskClient
    callers: Callers
    data_dir: Path
    root_dir: Path
    branches: dict[str, int] = field(default_factory=dict)


@contextmanager
def running_cloud(database_url: URL | str, tmp_path: Path, **options: Any) -> Iterator[Cloud]:
    """``make_cloud`` for the length of a test; the database connections closed after."""
    cloud = make_cloud(database_url, tmp_path, **options)
    try:
        yield cloud
    finally:
        cloud.app.extensions["bankiot.db"].dispose()


def make_cloud(
    database_url: URL | str,
    tmp_path: Path,
    *codes: str,
    ca_environ: Mapping[str, str] | None = None,
    **settings: str,
) -> Cloud:
    """A cloud whose data folder has a fleet CA (root kept in ``tmp_path/root``, keys
    encrypted if ``ca_environ`` has passphrases), with the branches ``codes`` (default:
    north, south), signed in as operations."""
    data_dir, root_dir = tmp_path / "data", tmp_path / "root"
    init_ca(data_dir, root_dir, environ=ca_environ or {})
    app = make_app(database_url, data_dir, **settings)
    callers = Callers(app)
    callers.as_operations()
    cloud = Cloud(app, app.test_client(), callers, data_dir, root_dir)
    for code in codes or ("north", "south"):
        cloud.branches[code] = add_branch(app, code)
    return cloud


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(uid: str, key: Any = None) -> tuple[Any, str]:
    """A device's CSR for ``uid`` (P-256 unless ``key`` says otherwise); returns key, PEM."""
    key = key if key is not None else new_key()
    return key, csr_pem(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uid)]), key)


def csr_pem(subject: x509.Name, key: Any) -> str:
    """The PEM CSR of ``subject`` signed by ``key``."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def body(response: Any) -> Any:
    assert response.json is not None, response.get_data(as_text=True)
    return response.json


def create_claim(cloud: Cloud, branch: str = "north", kind: str = "gateway", **extra: Any) -> str:
    """A claim token for ``branch`` made by the current caller."""
    response = cloud.client.post(
        "/api/identity/claims", json={"branch_id": cloud.branches[branch], "kind": kind, **extra}
    )
    assert response.status_code == 201, response.json
    return body(response)["token"]


def enroll(cloud: Cloud, token: str, uid: str, key: Any = None) -> tuple[Any, dict[str, Any]]:
    """Enroll ``uid`` with ``token``; returns the device key and the enrollment answer."""
    key, csr = make_csr(uid, key)
    response = cloud.client.post("/api/identity/enroll", json={"token": token, "csr": csr})
    assert response.status_code == 201, response.json
    return key, body(response)


def enroll_new(cloud: Cloud, uid: str, branch: str = "north") -> tuple[Any, dict[str, Any]]:
    """Claim and enroll a new gateway ``uid`` in ``branch``."""
    return enroll(cloud, create_claim(cloud, branch), uid)


def device_id(answer: dict[str, Any]) -> int:
    return answer["device"]["id"]


def certificate(answer: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(answer["certificate"].encode())


def audit_actions(cloud: Cloud) -> list[tuple[str, str, dict[str, Any]]]:
    """Every audit event so far as (actor, action, details), oldest first."""
    from sqlalchemy import select

    from cloud.audit import AuditEvent

    with cloud.app.app_context(), database().sessions() as db:
        rows = db.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(row.actor, row.action, dict(row.details)) for row in rows]
