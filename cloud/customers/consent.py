"""Consent per purpose: the purposes, their texts, the append-only history, and
``consented`` for the code that processes a customer's data.

A customer's answer for a purpose is the newest row of that purpose in
``customer_consents`` (``models.ConsentEvent``); no row means no consent. Rows are only ever
added: a withdrawal is a new row, so the history of what was agreed, to which text version,
through which channel and when is kept (GDPR Art 7(1): the bank can show the consent).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from cloud.customers.models import ConsentEvent, CustomerWearable


@dataclass(frozen=True)
class Purpose:
    """One purpose a customer may consent to, with the text shown and its version."""

    name: str
    title: str
    text: str
    version: str
    # whether the branches' gateways must hear the customer's wearable for it (its bind key
    # and allow-list entry go to them only while one such purpose is granted)
    wearable: bool = True


PURPOSES = (
    Purpose(
        "presence_branch",
        "Presence in branches",
        "The bank's gateways in the branches you use notice when your wearable is near, so "
        "the branch can welcome you, check you in at the kiosk and plan its staff.",
        "1",
    ),
    Purpose(
        "presence_partner",
        "Presence at partner shops",
        "Gateways at the bank's partner shops notice when your wearable is near, so the bank "
        "can offer you the partner's deals while you are there.",
        "1",
    ),
    Purpose(
        "activity",
        "Activity and heart rate",
        "Your wearable's activity and heart-rate readings are collected when it is near a "
        "gateway and used for health-related offers you ask for. This is health data.",
        "1",
    ),
    Purpose(
        "offers",
        "Personalised offers",
        "The bank uses what it knows of your accounts and transactions to choose offers for "
        "you and sends them to your app (or, if a campaign is for it, your wearable through "
        "the app). Offers you ask for at a kiosk need no more than presence in branches.",
        "1",
        wearable=False,
    ),
)
BY_NAME = {purpose.name: purpose for purpose in PURPOSES}
CHANNELS = ("kiosk_code", "web")  # given while pairing with a kiosk's code; on the page


class ConsentError(ValueError):
    """An unknown purpose or channel; the message names it."""


@dataclass(frozen=True)
class Answer:
    """A customer's current answer for a purpose (``granted`` False when never asked)."""

    purpose: Purpose
    granted: bool
    at: dt.datetime | None
    text_version: str | None
    channel: str | None


def record(
    session: Session,
    customer_id: int,
    purpose: str,
    granted: bool,
    channel: str,
    now: dt.datetime,
) -> ConsentEvent:
    """Add a grant or withdrawal of ``purpose`` (staged), for the current text version."""
    if purpose not in BY_NAME:
        raise ConsentError("unknown purpose %r" % purpose)
    if channel not in CHANNELS:
        raise ConsentError("unknown consent channel %r" % channel)
    row = ConsentEvent(
        customer_id=customer_id,
        purpose=purpose,
        granted=granted,
        text_version=BY_NAME[purpose].version,
        channel=channel,
        at=now,
    )
    session.add(row)
    session.flush()
    return row


def latest(session: Session, customer_id: int) -> dict[str, ConsentEvent]:
    """The newest row of each purpose the customer ever answered."""
    rows = session.scalars(
        select(ConsentEvent)
        .where(ConsentEvent.customer_id == customer_id)
        .order_by(ConsentEvent.id)
    ).all()
    return {row.purpose: row for row in rows}  # later rows overwrite earlier ones


def answers(session: Session, customer_id: int) -> list[Answer]:
    """The customer's current answer for every purpose, in ``PURPOSES`` order."""
    newest = latest(session, customer_id)
    out = []
    for purpose in PURPOSES:
        row = newest.get(purpose.name)
        if row is None:
            out.append(Answer(purpose, False, None, None, None))
        else:
            out.append(Answer(purpose, row.granted, row.at, row.text_version, row.channel))
    return out


def history(session: Session, customer_id: int) -> list[ConsentEvent]:
    """Every consent row of the customer, newest first."""
    return list(
        session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.customer_id == customer_id)
            .order_by(ConsentEvent.id.desc())
        )
    )


def any_granted(session: Session, customer_id: int) -> bool:
    """Whether the customer consents now to at least one purpose for which gateways hear
    their wearable (``Purpose.wearable``)."""
    return any(
        row.granted and BY_NAME[name].wearable
        for name, row in latest(session, customer_id).items()
        if name in BY_NAME
    )


def consented(session: Session, wearable_address: str, purpose: str) -> bool:
    """Whether data of the wearable ``wearable_address`` (``AA:BB:CC:DD:EE:FF``, any case)
    may be processed for ``purpose`` now: it is paired to a customer whose newest row for
    that purpose is a grant. False for a wearable no customer paired, or an unknown
    purpose (nothing is processed without a recorded consent)."""
    if purpose not in BY_NAME:
        return False
    customer_id = session.scalar(
        select(CustomerWearable.customer_id).where(
            CustomerWearable.address == wearable_address.upper()
        )
    )
    if customer_id is None:
        return False
    granted = session.scalar(
        select(ConsentEvent.granted)
        .where(ConsentEvent.customer_id == customer_id, ConsentEvent.purpose == purpose)
        .order_by(ConsentEvent.id.desc())
        .limit(1)
    )
    return bool(granted)


_CHUNK = 1000  # addresses per IN list (databases bound a statement's parameters)
# Built once: ingest runs it for every group of batches (building it costs more than
# running it on SQLite).
_GRANTS = (
    select(CustomerWearable.address, ConsentEvent.purpose, ConsentEvent.granted)
    .select_from(CustomerWearable)
    .outerjoin(ConsentEvent, ConsentEvent.customer_id == CustomerWearable.customer_id)
    .where(CustomerWearable.address.in_(bindparam("addresses", expanding=True)))
    .order_by(CustomerWearable.address, ConsentEvent.id)
)


def granted_purposes(
    connection: Session | Connection, addresses: Collection[str]
) -> dict[str, frozenset[str]]:
    """For each of ``addresses`` (``AA:BB:CC:DD:EE:FF``, upper case) that is paired to a
    customer, the purposes that customer consents to now (possibly none); addresses no
    customer paired are left out. One query per thousand addresses, for a whole batch, on a
    session or a plain connection."""
    wanted = sorted(set(addresses))
    out: dict[str, frozenset[str]] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = connection.execute(_GRANTS, {"addresses": chunk}).all()
        newest: dict[str, dict[str, bool]] = {}
        for address, purpose, granted in rows:
            answers = newest.setdefault(address, {})
            if purpose is not None:
                answers[purpose] = bool(granted)  # later rows overwrite earlier ones
        for address, answers in newest.items():
            out[address] = frozenset(p for p, yes in answers.items() if yes and p in BY_NAME)
    return out
