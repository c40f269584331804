"""Life events over time and the customer's inbox in the dashboards, through a test client
on SQLite and PostgreSQL: a customer's life-event episodes (first detected, last seen, peak
score, ended or ongoing; reasons for branch managers only) and inbox summary (count,
unread, last sent, per source; titles for branch managers only); the analytics page's life
events found per month by kind, and its two offers funnels (the kiosk's; the app and
wearable campaigns' inbox), both live.

The rows are written by the test, so every figure checked is counted from them by hand.
"""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from typing import Any

from apiflask import APIFlask

from cloud.analytics.models import LifeEventEpisode
from cloud.customers import consent
from cloud.dashboards import analytics_data
from cloud.db import database
from cloud.notifications.models import Notification
from cloud.notifications.offers import OFFERS_PURPOSE
from cloud.offers.models import OfferDecision, OfferResult
from tests.cloud.customer_actions import active_campaign, sent_app_campaign
from tests.cloud.dashboard_actions import add_customer, signed_in
from tests.cloud.people_actions import seed

ALICE = "C0:FF:EE:00:00:0A"
BOB = "C0:FF:EE:00:00:0B"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
WHY_JOB = "salary from NEWCO AG since 2026-09"
WHY_MOVE = "rent to a new landlord, HAUS GMBH"
NO_DETAIL = "\u2013"  # the pages' dash for an empty cell


