"""Trial decisions for a software update on a board: pure, no I/O (``app.updates`` acts).

The same rules as the Raspberry Pi gateway's (``edge/update_plan.py``), in the board's
terms. After an update switches the release pointer (``/releases/current``) to a new
release, or the boot partition to a new ESP32 image, the new version runs on trial.
``decide(trial, event, running, run_ms, limits)`` returns a ``Step(trial, do, detail)``:
the shell saves ``step.trial`` (None: delete it) *before* doing what ``do`` says, so a
power cut in between repeats the step rather than losing it.

A board has no wall clock at start (NTP comes later, if at all), so time is counted per
run: ``run_ms`` is how long this start of the new version has been running; each start
gets ``limits.trial_ms``, and at most ``limits.max_starts`` starts.

``trial`` is a dict (saved as JSON): ``version`` the new release, ``previous`` the one it
replaced (None: the base install), ``command`` the ``update`` command to report,
``attempts`` starts of the new version so far, ``state`` ``TRIAL`` or ``ROLLED_BACK``,
``reason`` why it was rolled back, ``kind`` ``files`` or ``image``.

Events: ``START`` (the application starts; ``running`` is what it runs), ``TICK`` (time
passes), ``ACKED`` (the cloud acknowledged the batch with this run's ``running`` record).

Rules, in order:

- no trial: nothing;
- rolled back: if the new version still runs (the switch back did not happen), roll back
  again; at START of another version, report the update failed with the saved reason;
- the running version is not the new one: report failed, and point back at what runs;
- START: one more start; past ``max_starts`` starts, roll back;
- ACKED: report done;
- TICK with ``run_ms`` past ``trial_ms``: roll back.
"""

from collections import namedtuple

START = "start"
TICK = "tick"
ACKED = "acked"
EVENTS = (START, TICK, ACKED)

NOTHING = "nothing"
SAVE = "save"
ROLL_BACK = "roll_back"
REPORT_DONE = "report_done"
REPORT_FAILED = "report_failed"

TRIAL = "trial"
ROLLED_BACK = "rolled_back"

Limits = namedtuple("Limits", ("trial_ms", "max_starts"))
"""How long each start of a new version has to be acknowledged, and how many starts."""

DEFAULT_LIMITS = Limits(600000, 3)

Step = namedtuple("Step", ("trial", "do", "detail"))
"""What ``decide`` wants: the trial to save (None: none), what to do, a one-line detail."""


def new_trial(version, previous, command, kind="files"):
    """The trial saved just before switching to ``version`` for ``update`` ``command``."""
    return {
        "version": version,
        "previous": previous,
        "command": command,
        "attempts": 0,
        "state": TRIAL,
        "reason": "",
        "kind": kind,
    }


def _with(trial, **changes):
    out = dict(trial)
    out.update(changes)
    return out


def _roll_back(trial, reason):
    return Step(_with(trial, state=ROLLED_BACK, reason=reason), ROLL_BACK, reason)


def decide(trial, event, running, run_ms, limits=DEFAULT_LIMITS):
    """The next ``Step`` for ``trial`` on ``event`` (module docstring)."""
    if event not in EVENTS:
        raise ValueError("unknown trial event %r" % (event,))
    if trial is None:
        return Step(None, NOTHING, "")
    version = trial["version"]
    if trial["state"] == ROLLED_BACK:
        if running == version:
            return _roll_back(trial, trial["reason"])
        if event == START:
            return Step(None, REPORT_FAILED, "rolled back: %s" % trial["reason"])
        return Step(trial, NOTHING, "")
    if running != version:
        return Step(
            None,
            REPORT_FAILED,
            "installed %s, but the board runs %s after the restart"
            % (version, running or "the base install"),
        )
    if event == START:
        attempts = trial["attempts"] + 1
        if attempts > limits.max_starts:
            return _roll_back(
                trial, "%s started %d times without reporting healthy" % (version, attempts - 1)
            )
        return Step(_with(trial, attempts=attempts), SAVE, "")
    if event == ACKED:
        return Step(None, REPORT_DONE, "running %s" % version)
    if run_ms >= limits.trial_ms:
        return _roll_back(
            trial,
            "%s was not healthy within %d s (no acknowledged running record)"
            % (version, limits.trial_ms // 1000),
        )
    return Step(trial, NOTHING, "")
