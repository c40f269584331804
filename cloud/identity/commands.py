"""What ``bankiot cloud ca ...`` and ``bankiot cloud broker-config`` do, given the cloud's
settings; ``cloud.cli`` only parses flags and prints. Each returns the lines to print and
raises ``IdentityError`` (one line) when it cannot do its job. Every action is audited
(actor ``cli:<login>``) through the database helpers the operator commands use (schema
brought up to date first; an unreachable database is one line).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cloud import audit
from cloud.identity.broker import publish_acl, write_broker_config
from cloud.identity.ca import CRL_FILE, init_ca, load_ca
from cloud.identity.revocation import publish_crl
from cloud.people.commands import actor, database


def ca_init(config: dict[str, Any], root_dir: Path | None) -> list[str]:
    """Create the fleet CA (root if needed, issuing CA, first CRL) and the broker ACL."""
    data_dir = Path(config["DATA_DIR"])
    now = dt.datetime.now(dt.UTC)
    with database(config) as session:  # the database first: the CA is made only if it answers
        result = init_ca(data_dir, root_dir, now=now)
        audit.record(
            session,
            actor(),
            "ca.init",
            result.issuing.subject.rfc4514_string(),
            root_created=result.root_created,
            root_dir=str(result.root_dir),
            issuing_serial="%x" % result.issuing.serial_number,
        )
        session.commit()
        publish_acl(session, data_dir, now)
    lines = [
        "issuing CA in %s (valid until %s)"
        % (result.paths.folder, result.issuing.not_valid_after_utc.date()),
        "CRL in %s (re-sign it daily: `bankiot cloud ca crl`)" % (data_dir / CRL_FILE),
    ]
    if result.root_created:
        lines.append(
            "root CA in %s: move root.key offline now; it is needed only to sign a new "
            "issuing CA (`bankiot cloud ca init --root-dir ...` on a fresh data folder)"
            % result.root_dir
        )
    else:
        lines.append("signed by the existing root CA in %s" % result.root_dir)
    return lines


def ca_crl(config: dict[str, Any]) -> list[str]:
    """Sign a fresh CRL (run daily: a CRL is valid for 7 days) and rewrite the ACL."""
    data_dir = Path(config["DATA_DIR"])
    ca = load_ca(data_dir)
    now = dt.datetime.now(dt.UTC)
    with database(config) as session:
        audit.record(session, actor(), "ca.crl", str(data_dir / "crl.pem"))
        session.commit()
        crl = publish_crl(session, ca, data_dir, now)
        acl = publish_acl(session, data_dir, now)
    return ["CRL in %s" % crl, "ACL in %s" % acl]


def broker_config(
    config: dict[str, Any], out_dir: Path, host: str, port: int, hostnames: tuple[str, ...]
) -> list[str]:
    """Write a production Mosquitto configuration into ``out_dir``."""
    data_dir = Path(config["DATA_DIR"])
    ca = load_ca(data_dir)
    now = dt.datetime.now(dt.UTC)
    with database(config) as session:
        files = write_broker_config(
            session, ca, data_dir, out_dir, host, port, hostnames, now, actor()
        )
        session.commit()
        publish_crl(session, ca, data_dir, now)
        publish_acl(session, data_dir, now)
    return [
        "broker configuration in %s" % files.config,
        "the cloud's MQTT identity (user cloud): %s, %s" % (files.cloud_cert, files.cloud_key),
        "the broker reads %s and %s: restart it after revocations (SIGHUP reloads the ACL)"
        % (files.crl, files.acl),
    ]
