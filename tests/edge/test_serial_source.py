"""edge.serial_source: an ESP32 in radio mode over a real pseudo-terminal pair.

The test plays the ESP32: it writes frames (``framing.encode_frame(radio.encode(...))``) to
the master side of a pty, with a boot banner, a corrupted frame and a frame that is not a
radio message among them; the source reads the slave side through pyserial, given a symlink
to it as a USB device's ``/dev/serial/by-id`` link would be. Unplugging is closing the pty;
plugging back in is a new pty with the symlink pointed at it. A last test reads a virtual
board over ``socket://``. No timed assertions: tests wait for conditions with a generous
limit.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import tty
from pathlib import Path
from typing import Any

import pytest

from bankiot_core import framing, radio
from bankiot_core.backoff import Backoff
from edge.heard import Heard
from edge.serial_source import SerialSource
from hw.branch_devices import BthomeSensor, VisitingWearable
from tests.edge.waiting import LIMIT_S, run, until

FAST = Backoff(1, 20)

SENSOR = BthomeSensor("room", bytes.fromhex("a4c138000101"))
WEARABLE = VisitingWearable(
    "wearable", bytes.fromhex("c0ffee004200"), major=42, minor=1, arrive_ms=0, stay_ms=1000
)
BANNER = b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13\r\n"


def payload(device: Any, t_ms: int = 0) -> bytes:
    data = device.advertise(t_ms)
    assert data is not None
    return data


def advert_frame(address: bytes, address_type: int, rssi: int, data: bytes) -> bytes:
    return framing.encode_frame(radio.encode(radio.Advert(address, address_type, rssi, data)))


def corrupted(frame: bytes) -> bytes:
    """``frame`` with one data byte changed (never into a delimiter)."""
    i = len(frame) // 2
    flipped = frame[i] ^ 0x40 or 0x40
    return frame[:i] + bytes([flipped]) + frame[i + 1 :]


class Pty:
    """A pseudo-terminal whose slave a symlink points at: a USB radio's stable path."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no line discipline between the frames and the reader
        tmp = link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self.slave))
        tmp.replace(link)  # atomically, as udev does

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)


def test_adverts_arrive_and_bad_frames_are_skipped(tmp_path: Path) -> None:
    link = tmp_path / "ttyRADIO"
    line = Pty(link)
    heard: list[Heard] = []
    source = SerialSource(str(link), 115200, heard.append, backoff=FAST)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await until(lambda: source.counters()["connects"] == 1, "the port open")
        sensor = payload(SENSOR)
        wearable = payload(WEARABLE)
        stream = (
            BANNER
            + advert_frame(SENSOR.mac, radio.PUBLIC, -61, sensor)
            + corrupted(advert_frame(bytes(6), radio.PUBLIC, -50, sensor))
            + framing.encode_frame(b"\x85\x01")  # intact frame, truncated message
            + framing.encode_frame(radio.encode_status("radio-1.0.0", 12, {"heard": 3}))
            + b"\x00\x00garbage\x00"
            + advert_frame(WEARABLE.mac, radio.RANDOM, -58, wearable)
        )
        # In odd pieces, as a UART driver delivers them.
        for i in range(0, len(stream), 7):
            line.write(stream[i : i + 7])
        await until(lambda: len(heard) == 2, "two adverts")
        stop.set()
        await task
        assert [(h.source, h.address, h.address_type, h.rssi, h.adv, h.payload) for h in heard] == [
            ("serial:" + str(link), SENSOR.mac, 0, -61, None, sensor),
            ("serial:" + str(link), WEARABLE.mac, 1, -58, None, wearable),
        ]
        counters = source.counters()
        assert counters["adverts"] == 2
        assert counters["statuses"] == 1
        assert counters["bad_messages"] == 1
        assert counters["frames"] == 4  # two adverts, the status, the truncated message
        assert counters["bad_frames"] >= 2  # the banner and the corrupted frame, at least
        assert counters["bytes_in"] == len(stream)
        assert counters["disconnects"] == 0
        assert source.status == radio.Status("radio-1.0.0", 12, {"heard": 3})

    try:
        run(main)
    finally:
        line.unplug()


