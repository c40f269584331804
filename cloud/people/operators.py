"""Operator accounts: create, change, set passwords; shared by the API and ``bankiot cloud``.

Rules: names are lower case (``NAME_PATTERN``); ``operations`` sees every branch and takes no
branch assignment; a ``branch_manager`` or ``technician`` needs at least one branch; the last
active operations account cannot be demoted or disabled (someone must be able to administer
the cloud). Every change is written to the audit log by the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud.access import ROLES, Principal
from cloud.audit import record
from cloud.fleet.models import Branch
from cloud.people.models import Operator
from cloud.people.passwords import check_policy, hash_password
from cloud.people.sessions import revoke_sessions
from cloud.people.tokens import revoke_tokens

NAME_PATTERN = r"^[a-z0-9][a-z0-9._@-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


class OperatorError(ValueError):
    """An operator change that cannot be made; the message says why, in one line."""


class OperatorExists(OperatorError):
    """The name is taken."""


class OperatorConflict(OperatorError):
    """The change would leave the cloud without an active operations account."""


def normalize_name(name: str) -> str:
    """``name`` as stored (lower case), or OperatorError when it is not a valid name."""
    normal = name.strip().lower()
    if not _NAME.match(normal):
        raise OperatorError(
            "operator name %r: use 1-64 of a-z 0-9 . _ @ -, starting with a letter or digit" % name
        )
    return normal


def find_operator(db: Session, name: str) -> Operator | None:
    """The operator called ``name`` (any case), or None."""
    return db.scalars(select(Operator).where(Operator.name == name.strip().lower())).first()


def branches_for(db: Session, role: str, codes: Iterable[str]) -> list[Branch]:
    """The branches named by ``codes`` for an operator of ``role``; OperatorError if unfit."""
    if role not in ROLES:
        raise OperatorError("unknown role %r (known: %s)" % (role, ", ".join(ROLES)))
    wanted = sorted(set(codes))
    if role == "operations":
        if wanted:
            raise OperatorError("operations see every branch: give no branches")
        return []
    if not wanted:
        raise OperatorError("a %s needs at least one branch" % role)
    found = list(db.scalars(select(Branch).where(Branch.code.in_(wanted))))
    missing = sorted(set(wanted) - {branch.code for branch in found})
    if missing:
        raise OperatorError("no such branch: %s" % ", ".join(missing))
    return sorted(found, key=lambda branch: branch.code)


def create_operator(
    db: Session, actor: str, name: str, role: str, branch_codes: Iterable[str], password: str
) -> Operator:
    """Add an operator (not committed); audited as ``operator.create``."""
    name = normalize_name(name)
    branches = branches_for(db, role, branch_codes)
    check_policy(name, password)
    if find_operator(db, name) is not None:
        raise OperatorExists("operator %r exists" % name)
    operator = Operator(
        name=name, role=role, password_hash=hash_password(password), branches=branches
    )
    db.add(operator)
    db.flush()
    record(
        db,
        actor,
        "operator.create",
        "operator:%s" % name,
        role=role,
        branches=[b.code for b in branches],
    )
    return operator


def _active_operations(db: Session) -> int:
    query = select(func.count(Operator.id)).where(
        Operator.role == "operations", Operator.active.is_(True)
    )
    return db.scalar(query) or 0


def update_operator(
    db: Session,
    actor: str,
    operator: Operator,
    role: str | None = None,
    branch_codes: Iterable[str] | None = None,
    active: bool | None = None,
) -> Operator:
    """Change an operator's role, branches or active flag (not committed); audited."""
    new_role = operator.role if role is None else role
    codes = [b.code for b in operator.branches] if branch_codes is None else list(branch_codes)
    if role == "operations" and branch_codes is None:
        codes = []  # promoting to operations drops the assignments
    branches = branches_for(db, new_role, codes)
    new_active = operator.active if active is None else active
    was_admin = operator.role == "operations" and operator.active
    stays_admin = new_role == "operations" and new_active
    if was_admin and not stays_admin and _active_operations(db) <= 1:
        raise OperatorConflict("%s is the last active operations account" % operator.name)
    changes: dict[str, object] = {}
    if new_role != operator.role:
        changes["role"] = [operator.role, new_role]
    old_codes = [b.code for b in operator.branches]
    new_codes = [b.code for b in branches]
    if new_codes != old_codes:
        changes["branches"] = [old_codes, new_codes]
    if new_active != operator.active:
        changes["active"] = [operator.active, new_active]
    operator.role, operator.branches, operator.active = new_role, branches, new_active
    if not new_active:
        revoke_sessions(db, operator.id)
        revoke_tokens(db, operator.id)
    if changes:
        record(db, actor, "operator.update", "operator:%s" % operator.name, **changes)
    return operator


def set_password(
    db: Session, actor: str, operator: Operator, password: str, keep_session: int | None = None
) -> None:
    """Give ``operator`` a new password (not committed); ends their other sessions; audited.

    A reset by someone else (``keep_session`` None) also revokes the operator's API tokens:
    a reset usually means the account was at risk.
    """
    check_policy(operator.name, password)
    operator.password_hash = hash_password(password)
    revoke_sessions(db, operator.id, keep=keep_session)
    if keep_session is None:
        revoke_tokens(db, operator.id)
    record(db, actor, "operator.password", "operator:%s" % operator.name)


def principal_for(operator: Operator) -> Principal:
    """The access Principal of ``operator``: role, and branches (None: every branch)."""
    branch_ids = None
    if operator.role != "operations":
        branch_ids = frozenset(branch.id for branch in operator.branches)
    return Principal(kind="operator", name=operator.name, role=operator.role, branch_ids=branch_ids)