class _Table(HTMLParser):
    """The text of each cell of one table (by id), row by row."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.depth = 0  # tables open inside the wanted one, itself included
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and (self.depth or dict(attrs).get("id") == self.table_id):
            self.depth += 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
        elif self.depth and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table(page: str, table_id: str) -> list[list[str]]:
    """The rows of table ``table_id`` in ``page`` (header row first), cells as text."""
    parser = _Table(table_id)
    parser.feed(page)
    assert parser.rows, "no table %s" % table_id
    return parser.rows


def episode(
    customer_id: int,
    kind: str,
    first: dt.date,
    last: dt.date,
    peak: float,
    reasons: list[str],
    ended: dt.date | None = None,
    found: dt.datetime = NOW,
) -> LifeEventEpisode:
    moment = dt.datetime.combine(ended, dt.time(), dt.UTC) if ended else None
    return LifeEventEpisode(
        customer_id=customer_id,
        kind=kind,
        detail="",
        first_as_of=first,
        first_detected_at=found,
        last_as_of=last,
        last_seen_at=found,
        score=peak - 0.1,
        peak_score=peak,
        reasons=reasons,
        ended_as_of=ended,
        ended_at=moment,
        model_version="profile-1",
    )


def note(customer_id: int, source: str, title: str, ago_min: int, read: bool) -> Notification:
    at = NOW - dt.timedelta(minutes=ago_min)
    return Notification(
        customer_id=customer_id,
        channel="app",
        source=source,
        title=title,
        text="the text of %s" % title,
        created_at=at,
        read_at=at if read else None,
    )


def send_app_campaign(app: APIFlask, customer_id: int) -> int:
    """An active app campaign, ``customer_id``'s consent to personalised offers, and the
    campaign sent to its audience as cloud operations send it; the campaign's id. Customers
    without that consent get nothing."""
    now = dt.datetime.now(dt.UTC)
    with app.app_context(), database().sessions() as db:
        consent.record(db, customer_id, OFFERS_PURPOSE, True, "web", now)
        campaign = sent_app_campaign(
            db,
            now,
            name="savings-app",
            title="Savings boost",
            text="Two per cent more on your savings",
        )
        db.commit()
        return campaign


def test_customer_page_shows_life_events_over_time_and_the_inbox(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    alice = add_customer(cloud_app, "alice@example.com", ALICE, fleet.north, ())
    bob = add_customer(cloud_app, "bob@example.com", BOB, fleet.north, ())
    path = "/dashboard/customers/%d" % alice
    maria = signed_in(cloud_app, "maria")
    page = maria.page(path)
    assert 'id="no-life-event-history"' in page and 'id="no-notifications"' in page
    with cloud_app.app_context(), database().sessions() as db:
        db.add_all(
            [
                episode(
                    alice,
                    "relocation",
                    dt.date(2026, 8, 31),
                    dt.date(2026, 9, 30),
                    0.65,
                    [WHY_MOVE],
                    ended=dt.date(2026, 10, 31),
                    found=NOW - dt.timedelta(days=60),
                ),
                episode(
                    alice, "job_change", dt.date(2026, 9, 30), dt.date(2026, 11, 30), 0.8, [WHY_JOB]
                ),
                episode(
                    bob, "retirement", dt.date(2026, 9, 30), dt.date(2026, 9, 30), 0.9, ["bob's"]
                ),
                note(alice, "offers", "Travel card", 30, read=True),
                note(alice, "rule:low-balance", "Your balance is low", 20, read=False),
                note(alice, "offers", "Savings boost", 10, read=False),
                note(bob, "holdings", "ACME above 120", 5, read=False),
            ]
        )
        db.commit()
    last_sent = (NOW - dt.timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S")
    first_sent = (NOW - dt.timedelta(minutes=20)).strftime("%Y-%m-%d %H:%M:%S")

    page = maria.page(path)
    history = table(page, "customer-life-event-history")
    assert [row[:2] + row[3:] for row in history[1:]] == [  # newest first; column 2 has times
        ["job_change", NO_DETAIL, "2026-11-30", "0.80", "ongoing", WHY_JOB],
        ["relocation", NO_DETAIL, "2026-09-30", "0.65", "ended 2026-10-31", WHY_MOVE],
    ]
    assert history[1][2].startswith("2026-09-30") and history[2][2].startswith("2026-08-31")
    assert "retirement" not in page and "bob's" not in page
    assert table(page, "customer-inbox-sources")[1:] == [
        ["offers", "2", "1", last_sent],
        ["rule:low-balance", "1", "1", first_sent],
    ]
    assert 'id="inbox-count">3<' in page and 'id="inbox-unread">2<' in page
    assert [row[3:] for row in table(page, "customer-inbox-latest")[1:]] == [
        ["Savings boost", "no"],
        ["Your balance is low", "no"],
        ["Travel card", "yes"],
    ]
    assert "ACME" not in page and "the text of" not in page  # bob's; and no texts at all

    ops = signed_in(cloud_app, "ops").page(path)
    rows = table(ops, "customer-life-event-history")[1:]
    assert [row[-1] for row in rows] == ["branch managers only"] * 2
    assert [row[4] for row in rows] == ["0.80", "0.65"]
    assert WHY_JOB not in ops and WHY_MOVE not in ops
    assert table(ops, "customer-inbox-sources")[1:] == table(page, "customer-inbox-sources")[1:]
    assert 'id="inbox-count">3<' in ops and 'id="customer-inbox-latest"' not in ops
    assert "Travel card" not in ops and "Your balance is low" not in ops


def test_life_events_are_counted_per_month_of_first_detection_and_kind(
    cloud_app: APIFlask,
) -> None:
    fleet = seed(cloud_app)
    alice = add_customer(cloud_app, "alice@example.com", ALICE, fleet.north, ())
    bob = add_customer(cloud_app, "bob@example.com", BOB, fleet.north, ())
    today = dt.date(2026, 11, 29)

    def at(year: int, month: int, day: int) -> dt.datetime:
        return dt.datetime(year, month, day, 12, tzinfo=dt.UTC)

    day = dt.date(2026, 1, 1)
    with cloud_app.app_context(), database().sessions() as db:
        db.add_all(
            [
                episode(alice, "job_change", day, day, 0.8, [], found=at(2026, 11, 2)),
                episode(bob, "job_change", day, day, 0.8, [], found=at(2026, 11, 28)),
                episode(bob, "relocation", day, day, 0.7, [], found=at(2026, 9, 30)),
                episode(alice, "relocation", day, day, 0.7, [], found=at(2025, 12, 1)),
                episode(alice, "retirement", day, day, 0.7, [], found=at(2025, 11, 30)),  # before
            ]
        )
        db.commit()
        assert analytics_data.first_month(today) == dt.date(2025, 12, 1)
        assert analytics_data.first_month(dt.date(2026, 3, 15), 3) == dt.date(2026, 1, 1)
        found = analytics_data.life_events_per_month(db, today)
    assert found.months[0] == "2025-12" and found.months[-1] == "2026-11"
    assert len(found.months) == 12 and found.months[9] == "2026-09"
    zeros = [0] * 12
    assert found.kinds == [
        ("job_change", [*zeros[:11], 2]),
        ("relocation", [1, *zeros[1:9], 1, 0, 0]),
    ]


def offers_planted(app: APIFlask) -> int:
    """Two customers' offer results and decisions on each channel (see the counts below);
    the first customer's id."""
    fleet = seed(app)
    alice = add_customer(app, "alice@example.com", ALICE, fleet.north, ())
    bob = add_customer(app, "bob@example.com", BOB, fleet.north, ())
    with app.app_context(), database().sessions() as db:
        campaign = active_campaign(db, NOW)
        results = [  # (customer, channel, outcome)
            (alice, "kiosk", "shown"),
            (bob, "kiosk", "shown"),
            (bob, "kiosk", "shown"),
            (alice, "kiosk", "accepted"),
            (bob, "kiosk", "declined"),
            (alice, "app", "shown"),
            (bob, "app", "shown"),
            (bob, "wearable", "shown"),
            (alice, "app", "accepted"),
            (bob, "app", "declined"),
            (bob, "wearable", "declined"),
        ]
        for number, (customer, channel, outcome) in enumerate(results, 1):
            db.add(
                OfferResult(
                    campaign_id=campaign,
                    customer_id=customer,
                    channel=channel,
                    outcome=outcome,
                    at=NOW,
                    gateway="kiosk-n1" if channel == "kiosk" else "inbox",
                    event_id=number,
                )
            )
        decisions = [  # (outcome, inputs): two kiosk offers, one inbox offer, one none
            ("offered", {"customer": alice}),
            ("offered", {}),  # anonymised by an erasure: counted as the kiosk's
            ("offered", {"channel": "app"}),
            ("none", {"channel": "kiosk"}),
        ]
        for number, (outcome, inputs) in enumerate(decisions, 1):
            db.add(
                OfferDecision(
                    at=NOW,
                    customer_id=None,
                    gateway="kiosk-n1",
                    event_id=number,
                    outcome=outcome,
                    offered=[campaign] if outcome == "offered" else [],
                    reasons=[],
                    inputs=inputs,
                    version="offers-1",
                )
            )
        db.commit()
    return alice


