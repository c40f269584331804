"""Staged rollouts, the decisions: which devices update when, and when to stop. Pure.

A rollout takes one release to the devices of its target in waves: a canary wave first
(``waves[0]`` percent of the devices, at least one), then the next waves (cumulative
percentages ending at 100). A wave starts only when every device of the waves before it
has finished and the rollout is healthy: the health gate. Within a wave, devices start at
most ``max_starts_per_minute`` a minute, so a branch network does not reboot and
reconnect all at once (a reconnect storm on the broker).

A device's update succeeds when the device reports the update command done *and* reports
running the release's version (``batch.Running``), within ``health_minutes`` of its start:
it came back, it is uplinking, it runs what it was given. It fails when the device reports
the command failed or refused (it rolled itself back: the device keeps its old version
when the new one does not come up healthy), or when ``health_minutes`` pass without
success (still reporting another version after saying done, or not heard from).

The rollout halts by itself when failures reach ``failure_percent`` of the devices finished
so far (and at least ``min_failures``): no device starts any more; those under way finish.
An operator may resume a halted rollout (a wrong threshold, a fixed network): the failures
so far are then forgiven, and the threshold counts from there. Or cancel it.

Which devices form the canary is decided once, at creation: ordered by a hash of the
rollout id and the device uid, so the canary is a spread of branches, not the first
branch's gateways, and the same rollout always orders the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Member states.
WAITING = "waiting"
UPDATING = "updating"
SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"  # already runs the release's version
MEMBER_STATES = (WAITING, UPDATING, SUCCEEDED, FAILED, SKIPPED)
MEMBER_DONE = (SUCCEEDED, FAILED, SKIPPED)

# Rollout states.
RUNNING = "running"
HALTED = "halted"
COMPLETED = "completed"
CANCELLED = "cancelled"
ROLLOUT_STATES = (RUNNING, HALTED, COMPLETED, CANCELLED)

DEFAULT_WAVES = (5, 25, 50, 100)


@dataclass(frozen=True)
class Settings:
    """How a rollout proceeds (module docstring)."""

    waves: tuple[int, ...] = DEFAULT_WAVES
    health_minutes: int = 30
    failure_percent: int = 10
    min_failures: int = 1
    max_starts_per_minute: int = 10

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty if nothing)."""
        out = []
        if not self.waves or self.waves[-1] != 100:
            out.append("waves must end at 100 (percent of the devices)")
        if any(not 0 < w <= 100 for w in self.waves):
            out.append("every wave is a percentage from 1 to 100")
        if list(self.waves) != sorted(set(self.waves)):
            out.append("waves must grow (cumulative percentages)")
        if not 1 <= self.health_minutes <= 7 * 24 * 60:
            out.append("health_minutes must be from 1 to 10080")
        if not 0 <= self.failure_percent <= 100:
            out.append("failure_percent must be from 0 to 100")
        if self.min_failures < 1:
            out.append("min_failures must be at least 1")
        if not 1 <= self.max_starts_per_minute <= 10000:
            out.append("max_starts_per_minute must be from 1 to 10000")
        return out


def order_devices(rollout_id: int, uids: Sequence[str]) -> list[str]:
    """``uids`` in the rollout's order (module docstring)."""

    def rank(uid: str) -> bytes:
        return hashlib.sha256(("%d/%s" % (rollout_id, uid)).encode()).digest()

    return sorted(uids, key=rank)


def assign_waves(count: int, waves: Sequence[int]) -> list[int]:
    """The wave of each of ``count`` devices in rollout order: wave i holds the devices up to
    ``ceil(count * waves[i] / 100)`` (the canary at least one); waves may be empty when the
    fleet is small."""
    out = []
    for position in range(count):
        for index, percent in enumerate(waves):
            if position < max(1, math.ceil(count * percent / 100)):
                out.append(index)
                break
    return out


@dataclass(frozen=True)
class Member:
    """What the planner knows of one device in a rollout."""

    device_id: int
    wave: int
    state: str
    started_at: dt.datetime | None = None
    command_status: str | None = None  # of its update command
    running: str | None = None  # the version it reports running (latest)


@dataclass(frozen=True)
class Plan:
    """What to do now: devices to start, members' new states (device id -> state, reason),
    the rollout's new state, and why (for the audit log and the operator)."""

    start: tuple[int, ...]
    finish: dict[int, tuple[str, str]]
    state: str
    reason: str = ""


def judge(
    member: Member, version: str, now: dt.datetime, health: dt.timedelta
) -> tuple[str, str] | None:
    """An updating member's outcome, ``(state, reason)``, or None while it is under way."""
    status = member.command_status
    if status in ("failed", "refused"):
        return FAILED, "the device reported the update %s" % status
    if status in ("timed_out", "cancelled"):
        return FAILED, "the update command %s" % status.replace("_", " ")
    if status == "done" and member.running == version:
        return SUCCEEDED, "runs %s" % version
    # Done but still another version: its report of the new one may be on its way (results
    # travel urgent, running records routine); only the health window decides.
    if member.started_at is not None and now - member.started_at >= health:
        if status == "done" and member.running is not None:
            return FAILED, "reports running %s, not %s" % (member.running, version)
        return FAILED, "not back on %s within %d minutes" % (version, health.total_seconds() // 60)
    return None


def plan(
    settings: Settings,
    state: str,
    version: str,
    members: Sequence[Member],
    now: dt.datetime,
    forgiven: int = 0,
) -> Plan:
    """The next step of a rollout in ``state`` (module docstring). ``forgiven``: failures
    an operator accepted when resuming a halted rollout (they no longer count towards the
    threshold; later ones do)."""
    if state in (COMPLETED, CANCELLED):
        return Plan((), {}, state)
    health = dt.timedelta(minutes=settings.health_minutes)
    finish: dict[int, tuple[str, str]] = {}
    current: dict[int, str] = {}
    for member in members:
        outcome = judge(member, version, now, health) if member.state == UPDATING else None
        if outcome is not None:
            finish[member.device_id] = outcome
        current[member.device_id] = outcome[0] if outcome else member.state
    failed = sum(1 for s in current.values() if s == FAILED) - forgiven
    finished = sum(1 for s in current.values() if s in (SUCCEEDED, FAILED)) - forgiven
    reason = ""
    if (
        state == RUNNING
        and failed >= settings.min_failures
        and (failed * 100 >= settings.failure_percent * max(finished, 1))
    ):
        state = HALTED
        reason = "%d of %d updated devices failed (threshold %d%%)" % (
            failed,
            finished,
            settings.failure_percent,
        )
    if all(s in MEMBER_DONE for s in current.values()):
        if state == RUNNING:
            return Plan((), finish, COMPLETED, "every device finished")
        return Plan((), finish, state, reason)
    if state != RUNNING:
        return Plan((), finish, state, reason)
    # The open wave: the first one with a device not done. It starts only once every
    # earlier wave is done (true by construction: it is the first not done).
    waves = sorted({m.wave for m in members})
    open_wave = next(
        w
        for w in waves
        if any(current[m.device_id] not in MEMBER_DONE for m in members if m.wave == w)
    )
    recent = sum(
        1
        for m in members
        if m.started_at is not None and now - m.started_at < dt.timedelta(minutes=1)
    )
    room = max(0, settings.max_starts_per_minute - recent)
    start = tuple(
        m.device_id for m in members if m.wave == open_wave and current[m.device_id] == WAITING
    )[:room]
    return Plan(start, finish, RUNNING)
