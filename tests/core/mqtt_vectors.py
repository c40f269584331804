"""Golden MQTT 3.1.1 byte vectors for bankiot_core.mqtt, runnable under CPython and MicroPython.

Every packet below was written by hand from the OASIS MQTT 3.1.1 standard (29 October 2014):
fixed header (2.2), remaining length (2.2.3, table 2.4), UTF-8 strings (1.5.3), CONNECT
(3.1), CONNACK (3.2), PUBLISH (3.3, with the spec's topic "a/b" and packet id 10 example),
PUBACK (3.4), SUBSCRIBE (3.8), SUBACK (3.9), UNSUBSCRIBE (3.10), UNSUBACK (3.11), PINGREQ,
PINGRESP and DISCONNECT (3.12 to 3.14). ``run_all()`` makes the client encode and decode them
on whichever interpreter runs this file; ``tests/core/test_mqtt.py`` compares the result with
``expected()`` on CPython, and again under real MicroPython (installed as
``/lib/mqtt_vectors.py``). The CPython test also checks the encodings against paho-mqtt.

Written in the common subset: no f-strings, no annotations.
"""

import binascii

from bankiot_core import mqtt
from bankiot_core.errors import CoreError

# --- Client to server ------------------------------------------------------------------------

CONNECT_FULL = (
    b"\x10\x44"  # CONNECT; remaining length 10 + 14 + 21 + 9 + 6 + 8 = 68
    b"\x00\x04MQTT"  # protocol name
    b"\x04"  # protocol level 4 (3.1.1)
    b"\xee"  # user name 0x80, password 0x40, will retain 0x20, will QoS 1 (0x08), will 0x04,
    # clean session 0x02
    b"\x00\x3c"  # keep alive 60 s
    b"\x00\x0cbankiot-gw-1"  # client identifier
    b"\x00\x13devices/gw-1/status"  # will topic
    b"\x00\x07offline"  # will message
    b"\x00\x04gw-1"  # user name
    b"\x00\x06s3cret"  # password
)
CONNECT_MINIMAL = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x00\x00\x01c"  # clean session, keepalive 0
CONNECT_USER_ONLY = (
    b"\x10\x11\x00\x04MQTT\x04"
    b"\x80"  # user name only; clean session 0
    b"\xff\xff"  # keep alive 65535 s
    b"\x00\x02gw"
    b"\x00\x01u"
)
PUBLISH_QOS0 = b"\x30\x07\x00\x03a/bhi"  # type 3, flags 0; 2 + 3 + 2 bytes
PUBLISH_QOS0_RETAIN = b"\x31\x07\x00\x03a/bhi"
PUBLISH_QOS1 = b"\x32\x09\x00\x03a/b\x00\x01hi"  # QoS 1 (flags 0b0010), packet id 1
PUBLISH_QOS1_DUP = b"\x3a\x09\x00\x03a/b\x00\x01hi"  # DUP 0x08 | QoS 1
PUBLISH_QOS1_DUP_RETAIN_10 = b"\x3b\x09\x00\x03a/b\x00\x0ahi"  # the spec's id 10
SUBSCRIBE = (
    b"\x82\x0e"  # SUBSCRIBE, reserved flags 0b0010; 2 + 6 + 6
    b"\x00\x01"  # packet id 1
    b"\x00\x03a/b\x01"  # filter "a/b", QoS 1
    b"\x00\x03c/+\x00"  # filter "c/+", QoS 0
)
UNSUBSCRIBE = b"\xa2\x07\x00\x01\x00\x03a/b"  # reserved flags 0b0010
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
PUBACK_10 = b"\x40\x02\x00\x0a"

# --- Server to client ------------------------------------------------------------------------

CONNACK_OK = b"\x20\x02\x00\x00"
CONNACK_SESSION = b"\x20\x02\x01\x00"  # session present
CONNACK_NOT_AUTHORIZED = b"\x20\x02\x00\x05"
PUBACK_1 = b"\x40\x02\x00\x01"
SUBACK = b"\x90\x04\x00\x01\x01\x80"  # id 1: QoS 1 granted, then failure 0x80
UNSUBACK = b"\xb0\x02\x00\x01"
PINGRESP = b"\xd0\x00"
PINGRESP_OVERLONG = b"\xd0\x80\x00"  # remaining length 0 in two bytes: allowed by 3.1.1

