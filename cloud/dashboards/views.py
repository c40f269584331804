"""The dashboard pages: fleet, device, branch, customers, analytics.

Each page is server-rendered; its live parts are regions (partial templates) that the page's
script asks for again every ``DASHBOARD_POLL_MS`` from the page's ``/live`` endpoint (JSON:
each region's HTML), so a check-in or an alert appears without a reload. Actions are POST
forms with the session's CSRF token, through the same functions the API uses
(``commands.issue_to``, ``rollouts.create``, ``loans.review``, ``cloud.events.views.close``),
so they are checked, scoped and audited the same way.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import abort, current_app, redirect, request, url_for
from werkzeug.wrappers import Response

from cloud import audit
from cloud.access import current_principal, may_see_personal_data, visible_branches
from cloud.apps import loans
from cloud.dashboards import (
    analytics_data,
    branch_data,
    charts,
    customer_data,
    device_data,
    fleet_data,
    rates,
)
from cloud.dashboards.web import bp, live, now, page, regions, render
from cloud.db import session
from cloud.events.views import CLOSERS
from cloud.events.views import close as close_service_request
from cloud.fleet import commands, rollout_plan, rollouts, targets
from cloud.fleet.errors import FleetError, Invalid, NotFound
from cloud.fleet.models import Branch
from cloud.people.authenticate import current_credential

STAFF = ("operations", "branch_manager", "technician")
CUSTOMER_ROLES = ("operations", "branch_manager")
REVIEWERS = ("branch_manager",)  # as ``POST /api/apps/loans/<id>/decide``


@bp.get("/")
@page()
def home() -> Response:
    return redirect(url_for("dashboards.fleet"))


# ---- fleet ---------------------------------------------------------------------------------


def _ingest_chart(buckets: list[rates.Bucket], title: str) -> Any:
    columns = [(b.start.strftime("%H:%M"), float(b.batches)) for b in buckets]
    return charts.column_chart(title, columns, unit="", empty="No batches yet")


def _fleet_context() -> dict[str, Any]:
    db = session()
    visible = visible_branches()
    moment = now()
    buckets = rates.ingest_buckets(db, visible, moment)
    return {
        "branches": fleet_data.branches(db, visible, moment),
        "alerts": fleet_data.open_alerts(db, visible),
        "rollouts": fleet_data.active_rollouts(db, visible),
        "ingest_chart": _ingest_chart(buckets, "Batches per minute, last hour"),
        "ingest_total": sum(b.batches for b in buckets),
        "readings_total": sum(b.readings for b in buckets),
    }


FLEET_REGIONS = {
    "fleet-table": "dashboards/_fleet_table.html",
    "alerts": "dashboards/_alerts.html",
    "rollouts": "dashboards/_rollouts.html",
    "ingest": "dashboards/_ingest.html",
}


@bp.get("/fleet")
@page()
def fleet(error: str | None = None, status: int = 200) -> Response:
    context = _fleet_context()
    principal = current_principal()
    if principal.role == "operations":
        context["releases"] = fleet_data.ready_releases(session())
    return render(
        "dashboards/fleet.html",
        status,
        error=error,
        notice=_notice(),
        regions=FLEET_REGIONS,
        **context,
    )


@bp.get("/fleet/live")
@live()
def fleet_live() -> Response:
    context = _fleet_context()
    return regions(FLEET_REGIONS, context)


def _start_rollout(target: targets.Target) -> int:
    """Start a rollout of the form's release to ``target`` as the API does; its id."""
    db = session()
    principal = current_principal()
    release_id = _form_int("release_id")
    rollout = rollouts.create(
        db,
        release_id,
        target,
        rollout_plan.Settings(),
        actor=principal.actor,
        visible=visible_branches(),
        now=now(),
    )
    rollouts.advance(db, rollout, now())  # the canary starts now, as with the API
    db.commit()
    return rollout.id


def _form_int(name: str) -> int:
    value = request.form.get(name, "")
    if not value.isdigit() or not 0 < int(value) < 2**31:
        raise Invalid("choose a %s" % name.replace("_id", "").replace("_", " "))
    return int(value)


