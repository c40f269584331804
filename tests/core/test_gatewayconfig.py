"""bankiot_core.gatewayconfig: the whole configuration a CONFIG downlink carries.

The expected values come from the table in the module docstring (the contract the cloud and
the gateways share) and from ``filterconfig``'s own table; the same checks run under real
MicroPython, where gateways run them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankiot_core.errors import ConfigError
from bankiot_core.filterconfig import load_filter_config
from bankiot_core.gatewayconfig import is_open, known_settings, load_gateway_config


def test_empty_configuration_takes_the_documented_defaults() -> None:
    gateway, filters = load_gateway_config({})
    assert gateway == {
        "uplink": "mqtt",
        "batch_max_readings": 64,
        "batch_max_bytes": 960,
        "batch_max_delay_ms": 30000,
        "health_interval_ms": 60000,
        "scan_interval_ms": 100,
        "scan_window_ms": 50,
        "opening_hours": None,
        "utc_offset_min": 0,
        "health_in_every_batch": None,
    }
    assert filters == load_filter_config({})


def test_filter_settings_go_to_the_filters_and_gateway_settings_stay() -> None:
    gateway, filters = load_gateway_config(
        {"uplink": "coap", "paired": ["AA:BB:CC:DD:EE:01"], "rate_per_min": 30}
    )
    assert gateway["uplink"] == "coap"
    assert filters["paired"] == (bytes.fromhex("aabbccddee01"),)
    assert filters["rate_per_min"] == 30


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"uplnk": "mqtt"}, "'uplnk'"),
        ({"uplink": "http"}, "'uplink'"),
        ({"batch_max_readings": 0}, "'batch_max_readings'"),
        ({"batch_max_readings": True}, "'batch_max_readings'"),
        ({"health_interval_ms": 999}, "'health_interval_ms'"),
        ({"scan_interval_ms": 50, "scan_window_ms": 60}, "'scan_window_ms'"),
        ({"paired": ["not an address"]}, "'paired'"),
        ({"presence_enter_dbm": -90, "presence_leave_dbm": -80}, "'presence_enter_dbm'"),
        (["uplink"], "map of settings"),
        ({"opening_hours": []}, "'opening_hours'"),
        ({"opening_hours": [[7, 540, 1020]]}, "'opening_hours'"),
        ({"opening_hours": [[0, 1020, 540]]}, "'opening_hours'"),
        ({"opening_hours": [[0, 540, 1441]]}, "'opening_hours'"),
        ({"opening_hours": [[0, 540]]}, "'opening_hours'"),
        ({"opening_hours": [[0, True, 600]]}, "'opening_hours'"),
        ({"opening_hours": "Mo-Fr 09:00-17:00"}, "'opening_hours'"),
        ({"opening_hours": [[0, 540, 1020]] * 29}, "'opening_hours'"),
        ({"utc_offset_min": 841}, "'utc_offset_min'"),
        ({"health_in_every_batch": 1}, "'health_in_every_batch'"),
        ({"batch_max_bytes": 511}, "'batch_max_bytes'"),
        ({"batch_max_bytes": 511, "health_in_every_batch": True}, "'batch_max_bytes'"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(settings: object, names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_gateway_config(settings)
    assert names in str(caught.value)
    assert "\n" not in str(caught.value)


def test_known_settings_lists_both_tables() -> None:
    names = known_settings()
    assert names == sorted(names)
    assert {"uplink", "scan_window_ms", "paired", "irks", "deadband"} <= set(names)
    assert {"opening_hours", "utc_offset_min", "health_in_every_batch"} <= set(names)


def test_small_batches_are_allowed_when_batches_carry_no_vitals() -> None:
    gateway, _ = load_gateway_config({"batch_max_bytes": 32, "health_in_every_batch": False})
    assert gateway["batch_max_bytes"] == 32 and gateway["health_in_every_batch"] is False


# A branch open Monday to Friday 9:00-12:30 and 13:30-17:00, Saturday 9:00-12:00, at UTC+1.
HOURS = [[d, 540, 750] for d in range(5)] + [[d, 810, 1020] for d in range(5)] + [[5, 540, 720]]
BRANCH = {"opening_hours": HOURS, "utc_offset_min": 60}
CET = timezone(timedelta(minutes=60))


def unix(*local: int) -> int:
    """Unix seconds of a local (UTC+1) date and time: datetime is the independent oracle."""
    return int(datetime(*local, tzinfo=CET).timestamp())  # type: ignore[misc]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # 2024-06-03 is a Monday (ISO 8601 calendar, checked by datetime).
        ((2024, 6, 3, 8, 59, 59), False),
        ((2024, 6, 3, 9, 0), True),
        ((2024, 6, 3, 12, 29, 59), True),
        ((2024, 6, 3, 12, 30), False),  # lunch: the close minute is outside
        ((2024, 6, 3, 13, 30), True),
        ((2024, 6, 7, 16, 59), True),  # Friday
        ((2024, 6, 8, 11, 0), True),  # Saturday morning
        ((2024, 6, 8, 13, 0), False),  # Saturday afternoon
        ((2024, 6, 9, 10, 0), False),  # Sunday
        ((2024, 6, 10, 9, 15), True),  # 8:15 UTC: local time counts
    ],
)
def test_opening_hours_are_local_weekdays_and_minutes(
    when: tuple[int, ...], expected: bool
) -> None:
    gateway, _ = load_gateway_config(BRANCH)
    assert is_open(gateway, unix(*when)) is expected


def test_the_calendar_the_cases_rely_on() -> None:
    assert [datetime(2024, 6, d).weekday() for d in (3, 7, 8, 9, 10)] == [0, 4, 5, 6, 0]


def test_without_opening_hours_a_branch_is_always_open() -> None:
    gateway, _ = load_gateway_config({})
    assert is_open(gateway, 0) and is_open(gateway, unix(2024, 6, 9, 3, 0))


@given(
    st.integers(min_value=0, max_value=2**34),
    st.integers(min_value=-720, max_value=840),
    st.integers(min_value=0, max_value=6),
    st.integers(min_value=0, max_value=1439),
)
def test_is_open_agrees_with_datetime(unix_s: int, offset: int, weekday: int, start: int) -> None:
    gateway, _ = load_gateway_config(
        {"opening_hours": [[weekday, start, start + 1]], "utc_offset_min": offset}
    )
    local = datetime.fromtimestamp(unix_s, UTC) + timedelta(minutes=offset)
    expected = local.weekday() == weekday and local.hour * 60 + local.minute == start
    assert is_open(gateway, unix_s) is expected


SCENARIO = """
from bankiot_core.gatewayconfig import is_open, load_gateway_config
from bankiot_core.errors import ConfigError
gateway, filters = load_gateway_config({"uplink": "coap", "scan_interval_ms": 200,
                                        "paired": ["AA:BB:CC:DD:EE:01"]})
