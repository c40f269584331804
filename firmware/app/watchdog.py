"""The hardware watchdog, fed only while the main loop and every task in it are healthy.

Each task of the application registers (``register``) and checks in (``alive``) every time
it gets round; the main loop calls ``check`` about once a second, and only if every task
checked in within ``stall_ms`` does it feed the ``machine.WDT``. A task that hangs (a
blocking socket, a loop that never yields) therefore starves the watchdog and the board
resets, which the crash-loop counter sees. A feed from anywhere else would hide exactly the
failures the watchdog exists for.
"""

from bankiot_core.ticks import elapsed


class Supervisor:
    """Feeds ``wdt`` (a ``machine.WDT``, or None before it is started) while all tasks live."""

    def __init__(self, wdt, stall_ms):
        self.wdt = wdt
        self.stall_ms = stall_ms
        self.names = []
        self._seen = []
        self.feeds = 0
        self.starved = 0
        self.stalled = None  # the name of the first task that stalled, at the last check

    def register(self, name, now_ms):
        """A new task, alive as of ``now_ms``; returns its index for ``alive``."""
        self.names.append(name)
        self._seen.append(now_ms)
        return len(self.names) - 1

    def alive(self, index, now_ms):
        """Task ``index`` got round at ``now_ms``."""
        self._seen[index] = now_ms

    def check(self, now_ms):
        """Feed the watchdog if every task checked in within ``stall_ms``; True if fed."""
        for i in range(len(self._seen)):
            if elapsed(now_ms, self._seen[i]) > self.stall_ms:
                self.stalled = self.names[i]
                self.starved += 1
                return False
        self.stalled = None
        if self.wdt is not None:
            self.wdt.feed()
        self.feeds += 1
        return True
