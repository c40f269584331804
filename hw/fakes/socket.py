"""Test stand-in for MicroPython's ``socket`` module (never installed on a board).

The WebAssembly port has no network. This module gives firmware code the boards' socket
interface over in-memory links inside one VM: a test binds and listens on an address, the
code under test connects to it, and both ends exchange bytes. TCP-like streams and UDP-like
datagrams; non-blocking or with a timeout, but nothing can wait for the other side (there
is no other thread), so a read with nothing to read raises ``OSError(EAGAIN)`` when
non-blocking and ``OSError(ETIMEDOUT)`` otherwise, as a board's socket would once its
timeout expired. Test hooks: ``_reset()``, ``_break(addr)`` (the peer vanishes: reads return
b"" and writes raise ``ECONNRESET``).

On the virtual board (hw/virtual_board.py) a stream ``connect`` to an address nobody in the
VM listens on goes to the host instead: a real TCP connection the host makes, with the
board's blocking, timeout and non-blocking behaviour. Likewise a datagram ``sendto`` an
address nobody in the VM has bound: the socket gets a real UDP socket on the host (bound
to a free port there, at its first such ``sendto``), and from then on ``recvfrom`` also
returns what the host's socket received, blocking, with a timeout or non-blocking as the
socket says (``EAGAIN``, ``ETIMEDOUT``, as a board's). Names are resolved by the host when
it sends (``getaddrinfo`` here returns the name as given). The host's socket is not bound
to the port the board's code binds: a host peer can answer the board, not reach it first.
"""

import errno
import json

AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1
SOCK_DGRAM = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17
SOL_SOCKET = 1
SO_REUSEADDR = 4

_listeners = {}  # address -> listening socket (stream) or bound socket (datagram)


def _reset():
    """Forget every bound socket (between test cases)."""
    _listeners.clear()


def _break(address):
    """The host at ``address`` goes away: its connections drop, it no longer listens."""
    sock = _listeners.pop(_norm(address), None)
    if sock is not None:
        for peer in sock._accepted:
            peer._drop()


def _norm(address):
    return (address[0], int(address[1]))


def _host_link():
    try:
        import _vboard  # the virtual board's host link; absent elsewhere
    except ImportError:
        return None
    return _vboard


def _host_call(op, args):
    """One request to the host's network; raises OSError with the host's errno."""
    args["op"] = op
    reply = json.loads(_host_link().net(json.dumps(args)))
    if "errno" in reply:
        raise OSError(reply["errno"])
    return reply["ok"]


def _timeout_ms(timeout):
    return None if timeout is None else int(timeout * 1000)


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    return [(AF_INET, type or SOCK_STREAM, proto, "", (host, port))]


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        self.type = type
        self._inbox = bytearray()  # stream bytes waiting to be read
        self._datagrams = []  # (data, sender) waiting to be received
        self._peer = None
        self._local = None
        self._pending = []  # stream connections not yet accepted
        self._accepted = []
        self._listening = False
        self._closed = False
        self._reset_by_peer = False
        self._timeout = None  # None: blocking
        self._host = None  # connection id on the host (virtual board)

    # --- set-up --------------------------------------------------------------------
    def setsockopt(self, level, option, value):
        pass

    def settimeout(self, value):
        self._timeout = value

    def setblocking(self, flag):
        self._timeout = None if flag else 0

    def bind(self, address):
        address = _norm(address)
        if address in _listeners:
            raise OSError(errno.EADDRINUSE)
        self._local = address
        if self.type == SOCK_DGRAM:
            _listeners[address] = self

    def listen(self, backlog=1):
        if self._local is None:
            raise OSError(errno.EINVAL)
        self._listening = True
        _listeners[self._local] = self

    def accept(self):
        if not self._pending:
            self._would_block()
        conn = self._pending.pop(0)
        self._accepted.append(conn)
        return conn, conn._peer_address

    def connect(self, address):
        address = _norm(address)
        server = _listeners.get(address)
        if server is None and _host_link() is not None:
            args = {"host": address[0], "port": address[1]}
            args["timeout"] = _timeout_ms(self._timeout)
            self._host = _host_call("connect", args)
            return
        if server is None or not server._listening:
            raise OSError(errno.ECONNREFUSED)
        conn = socket(AF_INET, SOCK_STREAM)
        conn._peer = self
        conn._peer_address = ("127.0.0.1", 40000 + len(server._accepted) + len(server._pending))
        self._peer = conn
        server._pending.append(conn)

    # --- streams ---------------------------------------------------------------------
    def send(self, data):
        if self._closed:
            raise OSError(errno.EBADF)
        if self._host is not None:
            return _host_call("send", {"id": self._host, "data": bytes(data).hex()})
        if self._reset_by_peer or self._peer is None or self._peer._closed:
            raise OSError(errno.ECONNRESET)
        self._peer._inbox.extend(data)
        return len(data)

    def write(self, data):
        return self.send(data)

    def sendall(self, data):
        self.send(data)

    def recv(self, n):
        if self._host is not None:
            args = {"id": self._host, "n": n, "timeout": _timeout_ms(self._timeout)}
            return bytes.fromhex(_host_call("recv", args))
        if self._inbox:
            out = bytes(self._inbox[:n])
            self._inbox = self._inbox[n:]
            return out
        if self._reset_by_peer or (self._peer is not None and self._peer._closed):
            return b""
        self._would_block()

    def read(self, n=-1):
        if n < 0:
            n = 4096 if self._host is not None else len(self._inbox)
        try:
            return self.recv(n)
        except OSError as exc:
            if exc.args[0] == errno.EAGAIN:
                return None  # a non-blocking stream read with nothing to read
            raise

    def readinto(self, buf, n=-1):
        data = self.read(len(buf) if n < 0 else n)
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)

    # --- datagrams -------------------------------------------------------------------
    def sendto(self, data, address):
        if self._closed:
            raise OSError(errno.EBADF)
        address = _norm(address)
        target = _listeners.get(address)
        if target is not None and target.type == SOCK_DGRAM and not target._closed:
            target._datagrams.append((bytes(data), self._local or ("127.0.0.1", 50000)))
            return len(data)
        if _host_link() is not None:
            if self._host is None:
                self._host = _host_call("udp_open", {})
            args = {"id": self._host, "data": bytes(data).hex()}
            args["host"], args["port"] = address
            return _host_call("sendto", args)
        return len(data)  # UDP: delivery is not promised

    def recvfrom(self, n):
        if self._closed:
            raise OSError(errno.EBADF)
        if self._datagrams:
            data, sender = self._datagrams.pop(0)
            return data[:n], sender
        if self._host is not None:
            args = {"id": self._host, "n": n, "timeout": _timeout_ms(self._timeout)}
            data, host, port = _host_call("recvfrom", args)
            return bytes.fromhex(data), (host, port)
        self._would_block()

    # --- end -------------------------------------------------------------------------
    def close(self):
        if self._host is not None and not self._closed:
            _host_call("close", {"id": self._host})
        self._closed = True
        if self._local is not None and _listeners.get(self._local) is self:
            del _listeners[self._local]

    def _drop(self):
        self._reset_by_peer = True
        if self._peer is not None:
            self._peer._reset_by_peer = True

    def _would_block(self):
        raise OSError(errno.EAGAIN if self._timeout == 0 else errno.ETIMEDOUT)
