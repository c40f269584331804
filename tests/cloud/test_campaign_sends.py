"""Campaign sends at scale, on SQLite and PostgreSQL: the audience decided a page at a time,
each page committed with the send's progress and its notifications pushed after that commit;
a send that failed half-way keeps its committed pages and is continued by the next send,
notifying nobody twice; two sends of one campaign at once work through one send, taking
turns page by page (``cloud.notifications.offers``).

The page size is lowered to two customers so that five customers make three pages.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import event, select, text

from cloud.fleet.errors import Conflict
from cloud.notifications import offers
from cloud.notifications.models import CampaignSend, Notification
from cloud.notifications.push import EXTENSION, LoggingChannel, Note
from cloud.offers.models import OfferDecision
from tests.cloud.customer_actions import OPERATIONS, active_campaign, database_of
from tests.cloud.dashboard_actions import add_customer
from tests.cloud.fleet_actions import add_branches
from tests.cloud.identity_actions import Callers, body

ALL = ("activity", "presence_branch", "presence_partner", "offers")
WAIT = 60.0  # seconds: the bound of every wait for another thread


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def callers(cloud_app: APIFlask) -> Callers:
    callers = Callers(cloud_app)
    callers.as_operations()
    return callers


@pytest.fixture
def audience(cloud_app: APIFlask, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Five active customers, in id order; the second has not consented to personalised
    offers. Sends read two customers a page."""
    monkeypatch.setattr(offers, "PAGE", 2)
    north = add_branches(cloud_app, "north")["north"]
    return [
        add_customer(
            cloud_app,
            "c%d@example.com" % n,
            "C0:FF:EE:00:01:%02X" % n,
            north,
            ALL if n != 1 else ("activity", "presence_branch"),
        )
        for n in range(5)
    ]


@pytest.fixture
def campaign(cloud_app: APIFlask) -> int:
    """An active app campaign for everyone, once per customer in 7 days."""
    with database_of(cloud_app).sessions() as session:
        made = active_campaign(session, now(), channel="app", actor=OPERATIONS)
        session.commit()
        return made


def send_api(client: FlaskClient, campaign: int) -> Any:
    return client.post("/api/offers/campaigns/%d/send" % campaign)


def set_status(client: FlaskClient, campaign: int, status: str) -> Any:
    return client.patch("/api/offers/campaigns/%d" % campaign, json={"status": status})


def send_direct(
    app: APIFlask, campaign: int, push: Callable[[list[Note]], object] | None = None
) -> offers.SendResult:
    """``offers.send`` on a session of its own, as a second process would call it."""
    with database_of(app).sessions() as session:
        return offers.send(session, campaign, OPERATIONS, now(), push=push)


def sends_of(app: APIFlask, campaign: int) -> list[CampaignSend]:
    with database_of(app).sessions() as session:
        rows = list(
            session.scalars(
                select(CampaignSend)
                .where(CampaignSend.campaign_id == campaign)
                .order_by(CampaignSend.id)
            )
        )
        session.expunge_all()
        return rows


def decided(app: APIFlask, send_id: int) -> list[tuple[int, int | None]]:
    """(place, customer) of every decision of send ``send_id``, in place order."""
    with database_of(app).sessions() as session:
        rows = session.execute(
            select(OfferDecision.event_id, OfferDecision.customer_id)
            .where(OfferDecision.gateway == "send:%d" % send_id)
            .order_by(OfferDecision.event_id)
        ).all()
        return [(place, customer) for place, customer in rows]


def inboxes(app: APIFlask, campaign: int) -> Counter[int]:
    """How many notifications of ``campaign`` each customer has."""
    with database_of(app).sessions() as session:
        return Counter(
            session.scalars(
                select(Notification.customer_id).where(Notification.campaign_id == campaign)
            )
        )


