"""HTTP GET over the board's socket, in pieces: how a board downloads a release.

The cloud serves releases to devices over HTTP(S) (``/releases/v1/<id>/manifest.json``,
``manifest.sig`` and ``blobs/<sha256>``: ``cloud/fleet/release_views.py``), as the
Raspberry Pi gateway fetches them (``edge/updates.py``). A board has no HTTP client, and a
whole one is not needed: one GET per connection, HTTP/1.0 (``Connection: close``: no
chunked encoding, no keep-alive), status 200 or a failure, the body up to
``Content-Length`` (or to the end of the stream without one). What arrives is trusted by
nothing here: every byte is checked against the signed (or MAC'd) manifest by the caller.

``Http(socket, ssl, scheme, host, port, ca)`` knows where; ``get(path, clock)`` is a
generator that yields None while it waits for the network and ``bytes`` of the body as
they come, so the board's loop keeps turning (the socket is non-blocking after connect
and TLS). Any fault (refused, reset, a status other than 200, a body cut short, nothing
for ``timeout_ms``) is ``OSError`` with a one-line message. ``https`` verifies the server
as ``mqttlink.tls_wrap`` does (``CERT_REQUIRED``, the CA file, ``server_hostname``).
"""

import errno

from bankiot_core.ticks import elapsed

_READ = 1024
_MAX_HEAD = 4096


class Http:
    """Where releases come from: ``scheme`` ``http`` or ``https``, ``host``, ``port``;
    ``ca``: the CA file an ``https`` server's certificate must chain to."""

    def __init__(self, socket, ssl, scheme, host, port, ca=None, timeout_ms=15000):
        self.socket = socket
        self.ssl = ssl
        self.scheme = scheme
        self.host = host
        self.port = port
        self.ca = ca
        self.timeout_ms = timeout_ms
        self.requests = 0

    def _connect(self):
        s = self.socket
        address = s.getaddrinfo(self.host, self.port, 0, s.SOCK_STREAM)[0][-1]
        sock = s.socket(s.AF_INET, s.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout_ms / 1000)
            sock.connect(address)
            if self.scheme == "https":
                if self.ssl is None or self.ca is None:
                    raise OSError("https needs the ssl module and a CA file")
                context = self.ssl.SSLContext(self.ssl.PROTOCOL_TLS_CLIENT)
                context.verify_mode = self.ssl.CERT_REQUIRED
                context.load_verify_locations(cafile=self.ca)
                sock = context.wrap_socket(sock, server_hostname=self.host)
            sock.setblocking(False)
        except Exception:
            sock.close()
            raise
        return sock

    def get(self, path, clock):
        """The body of ``GET path`` in pieces (module docstring); ``clock`` gives ms."""
        self.requests += 1
        sock = self._connect()
        try:
            request = (
                "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: bankiot-board\r\n"
                "Connection: close\r\n\r\n" % (path, self.host)
            ).encode()
            while request:
                n = _write(sock, request)
                request = request[n:]
                if request:
                    yield None
            head = b""
            last = clock()
            while True:
                data = _read(sock)
                if data is None:
                    if elapsed(clock(), last) >= self.timeout_ms:
                        raise OSError("GET %s: no answer within %d ms" % (path, self.timeout_ms))
                    yield None
                    continue
                if not data:
                    raise OSError("GET %s: the connection closed before the headers" % path)
                last = clock()
                head += data
                end = head.find(b"\r\n\r\n")
                if end >= 0:
                    break
                if len(head) > _MAX_HEAD:
                    raise OSError("GET %s: headers over %d bytes" % (path, _MAX_HEAD))
            body = head[end + 4 :]
            length = _parse_head(path, head[:end])
            received = 0
            while True:
                if body:
                    if length is not None and received + len(body) > length:
                        body = body[: length - received]
                    received += len(body)
                    yield body
                if length is not None and received >= length:
                    return
                body = _read(sock)
                if body is None:
                    if elapsed(clock(), last) >= self.timeout_ms:
                        raise OSError("GET %s: stalled after %d bytes" % (path, received))
                    yield None
                    continue
                if not body:
                    if length is not None:
                        raise OSError("GET %s: %d of %d bytes" % (path, received, length))
                    return
                last = clock()
        finally:
            sock.close()


def _write(sock, data):
    try:
        n = sock.write(data)
    except OSError as exc:
        if exc.args and exc.args[0] == errno.EAGAIN:
            return 0
        raise
    return n or 0


def _read(sock):
    try:
        return sock.read(_READ)
    except OSError as exc:
        if exc.args and exc.args[0] in (errno.EAGAIN, errno.ETIMEDOUT):
            return None
        raise


def _parse_head(path, head):
    """The Content-Length in ``head`` (None if absent); OSError unless the status is 200."""
    lines = head.decode().split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise OSError("GET %s: not an HTTP answer" % path)
    if parts[1] != "200":
        raise OSError("GET %s: HTTP %s" % (path, parts[1]))
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            value = value.strip()
            if not value.isdigit():
                raise OSError("GET %s: bad Content-Length" % path)
            return int(value)
    return None
