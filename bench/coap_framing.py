"""The CoAP codec and the serial deframer: speed against references, heap on MicroPython.

A report, not a pass/fail. Measured in the same run:

- CoAP codec on CPython: ``bankiot_core.coap`` encoding and decoding one Block1 request
  (Uri-Host, two Uri-Path segments, Content-Format, Block1, a 1024-byte block), against
  aiocoap's ``Message.encode`` / ``Message.decode`` on the same datagram (the reference).
- Serial deframing: ``framing.Deframer.feed`` on a stream of 64 frames of 256 bytes fed in
  64-byte pieces (as a UART read returns them), on CPython and under real MicroPython (the
  WebAssembly port), the ratio between the two, and the MicroPython figure against the byte
  rate of a UART at 921600 baud (92160 bytes/s with 8N1 framing): above 1 means the
  deframer keeps up with the fastest usual co-processor link.
- MicroPython heap kept (``heap_delta``): a ``CoapClient`` with a 3000-byte request in
  flight (the body itself excluded), and a ``Deframer(1024)``.

Run: ``.venv/bin/python bench/coap_framing.py [--json]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import timeit

import aiocoap
from aiocoap.numbers.optionnumbers import OptionNumber

from bankiot_core import coap, framing
from hw.micropython_runner import MicroPythonRunner

UART_921600_BYTES_PER_S = 921600 / 10

_OPTIONS = [
    (coap.URI_HOST, b"ingest.bank.example"),
    (coap.URI_PATH, b"v1"),
    (coap.URI_PATH, b"batches"),
    (coap.CONTENT_FORMAT, coap.uint_bytes(coap.COSE_ENCRYPT0)),
    (coap.BLOCK1, coap.block_value(3, True, 6)),
]

_DEFRAME_SCRIPT = """
import time
from bankiot_core import framing
payload = bytes(i * 7 & 0xFF for i in range(256))
stream = b"".join(framing.encode_frame(payload) for _ in range(64))
pieces = [stream[i:i + 64] for i in range(0, len(stream), 64)]
best = None
for _ in range(3):
    d = framing.Deframer(1024)
    start = time.ticks_us()
    got = 0
    for piece in pieces:
        got += len(d.feed(piece))
    took = time.ticks_diff(time.ticks_us(), start)
    assert got == 64, got
    best = took if best is None else min(best, took)
print("deframe_us", best, len(stream))
"""


def best_us(fn) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def codec_figures() -> dict:
    block = random.randbytes(1024)
    ours_encode = best_us(
        lambda: coap.encode_message(coap.CON, coap.POST, 7, b"tok1", _OPTIONS, block)
    )
    datagram = coap.encode_message(coap.CON, coap.POST, 7, b"tok1", _OPTIONS, block)
    ours_decode = best_us(lambda: coap.decode_message(datagram))
    outgoing = aiocoap.Message(code=aiocoap.POST, payload=block)
    outgoing.mtype = aiocoap.CON
    outgoing.mid = 7
    outgoing.token = b"tok1"
    for number, value in _OPTIONS:
        outgoing.opt.add_option(OptionNumber(number).create_option(decode=value))
    assert outgoing.encode() == datagram
    theirs_encode = best_us(outgoing.encode)
    theirs_decode = best_us(lambda: aiocoap.Message.decode(datagram))
    return {
        "datagram_bytes": len(datagram),
        "reference": "aiocoap Message.encode / Message.decode on CPython",
        "ours_encode_us": round(ours_encode, 2),
        "ours_decode_us": round(ours_decode, 2),
        "aiocoap_encode_us": round(theirs_encode, 2),
        "aiocoap_decode_us": round(theirs_decode, 2),
        "ratio_decode_ours_to_aiocoap": round(ours_decode / theirs_decode, 2),
        "ratio_encode_ours_to_aiocoap": round(ours_encode / theirs_encode, 2),
    }


def deframe_figures(runner: MicroPythonRunner) -> dict:
    payload = bytes(i * 7 & 0xFF for i in range(256))
    stream = b"".join(framing.encode_frame(payload) for _ in range(64))
    pieces = [stream[i : i + 64] for i in range(0, len(stream), 64)]

    def deframe() -> None:
        d = framing.Deframer(1024)
        for piece in pieces:
            d.feed(piece)

    cpython_us = best_us(deframe)
    out = runner.run(_DEFRAME_SCRIPT).check().stdout
    line = next(x for x in out.splitlines() if x.startswith("deframe_us"))
    mp_us = float(line.split()[1])
    mp_rate = len(stream) / (mp_us / 1e6)
    return {
        "stream_bytes": len(stream),
        "cpython_us": round(cpython_us, 1),
        "micropython_us": round(mp_us, 1),
        "ratio_micropython_to_cpython": round(mp_us / cpython_us, 1),
        "micropython_bytes_per_s": round(mp_rate),
        "ratio_micropython_to_uart_921600": round(mp_rate / UART_921600_BYTES_PER_S, 1),
    }


def heap_figures(runner: MicroPythonRunner) -> dict:
    client = runner.heap_delta(
        "from bankiot_core import coap\nbody = bytes(3000)\n",
        "c = coap.CoapClient(lambda bits: 0, host='ingest.bank.example', block_size=1024)\n"
        "c.request(coap.POST, 'v1/batches', body, 0, content_format=coap.CBOR)\n",
    )
    deframer = runner.heap_delta(
        "from bankiot_core import framing\n", "d = framing.Deframer(1024)\n"
    )
    return {"coap_client_one_request_bytes": client, "deframer_1024_bytes": deframer}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time the CoAP codec and the deframer against references; MicroPython heap."
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    runner = MicroPythonRunner()
    print("timing the CoAP codec against aiocoap ...", file=sys.stderr)
    codec = codec_figures()
    print("timing the deframer on CPython and MicroPython ...", file=sys.stderr)
    deframe = deframe_figures(runner)
    print("measuring MicroPython heap ...", file=sys.stderr)
    heap = heap_figures(runner)
    figures = {"coap_codec": codec, "deframe": deframe, "micropython_heap": heap}
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print("CoAP codec, one %d-byte Block1 datagram (reference: aiocoap)" % codec["datagram_bytes"])
    print(
        "  encode  ours %8.2f us   aiocoap %8.2f us"
        % (codec["ours_encode_us"], codec["aiocoap_encode_us"])
    )
    print(
        "  decode  ours %8.2f us   aiocoap %8.2f us"
        % (codec["ours_decode_us"], codec["aiocoap_decode_us"])
    )
    print(
        "  ratio ours / aiocoap: encode %s, decode %s"
        % (codec["ratio_encode_ours_to_aiocoap"], codec["ratio_decode_ours_to_aiocoap"])
    )
    print("Deframing %d bytes (64 frames of 256 bytes, 64-byte reads)" % deframe["stream_bytes"])
    print(
        "  CPython %10.1f us   MicroPython/wasm %10.1f us   ratio %s x"
        % (
            deframe["cpython_us"],
            deframe["micropython_us"],
            deframe["ratio_micropython_to_cpython"],
        )
    )
    print(
        "  MicroPython %d bytes/s = %s x a 921600-baud UART"
        % (deframe["micropython_bytes_per_s"], deframe["ratio_micropython_to_uart_921600"])
    )
    print("MicroPython heap kept")
    print(
        "  CoapClient + one 3000-byte request in flight  %6d bytes"
        % heap["coap_client_one_request_bytes"]
    )
    print(
        "  Deframer(1024)                                 %6d bytes" % heap["deframer_1024_bytes"]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
