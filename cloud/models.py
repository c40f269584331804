"""Every area's ORM models, imported in one place so the metadata is complete.

Alembic's autogenerate and the schema check in the tests use ``Base.metadata`` after this
import; each area keeps its models in its own module.
"""

from cloud.audit import AuditEvent
from cloud.db import Base
from cloud.fleet.models import Branch, Device
from cloud.identity.models import ClaimToken, EnvelopeKey, IssuedCertificate
from cloud.ingest.models import BatchReceipt, DeviceEvent, DownlinkCounter, GatewayHealth, Reading
from cloud.people.models import ApiToken, Operator, OperatorBranch, OperatorSession

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Base",
    "BatchReceipt",
    "Branch",
    "ClaimToken",
    "Device",
    "DeviceEvent",
    "DownlinkCounter",
    "EnvelopeKey",
    "GatewayHealth",
    "IssuedCertificate",
    "Operator",
    "OperatorBranch",
    "OperatorSession",
    "Reading",
]
