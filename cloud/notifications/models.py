"""What the customer's inbox stores.

- ``notifications``: one message for one customer, on the ``app`` or ``wearable`` channel
  (``CHANNELS``; a ``wearable`` one is shown by the app and relayed by the phone to the
  customer's smartwatch: ``docs/customers.md``). ``source`` says what decided it (``rule:<rule
  id>``, ``holdings``, ``shopping``, ``offers``); ``title`` (at most ``TITLE_LEN``
  characters) and ``text`` (at most ``TEXT_LEN``, a rule's message's own bound) are what the
  customer reads. An offer names its campaign and the ``offer_decisions`` row that decided
  it. ``read_at`` is null until the customer reads it. Written in the transaction of the
  decision that caused it (``inbox``), so a notification exists exactly when its decision was
  committed. Personal data: exported and erased with the customer (``cloud.customers``),
  purged after ``notifications`` retention (``cloud.ingest.retention``, by ``created_at``).
  Ids are never reused (AUTOINCREMENT on SQLite): offer results name a notification by its
  id and outlive it. The push outbox (``pusher``, migration ``0023_notification_delivery``):
  ``next_push_at`` is when the pusher may take it next (set to ``created_at`` when stored;
  null once pushed or given up), ``push_attempts`` how often it was taken, ``pushed_at``
  when the push gateway took it (null until then; rows older than the outbox count as
  pushed; unpushed rows, due, waiting or given up, are also in the partial index
  ``ix_notifications_unpushed``, migration ``0025_push_outbox_index``). ``relayed_at``:
  when the customer's phone app said it passed a ``wearable`` notification on to the watch
  (set once).
- ``campaign_sends``: one row per time cloud operations sent an app or wearable campaign to
  its audience (``offers``): when, by whom, which campaign version, and how many customers
  were decided, notified and refused. A send goes through the audience a page at a time,
  each page committed with the row's progress: ``status`` (``sending`` until the last page,
  then ``done``), ``last_customer_id`` (every active customer up to that id decided),
  ``updated_at`` (the time of the call that committed the last page) and ``finished_at``.
  A send left ``sending`` by a failure is continued by the next send of its campaign
  (migration ``0022_campaign_send_progress``). ``last_customer_id`` is a position in the id
  order, not a reference (no foreign key: it outlives an erased customer); the send's
  decisions, one per customer, are in ``offer_decisions`` with gateway ``send:<id>``.

Times are UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db import Base, BigId

CHANNELS = ("app", "wearable")
TITLE_LEN = 80
TEXT_LEN = 500  # cloud.events.rules bounds a rule's message at 500 characters
SOURCE_LEN = 80
UNPUSHED = text("pushed_at IS NULL")


class Notification(Base):
    """One message in a customer's inbox (module docstring)."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint("channel IN ('app', 'wearable')", name="channel"),
        Index("ix_notifications_customer_id_id", "customer_id", "id"),
        # The outbox proper, without the pushed rows (nearly all, and like given-up ones
        # without next_push_at): /metrics counts due and given-up rows from it at each scrape.
        Index(
            "ix_notifications_unpushed",
            "next_push_at",
            sqlite_where=UNPUSHED,
            postgresql_where=UNPUSHED,
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(SOURCE_LEN))
    title: Mapped[str] = mapped_column(String(TITLE_LEN))
    text: Mapped[str] = mapped_column(String(TEXT_LEN))
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="SET NULL"), index=True
    )
    offer_decision_id: Mapped[int | None] = mapped_column(
        ForeignKey("offer_decisions.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    read_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    pushed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    push_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_push_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    relayed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


SENDING, DONE = "sending", "done"  # a send's status


class CampaignSend(Base):
    """One send of a campaign to its audience (module docstring)."""

    __tablename__ = "campaign_sends"
    __table_args__ = (CheckConstraint("status IN ('sending', 'done')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    campaign_version: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(128))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), server_default="done")
    last_customer_id: Mapped[int] = mapped_column(Integer, server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
