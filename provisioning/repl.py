"""A MicroPython raw-REPL client over pyserial: what ``bankiot flash`` talks to a board with.

Written from MicroPython's documentation of the raw REPL (docs/reference/repl.rst, "Raw
mode and raw-paste mode"):

- ``Ctrl-C`` twice stops whatever runs; ``\\r Ctrl-A`` enters the raw REPL, which answers
  ``raw REPL; CTRL-B to exit\\r\\n>``.
- Raw-paste: ``Ctrl-E A Ctrl-A``; a board that has it answers ``R\\x01`` and a 16-bit
  little-endian window size, then grants one more window with ``\\x01`` each time it has
  consumed one (``\\x04`` means: stop sending). The client sends at most what it was
  granted, then ``\\x04``; the board ends the input with ``\\x04``. ``R\\x00``: understood but
  not available; anything else: a board older than raw-paste. Both fall back to plain raw
  mode (the code then ``\\x04``, answered ``OK``), sent in small pieces with pauses because
  nothing paces it.
- Either way the board then sends the code's output, ``\\x04``, its error output (a
  traceback), ``\\x04`` and the prompt ``>``.
- ``Ctrl-D`` at an empty raw prompt soft-resets (``OK``, ``MPY: soft reboot``, ``boot.py``,
  the raw prompt again); ``Ctrl-B`` returns to the friendly REPL, where ``Ctrl-D`` soft-resets
  and runs ``boot.py`` then ``main.py``.

Ports are whatever pyserial opens: ``/dev/ttyUSB0``, ``COM3``, ``socket://host:port`` (the
virtual board, ``hw/virtual_board.py``).
"""

from __future__ import annotations

import socket
import struct
import time
from types import TracebackType

import serial

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
BAUD = 115200
ANSWER_TIMEOUT = 5.0  # a board at its REPL answers in milliseconds; one in a loop, after Ctrl-C
# A board reached over the network (pyserial's socket:// or rfc2217://: ser2net, or the
# virtual board, a VM on a possibly busy host) answers as fast as that link and host allow.
NETWORK_ANSWER_TIMEOUT = 30.0
NETWORK_SCHEMES = ("socket://", "rfc2217://")
RUN_TIMEOUT = 60.0  # one piece of code (hashing the whole firmware on a slow board)
_RAW_PIECE = 256  # plain raw mode: pieces of this size, ...
_RAW_PAUSE = 0.01  # ... this far apart (the board's input buffer is 256 bytes)


class ReplError(Exception):
    """The board cannot be used as asked; the message is one line."""


class BoardNotAnswering(ReplError):
    """Nothing (or not a MicroPython raw REPL) answers on the port."""