def test_the_kiosk_and_the_inbox_have_their_own_offers_funnel(cloud_app: APIFlask) -> None:
    seed(cloud_app)
    with cloud_app.app_context(), database().sessions() as db:
        assert analytics_data.funnel(db) is None and analytics_data.inbox_funnel(db) is None
    ops = signed_in(cloud_app, "ops")
    page = ops.page("/dashboard/analytics")
    assert 'id="offers-not-available"' in page and 'id="inbox-offers-not-available"' in page


def test_analytics_page_shows_both_funnels_and_life_events_per_month_live(
    cloud_app: APIFlask,
) -> None:
    alice = offers_planted(cloud_app)
    with cloud_app.app_context(), database().sessions() as db:
        kiosk, inbox = analytics_data.funnel(db), analytics_data.inbox_funnel(db)
    assert kiosk == analytics_data.Funnel([("Offered", 2), ("Shown", 3), ("Accepted", 1)], 1)
    assert inbox == analytics_data.Funnel([("Sent to inbox", 3), ("Accepted", 1)], 2)

    ops = signed_in(cloud_app, "ops")
    page = ops.page("/dashboard/analytics")
    assert 'id="funnel"' in page and 'id="inbox-funnel"' in page
    assert 'id="declined">1<' in page and 'id="inbox-declined">2<' in page
    assert "<title>Sent to inbox: 3</title>" in page
    assert 'id="life-events-per-month"' in page and "No life event found in these months" in page

    with cloud_app.app_context(), database().sessions() as db:
        db.add(episode(alice, "job_change", NOW.date(), NOW.date(), 0.8, []))
        db.commit()
    live: Any = ops.client.get("/dashboard/analytics/live").json
    region = live["regions"]["analytics-life-events"]
    assert "<title>%s, job_change: 1</title>" % NOW.strftime("%Y-%m") in region
    assert 'id="inbox-declined">2<' in live["regions"]["analytics-offers"]

    maria = signed_in(cloud_app, "maria")
    live = maria.client.get("/dashboard/analytics/live").json
    for name in ("analytics-offers", "analytics-life-events"):
        assert "for cloud operations" in live["regions"][name]
        assert "<svg" not in live["regions"][name]


def test_a_campaign_sent_to_the_inbox_shows_in_its_funnel_and_the_customers_inbox(
    cloud_app: APIFlask,
) -> None:
    fleet = seed(cloud_app)
    alice = add_customer(cloud_app, "alice@example.com", ALICE, fleet.north, ())
    bob = add_customer(cloud_app, "bob@example.com", BOB, fleet.north, ())
    send_app_campaign(cloud_app, alice)  # bob gave no consent to offers: nothing for him
    with cloud_app.app_context(), database().sessions() as db:
        assert analytics_data.funnel(db) is None
        found = analytics_data.inbox_funnel(db)
    assert found == analytics_data.Funnel([("Sent to inbox", 1), ("Accepted", 0)], 0)
    maria = signed_in(cloud_app, "maria")
    assert table(maria.page("/dashboard/customers/%d" % alice), "customer-inbox-sources")[1][
        :3
    ] == [
        "offers",
        "1",
        "1",
    ]
    assert 'id="no-notifications"' in maria.page("/dashboard/customers/%d" % bob)
