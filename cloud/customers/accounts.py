"""Customer accounts and their sign-in sessions (the session cookie and CSRF tokens).

Passwords are Argon2id like operators' (``cloud.people.passwords``: the same parameters
and policy; the account name the policy checks is the email's local part). Sessions are
server-side rows keyed by the SHA-256 of a random cookie secret (``cloud.people.credentials``),
under their own cookie, ``bankiot_customer``, so a customer's browser never carries an
operator's session and the staff authenticator never sees a customer's. A customer is
``cloud.access.Principal`` kind ``customer``, role ``customer``, with no branches: no staff
view's ``require()`` admits them.

CSRF: every form carries a token. Signed in, it is an HMAC of the session secret under the
app's secret key; before sign-in (sign-up and sign-in forms: login CSRF), an HMAC of a
random value in a short-lived ``bankiot_customer_pre`` cookie. Both cookies are HttpOnly and
SameSite=Lax.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloud.access import Principal
from cloud.customers.models import EMAIL_LEN, Customer, CustomerSession
from cloud.people.credentials import as_utc, digest, new_secret, utcnow
from cloud.people.passwords import (
    burn_verification,
    check_policy,
    hash_password,
    needs_rehash,
    verify_password,
)

COOKIE_NAME = "bankiot_customer"
PRE_COOKIE_NAME = "bankiot_customer_pre"
SESSION_PREFIX = "bkc_"
SESSION_HOURS = 12
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class AccountError(ValueError):
    """A sign-up that cannot be made (bad email, taken, weak password); one line, why."""


def normalize_email(text: str) -> str:
    """``text`` as the stored login: trimmed, lower case; AccountError if no email."""
    email = text.strip().lower()
    if len(email) > EMAIL_LEN or not _EMAIL.match(email):
        raise AccountError("%r is not an email address like name@example.com" % text[:80])
    return email


def sign_up(session: Session, email: str, password: str) -> Customer:
    """A new customer account (staged); AccountError if the email is taken or the password
    does not meet the policy."""
    email = normalize_email(email)
    try:
        check_policy(email.split("@", 1)[0], password)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    if session.scalar(select(Customer.id).where(Customer.email == email)) is not None:
        raise AccountError("an account for %s exists already: sign in instead" % email)
    customer = Customer(email=email, password_hash=hash_password(password), active=True)
    session.add(customer)
    session.flush()
    return customer


def check_password(session: Session, email: str, password: str) -> Customer | None:
    """The active customer whose email and password these are, else None. An unknown email
    costs the same work as a wrong password."""
    try:
        email = normalize_email(email)
    except AccountError:
        burn_verification(password)
        return None
    customer = session.scalar(select(Customer).where(Customer.email == email))
    if customer is None:
        burn_verification(password)
        return None
    if not verify_password(customer.password_hash, password) or not customer.active:
        return None
    if needs_rehash(customer.password_hash):
        customer.password_hash = hash_password(password)
    return customer


def start_session(session: Session, customer: Customer) -> tuple[str, CustomerSession]:
    """A new session (staged): the cookie secret and the row. Expired ones go on the way."""
    now = utcnow()
    session.execute(
        delete(CustomerSession).where(
            CustomerSession.customer_id == customer.id, CustomerSession.expires_at <= now
        )
    )
    secret = new_secret(SESSION_PREFIX)
    row = CustomerSession(
        customer_id=customer.id,
        token_hash=digest(secret),
        expires_at=now + dt.timedelta(hours=SESSION_HOURS),
    )
    session.add(row)
    session.flush()
    return secret, row


def find_session(session: Session, secret: str) -> CustomerSession | None:
    """The live session of an active customer for the cookie ``secret``, else None."""
    row = session.scalar(
        select(CustomerSession).where(CustomerSession.token_hash == digest(secret))
    )
    if row is None or as_utc(row.expires_at) <= utcnow() or not row.customer.active:
        return None
    return row


def end_session(session: Session, secret: str) -> None:
    """Sign out the session of cookie ``secret`` (staged)."""
    session.execute(delete(CustomerSession).where(CustomerSession.token_hash == digest(secret)))


def principal(customer: Customer) -> Principal:
    """The ``cloud.access.Principal`` of a signed-in customer: no staff role, no branch."""
    return Principal("customer", customer.email, "customer", frozenset())


def csrf_token(secret: str, kind: str = "session") -> str:
    """The form token bound to a session secret (``kind`` "session") or a pre-session
    cookie value ("pre")."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    message = ("customer-csrf:%s:%s" % (kind, secret)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def csrf_matches(sent: str | None, secret: str, kind: str = "session") -> bool:
    """Whether the form's token ``sent`` is the one for ``secret``."""
    return sent is not None and hmac.compare_digest(
        sent.encode(), csrf_token(secret, kind).encode()
    )
