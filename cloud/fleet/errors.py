"""Why fleet management refuses a request: one typed exception per reason.

Each carries a one-line message and the HTTP status the views answer with
(``cloud.fleet.init_app`` turns them into apiflask's JSON error body). Messages never hold
a key or a device's settings values that could be secret (IRKs).
"""

from __future__ import annotations


class FleetError(Exception):
    """Base of every refusal in ``cloud.fleet``; not raised itself."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(FleetError):
    """No such object, or not in a branch the caller may see (the two look the same)."""

    status = 404


class Invalid(FleetError):
    """The request is well formed but cannot be carried out as asked."""

    status = 422


class NotAllowed(FleetError):
    """The caller's role may not do this (whatever the branch)."""

    status = 403


class Conflict(FleetError):
    """The object is not in a state that allows this (a finished command, say)."""

    status = 409