@bp.post("/fleet/rollout")
@page("operations")
def fleet_rollout() -> Response:
    db = session()
    try:
        branch_id = _form_int("branch_id")
        rollout_id = _start_rollout(targets.Target(branch=branch_id))
    except FleetError as exc:
        db.rollback()
        return fleet(error=exc.message, status=exc.status)
    return redirect(url_for("dashboards.fleet", m="rollout", id=rollout_id))


def _notice() -> str | None:
    kind, number = request.args.get("m"), request.args.get("id", "")
    if kind == "rollout" and number.isdigit():
        return "Rollout %s started: the canary wave is updating." % number
    if kind == "command" and number.isdigit():
        return "Command sent (group %s): the device answers on its next uplink." % number
    if kind == "loan" and number.isdigit():
        return "Loan application %s decided." % number
    if kind == "closed" and number.isdigit():
        return "Service request %s closed." % number
    return None


# ---- device --------------------------------------------------------------------------------


def _device_context(device_id: int) -> dict[str, Any]:
    db = session()
    visible = visible_branches()
    item = device_data.inventory_row(db, device_id, visible)
    if item is None:
        abort(404)
    since = now() - dt.timedelta(hours=24)
    history = device_data.health_history(db, item["uid"], since)
    return {
        "device": item,
        "in_sync": fleet_data.in_sync(db, [device_id]).get(device_id),
        "health_charts": [
            (title, charts.line_chart(title, [series], height=160))
            for title, series in device_data.health_charts(history)
        ],
        "reading_charts": [
            (title, charts.line_chart(title, series))
            for title, series in device_data.sensor_readings(db, item["uid"], since).items()
        ],
        "commands": device_data.recent_commands(db, device_id),
    }


DEVICE_REGIONS = {
    "device-health": "dashboards/_device_health.html",
    "device-readings": "dashboards/_device_readings.html",
    "device-commands": "dashboards/_device_commands.html",
}


@bp.get("/devices/<int:device_id>")
@page()
def device(device_id: int, error: str | None = None, status: int = 200) -> Response:
    context = _device_context(device_id)
    principal = current_principal()
    controllable = context["device"]["kind"] in ("gateway", "kiosk")
    return render(
        "dashboards/device.html",
        status,
        error=error,
        notice=_notice(),
        regions=DEVICE_REGIONS,
        choices=device_data.command_choices(principal.role) if controllable else [],
        releases=fleet_data.ready_releases(session())
        if controllable and principal.role == "operations"
        else [],
        **context,
    )


@bp.get("/devices/<int:device_id>/live")
@live()
def device_live(device_id: int) -> Response:
    context = _device_context(device_id)
    return regions(DEVICE_REGIONS, context)


@bp.post("/devices/<int:device_id>/command")
@page()
def device_command(device_id: int) -> Response:
    db = session()
    principal = current_principal()
    try:
        group = commands.issue_to(
            db,
            targets.Target(devices=(device_id,)),
            request.form.get("name", ""),
            {},
            role=principal.role,
            actor=principal.actor,
            visible=visible_branches(),
            now=now(),
        )
        db.commit()
    except NotFound:
        db.rollback()
        abort(404)
    except FleetError as exc:
        db.rollback()
        return device(device_id, error=exc.message, status=exc.status)
    return redirect(url_for("dashboards.device", device_id=device_id, m="command", id=group.id))


@bp.post("/devices/<int:device_id>/rollout")
@page("operations")
def device_rollout(device_id: int) -> Response:
    db = session()
    try:
        targets.one_device(db, device_id, visible_branches())
        rollout_id = _start_rollout(targets.Target(devices=(device_id,)))
    except NotFound:
        db.rollback()
        abort(404)
    except FleetError as exc:
        db.rollback()
        return device(device_id, error=exc.message, status=exc.status)
    return redirect(url_for("dashboards.device", device_id=device_id, m="rollout", id=rollout_id))


# ---- branch --------------------------------------------------------------------------------


def _branch(branch_id: int) -> Branch:
    if not current_principal().may_act_on(branch_id):
        abort(404)
    branch = session().get(Branch, branch_id)
    if branch is None:
        abort(404)
    return branch