# Remaining length (table 2.4): the values at each size boundary.
REMAINING_LENGTHS = (
    (0, "00"),
    (127, "7f"),
    (128, "8001"),
    (16383, "ff7f"),
    (16384, "808001"),
    (2097151, "ffff7f"),
    (2097152, "80808001"),
    (268435455, "ffffff7f"),
)

# PUBLISH QoS 0 to topic "t" with remaining length n: fixed header, 00 01 74, n - 3 zeros.
PUBLISH_SIZES = (127, 128, 16383, 16384, 2097151, 2097152)


def publish_of_length(n):
    return b"\x30" + binascii.unhexlify(dict(REMAINING_LENGTHS)[n]) + b"\x00\x01t" + bytes(n - 3)


# Malformed or unexpected input: (name, state to be in, bytes). Each must raise DecodeError
# and leave the client CLOSING.
MALFORMED = (
    ("remaining length of 5 bytes", "connected", b"\x30\xff\xff\xff\xff\x01"),
    ("reserved type 0", "connected", b"\x00\x00"),
    ("reserved type 15", "connected", b"\xf0\x00"),
    ("CONNECT from the server", "connected", CONNECT_MINIMAL),
    ("SUBSCRIBE from the server", "connected", SUBSCRIBE),
    ("PINGREQ from the server", "connected", PINGREQ),
    ("PUBREC (QoS 2 flow)", "connected", b"\x50\x02\x00\x01"),
    ("PUBACK with flags", "connected", b"\x41\x02\x00\x01"),
    ("PUBACK with packet id 0", "connected", b"\x40\x02\x00\x00"),
    ("PUBACK of length 3", "connected", b"\x40\x03\x00\x01\x00"),
    ("PINGRESP of length 1", "connected", b"\xd0\x01\x00"),
    ("SUBACK too short", "connected", b"\x90\x02\x00\x01"),
    ("SUBACK for no SUBSCRIBE", "connected", SUBACK),
    ("UNSUBACK for no UNSUBSCRIBE", "connected", UNSUBACK),
    ("PUBLISH QoS 3", "connected", b"\x36\x09\x00\x03a/b\x00\x01hi"),
    ("PUBLISH QoS 2", "connected", b"\x34\x09\x00\x03a/b\x00\x01hi"),
    ("PUBLISH QoS 0 with DUP", "connected", b"\x38\x07\x00\x03a/bhi"),
    ("PUBLISH QoS 1 with packet id 0", "connected", b"\x32\x09\x00\x03a/b\x00\x00hi"),
    ("PUBLISH topic past the end", "connected", b"\x30\x03\x00\x05a"),
    ("PUBLISH without room for the packet id", "connected", b"\x32\x05\x00\x03a/b"),
    ("PUBLISH with remaining length 1", "connected", b"\x30\x01\x00"),
    ("PUBLISH empty topic", "connected", b"\x30\x04\x00\x00hi"),
    ("PUBLISH topic with #", "connected", b"\x30\x05\x00\x03a/#"),
    ("PUBLISH topic with +", "connected", b"\x30\x05\x00\x03+/b"),
    ("PUBLISH topic with U+0000", "connected", b"\x30\x05\x00\x03a\x00b"),
    ("PUBLISH topic with a surrogate", "connected", b"\x30\x05\x00\x03\xed\xa0\x80"),
    ("PUBLISH topic overlong /", "connected", b"\x30\x04\x00\x02\xc0\xaf"),
    ("PUBLISH topic above U+10FFFF", "connected", b"\x30\x06\x00\x04\xf4\x90\x80\x80"),
    ("PUBLISH topic truncated sequence", "connected", b"\x30\x04\x00\x02a\xc3"),
    ("PUBLISH before CONNACK", "connecting", PUBLISH_QOS0),
    ("PINGRESP before CONNACK", "connecting", PINGRESP),
    ("CONNACK twice", "connected", CONNACK_OK),
    ("CONNACK reserved flags", "connecting", b"\x20\x02\x02\x00"),
    ("CONNACK refused with session present", "connecting", b"\x20\x02\x01\x05"),
    ("CONNACK return code 6", "connecting", b"\x20\x02\x00\x06"),
    ("CONNACK of length 3", "connecting", b"\x20\x03\x00\x00\x00"),
    ("packet over max_packet", "connected", b"\x30\x81\x80\x01"),  # 16385 > 16384
)


