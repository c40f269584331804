"""Delivering configuration, commands and wearable bindings on each gateway's own sealed
downlink.

Every message is sealed for one gateway with its own key (``downlink.seal_downlink``) and
published on its own topic ``devices/<id>/down``, the topic the broker's ACL lets only the
cloud publish on. A message to a branch or a cohort is therefore one message per member:
the issue asked for branch-wide topics, but one message on a shared topic would need a key
shared by the branch's gateways, and any one of them could then forge configuration for the
others (EN 303 645 5.4: no shared secrets between devices). A branch has few gateways, so the
fan-out costs little; each member's acknowledgement is its own command's status.

``prepare`` runs in one transaction: it picks what is due, takes a downlink sequence number
per message from the same counter as the acknowledgements (numbers never repeat under a key
version), seals, and marks the rows sent. The caller commits, then publishes. If publishing
fails the rows still say "sent", and the back-off below sends them again with a new number:
delivery is at least once, and gateways run a command id once and apply a configuration
revision once, so repeats are harmless.

Due, for a command: ``pending``, or ``sent`` and unanswered for the back-off time. For a
configuration: the desired revision is not the one the gateway reports, and either it was
never sent at this revision or the back-off time passed. The back-off doubles with every
resend up to a cap, so a gateway that is off for a week is not sent a message a minute.

Due, for wearable bindings (KEYS, ``cloud.fleet.bindings``): the gateway's KEYS revision
(raised whenever its branch's set, or its branch, changes) is above the ``keys_revision``
its latest health record reports, and either it was never sent at this revision or the
back-off time passed. Every page of the revision goes together; the secrets are opened
with the ``bindings.BindingCipher`` given, by default the one the key source's KEK derives
(``bindings.cipher_from``): without one, no KEYS are sent.

Key version: the one of the gateway's newest batch, which it demonstrably holds (during a
rollover it may not have the newest key yet). A gateway that never sent a batch gets
nothing yet: its messages wait. A revoked gateway gets nothing.

An ``update`` command to a board running the MicroPython firmware is sent with its
per-device release MAC, computed at sealing under the key version sealing it
(``update_args.as_sent``); a command whose release is gone fails with one line.

Channel: where a gateway's newest batch came in (the highest key version and sequence
number, the inventory's ``uplink``). A gateway that sends over MQTT is subscribed to its
topic, and ``prepare`` seals for it. A gateway that sends over CoAP has no subscription to
publish to: ``prepare`` leaves it alone, and the CoAP resource answers each batch it posts
with its due messages (``prepare_for``, the same bookkeeping, sealed bound to the resource
instead of the topic: ``downlink`` module docstring). Such a gateway polls by sending its
batches: at the latest with its health record, every ``health_interval_ms`` (plus up to
``batch_max_delay_ms`` before that record's batch closes). A gateway that
falls back from one to the other is served on the new one from its next batch on; a
message sent on the old one and lost there is sent again after the back-off.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bankiot_core import cose, downlink
from bankiot_core.errors import ConfigError
from bankiot_core.keyring import KeyRing
from cloud.db import Database
from cloud.fleet import bindings, update_args
from cloud.fleet.bindings_models import GatewayKeys
from cloud.fleet.control_models import Command, DeviceConfig
from cloud.fleet.models import Device
from cloud.identity.models import utc, utcnow
from cloud.ingest.keys import KeySource
from cloud.ingest.models import BatchReceipt
from cloud.ingest.store import take_downlink_seq

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """When to send again: after ``resend_after``, doubling per resend up to ``max_wait``;
    at most ``per_pass`` messages per pass (the rest wait for the next)."""

    resend_after: dt.timedelta = dt.timedelta(seconds=30)
    max_wait: dt.timedelta = dt.timedelta(minutes=15)
    per_pass: int = 500


def resend_due(
    sent_at: dt.datetime | None, send_count: int, now: dt.datetime, policy: Policy
) -> bool:
    """True if a message last sent at ``sent_at`` (``send_count`` times) is due again."""
    if sent_at is None or send_count <= 0:
        return True
    wait = min(policy.resend_after * (2 ** min(send_count - 1, 20)), policy.max_wait)
    return now - utc(sent_at) >= wait


@dataclass(frozen=True)
class Outgoing:
    """One sealed message: the topic it is published on (or the CoAP resource whose
    response carries it: its external AAD either way), its bytes, and what it carries (for
    logs)."""

    topic: str
    payload: bytes
    what: str


RESPONSE_CHANNELS = ("coap",)
"""Transports whose gateways get their messages in the responses to their batches."""


def gateway_ring(session: Session, keys: KeySource, gateway: str) -> tuple[KeyRing, str] | None:
    """The gateway's ring at the key version of its newest batch, and the transport that
    batch came by; None if it never sent one, is revoked, or that key is gone."""
    raw = cose.gateway_bytes(gateway)
    if keys.is_revoked(raw):
        return None
    newest = session.execute(
        select(BatchReceipt.key_version, BatchReceipt.transport)
        .where(BatchReceipt.gateway == gateway)
        .order_by(BatchReceipt.key_version.desc(), BatchReceipt.seq.desc())
        .limit(1)
    ).first()
    if newest is None:
        return None
    version, transport = newest
    key = keys.lookup(raw, version)
    if key is None:
        return None
    return KeyRing(raw, version, key), transport


def _due_commands(
    session: Session, now: dt.datetime, policy: Policy, device_id: int | None = None
) -> Sequence[Command]:
    query = select(Command).where(
        Command.status.in_(("pending", "sent")), Command.deadline_at > now
    )
    if device_id is not None:
        query = query.where(Command.device_id == device_id)
    query = query.order_by(Command.id).limit(policy.per_pass * 4)
    due = [c for c in session.scalars(query) if resend_due(c.sent_at, c.send_count, now, policy)]
    return due[: policy.per_pass]


def _due_configs(
    session: Session, now: dt.datetime, policy: Policy, device_id: int | None = None
) -> Sequence[DeviceConfig]:
    query = select(DeviceConfig).where(
        or_(
            DeviceConfig.reported_revision.is_(None),
            DeviceConfig.reported_revision != DeviceConfig.revision,
        )
    )
    if device_id is not None:
        query = query.where(DeviceConfig.device_id == device_id)
    query = query.order_by(DeviceConfig.device_id).limit(policy.per_pass * 4)
    due = [
        row
        for row in session.scalars(query)
        if row.sent_revision != row.revision or resend_due(row.sent_at, row.send_count, now, policy)
    ]
    return due[: policy.per_pass]


def _due_keys(
    session: Session, now: dt.datetime, policy: Policy, device_id: int | None = None
) -> Sequence[GatewayKeys]:
    bindings.sync(session, now, device_id)
    query = select(GatewayKeys, Device.uid).join(Device, Device.id == GatewayKeys.device_id)
    if device_id is not None:
        query = query.where(GatewayKeys.device_id == device_id)
    rows = session.execute(query.order_by(GatewayKeys.device_id)).all()
    reported = bindings.reported_revisions(session, [uid for _, uid in rows])
    due = []
    for row, uid in rows:
        running = reported.get(uid)
        if running is not None and running >= row.revision:
            continue
        if row.sent_revision != row.revision or resend_due(
            row.sent_at, row.send_count, now, policy
        ):
            due.append(row)
    return due[: policy.per_pass]


Route = Callable[[Device], "tuple[KeyRing, str] | None"]
"""Where a device's messages go now: its ring and the external AAD, or None (not now)."""


