"""One MQTT connection to the broker: the core's MQTT client over a socket, TLS verified.

The "one attempt" layer (``uplinks`` stays connected): ``open`` makes the TCP connection,
wraps it in TLS and sends CONNECT; ``pump`` moves bytes both ways and hands the events to
the gateway; any fault of the link (refused, reset, EOF, no CONNACK or PINGRESP in time, a
protocol violation) comes out as ``OSError``, after which the link is closed and not used
again.

Topics of gateway ``<uid>`` (as the Raspberry Pi gateway's, ``edge.uplink_mqtt``): batches
on ``devices/<uid>/up`` (QoS 1; the topic is the envelopes' AAD), the cloud's messages on
``devices/<uid>/down`` (subscribed, QoS 1), ``online``/``offline`` retained on
``devices/<uid>/up/status`` with ``offline`` as the will. The session persists
(clean session 0, client id = uid), so what the cloud sends while the board is away waits.

TLS: MicroPython's ``ssl`` verifies nothing by default. Here the context is built with
``CERT_REQUIRED``, the fleet CA as the only trust anchor, and ``server_hostname`` (checked
against the broker's certificate, and sent as SNI); the board presents its own certificate,
whose CN is its uid. Certificate dates need a set clock (``ntptime``) on the board.

The socket is non-blocking after the handshake: ``pump`` never waits. A write the socket
takes only in part keeps the rest for the next ``pump``.
"""

import errno

from bankiot_core import mqtt
from bankiot_core.errors import CoreError

_READ = 512


def up_topic(uid):
    """Where gateway ``uid`` publishes batches (and the AAD they are sealed with)."""
    return "devices/%s/up" % uid


def down_topic(uid):
    """Where the cloud publishes to gateway ``uid``."""
    return "devices/%s/down" % uid


def status_topic(uid):
    """Gateway ``uid``'s retained ``online`` / ``offline``."""
    return "devices/%s/up/status" % uid