def test_a_send_commits_each_page_with_its_progress_and_pushes_after_the_commit(
    cloud_app: APIFlask, audience: list[int], campaign: int
) -> None:
    seen: list[tuple[str, int, int, list[int], list[int]]] = []

    def push(notes: list[Note]) -> None:
        # What another connection sees when a page's notifications are pushed: the page and
        # its progress are committed already.
        with database_of(cloud_app).sessions() as other:
            row = other.scalars(select(CampaignSend)).one()
            stored = other.scalars(
                select(Notification.id).where(Notification.id.in_([n.id for n in notes]))
            ).all()
            seen.append(
                (
                    row.status,
                    row.last_customer_id,
                    row.counts["decided"],
                    sorted(stored),
                    sorted(n.customer_id for n in notes),
                )
            )

    done = send_direct(cloud_app, campaign, push)

    assert [(s[0], s[1], s[2], s[4]) for s in seen] == [
        ("sending", audience[1], 2, [audience[0]]),  # the second customer: no consent
        ("sending", audience[3], 4, [audience[2], audience[3]]),
        ("done", audience[4], 5, [audience[4]]),
    ]
    assert all(len(s[3]) == len(s[4]) for s in seen)  # every pushed note was committed
    assert done.resumed_after is None
    out = offers.send_out(done)
    assert (out["status"], out["last_customer_id"], out["finished_at"] is not None) == (
        "done",
        audience[4],
        True,
    )
    assert {k: out[k] for k in offers.COUNTS} == {
        "decided": 5,
        "notified": 4,
        "no_consent": 1,
        "not_offered": 0,
    }
    assert decided(cloud_app, done.send.id) == list(enumerate(audience, start=1))
    assert inboxes(cloud_app, campaign) == Counter(c for i, c in enumerate(audience) if i != 1)


