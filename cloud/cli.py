"""``bankiot cloud``: run and administer the cloud."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cloud.config import ConfigError, load_config

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

F = TypeVar("F", bound=Callable[..., Any])


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.ClickException("%r is not HOST:PORT" % text)
    return host or "127.0.0.1", int(port)


def settings(config_file: Path | None, data_dir: Path | None, **flags: str | None) -> dict:
    try:
        overrides = {"data_dir": str(data_dir) if data_dir else None, **flags}
        return load_config(config_file, overrides=overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML configuration file (BANKIOT_* environment variables override it).",
)
data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Data folder."
)
broker_option = click.option(
    "--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT (default: broker_url)."
)
metrics_option = click.option(
    "--metrics", metavar="HOST:PORT", help="Serve Prometheus metrics on this address."
)


def tls_options(command: F) -> F:
    """``--cafile``, ``--certfile``, ``--keyfile``: the cloud's TLS identity towards a broker
    (``broker_from``), in that order in ``--help``."""
    for name in ("--keyfile", "--certfile", "--cafile"):  # the last applied shows first
        path = click.Path(exists=True, dir_okay=False, path_type=Path)
        command = click.option(name, type=path)(command)
    return command


@click.group()
def cloud() -> None:
    """Run and administer the bankiot cloud."""


@cloud.command()
@config_option
@data_dir_option
@click.option("--http", help="HOST:PORT to listen on (default 127.0.0.1:5000).")
def serve(config_file: Path | None, data_dir: Path | None, http: str | None) -> None:
    """Serve the web application and API (development server; use gunicorn at scale)."""
    from werkzeug.serving import run_simple

    from cloud.app import create_app
    from cloud.migrations import upgrade
    from cloud.up import refresh_stale_crl

    config = settings(config_file, data_dir, http=http)
    host, port = _host_port(config["HTTP"])
    upgrade(config["DATABASE_URL"])
    refreshed = refresh_stale_crl(config)
    if refreshed:
        click.echo(refreshed)
    app = create_app(config)
    click.echo("bankiot cloud on http://%s:%d (API docs at /docs)" % (host, port))
    try:
        run_simple(host, port, app, threaded=True)
    except OSError as exc:
        raise click.ClickException("cannot listen on %s:%d: %s" % (host, port, exc)) from None


@cloud.command()
@config_option
@data_dir_option
@click.option("--http", help="HOST:PORT of the web application (default 127.0.0.1:5000).")
@click.option("--coap", help="HOST:PORT (UDP) of CoAP ingest (default 127.0.0.1:5683).")
@click.option(
    "--mqtt", help="HOST:PORT of the embedded broker, MQTT over TLS (default 127.0.0.1:8883)."
)
@click.option("--broker", help="mqtt://HOST:PORT or mqtts://... of your broker instead.")
@tls_options
def up(
    config_file: Path | None,
    data_dir: Path | None,
    http: str | None,
    coap: str | None,
    mqtt: str | None,
    broker: str | None,
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
) -> None:
    """Run everything on one machine: web, CoAP and MQTT ingest, and a private broker.

    Migrates the database, makes the fleet CA on first start and re-signs a stale CRL
    first. Ctrl-C (or SIGTERM) stops everything. --cafile/--certfile/--keyfile: the
    cloud's TLS identity for --broker.
    """
    import logging

    from cloud import up as one_machine
    from cloud.identity.errors import IdentityError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = settings(config_file, data_dir, http=http, coap=coap)
    try:
        one_machine.run(config, mqtt, broker, (cafile, certfile, keyfile), click.echo)
    except one_machine.UpError as exc:
        raise click.ClickException(str(exc)) from None
    except IdentityError as exc:
        raise click.ClickException(exc.message) from None


@cloud.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@config_option
@data_dir_option
def db_upgrade(config_file: Path | None, data_dir: Path | None) -> None:
    """Apply every pending migration."""
    from cloud.migrations import current, upgrade

    config = settings(config_file, data_dir)
    url = config["DATABASE_URL"]
    try:
        upgrade(url)
    except Exception as exc:  # a driver's error: say it in one line
        raise click.ClickException("migration failed: %s" % str(exc).splitlines()[0]) from None
    click.echo("database at %s" % ", ".join(current(url)))


@cloud.group("operator")
def operator_group() -> None:
    """Operator accounts: the people who sign in to the cloud."""


password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from one line of standard input instead of a prompt.",
)


@operator_group.command("create")
@config_option
@data_dir_option
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["operations", "branch_manager", "technician"]),
    required=True,
    help="operations: every branch; branch_manager, technician: the --branch ones.",
)
@click.option("--branch", "branches", multiple=True, metavar="CODE", help="Branch (repeat).")
@password_stdin_option
def operator_create(
    config_file: Path | None,
    data_dir: Path | None,
    name: str,
    role: str,
    branches: tuple[str, ...],
    password_stdin: bool,
) -> None:
    """Create an operator account (the first operations account, for example)."""
    from cloud.people import commands

    config = settings(config_file, data_dir)
    commands.check_assignment(role, branches)
    password = commands.read_password(password_stdin)
    click.echo(commands.create(config, name, role, branches, password))


@operator_group.command("set-password")
@config_option
@data_dir_option
@click.argument("name")
@password_stdin_option
def operator_set_password(
    config_file: Path | None, data_dir: Path | None, name: str, password_stdin: bool
) -> None:
    """Set an operator's password; ends their sessions and revokes their API tokens."""
    from cloud.people import commands

    config = settings(config_file, data_dir)
    password = commands.read_password(password_stdin)
    click.echo(commands.change_password(config, name, password))


