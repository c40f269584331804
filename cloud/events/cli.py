"""``bankiot events``: check rules files, dry-run them against recorded events, run the
live worker (settings of ``bankiot cloud``; rules from ``<data dir>/rules`` unless
``--rules DIR``).

``dry-run`` prints one line per decision (``--json``: one JSON object per line) and stores
and does nothing. A rules folder that does not parse is the one-line error naming file, rule
and key, exit status 1.

``run`` publishes the rules' offers to the kiosks (sealed, QoS 1) when a broker is
configured (``--broker`` or ``broker_url``, with ``--cafile``/``--certfile``/``--keyfile``
as ``bankiot cloud ingest-mqtt`` takes them); without one it says once, at start, that
offers are only logged. ``--metrics HOST:PORT`` serves its counters (``stats``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from cloud.cli import (
    broker_option,
    config_option,
    data_dir_option,
    metrics_option,
    settings,
    tls_options,
)

rules_option = click.option(
    "--rules",
    "rules_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The rules folder (default: <data dir>/rules).",
)
defaults_option = click.option(
    "--no-defaults", is_flag=True, help="Leave out the shipped default rules."
)


def _moment(text: str | None, name: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("%r is not an ISO 8601 time" % text, param_hint=name) from None
    from cloud.ingest.models import utc  # the models only when a command runs

    return utc(moment)


def _load(rules_dir: Path | None, config: dict, no_defaults: bool):
    from cloud.events.library import load_folder, rules_folder
    from cloud.events.rules import RuleError

    folder = rules_dir or rules_folder(config)
    if rules_dir is not None and not rules_dir.is_dir():
        raise click.ClickException("%s is not a folder" % rules_dir)
    try:
        return load_folder(folder, not no_defaults)
    except RuleError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def events() -> None:
    """Event processing: rules over device events, their dry run, the live worker."""


@events.command()
@config_option
@data_dir_option
@rules_option
@defaults_option
def check(
    config_file: Path | None, data_dir: Path | None, rules_dir: Path | None, no_defaults: bool
) -> None:
    """Parse the rules and list them."""
    rules = _load(rules_dir, settings(config_file, data_dir), no_defaults)
    for rule in rules.rules:
        window = (
            "" if rule.window is None else " %s %d min" % (rule.window.type, rule.window.minutes)
        )
        click.echo(
            "%s v%d (%s): on %s%s%s -> %s"
            % (
                rule.id,
                rule.version,
                rule.source,
                ",".join(sorted(rule.on)),
                " at %s" % rule.at if rule.at else "",
                window,
                ",".join(action.kind for action in rule.actions),
            )
        )


@events.command("dry-run")
@config_option
@data_dir_option
@rules_option
@defaults_option
@click.option("--since", help="Replay events that happened from this time on (ISO 8601).")
@click.option("--until", help="Run timers to this time (default: the last event).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per decision.")
def dry_run(
    config_file: Path | None,
    data_dir: Path | None,
    rules_dir: Path | None,
    no_defaults: bool,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Replay recorded events through the rules without acting; print the decisions."""
    from cloud.events.worker import decision_json
    from cloud.events.worker import dry_run as replay
    from cloud.people.commands import database

    config = settings(config_file, data_dir)
    rules = _load(rules_dir, config, no_defaults)
    start, end = _moment(since, "--since"), _moment(until, "--until")
    with database(config) as session:
        decisions = replay(session, rules, start, end)
    for decision in decisions:
        if as_json:
            click.echo(json.dumps(decision_json(decision), sort_keys=True))
        else:
            click.echo(
                "%s %s v%d %s %s: %s"
                % (
                    decision.at.isoformat(),
                    decision.rule,
                    decision.version,
                    decision.subject,
                    decision.reason,
                    "; ".join(decision.reasons),
                )
            )
    if not as_json:
        acted = sum(1 for decision in decisions if decision.acted)
        click.echo("%d decisions, %d would act (nothing stored or done)" % (len(decisions), acted))


@events.command()
@config_option
@data_dir_option
@rules_option
@broker_option
@tls_options
@metrics_option
def run(
    config_file: Path | None,
    data_dir: Path | None,
    rules_dir: Path | None,
    broker: str | None,
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    metrics: str | None,
) -> None:
    """Run the live worker: new device events through the rules, until stopped; beside it
    the shopping pass and the notifications' pusher (to push_url, else only logged)."""
    from cloud import events as package
    from cloud.cli import broker_from, start_metrics
    from cloud.events.library import RuleLibrary, rules_folder
    from cloud.events.stats import WorkerStats
    from cloud.ingest import service
    from cloud.migrations import upgrade
    from cloud.notifications.pusher import channel_from, describe

    config = settings(config_file, data_dir, broker_url=broker)
    push = channel_from(config)  # load_config has refused unusable push settings already
    # The broker is checked before anything starts: a bad URL or certificate is one line.
    where = broker_from(config, cafile, certfile, keyfile) if config["BROKER_URL"] else None
    upgrade(config["DATABASE_URL"])
    library = RuleLibrary(rules_dir or rules_folder(config))
    if library.current() and library.error:
        raise click.ClickException(library.error)
    try:
        ingest = service.open_ingest(config)  # its database and the gateways' key source
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    stats = WorkerStats()
    start_metrics(metrics, stats)
    click.echo("processing events with %d rules" % len(library.current().rules))
    if where is None:
        click.echo("no broker configured (--broker or broker_url): offers are only logged")
    else:
        click.echo("publishing offers to %s:%d" % (where[0], where[1]))
    click.echo(describe(push))
    service.run_until_signalled(
        lambda stop: package.standalone(
            ingest.database, library, ingest.key_source, where, stop, stats, push
        )
    )