out = [gateway["uplink"], gateway["scan_interval_ms"], gateway["batch_max_bytes"],
       [bytes(a).hex() for a in filters["paired"]]]
for bad in ({"uplink": 1}, {"scan_window_ms": 20000}, {"nope": 1},
            {"opening_hours": [[0, 600, 540]]}, {"health_in_every_batch": "yes"}):
    try:
        load_gateway_config(bad)
        out.append("accepted")
    except ConfigError as exc:
        out.append(str(exc).split(" must ")[0].split(" (")[0])
hours, _ = load_gateway_config({"opening_hours": %r, "utc_offset_min": 60})
out.append([is_open(hours, t) for t in %r])
print(repr(out))
"""


TIMES = [
    unix(2024, 6, 3, 8, 59),
    unix(2024, 6, 3, 9, 0),
    unix(2024, 6, 3, 12, 45),
    unix(2024, 6, 8, 11, 0),
    unix(2024, 6, 9, 10, 0),
]


def test_same_checks_under_micropython(micropython) -> None:
    result = micropython.run(SCENARIO % (HOURS, TIMES))
    assert result.stdout.strip() == repr(
        [
            "coap",
            200,
            960,
            ["aabbccddee01"],
            "gateway setting 'uplink'",
            "gateway setting 'scan_window_ms'",
            "unknown gateway setting 'nope'",
            "gateway setting 'opening_hours': a period is [weekday 0-6, open_min, close_min] "
            "with 0 <= open_min < close_min <= 1440, got [0, 600, 540]",
            "gateway setting 'health_in_every_batch'",
            [False, True, False, True, False],
        ]
    )