def test_the_radio_unplugged_and_plugged_back_in_is_read_again(tmp_path: Path) -> None:
    link = tmp_path / "ttyRADIO"
    line = Pty(link)
    heard: list[Heard] = []
    source = SerialSource(str(link), 115200, heard.append, backoff=FAST)
    sensor = payload(SENSOR)

    async def main() -> None:
        nonlocal line
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await until(lambda: source.counters()["connects"] == 1, "the port open")
        line.write(framing.encode_frame(radio.encode_status("radio-1.0.0", 100, {})))
        line.write(advert_frame(SENSOR.mac, radio.PUBLIC, -61, sensor))
        await until(lambda: len(heard) == 1, "the first advert")
        line.unplug()
        await until(lambda: source.counters()["disconnects"] == 1, "the loss noticed")
        line = Pty(link)  # plugged back in: a new device behind the same link
        await until(lambda: source.counters()["connects"] == 2, "the port open again")
        # The radio rebooted: a banner, its status with a smaller uptime, then adverts.
        line.write(BANNER + framing.encode_frame(radio.encode_status("radio-1.0.1", 2, {})))
        line.write(advert_frame(SENSOR.mac, radio.PUBLIC, -63, sensor))
        await until(lambda: len(heard) == 2, "an advert after the reconnect")
        stop.set()
        await task
        assert [h.rssi for h in heard] == [-61, -63]
        counters = source.counters()
        assert counters["reconnects"] == 1
        assert counters["radio_restarts"] == 1
        assert source.status == radio.Status("radio-1.0.1", 2, {})
        assert task.exception() is None

    try:
        run(main)
    finally:
        line.unplug()


def test_a_missing_device_is_waited_for(tmp_path: Path) -> None:
    link = tmp_path / "ttyRADIO"  # nothing there yet: the radio is not plugged in
    heard: list[Heard] = []
    source = SerialSource(str(link), 115200, heard.append, backoff=FAST)
    lines: list[Pty] = []

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await until(lambda: source.counters()["open_failures"] >= 3, "failed opens")
        lines.append(Pty(link))
        await until(lambda: source.counters()["connects"] == 1, "the port open")
        lines[0].write(advert_frame(SENSOR.mac, radio.PUBLIC, -61, payload(SENSOR)))
        await until(lambda: len(heard) == 1, "the advert")
        stop.set()
        await task

    try:
        run(main)
    finally:
        for line in lines:
            line.unplug()


def test_stop_ends_run_while_the_line_is_quiet(tmp_path: Path) -> None:
    link = tmp_path / "ttyRADIO"
    line = Pty(link)
    # A long read timeout: stop must not wait for it (pyserial's read is cancelled).
    source = SerialSource(str(link), 115200, lambda heard: None, read_timeout_s=30.0)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await until(lambda: source.counters()["connects"] == 1, "the port open")
        stop.set()
        await asyncio.wait_for(task, LIMIT_S)

    try:
        run(main)
    finally:
        line.unplug()


def test_an_unknown_url_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="serial port 'bogus://x'"):
        SerialSource("bogus://x", 115200, lambda heard: None)


def test_a_virtual_board_over_socket_url() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    sensor = payload(SENSOR)

    opened = threading.Event()

    def board() -> None:
        connection, _ = server.accept()
        with connection:
            # pyserial empties the input when it opens a socket:// port: send after that.
            opened.wait(LIMIT_S)
            connection.sendall(BANNER + advert_frame(SENSOR.mac, radio.PUBLIC, -61, sensor))
            connection.recv(1)  # until the source closes the connection

    thread = threading.Thread(target=board, daemon=True)
    thread.start()
    heard: list[Heard] = []
    source = SerialSource("socket://127.0.0.1:%d" % port, 115200, heard.append, backoff=FAST)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await until(lambda: source.counters()["connects"] == 1, "the connection")
        opened.set()
        await until(lambda: len(heard) == 1, "the advert")
        stop.set()
        await task

    try:
        run(main)
        thread.join(LIMIT_S)
    finally:
        server.close()
    assert heard[0].payload == sensor
