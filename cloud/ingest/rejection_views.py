"""``GET /api/ingest/rejections``: envelopes the cloud refused, per sending gateway and
reason, summed from the hourly counts every ingest worker keeps (``rejections``), largest
first. For cloud operations only: the ``unknown`` sender belongs to no branch.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, DateTime, Integer, List, Nested, String
from apiflask.validators import OneOf, Range, Regexp

from cloud.access import require
from cloud.db import session
from cloud.fleet.schemas import DEFAULT_PAGE, MAX_PAGE
from cloud.identity.schemas import UTCDateTime
from cloud.ingest.rejections import UNKNOWN, RejectionFilters, summary
from cloud.ingest.stats import REASONS
from cloud.people.openapi import SECURITY, signed_in, utc_param

bp = APIBlueprint("ingest_rejections", __name__, tag="Ingest")

DEFAULT_SINCE = dt.timedelta(hours=24)


class RejectionsQuery(Schema):
    since = DateTime(
        metadata={
            "description": "from this time's hour on (UTC if no offset is given); "
            "default: the last 24 hours"
        }
    )
    gateway = String(
        validate=Regexp(r"^[\x21-\x7e]{1,64}$"),
        metadata={"description": "one gateway's uid, or %r" % UNKNOWN},
    )
    reason = String(validate=OneOf(REASONS))
    limit = Integer(load_default=DEFAULT_PAGE, validate=Range(1, MAX_PAGE))


class RejectionOut(Schema):
    gateway = String(
        required=True,
        metadata={
            "description": "the sending gateway (of the inventory), or %r when the envelope "
            "did not name one the inventory holds" % UNKNOWN
        },
    )
    reason = String(required=True, validate=OneOf(REASONS))
    count = Integer(required=True, metadata={"description": "envelopes rejected"})
    first_seen = UTCDateTime(required=True)
    last_seen = UTCDateTime(required=True)
    hours = Integer(required=True, metadata={"description": "hours with rejections"})


class RejectionsOut(Schema):
    since = UTCDateTime(required=True, metadata={"description": "the first hour summed"})
    rejections = List(Nested(RejectionOut), required=True)
    truncated = Boolean(
        required=True, metadata={"description": "more (gateway, reason) pairs than `limit`"}
    )


@bp.get("/api/ingest/rejections")
@require("operations")
@bp.input(RejectionsQuery, location="query", arg_name="query")
@bp.output(RejectionsOut)
@bp.doc(
    summary="Envelopes ingest refused, per sending gateway and reason, most first "
    "(cloud operations); filter by time, gateway or reason",
    security=SECURITY,
    responses=signed_in(422),
)
def rejections(query: dict[str, Any]) -> dict[str, Any]:
    since = query.get("since")
    filters = RejectionFilters(
        since=dt.datetime.now(dt.UTC) - DEFAULT_SINCE if since is None else utc_param(since),
        gateway=query.get("gateway"),
        reason=query.get("reason"),
        limit=query["limit"],
    )
    return summary(session(), filters)
