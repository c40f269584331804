"""An ESP32 in radio mode on a serial line, as a radio source for the Raspberry Pi gateway.

The ESP32 runs this project's firmware in radio mode: it scans and sends each advertisement
it hears as one frame (``bankiot_core.framing``: COBS + CRC-32) holding one radio message
(``bankiot_core.radio``: an advert, or now and then its status). ``SerialSource(port,
baudrate, on_heard).run(stop)`` reads the line, hands every advert on as an
``edge.heard.Heard`` carrying the raw AD structures (``payload``; the wiring feeds them to
``Gateway.advertisement``), and keeps the radio's last ``status``. It knows nothing of the
gateway engine.

``port`` is anything ``serial.serial_for_url`` opens: a device path (``/dev/ttyUSB0``,
better a stable ``/dev/serial/by-id/...`` link), a pseudo-terminal, or ``socket://host:port``
(a virtual board). The port is opened exclusively (``flock``), so two gateways never share
one radio.

Reading: a thread per connection blocks in pyserial's ``read`` (with a short timeout, so it
notices ``stop``), deframes and decodes what arrives, and passes the results to the event
loop with ``call_soon_threadsafe``; ``on_heard`` therefore runs on the loop's thread, like
bleak's callbacks. The loop never blocks on the port.

Bad input is dropped and counted, and reading goes on: a boot banner or line noise between
frames, a frame whose CRC fails (``bad_frames``, the deframer's ``bad_crc``, ``malformed``,
``too_short``, ``oversize`` together), a frame that is intact but not a radio message
(``bad_messages``).

Staying connected: when the port cannot be opened (the USB device is unplugged, its path
gone) or fails while open (``SerialException``, ``OSError``), the source closes it and
opens it again after a jittered exponential delay (``bankiot_core.backoff.Reconnector``),
for as long as it runs; ``run`` only returns when ``stop`` is set. The delays grow until the
radio sends a valid frame: a port that opens and then fails at once is not retried in a
tight loop.

Logs: WARNING when the port is lost or first fails to open, DEBUG for repeated failures,
INFO when it is open again and when the radio reports new software; device addresses are
never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import serial

from bankiot_core import radio
from bankiot_core.backoff import ATTEMPTING, Backoff, Reconnector
from bankiot_core.errors import DecodeError
from bankiot_core.framing import Deframer
from edge.heard import Heard, OnHeard, monotonic_ms

log = logging.getLogger(__name__)

COUNTERS = (
    "connects",  # the port opened
    "reconnects",  # opened again after the first time
    "open_failures",  # the port could not be opened
    "disconnects",  # the port failed while open (device unplugged, I/O error)
    "frames",  # intact frames (framing)
    "bytes_in",  # bytes read
    "bad_frames",  # frames dropped by the deframer: CRC, COBS, too short, too long
    "bad_messages",  # intact frames that are not radio messages
    "adverts",  # advertisements handed to on_heard
    "statuses",  # status messages from the radio
    "radio_restarts",  # the radio's uptime went backwards: it rebooted
)
_FRAME_FAULTS = ("bad_crc", "malformed", "too_short", "oversize")


class SerialSource:
    """Read one radio on one serial port and hand on what it hears (module docstring).

    ``port``: a path or pyserial URL; ``baudrate``: the line speed (ignored by
    ``socket://``); ``on_heard``: called with each ``Heard`` on the event loop's thread;
    ``backoff``: the delays between attempts to open (``Backoff(1000, 30000)``);
    ``read_timeout_s``: how long one read blocks (bounds how long ``stop`` takes);
    ``random``: the jitter source. ``status`` is the radio's last ``radio.Status`` or None.
    Raises ValueError for a ``port`` URL pyserial does not know.
    """

    def __init__(
        self,
        port: str,
        baudrate: int,
        on_heard: OnHeard,
        backoff: Backoff | None = None,
        read_timeout_s: float = 0.1,
        random: Callable[[], float] = random.random,
    ) -> None:
        try:  # a URL of an unknown kind is a configuration error, not an outage
            serial.serial_for_url(port, do_not_open=True)
        except ValueError as exc:
            raise ValueError("serial port %r: %s" % (port, exc)) from None
        self.port = port
        self.baudrate = baudrate
        self.on_heard = on_heard
        self.source = "serial:%s" % port
        self.read_timeout_s = read_timeout_s
        self.status: radio.Status | None = None
        self._backoff = backoff or Backoff(1000, 30_000)
        self._random = random
        self._rc: Reconnector | None = None
        self._deframer = Deframer(radio.MAX_MESSAGE)
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    # ---- health ------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """A copy of the counters (``COUNTERS``), whole numbers for health records."""
        out = dict(self._counts)
        framing = self._deframer.counters()
        out["frames"] = framing["frames"]
        out["bytes_in"] = framing["bytes_in"]
        out["bad_frames"] = sum(framing[name] for name in _FRAME_FAULTS)
        return out

    # ---- the reader thread -------------------------------------------------------------------

    def _open(self) -> serial.SerialBase:
        return serial.serial_for_url(
            self.port, baudrate=self.baudrate, timeout=self.read_timeout_s, exclusive=True
        )

    def _decode(self, data: bytes) -> list[Heard | radio.Status]:
        """The messages in ``data`` (reader thread)."""
        out: list[Heard | radio.Status] = []
        for payload in self._deframer.feed(data):
            try:
                message = radio.decode(payload)
            except DecodeError:
                self._counts["bad_messages"] += 1
                continue
            if isinstance(message, radio.Advert):
                out.append(
                    Heard(
                        self.source,
                        message.address,
                        message.address_type,
                        message.rssi,
                        None,
                        message.data,
                        monotonic_ms(),
                    )
                )
            else:
                out.append(message)
        return out

    def _read(
        self,
        port: serial.SerialBase,
        halt: threading.Event,
        loop: asyncio.AbstractEventLoop,
    ) -> BaseException | None:
        """Read until ``halt`` or an error (reader thread); returns the error, if any."""
        self._deframer.reset()  # a frame cut off by the last disconnect is not finished
        try:
            while not halt.is_set():
                # Whatever is waiting, or block (up to the timeout) for the next byte.
                data = port.read(max(1, getattr(port, "in_waiting", 0)))
                if data:
                    messages = self._decode(data)
                    if messages:
                        loop.call_soon_threadsafe(self._deliver, messages)
        except (serial.SerialException, OSError) as exc:
            return exc
        return None

    # ---- the event loop's side ---------------------------------------------------------

    def _deliver(self, messages: list[Heard | radio.Status]) -> None:
        rc = self._rc
        if rc is not None and rc.state == ATTEMPTING:
            rc.succeeded()  # the radio talks: the next outage starts from short delays
        for message in messages:
            if isinstance(message, Heard):
                self._counts["adverts"] += 1
                self.on_heard(message)
            else:
                self._status(message)

    def _status(self, status: radio.Status) -> None:
        self._counts["statuses"] += 1
        last = self.status
        if last is not None and status.uptime_s < last.uptime_s:
            self._counts["radio_restarts"] += 1
        if last is None or last.software != status.software:
            log.info("%s: radio software %s", self.source, status.software)
        self.status = status

    async def _session(self, port: serial.SerialBase, stop: asyncio.Event) -> BaseException | None:
        """Read ``port`` until ``stop`` or an error; returns the error, if any."""
        loop = asyncio.get_running_loop()
        halt = threading.Event()
        done: asyncio.Future[BaseException | None] = loop.create_future()

        def reader() -> None:
            result = self._read(port, halt, loop)
            loop.call_soon_threadsafe(_settle, done, result)

        thread = threading.Thread(target=reader, name="serial " + self.port, daemon=True)
        thread.start()
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([done, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            halt.set()
            if not done.done():
                _cancel_read(port)
                try:
                    await asyncio.shield(done)
                except asyncio.CancelledError:
                    # Cancelled while the reader winds down: wait for it here, briefly,
                    # so the port is not closed under it.
                    thread.join(self.read_timeout_s * 10 + 1)
                    raise
        return done.result()

    async def run(self, stop: asyncio.Event) -> None:
        """Read the radio until ``stop`` is set, reopening the port whenever it fails
        (never raises for a port error). Closes the port before returning."""
        rc = self._rc = Reconnector(self._backoff, self._random)
        failing = False
        while not stop.is_set():
            wait_ms = rc.wait_ms(monotonic_ms())
            if wait_ms:
                await _wait(stop, wait_ms / 1000)
                continue
            rc.due(monotonic_ms())
            try:
                port = await asyncio.to_thread(self._open)
            except (serial.SerialException, OSError, ValueError) as exc:
                self._counts["open_failures"] += 1
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "%s: cannot open: %s", self.source, _one_line(exc))
                failing = True
                rc.failed(monotonic_ms())
                continue
            failing = False
            self._counts["connects"] += 1
            if self._counts["connects"] > 1:
                self._counts["reconnects"] += 1
                log.info("%s: open again", self.source)
            try:
                error = await self._session(port, stop)
            finally:
                port.close()
            if error is None:
                break  # stopped
            self._counts["disconnects"] += 1
            log.warning("%s: lost: %s", self.source, _one_line(error))
            if rc.state == ATTEMPTING:
                rc.failed(monotonic_ms())  # opened, but the radio never said a word
            else:
                rc.lost(monotonic_ms())
        self._rc = None


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _cancel_read(port: serial.SerialBase) -> None:
    """Wake a read blocked in pyserial (POSIX ports can; others time out soon anyway)."""
    cancel = getattr(port, "cancel_read", None)
    if cancel is not None:
        with contextlib.suppress(serial.SerialException, OSError, NotImplementedError):
            cancel()


def _one_line(exc: BaseException) -> str:
    return ("%s: %s" % (type(exc).__name__, exc)).splitlines()[0]


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
