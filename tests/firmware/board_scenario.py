"""A board's run, scripted: MicroPython code installed as ``/lib/board_scenario.py``.

The firmware tree is mounted at ``/`` of the virtual board, the hardware stand-ins of
``hw/fakes`` in ``/lib``. Functions here build the application exactly as ``app.main``
does (``build_gateway``), drive it with a clock the test controls, play the broker's part
over the fake socket (``FakeBroker``: CONNACK, SUBACK, PUBACK, and downlink messages to
deliver), and return JSON-ready results. Common subset of CPython and MicroPython.
"""

import binascii
import socket
import ssl

import bluetooth
import machine
import network

from bankiot_core import cbor, coap, cose, downlink
from bankiot_core.keyring import KeyRing
from bankiot_core.mqtt import decode_remaining_length

BROKER = ("broker.test", 8883)


class Clock:
    """The board's ticks, moved by the scenario."""

    def __init__(self, now=1000):
        self.now = now

    def __call__(self):
        return self.now


def _hex(data):
    return binascii.hexlify(bytes(data)).decode()


class FakeBroker:
    """The broker's side of the conversation, inside the VM; keeps every byte received."""

    def __init__(self, address=BROKER):
        self.server = socket.socket()
        self.server.bind(address)
        self.server.listen(1)
        self.server.setblocking(False)
        self.conns = []
        self.received = []  # per connection: bytearray of everything the board sent
        self.published = []  # (topic, payload) of every PUBLISH
        self._buffers = []
        self._pid = 100
        self.pending = []  # (topic, payload) to deliver once a connection subscribed
        self.subscribed = False

    def serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                break
            conn.setblocking(False)
            self.conns.append(conn)
            self.received.append(bytearray())
            self._buffers.append(bytearray())
            self.subscribed = False
        for i in range(len(self.conns)):
            conn = self.conns[i]
            try:
                data = conn.recv(4096)
            except OSError:
                data = None
            if data:
                self.received[i].extend(data)
                self._buffers[i].extend(data)
                self._parse(i)
        if self.subscribed and self.pending and self.conns:
            for topic, payload in self.pending:
                self._deliver(self.conns[-1], topic, payload)
            self.pending = []

    def _parse(self, i):
        buf = self._buffers[i]
        conn = self.conns[i]
        while buf:
            header = decode_remaining_length(buf, 1)
            if header is None:
                return
            length, start = header
            if len(buf) < start + length:
                return
            first = buf[0]
            body = bytes(buf[start : start + length])
            buf[0 : start + length] = b""
            kind = first >> 4
            if kind == 1:  # CONNECT
                conn.send(b"\x20\x02\x00\x00")
            elif kind == 8:  # SUBSCRIBE
                conn.send(b"\x90\x03" + body[0:2] + b"\x01")
                self.subscribed = True
            elif kind == 3:  # PUBLISH
                qos = (first >> 1) & 3
                n = (body[0] << 8) | body[1]
                topic = body[2 : 2 + n].decode()
                pos = 2 + n
                if qos:
                    conn.send(b"\x40\x02" + body[pos : pos + 2])
                    pos += 2
                self.published.append((topic, body[pos:]))
            elif kind == 12:  # PINGREQ
                conn.send(b"\xd0\x00")

    def _deliver(self, conn, topic, payload):
        self._pid += 1
        t = topic.encode()
        body = bytes([len(t) >> 8, len(t) & 0xFF]) + t + bytes([self._pid >> 8, self._pid & 0xFF])
        body += payload
        n = len(body)
        head = bytearray([0x32])
        while True:
            b = n & 0x7F
            n >>= 7
            head.append(b | 0x80 if n else b)
            if not n:
                break
        conn.send(bytes(head) + body)


class FakeCoap:
    """The cloud's CoAP resource, inside the VM: each POST is answered (piggybacked 2.04)
    with the cloud's sealed acknowledgement of that batch, as ``cloud.ingest`` seals it."""

    def __init__(self, uid, secret, address=("coap.test", 5683)):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)
        self.ring = KeyRing(uid, 1, secret)
        self.down_seq = 0
        self.posted = []

    def serve(self):
        while True:
            try:
                data, sender = self.sock.recvfrom(2048)
            except OSError:
                return
            msg = coap.decode_message(data)
            if msg.code != coap.POST:
                continue
            self.posted.append(msg.payload)
            seq = cose.peek_envelope(msg.payload).seq
            message = downlink.encode_ack(None, [seq])
            ack = downlink.seal_downlink(self.ring, self.down_seq, message, "batches")
            self.down_seq += 1
            options = ((coap.CONTENT_FORMAT, coap.uint_bytes(coap.CBOR)),)
            body = cbor.dumps([ack], True)
            reply = coap.encode_message(coap.ACK, coap.CHANGED, msg.mid, msg.token, options, body)
            self.sock.sendto(reply, sender)


def run_fallback(adverts, secret_hex, steps=300, step_ms=100):
    """MQTT unreachable, CoAP answering: the board falls back and its batches leave and
    are acknowledged over CoAP. What the CoAP resource got, the queue left, counters."""
    coap_server = FakeCoap("gw-board-1", binascii.unhexlify(secret_hex))
    app, clock = board()
    app.start(clock.now)
    for step in range(steps):
        clock.now += step_ms
        hear(adverts, step)
        app.drain(clock.now)
        app.tick(clock.now)
        if app.wifi is None or app.wifi.step(clock.now):
            app.uplinks.step(clock.now)
        coap_server.serve()
    clock.now += step_ms
    app.uplinks.step(clock.now)  # the answer to the last batch posted
    return {
        "posted": [_hex(p) for p in coap_server.posted],
        "queue": app.engine.queue.seqs(),
        "uplink": app.uplinks.counters(),
        "choice": app.uplinks.choice,
        "acked": app.engine.health_counters()["acked"],
    }


