"""The board-module stand-ins behave like the boards' modules, under real MicroPython."""

from __future__ import annotations

from hw.micropython_runner import MicroPythonRunner


def lines(micropython: MicroPythonRunner, code: str, *fakes: str) -> list[str]:
    return micropython.run(code, fakes=fakes).check().stdout.splitlines()


def test_machine(micropython: MicroPythonRunner) -> None:
    out = lines(
        micropython,
        "import machine\n"
        "w = machine.WDT(timeout=8000); w.feed(); w.feed(); print(w._feeds)\n"
        "hits = []\n"
        "p = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP)\n"
        "p.irq(lambda pin: hits.append(pin.value()), machine.Pin.IRQ_FALLING)\n"
        "p._drive(0); p._drive(1); p._drive(0); print(hits)\n"
        "try:\n    machine.reset()\nexcept machine.Reset:\n    print('reset')\n",
        "machine",
    )
    assert out == ["2", "[0, 0]", "reset"]


def test_network(micropython: MicroPythonRunner) -> None:
    out = lines(
        micropython,
        "import network\n"
        "w = network.WLAN(network.STA_IF); w.active(True)\n"
        "w.connect('branch-iot', 'wrong'); print(w.status() == network.STAT_WRONG_PASSWORD)\n"
        "w.connect('branch-iot', 'branch-secret'); print(w.isconnected(), w.ifconfig()[0])\n"
        "w._drop(); print(w.isconnected(), network.WLAN(network.STA_IF) is w)\n",
        "network",
    )
    assert out == ["True", "True 127.0.0.1", "False True"]


def test_bluetooth_views_die_with_the_handler(micropython: MicroPythonRunner) -> None:
    out = lines(
        micropython,
        "import bluetooth\n"
        "kept, copied = [], []\n"
        "def irq(event, data):\n"
        "    if event == 5:\n"
        "        addr_type, addr, adv_type, rssi, adv = data\n"
        "        kept.append(adv)\n"
        "        copied.append((bytes(addr), rssi, bytes(adv)))\n"
        "ble = bluetooth.BLE(); ble.irq(irq)\n"
        "print(ble._inject(0, b'\\x01' * 6, 0, -60, b'\\x02\\x01\\x06'))\n"
        "ble.active(True); ble.gap_scan(0, 30000, 30000)\n"
        "print(ble._inject(0, b'\\x01' * 6, 0, -60, b'\\x02\\x01\\x06'))\n"
        "print(copied[0][2] == b'\\x02\\x01\\x06', bytes(kept[0]) == b'\\xee\\xee\\xee')\n",
        "bluetooth",
    )
    # Not scanning: nothing delivered. Copies survive; views kept past the IRQ are garbage.
    assert out == ["False", "True", "True True"]


def test_socket_streams_and_datagrams(micropython: MicroPythonRunner) -> None:
    out = lines(
        micropython,
        "import socket, errno\n"
        "srv = socket.socket(); srv.bind(('127.0.0.1', 1883)); srv.listen(1)\n"
        "c = socket.socket(); c.connect(socket.getaddrinfo('127.0.0.1', 1883)[0][-1])\n"
        "conn, peer = srv.accept(); c.write(b'\\x10\\x00'); print(conn.recv(10))\n"
        "conn.send(b'\\x20\\x02\\x00\\x00'); buf = bytearray(4); print(c.readinto(buf), buf)\n"
        "c.setblocking(False); print(c.read(1))\n"
        "c.settimeout(1)\n"
        "try:\n    c.recv(1)\nexcept OSError as e:\n    print(e.args[0] == errno.ETIMEDOUT)\n"
        "try:\n    socket.socket().connect(('127.0.0.1', 5683))\n"
        "except OSError as e:\n    print(e.args[0] == errno.ECONNREFUSED)\n"
        "socket._break(('127.0.0.1', 1883)); print(c.recv(1))\n"
        "try:\n    c.send(b'x')\nexcept OSError as e:\n    print(e.args[0] == errno.ECONNRESET)\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 5683))\n"
        "v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "v.sendto(b'coap', ('127.0.0.1', 5683)); print(u.recvfrom(64)[0])\n",
        "socket",
    )
    assert out == [
        "b'\\x10\\x00'",
        "4 bytearray(b' \\x02\\x00\\x00')",
        "None",
        "True",
        "True",
        "b''",
        "True",
        "b'coap'",
    ]
