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

Old months go whole: ``drop_expired_partitions`` drops every monthly partition whose upper
bound is at or before ``now`` minus the longest retention of any class (``retention``), so
every row in it has expired whatever its class; the rest is deleted row by row
(``retention.purge_expired``). Dropping is a catalog change: it does not read the rows.

Locks: dropping a partition (like ``DETACH PARTITION`` without ``CONCURRENTLY``) takes an
ACCESS EXCLUSIVE lock on ``readings`` and on its default partition until the transaction
ends. ``DETACH ... CONCURRENTLY``, which would not block ingest, is refused while a default
partition exists, and ours always does. So the partitions are dropped directly, under a short
``lock_timeout`` (a long query on ``readings`` makes the drop give up, not stall ingest
behind it), in a transaction the caller commits at once; what could not be dropped is left
to the row-by-row purge and tried again next run.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from cloud.ingest.retention import CLASSES, RetentionPolicy

log = logging.getLogger(__name__)

SCHEMA = "readings_partitions"
PARENT = "readings"
DROP_LOCK_TIMEOUT = dt.timedelta(seconds=2)
_LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock_timeout that expired


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


# Monthly partitions of ``readings`` (never the default one) with the upper bound of their
# range, read from the catalog rather than from their names. The bound is printed in the
# session's time zone with its offset and cast back in the same session: exact.
_EXPIRED = text(
    "SELECT k.relname, format('%I.%I', n.nspname, k.relname) FROM pg_inherits i"
    " JOIN pg_class k ON k.oid = i.inhrelid JOIN pg_namespace n ON n.oid = k.relnamespace"
    " JOIN pg_partitioned_table t ON t.partrelid = i.inhparent CROSS JOIN LATERAL ("
    " SELECT (regexp_match(pg_get_expr(k.relpartbound, k.oid),"
    r" 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper) b"
    " WHERE i.inhparent = to_regclass(:parent) AND k.relkind = 'r' AND k.oid <> t.partdefid"
    " AND b.upper <= :cutoff ORDER BY b.upper"
)


def drop_expired_partitions(
    connection: Connection,
    now: dt.datetime,
    policy: RetentionPolicy | None = None,
    lock_timeout: dt.timedelta = DROP_LOCK_TIMEOUT,
) -> list[str]:
    """Drop the monthly partitions of ``readings`` whose every row has expired at ``now``
    under ``policy`` (upper bound at or before ``now`` minus the longest retention of any
    class); return their names, oldest first.

    Never the default partition, nor ``now``'s month or a later one. Runs in the caller's
    transaction, which then holds an ACCESS EXCLUSIVE lock on ``readings``: commit at once,
    before other work. If that lock is not had within ``lock_timeout``, stops there (a
    warning in the log) and returns what it dropped. Does nothing on another database than
    PostgreSQL.
    """
    if connection.dialect.name != "postgresql":
        return []
    policy = policy or RetentionPolicy()
    now = now.astimezone(dt.UTC)
    longest = max(policy.period(name) for name in CLASSES)
    cutoff = min(now - longest, _month(now, 0))  # the min: never now's month, whatever
    expired = connection.execute(_EXPIRED, {"parent": PARENT, "cutoff": cutoff}).all()
    if not expired:
        return []
    previous = connection.scalar(text("SELECT current_setting('lock_timeout')"))
    connection.execute(
        text("SELECT set_config('lock_timeout', :value, true)"),
        {"value": "%dms" % max(1, lock_timeout // dt.timedelta(milliseconds=1))},
    )
    dropped: list[str] = []
    try:
        for name, qualified in expired:
            try:
                with connection.begin_nested():
                    connection.execute(text("DROP TABLE %s" % qualified))
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                    raise
                log.warning(
                    "could not lock %s within %s: %s and later months left to the row-by-row purge",
                    PARENT,
                    lock_timeout,
                    name,
                )
                break
            dropped.append(name)
    finally:
        connection.execute(
            text("SELECT set_config('lock_timeout', :value, true)"), {"value": previous}
        )
    return dropped
