"""``bankiot gateway``: the Raspberry Pi gateway's commands (the ``gateway`` extra).

``enroll`` makes the gateway's identity (``edge.enroll``); ``status`` shows it, checked as
the gateway would check it before running, without any secret, with when its certificate
renews; ``renew`` renews the certificate now (``edge.renewal``); ``run`` runs the gateway
(``edge.runtime``); ``check-release`` is the systemd unit's ``ExecStartPre`` guard for a
release on trial (``edge.updates.guard_start``). Every error is one line.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click

from edge import factory_reset
from edge.enroll import enroll as enroll_gateway
from edge.errors import GatewayError, NotEnrolled
from edge.factory_reset import UNPROVISIONED
from edge.identity import Identity, load_identity, uplink_endpoints
from edge.renewal import renew_after
from edge.settings import CONFIG_ENV, GatewaySettings, find_settings

CONFIG_HELP = "gateway.toml (default: $%s, else /etc/bankiot/gateway.toml if it exists)" % (
    CONFIG_ENV
)


@click.group()
def gateway() -> None:
    """The Raspberry Pi gateway: enroll it, show its identity, run it."""


def _settings(config: Path | None, data_dir: Path | None) -> GatewaySettings:
    try:
        settings = find_settings(config)
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    if data_dir is not None:
        settings = dataclasses.replace(settings, data_dir=data_dir)
    return settings


def _uplinks(settings: GatewaySettings, identity: Identity) -> str:
    endpoints = uplink_endpoints(settings, identity)
    order = [settings.uplink] + [name for name in ("mqtt", "coap") if name != settings.uplink]
    shown = ["%s %s" % (name, endpoints[name]) for name in order if endpoints[name]]
    return ", ".join(shown) or "none given by the cloud: set [uplink] in gateway.toml"


@gateway.command()
@click.option("--cloud", "cloud_url", metavar="URL", help="The cloud (default: [cloud] url).")
@click.option(
    "--claim",
    metavar="TOKEN",
    envvar="BANKIOT_CLAIM",
    required=True,
    help="The claim token from the operator ('-': read it from stdin; or $BANKIOT_CLAIM).",
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Default: data_dir.")
@click.option("--uid", help="The device uid (default: rpi- and 12 hex digits from the machine id).")
@click.option("--force", is_flag=True, help="Enroll again; the current identity is kept aside.")
@click.option("--cafile", type=click.Path(path_type=Path), help="CA to trust for the cloud's TLS.")
@click.option("--config", type=click.Path(path_type=Path), help=CONFIG_HELP)
def enroll(
    cloud_url: str | None,
    claim: str,
    data_dir: Path | None,
    uid: str | None,
    force: bool,
    cafile: Path | None,
    config: Path | None,
) -> None:
    """Make this gateway's key, get its certificate and envelope key with a claim token,
    and store them (mode 0600) under the data folder."""
    settings = _settings(config, data_dir)
    cloud_url = cloud_url or settings.cloud_url
    if not cloud_url:
        raise click.ClickException("no cloud URL: give --cloud URL or set [cloud] url")
    token = sys.stdin.readline() if claim == "-" else claim
    try:
        done = enroll_gateway(
            cloud_url,
            token,
            settings.data_dir,
            uid=uid,
            force=force,
            cafile=cafile or settings.cloud_cafile,
        )
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    identity = done.identity
    click.echo(
        "enrolled %s: device %d (%s) in branch %d%s"
        % (
            identity.uid,
            identity.device_id,
            identity.kind,
            identity.branch_id,
            ", re-provisioned" if done.reprovisioned else "",
        )
    )
    click.echo(
        "certificate %s valid until %s"
        % (identity.serial(), identity.certificate.not_valid_after_utc.isoformat())
    )
    click.echo("uplinks: %s" % _uplinks(settings, identity))
    click.echo("identity: %s (files 0600, folder 0700)" % identity.folder)
    if done.replaced is not None:
        click.echo("previous identity kept in %s" % done.replaced)


@gateway.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Default: data_dir.")
@click.option("--config", type=click.Path(path_type=Path), help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def status(data_dir: Path | None, config: Path | None, as_json: bool) -> None:
    """Show this gateway's identity (no secrets), checked as the gateway checks it."""
    settings = _settings(config, data_dir)
    try:
        identity = load_identity(settings.data_dir)
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    summary: dict[str, Any] = identity.summary()
    summary["certificate"]["renew_after"] = renew_after(identity).isoformat()
    summary["uplinks"] = {"prefer": settings.uplink, **uplink_endpoints(settings, identity)}
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    cert = summary["certificate"]
    rows = [
        ("device", "%s (id %d, %s)" % (identity.uid, identity.device_id, identity.kind)),
        ("branch", str(identity.branch_id)),
        ("cloud", identity.cloud_url),
        ("certificate", "%s, valid until %s" % (cert["serial"], cert["not_after"])),
        ("renew after", cert["renew_after"]),
        ("envelope key", "version %d" % identity.envelope_version),
        ("uplinks", _uplinks(settings, identity)),
        ("identity", str(identity.folder)),
    ]
    for name, value in rows:
        click.echo("%-13s %s" % (name, value))


