"""bankiot_core.backoff: exponential backoff with full jitter, and the reconnect decision.

The story in ``backoff_scenario.py`` runs on CPython and under real MicroPython and must give
what the definition predicts (``EXPECTED``, derived in its comments: delay =
int(r * min(cap, base * 2**n))). Hypothesis checks the bounds for any randomness.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankiot_core.backoff import ATTEMPTING, STOPPED, UP, WAITING, Backoff, Reconnector
from bankiot_core.errors import ConfigError, LocalError
from bankiot_core.ticks import MAX_DURATION_MS
from tests.core import backoff_scenario as scenario

SCENARIO_SOURCE = Path(scenario.__file__).read_text()


def test_scenario_on_cpython() -> None:
    assert json.loads(json.dumps(scenario.run())) == scenario.EXPECTED


@pytest.mark.micropython
def test_scenario_under_micropython(micropython) -> None:
    run = micropython.run(
        "import json, backoff_scenario\nprint(json.dumps(backoff_scenario.run()))",
        files={"/lib/backoff_scenario.py": SCENARIO_SOURCE},
    ).check()
    assert json.loads(run.stdout) == scenario.EXPECTED


def test_ceilings_double_up_to_the_cap_and_reset() -> None:
    backoff = Backoff(base_ms=100, cap_ms=1000)
    ceilings = []
    for _ in range(7):
        ceilings.append(backoff.ceiling())
        backoff.next_delay(0.5)
    assert ceilings == [100, 200, 400, 800, 1000, 1000, 1000]
    assert backoff.attempts == 7
    backoff.reset()
    assert (backoff.ceiling(), backoff.attempts) == (100, 0)
    assert backoff.next_delay(0.5) == 50


def test_a_long_outage_keeps_the_ceiling_a_small_int() -> None:
    backoff = Backoff(base_ms=1, cap_ms=MAX_DURATION_MS)
    for _ in range(10000):
        backoff.next_delay(0.0)
    assert backoff.ceiling() == MAX_DURATION_MS
    assert backoff.next_delay(0.5) == MAX_DURATION_MS // 2


@given(
    st.integers(1, 10000),
    st.integers(0, 100000),
    st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=30),
)
def test_every_delay_is_full_jitter_under_the_ceiling(
    base: int, extra: int, rs: list[float]
) -> None:
    backoff = Backoff(base_ms=base, cap_ms=base + extra)
    for r in rs:
        ceiling = backoff.ceiling()
        assert ceiling == min(base + extra, base * 2**backoff.attempts)
        assert backoff.next_delay(r) == min(int(r * ceiling), ceiling - 1)


def test_randomness_as_a_function_or_a_number() -> None:
    draws = [random.Random(7).random(), 0.5, 0.25]
    ceilings = (100, 200, 400)
    expected = [int(r * c) for r, c in zip(draws, ceilings, strict=True)]
    by_number = Backoff(100, 10000)
    assert [by_number.next_delay(r) for r in draws] == expected
    source = iter(draws)
    by_function = Backoff(100, 10000)
    assert [by_function.next_delay(lambda: next(source)) for _ in draws] == expected


@pytest.mark.parametrize("bad", [1.0, -0.01, 2, "0.5", None, lambda: 1.5])
def test_randomness_outside_zero_to_one_is_refused(bad: object) -> None:
    backoff = Backoff()
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        backoff.next_delay(bad)
    assert backoff.attempts == 0


@pytest.mark.parametrize(
    ("base", "cap"), [(0, 100), (200, 100), (1, MAX_DURATION_MS + 1), (1.5, 100), (1, "9")]
)
def test_bad_settings(base: object, cap: object) -> None:
    with pytest.raises(ConfigError):
        Backoff(base_ms=base, cap_ms=cap)  # type: ignore[arg-type]


def test_reconnector_transitions_follow_the_table() -> None:
    rc = Reconnector(Backoff(10, 100), random=lambda: 0.5)
    assert rc.state == WAITING
    with pytest.raises(LocalError, match="cannot succeeded in state WAITING"):
        rc.succeeded()
    with pytest.raises(LocalError, match="cannot lost in state WAITING"):
        rc.lost(0)
    assert rc.due(0)
    assert rc.state == ATTEMPTING
    assert rc.wait_ms(0) is None
    assert not rc.due(0)  # already attempting: not due twice
    with pytest.raises(LocalError):
        rc.lost(0)
    rc.succeeded()
    assert rc.state == UP
    assert not rc.due(10**6)
    rc.lost(5)
    assert (rc.state, rc.delay_ms, rc.wait_ms(5), rc.wait_ms(9), rc.wait_ms(10)) == (
        WAITING,
        5,
        5,
        1,
        0,
    )
    rc.stop()
    assert rc.state == STOPPED
    assert not rc.due(10**6)
    with pytest.raises(LocalError):
        rc.failed(0)


def test_reconnector_needs_randomness_for_a_delay() -> None:
    rc = Reconnector()
    assert rc.due(0)
    with pytest.raises(ConfigError, match="randomness"):
        rc.failed(0)
    rc = Reconnector()
    rc.due(0)
    rc.failed(0, r=0.5)  # one delay's randomness given by the caller
    assert rc.delay_ms == 500  # default base 1000 ms
    assert rc.backoff.ceiling() == 2000
