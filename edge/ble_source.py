"""The Raspberry Pi's own Bluetooth adapter as a radio source, through bleak.

``BleSource(adapter, on_heard).run(stop)`` scans until ``stop`` (an ``asyncio.Event``) is
set, and hands every advertisement on as an ``edge.heard.Heard`` whose ``adv`` is the core's
``advdata.Advertisement``, built from bleak's maps by ``advdata.advertisement_from_bleak``.
It knows nothing of the gateway engine.

Scanning mode: passive when asked (the default) and the platform allows it, active
otherwise. Passive scanning sends no scan requests, so the adapter stays quiet and devices
spend no battery answering; on BlueZ it needs the advertisement monitor API (BlueZ >= 5.56,
``--experimental`` before 5.65) and a list of patterns. The patterns here are the formats
the core decodes (BTHome, ATC1441/pvvx, Eddystone service data, Apple iBeacon data), so
BlueZ does not even wake us for a phone. When a passive scan fails to start and an active
one then starts at once, passive scanning is what was refused: the source logs that once
and scans actively from then on. When both fail, the adapter is at fault, not the mode.

Staying up (the Theengs Gateway failure mode this avoids: a scanner dead on a BlueZ error
until reboot): a failed start or stop (``BleakError``, D-Bus errors, ``OSError``, a call
that hangs past ``call_timeout_s``) is logged on one line and the scan is started again
after a jittered exponential delay (``bankiot_core.backoff.Reconnector``); ``run`` only
returns when ``stop`` is set. A watchdog restarts a scan that has heard nothing for
``silence_s`` seconds: BlueZ sometimes stops reporting without saying so (after
``bluetoothd`` restarts, or the controller resets). ``rescan()`` asks for a restart (the
cloud's ``rescan`` command).

Advertisements bleak reports that the core cannot take (an address that is not a MAC, as on
macOS, or maps of the wrong shape) are counted as ``malformed`` and dropped: one device's
odd data never stops the scan.

Logs: WARNING for a failed start or stop and for the fall-back to active scanning, INFO for
watchdog restarts and for the first scan started; device addresses are never logged (a
customer's wearable is personal data).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern, OrPatternLike
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from bankiot_core import beacons, bthome, xiaomi
from bankiot_core.address import mac_from_str
from bankiot_core.advdata import advertisement_from_bleak
from bankiot_core.backoff import Backoff, Reconnector
from bankiot_core.errors import DecodeError
from edge.heard import Heard, OnHeard, monotonic_ms

log = logging.getLogger(__name__)

ScanningMode = Literal["active", "passive"]


def _service_data_pattern(uuid16: int) -> OrPattern:
    # Service data starts with its 16-bit UUID, little-endian as sent on air.
    return OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, uuid16.to_bytes(2, "little"))


OR_PATTERNS: list[OrPatternLike] = [
    _service_data_pattern(bthome.UUID),
    _service_data_pattern(xiaomi.UUID),
    _service_data_pattern(beacons.EDDYSTONE_UUID),
    OrPattern(
        0,
        AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA,
        beacons.APPLE.to_bytes(2, "little") + b"\x02\x15",  # company id, iBeacon type, length
    ),
]
"""What a passive scan on BlueZ asks to be told about: the formats the core decodes."""

COUNTERS = (
    "advertisements",  # handed to on_heard
    "malformed",  # reported by bleak but not convertible; dropped
    "starts",  # scans started
    "start_failures",  # start() raised or hung
    "stop_failures",  # stop() raised or hung (the next start goes ahead regardless)
    "restarts",  # scans started again after the first: failures, watchdog, rescan
    "watchdog_restarts",  # restarts because the scan went silent
    "passive",  # 1 while scanning passively, else 0
)


class BleSource:
    """Scan one adapter and hand on what it hears (module docstring).

    ``adapter``: the BlueZ adapter (``"hci0"``) or None for the default; ``on_heard``:
    called with each ``Heard`` on the event loop's thread; ``passive``: try passive scanning
    first; ``backoff``: the delays between failed starts (``Backoff(1000, 60000)``: up to a
    minute); ``silence_s``: restart a scan that heard nothing for this long (None: never);
    ``call_timeout_s``: give up on a start or stop that takes longer; ``or_patterns``: what
    a passive scan matches (``OR_PATTERNS``); ``backend``: a ``BaseBleakScanner`` subclass
    for ``BleakScanner(backend=...)`` (None: the platform's); ``random``: the jitter source.
    """

    def __init__(
        self,
        adapter: str | None,
        on_heard: OnHeard,
        passive: bool = True,
        backoff: Backoff | None = None,
        silence_s: float | None = 120.0,
        call_timeout_s: float = 15.0,
        or_patterns: list[OrPatternLike] | None = None,
        backend: type[BaseBleakScanner] | None = None,
        random: Callable[[], float] = random.random,
    ) -> None:
        if silence_s is not None and silence_s <= 0:
            raise ValueError("silence_s must be positive or None, not %r" % (silence_s,))
        self.adapter = adapter
        self.on_heard = on_heard
        self.passive = passive
        self.source = "ble:%s" % (adapter or "default")
        self.silence_s = silence_s
        self.call_timeout_s = call_timeout_s
        self.or_patterns = list(or_patterns if or_patterns is not None else OR_PATTERNS)
        self.backend = backend
        self._backoff = backoff or Backoff(1000, 60_000)
        self._random = random
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._last_heard_ms = 0
        self._wake: asyncio.Event | None = None
        self._rescan = False

    # ---- health ------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """A copy of the counters (``COUNTERS``), whole numbers for health records."""
        return dict(self._counts)

    @property
    def mode(self) -> ScanningMode:
        """The scanning mode in use, or to be tried next."""
        return "passive" if self.passive else "active"

    def rescan(self) -> None:
        """Stop the running scan and start a new one (the ``rescan`` command)."""
        self._rescan = True
        if self._wake is not None:
            self._wake.set()

    # ---- bleak's callback ------------------------------------------------------------------

    def _detected(self, device: BLEDevice, data: AdvertisementData) -> None:
        now = monotonic_ms()
        self._last_heard_ms = now
        try:
            address = mac_from_str(device.address)
            adv = advertisement_from_bleak(
                data.service_data, data.manufacturer_data, data.local_name, data.tx_power
            )
        except DecodeError:
            self._counts["malformed"] += 1
            return
        self._counts["advertisements"] += 1
        self.on_heard(Heard(self.source, address, None, data.rssi, adv, None, now))

    # ---- the scan ------------------------------------------------------------------------

    def _scanner(self, mode: ScanningMode) -> BleakScanner:
        bluez: BlueZScannerArgs = {}
        if self.adapter:
            bluez["adapter"] = self.adapter
        if mode == "passive":
            bluez["or_patterns"] = self.or_patterns
        return BleakScanner(
            detection_callback=self._detected,
            scanning_mode=mode,
            bluez=bluez,
            backend=self.backend,
        )

    async def _call(self, what: str, call: Callable[[], Awaitable[None]]) -> bool:
        """Run a start or stop; True if it worked. Failures are logged, never raised."""
        try:
            await asyncio.wait_for(call(), self.call_timeout_s)
        except TimeoutError:
            log.warning(
                "%s: %s did not finish within %.0f s", self.source, what, self.call_timeout_s
            )
            return False
        except Exception as exc:  # bleak, D-Bus and OS errors alike: log, and stay up
            log.warning("%s: %s failed: %s: %s", self.source, what, type(exc).__name__, exc)
            return False
        return True

    async def _start_mode(self, mode: ScanningMode) -> BleakScanner | None:
        try:
            scanner = self._scanner(mode)
        except Exception as exc:  # a backend refusing its arguments (passive on macOS)
            log.warning(
                "%s: %s scanner refused: %s: %s", self.source, mode, type(exc).__name__, exc
            )
            return None
        if await self._call("%s scan start" % mode, scanner.start):
            return scanner
        # A start that failed half-way may have left something registered with BlueZ.
        await self._call("%s scan clean-up" % mode, scanner.stop)
        return None

    async def _start(self) -> BleakScanner | None:
        """One attempt: passive if wanted, else (or if refused) active."""
        if self.passive:
            scanner = await self._start_mode("passive")
            if scanner is not None:
                return scanner
        scanner = await self._start_mode("active")
        if scanner is not None and self.passive:
            log.warning("%s: passive scanning refused; scanning actively from now on", self.source)
            self.passive = False
        return scanner

    async def _watch(self, stop: asyncio.Event, wake: asyncio.Event) -> str:
        """Wait while the scan runs; return why it should end: stop, silence or rescan."""
        while True:
            if stop.is_set():
                return "stop"
            if self._rescan:
                return "rescan"
            timeout = None
            if self.silence_s is not None:
                quiet_s = (monotonic_ms() - self._last_heard_ms) / 1000
                if quiet_s >= self.silence_s:
                    return "silence"
                timeout = self.silence_s - quiet_s
            await _wait(stop, wake, timeout)

    async def run(self, stop: asyncio.Event) -> None:
        """Scan until ``stop`` is set, restarting the scan whenever it fails (never raises
        for a scanner error). Stops the scan before returning, also when cancelled."""
        wake = self._wake = asyncio.Event()
        rc = Reconnector(self._backoff, self._random)
        first = True
        try:
            while not stop.is_set():
                wait_ms = rc.wait_ms(monotonic_ms())
                if wait_ms:
                    await _wait(stop, wake, wait_ms / 1000)
                    continue
                rc.due(monotonic_ms())
                if not first:
                    self._counts["restarts"] += 1
                first = False
                self._rescan = False
                scanner = await self._start()
                if scanner is None:
                    self._counts["start_failures"] += 1
                    rc.failed(monotonic_ms())
                    continue
                rc.succeeded()
                self._counts["starts"] += 1
                self._counts["passive"] = int(self.passive)
                if self._counts["starts"] == 1:
                    log.info("%s: scanning (%s)", self.source, self.mode)
                self._last_heard_ms = monotonic_ms()
                try:
                    reason = await self._watch(stop, wake)
                finally:
                    if not await self._call("scan stop", scanner.stop):
                        self._counts["stop_failures"] += 1
                if reason == "silence":
                    self._counts["watchdog_restarts"] += 1
                    log.info(
                        "%s: nothing heard for %.0f s; restarting the scan",
                        self.source,
                        self.silence_s,
                    )
                if reason != "stop":
                    rc.lost(monotonic_ms())
        finally:
            self._wake = None


async def _wait(stop: asyncio.Event, wake: asyncio.Event, seconds: float | None) -> None:
    """Sleep ``seconds`` (None: no limit), or less if ``stop`` or ``wake`` is set."""
    wake.clear()
    tasks: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(stop.wait()),
        asyncio.ensure_future(wake.wait()),
    ]
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
