"""``POST /api/notifications/push/retry``: given-up push notifications made due again
(``outbox.requeue``), for cloud operations only (they run the push gateway's side; no
customer's data is shown: ids and counts). Audited as ``notification.push.retry``.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import DateTime, Integer, List, Nested, String
from apiflask.validators import Length, Range

from cloud.access import current_principal, require
from cloud.db import session
from cloud.identity.models import utcnow
from cloud.identity.schemas import UTCDateTime
from cloud.notifications.outbox import MAX_IDS, requeue, requeued_out
from cloud.people.openapi import SECURITY, signed_in, utc_param

bp = APIBlueprint("notifications", __name__, tag="Notifications")


class RetryIn(Schema):
    ids = List(
        Integer(validate=Range(min=1)),
        load_default=list,
        validate=Length(max=MAX_IDS),
        metadata={
            "description": "these notifications (unless pushed), given up or not; "
            "default: every given-up one"
        },
    )
    since = DateTime(
        metadata={"description": "only those created at or after it (UTC if no offset)"}
    )


class SkippedOut(Schema):
    id = Integer(required=True)
    reason = String(required=True)


class RetryOut(Schema):
    requeued = Integer(required=True, metadata={"description": "notifications made due"})
    at = UTCDateTime(required=True, metadata={"description": "when they became due"})
    since = UTCDateTime(required=True, allow_none=True)
    skipped = List(
        Nested(SkippedOut),
        required=True,
        metadata={"description": "named notifications left alone, and why"},
    )


@bp.post("/api/notifications/push/retry")
@require("operations")
@bp.input(RetryIn, location="json")
@bp.output(RetryOut)
@bp.doc(
    summary="Push given-up notifications again (or the named ones, unless pushed): their "
    "attempts back to 0, due now (cloud operations)",
    security=SECURITY,
    responses=signed_in(422),
)
def retry(json_data: dict[str, Any]) -> dict[str, Any]:
    since = json_data.get("since")
    db = session()
    done = requeue(
        db,
        current_principal().actor,
        utcnow(),
        ids=json_data["ids"],
        since=None if since is None else utc_param(since),
    )
    db.commit()
    return requeued_out(done)
