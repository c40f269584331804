"""Operators, their branch assignments, sign-in sessions and API tokens.

Secrets are never stored: passwords as Argon2id hashes (``passwords.py``), session and API
tokens as SHA-256 digests (they are 256-bit random values, so a fast hash is enough: nothing
can be guessed from the digest, and a lookup by digest costs one index probe).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cloud.db import Base
from cloud.fleet.models import Branch


class Operator(Base):
    """A person who signs in to the cloud: cloud operations, branch manager or technician."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # lower case login name
    role: Mapped[str] = mapped_column(String(32))  # one of cloud.access.ROLES
    password_hash: Mapped[str] = mapped_column(String(255))  # Argon2id, PHC string format
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    branches: Mapped[list[Branch]] = relationship(
        secondary="operator_branches", order_by=Branch.code
    )


class OperatorBranch(Base):
    """A branch a branch manager or technician may act on (operations see every branch)."""

    __tablename__ = "operator_branches"

    operator_id: Mapped[int] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True
    )
    branch_id: Mapped[int] = mapped_column(
        ForeignKey("branches.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class OperatorSession(Base):
    """A signed-in browser session; the cookie holds the token, the table its digest."""

    __tablename__ = "operator_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    operator: Mapped[Operator] = relationship()


class ApiToken(Base):
    """A bearer token an operator made for an API client; shown once, kept as a digest."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))  # what it is for, e.g. "grafana"
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise it
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    operator: Mapped[Operator] = relationship()