def hexa(data):
    return binascii.hexlify(bytes(data)).decode()


def event_json(event):
    """An event as JSON: [type name, fields...], bytes as hex, tuples as lists."""
    if event is mqtt.NEED_DATA:
        return "NEED_DATA"
    out = []
    out.append(type(event).__name__)
    for value in event:
        if isinstance(value, (bytes, bytearray)):
            value = hexa(value)
        elif isinstance(value, tuple):
            value = list(value)
        out.append(value)
    return out


def connecting(**options):
    client = mqtt.MqttClient(**options)
    client.connect("c", 0)
    return client


def connected(**options):
    client = connecting(**options)
    client.receive_data(CONNACK_OK, 0)
    client.next_event()
    return client


def encodings():
    """What the client encodes for each golden client-to-server packet, as hex."""
    out = {}
    out["connect_full"] = mqtt.MqttClient().connect(
        "bankiot-gw-1",
        0,
        username="gw-1",
        password=b"s3cret",
        keepalive=60,
        will=mqtt.Will("devices/gw-1/status", b"offline", 1, True),
    )
    out["connect_minimal"] = mqtt.MqttClient().connect("c", 0, keepalive=0)
    out["connect_user_only"] = mqtt.MqttClient().connect(
        "gw", 0, username="u", keepalive=65535, clean_session=False
    )
    out["publish_qos0"] = connected().publish("a/b", b"hi", 0)
    out["publish_qos0_retain"] = connected().publish("a/b", b"hi", 0, retain=True)
    out["publish_qos1"] = connected().publish("a/b", b"hi", 0, qos=1)
    client = connected(retry_ms=1000)
    client.publish("a/b", b"hi", 0, qos=1)
    out["tick_before_retry"] = client.tick(999)
    out["publish_qos1_dup"] = client.tick(1000)
    # Lost before its PUBACK: re-sent with DUP after the next CONNACK (MQTT-4.4.0-1).
    client = connected()
    client.publish("a/b", b"hi", 0, qos=1)
    client.connection_lost()
    out["reconnect"] = client.connect("c", 5)
    out["tick_before_connack"] = client.tick(6)
    client.receive_data(CONNACK_OK, 7)
    client.next_event()
    out["resent_after_connack"] = client.tick(7)
    # Published while disconnected: leaves after the CONNACK, without DUP (never sent).
    client = mqtt.MqttClient()
    out["publish_while_idle"] = client.publish("a/b", b"hi", 0, qos=1)
    client.connect("c", 0)
    client.receive_data(CONNACK_OK, 0)
    client.next_event()
    out["sent_after_connack"] = client.tick(0)
    out["subscribe"] = connected().subscribe([("a/b", 1), ("c/+", 0)], 0)
    out["unsubscribe"] = connected().unsubscribe(["a/b"], 0)
    out["pingreq"] = connected().ping(0)
    out["disconnect"] = connected().disconnect()
    client = connected()
    client.receive_data(PUBLISH_QOS1_DUP_RETAIN_10, 0)
    client.next_event()
    out["puback"] = client.data_to_send()
    # PUBACK queued by next_event goes out before the next packet.
    client = connected()
    client.receive_data(PUBLISH_QOS1_DUP_RETAIN_10, 0)
    client.next_event()
    out["puback_then_publish"] = client.publish("a/b", b"hi", 0)
    # Keepalive 60 s: a PINGREQ once 60 000 ms pass without sending.
    client = mqtt.MqttClient()
    client.connect("c", 0, keepalive=60)
    client.receive_data(CONNACK_OK, 0)
    client.next_event()
    out["keepalive_59999"] = client.tick(59999)
    out["keepalive_60000"] = client.tick(60000)
    result = {}
    for name in out:
        result[name] = hexa(out[name])
    return result


