"""The customer pages (``/customer``): server-rendered forms, no external network; no script
but the inbox's live updates.

Routes::

    GET  /customer/              your wearables (each with an Unpair button), or sign-in
    GET  /customer/signup        POST: email, password -> signed in
    GET  /customer/signin        POST: email, password -> signed in (401 and the form when wrong)
    POST /customer/signout
    GET  /customer/pair          POST: code, wearable (address or QR text), bind_key, irk,
                                 consent_<purpose> checkboxes -> paired
    GET  /customer/consents      POST: purpose, granted (1 or 0): one click per purpose
    POST /customer/unpair        address -> unpaired from the customer and every branch
    GET  /customer/data          what is held (``data.summary``), the export link, erase form
    GET  /customer/data/export   everything as a JSON download (``data.export``)
    POST /customer/data/erase    password -> the confirm step (401 and the page when wrong)
    POST /customer/data/erase/confirm   confirm (a token from the step before, valid
                                 ``ERASE_CONFIRM_SECONDS``) -> erased (``erasure``), signed out
    GET  /customer/notifications the inbox (``cloud.notifications.inbox``): newest first,
                                 unread count, Mark read, Accept / Decline on offers; its
                                 script asks the JSON below every ``CUSTOMER_POLL_MS`` [5000]
    GET  /customer/notifications.json   the inbox as JSON (401 JSON when signed out)
    POST /customer/notifications/read   mark all read
    POST /customer/notifications/<id>/read     mark one read (404 unless it is yours)
    POST /customer/notifications/<id>/answer   outcome=accepted|declined: an offer's answer
                                 (``offer_results``; 404 unless yours, 409 answered or ended)
    POST /customer/notifications/<id>/relayed  the phone app passed a wearable notification
                                 on to the watch: JSON ``{id, relayed_at}`` (the first time
                                 counts); JSON 401 signed out, 404 unless yours, 409 not for
                                 a wearable

Every POST carries the form's CSRF token (``accounts``); a missing or wrong one gets 403 and
changes nothing. A refused form comes back with one line saying why and the status: 401
wrong sign-in or password, 409 a wearable paired to another account, 422 anything else (a refused
pairing code among them), 429 too many tries. Pages carry a strict Content-Security-Policy
(this origin's stylesheet, forms to this origin only; the inbox page also this origin's
script and requests) and ``no-store``. Every page's menu shows the unread count.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from apiflask import APIBlueprint
from flask import (
    Flask,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter.errors import RateLimitExceeded
from werkzeug.wrappers import Response

from cloud import audit
from cloud.customers import accounts, consent, data, erasure, pairing
from cloud.customers.models import Customer
from cloud.db import session
from cloud.fleet.errors import FleetError
from cloud.identity.runtime import key_wrapper
from cloud.notifications import inbox
from cloud.pages import PreSessionCsrf, page_headers
from cloud.people.credentials import utcnow
from cloud.people.limits import limit_endpoint
from cloud.people.sessions import cookie_secure

# Pages, not an API: left out of the OpenAPI document.
bp = APIBlueprint(
    "customers",
    __name__,
    enable_openapi=False,
    url_prefix="/customer",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

# Forms before sign-in (sign-in, sign-up) carry a token bound to a cookie of their own.
PRE = PreSessionCsrf("customer-csrf:pre", accounts.PRE_COOKIE_NAME, "/customer")
NOTICES = {
    "welcome": "Your account is ready.",
    "paired": "Your wearable is paired. The branch's gateways know it within seconds.",
    "unpaired": "Your wearable is unpaired and removed from every branch.",
    "signedout": "You are signed out.",
}
FORM_EXPIRED = "This form has expired: reload the page and send it again."
ERASE_CONFIRM_SECONDS = 300
SCRIPT_PAGES = ("customers.notifications",)  # pages that run this origin's script


# ---- who is here ----------------------------------------------------------------------------


def _signed_in() -> tuple[Customer, str] | None:
    """The signed-in customer and their cookie secret, or None."""
    if "customer_signed_in" not in g:
        secret = request.cookies.get(accounts.COOKIE_NAME)
        row = accounts.find_session(session(), secret) if secret else None
        g.customer_signed_in = (row.customer, secret) if row is not None and secret else None
    return g.customer_signed_in


def _page(template: str, status: int = 200, **context: Any) -> Response:
    signed = _signed_in()
    context.setdefault("error", None)
    context.setdefault("notice", NOTICES.get(request.args.get("m", "")))
    if signed is not None:
        context["customer"] = signed[0]
        context["csrf"] = accounts.csrf_token(signed[1])
        if "unread" not in context:  # the inbox page has counted already
            context["unread"] = inbox.unread(session(), signed[0].id)
    else:
        context["customer"] = None
        context["csrf"] = PRE.token()
    return make_response(render_template(template, **context), status)


def _csrf_ok() -> bool:
    sent = request.form.get("csrf_token")
    signed = _signed_in()
    if signed is not None:
        return accounts.csrf_matches(sent, signed[1])
    return PRE.matches(sent)


@bp.before_request
def _check_csrf() -> Response | None:
    if request.method == "POST" and not _csrf_ok():
        return _page("customers/message.html", 403, error=FORM_EXPIRED)
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(page_headers(script=request.endpoint in SCRIPT_PAGES))
    return PRE.finish(response)


@bp.errorhandler(RateLimitExceeded)
def _too_many(_error: RateLimitExceeded) -> Response:
    return _page(
        "customers/message.html",
        429,
        error="Too many tries. Wait a while, then try again.",
    )


def _cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/customer",
        secure=cookie_secure(),
        httponly=True,
        samesite="Lax",
    )


def _to_signin() -> Response:
    return redirect(url_for("customers.signin"))


def _signed_in_response(customer: Customer, notice: str) -> Response:
    db = session()
    previous = request.cookies.get(accounts.COOKIE_NAME)
    if previous:  # a new sign-in gets a new session: no session fixation
        accounts.end_session(db, previous)
    secret, _row = accounts.start_session(db, customer)
    audit.record(db, "customer:%d" % customer.id, "customer.signin", "customer:%d" % customer.id)
    db.commit()
    response = redirect(url_for("customers.home", m=notice))
    _cookie(response, accounts.COOKIE_NAME, secret, accounts.SESSION_HOURS * 3600)
    return response


# ---- accounts -------------------------------------------------------------------------------


@bp.get("/")
def home() -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    customer = signed[0]
    wearables = pairing.wearables_of(session(), customer.id)
    return _page("customers/home.html", wearables=wearables)


@bp.route("/signup", methods=["GET", "POST"])
def signup() -> Response:
    if request.method == "GET":
        return _page("customers/signup.html", email="")
    email = request.form.get("email", "")
    db = session()
    try:
        customer = accounts.sign_up(db, email, request.form.get("password", ""))
    except accounts.AccountError as exc:
        db.rollback()
        return _page("customers/signup.html", 422, error=str(exc), email=email)
    audit.record(db, "customer:%d" % customer.id, "customer.signup", "customer:%d" % customer.id)
    return _signed_in_response(customer, "welcome")


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Response:
    if request.method == "GET":
        return _page("customers/signin.html", email="")
    email = request.form.get("email", "")
    customer = accounts.check_password(session(), email, request.form.get("password", ""))
    if customer is None:
        return _page("customers/signin.html", 401, error="Wrong email or password.", email=email)
    return _signed_in_response(customer, "")


@bp.post("/signout")
def signout() -> Response:
    secret = request.cookies.get(accounts.COOKIE_NAME)
    if secret:
        db = session()
        accounts.end_session(db, secret)
        db.commit()
    response = redirect(url_for("customers.signin", m="signedout"))
    response.delete_cookie(accounts.COOKIE_NAME, path="/customer")
    return response


# ---- pairing, consents, unpairing -------------------------------------------------------------


def _ciphers() -> pairing.Ciphers:
    return pairing.Ciphers.from_wrapper(key_wrapper())


def _ticked() -> dict[str, bool]:
    return {p.name: request.form.get("consent_" + p.name) == "1" for p in consent.PURPOSES}


@bp.route("/pair", methods=["GET", "POST"])
def pair() -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    customer = signed[0]
    if request.method == "GET":
        return _page("customers/pair.html", form={}, purposes=consent.PURPOSES, ticked={})
    form = {name: request.form.get(name, "") for name in ("code", "wearable", "bind_key", "irk")}
    ticked = _ticked()
    db = session()
    try:
        details = pairing.parse_details(form["wearable"], form["bind_key"], form["irk"])
        pairing.pair(db, customer, form["code"], details, ticked, utcnow(), _ciphers())
    except (pairing.PairingRefused, FleetError) as exc:
        db.rollback()
        if isinstance(exc, pairing.PairingRefused) and exc.field == "code":
            g.customer_code_refused = True  # counted by the code rate limit
        status = 409 if isinstance(exc, pairing.WearableTaken) else 422
        form["bind_key"] = form["irk"] = ""  # secrets are not sent back
        return _page(
            "customers/pair.html",
            status,
            error=str(exc),
            form=form,
            purposes=consent.PURPOSES,
            ticked=ticked,
        )
    db.commit()
    return redirect(url_for("customers.home", m="paired"))


@bp.route("/consents", methods=["GET", "POST"])
def consents() -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    customer = signed[0]
    db = session()
    if request.method == "POST":
        purpose = request.form.get("purpose", "")
        if purpose not in consent.BY_NAME:
            return _page("customers/message.html", 422, error="Unknown purpose %r." % purpose[:32])
        granted = request.form.get("granted") == "1"
        pairing.change_consents(db, customer, {purpose: granted}, utcnow(), _ciphers())
        db.commit()
        return redirect(url_for("customers.consents"))
    return _page(
        "customers/consents.html",
        answers=consent.answers(db, customer.id),
        history=consent.history(db, customer.id),
        titles={p.name: p.title for p in consent.PURPOSES},
    )


@bp.post("/unpair")
def unpair() -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    db = session()
    try:
        done = pairing.unpair(db, signed[0], request.form.get("address", ""), utcnow())
    except FleetError as exc:
        return _page("customers/message.html", 422, error=str(exc))
    if not done:
        return _page("customers/message.html", 404, error="You have no such wearable.")
    db.commit()
    return redirect(url_for("customers.home", m="unpaired"))


# ---- your data: see, export, erase -----------------------------------------------------------


def _data_page(customer: Customer, status: int = 200, error: str | None = None) -> Response:
    db = session()
    return _page(
        "customers/data.html",
        status,
        error=error,
        wearables=pairing.wearables_of(db, customer.id),
        history=consent.history(db, customer.id),
        titles={p.name: p.title for p in consent.PURPOSES},
        summary=data.summary(db, customer),
    )


@bp.get("/data")
def data_page() -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    return _data_page(signed[0])


@bp.get("/data/export")
def export() -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    now = utcnow()
    document = data.export(session(), signed[0], now)
    response = make_response(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    response.mimetype = "application/json"
    name = "bankiot-my-data-%s.json" % now.strftime("%Y%m%d-%H%M%S")
    response.headers["Content-Disposition"] = 'attachment; filename="%s"' % name
    return response


def _confirm_token(secret: str, expires: int) -> str:
    return "%d.%s" % (expires, accounts.csrf_token(secret, "erase:%d" % expires))


def _confirm_ok(token: str, secret: str) -> bool:
    expires_text, _, _mac = token.partition(".")
    if not expires_text.isdigit() or int(expires_text) < time.time():
        return False
    expected = _confirm_token(secret, int(expires_text))
    return hmac.compare_digest(token.encode(), expected.encode())


@bp.post("/data/erase")
def erase() -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    customer, secret = signed
    db = session()
    checked = accounts.check_password(db, customer.email, request.form.get("password", ""))
    if checked is None or checked.id != customer.id:
        return _data_page(customer, 401, "Wrong password: nothing was erased.")
    expires = int(time.time()) + ERASE_CONFIRM_SECONDS
    return _page(
        "customers/erase_confirm.html",
        confirm=_confirm_token(secret, expires),
        wearables=len(pairing.wearables_of(db, customer.id)),
    )


@bp.post("/data/erase/confirm")
def erase_confirm() -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    customer, secret = signed
    if not _confirm_ok(request.form.get("confirm", ""), secret):
        return _data_page(customer, 403, "The confirmation has expired: enter your password again.")
    db = session()
    receipt = erasure.erase(db, customer, utcnow())
    db.commit()
    g.customer_signed_in = None  # the page after is a signed-out one
    response = _page("customers/erased.html", receipt=receipt)
    response.delete_cookie(accounts.COOKIE_NAME, path="/customer")
    return response


# ---- the inbox: notifications and offers --------------------------------------------------------


def _inbox_items(customer: Customer) -> tuple[list[dict[str, Any]], int]:
    db = session()
    rows = inbox.latest(db, customer.id)
    answered = inbox.answers(db, customer.id, [row.id for row in rows if row.campaign_id])
    items = [inbox.item_out(row, answered.get(row.id)) for row in rows]
    return items, inbox.unread(db, customer.id)


@bp.get("/notifications")
def notifications() -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    items, unread = _inbox_items(signed[0])
    every = int(current_app.config.get("CUSTOMER_POLL_MS", 5000))
    return _page("customers/notifications.html", items=items, unread=unread, every=every)


@bp.get("/notifications.json")
def notifications_json() -> Response:
    signed = _signed_in()
    if signed is None:
        return make_response(jsonify(error="signed out"), 401)
    items, unread = _inbox_items(signed[0])
    return jsonify(unread=unread, notifications=items, at=utcnow().isoformat())


def _back_to_inbox() -> Response:
    return redirect(url_for("customers.notifications"))


@bp.post("/notifications/read")
def notifications_read_all() -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    db = session()
    inbox.mark_all_read(db, signed[0].id, utcnow())
    db.commit()
    return _back_to_inbox()


@bp.post("/notifications/<int:notification_id>/read")
def notification_read(notification_id: int) -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    db = session()
    try:
        inbox.mark_read(db, signed[0].id, notification_id, utcnow())
    except inbox.NotFound as exc:
        return _page("customers/message.html", 404, error=str(exc))
    db.commit()
    return _back_to_inbox()


@bp.post("/notifications/<int:notification_id>/answer")
def notification_answer(notification_id: int) -> Response:
    signed = _signed_in()
    if signed is None:
        return _to_signin()
    db = session()
    outcome = request.form.get("outcome", "")
    if outcome not in inbox.ANSWERS:
        return _page("customers/message.html", 422, error="Accept or decline an offer.")
    try:
        inbox.answer(db, signed[0].id, notification_id, outcome, utcnow())
    except inbox.NotificationError as exc:
        db.rollback()
        status = 404 if isinstance(exc, inbox.NotFound) else 409
        return _page("customers/message.html", status, error=str(exc))
    audit.record(
        db,
        "customer:%d" % signed[0].id,
        "offer.answer",
        "notification:%d" % notification_id,
        outcome=outcome,
    )
    db.commit()
    return _back_to_inbox()


@bp.post("/notifications/<int:notification_id>/relayed")
def notification_relayed(notification_id: int) -> Response:
    signed = _signed_in()
    if signed is None:
        return make_response(jsonify(error="signed out"), 401)
    db = session()
    try:
        row = inbox.mark_relayed(db, signed[0].id, notification_id, utcnow())
    except inbox.NotificationError as exc:
        db.rollback()
        status = 404 if isinstance(exc, inbox.NotFound) else 409
        return make_response(jsonify(error=str(exc)), status)
    db.commit()
    relayed = inbox.item_out(row, None)["relayed_at"]
    return jsonify(id=row.id, relayed_at=relayed)


# ---- wiring ---------------------------------------------------------------------------------


def _failed_signin(response: Response) -> bool:
    return response.status_code == 401


def _code_refused(_response: Response) -> bool:
    return bool(g.get("customer_code_refused"))


def _signup_sent(_response: Response) -> bool:
    return request.method == "POST"


def _customer_key() -> str:
    """The code limit's key: the signed-in customer (signing in again starts no new count)."""
    signed = _signed_in()
    return "customer:%d" % signed[0].id if signed is not None else "customer:-"


def init_app(app: Flask) -> None:
    """Register the pages and their rate limits."""
    app.register_blueprint(bp)
    signin_limit = app.config.get("CUSTOMER_SIGNIN_RATE_LIMIT", "5 per minute")
    code_limit = app.config.get("CUSTOMER_CODE_RATE_LIMIT", "10 per hour")
    post = ["POST"]  # only sending counts: the forms themselves always show
    limit_endpoint(app, "customers.signin", signin_limit, deduct_when=_failed_signin, methods=post)
    limit_endpoint(app, "customers.signup", signin_limit, deduct_when=_signup_sent, methods=post)
    limit_endpoint(app, "customers.erase", signin_limit, deduct_when=_failed_signin, methods=post)
    limit_endpoint(app, "customers.pair", code_limit, deduct_when=_code_refused, methods=post)
    limit_endpoint(
        app,
        "customers.pair",
        code_limit,
        key_func=_customer_key,
        deduct_when=_code_refused,
        methods=post,
    )