def test_a_send_that_failed_half_way_is_continued_and_notifies_nobody_twice(
    cloud_app: APIFlask,
    client: FlaskClient,
    callers: Callers,
    audience: list[int],
    campaign: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    channel = LoggingChannel()
    cloud_app.extensions[EXTENSION] = channel
    deliver = offers.deliver

    def fails_on_the_fourth(session: Any, campaign: Any, customer: Any, **kwargs: Any) -> Any:
        if customer.id == audience[3]:
            raise RuntimeError("the database went away")
        return deliver(session, campaign, customer, **kwargs)

    monkeypatch.setattr(offers, "deliver", fails_on_the_fourth)
    pushed: list[int] = []
    with pytest.raises(RuntimeError, match="went away"):
        send_direct(cloud_app, campaign, lambda notes: pushed.extend(n.id for n in notes))
    monkeypatch.setattr(offers, "deliver", deliver)

    # The first page is committed and was pushed; the second, which failed, left nothing.
    (stopped,) = sends_of(cloud_app, campaign)
    assert (stopped.status, stopped.last_customer_id, stopped.finished_at) == (
        "sending",
        audience[1],
        None,
    )
    assert stopped.counts == {"decided": 2, "notified": 1, "no_consent": 1, "not_offered": 0}
    assert decided(cloud_app, stopped.id) == [(1, audience[0]), (2, audience[1])]
    assert inboxes(cloud_app, campaign) == Counter([audience[0]])
    assert len(pushed) == 1

    # A paused campaign's send stays stopped, and says where it is.
    assert set_status(client, campaign, "paused").status_code == 200
    refused = send_api(client, campaign)
    assert refused.status_code == 409
    assert body(refused)["message"] == (
        "campaign %d is paused: activate it first (send %d stopped after customer %d: "
        "sending again continues it)" % (campaign, stopped.id, audience[1])
    )
    assert set_status(client, campaign, "active").status_code == 200

    # The next send continues the stopped one after its last committed page.
    resumed = send_api(client, campaign)
    assert resumed.status_code == 200, resumed.json
    out = body(resumed)
    assert (out["id"], out["status"], out["resumed_after"], out["last_customer_id"]) == (
        stopped.id,
        "done",
        audience[1],
        audience[4],
    )
    assert {k: out[k] for k in offers.COUNTS} == {
        "decided": 5,
        "notified": 4,
        "no_consent": 1,
        "not_offered": 0,
    }
    assert decided(cloud_app, stopped.id) == list(enumerate(audience, start=1))
    assert len(channel.sent) == 3  # the pages after the failure, pushed by this call
    everyone = Counter(c for i, c in enumerate(audience) if i != 1)
    assert inboxes(cloud_app, campaign) == everyone

    # A send after that is a new one, and the cap window keeps it from notifying anyone.
    again = body(send_api(client, campaign))
    assert (again["id"], again["resumed_after"], again["notified"], again["not_offered"]) == (
        stopped.id + 1,
        None,
        0,
        4,
    )
    assert inboxes(cloud_app, campaign) == everyone


def test_a_second_send_during_a_send_continues_it_instead_of_starting_another(
    cloud_app: APIFlask,
    client: FlaskClient,
    callers: Callers,
    audience: list[int],
    campaign: int,
) -> None:
    answers: list[Any] = []

    def between_pages(notes: list[Note]) -> None:
        if not answers:  # after the first page's commit, another operator presses send
            answers.append(send_api(client, campaign))

    first = send_direct(cloud_app, campaign, between_pages)

    (second,) = answers
    assert second.status_code == 200, second.json
    assert (body(second)["id"], body(second)["resumed_after"], body(second)["decided"]) == (
        first.send.id,
        audience[1],
        5,
    )
    (row,) = sends_of(cloud_app, campaign)
    assert (row.status, row.counts["decided"], first.send.status) == ("done", 5, "done")
    assert decided(cloud_app, row.id) == list(enumerate(audience, start=1))
    assert inboxes(cloud_app, campaign) == Counter(c for i, c in enumerate(audience) if i != 1)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # a waiter is seen
def test_two_sends_at_once_take_turns_on_the_campaigns_lock(
    cloud_app: APIFlask, audience: list[int], campaign: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = database_of(cloud_app)
    assert database.engine.dialect.name == "postgresql"  # waiting shows in pg_stat_activity
    inside, go = threading.Event(), threading.Event()
    deliver = offers.deliver

    def held(session: Any, campaign: Any, customer: Any, **kwargs: Any) -> Any:
        if not inside.is_set():  # the first page of the first send: hold it open
            inside.set()
            assert go.wait(WAIT)
        return deliver(session, campaign, customer, **kwargs)

    monkeypatch.setattr(offers, "deliver", held)
    results: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            results[name] = send_direct(cloud_app, campaign)
        except BaseException as exc:  # shown by the assertions below
            results[name] = exc

    first = threading.Thread(target=run, args=("first",))
    first.start()
    assert inside.wait(WAIT)
    second = threading.Thread(target=run, args=("second",))
    second.start()
    # The second send waits for the first one's page to commit.
    with database.engine.connect() as conn:
        deadline = time.monotonic() + WAIT
        query = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        while not conn.execute(query).scalar() and time.monotonic() < deadline:
            time.sleep(0.05)
            conn.rollback()  # a fresh snapshot of the activity on each look
        waiting = conn.execute(query).scalar()
    go.set()
    first.join(WAIT)
    second.join(WAIT)
    assert waiting == 1
    assert not isinstance(results["first"], BaseException), results["first"]
    assert not isinstance(results["second"], BaseException), results["second"]
    (row,) = sends_of(cloud_app, campaign)
    assert results["first"].send.id == results["second"].send.id == row.id
    assert decided(cloud_app, row.id) == list(enumerate(audience, start=1))
    assert inboxes(cloud_app, campaign) == Counter(c for i, c in enumerate(audience) if i != 1)


PEEK = 5.0  # seconds an open page leaves a second send to read past it (it must not)


def test_a_second_send_reads_the_progress_only_after_the_page_under_way_commits(
    cloud_app: APIFlask, audience: list[int], campaign: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = database_of(cloud_app)
    inside, committed, second_read = threading.Event(), threading.Event(), threading.Event()
    deliver, unfinished = offers.deliver, offers._unfinished
    reads: list[bool] = []  # per read of the second send: had the first page committed?

    def held(session: Any, campaign: Any, customer: Any, **kwargs: Any) -> Any:
        if not inside.is_set():  # the first page of the first send stays open a while
            inside.set()
            second_read.wait(PEEK)  # set only if the second send got past the lock
        return deliver(session, campaign, customer, **kwargs)

    def watched(session: Any, campaign_id: int) -> Any:
        if threading.current_thread().name == "second":
            reads.append(committed.is_set())
            second_read.set()
        return unfinished(session, campaign_id)

    monkeypatch.setattr(offers, "deliver", held)
    monkeypatch.setattr(offers, "_unfinished", watched)
    results: dict[str, Any] = {}

    def run() -> None:
        name = threading.current_thread().name
        try:
            with database.sessions() as session:
                if name == "first":  # set as its first page starts to commit: a second
                    # send's read before that would have got past the lock
                    event.listen(session, "before_commit", lambda _: committed.set())
                if database.engine.dialect.name == "sqlite":  # wait out the open page
                    session.connection().exec_driver_sql("PRAGMA busy_timeout = 60000")
                results[name] = offers.send(session, campaign, OPERATIONS, now())
        except BaseException as exc:  # shown by the assertions below
            results[name] = exc

    first = threading.Thread(target=run, name="first")
    first.start()
    assert inside.wait(WAIT)
    second = threading.Thread(target=run, name="second")
    second.start()
    first.join(WAIT)
    second.join(WAIT)
    assert not isinstance(results["first"], BaseException), results["first"]
    assert not isinstance(results["second"], BaseException), results["second"]
    assert reads == [True]
    # The second send continued the first (PostgreSQL queues lock waiters) or, when the
    # first got every turn until it was done (SQLite's busy wait), was a send of its own
    # that the cap window kept from notifying anyone again.
    rows = sends_of(cloud_app, campaign)
    assert [r.status for r in rows] in (["done"], ["done", "done"])
    assert results["first"].send.id == rows[0].id
    assert results["second"].send.id == rows[-1].id
    for row in rows:
        assert decided(cloud_app, row.id) == list(enumerate(audience, start=1))
    assert [r.counts["notified"] for r in rows] in ([4], [4, 0])
    assert inboxes(cloud_app, campaign) == Counter(c for i, c in enumerate(audience) if i != 1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL queues it
def test_on_sqlite_a_send_that_cannot_get_its_turn_says_so_in_one_line(
    cloud_app: APIFlask, audience: list[int], campaign: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = database_of(cloud_app)
    assert database.engine.dialect.name == "sqlite"  # PostgreSQL queues it on the row lock
    inside, refused = threading.Event(), threading.Event()
    deliver = offers.deliver

    def held(session: Any, campaign: Any, customer: Any, **kwargs: Any) -> Any:
        if not refused.is_set():  # the first page stays open until the second send gave up
            inside.set()
            assert refused.wait(WAIT)
        return deliver(session, campaign, customer, **kwargs)

    monkeypatch.setattr(offers, "deliver", held)
    results: dict[str, Any] = {}

    def run_first() -> None:
        try:
            results["first"] = send_direct(cloud_app, campaign)
        except BaseException as exc:  # shown by the assertions below
            results["first"] = exc

    first = threading.Thread(target=run_first)
    first.start()
    try:
        assert inside.wait(WAIT)
        with database.sessions() as session:
            session.connection().exec_driver_sql("PRAGMA busy_timeout = 10")
            with pytest.raises(Conflict) as caught:
                offers.send(session, campaign, OPERATIONS, now())
    finally:
        refused.set()
        first.join(WAIT)
    assert caught.value.message == (
        "campaign %d: the database is busy (a send of it under way?): try again" % campaign
    )
    assert not isinstance(results["first"], BaseException), results["first"]
    (row,) = sends_of(cloud_app, campaign)
    assert (row.status, row.counts["decided"]) == ("done", 5)


def test_the_offers_command_says_when_it_continues_a_stopped_send(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cloud.db import Database
    from cloud.offers.cli import offers as offers_cli

    runner = CliRunner()
    where = ["--data-dir", str(tmp_path)]
    start = (now() - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    end = (now() + dt.timedelta(days=9)).strftime("%Y-%m-%d")
    dates = ["--start", start, "--end", end, "--active"]
    made = runner.invoke(
        offers_cli, ["create", "Phone", "--title", "Phone", "--channel", "app", *dates, *where]
    )
    assert made.exit_code == 0, made.output
    # A send that a killed process left after its first page (of no customers here).
    database = Database("sqlite:///%s" % (tmp_path / "bankiot.sqlite3"))
    with database.sessions() as session:
        session.add(
            CampaignSend(
                campaign_id=1,
                campaign_version=1,
                at=now(),
                actor=OPERATIONS,
                counts=dict.fromkeys(offers.COUNTS, 0),
                status="sending",
                last_customer_id=0,
                updated_at=now(),
            )
        )
        session.commit()
    database.dispose()

    sent = runner.invoke(offers_cli, ["send", "Phone", *where])
    assert sent.exit_code == 0, sent.output
    assert sent.output.splitlines() == [
        "continuing send 1, stopped after customer 0",
        "send 1 of campaign 1 (v1): 0 customers decided, 0 notified, 0 without consent, "
        "0 not offered (audience, cap or in the inbox already)",
    ]
    again = json.loads(runner.invoke(offers_cli, ["send", "Phone", "--json", *where]).output)
    assert (again["id"], again["status"], again["resumed_after"]) == (2, "done", None)
