"""Updates on a board, scripted: MicroPython code installed as ``/lib/update_scenario.py``.

Beside ``board_scenario`` (whose broker, clock and board builder it reuses): the cloud's
release downloads played over the fake socket (``FakeReleases``: HTTP/1.0 answers from
files under ``/srv``), a broker that acknowledges every batch the way the cloud does
(``AckingBroker``), and one boot of the board (``run_boot``) that may first pick the
release as ``boot.py`` does. Common subset of CPython and MicroPython.
"""

import binascii
import os
import socket

import board_scenario

from bankiot_core import cose, downlink
from bankiot_core.keyring import KeyRing

UID = "gw-board-1"
UP = "devices/%s/up" % UID
DOWN = "devices/%s/down" % UID
RELEASES = ("releases.test", 80)


class FakeReleases:
    """``GET <path>`` answered with the file ``/srv<path>`` (404 when there is none)."""

    def __init__(self, root="/srv", address=RELEASES):
        self.server = socket.socket()
        self.server.bind(address)
        self.server.listen(1)
        self.server.setblocking(False)
        self.root = root
        self.conns = []
        self.requests = []

    def serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                break
            conn.setblocking(False)
            self.conns.append([conn, b""])
        for item in self.conns:
            conn = item[0]
            try:
                data = conn.recv(4096)
            except OSError:
                data = None
            if not data:
                continue
            item[1] += data
            end = item[1].find(b"\r\n\r\n")
            if end < 0:
                continue
            path = item[1].split(b" ")[1].decode()
            self.requests.append(path)
            try:
                with open(self.root + path, "rb") as f:
                    body = f.read()
                head = "HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
            except OSError:
                body = b"not found"
                head = "HTTP/1.0 404 Not Found\r\nContent-Length: 9\r\n\r\n"
            conn.send(head.encode() + body)
            conn.close()
        self.conns = [item for item in self.conns if not item[0]._closed]


class AckingBroker(board_scenario.FakeBroker):
    """The broker, and the cloud behind it: each batch published is acknowledged (sealed
    downlink, sequence numbers from ``down_seq`` up) when ``ack``."""

    def __init__(self, secret, ack, down_seq):
        super().__init__()
        self.ring = KeyRing(UID, 1, secret)
        self.ack = ack
        self.down_seq = down_seq
        self._seen = 0

    def serve(self):
        super().serve()
        while self._seen < len(self.published):
            topic, payload = self.published[self._seen]
            self._seen += 1
            if topic == UP and self.ack and self.conns:
                seq = cose.peek_envelope(payload).seq
                message = downlink.encode_ack(None, [seq])
                sealed = downlink.seal_downlink(self.ring, self.down_seq, message, DOWN)
                self.down_seq += 1
                self._deliver(self.conns[-1], DOWN, sealed)


def listing(top="/releases"):
    """Every file under ``top`` (paths), sorted; [] if there is no such folder."""
    out = []
    try:
        entries = list(os.ilistdir(top))
    except OSError:
        return out
    for entry in entries:
        path = top + "/" + entry[0]
        if entry[1] == 0x4000:
            out.extend(listing(path))
        else:
            out.append(path)
    out.sort()
    return out


def build(extra=None):
    """The application as ``app.main.build_gateway`` makes it, with ``extra`` modules
    (``esp32``, ``ntptime``) beside the stand-ins ``board_scenario.board`` uses."""
    import random
    import ssl

    import bluetooth
    import machine
    import network
    from app import board as boards
    from app import config
    from app.main import build_gateway

    modules = {
        "bluetooth": bluetooth,
        "machine": machine,
        "network": network,
        "socket": socket,
        "ssl": ssl,
    }
    for name in extra or ():
        modules[name] = __import__(name)
    clock = board_scenario.Clock()
    identity = config.load_identity()
    app = build_gateway(
        boards.current(), identity, config.load_wifi(), modules, clock, random.random
    )
    return app, clock


