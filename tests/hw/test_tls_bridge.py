"""``hw.tls_bridge``: the board's plain connections carried over real TLS to a broker.

The broker here is a TLS echo server that requires a client certificate from the test CA
(as the cloud's Mosquitto does) and records the certificate's CN. A megabyte goes through
the bridge while the echo comes back at the same time, so both directions of one TLS
connection are busy at once: the case that crashed the interpreter when two threads read
and wrote one ``ssl.SSLSocket`` (python/cpython#151508).
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from hw.tls_bridge import TlsBridge
from tests.support.pki import TestCA

LIMIT_S = 60.0  # a bound on waiting for a socket, not a measurement
BOARD_CN = "esp32-240ac4a1b2c3"


class EchoBroker:
    """A TLS server on a free loopback port that echoes what each client sends."""

    def __init__(self, ca: TestCA) -> None:
        server = ca.issue("localhost", server=True)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca.cert_path)
        self.context.load_cert_chain(server.cert, server.key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.peers: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(raw,), daemon=True).start()

    def _echo(self, raw: socket.socket) -> None:
        # One thread per connection does both the reading and the writing.
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
                (cn,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                self.peers.append(str(cn.value))
                while data := tls.recv(65536):
                    tls.sendall(data)
        except OSError:
            raw.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


@pytest.fixture
def broker(ca: TestCA) -> Iterator[EchoBroker]:
    running = EchoBroker(ca)
    yield running
    running.close()


def flash_with_identity(folder: Path, ca: TestCA) -> Path:
    """A board's flash folder holding what ``bankiot flash`` writes: CA, certificate, key."""
    identity = folder / "flash" / "identity"
    identity.mkdir(parents=True)
    issued = ca.issue(BOARD_CN)
    (identity / "ca.pem").write_bytes(ca.cert_path.read_bytes())
    (identity / "device.crt").write_bytes(issued.cert.read_bytes())
    (identity / "device.key").write_bytes(issued.key.read_bytes())
    return folder / "flash"


def board_connection(bridge: TlsBridge) -> socket.socket:
    return socket.create_connection(("127.0.0.1", bridge.port), timeout=LIMIT_S)


def receive_all(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the other end closed (an orderly FIN, or a reset)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_bridge_carries_a_megabyte_both_ways_at_once_with_the_boards_certificate(
    tmp_path: Path, ca: TestCA, broker: EchoBroker
) -> None:
    bridge = TlsBridge(flash_with_identity(tmp_path, ca), ("127.0.0.1", broker.port))
    payload = os.urandom(1 << 20)
    try:
        with board_connection(bridge) as board:
            # The echo flows back while the board is still sending: both directions at once.
            sender = threading.Thread(target=board.sendall, args=(payload,), daemon=True)
            sender.start()
            echoed = receive_all(board, len(payload))
            sender.join(LIMIT_S)
    finally:
        bridge.close()
    assert echoed == payload
    assert bridge.sessions == 1 and bridge.errors == []
    assert broker.peers == [BOARD_CN]


def test_each_connection_of_the_board_is_a_session_of_its_own(
    tmp_path: Path, ca: TestCA, broker: EchoBroker
) -> None:
    bridge = TlsBridge(flash_with_identity(tmp_path, ca), ("127.0.0.1", broker.port))
    try:
        for n in range(3):
            with board_connection(bridge) as board:
                message = b"CONNECT %d" % n
                board.sendall(message)
                assert receive_all(board, len(message)) == message
    finally:
        bridge.close()
    assert bridge.sessions == 3
    assert broker.peers == [BOARD_CN] * 3


def test_board_without_an_identity_is_disconnected_and_the_error_kept(
    tmp_path: Path, broker: EchoBroker
) -> None:
    bridge = TlsBridge(tmp_path / "blank-flash", ("127.0.0.1", broker.port))
    try:
        with board_connection(bridge) as board:
            assert closed_by_peer(board)  # nothing to present to the broker
    finally:
        bridge.close()
    assert bridge.sessions == 0
    assert len(bridge.errors) == 1
    assert broker.peers == []


def test_close_ends_bridged_connections_and_stops_accepting(
    tmp_path: Path, ca: TestCA, broker: EchoBroker
) -> None:
    bridge = TlsBridge(flash_with_identity(tmp_path, ca), ("127.0.0.1", broker.port))
    with board_connection(bridge) as board:
        board.sendall(b"ping")
        assert receive_all(board, 4) == b"ping"
        bridge.close()
        assert closed_by_peer(board)
    with pytest.raises(ConnectionRefusedError):
        board_connection(bridge).close()