def board(wifi=True):
    """The application as ``app.main.build_gateway`` makes it, over the fakes."""
    import random

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
    clock = Clock()
    identity = config.load_identity()
    wifi_config = config.load_wifi() if wifi else None
    app = build_gateway(boards.current(), identity, wifi_config, modules, clock, random.random)
    return app, clock


def hear(adverts, step=None):
    """Every ``[step, address hex, rssi, data hex]`` (of ``step``, if given) through the
    fake radio's IRQ."""
    ble = bluetooth.BLE()
    for at, address, rssi, data in adverts:
        if step is None or at == step:
            ble._inject(0, binascii.unhexlify(address), 0, rssi, binascii.unhexlify(data))


def run_gateway(adverts, steps=40, step_ms=100, downlinks=()):
    """Boot, run ``steps`` turns of the loop hearing ``adverts`` (``[step, address hex,
    rssi, data hex]``) on their step; what the broker got.

    ``downlinks``: ``[topic, payload hex]`` delivered once the board subscribed (the
    cloud's acknowledgements). Returns the bytes of every connection in hex, the topics
    and payloads published, the queue left, the TLS the link asked for and counters.
    """
    broker = FakeBroker()
    for topic, payload in downlinks:
        broker.pending.append((topic, binascii.unhexlify(payload)))
    app, clock = board()
    app.start(clock.now)
    for step in range(steps):
        clock.now += step_ms
        hear(adverts, step)
        app.drain(clock.now)
        app.tick(clock.now)
        if app.wifi is None or app.wifi.step(clock.now):
            app.uplinks.step(clock.now)
        broker.serve()
    app.shutdown()
    broker.serve()  # what the board said on its way out
    contexts = []
    for c in ssl._contexts:
        contexts.append([c.verify_mode, c.server_hostname, c.cafile, c.certfile, c.keyfile])
    published = []
    for topic, payload in broker.published:
        published.append([topic, _hex(payload)])
    counters = app.engine.health_counters()
    return {
        "streams": [_hex(r) for r in broker.received],
        "published": published,
        "queue": app.engine.queue.seqs(),
        "tls": contexts,
        "uplink": app.uplinks.counters(),
        "counters": counters,
        "wifi_connects": app.wifi.connects if app.wifi is not None else None,
        "scan": [app.scanner.interval_ms, app.scanner.window_ms],
    }


class SetWall:
    """A wall clock already set by NTP (``wallclock.WallClock``'s interface), at ``unix_s``
    (None: not set yet)."""

    def __init__(self):
        self.unix_s = None
        self.failures = 0

    @property
    def set(self):
        return self.unix_s is not None

    def step(self, now_ms):
        return self.set

    def unix_ms(self):
        return self.unix_s * 1000

    def counters(self):
        return {"clock_set": 1 if self.set else 0, "ntp_failures": 0}


def scan_windows(times, step_ms=1000):
    """The scan window the board uses at each Unix time of ``times`` (None: before the
    clock is set), a tick apart, a paired frame heard before each: [window, closed]."""
    app, clock = board()
    wall = SetWall()
    app.wall = wall
    app.start(clock.now)
    out = []
    for i in range(len(times)):
        clock.now += step_ms
        wall.unix_s = times[i]
        data = "020106" + "0916d2fc4000%02x02" % i + "d007"  # heard: not idle for that
        hear([[0, "a4c138000001", -60, data]])
        app.drain(clock.now)
        app.tick(clock.now)
        out.append([app.scanner.window_ms, app.duty.closed])
    return out


async def supervise(stall_network, seconds=80):
    """Run ``app.main.Runner`` for ``seconds`` of the board's clock, with the network task
    stuck after its first turn if ``stall_network``; the watchdog's feeds each second.

    Time is the scenario's: a driver task moves the clock 50 ms per turn of the event
    loop, and the tasks' sleeps last until the clock has moved as far as they asked, so
    every task sees the same time however fast the VM runs."""
    import asyncio

    from app.crashloop import CrashCounter
    from app.main import Runner

    app, clock = board(wifi=False)
    counter = CrashCounter()
    counter.boot()
    wdt = machine.WDT(timeout=8000)

    async def sleep_ms(ms):
        until = clock.now + ms
        while clock.now < until:
            await asyncio.sleep_ms(0)

    runner = Runner(app, wdt, 4000, counter=counter, sleep_ms=sleep_ms)
    feeds = []

    async def stuck(index):
        runner.supervisor.alive(index, clock.now)
        while True:  # waits on something that never comes, and never checks in again
            await sleep_ms(50)

    async def drive():
        end = clock.now + seconds * 1000
        while clock.now < end:
            clock.now += 50
            if clock.now % 1000 == 0:
                feeds.append(wdt._feeds)
            await asyncio.sleep_ms(0)
        runner.stop()
        clock.now += 1000  # let the main loop see it

    network = stuck if stall_network else runner.network
    tasks = (("radio", runner.radio), ("ticker", runner.ticker), ("network", network))
    driver = asyncio.create_task(drive())
    await asyncio.create_task(runner.run(tasks))  # a task: the VM's top level is not one
    await driver
    return {
        "feeds": feeds,
        "stalled": runner.supervisor.stalled,
        "healthy": runner.declared_healthy,
        "count": counter.count(),
    }
