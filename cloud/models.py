"""Every area's ORM models, imported in one place so the metadata is complete.

Alembic's autogenerate and the schema check in the tests use ``Base.metadata`` after this
import; each area keeps its models in its own module.
"""

from cloud.audit import AuditEvent
from cloud.db import Base
from cloud.fleet.models import Branch, Device

__all__ = ["AuditEvent", "Base", "Branch", "Device"]
