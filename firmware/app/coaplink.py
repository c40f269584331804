"""The CoAP uplink: each sealed batch a confirmable POST to ``/batches``, over UDP.

The "one attempt" layer, like ``mqttlink``, over the core's ``coap.CoapClient``: ``open``
makes the UDP socket (CoAP has no connection, so the link is ``up`` at once), ``send``
posts one batch (``Content-Format: 16``, ``Accept: 60``), ``pump`` reads datagrams,
retransmits what timed out and acts on the answers, as the Raspberry Pi gateway's
``edge.uplink_coap`` does:

- 2.04: the body is the sealed acknowledgement, or a CBOR array of sealed envelopes (the
  ACK first, then configuration and commands); each goes to ``on_downlink(envelope,
  "batches")``;
- 4.xx: the cloud refused this batch for good (counted in ``refused``); it stays queued,
  since only an acknowledgement deletes;
- 5.03: the cloud is busy: no new request before half its Max-Age hint (at least 1 s);
- no answer after the retransmissions (``GiveUp``): the link is down (``OSError``), and
  ``uplinks`` decides what next.

One request at a time (NSTART 1). ``coaps`` (DTLS) is not supported: the envelopes are
sealed end to end either way.
"""

import errno

from bankiot_core import cbor, coap
from bankiot_core.errors import CoreError
from bankiot_core.ticks import elapsed

RESOURCE = "batches"  # the Uri-Path, and the AAD of what comes back
_MAX_DATAGRAM = 1280


def envelopes(body, content_format):
    """The sealed envelopes in a 2.04's body: the CBOR array's items, or the body itself."""
    if content_format != coap.CBOR:
        return [body]
    try:
        items = cbor.loads(body, 2)
    except CoreError:
        return [body]
    if not isinstance(items, list) or not items:
        return [body]
    for item in items:
        if not isinstance(item, bytes):
            return [body]
    return items


class CoapLink:
    """The CoAP uplink to ``host:port`` (module docstring). ``socket``: the module;
    ``rand``: ``random.getrandbits`` (message ids and tokens)."""

    name = "coap"

    def __init__(self, host, port, socket, rand):
        self.host = host
        self.port = port
        self._socket = socket
        self._rand = rand
        self.sock = None
        self.client = None
        self.address = None
        self.up = False
        self.answered = 0
        self.refused = 0
        self.busy = 0
        self.malformed = 0
        self._busy_since = None
        self._busy_ms = 0

    def open(self, now_ms):
        """Make the UDP socket. OSError if the system refuses."""
        s = self._socket
        self.address = s.getaddrinfo(self.host, self.port, 0, s.SOCK_DGRAM)[0][-1]
        sock = s.socket(s.AF_INET, s.SOCK_DGRAM)
        try:
            sock.bind(("0.0.0.0", 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.client = coap.CoapClient(self._rand, host=self.host)
        self.up = True

    def _send(self, datagrams):
        sock = self.sock
        if sock is None:
            raise OSError(errno.ENOTCONN)
        for datagram in datagrams:
            sock.sendto(datagram, self.address)

    def pump(self, now_ms, on_downlink):
        """Read what came, retransmit what timed out, act on the answers."""
        client = self.client
        sock = self.sock
        if client is None or sock is None:
            raise OSError(errno.ENOTCONN)
        if self._busy_since is not None and elapsed(now_ms, self._busy_since) >= self._busy_ms:
            self._busy_since = None  # the 5.03 pause is over
        for _ in range(8):
            try:
                data, _ = sock.recvfrom(_MAX_DATAGRAM)
            except OSError as exc:
                if exc.args and exc.args[0] in (errno.EAGAIN, errno.ETIMEDOUT):
                    break
                raise
            try:
                out = client.receive_datagram(data, now_ms)
            except CoreError:  # not CoAP: counted by the client, dropped here
                self.malformed += 1
                continue
            self._handle(out, now_ms, on_downlink)
        self._handle(client.tick(now_ms), now_ms, on_downlink)

    def _handle(self, out, now_ms, on_downlink):
        self._send(out.datagrams)
        for event in out.events:
            if isinstance(event, coap.GiveUp):
                raise OSError("CoAP: no answer from %s (%s)" % (self.host, event.reason))
            code = event.code
            if code == coap.CHANGED:
                self.answered += 1
                fmt = coap.option_value(event.options, coap.CONTENT_FORMAT)
                fmt = coap.bytes_uint(fmt) if fmt is not None else None
                for envelope in envelopes(event.payload, fmt):
                    on_downlink(envelope, RESOURCE)
            elif code == 0xA3:  # 5.03 Service Unavailable
                self.busy += 1
                hint = coap.option_value(event.options, coap.MAX_AGE)
                seconds = coap.bytes_uint(hint) if hint is not None else 2
                self._busy_since = now_ms
                self._busy_ms = max(seconds * 500, 1000)
            elif code >= 0x80 and code < 0xA0:
                self.refused += 1
            else:
                raise OSError("CoAP: answer %s" % coap.code_text(code))

    def ready(self):
        """True when a batch may be posted now (nothing in flight, not told to wait)."""
        if not self.up or self.client is None or self.client.in_flight():
            return False
        return self._busy_since is None

    def send(self, seq, envelope, now_ms):
        """POST sealed batch ``seq``; the answer comes through ``pump``."""
        client = self.client
        if client is None:
            raise OSError(errno.ENOTCONN)
        datagram = client.request(
            coap.POST,
            RESOURCE,
            envelope,
            now_ms,
            content_format=coap.COSE_ENCRYPT0,
            options=((coap.ACCEPT, coap.uint_bytes(coap.CBOR)),),
        )
        self._send([datagram])

    def close(self):
        """Forget the exchanges and close the socket."""
        sock, self.sock = self.sock, None
        self.client = None
        self.up = False
        if sock is not None:
            sock.close()