class _Sealer:
    """Seals due messages and marks them sent, for the devices ``route`` gives a ring and
    an external AAD, within ``budget`` bytes of envelopes (None: no limit)."""

    def __init__(
        self, session: Session, now: dt.datetime, route: Route, budget: int | None = None
    ) -> None:
        self.session = session
        self.now = now
        self.route = route
        self.budget = budget
        self.used = 0
        self.out: list[Outgoing] = []

    def _seal(self, device: Device | None, message: bytes, what: str) -> bool:
        """Seal ``message`` for ``device``; False if it gets nothing now (no ring, another
        channel) or the envelope does not fit in what is left of the budget."""
        route = self.route(device) if device is not None else None
        if device is None or route is None:
            return False
        ring, aad = route
        seq = take_downlink_seq(self.session, device.uid)
        payload = downlink.seal_downlink(ring, seq, message, aad)
        if self.budget is not None and self.used + len(payload) > self.budget:
            return False  # waits for the next response; its number stays unused (harmless)
        self.used += len(payload)
        self.out.append(Outgoing(aad, payload, what))
        return True

    def commands(self, due: Sequence[Command]) -> None:
        for command in due:
            device = self.session.get(Device, command.device_id)
            route = self.route(device) if device is not None else None
            if device is None or route is None:
                continue  # nothing now: it stays due
            # The arguments as sent depend on the key sealing them (an update's per-device
            # release MAC, ``update_args``): built here, never stored.
            version, secret = route[0].sealing_key()
            try:
                args = update_args.as_sent(
                    self.session, command.name, command.args, device.uid, version, secret
                )
                message = downlink.encode_command(command.id, command.name, args)
            except (ConfigError, update_args.UpdateArgsError) as exc:  # not the device's fault
                command.status, command.finished_at = "failed", self.now
                command.detail = exc.message[:200]
                continue
            if self._seal(device, message, "command %d" % command.id):
                command.status = "sent"
                command.sent_at = self.now
                command.send_count += 1

    def keys(self, due: Sequence[GatewayKeys], cipher: bindings.BindingCipher | None) -> None:
        if cipher is None:
            return
        for row in due:
            try:
                pages = bindings.messages(self.session, cipher, row)
            except bindings.BindingSecretError as exc:  # the KEK changed: nothing to send
                log.error("keys for device %d not sent: %s", row.device_id, exc.message)
                continue
            device = self.session.get(Device, row.device_id)
            what = "keys revision %d of device %d" % (row.revision, row.device_id)
            sealed = [
                self._seal(device, page, "%s (%d pages)" % (what, len(pages))) for page in pages
            ]
            if sealed and all(sealed):  # every page: else it stays due, the pages go again
                if row.sent_revision != row.revision:
                    row.send_count = 0
                row.sent_revision = row.revision
                row.sent_at = self.now
                row.send_count += 1

    def configs(self, due: Sequence[DeviceConfig]) -> None:
        for row in due:
            message = downlink.encode_config(row.revision, row.settings)
            what = "config revision %d of device %d" % (row.revision, row.device_id)
            if self._seal(self.session.get(Device, row.device_id), message, what):
                if row.sent_revision != row.revision:
                    row.send_count = 0
                row.sent_revision = row.revision
                row.sent_at = self.now
                row.send_count += 1


