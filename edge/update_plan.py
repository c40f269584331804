"""Trial decisions for a software update on the Raspberry Pi gateway: pure, no I/O.

After an update switches ``releases/current`` to a new release, the new version runs on
trial. ``decide(trial, event, running, now, limits)`` says what to do next; the shell
(``edge.updates``) persists the ``Trial`` it returns (None: delete the file) *before* doing
what ``Step.do`` says, so a power cut in between repeats the step rather than losing it.

Versions are release folder names (``releases/<version>``); ``None`` means "no release:
the package installed with pip" (the base install, which runs when ``current`` is absent).

Events:

- ``START``: the gateway process starts; ``running`` is the release it runs.
- ``TICK``: time passes (the shell checks about once a second).
- ``ACKED``: the cloud acknowledged the batch that carried this run's ``running`` record.

Rules, in order (the table tests in ``tests/edge/test_updates.py`` mirror them):

- no trial: nothing to do;
- a trial that was rolled back: the version now running reports the update failed (the
  reason saved with the trial); if the new version is still running (the switch back did
  not happen), roll back again;
- a trial whose process runs another version than the new one (the service does not start
  from ``current``, or the switch never happened): report failed, and make ``current`` the
  running version again;
- START of the new version: one more start; past ``limits.max_starts`` starts without
  becoming healthy, or past the deadline, roll back;
- TICK past the deadline (``started_at + limits.trial_s``): roll back;
- ACKED: the trial is over: report the update done.

Before the service starts the new version, its ``ExecStartPre`` guard
(``edge.updates.guard_start``) applies the START rules without counting the start (the
gateway counts it), and rolls back a release that cannot even be imported (``broken``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

START = "start"
TICK = "tick"
ACKED = "acked"
EVENTS = (START, TICK, ACKED)

# What the shell does (``Step.do``).
NOTHING = "nothing"
SAVE = "save"  # only persist the new trial state
ROLL_BACK = "roll_back"  # persist, point ``current`` at ``previous``, restart
REPORT_DONE = "report_done"  # delete the trial, report the command done
REPORT_FAILED = "report_failed"  # delete the trial, make ``current`` the running version, report

TRIAL = "trial"
ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class Limits:
    """How long a new version has to become healthy, and how many starts."""

    trial_s: int = 600
    max_starts: int = 3


@dataclass(frozen=True)
class Trial:
    """``releases/trial.json``: the update under trial.

    ``version``: the new release; ``previous``: the release it replaced (None: the base
    install); ``command_id``: the ``update`` command to report; ``started_at``: Unix
    seconds of the switch; ``attempts``: starts of the new version so far; ``state``:
    ``TRIAL`` or ``ROLLED_BACK``; ``reason``: why it was rolled back."""

    version: str
    previous: str | None
    command_id: int
    started_at: float
    attempts: int = 0
    state: str = TRIAL
    reason: str = ""


@dataclass(frozen=True)
class Step:
    """What ``decide`` wants: the trial to persist (None: none any more), what to do, and
    the one-line detail for a report or the log."""

    trial: Trial | None
    do: str
    detail: str = ""


def _minutes(seconds: int) -> str:
    minutes = seconds / 60
    return "%g minute%s" % (minutes, "" if minutes == 1 else "s")


def _roll_back(trial: Trial, reason: str) -> Step:
    rolled = dataclasses.replace(trial, state=ROLLED_BACK, reason=reason)
    return Step(rolled, ROLL_BACK, reason)


def broken(trial: Trial, reason: str) -> Step:
    """Roll ``trial`` back because its release cannot start at all (``reason``: one line)."""
    return _roll_back(trial, reason)


def decide(
    trial: Trial | None, event: str, running: str | None, now: float, limits: Limits
) -> Step:
    """The next step for ``trial`` on ``event`` (module docstring); ``running``: the
    release this process runs, ``now``: Unix seconds."""
    if event not in EVENTS:
        raise ValueError("unknown trial event %r" % (event,))
    if trial is None:
        return Step(None, NOTHING)
    if trial.state == ROLLED_BACK:
        if running == trial.version:
            return _roll_back(trial, trial.reason)
        if event == START:
            return Step(None, REPORT_FAILED, "rolled back: %s" % trial.reason)
        return Step(trial, NOTHING)
    if running != trial.version:
        return Step(
            None,
            REPORT_FAILED,
            "installed %s, but the gateway runs %s after the restart: is the service "
            "started from releases/current?" % (trial.version, running or "the base install"),
        )
    late = now - trial.started_at >= limits.trial_s
    if event == START:
        attempts = trial.attempts + 1
        if attempts > limits.max_starts:
            return _roll_back(
                trial,
                "%s started %d times without reporting healthy" % (trial.version, trial.attempts),
            )
        if late:
            return _roll_back(trial, _late(trial, limits))
        return Step(dataclasses.replace(trial, attempts=attempts), SAVE)
    if event == ACKED:
        return Step(None, REPORT_DONE, "running %s" % trial.version)
    if late:
        return _roll_back(trial, _late(trial, limits))
    return Step(trial, NOTHING)


def _late(trial: Trial, limits: Limits) -> str:
    return "%s was not healthy within %s (no acknowledged running record)" % (
        trial.version,
        _minutes(limits.trial_s),
    )