def _branch_context(branch_id: int) -> dict[str, Any]:
    db = session()
    visible = visible_branches()
    personal = may_see_personal_data()
    moment = now()
    events = branch_data.todays_events(db, branch_id, visible, moment, personal)
    return {
        "branch_id": branch_id,
        "personal": personal,
        "kiosks": branch_data.kiosks(db, branch_id, visible),
        "events": events,
        "counts": branch_data.counts(events),
        "requests": branch_data.service_requests(db, branch_id, personal),
        "present": branch_data.present_customers(db, branch_id, moment, personal),
        # the requests region is redrawn live: its close forms need the token there too
        "may_close": current_principal().role in CLOSERS,
        "csrf": current_credential().csrf_token,
    }


BRANCH_REGIONS = {
    "branch-counts": "dashboards/_branch_counts.html",
    "branch-present": "dashboards/_branch_present.html",
    "branch-events": "dashboards/_branch_events.html",
    "branch-kiosks": "dashboards/_branch_kiosks.html",
    "branch-requests": "dashboards/_branch_requests.html",
}


@bp.get("/branches/<int:branch_id>")
@page()
def branch(branch_id: int, error: str | None = None, status: int = 200) -> Response:
    found = _branch(branch_id)
    reviewer = current_principal().role in REVIEWERS
    return render(
        "dashboards/branch.html",
        status,
        error=error,
        notice=_notice(),
        branch=found,
        regions=BRANCH_REGIONS,
        reviewer=reviewer,
        queue=branch_data.review_queue(session(), branch_id) if reviewer else None,
        **_branch_context(branch_id),
    )


@bp.post("/branches/<int:branch_id>/loans/<int:loan_id>/decide")
@page(*REVIEWERS)
def branch_loan_decide(branch_id: int, loan_id: int) -> Response:
    """A branch manager approves or declines a referred application, as ``POST
    /api/apps/loans/<id>/decide`` does (``loans.review``, audited)."""
    _branch(branch_id)
    db = session()
    row = branch_data.loan(db, branch_id, loan_id)
    if row is None:
        abort(404)
    outcome = request.form.get("outcome", "")
    reason = request.form.get("reason", "").strip()[:200]
    actor = current_principal().actor
    try:
        loans.review(
            db,
            row,
            outcome=outcome,
            reasons=[reason] if reason else [],
            note=request.form.get("note", "").strip()[:500],
            actor=actor,
            now=now(),
        )
    except loans.LoanError as exc:
        db.rollback()
        return branch(branch_id, error=str(exc), status=409)
    audit.record(db, actor, "loan.review", "loan:%d" % row.id, outcome=outcome)
    db.commit()
    return redirect(url_for("dashboards.branch", branch_id=branch_id, m="loan", id=row.id))


@bp.post("/branches/<int:branch_id>/requests/<int:request_id>/close")
@page(*CLOSERS)
def branch_request_close(branch_id: int, request_id: int) -> Response:
    """Close a service request, as ``POST /api/events/service-requests/<id>/close``."""
    _branch(branch_id)
    db = session()
    row = branch_data.service_request(db, branch_id, request_id)
    if row is None:
        abort(404)
    if close_service_request(db, row, current_principal().actor):
        db.commit()
    return redirect(url_for("dashboards.branch", branch_id=branch_id, m="closed", id=row.id))


@bp.get("/branches/<int:branch_id>/live")
@live()
def branch_live(branch_id: int) -> Response:
    _branch(branch_id)
    context = _branch_context(branch_id)
    return regions(BRANCH_REGIONS, context)


# ---- customers -----------------------------------------------------------------------------


@bp.get("/customers")
@page(*CUSTOMER_ROLES)
def customers() -> Response:
    rows = customer_data.customers(session(), visible_branches())
    return render("dashboards/customers.html", customers=rows, personal=may_see_personal_data())