def prepare(
    session: Session,
    keys: KeySource,
    now: dt.datetime,
    policy: Policy | None = None,
    cipher: bindings.BindingCipher | None = None,
) -> list[Outgoing]:
    """Seal every due command, configuration and set of wearable bindings of the gateways
    served on their MQTT topic and mark them sent, in ``session``'s transaction; the caller
    commits, then publishes what is returned (module docstring). ``cipher`` opens the
    bindings' secrets (default: ``bindings.cipher_from(keys)``)."""
    policy = policy or Policy()
    routes: dict[int, tuple[KeyRing, str] | None] = {}

    def route(device: Device) -> tuple[KeyRing, str] | None:
        if device.id not in routes:
            found = gateway_ring(session, keys, device.uid)
            if found is None or found[1] in RESPONSE_CHANNELS:
                routes[device.id] = None
            else:
                routes[device.id] = (found[0], downlink.downlink_topic(device.uid))
        return routes[device.id]

    sealer = _Sealer(session, now, route)
    sealer.commands(_due_commands(session, now, policy))
    sealer.configs(_due_configs(session, now, policy))
    cipher = cipher or bindings.cipher_from(keys)
    if cipher is not None:
        sealer.keys(_due_keys(session, now, policy), cipher)
    return sealer.out


def prepare_for(
    session: Session,
    keys: KeySource,
    gateway: str,
    aad: str,
    now: dt.datetime,
    policy: Policy | None = None,
    budget: int | None = None,
    cipher: bindings.BindingCipher | None = None,
) -> list[Outgoing]:
    """``prepare`` for one gateway whatever its channel, sealed bound to ``aad`` (the
    resource its request went to), in at most ``budget`` bytes of envelopes: what the
    response to the batch it just posted carries. What does not fit stays due. The caller
    commits, then answers. Nothing for an unknown, revoked or never-heard gateway."""
    policy = policy or Policy()
    device = session.scalar(select(Device).where(Device.uid == gateway))
    if device is None:
        return []
    found = gateway_ring(session, keys, gateway)
    if found is None:
        return []
    ring = found[0]
    sealer = _Sealer(session, now, lambda _device: (ring, aad), budget)
    sealer.commands(_due_commands(session, now, policy, device.id))
    sealer.configs(_due_configs(session, now, policy, device.id))
    cipher = cipher or bindings.cipher_from(keys)
    if cipher is not None:
        sealer.keys(_due_keys(session, now, policy, device.id), cipher)
    return sealer.out


DEFAULT_RESPONSE_BUDGET = 8192
"""Bytes of downlink envelopes one CoAP response carries besides its acknowledgement: the
largest CONFIG (``downlink.MAX_MESSAGE_BYTES`` of plaintext, sealed) with room to spare.
The portable core's ``coap.CoapClient`` takes responses up to 16 KiB by default."""


class ResponseDownlinks:
    """What the CoAP resource calls after acknowledging a gateway's batch: that gateway's
    due messages, sealed bound to the resource, marked sent and committed (``prepare_for``
    in a transaction of its own). Thread-safe; called from a worker thread.

    ``budget``: at most this many bytes of envelopes per call (at least one whole CONFIG);
    ``clock``: the current UTC time; ``cipher``: opens wearable bindings' secrets (default:
    the key source's, ``bindings.cipher_from``)."""

    def __init__(
        self,
        database: Database,
        keys: KeySource,
        *,
        policy: Policy | None = None,
        budget: int = DEFAULT_RESPONSE_BUDGET,
        clock: Callable[[], dt.datetime] = utcnow,
        cipher: bindings.BindingCipher | None = None,
    ) -> None:
        if budget < downlink.MAX_MESSAGE_BYTES + 256:
            raise ValueError(
                "a response budget of %d bytes cannot hold a whole configuration (%d)"
                % (budget, downlink.MAX_MESSAGE_BYTES + 256)
            )
        self.database = database
        self.keys = keys
        self.policy = policy or Policy()
        self.budget = budget
        self.clock = clock
        self.cipher = cipher

    def __call__(self, gateway: str, aad: str) -> list[bytes]:
        """Seal, mark sent and commit ``gateway``'s due messages bound to ``aad``; their
        envelopes."""
        with self.database.sessions() as session:
            out = prepare_for(
                session,
                self.keys,
                gateway,
                aad,
                self.clock(),
                self.policy,
                self.budget,
                self.cipher,
            )
            session.commit()
        for item in out:
            log.debug("in a response to %s: %s", gateway, item.what)
        return [item.payload for item in out]
