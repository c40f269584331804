"""Runs first at every reset: pick the release to run, count this start for the crash-loop
check (``app.crashloop``).

The release: ``app.releases.select`` (from the base install, which a release never
replaces) puts ``/releases/<version>`` first on ``sys.path`` when ``/releases/current``
names one, and rolls back a trial that has had all its starts. Nothing here may stop the
board from reaching the REPL: an error is printed and ignored. ``main.py`` decides what to
start.
"""

try:
    from app.releases import select

    select()
except Exception as exc:  # boot.py must never keep the REPL away
    print("bankiot: release selection failed: %r" % (exc,))

try:
    from app.crashloop import CrashCounter

    CrashCounter().boot()
except Exception as exc:  # boot.py must never keep the REPL away
    print("bankiot: boot count failed: %r" % (exc,))
