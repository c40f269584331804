"""Seal 1 KiB with AES-CCM: the pure-Python AES stand-in under MicroPython vs ``cryptography``.

A report, not a pass/fail. It measures, in the same run:

- the subject: ``bankiot_core.ccm.ccm_encrypt`` under real MicroPython (the WebAssembly port
  under Node) with ``hw/fakes/cryptolib.py``, the pure-Python AES the tests use because the
  port has no ``cryptolib``;
- the reference: ``cryptography``'s ``AESCCM`` on CPython (OpenSSL);
- for scale, the portable ``CcmCipher`` on CPython over ``cryptography``'s AES-ECB block,
  which separates the cost of CCM written in Python from the cost of AES written in Python.

and prints each time per seal and the ratio subject / reference. A board's ``cryptolib`` is
C (mbedTLS, often with the AES peripheral), so this says how slow the test stand-in is, not
how slow a board is.

Run: ``.venv/bin/python bench/ccm_micropython.py [--payload 1024] [--seals 20] [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from bankiot_core.ccm import CcmCipher
from hw.micropython_runner import MicroPythonRunner

KEY = bytes(range(16))
NONCE = bytes(range(13))
AAD = b"bankiot batch header"
TAG_LEN = 8

_MICROPYTHON_SCRIPT = """
import time
from bankiot_core import ccm
assert ccm.BACKEND == "cryptolib", ccm.BACKEND
key = bytes(range(16))
nonce = bytes(range(13))
aad = b"bankiot batch header"
payload = bytes(i & 0xFF for i in range(PAYLOAD))
for _ in range(5):  # warm up: key schedule, cipher cache, Node's WebAssembly tiers
    ccm.ccm_encrypt(key, nonce, payload, aad, 8)
best = None
for _ in range(3):  # best of three rounds, like timeit.repeat
    start = time.ticks_us()
    for _ in range(SEALS):
        sealed = ccm.ccm_encrypt(key, nonce, payload, aad, 8)
    took = time.ticks_diff(time.ticks_us(), start)
    best = took if best is None else min(best, took)
print("us_per_seal", best / SEALS)
"""


def micropython_seal_us(payload: int, seals: int) -> float:
    """Microseconds per seal under MicroPython with the pure-Python AES stand-in."""
    script = f"PAYLOAD = {payload}\nSEALS = {seals}\n" + _MICROPYTHON_SCRIPT
    result = MicroPythonRunner().run(script, fakes=("cryptolib",)).check()
    for line in result.stdout.splitlines():
        if line.startswith("us_per_seal"):
            return float(line.split()[1])
    raise RuntimeError(f"the MicroPython script printed no timing: {result.stdout!r}")


def cpython_seal_us(seal, payload: bytes) -> float:
    """Microseconds per call of ``seal(payload)``, best of five timeit runs."""
    timer = timeit.Timer(lambda: seal(payload))
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Seal a payload with AES-CCM under MicroPython and on CPython; print the ratio."
    )
    parser.add_argument("--payload", type=int, default=1024, help="bytes per seal (1024)")
    parser.add_argument(
        "--seals", type=int, default=20, help="seals per timed round under MicroPython (20)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    payload = bytes(i & 0xFF for i in range(args.payload))

    print("timing cryptography AESCCM on CPython ...", file=sys.stderr)
    aesccm = AESCCM(KEY, TAG_LEN)
    reference = cpython_seal_us(lambda p: aesccm.encrypt(NONCE, p, AAD), payload)

    print("timing portable CcmCipher over cryptography's AES-ECB on CPython ...", file=sys.stderr)
    ecb = Cipher(algorithms.AES(KEY), modes.ECB()).encryptor()

    def block(src, dst):
        dst[:] = ecb.update(bytes(src))

    portable = CcmCipher(block)
    portable_us = cpython_seal_us(lambda p: portable.encrypt(NONCE, p, AAD, TAG_LEN), payload)

    print(
        f"timing 3 x {args.seals} seals under MicroPython with the cryptolib stand-in ...",
        file=sys.stderr,
    )
    subject = micropython_seal_us(args.payload, args.seals)

    figures = {
        "payload_bytes": args.payload,
        "reference": "cryptography AESCCM on CPython",
        "reference_us_per_seal": round(reference, 2),
        "portable_ccm_cpython_us_per_seal": round(portable_us, 2),
        "micropython_fake_cryptolib_us_per_seal": round(subject, 1),
        "ratio_micropython_to_reference": round(subject / reference, 1),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"AES-128-CCM seal of {args.payload} bytes ({TAG_LEN}-byte tag, {len(AAD)}-byte AAD)")
    print(f"  cryptography AESCCM, CPython (reference)       {reference:12.1f} us")
    print(f"  portable CcmCipher over OpenSSL AES, CPython   {portable_us:12.1f} us")
    print(f"  ccm + pure-Python cryptolib, MicroPython/wasm  {subject:12.1f} us")
    print(f"  ratio MicroPython stand-in / reference         {subject / reference:12.0f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
