"""Start the board: not provisioned, safe mode, gateway or radio; then run the loop.

``start()`` is what ``main.py`` calls. In order:

1. **Safe mode** when the crash-loop counter (``crashloop``, counted by ``boot.py``) has
   reached its limit, or the board's button is held: nothing starts (no watchdog, no radio,
   no network), the LED stays on, and the REPL is the technician's. ``app.main.clear()``
   then a reset leaves safe mode.
2. **Radio mode** when ``/config/board.json`` says so: the scanner and the UART streamer.
3. **Not provisioned** when the identity or WiFi files are missing: it says so on the
   REPL and stops (the LED stays off). A file that is there but wrong is named likewise.
4. **Gateway**: ``Runner`` runs the tasks on asyncio and feeds the watchdog.

The tasks of ``Runner`` (each checks in with the ``watchdog.Supervisor``):

- ``radio``: drain the scan ring into the engine every ``radio_ms``;
- ``ticker``: poll the engine when it is due (at least every second);
- ``network``: WiFi, then ``GatewayApp.network_turn``: the clock by NTP (before TLS),
  the uplinks' ``step``, a piece of an update under way (``updates``);
- the main loop itself: every ``beat_ms``, ``Supervisor.check`` feeds the ``machine.WDT``
  only if all three checked in recently, blinks the LED, and after ``HEALTHY_AFTER_MS`` of
  a healthy run sets the crash-loop count back to 0.
"""

import asyncio

from app import board as boards
from app import config, crashloop
from app.watchdog import Supervisor
from bankiot_core.errors import ConfigError
from bankiot_core.ticks import elapsed


class Runner:
    """The gateway's tasks on asyncio (module docstring).

    ``app``: a ``GatewayApp``; ``wdt``: a started ``machine.WDT`` (or None); ``stall_ms``:
    how long a task may go without checking in before the watchdog goes hungry; ``led``:
    a ``board.Led`` or None; ``counter``: the ``CrashCounter``; ``sleep_ms``: how tasks
    wait (``asyncio.sleep_ms``; tests pass one that follows their clock).
    """

    def __init__(
        self, app, wdt, stall_ms, led=None, counter=None, radio_ms=20, beat_ms=1000, sleep_ms=None
    ):
        self.app = app
        self.clock = app.clock
        self.supervisor = Supervisor(wdt, stall_ms)
        self.led = led
        self.counter = counter
        self.radio_ms = radio_ms
        self.beat_ms = beat_ms
        self.running = True
        self.declared_healthy = False
        self._healthy_since = None
        self.errors = 0
        self.last_error = None
        self.sleep_ms = sleep_ms if sleep_ms is not None else asyncio.sleep_ms

    def stop(self):
        """End every task at its next turn."""
        self.running = False

    async def radio(self, index):
        app = self.app
        while self.running:
            now = self.clock()
            app.drain(now)
            self.supervisor.alive(index, now)
            await self.sleep_ms(self.radio_ms)

    async def ticker(self, index):
        app = self.app
        while self.running:
            now = self.clock()
            wait = app.tick(now)
            self.supervisor.alive(index, now)
            await self.sleep_ms(wait if wait > 10 else 10)

    async def network(self, index):
        app = self.app
        while self.running:
            now = self.clock()
            wait = 100
            if app.wifi is None or app.wifi.step(now):
                wait = app.network_turn(now)  # clock, uplinks, a piece of an update
            elif app.uplinks is not None:
                app.uplinks.close()
            if app.reboot_requested:
                self.running = False
            self.supervisor.alive(index, now)
            await self.sleep_ms(wait if 10 < wait < 100 else (10 if wait <= 10 else 100))

    def beat(self, now_ms):
        """One turn of the main loop: feed the watchdog if all is well; True if fed."""
        fed = self.supervisor.check(now_ms)
        if fed:
            if self.led is not None:
                self.led.toggle()
            if self._healthy_since is None:
                self._healthy_since = now_ms
            elif not self.declared_healthy and (
                elapsed(now_ms, self._healthy_since) >= crashloop.HEALTHY_AFTER_MS
            ):
                self.declared_healthy = True
                if self.counter is not None:
                    self.counter.healthy()
        else:
            self._healthy_since = None
        return fed

    async def run(self, tasks=None):
        """Start the tasks and run the main loop until ``stop``; returns when all ended.
        ``tasks``: ``(name, coroutine function taking its supervisor index)`` pairs, by
        default radio, ticker and network."""
        now = self.clock()
        self.app.start(now)
        if tasks is None:
            tasks = (("radio", self.radio), ("ticker", self.ticker), ("network", self.network))
        running = []
        for name, maker in tasks:
            index = self.supervisor.register(name, now)
            running.append(asyncio.create_task(self._guard(maker, index)))
        while self.running:
            self.beat(self.clock())
            await self.sleep_ms(self.beat_ms)
        for task in running:
            task.cancel()
        self.app.shutdown()

    async def _guard(self, maker, index):
        # A task that raises stops checking in: the watchdog goes hungry and resets the
        # board, which the crash-loop counter sees. The error is printed for the REPL.
        try:
            await maker(index)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # anything that kills a task is reported
            self.errors += 1
            self.last_error = "%s: %s" % (type(exc).__name__, exc)
            print("bankiot: task %s failed: %s" % (self.supervisor.names[index], self.last_error))