def tls_wrap(ssl, sock, host, cert, key, ca):
    """``sock`` wrapped in TLS that verifies the broker (module docstring)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=ca)
    context.load_cert_chain(cert, key)
    return context.wrap_socket(sock, server_hostname=host)


class MqttLink:
    """One connection of gateway ``uid`` to ``host:port`` (module docstring).

    ``tls``: ``(cert, key, ca)`` paths, or None for plain MQTT (tests, a broker on the same
    network segment); ``socket`` and ``ssl``: the modules (given, so tests can pass their
    stand-ins); ``timeout_ms``: the longest wait for the TCP connection, the handshake, the
    CONNACK or a PINGRESP.
    """

    name = "mqtt"

    def __init__(
        self, uid, host, port, socket, ssl=None, tls=None, keepalive_s=30, timeout_ms=10000
    ):
        self.uid = uid
        self.host = host
        self.port = port
        self.tls = tls
        self.keepalive_s = keepalive_s
        self.timeout_ms = timeout_ms
        self._socket = socket
        self._ssl = ssl
        self.topic = up_topic(uid)
        self.down = down_topic(uid)
        self.sock = None
        self.client = None
        self.up = False  # CONNACK accepted and the downlink subscribed
        self._out = b""
        self._sub_id = None
        self.published = 0
        self.pubacks = 0
        self.unclean_closes = 0

    def open(self, now_ms):
        """Connect, secure, send CONNECT. OSError if the connection cannot be made."""
        if self.tls is not None and self._ssl is None:
            raise OSError("TLS asked for but no ssl module")
        s = self._socket
        address = s.getaddrinfo(self.host, self.port, 0, s.SOCK_STREAM)[0][-1]
        sock = s.socket(s.AF_INET, s.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout_ms / 1000)
            sock.connect(address)
            if self.tls is not None:
                sock = tls_wrap(self._ssl, sock, self.host, self.tls[0], self.tls[1], self.tls[2])
            sock.setblocking(False)
        except Exception:
            sock.close()
            raise
        self.sock = sock
        self.client = mqtt.MqttClient(
            max_inflight=8, retry_ms=0, response_timeout_ms=self.timeout_ms
        )
        will = (status_topic(self.uid), b"offline", 1, True)
        self._out = b""
        self._write(
            self.client.connect(
                self.uid, now_ms, keepalive=self.keepalive_s, clean_session=False, will=will
            )
        )

    def _write(self, data):
        if data:
            self._out = self._out + data if self._out else bytes(data)
        sock = self.sock
        if sock is None:
            raise OSError(errno.ENOTCONN)
        while self._out:
            try:
                n = sock.write(self._out)
            except OSError as exc:
                if exc.args and exc.args[0] == errno.EAGAIN:
                    return
                raise
            if not n:
                return
            self._out = self._out[n:]

    def _read(self):
        sock = self.sock
        if sock is None:
            raise OSError(errno.ENOTCONN)
        try:
            data = sock.read(_READ)
        except OSError as exc:
            if exc.args and exc.args[0] in (errno.EAGAIN, errno.ETIMEDOUT):
                return None
            raise
        if data is not None and not data:
            raise OSError(errno.ECONNRESET)  # EOF: the broker closed the connection
        return data

    def pump(self, now_ms, on_downlink):
        """Move bytes both ways; downlink messages go to ``on_downlink(payload, topic)``."""
        client = self.client
        if client is None:
            raise OSError(errno.ENOTCONN)
        try:
            for _ in range(8):  # bounded: other tasks get their turn
                data = self._read()
                if not data:
                    break
                client.receive_data(data, now_ms)
            while True:
                event = client.next_event()
                if event is mqtt.NEED_DATA:
                    break
                self._on_event(event, now_ms, on_downlink)
        except CoreError as exc:  # a protocol violation: the connection is finished
            raise OSError("MQTT: %s" % exc) from None
        self._write(client.tick(now_ms))

    def _on_event(self, event, now_ms, on_downlink):
        client = self.client
        if client is None:
            raise OSError(errno.ENOTCONN)
        if isinstance(event, mqtt.ConnAck):
            if event.return_code:
                raise OSError("MQTT: CONNACK refused: %d" % event.return_code)
            self._write(client.subscribe([(self.down, 1)], now_ms))
            self._sub_id = client.packet_id
            self._write(client.publish(status_topic(self.uid), b"online", now_ms, 1, True))
        elif isinstance(event, mqtt.SubAck):
            if event.packet_id == self._sub_id:
                if event.return_codes[0] == mqtt.SUBACK_FAILURE:
                    raise OSError("MQTT: downlink subscription refused")
                self.up = True
        elif isinstance(event, mqtt.Publish):
            on_downlink(event.payload, event.topic)
        elif isinstance(event, mqtt.PubAck):
            self.pubacks += 1
        elif isinstance(event, mqtt.LinkDead):
            raise OSError("MQTT: %s" % event.reason)

    def ready(self):
        """True when a batch may be sent now (connected, subscribed, window open)."""
        client = self.client
        return self.up and client is not None and len(client.inflight) < client.max_inflight - 1

    def send(self, seq, envelope, now_ms):
        """Publish sealed batch ``seq`` (QoS 1; the PUBACK only means the broker has it)."""
        client = self.client
        if client is None:
            raise OSError(errno.ENOTCONN)
        self._write(client.publish(self.topic, envelope, now_ms, 1))
        self.published += 1

    def close(self):
        """An orderly DISCONNECT as far as the link allows, then close the socket."""
        sock, self.sock = self.sock, None
        client, self.client = self.client, None
        self.up = False
        if sock is None:
            return
        if client is not None and client.state == mqtt.CONNECTED:
            try:
                sock.write(client.publish(status_topic(self.uid), b"offline", 0, 0, True))
                sock.write(client.disconnect())
            except OSError:
                self.unclean_closes += 1  # the will message says "offline" instead
        try:
            sock.close()
        except OSError:
            self.unclean_closes += 1
