"""Scripted CoAP exchanges for ``bankiot_core.coap``, runnable under CPython and MicroPython.

``tests/core/test_coap.py`` runs these on CPython and, from this same file installed as
``/lib/coap_scenarios.py``, under real MicroPython, and compares both with transcripts
derived by hand from RFC 7252 and RFC 7959.

A script is JSON data: a client configuration and a list of steps, each one of

- ``["request", t_ms, method, path, payload hex, extra]``: ``extra`` may hold ``token``
  (hex), ``content_format`` and ``options`` (``[[number, value hex], ...]``); records
  ``["sent", datagram hex]``;
- ``["recv", t_ms, datagram hex]`` and ``["tick", t_ms]``: record ``[datagrams hex,
  events]``, or ``["DecodeError"]``;
- ``["timeout", t_ms]``: records ``next_timeout_ms``;
- ``["restart"]``: a new client with the same configuration (a crash and reboot);
- ``["counters"]``: records the counters.

Events are ``["response", token hex, "2.04", payload hex, [[number, value hex], ...]]`` and
``["give_up", token hex, reason]``. Randomness is a constant (``rand`` in the
configuration), so every timeout is predictable.

Common subset of CPython and MicroPython: no f-strings, no annotations.
"""

import binascii

from bankiot_core import coap
from bankiot_core.errors import DecodeError


def _hex(data):
    return binascii.hexlify(data).decode()


def _unhex(text):
    return binascii.unhexlify(text)


def _constant_rand(value):
    def rand(bits):
        return value & ((1 << bits) - 1)

    return rand


def _client(config):
    kwargs = {}
    for key in config:
        if key != "rand":
            kwargs[key] = config[key]
    return coap.CoapClient(_constant_rand(config.get("rand", 0)), **kwargs)


def event_json(event):
    if isinstance(event, coap.Response):
        return [
            "response",
            _hex(event.token),
            coap.code_text(event.code),
            _hex(event.payload),
            [[number, _hex(value)] for number, value in event.options],
        ]
    return ["give_up", _hex(event.token), event.reason]


def output_json(out):
    return [[_hex(d) for d in out.datagrams], [event_json(e) for e in out.events]]


def run_script(config, steps):
    """Run one script; return the list of what each step recorded."""
    client = _client(config)
    record = []
    for step in steps:
        kind = step[0]
        if kind == "request":
            extra = step[5]
            token = extra.get("token")
            datagram = client.request(
                step[2],
                step[3],
                _unhex(step[4]),
                step[1],
                content_format=extra.get("content_format"),
                token=None if token is None else _unhex(token),
                options=[(number, _unhex(value)) for number, value in extra.get("options", [])],
            )
            record.append(["sent", _hex(datagram)])
        elif kind == "recv":
            try:
                record.append(output_json(client.receive_datagram(_unhex(step[2]), step[1])))
            except DecodeError:
                record.append(["DecodeError"])
        elif kind == "tick":
            record.append(output_json(client.tick(step[1])))
        elif kind == "timeout":
            record.append(client.next_timeout_ms(step[1]))
        elif kind == "restart":
            client = _client(config)
            record.append(None)
        elif kind == "counters":
            counters = client.counters()
            record.append(dict((name, counters[name]) for name in sorted(counters)))
        else:
            raise ValueError("unknown step %r" % (kind,))
    return record


def codec(vectors):
    """For each ``[name, hex, fields]``: our encoding of ``fields`` and our decoding of
    ``hex``, where ``fields`` is ``[mtype, code, mid, token hex, [[number, value hex]],
    payload hex]``."""
    out = {}
    for name, datagram, fields in vectors:
        mtype, code, mid, token, options, payload = fields
        encoded = coap.encode_message(
            mtype,
            code,
            mid,
            _unhex(token),
            [(number, _unhex(value)) for number, value in options],
            _unhex(payload),
        )
        msg = coap.decode_message(_unhex(datagram))
        decoded = [
            msg.mtype,
            msg.code,
            msg.mid,
            _hex(msg.token),
            [[number, _hex(value)] for number, value in msg.options],
            _hex(msg.payload),
        ]
        out[name] = [_hex(encoded), decoded]
    return out


def rejects(datagrams):
    """For each hex datagram: the DecodeError message, or None if it decoded."""
    out = []
    for datagram in datagrams:
        try:
            coap.decode_message(_unhex(datagram))
            out.append(None)
        except DecodeError as exc:
            out.append(str(exc))
    return out