def expected_encodings():
    return {
        "connect_full": hexa(CONNECT_FULL),
        "connect_minimal": hexa(CONNECT_MINIMAL),
        "connect_user_only": hexa(CONNECT_USER_ONLY),
        "publish_qos0": hexa(PUBLISH_QOS0),
        "publish_qos0_retain": hexa(PUBLISH_QOS0_RETAIN),
        "publish_qos1": hexa(PUBLISH_QOS1),
        "tick_before_retry": "",
        "publish_qos1_dup": hexa(PUBLISH_QOS1_DUP),
        "reconnect": hexa(CONNECT_MINIMAL[:-5] + b"\x00\x3c\x00\x01c"),  # keepalive 60
        "tick_before_connack": "",
        "resent_after_connack": hexa(PUBLISH_QOS1_DUP),
        "publish_while_idle": "",
        "sent_after_connack": hexa(PUBLISH_QOS1),
        "subscribe": hexa(SUBSCRIBE),
        "unsubscribe": hexa(UNSUBSCRIBE),
        "pingreq": hexa(PINGREQ),
        "disconnect": hexa(DISCONNECT),
        "puback": hexa(PUBACK_10),
        "puback_then_publish": hexa(PUBACK_10 + PUBLISH_QOS0),
        "keepalive_59999": "",
        "keepalive_60000": hexa(PINGREQ),
    }


def _drain(client):
    events = []
    while True:
        event = client.next_event()
        events.append(event_json(event))
        if event is mqtt.NEED_DATA:
            return events


def decodings():
    """Events the client decodes from golden server-to-client packets."""
    out = {}
    client = connecting()
    client.receive_data(CONNACK_OK, 0)
    out["connack_ok"] = [_drain(client), client.state]
    client = mqtt.MqttClient()
    client.connect("c", 0, clean_session=False)
    client.receive_data(CONNACK_SESSION, 0)
    out["connack_session"] = [_drain(client), client.state]
    client = connecting()
    client.receive_data(CONNACK_NOT_AUTHORIZED, 0)
    out["connack_refused"] = [_drain(client), client.state]
    client = connected()
    client.receive_data(PUBLISH_QOS0 + PUBLISH_QOS1_DUP_RETAIN_10, 0)
    out["publish_qos0_and_qos1"] = [_drain(client), hexa(client.data_to_send())]
    client = connected()
    client.publish("a/b", b"hi", 0, qos=1)
    client.receive_data(PUBACK_1, 0)
    out["puback"] = [_drain(client), client.inflight]
    client.receive_data(PUBACK_1, 0)  # again: no message in flight, dropped and counted
    out["puback_stray"] = [_drain(client), client.stray_acks]
    client = connected()
    client.subscribe([("a/b", 1), ("c/+", 0)], 0)
    client.receive_data(SUBACK, 0)
    out["suback"] = _drain(client)
    client = connected()
    client.unsubscribe(["a/b"], 0)
    client.receive_data(UNSUBACK, 0)
    out["unsuback"] = _drain(client)
    client = connected()
    client.receive_data(PINGRESP + PINGRESP_OVERLONG, 0)
    out["pingresp"] = _drain(client)
    # One byte at a time: nothing until the last byte.
    client = connected()
    steps = []
    for i in range(len(PUBLISH_QOS1_DUP_RETAIN_10)):
        client.receive_data(PUBLISH_QOS1_DUP_RETAIN_10[i : i + 1], 0)
        steps.append(event_json(client.next_event()))
    out["byte_by_byte"] = steps
    return out


def expected_decodings():
    publish0 = ["Publish", "a/b", "6869", 0, 0, False, False]
    publish1 = ["Publish", "a/b", "6869", 1, 10, True, True]
    return {
        "connack_ok": [[["ConnAck", False, 0], "NEED_DATA"], "CONNECTED"],
        "connack_session": [[["ConnAck", True, 0], "NEED_DATA"], "CONNECTED"],
        "connack_refused": [[["ConnAck", False, 5], "NEED_DATA"], "CLOSING"],
        "publish_qos0_and_qos1": [[publish0, publish1, "NEED_DATA"], hexa(PUBACK_10)],
        "puback": [[["PubAck", 1], "NEED_DATA"], []],
        "puback_stray": [["NEED_DATA"], 1],
        "suback": [["SubAck", 1, [1, 128]], "NEED_DATA"],
        "unsuback": [["UnsubAck", 1], "NEED_DATA"],
        "pingresp": [["PingResp"], ["PingResp"], "NEED_DATA"],
        "byte_by_byte": ["NEED_DATA"] * (len(PUBLISH_QOS1_DUP_RETAIN_10) - 1) + [publish1],
    }