@operator_group.command("list")
@config_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def operator_list(config_file: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List operator accounts."""
    from cloud.people import commands

    click.echo(commands.listing(settings(config_file, data_dir), as_json))


@cloud.group("token")
def token_group() -> None:
    """API tokens for operators (``Authorization: Bearer``), made on the database itself."""


@token_group.command("create")
@config_option
@data_dir_option
@click.argument("operator")
@click.option(
    "--name", "token_name", default="command line", show_default=True, help="What it is for."
)
@click.option("--days", type=int, help="Days it is valid (1 to 365; default 90, as the API's).")
def token_create(
    config_file: Path | None,
    data_dir: Path | None,
    operator: str,
    token_name: str,
    days: int | None,
) -> None:
    """Make an API token for OPERATOR (printed once; the cloud keeps only its hash).

    The token acts with the operator's role and branches: export it as BANKIOT_TOKEN for
    ``bankiot fleet``. As POST /api/tokens from a signed-in session, audited.
    """
    from cloud.people import commands

    for line in commands.create_api_token(
        settings(config_file, data_dir), operator, token_name, days
    ):
        click.echo(line)


def _identity_lines(action, *args) -> None:
    """Run a ``cloud.identity.commands`` function; print its lines, errors as one line."""
    from cloud.identity.errors import IdentityError

    try:
        lines = action(*args)
    except IdentityError as exc:
        raise click.ClickException(exc.message) from None
    for line in lines:
        click.echo(line)


@cloud.group("ca")
def ca_group() -> None:
    """The fleet certificate authority (root kept offline, issuing CA online)."""


@ca_group.command("init")
@config_option
@data_dir_option
@click.option(
    "--root-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the root CA key (default: next to the data folder); keep it offline.",
)
def ca_init(config_file: Path | None, data_dir: Path | None, root_dir: Path | None) -> None:
    """Create the root CA (unless --root-dir has one) and the issuing CA in the data folder.

    BANKIOT_ROOT_CA_PASSPHRASE and BANKIOT_CA_PASSPHRASE, when set, encrypt the keys.
    """
    from cloud.identity import commands

    _identity_lines(commands.ca_init, settings(config_file, data_dir), root_dir)


@ca_group.command("crl")
@config_option
@data_dir_option
def ca_crl(config_file: Path | None, data_dir: Path | None) -> None:
    """Sign a fresh CRL into the data folder (run daily: a CRL is valid for 7 days)."""
    from cloud.identity import commands

    _identity_lines(commands.ca_crl, settings(config_file, data_dir))


@cloud.command("broker-config")
@config_option
@data_dir_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for mosquitto.conf, the broker's certificate and the cloud's identity.",
)
@click.option("--listen", default="0.0.0.0:8883", show_default=True, help="HOST:PORT.")
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    help="Name or address devices use for the broker (repeat; default: localhost, 127.0.0.1).",
)
def broker_config(
    config_file: Path | None,
    data_dir: Path | None,
    out_dir: Path,
    listen: str,
    hostnames: tuple[str, ...],
) -> None:
    """Write a production Mosquitto configuration: mTLS, CRL, per-device topic ACL."""
    from cloud.identity import commands

    host, port = _host_port(listen)
    _identity_lines(
        commands.broker_config,
        settings(config_file, data_dir),
        out_dir,
        host,
        port,
        hostnames or ("localhost", "127.0.0.1"),
    )


def start_metrics(address: str | None, stats: Collector) -> None:
    """Serve ``stats`` (ingest's or the event worker's counters) for Prometheus on
    ``address`` (HOST:PORT), if given."""
    if address:
        from cloud.ingest import service

        host, port = _host_port(address)
        try:
            service.serve_metrics(stats, host, port)
        except OSError as exc:
            raise click.ClickException("cannot serve metrics on %s: %s" % (address, exc)) from None


def broker_from(
    config: dict, cafile: Path | None, certfile: Path | None, keyfile: Path | None
) -> tuple[str, int, ssl.SSLContext | None]:
    """The broker of ``config`` (``BROKER_URL``): host, port and the TLS context to reach it
    with (the cloud's client certificate if given; None for plain MQTT)."""
    from cloud.ingest import service

    if not config["BROKER_URL"]:
        raise click.ClickException("no broker: give --broker mqtt://HOST:PORT or broker_url")
    try:
        host, port, tls = service.broker_address(config["BROKER_URL"])
        context = service.tls_context(cafile, certfile, keyfile) if tls or cafile else None
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    return host, port, context


@cloud.command("ingest-mqtt")
@config_option
@data_dir_option
@broker_option
@click.option("--group", default="bankiot-ingest", show_default=True, help="Shared group.")
@click.option("--client-id", help="MQTT client id (default: random per process).")
@tls_options
@metrics_option
def ingest_mqtt(
    config_file: Path | None,
    data_dir: Path | None,
    broker: str | None,
    group: str,
    client_id: str | None,
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    metrics: str | None,
) -> None:
    """Ingest gateways' batches from the broker (one worker of a shared group)."""
    from cloud.ingest import service
    from cloud.ingest.mqtt_worker import MqttWorker

    config = settings(config_file, data_dir, broker_url=broker)
    host, port, context = broker_from(config, cafile, certfile, keyfile)
    try:
        ingest = service.open_ingest(config)
        worker = MqttWorker(
            ingest, host, port, group=group, identifier=client_id, tls_context=context
        )
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    start_metrics(metrics, ingest.stats)
    click.echo("ingesting from %s:%d as %s in group %s" % (host, port, worker.identifier, group))
    service.run_until_signalled(lambda stop: service.serve_mqtt(worker, stop))


@cloud.command("supervise")
@config_option
@data_dir_option
@broker_option
@tls_options
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between passes.",
)
def supervise(
    config_file: Path | None,
    data_dir: Path | None,
    broker: str | None,
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    interval: float,
) -> None:
    """Deliver configuration and commands to gateways, time out commands, keep alerts."""
    from cloud.fleet import supervisor
    from cloud.ingest import service

    config = settings(config_file, data_dir, broker_url=broker)
    host, port, context = broker_from(config, cafile, certfile, keyfile)
    try:
        checks = supervisor.checks_for(config)
        ingest = service.open_ingest(config)  # its database and key source
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    publisher = supervisor.MqttPublisher(host, port, tls_context=context)
    click.echo("supervising the fleet, publishing to %s:%d" % (host, port))
    service.run_until_signalled(
        lambda stop: supervisor.supervise(
            ingest.database, ingest.key_source, publisher, stop, interval=interval, checks=checks
        )
    )


@cloud.command("ingest-coap")
@config_option
@data_dir_option
@click.option("--coap", help="HOST:PORT to listen on (UDP; default 127.0.0.1:5683).")
@metrics_option
def ingest_coap(
    config_file: Path | None, data_dir: Path | None, coap: str | None, metrics: str | None
) -> None:
    """Ingest gateways' batches over CoAP (POST /batches)."""
    from cloud.ingest import service

    config = settings(config_file, data_dir, coap=coap)
    host, port = _host_port(config["COAP"])
    try:
        ingest = service.open_ingest(config)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    start_metrics(metrics, ingest.stats)
    click.echo("CoAP ingest on coap://%s:%d/batches" % (host, port))
    try:
        service.run_until_signalled(lambda stop: service.serve_coap(ingest, host, port, stop))
    except OSError as exc:
        raise click.ClickException("cannot listen on %s:%d: %s" % (host, port, exc)) from None


@cloud.command("ingest-purge")
@config_option
@data_dir_option
@click.option(
    "--keep",
    multiple=True,
    metavar="CLASS=DURATION",
    help="Retention of a data class, e.g. health=7d or presence=12h (repeat).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ingest_purge(
    config_file: Path | None, data_dir: Path | None, keep: tuple[str, ...], as_json: bool
) -> None:
    """Delete readings, events and records of what was decided about customers older than
    their data class's retention (run daily).

    On PostgreSQL, months of readings whose every class has expired are dropped whole.
    """
    from cloud.ingest import service
    from cloud.ingest.retention import RetentionError

    try:
        click.echo(service.purge(settings(config_file, data_dir), keep, as_json))
    except (RetentionError, service.ServiceError) as exc:
        raise click.ClickException(str(exc)) from None
