"""``bankiot bank import FILE...``: import statement files into the cloud's database on
this machine (the settings of ``bankiot cloud``), each file in a transaction of its own.

One line per file: what it brought, or why it was refused (file, element, line); the exit
status is 1 if any file was refused.
"""

from __future__ import annotations

from pathlib import Path

import click

from cloud.cli import config_option, data_dir_option, settings


@click.group()
def bank() -> None:
    """Bank data: import statements (camt.053/052, MT940, Open Banking JSON, CSV)."""


@bank.command("import")
@config_option
@data_dir_option
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "camt", "mt940", "obie", "csv"]),
    default="auto",
    show_default=True,
    help="The files' format; auto tells camt, MT940 and Open Banking apart (not CSV).",
)
@click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The column mapping of CSV files (TOML or JSON).",
)
@click.option("--customer", type=click.IntRange(1), help="The customer who owns the accounts.")
def import_files(
    config_file: Path | None,
    data_dir: Path | None,
    files: tuple[Path, ...],
    fmt: str,
    mapping: Path | None,
    customer: int | None,
) -> None:
    """Import statement files; importing one again adds nothing."""
    from cloud.bank import csvmap, service
    from cloud.bank.parsed import BankImportError
    from cloud.identity.models import utcnow
    from cloud.people.commands import actor, database

    config = settings(config_file, data_dir)
    column_mapping = None
    if mapping is not None:
        try:
            column_mapping = csvmap.load_mapping(str(mapping), mapping.read_bytes())
        except BankImportError as exc:
            raise click.ClickException(str(exc)) from None
    if fmt == "csv" and column_mapping is None:
        raise click.UsageError("--format csv needs --mapping")
    lines, refused = [], 0
    with (
        database(config) as db,
        click.progressbar(
            files, label="importing", item_show_func=lambda p: p.name if p else None
        ) as bar,
    ):
        for path in bar:
            try:
                summary = service.import_file(
                    db,
                    str(path),
                    path.read_bytes(),
                    fmt=fmt,
                    mapping=column_mapping,
                    customer_id=customer,
                    actor=actor(),
                    now=utcnow(),
                )
                lines.append(summary.line())
            except BankImportError as exc:
                refused += 1
                lines.append("refused: %s" % exc)
    for line in lines:
        click.echo(line, err=line.startswith("refused: "))
    if refused:
        raise click.ClickException("%d of %d files refused" % (refused, len(files)))
