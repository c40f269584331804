"""The identity area inside a running app: its CA, its KEK, and publishing after commits.

The CA and the KEK are loaded on first use and kept in ``app.extensions`` (so an app
started before ``bankiot cloud ca init`` picks the CA up once it exists). ``publish``
rewrites the CRL and the broker ACL; call it after every commit that issued or revoked a
certificate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from cloud import db
from cloud.fleet.models import Device
from cloud.identity.broker import publish_acl
from cloud.identity.ca import FleetCA, load_ca
from cloud.identity.keys import KeyWrapper, load_wrapper
from cloud.identity.revocation import crl_needs_refresh, publish_crl

CA_EXTENSION = "bankiot.identity.ca"
KEK_EXTENSION = "bankiot.identity.kek"
CONFIG_EXTENSION = "bankiot.identity.initial_config"

InitialConfig = Callable[[Device], dict[str, Any]]


def data_dir() -> Path:
    """The current app's data folder."""
    return Path(current_app.config["DATA_DIR"])


def db_session() -> Session:
    """The session of the current request."""
    return db.session()


def authority() -> FleetCA:
    """The current app's issuing CA (``CANotInitialised`` until ``ca init`` ran)."""
    ca = current_app.extensions.get(CA_EXTENSION)
    if ca is None:
        ca = current_app.extensions[CA_EXTENSION] = load_ca(data_dir())
    return ca


def key_wrapper() -> KeyWrapper:
    """The current app's envelope key wrapper (KEK)."""
    wrapper = current_app.extensions.get(KEK_EXTENSION)
    if wrapper is None:
        wrapper = current_app.extensions[KEK_EXTENSION] = load_wrapper(data_dir())
    return wrapper


def publish(session: Session, now: dt.datetime, crl: bool = True) -> None:
    """Rewrite ``mosquitto.acl`` and (unless ``crl`` is False: nothing was revoked)
    ``crl.pem`` from the committed state."""
    if crl:
        publish_crl(session, authority(), data_dir(), now)
    publish_acl(session, data_dir(), now)


def refresh_crl_if_stale(now: dt.datetime | None = None) -> bool:
    """Re-sign the CRL when it is missing or past half its life (for ``serve``/``up`` at
    start and for cron); returns whether it did. Needs the CA."""
    now = now or dt.datetime.now(dt.UTC)
    if not crl_needs_refresh(data_dir(), now):
        return False
    publish_crl(db_session(), authority(), data_dir(), now)
    return True


def set_initial_config(app: Any, provider: InitialConfig) -> None:
    """Let another area (fleet configuration) say what a newly enrolled device starts with."""
    app.extensions[CONFIG_EXTENSION] = provider


def initial_config(device: Device) -> dict[str, Any]:
    """The configuration an enrolling device starts with (empty until a provider is set)."""
    provider = current_app.extensions.get(CONFIG_EXTENSION)
    return dict(provider(device)) if provider is not None else {}