def run_boot(
    secret_hex,
    downlinks=(),
    steps=300,
    step_ms=100,
    ack=False,
    down_seq=1000,
    select=False,
    extra=None,
    software=None,
    stop_after_requests=None,
    check=None,
):
    """One boot: pick the release first if ``select`` (as ``boot.py``), run until the
    board asks to reset or ``steps`` turns; what it published, the flash, the update.

    ``downlinks``: ``[topic, payload hex]`` for the broker to deliver; ``ack``: the cloud
    acknowledges every batch; ``software``: the version the running image reports (an
    ESP32 image's frozen application); ``stop_after_requests``: a power cut once that many
    HTTP requests were answered; ``check``: ``signature`` or ``mac``, instead of the
    board's default."""
    selected = None
    if select:
        from app import releases

        selected = releases.select()
    broker = AckingBroker(binascii.unhexlify(secret_hex), ack, down_seq)
    for topic, payload in downlinks:
        broker.pending.append((topic, binascii.unhexlify(payload)))
    server = FakeReleases()
    app, clock = build(extra)
    if software is not None:
        app.engine.software = software
        app.updater.software = software
    if check is not None:
        app.updater.check = check
    app.start(clock.now)
    cut = False
    for _ in range(steps):
        clock.now += step_ms
        app.drain(clock.now)
        app.tick(clock.now)
        if app.wifi is None or app.wifi.step(clock.now):
            app.network_turn(clock.now)
        broker.serve()
        server.serve()
        if stop_after_requests is not None and len(server.requests) >= stop_after_requests:
            cut = True
            break
        if app.reboot_requested:
            break
    if not cut:
        app.shutdown()
        broker.serve()
    from app import releases

    published = []
    for topic, payload in broker.published:
        published.append([topic, board_scenario._hex(payload)])
    trial = releases.load_trial()
    return {
        "selected": selected,
        "published": published,
        "reboot": app.reboot_requested,
        "pointer": releases.read_pointer(),
        "previous": releases.read_pointer(releases.PREVIOUS),
        "trial": trial,
        "files": listing(),
        "stage": app.updater.stage,
        "requests": server.requests,
        "software": app.engine.software,
        "down_seq": broker.down_seq,
        "health": app.engine.health_counters(),
        "connections": len(broker.conns),
    }


def run_image(secret_hex, command_hex, image_software):
    """An ESP32 firmware image end to end in one VM (the fake flash lives in RAM): boot
    with the ``update`` command, the board writes the idle slot and switches; "reset" into
    it (``esp32._running``), the new image reports ``image_software`` and is acknowledged;
    the calls the firmware made on ``esp32.Partition`` at each point."""
    import esp32

    first = run_boot(secret_hex, [[DOWN, command_hex]], extra=("esp32",))
    calls_installed = [list(c) for c in esp32._calls]
    socket._reset()
    esp32._running = esp32._boot  # the bootloader starts the new slot, on probation
    second = run_boot(
        secret_hex,
        ack=True,
        down_seq=2000,
        extra=("esp32",),
        software=image_software,
    )
    return {
        "first": first,
        "second": second,
        "calls_installed": calls_installed,
        "calls": [list(c) for c in esp32._calls],
        "slot": board_scenario._hex(esp32._flash["ota_1"]),
        "boot": esp32._boot,
    }


def run_clock(secret_hex, failures, steps=120, step_ms=100):
    """NTP before TLS: ``failures`` queries go unanswered first. Per turn: whether the
    clock was set and whether the board had connected to the broker yet; what it sent."""
    import ntptime

    ntptime._fail = failures
    broker = AckingBroker(binascii.unhexlify(secret_hex), True, 1000)
    app, clock = build(("ntptime",))
    app.start(clock.now)
    turns = []
    for _ in range(steps):
        clock.now += step_ms
        app.drain(clock.now)
        app.tick(clock.now)
        if app.wifi is None or app.wifi.step(clock.now):
            app.network_turn(clock.now)
        broker.serve()
        turns.append([app.wall.set, len(broker.conns)])
    app.shutdown()
    broker.serve()
    published = []
    for topic, payload in broker.published:
        published.append([topic, board_scenario._hex(payload)])
    return {
        "turns": turns,
        "published": published,
        "queries": len(ntptime._calls),
        "failures": app.wall.failures,
    }
