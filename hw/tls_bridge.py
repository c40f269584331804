"""A TLS bridge for the virtual ESP32: its ``ssl`` is a stand-in that encrypts nothing.

The firmware speaks MQTT over TLS to the cloud's Mosquitto, which requires client
certificates. ``TlsBridge`` accepts the board's plain connections (route the broker's
address to it, ``VirtualBoard(routes=...)``) and carries each over real TLS to the broker,
presenting the certificate and key ``bankiot flash`` wrote on the board's flash and
verifying the broker against the board's ``ca.pem``, exactly as the board's ``ssl`` would.
Used by the flash tests and by ``make demo``.

Every connection is served by one asyncio event loop in one background thread. A TLS
connection must not be read in one thread while another writes it: CPython 3.11's ``ssl``
calls OpenSSL's ``SSL_read`` and ``SSL_write`` on the same connection concurrently then,
which can crash the interpreter (python/cpython#151508). asyncio's TLS touches each
connection from its loop's thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from pathlib import Path

CONNECT_LIMIT_S = 60.0  # TCP connect and TLS handshake to the broker; generous under load
STOP_LIMIT_S = 10.0


class TlsBridge:
    """Accepts the board's plain connections on ``port`` and carries them over TLS to
    ``target``, presenting the board's own certificate (read from ``flash`` when it
    connects). ``sessions`` counts the bridged connections, ``errors`` what failed."""

    def __init__(self, flash: Path, target: tuple[str, int]) -> None:
        self.flash = flash
        self.target = target
        # Listening before the constructor returns: the port is known and a board that
        # connects at once waits in the backlog until the loop accepts it.
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.sessions = 0
        self.errors: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._started = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tls-bridge", daemon=True)
        self._thread.start()

    # --- the loop's thread -------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._bridge, sock=self._listener)
            )
        except OSError as exc:
            self.errors.append("cannot accept: %s" % exc)
        finally:
            self._started.set()
        if self._server is not None:
            self._loop.run_forever()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _bridge(
        self, board_in: asyncio.StreamReader, board_out: asyncio.StreamWriter
    ) -> None:
        self._transports.add(board_out.transport)
        identity = self.flash / "identity"
        try:
            context = ssl.create_default_context(cafile=str(identity / "ca.pem"))
            context.load_cert_chain(identity / "device.crt", identity / "device.key")
            broker_in, broker_out = await asyncio.wait_for(
                asyncio.open_connection(*self.target, ssl=context, server_hostname=self.target[0]),
                CONNECT_LIMIT_S,
            )
        except OSError as exc:  # ssl.SSLError and TimeoutError are OSErrors
            self.errors.append(str(exc) or type(exc).__name__)
            self._end(board_out)
            return
        self._transports.add(broker_out.transport)
        self.sessions += 1
        pumps = [
            asyncio.ensure_future(self._pump(board_in, broker_out)),
            asyncio.ensure_future(self._pump(broker_in, board_out)),
        ]
        try:
            # Either side closing ends the session, as a board's connection would end.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._end(broker_out)
            self._end(board_out)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):  # a reset on either side ends the session
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

    def _end(self, writer: asyncio.StreamWriter) -> None:
        self._transports.discard(writer.transport)
        writer.transport.abort()  # no close_notify wait: the peer on the other side is gone

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()
        self._loop.stop()

    # --- the caller's thread -----------------------------------------------------------
    def close(self) -> None:
        """Stop accepting and end the bridged connections."""
        if self._closed:
            return
        self._closed = True
        self._started.wait()
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(STOP_LIMIT_S)
        self._listener.close()