@bp.get("/customers/<int:customer_id>")
@page(*CUSTOMER_ROLES)
def customer(customer_id: int) -> Response:
    db = session()
    visible = visible_branches()
    found = customer_data.visible_customer(db, customer_id, visible)
    if found is None:
        abort(404)
    personal = may_see_personal_data()
    wearables = customer_data.wearables(db, customer_id)
    addresses = [w.address for w in wearables]
    answers, history = customer_data.consents(db, customer_id)
    return render(
        "dashboards/customer.html",
        customer=found,
        personal=personal,
        wearables=wearables,
        answers=answers,
        history=history,
        events=customer_data.events(db, addresses, visible),
        profile=customer_data.profile(db, customer_id),
        life_events=customer_data.life_events(db, customer_id, personal),
        life_history=customer_data.life_event_history(db, customer_id, personal),
        inbox=customer_data.inbox(db, customer_id, personal),
        app_decisions=customer_data.app_decisions(db, customer_id, personal),
        loans=customer_data.loan_applications(db, customer_id),
        sections=customer_data.decisions(db, customer_id, addresses, personal),
    )


# ---- analytics -----------------------------------------------------------------------------


def _analytics_context() -> dict[str, Any]:
    db = session()
    visible = visible_branches()
    moment = now()
    day = rates.ingest_buckets(db, visible, moment, buckets=96, seconds=900)
    latency = rates.reading_latency(db, visible, moment)
    readings = [(b.start.strftime("%H:%M"), float(b.readings)) for b in day]
    return {
        "readings_chart": charts.column_chart(
            "Readings stored per 15 minutes, last 24 hours", readings, empty="No readings yet"
        ),
        "latency": latency,
        "latency_chart": charts.column_chart(
            "Readings by delay from measurement to storage, last hour",
            [(label, float(n)) for label, n in latency.histogram],
            empty="No readings with a gateway clock in the last hour",
        ),
        "outcomes": _outcomes(),
        **_bankwide_context(),
    }


def _funnel_chart(title: str, funnel: analytics_data.Funnel | None) -> Any:
    return charts.funnel_chart(title, funnel.stages) if funnel else None


def _bankwide_context() -> dict[str, Any]:
    """The live bank-wide regions' figures (offers funnels, life events), for operations;
    nothing of them for other roles (their regions say the figures are for operations)."""
    bankwide = current_principal().role == "operations"
    if not bankwide:
        return {"bankwide": False}
    db = session()
    funnel = analytics_data.funnel(db)
    inbox_funnel = analytics_data.inbox_funnel(db)
    per_month = analytics_data.life_events_per_month(db, now().date())
    return {
        "bankwide": True,
        "funnel": funnel,
        "funnel_chart": _funnel_chart("Kiosk offers funnel", funnel),
        "inbox_funnel": inbox_funnel,
        "inbox_funnel_chart": _funnel_chart("App and wearable offers funnel", inbox_funnel),
        "life_events": analytics_data.life_events(db),
        "per_month": per_month,
        "per_month_chart": charts.stacked_column_chart(
            "Life events found per month, by kind",
            per_month.months,
            [(kind, [float(n) for n in counts]) for kind, counts in per_month.kinds],
            empty="No life event found in these months",
        ),
    }


def _outcomes() -> dict[str, int]:
    """This web process's ingest counters (HTTP ingest here; other processes count theirs)."""
    pipeline = current_app.extensions.get("bankiot.ingest")
    return pipeline.stats.snapshot() if pipeline is not None else {}


ANALYTICS_REGIONS = {
    "analytics-offers": "dashboards/_analytics_offers.html",
    "analytics-life-events": "dashboards/_analytics_life_events.html",
    "analytics-ingest": "dashboards/_analytics_ingest.html",
}


@bp.get("/analytics")
@page()
def analytics() -> Response:
    db = session()
    context = _analytics_context()
    segments = analytics_data.segments(db) if context["bankwide"] else None
    return render(
        "dashboards/analytics.html",
        regions=ANALYTICS_REGIONS,
        campaigns=analytics_data.campaigns(db) if context["bankwide"] else None,
        segments=segments,
        segments_chart=charts.column_chart(
            "Customers per segment",
            [(name, float(n)) for name, n in segments.items()],
            empty="No profiles stored yet",
        )
        if segments
        else None,
        **context,
    )


@bp.get("/analytics/live")
@live()
def analytics_live() -> Response:
    context = _analytics_context()
    return regions(ANALYTICS_REGIONS, context)
