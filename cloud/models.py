"""Every area's ORM models, imported in one place so the metadata is complete.

Alembic's autogenerate and the schema check in the tests use ``Base.metadata`` after this
import; each area keeps its models in its own module.
"""

from cloud.analytics.models import CustomerProfile, LifeEvent, LifeEventEpisode
from cloud.apps.models import AppDecision, HoldingAlert, LoanApplication
from cloud.audit import AuditEvent
from cloud.bank.models import BankAccount, BankStatement, BankTransaction
from cloud.customers.models import (
    ConsentEvent,
    Customer,
    CustomerErasure,
    CustomerSession,
    CustomerWearable,
    PairingOffer,
)
from cloud.db import Base
from cloud.events.models import RuleCursor, RuleDecision, ServiceRequest
from cloud.fleet.alerts import Alert
from cloud.fleet.beacon_models import Beacon, Merchant
from cloud.fleet.bindings_models import BindingSet, GatewayKeys, WearableBinding
from cloud.fleet.control_models import Command, CommandGroup, DeviceConfig
from cloud.fleet.models import Branch, Device
from cloud.fleet.release_models import Release, ReleaseBlob, ReleaseFile
from cloud.fleet.rollout_models import Rollout, RolloutMember
from cloud.identity.models import ClaimToken, EnvelopeKey, IssuedCertificate
from cloud.ingest.kiosk_models import KioskEventRow
from cloud.ingest.models import (
    BatchReceipt,
    DeviceEvent,
    DownlinkCounter,
    GatewayHealth,
    Reading,
    ThresholdState,
)
from cloud.ingest.rejections import RejectionCount
from cloud.notifications.models import CampaignSend, Notification
from cloud.offers.models import Campaign, OfferDecision, OfferResult
from cloud.people.models import ApiToken, Operator, OperatorBranch, OperatorSession

__all__ = [
    "Alert",
    "ApiToken",
    "AppDecision",
    "AuditEvent",
    "BankAccount",
    "BankStatement",
    "BankTransaction",
    "Base",
    "BatchReceipt",
    "Beacon",
    "BindingSet",
    "Branch",
    "Campaign",
    "CampaignSend",
    "ClaimToken",
    "Command",
    "CommandGroup",
    "ConsentEvent",
    "Customer",
    "CustomerErasure",
    "CustomerProfile",
    "CustomerSession",
    "CustomerWearable",
    "Device",
    "DeviceConfig",
    "DeviceEvent",
    "DownlinkCounter",
    "EnvelopeKey",
    "GatewayHealth",
    "GatewayKeys",
    "HoldingAlert",
    "IssuedCertificate",
    "KioskEventRow",
    "LifeEvent",
    "LifeEventEpisode",
    "LoanApplication",
    "Merchant",
    "Notification",
    "OfferDecision",
    "OfferResult",
    "Operator",
    "OperatorBranch",
    "OperatorSession",
    "PairingOffer",
    "Reading",
    "RejectionCount",
    "Release",
    "ReleaseBlob",
    "ReleaseFile",
    "Rollout",
    "RolloutMember",
    "RuleCursor",
    "RuleDecision",
    "ServiceRequest",
    "ThresholdState",
    "WearableBinding",
]
