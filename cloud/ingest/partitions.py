"""Monthly partitions of ``readings`` on PostgreSQL (SQLite has none: a no-op there).

The migration makes ``readings`` a table partitioned by range of ``measured_at``. Its
partitions live in their own schema, ``readings_partitions`` (so the application schema
holds exactly the tables the models describe): one per calendar month (UTC), named
``readings_YYYY_MM``, and ``readings_default`` for times outside them (a gateway whose clock
is years off).

Partitions are made ahead: ``create_partitions`` makes the current month's and the next
``months_ahead`` ones. The migration calls it once; ingest services call it when they start
and once a day, so a month's partition exists before its first reading (a row in the default
partition for a month would stop that month's partition from being attached).

Old months whose every class has expired could be dropped whole instead of deleted row by
row (``retention``); that is not done yet.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, text

SCHEMA = "readings_partitions"
PARENT = "readings"


def _month(moment: dt.datetime, plus: int) -> dt.datetime:
    index = moment.year * 12 + moment.month - 1 + plus
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def partition_name(moment: dt.datetime) -> str:
    """The partition that holds readings measured at ``moment`` (a UTC time)."""
    return "readings_%04d_%02d" % (moment.year, moment.month)


def create_partitions(
    connection: Connection, now: dt.datetime | None = None, months_ahead: int = 2
) -> list[str]:
    """Make the schema, the default partition and the monthly partitions from ``now``'s
    month to ``months_ahead`` months later that do not exist yet; return those made.

    Runs in the caller's transaction. Does nothing on another database than PostgreSQL.
    """
    if connection.dialect.name != "postgresql":
        return []
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    connection.execute(text('CREATE SCHEMA IF NOT EXISTS "%s"' % SCHEMA))
    made = []
    existing = set(
        connection.scalars(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent "
                "WHERE p.relname = :parent AND c.relkind = 'r'"
            ),
            {"parent": PARENT},
        )
    )
    for plus in range(months_ahead + 1):
        start = _month(now, plus)
        name = partition_name(start)
        if name in existing:
            continue
        connection.execute(
            text(
                'CREATE TABLE "%s"."%s" PARTITION OF "%s" FOR VALUES FROM (\'%s\') TO (\'%s\')'
                % (SCHEMA, name, PARENT, start.isoformat(), _month(now, plus + 1).isoformat())
            )
        )
        made.append(name)
    if "readings_default" not in existing:
        connection.execute(
            text('CREATE TABLE "%s".readings_default PARTITION OF "%s" DEFAULT' % (SCHEMA, PARENT))
        )
        made.append("readings_default")
    return made
