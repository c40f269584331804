"""Runs after ``boot.py``: start the application (``app.main.start``).

Whatever happens, control comes back here and then to the REPL: an exception is printed,
never swallowed silently. A crash that repeats is caught by the crash-loop counter, which
puts the board in safe mode at the next starts; a release on trial that cannot start is
rolled back at once (``app.releases.failed``) and the board resets into the previous one.
"""

try:
    from app.main import start

    start()
except KeyboardInterrupt:
    print("bankiot: stopped (Ctrl-C); REPL")
except Exception as exc:  # report and fall through to the REPL
    import sys

    print("bankiot: crashed; REPL")
    sys.print_exception(exc)  # type: ignore[attr-defined]
    try:
        # The loader's own copy (the base install), not the release that just failed.
        path = list(sys.path)
        sys.path[:] = [entry for entry in path if not entry.startswith("/releases/")]
        for name in list(sys.modules):
            if name == "app" or name.startswith("app."):
                del sys.modules[name]
        from app.releases import failed

        if failed(exc, path):
            import machine

            print("bankiot: the new release failed to start: rolled back; resetting")
            machine.reset()
    except ImportError as error:  # not even the loader's module: the REPL it is
        print("bankiot: cannot roll back: %r" % (error,))
