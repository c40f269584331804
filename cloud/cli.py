"""``bankiot cloud``: run and administer the cloud."""

from __future__ import annotations

from pathlib import Path

import click

from cloud.config import ConfigError, load_config


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

    config = settings(config_file, data_dir, http=http)
    host, port = _host_port(config["HTTP"])
    upgrade(config["DATABASE_URL"])
    app = create_app(config)
    click.echo("bankiot cloud on http://%s:%d (API docs at /docs)" % (host, port))
    try:
        run_simple(host, port, app, threaded=True)
    except OSError as exc:
        raise click.ClickException("cannot listen on %s:%d: %s" % (host, port, exc)) from None


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
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        upgrade(url)
    except Exception as exc:  # a driver's error: say it in one line
        raise click.ClickException("migration failed: %s" % str(exc).splitlines()[0]) from None
    click.echo("database at %s" % ", ".join(current(url)))
