"""The virtual board's UDP reaches the host's network: a plain UDP peer, libcoap's
``coap-server`` as an independent CoAP peer, and the cloud's real CoAP ingest (aiocoap)
taking the firmware's sealed batches over its CoAP uplink and acknowledging them.

The board's side is code run at its REPL: its ``socket`` as the firmware calls it
(``app/coaplink.py``: ``getaddrinfo``, ``socket(AF_INET, SOCK_DGRAM)``, ``bind``,
``setblocking``, ``sendto``, ``recvfrom``), and the application itself
(``tests/firmware/board_scenario.py``, as the firmware tests drive it). The errno values
expected are MicroPython's (its ``errno`` module on the board).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from cloud.ingest.keys import MemoryKeySource
from cloud.ingest.pipeline import Ingest
from hw.virtual_board import VirtualBoard, firmware_files
from tests.cloud.ingest_support import migrated, receipt_count, stored_readings
from tests.cloud.test_ingest_coap import Server
from tests.firmware.board import SCENARIO, SETTINGS, provisioned, ring, temperature
from tests.hw.test_virtual_board import RawRepl, start
from tests.support.environment import free_port, unavailable

pytestmark = pytest.mark.micropython


def library_only() -> dict[str, Path]:
    """The firmware's modules on the flash without ``boot.py`` and ``main.py``: nothing
    starts by itself, the test drives it at the REPL."""
    return {d: h for d, h in firmware_files().items() if d not in ("/boot.py", "/main.py")}


@pytest.fixture
def udp_peer() -> Iterator[socket.socket]:
    """A UDP socket on the host that answers each datagram with b"echo:" + it, once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(30)

    def answer() -> None:
        try:
            data, sender = sock.recvfrom(4096)
        except OSError:
            return
        sock.sendto(b"echo:" + data, sender)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield sock
    sock.close()
    thread.join(10)


@pytest.fixture
def repl(tree_board: VirtualBoard) -> Iterator[RawRepl]:
    client = RawRepl(tree_board.url)
    client.enter()
    yield client
    client.close()


@pytest.fixture
def tree_board() -> Iterator[VirtualBoard]:
    board = start(files=library_only())
    yield board
    board.stop()


def test_datagrams_reach_a_host_peer_and_its_answer_comes_back(
    repl: RawRepl, udp_peer: socket.socket
) -> None:
    port = udp_peer.getsockname()[1]
    code = (
        "import socket\n"
        "addr = socket.getaddrinfo('127.0.0.1', %d, 0, socket.SOCK_DGRAM)[0][-1]\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind(('0.0.0.0', 0))\n"
        "s.settimeout(20)\n"
        "print(s.sendto(b'ping' * 100, addr))\n"
        "data, sender = s.recvfrom(10)\n"  # a longer datagram is cut, as on a board
        "print(data, sender == ('127.0.0.1', %d))\n"
        "s.close()" % (port, port)
    )
    assert repl.exec(code) == b"400\r\nb'echo:pingp' True\r\n"


def test_receiving_with_nothing_there_raises_the_boards_errno(
    repl: RawRepl, udp_peer: socket.socket
) -> None:
    port = udp_peer.getsockname()[1]
    code = (
        "import socket, errno\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind(('0.0.0.0', 0))\n"
        "s.sendto(b'x', ('127.0.0.1', %d))\n"  # a socket on the host now
        "s.settimeout(20)\n"
        "s.recvfrom(64)\n"  # the one echo; nothing else will come
        "for timeout in (0, 0.05):\n"
        "    s.settimeout(timeout)\n"
        "    try:\n"
        "        s.recvfrom(64)\n"
        "    except OSError as e:\n"
        "        print(e.errno == (errno.EAGAIN if timeout == 0 else errno.ETIMEDOUT))\n"
        "s.close()\n"
        "try:\n"
        "    s.sendto(b'x', ('127.0.0.1', %d))\n"
        "except OSError as e:\n"
        "    print(e.errno == errno.EBADF)" % (port, port)
    )
    assert repl.exec(code) == b"True\r\nTrue\r\nTrue\r\n"