def decide(counter, button_held, mode_reader=config.load_mode):
    """What to start: ``safe``, ``radio`` or ``gateway`` (provisioning is checked later)."""
    if counter.safe_mode(button_held):
        return "safe"
    try:
        return mode_reader()
    except ConfigError as exc:
        print("bankiot: %s" % exc)
        return "gateway"


def build_gateway(board, identity, wifi_config, modules, clock, random):
    """A ``GatewayApp`` and its parts for ``identity``; ``modules`` maps ``bluetooth``,
    ``network``, ``socket``, ``ssl`` and ``machine`` to the modules to use, and optionally
    ``ntptime`` (the clock before TLS) and ``esp32`` (firmware images)."""
    import random as _random

    from app.coaplink import CoapLink
    from app.gateway import GatewayApp, open_engine
    from app.mqttlink import MqttLink
    from app.ring import AdvRing
    from app.scanner import Scanner
    from app.uplinks import Uplinks
    from app.wifi import WifiLink

    engine = open_engine(identity)
    ring = AdvRing()
    scanner = Scanner(modules["bluetooth"].BLE(), ring)
    links = {}
    endpoint = identity.endpoints.get("mqtt")
    if endpoint is not None:
        links["mqtt"] = MqttLink(
            identity.uid,
            endpoint.host,
            endpoint.port,
            modules["socket"],
            modules.get("ssl"),
            identity.tls,
            timeout_ms=board.LINK_TIMEOUT_MS,
        )
    endpoint = identity.endpoints.get("coap")
    if endpoint is not None:
        links["coap"] = CoapLink(
            endpoint.host, endpoint.port, modules["socket"], _random.getrandbits
        )
    wifi = None
    if wifi_config is not None:
        wifi = WifiLink(modules["network"], wifi_config.ssid, wifi_config.key, random)
    machine = modules["machine"]
    app = GatewayApp(engine, ring, scanner, clock, None, wifi, machine.reset_cause())
    if links:
        app.uplinks = Uplinks(engine, links, app.on_downlink, random, engine.options["uplink"])
    ntptime = modules.get("ntptime")
    if ntptime is not None:
        import time

        from app.wallclock import WallClock

        app.wall = WallClock(ntptime, time, random)
    app.needs_clock = identity.tls is not None and engine.options["uplink"] == "mqtt"
    from app.updates import build_updater

    app.updater = build_updater(board, identity, modules, clock)
    return app


def _modules():
    import socket
    import ssl

    import bluetooth
    import machine
    import network

    modules = {
        "bluetooth": bluetooth,
        "machine": machine,
        "network": network,
        "socket": socket,
        "ssl": ssl,
    }
    for name in ("ntptime", "esp32"):  # not on every board (no esp32 on a Pico W)
        try:
            modules[name] = __import__(name)
        except ImportError:
            continue
    return modules


def start():
    """Boot the board (module docstring). Returns when it stops; the REPL follows."""
    import random
    import time

    import machine

    board = boards.current()
    counter = crashloop.CrashCounter()
    led = boards.Led(board, machine)
    what = decide(counter, boards.button_held(board, machine))
    if what == "safe":
        led.on()
        print(
            "bankiot: SAFE MODE after %d starts without a healthy run: nothing started, the "
            "REPL is yours. import app.main; app.main.clear() and reset to leave it."
            % counter.count()
        )
        return
    if what == "radio":
        _start_radio(board, machine, time, led)
        return
    try:
        identity = config.load_identity()
        wifi = config.load_wifi()
    except config.NotProvisioned as exc:
        print("bankiot: %s" % exc)
        return
    except ConfigError as exc:
        print("bankiot: configuration refused: %s" % exc)
        return
    app = build_gateway(board, identity, wifi, _modules(), time.ticks_ms, random.random)
    wdt = machine.WDT(timeout=boards.wdt_timeout(board))
    runner = Runner(app, wdt, boards.wdt_timeout(board) // 2, led, counter)
    print("bankiot: gateway %s running (software %s)" % (identity.uid, app.engine.software))
    asyncio.run(runner.run())
    if app.reboot_requested:
        machine.reset()


def _start_radio(board, machine, time, led):
    import bluetooth

    from app.gateway import SOFTWARE
    from app.radiomode import RadioStreamer
    from app.ring import AdvRing
    from app.scanner import Scanner

    ring = AdvRing()
    scanner = Scanner(bluetooth.BLE(), ring)
    uart = machine.UART(board.UART_ID, baudrate=board.UART_BAUD, tx=board.UART_TX, rx=board.UART_RX)
    streamer = RadioStreamer(uart, ring, SOFTWARE)
    wdt = machine.WDT(timeout=boards.wdt_timeout(board))
    scanner.start(time.ticks_ms())
    print("bankiot: radio mode, streaming on UART %d" % board.UART_ID)

    async def loop():
        turns = 0
        while True:
            now = time.ticks_ms()
            streamer.pump(now)
            scanner.check(now)
            wdt.feed()  # this loop is the only task: it turning is the health check
            turns += 1
            if turns % 5 == 0:  # a fast blink (5 Hz): radio mode
                led.toggle()
            await asyncio.sleep_ms(20)

    asyncio.run(loop())


def clear():
    """Leave safe mode at the next reset (the technician calls it from the REPL)."""
    crashloop.CrashCounter().clear()
    print("bankiot: crash count cleared; reset the board to start normally")
