"""Why the Raspberry Pi gateway refuses something: one typed exception per reason.

Every error carries a one-line ``message`` for people (the CLI prints it as
``Error: ...``). Messages name files, keys and URLs, never a key, a secret or a claim token.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every refusal in ``edge``; not raised itself."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(GatewayError):
    """``gateway.toml`` cannot be used: missing, not TOML, an unknown key, a wrong value."""


class IdentityError(GatewayError):
    """The gateway's identity on disk cannot be used."""


class NotEnrolled(IdentityError):
    """There is no identity in the data folder: ``bankiot gateway enroll`` first."""


class InsecureFile(IdentityError):
    """An identity file or folder that others could read or change, or that another user
    owns: the gateway refuses to run with it."""


class IdentityCorrupt(IdentityError):
    """An identity file that is missing, unreadable, or does not match the others."""


class AlreadyEnrolled(IdentityError):
    """Enrolling again over an existing identity without ``--force``."""


class EnrollError(GatewayError):
    """Enrollment failed; nothing was written (unless the message says otherwise)."""


class CloudUnreachable(EnrollError):
    """The cloud could not be reached (DNS, connection, TLS, timeout)."""


class CloudRefused(EnrollError):
    """The cloud answered with an error (4xx or 5xx); ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BadAnswer(EnrollError):
    """The cloud's answer is not what enrollment expects (wrong certificate, bad JSON)."""