def remaining_lengths(sizes):
    """Remaining length helper both ways, and PUBLISH packets of the given lengths."""
    table = []
    for n, _ in REMAINING_LENGTHS:
        encoded = mqtt.encode_remaining_length(n)
        table.append([n, hexa(encoded), list(mqtt.decode_remaining_length(encoded) or ())])
    packets = []
    for n in sizes:
        client = connected(max_packet=n)
        packet = client.publish("t", bytes(n - 3), 0)
        same = packet == publish_of_length(n)
        client.receive_data(publish_of_length(n), 0)
        event = client.next_event()
        if isinstance(event, mqtt.Publish):
            rest = client.next_event() is mqtt.NEED_DATA
            packets.append([n, same, event.topic, len(event.payload), rest])
        else:
            packets.append([n, same, event_json(event)])
    incomplete = [
        mqtt.decode_remaining_length(b"\xff\xff\xff"),
        mqtt.decode_remaining_length(b"\x30\x80", 1),
    ]
    return {"table": table, "packets": packets, "incomplete": incomplete}


def expected_remaining_lengths(sizes):
    table = []
    for n, text in REMAINING_LENGTHS:
        table.append([n, text, [n, len(text) // 2]])
    packets = [[n, True, "t", n - 3, True] for n in sizes]
    return {"table": table, "packets": packets, "incomplete": [None, None]}


def errors():
    """Each malformed input: the error's class and the client's state after it."""
    out = {}
    for name, state, data in MALFORMED:
        client = connected() if state == "connected" else connecting()
        client.receive_data(data, 0)
        try:
            event = client.next_event()
            out[name] = ["no error", event_json(event)]
        except CoreError as exc:
            out[name] = [type(exc).__name__, client.state, client.next_event() is mqtt.NEED_DATA]
    return out


def expected_errors():
    out = {}
    for name, _, _ in MALFORMED:
        out[name] = ["DecodeError", "CLOSING", True]
    return out


def timeouts():
    """No CONNACK, or no PINGRESP, within response_timeout_ms: LinkDead, then CLOSING."""
    out = {}
    client = mqtt.MqttClient(response_timeout_ms=5000)
    client.connect("c", 0)
    out["connack_4999"] = [hexa(client.tick(4999)), event_json(client.next_event())]
    out["connack_5000"] = [hexa(client.tick(5000)), event_json(client.next_event()), client.state]
    client = mqtt.MqttClient(response_timeout_ms=5000)
    client.connect("c", 0, keepalive=10)
    client.receive_data(CONNACK_OK, 100)
    client.next_event()
    out["ping_at_10100"] = hexa(client.tick(10100))  # nothing received since 100
    out["waiting_15099"] = [hexa(client.tick(15099)), event_json(client.next_event())]
    out["dead_15100"] = [event_json(client.next_event()), client.tick(15100) == b""]
    out["dead_after_tick"] = [event_json(client.next_event()), client.state]
    client.connection_lost()
    out["after_lost"] = client.state
    return out


def expected_timeouts():
    return {
        "connack_4999": ["", "NEED_DATA"],
        "connack_5000": ["", ["LinkDead", "no CONNACK within 5000 ms"], "CLOSING"],
        "ping_at_10100": hexa(PINGREQ),
        "waiting_15099": ["", "NEED_DATA"],
        "dead_15100": ["NEED_DATA", True],
        "dead_after_tick": [["LinkDead", "no PINGRESP within 5000 ms"], "CLOSING"],
        "after_lost": "IDLE",
    }


def run_all(sizes=PUBLISH_SIZES):
    return {
        "encodings": encodings(),
        "decodings": decodings(),
        "remaining_lengths": remaining_lengths(sizes),
        "errors": errors(),
        "timeouts": timeouts(),
    }


def expected(sizes=PUBLISH_SIZES):
    return {
        "encodings": expected_encodings(),
        "decodings": expected_decodings(),
        "remaining_lengths": expected_remaining_lengths(sizes),
        "errors": expected_errors(),
        "timeouts": expected_timeouts(),
    }