@gateway.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Default: data_dir.")
@click.option("--config", type=click.Path(path_type=Path), help=CONFIG_HELP)
def renew(data_dir: Path | None, config: Path | None) -> None:
    """Renew the certificate now (same key), at [cloud] url, else the enrollment's cloud."""
    from edge.renewal import renew as renew_certificate

    settings = _settings(config, data_dir)
    try:
        identity = load_identity(settings.data_dir)
        renewed = renew_certificate(
            identity, settings.cloud_url or identity.cloud_url, cafile=settings.cloud_cafile
        )
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(
        "certificate %s valid until %s, renew after %s"
        % (
            renewed.serial(),
            renewed.certificate.not_valid_after_utc.isoformat(),
            renew_after(renewed).isoformat(),
        )
    )


@gateway.command("check-release")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Default: data_dir.")
@click.option("--config", type=click.Path(path_type=Path), help=CONFIG_HELP)
def check_release(data_dir: Path | None, config: Path | None) -> None:
    """Before the service starts (its ExecStartPre): roll a release on trial back if it
    cannot be imported or its trial is over. Run it from the installed package."""
    import time

    from edge import update_plan as plan
    from edge import updates

    settings = _settings(config, data_dir)
    releases = Path(settings.data_dir) / updates.RELEASES
    limits = plan.Limits(settings.update_trial_minutes * 60, settings.update_max_starts)
    try:
        step = updates.guard_start(releases, limits, time.time())
    except (GatewayError, OSError) as exc:
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        raise click.ClickException("cannot check the release on trial: %s" % message) from None
    if step.do == plan.ROLL_BACK and step.trial is not None:
        click.echo(
            "rolled back to %s: %s" % (step.trial.previous or "the installed package", step.detail)
        )
    elif step.detail:
        click.echo("release on trial: %s" % step.detail)


class Unprovisioned(click.ClickException):
    """Not enrolled (or wiped by ``factory_reset``): the exit status systemd does not
    restart (the unit's ``RestartPreventExitStatus=``)."""

    exit_code = UNPROVISIONED


@gateway.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Default: data_dir.")
@click.option("--config", type=click.Path(path_type=Path), help=CONFIG_HELP)
def run(data_dir: Path | None, config: Path | None) -> None:
    """Run the gateway until SIGTERM or SIGINT (exit 75 asks systemd for a restart; 78:
    not enrolled, or wiped by a factory reset: not restarted)."""
    import logging
    import signal

    from edge import runtime
    from edge.uplink_link import UplinkError

    settings = _settings(config, data_dir)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if factory_reset.finish_interrupted(settings.data_dir):  # a power cut during a reset
        raise Unprovisioned(factory_reset.RE_ENROLL)
    try:
        identity = load_identity(settings.data_dir)
    except NotEnrolled as exc:  # not restarted by systemd: enroll first
        raise Unprovisioned(exc.message) from None
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    try:
        status = runtime.serve(settings, identity, (signal.SIGTERM, signal.SIGINT))
    except (UplinkError, GatewayError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    sys.exit(status)