def test_the_boards_coap_client_gets_an_answer_from_libcoap(repl: RawRepl) -> None:
    server_bin = shutil.which("coap-server-notls") or shutil.which("coap-server")
    if server_bin is None:
        unavailable("libcoap's coap-server (package libcoap3-bin) is not installed")
        return
    port = free_port(kind=socket.SOCK_DGRAM)
    server = subprocess.Popen(
        [server_bin, "-A", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # A confirmable GET of libcoap's default resource "/", retransmitted by the core's
        # client until the server (started just now) answers; RFC 7252: 2.05 Content.
        code = (
            "import socket, random, time\n"
            "from bankiot_core import coap\n"
            "c = coap.CoapClient(random.getrandbits)\n"
            "addr = socket.getaddrinfo('127.0.0.1', %d, 0, socket.SOCK_DGRAM)[0][-1]\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('0.0.0.0', 0))\n"
            "s.settimeout(0.2)\n"
            "s.sendto(c.request(coap.GET, '', b'', time.ticks_ms()), addr)\n"
            "answer = None\n"
            "while answer is None:\n"
            "    try:\n"
            "        out = c.receive_datagram(s.recvfrom(1280)[0], time.ticks_ms())\n"
            "    except OSError:\n"
            "        out = c.tick(time.ticks_ms())\n"
            "    for d in out.datagrams:\n"
            "        s.sendto(d, addr)\n"
            "    if out.events:\n"
            "        answer = out.events[0]\n"
            "print(coap.code_text(answer.code), b'libcoap' in answer.payload)" % port
        )
        assert repl.exec(code) == b"2.05 True\r\n"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def ingest(migrated_sqlite_url: URL) -> Iterator[tuple[Server, Ingest]]:
    """The cloud's CoAP ingest (aiocoap) on SQLite, knowing the board's key."""
    with migrated(migrated_sqlite_url) as database:
        ingest = Ingest(database, MemoryKeySource([ring()]))
        server = Server(ingest)
        try:
            yield server, ingest
        finally:
            server.close()


DRIVE = """
import json, time, board_scenario
app, clock = board_scenario.board()
app.start(clock.now)
for step in range(1500):
    time.sleep_ms(20)
    clock.now += 20
    if step == 5:  # scanning by now; the batch closes batch_max_delay_ms (1 s) later
        board_scenario.hear(json.loads(%r))
    app.drain(clock.now)
    app.tick(clock.now)
    if app.wifi is None or app.wifi.step(clock.now):
        app.uplinks.step(clock.now)
    acked = app.engine.health_counters()["acked"]
    if step > 100 and acked and not app.engine.queue.seqs():
        break
coap = app.uplinks.links["coap"]
print(json.dumps({"choice": app.uplinks.choice, "acked": acked,
                  "queue": app.engine.queue.seqs(), "answered": coap.answered}))
"""


def test_the_board_delivers_a_sealed_batch_to_the_clouds_coap_ingest_and_is_acked(
    ingest: tuple[Server, Ingest], tmp_path: Path
) -> None:
    server, cloud = ingest
    settings = {**SETTINGS, "uplink": "coap"}
    identity = provisioned(mqtt=None, coap="coap://127.0.0.1:%d" % server.port, settings=settings)
    files = library_only()
    for device, data in {**identity, "/lib/board_scenario.py": SCENARIO.read_bytes()}.items():
        host = tmp_path / "flash" / device.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_bytes(data)
        files[device] = host
    board = start(files=files)
    try:
        client = RawRepl(board.url)
        client.enter()
        heard = [temperature(0, 2150, 1)]  # 21.5 °C from the paired sensor
        out = client.exec(DRIVE % json.dumps(heard))
        client.close()
    finally:
        board.stop()
    result = json.loads(out.decode().splitlines()[-1])
    assert result["choice"] == "coap" and result["answered"] >= 1
    assert result["acked"] >= 1 and result["queue"] == []  # acknowledged: off the flash
    assert receipt_count(cloud.database) == result["acked"]
    assert [v for _, m, v in stored_readings(cloud.database) if m == "temperature"] == [21.5]
