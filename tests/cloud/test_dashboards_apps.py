"""The applications' places in the dashboards, through a test client on SQLite and
PostgreSQL: a customer's stored profile, life events and application decisions (reasons
for branch managers only, as the analytics API), the branch's loan review queue decided by
a branch manager through ``loans.review`` (CSRF-checked, scoped), the staff's service
requests closed from the branch page, and the analytics page's life events and segments.

Data arrives the real way: bank statements imported (profiles recomputed on import), loan
applications decided by ``loans.apply``, tickets made by the event worker from a kiosk
check-in sealed through ingest.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from apiflask import APIFlask
from sqlalchemy import select

from cloud.apps import loans
from cloud.apps.models import AppDecision, LoanApplication
from cloud.db import database
from cloud.events.library import RuleLibrary
from cloud.events.models import ServiceRequest
from cloud.events.worker import EventWorker
from tests.cloud.dashboard_actions import Branch, add_customer, signed_in
from tests.cloud.fleet_actions import add_devices
from tests.cloud.people_actions import add_operator, seed
from tests.cloud.test_analytics_api import import_for

ALICE = "C0:FF:EE:00:00:0A"
BOB = "C0:FF:EE:00:00:0B"
ALL = ("activity", "presence_branch")


def apply_for_loan(app: APIFlask, customer_id: int, branch_id: int, purpose: str) -> int:
    """An application decided as the API decides it; its id."""
    with app.app_context(), database().sessions() as db:
        row = loans.apply(
            db,
            customer_id=customer_id,
            branch_id=branch_id,
            amount=Decimal("5000.00"),
            currency="GBP",
            term_months=24,
            purpose=purpose,
            evidence=[],
            evidence_consent=False,
            actor="operator:maria",
            now=dt.datetime.now(dt.UTC),
        )
        db.commit()
        return row.id


def loan_row(app: APIFlask, loan_id: int) -> LoanApplication:
    with app.app_context(), database().sessions() as db:
        row = db.get(LoanApplication, loan_id)
        assert row is not None
        db.expunge(row)
        return row


def test_customer_page_shows_profile_life_events_and_decisions_with_reasons_to_managers(
    cloud_app: APIFlask,
) -> None:
    fleet = seed(cloud_app)
    alice = add_customer(cloud_app, "alice@example.com", ALICE, fleet.north, ALL)
    path = "/dashboard/customers/%d" % alice
    maria = signed_in(cloud_app, "maria")
    page = maria.page(path)
    assert 'id="no-profile"' in page and 'id="no-life-events"' in page
    assert 'id="no-app-decisions"' in page and 'id="no-loans"' in page

    import_for(cloud_app, alice, range(1, 12))  # the profile is recomputed on import
    loan = apply_for_loan(cloud_app, alice, fleet.north, "a new boiler")
    automatic = loan_row(cloud_app, loan)
    page = maria.page(path)
    assert 'id="profile-segment">saver<' in page and "3100.00 EUR" in page
    assert "job_change" in page and "NEWCO AG" in page  # the event's reason names the payer
    assert 'id="loan-%d"' % loan in page and "a new boiler" in page
    assert "loan:%d" % loan in page and "loan-1" in page  # the application's decision log
    assert automatic.reasons[0] in page.replace("&#39;", "'")

    ops = signed_in(cloud_app, "ops").page(path)
    assert 'id="profile-segment">saver<' in ops and "job_change" in ops
    assert "loan:%d" % loan in ops and 'id="loan-%d"' % loan in ops
    assert "NEWCO" not in ops and "a new boiler" not in ops
    assert automatic.reasons[0] not in ops.replace("&#39;", "'")
    # the event's, its episode's in the history, the decision's, the loan's
    assert ops.count("branch managers only") == 4


def test_a_branch_manager_decides_a_referred_loan_on_the_branch_page(
    cloud_app: APIFlask,
) -> None:
    fleet = seed(cloud_app)
    add_operator(cloud_app, "sam", "branch_manager", ("south",))
    bob = add_customer(cloud_app, "bob@example.com", BOB, fleet.north, ALL)
    loan = apply_for_loan(cloud_app, bob, fleet.north, "a van")  # no bank history: referred
    assert (loan_row(cloud_app, loan).outcome, loan_row(cloud_app, loan).review) == (
        "referred",
        "pending",
    )
    path = "/dashboard/branches/%d" % fleet.north
    decide = "%s/loans/%d/decide" % (path, loan)
    maria = signed_in(cloud_app, "maria")
    page = maria.page(path)
    assert 'id="review-%d"' % loan in page and "a van" in page
    assert "no account history with the bank to verify income" in page

    forged = maria.post(decide, {"outcome": "approved"}, token="0" * 64)
    assert forged.status_code == 403
    assert signed_in(cloud_app, "ops").post(decide, {"outcome": "approved"}).status_code == 403
    assert "For branch managers." in signed_in(cloud_app, "ops").page(path)
    sam = signed_in(cloud_app, "sam")
    assert sam.post(decide, {"outcome": "approved"}).status_code == 404
    assert loan_row(cloud_app, loan).review == "pending"

    answer = maria.post(decide, {"outcome": "declined", "reason": "payslips missing"})
    assert answer.status_code == 302
    assert "Loan application %d decided." % loan in maria.page(answer.headers["Location"])
    row = loan_row(cloud_app, loan)
    assert (row.review, row.reviewed_by) == ("declined", "operator:maria")
    with cloud_app.app_context(), database().sessions() as db:
        log = db.scalars(select(AppDecision).order_by(AppDecision.id)).all()
        assert [(d.outcome, d.version, d.reasons) for d in log][-1] == (
            "declined",
            "manual-1",
            ["payslips missing"],
        )
    assert 'id="no-loan-reviews"' in maria.page(path)
    again = maria.post(decide, {"outcome": "approved"})
    assert again.status_code == 409
    assert "is not waiting for review" in again.get_data(as_text=True)


def test_service_requests_are_listed_and_closed_on_the_branch_page(cloud_app: APIFlask) -> None:
    fleet = seed(cloud_app)
    add_devices(cloud_app, {"uid": "kiosk-n1", "kind": "kiosk", "branch_id": fleet.north})
    alice = add_customer(cloud_app, "alice@example.com", ALICE, fleet.north, ALL)
    worker = EventWorker(cloud_app.extensions["bankiot.db"], RuleLibrary(None))
    worker.run_once()  # the cursor starts at the newest event
    Branch(cloud_app, "kiosk-n1").check_in("kiosk-n1", ALICE)
    worker.run_once()  # the shipped rule: a check-in makes a ticket
    with cloud_app.app_context(), database().sessions() as db:
        (ticket,) = db.scalars(select(ServiceRequest)).all()
        assert (ticket.kind, ticket.branch_id, ticket.state) == ("ticket", fleet.north, "open")

    path = "/dashboard/branches/%d" % fleet.north
    close = "%s/requests/%d/close" % (path, ticket.id)
    maria = signed_in(cloud_app, "maria")
    page = maria.page(path)
    assert 'id="request-%d"' % ticket.id in page and 'id="close-%d"' % ticket.id in page
    assert "#%d" % alice in page  # the customer, for branch managers
    ops = signed_in(cloud_app, "ops")
    assert "#%d" % alice not in ops.page(path) and 'id="close-%d"' % ticket.id in ops.page(path)
    south = "/dashboard/branches/%d/requests/%d/close" % (fleet.south, ticket.id)
    assert ops.post(south, {}).status_code == 404  # not that branch's request

    assert maria.post(close, {}, token="0" * 64).status_code == 403
    answer = maria.post(close, {})
    assert answer.status_code == 302
    assert "Service request %d closed." % ticket.id in maria.page(answer.headers["Location"])
    live = maria.client.get(path + "/live").json
    assert live is not None
    region = live["regions"]["branch-requests"]
    assert "by operator:maria" in region and 'id="close-%d"' % ticket.id not in region
    assert ops.post(close, {}).status_code == 302  # closing again keeps the first
    with cloud_app.app_context(), database().sessions() as db:
        row = db.get(ServiceRequest, ticket.id)
        assert row is not None and (row.state, row.closed_by) == ("closed", "operator:maria")


def test_analytics_page_counts_life_events_and_segments_for_operations(
    cloud_app: APIFlask,
) -> None:
    fleet = seed(cloud_app)
    ops = signed_in(cloud_app, "ops")
    page = ops.page("/dashboard/analytics")
    assert 'id="no-life-events"' in page and 'id="no-segments"' in page
    alice = add_customer(cloud_app, "alice@example.com", ALICE, fleet.north, ALL)
    import_for(cloud_app, alice, range(1, 12))
    page = ops.page("/dashboard/analytics")
    assert '<tr id="life-job_change"><td>job_change</td><td>1</td><td>1</td></tr>' in page
    assert "<tr><td>saver</td><td>1</td></tr>" in page and 'id="segments-chart"' in page
    assert "alice" not in page and "NEWCO" not in page
    maria = signed_in(cloud_app, "maria").page("/dashboard/analytics")
    assert "job_change" not in maria and maria.count("for cloud operations") == 3
