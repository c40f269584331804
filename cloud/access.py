"""Who is calling, and what they may touch: the contract every area's views use.

``cloud.people`` fills it in (operator sessions and API tokens); areas only use:

- ``Principal``: the authenticated caller: an operator with a role and the branches they
  may act on (None: all branches), or a device.
- ``current_principal()``: the caller of this request, or HTTP 401.
- ``require(*roles)``: a view decorator: 401 when not authenticated, 403 when the role is
  not one of ``roles``.
- ``check_branch(branch_id)``: 404 (not 403: do not confirm that another branch's object
  exists) unless the caller may act on that branch: object-level authorization, OWASP API1.

Roles: ``operations`` (cloud operations, every branch), ``branch_manager`` (own branch),
``technician`` (enroll and replace in assigned branches).

Personal data (which customer's wearable did what, where) is shown only to
``PERSONAL_DATA_ROLES``: branch managers, who serve the customers of their own branches.
Cloud operations and technicians run the fleet; they see that a customer was involved, not
who (``may_see_personal_data()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app, g

ROLES = ("operations", "branch_manager", "technician")
PERSONAL_DATA_ROLES = ("branch_manager",)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    kind: str  # "operator" or "device"
    name: str  # operator login or device uid
    role: str  # one of ROLES for operators; "device" for devices
    branch_ids: frozenset[int] | None  # None: every branch

    def may_act_on(self, branch_id: int) -> bool:
        return self.branch_ids is None or branch_id in self.branch_ids

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return "%s:%s" % (self.kind, self.name)


# The authenticator: set by cloud.people.init_app; returns the Principal of the current
# request or None. Kept as a hook so areas need not import cloud.people.
Authenticator = Callable[[], "Principal | None"]


def set_authenticator(app: Any, authenticate: Authenticator) -> None:
    app.extensions["bankiot.authenticate"] = authenticate


def current_principal() -> Principal:
    """The caller of this request; aborts with 401 when not authenticated."""
    if "principal" not in g:
        authenticate = current_app.extensions.get("bankiot.authenticate")
        g.principal = authenticate() if authenticate is not None else None
    if g.principal is None:
        abort(401)
    return g.principal


def require(*roles: str) -> Callable[[F], F]:
    """View decorator: the caller must be authenticated and have one of ``roles``."""
    unknown = set(roles) - set(ROLES) - {"device"}
    if unknown:
        raise ValueError("unknown roles: %s" % ", ".join(sorted(unknown)))

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_principal().role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def check_branch(branch_id: int) -> None:
    """Abort with 404 unless the caller may act on ``branch_id``."""
    if not current_principal().may_act_on(branch_id):
        abort(404)


def may_see_personal_data() -> bool:
    """True if the caller's role may see customers' identities (``PERSONAL_DATA_ROLES``)."""
    return current_principal().role in PERSONAL_DATA_ROLES


def visible_branches() -> Iterable[int] | None:
    """Branch ids the caller may see (for filtering listings), None meaning all."""
    return current_principal().branch_ids