class BoardCodeError(ReplError):
    """Code sent to the board raised; ``traceback`` is what the board printed."""

    def __init__(self, message: str, traceback: str) -> None:
        super().__init__(message)
        self.traceback = traceback


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (a traceback's exception line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class RawRepl:
    """The raw REPL of the board on ``port`` (pyserial URL or device), opened at once.

    Use as a context manager, or call :meth:`close`. ``use_raw_paste`` False forces plain
    raw mode (raw-paste is used whenever the board offers it). ``answer_timeout``: how long
    the board may take to answer at its prompt (default by the port: ``ANSWER_TIMEOUT`` on
    a serial device, ``NETWORK_ANSWER_TIMEOUT`` over the network).
    """

    def __init__(
        self,
        port: str,
        *,
        answer_timeout: float | None = None,
        run_timeout: float = RUN_TIMEOUT,
        use_raw_paste: bool = True,
    ) -> None:
        self.port = port
        if answer_timeout is None:
            remote = port.startswith(NETWORK_SCHEMES)
            answer_timeout = NETWORK_ANSWER_TIMEOUT if remote else ANSWER_TIMEOUT
        self.answer_timeout = answer_timeout
        self.run_timeout = run_timeout
        self.use_raw_paste = use_raw_paste
        self.raw_paste_used = False
        try:
            self.serial = serial.serial_for_url(port, baudrate=BAUD, timeout=answer_timeout)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise BoardNotAnswering("cannot open %s: %s" % (port, _reason(exc))) from None
        _no_delay(self.serial)
        self.in_raw = False

    def __enter__(self) -> RawRepl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Leave the raw REPL (so the board's own REPL is usable again) and close the port."""
        try:
            if self.in_raw:
                self.serial.write(b"\x02")
        except (serial.SerialException, OSError):
            pass
        self.serial.close()

    # --- reading ---------------------------------------------------------------------------
    def _read_until(self, marker: bytes, timeout: float, what: str) -> bytes:
        self.serial.timeout = timeout
        try:
            data = self.serial.read_until(marker)
        except (serial.SerialException, OSError) as exc:
            raise BoardNotAnswering(
                "the board on %s went away: %s" % (self.port, _reason(exc))
            ) from None
        if not data.endswith(marker):
            seen = data.decode(errors="replace").strip()[-200:]
            raise BoardNotAnswering(
                "the board on %s did not %s within %.0f s%s"
                % (self.port, what, timeout, " (it printed: %s)" % seen if seen else "")
            )
        return data

    def _read(self, size: int, timeout: float, what: str) -> bytes:
        self.serial.timeout = timeout
        try:
            data = self.serial.read(size)
        except (serial.SerialException, OSError) as exc:
            raise BoardNotAnswering(
                "the board on %s went away: %s" % (self.port, _reason(exc))
            ) from None
        if len(data) != size:
            raise BoardNotAnswering(
                "the board on %s did not %s within %.0f s" % (self.port, what, timeout)
            )
        return data

    def _write(self, data: bytes) -> None:
        try:
            self.serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise BoardNotAnswering(
                "the board on %s went away: %s" % (self.port, _reason(exc))
            ) from None

    # --- the raw REPL ----------------------------------------------------------------------
    def enter(self) -> None:
        """Stop whatever runs and enter the raw REPL; ``BoardNotAnswering`` if no MicroPython
        REPL answers."""
        self._write(b"\r\x03")
        time.sleep(0.1)
        self._write(b"\x03")
        time.sleep(0.1)
        self.serial.reset_input_buffer()
        self._write(b"\r\x01")
        self._read_until(RAW_BANNER, self.answer_timeout, "answer on its raw REPL")
        self.in_raw = True

    def exec(self, code: str | bytes, timeout: float | None = None) -> bytes:
        """Run ``code`` on the board; its output. ``BoardCodeError`` (the exception's line)
        if it raised."""
        out, err = self.exec_raw(code, timeout)
        if err:
            text = err.decode(errors="replace")
            raise BoardCodeError("the board said: %s" % last_line(text), text)
        return out

    def exec_raw(self, code: str | bytes, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Run ``code``; its output and its error output (a traceback, or empty)."""
        if not self.in_raw:
            self.enter()
        data = code.encode() if isinstance(code, str) else code
        if self.use_raw_paste:
            self._send_raw_paste(data)
        else:
            self._send_raw(data)
        wait = self.run_timeout if timeout is None else timeout
        out = self._read_until(b"\x04", wait, "finish running the code")[:-1]
        err = self._read_until(b"\x04", wait, "finish running the code")[:-1]
        self._read_until(b">", self.answer_timeout, "return to its raw prompt")
        return out, err

    def _send_raw(self, data: bytes) -> None:
        for start in range(0, len(data), _RAW_PIECE):
            self._write(data[start : start + _RAW_PIECE])
            time.sleep(_RAW_PAUSE)
        self._write(b"\x04")
        answer = self._read(2, self.answer_timeout, "accept the code")
        if answer != b"OK":
            raise BoardNotAnswering(
                "the board on %s refused the code (%r instead of OK)" % (self.port, answer)
            )

    def _send_raw_paste(self, data: bytes) -> None:
        self._write(b"\x05A\x01")
        answer = self._read(2, self.answer_timeout, "answer the raw-paste request")
        if answer == b"R\x00":  # understood, not available: plain raw mode from now on
            self.use_raw_paste = False
            self._send_raw(data)
            return
        if answer != b"R\x01":  # a board older than raw-paste: it printed a new raw prompt
            self._read_until(RAW_BANNER[-10:], self.answer_timeout, "return to its raw prompt")
            self.use_raw_paste = False
            self._send_raw(data)
            return
        self.raw_paste_used = True
        window = struct.unpack("<H", self._read(2, self.answer_timeout, "give its window"))[0]
        remain, sent = window, 0
        self.serial.timeout = self.answer_timeout
        while sent < len(data):
            while remain == 0 or self.serial.in_waiting:
                flow = self._read(1, self.answer_timeout, "grant more of its window")
                if flow == b"\x01":
                    remain += window
                elif flow == b"\x04":  # the board ended the input early: acknowledge
                    self._write(b"\x04")
                    return
                else:
                    raise BoardNotAnswering(
                        "the board on %s sent %r during raw-paste" % (self.port, flow)
                    )
            piece = data[sent : sent + remain]
            self._write(piece)
            remain -= len(piece)
            sent += len(piece)
        self._write(b"\x04")
        # Window grants still in flight, then the board's end of input.
        self._read_until(b"\x04", self.answer_timeout, "end the raw paste")

    def soft_reset(self) -> bytes:
        """Soft-reset in the raw REPL (``boot.py`` runs, ``main.py`` does not); what the board
        printed before its raw prompt came back."""
        if not self.in_raw:
            self.enter()
        self._write(b"\x04")
        self._read_until(SOFT_REBOOT, self.answer_timeout, "soft-reset")
        return self._read_until(RAW_BANNER, self.run_timeout, "come back after the reset")

    def reboot_and_run(self) -> None:
        """Back to the friendly REPL and soft-reset there: ``boot.py`` then ``main.py`` run
        (the firmware starts). The port stays open: :meth:`read_output` reads what it says."""
        if not self.in_raw:
            self.enter()
        self._write(b"\x02")
        self._read_until(b">>> ", self.answer_timeout, "return to its friendly REPL")
        self.in_raw = False
        self._write(b"\x04")
        self._read_until(SOFT_REBOOT, self.answer_timeout, "soft-reset")

    def read_output(self, seconds: float) -> bytes:
        """Whatever the board prints within ``seconds`` (at most that long, returns at once
        when nothing is waiting and ``seconds`` is 0)."""
        self.serial.timeout = seconds
        try:
            waiting = self.serial.in_waiting
            data = self.serial.read(max(1, waiting)) if seconds > 0 or waiting else b""
            if data:
                self.serial.timeout = 0
                data += self.serial.read(self.serial.in_waiting or 0)
        except (serial.SerialException, OSError) as exc:
            raise BoardNotAnswering(
                "the board on %s went away: %s" % (self.port, _reason(exc))
            ) from None
        return data


def _no_delay(port: serial.SerialBase) -> None:
    """On a ``socket://`` port, send each write at once: with Nagle's algorithm a small
    write (a raw-paste request, the closing ``\x04``) waits for the peer's delayed ACK,
    some 40 ms per exchange, which made copying files several times slower."""
    sock = getattr(port, "_socket", None)  # pyserial's protocol_socket keeps it there
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]
