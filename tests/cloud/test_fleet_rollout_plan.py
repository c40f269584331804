"""cloud.fleet.rollout_plan: waves, health gates, the automatic halt, the start rate.

Expected answers come from the rules in the module docstring, worked by hand in comments.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.fleet import rollout_plan as rp
from cloud.fleet.rollout_plan import Member, Settings, plan

T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
V = "1.5.0"


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def test_waves_are_cumulative_percentages_with_a_canary_of_at_least_one() -> None:
    # 40 devices, waves 5/25/50/100: ceil(2), ceil(10), 20, 40 -> 2, 8, 10, 20 devices.
    waves = rp.assign_waves(40, (5, 25, 50, 100))
    assert [waves.count(i) for i in range(4)] == [2, 8, 10, 20]
    assert waves == sorted(waves)
    # 3 devices: canary max(1, ceil(0.15)) = 1; 25%: ceil(0.75) = 1 (empty); 50%: 2; 100%: 3.
    assert rp.assign_waves(3, (5, 25, 50, 100)) == [0, 2, 3]


@given(st.integers(1, 500), st.sampled_from([(100,), (5, 100), (1, 10, 50, 100)]))
def test_every_device_has_a_wave_and_the_canary_is_never_empty(count, waves) -> None:
    assigned = rp.assign_waves(count, waves)
    assert len(assigned) == count and assigned[0] == 0 and assigned == sorted(assigned)


def test_the_order_spreads_and_is_stable() -> None:
    uids = ["gw-%03d" % n for n in range(100)]
    order = rp.order_devices(7, uids)
    assert sorted(order) == uids and order != uids
    assert rp.order_devices(7, list(reversed(uids))) == order
    assert rp.order_devices(8, uids) != order  # another rollout, another canary


def fleet(states: list[tuple[int, str]], **kw) -> list[Member]:
    """Members 1..n with (wave, state); updating ones started at T0."""
    return [
        Member(i + 1, wave, state, started_at=T0 if state != rp.WAITING else None, **kw)
        for i, (wave, state) in enumerate(states)
    ]


def test_the_canary_starts_first_and_the_next_wave_waits_for_its_health() -> None:
    members = fleet([(0, rp.WAITING), (1, rp.WAITING), (1, rp.WAITING)])
    step = plan(Settings(), rp.RUNNING, V, members, T0)
    assert (step.start, step.state) == ((1,), rp.RUNNING)
    # The canary is updating: wave 1 must wait.
    members[0] = Member(1, 0, rp.UPDATING, started_at=T0)
    assert plan(Settings(), rp.RUNNING, V, members, minutes(5)).start == ()
    # It reports done and runs the version: it succeeded, and wave 1 starts.
    members[0] = Member(1, 0, rp.UPDATING, started_at=T0, command_status="done", running=V)
    step = plan(Settings(), rp.RUNNING, V, members, minutes(6))
    assert step.finish == {1: (rp.SUCCEEDED, "runs 1.5.0")}
    assert step.start == (2, 3)


@pytest.mark.parametrize(
    ("member", "now", "outcome"),
    [
        (
            Member(1, 0, rp.UPDATING, T0, "failed"),
            1,
            (rp.FAILED, "the device reported the update failed"),
        ),
        (
            Member(1, 0, rp.UPDATING, T0, "refused"),
            1,
            (rp.FAILED, "the device reported the update refused"),
        ),
        (
            Member(1, 0, rp.UPDATING, T0, "timed_out"),
            1,
            (rp.FAILED, "the update command timed out"),
        ),
        (Member(1, 0, rp.UPDATING, T0, "done", "1.4.0"), 1, None),  # new version on its way
        (
            Member(1, 0, rp.UPDATING, T0, "done", "1.4.0"),
            30,
            (rp.FAILED, "reports running 1.4.0, not 1.5.0"),
        ),
        (Member(1, 0, rp.UPDATING, T0, "done", None), 29, None),  # done, version not heard yet
        (Member(1, 0, rp.UPDATING, T0, "accepted"), 29.9, None),
        (
            Member(1, 0, rp.UPDATING, T0, "accepted"),
            30,
            (rp.FAILED, "not back on 1.5.0 within 30 minutes"),
        ),
        (
            Member(1, 0, rp.UPDATING, T0, "sent"),
            30,
            (rp.FAILED, "not back on 1.5.0 within 30 minutes"),
        ),
    ],
)
def test_how_an_update_ends(member: Member, now: float, outcome) -> None:
    assert rp.judge(member, V, minutes(now), dt.timedelta(minutes=30)) == outcome


def test_failures_past_the_threshold_halt_the_rollout() -> None:
    # 10% and at least 2 failures: 1 failure in 4 finished is below min_failures;
    # 2 failures in 4 finished (50%) halts. Nothing starts once halted.
    settings = Settings(failure_percent=10, min_failures=2)
    members = [
        Member(1, 0, rp.SUCCEEDED),
        Member(2, 0, rp.SUCCEEDED),
        Member(3, 0, rp.FAILED),
        Member(4, 0, rp.UPDATING, T0, "failed"),
        Member(5, 1, rp.WAITING),
    ]
    step = plan(settings, rp.RUNNING, V, members, minutes(1))
    assert step.state == rp.HALTED and step.start == ()
    assert step.reason == "2 of 4 updated devices failed (threshold 10%)"
    one_failure = [*members[:3], Member(4, 0, rp.SUCCEEDED), members[4]]
    assert plan(settings, rp.RUNNING, V, one_failure, minutes(1)).start == (5,)


def test_a_resumed_rollout_forgives_the_failures_it_was_halted_for() -> None:
    settings = Settings(failure_percent=50, min_failures=1)
    members = [Member(1, 0, rp.FAILED), Member(2, 1, rp.WAITING), Member(3, 1, rp.WAITING)]
    assert plan(settings, rp.RUNNING, V, members, T0).state == rp.HALTED
    resumed = plan(settings, rp.RUNNING, V, members, T0, forgiven=1)
    assert (resumed.state, resumed.start) == (rp.RUNNING, (2, 3))


def test_starts_are_rate_limited_per_minute() -> None:
    settings = Settings(waves=(100,), max_starts_per_minute=3)
    members = [Member(i, 0, rp.WAITING) for i in range(1, 11)]
    assert plan(settings, rp.RUNNING, V, members, T0).start == (1, 2, 3)
    started = [Member(i, 0, rp.UPDATING, started_at=T0) for i in (1, 2, 3)] + members[3:]
    assert plan(settings, rp.RUNNING, V, started, minutes(0.5)).start == ()
    assert plan(settings, rp.RUNNING, V, started, minutes(1)).start == (4, 5, 6)


def test_a_rollout_completes_when_every_device_finished() -> None:
    members = [Member(1, 0, rp.SUCCEEDED), Member(2, 1, rp.SKIPPED)]
    assert plan(Settings(), rp.RUNNING, V, members, T0).state == rp.COMPLETED
    assert plan(Settings(), rp.CANCELLED, V, members, T0) == rp.Plan((), {}, rp.CANCELLED)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (Settings(waves=(5, 50)), "end at 100"),
        (Settings(waves=(50, 5, 100)), "grow"),
        (Settings(waves=(0, 100)), "from 1 to 100"),
        (Settings(health_minutes=0), "health_minutes"),
        (Settings(max_starts_per_minute=0), "max_starts_per_minute"),
    ],
)
def test_settings_problems_are_named(settings: Settings, problem: str) -> None:
    assert any(problem in p for p in settings.problems())
    assert Settings().problems() == []
