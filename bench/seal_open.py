"""Seal and open a batch as COSE_Encrypt0 on CPython, against raw ``cryptography`` AESCCM.

A report, not a pass/fail. In the same run it times, on the same plaintext (a realistic
batch: 64 readings from 8 devices, CBOR, about 1.6 KiB):

- the references: ``cryptography``'s ``AESCCM(key, 8).encrypt`` and ``.decrypt`` with a
  ready nonce and AAD (what sealing costs at the very least);
- the subjects: ``bankiot_core.cose.seal`` and ``open_envelope``, which add the Partial IV,
  nonce and Enc_structure, the CBOR envelope, the argument checks and (cached) key
  derivation; opening also parses and checks the envelope and looks the key up;
- for scale, a cold seal: the HKDF key and IV derivation done again every time, as after
  a restart or a key rotation.

and prints microseconds per call and the ratios subject / reference.

Run: ``.venv/bin/python bench/seal_open.py [--readings 64] [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from bankiot_core import cbor, cose

SECRET = bytes.fromhex("8c2f0d9e4a61b7735e1c9a0fd24b68e1")
GATEWAY = b"gw-0042"
VERSION = 3
SEQ = 123456
TOPIC = "devices/gw-0042/batches"
METRICS = (("temperature", "°C"), ("humidity", "%"), ("battery", "%"), ("heart_rate", "bpm"))


def realistic_batch(readings: int) -> bytes:
    """A batch as a gateway sends it: device addresses, time offsets, metric, value, unit."""
    devices = [bytes([0xA4, 0xC1, 0x38, 0, 0, i]) for i in range(8)]
    rows = []
    for i in range(readings):
        metric, unit = METRICS[i % len(METRICS)]
        value = round(20.0 + (i % 17) * 0.25, 2) if i % 4 < 2 else 60 + i % 40
        rows.append([devices[i % 8], 1500 * i, metric, value, unit])
    return cbor.dumps({"gw": GATEWAY, "t0": 1_700_000_000_000, "r": rows}, True)


def per_call_us(call) -> float:
    """Microseconds per ``call()``, best of five timeit runs."""
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Seal and open a batch with bankiot_core.cose and with raw AESCCM."
    )
    parser.add_argument("--readings", type=int, default=64, help="readings per batch (64)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    plaintext = realistic_batch(args.readings)
    key, common_iv = cose.derive_key_and_iv(SECRET, GATEWAY, VERSION)
    nonce = (int.from_bytes(common_iv, "big") ^ SEQ).to_bytes(13, "big")
    aad = cose._enc_structure(cose.PROTECTED, TOPIC.encode())
    aesccm = AESCCM(key, 8)
    ciphertext = aesccm.encrypt(nonce, plaintext, aad)
    envelope = cose.seal(SECRET, GATEWAY, VERSION, SEQ, plaintext, TOPIC)
    assert envelope.endswith(ciphertext)  # the same bytes sealed both ways

    def lookup(gateway_id: bytes, version: int) -> bytes | None:
        return SECRET if gateway_id == GATEWAY and version == VERSION else None

    def cold_seal() -> bytes:
        cose._derived.clear()
        return cose.seal(SECRET, GATEWAY, VERSION, SEQ, plaintext, TOPIC)

    print("timing on CPython ...", file=sys.stderr)
    ref_seal = per_call_us(lambda: aesccm.encrypt(nonce, plaintext, aad))
    ref_open = per_call_us(lambda: aesccm.decrypt(nonce, ciphertext, aad))
    seal = per_call_us(lambda: cose.seal(SECRET, GATEWAY, VERSION, SEQ, plaintext, TOPIC))
    opened = per_call_us(lambda: cose.open_envelope(envelope, lookup, TOPIC))
    cold = per_call_us(cold_seal)

    figures = {
        "readings": args.readings,
        "plaintext_bytes": len(plaintext),
        "envelope_bytes": len(envelope),
        "overhead_bytes": len(envelope) - len(plaintext),
        "reference": "cryptography AESCCM encrypt/decrypt, same bytes, nonce and AAD ready",
        "reference_seal_us": round(ref_seal, 2),
        "reference_open_us": round(ref_open, 2),
        "cose_seal_us": round(seal, 2),
        "cose_open_us": round(opened, 2),
        "cose_cold_seal_us": round(cold, 2),
        "ratio_seal": round(seal / ref_seal, 2),
        "ratio_open": round(opened / ref_open, 2),
        "ratio_cold_seal": round(cold / ref_seal, 2),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(
        "Batch of %d readings: %d bytes of CBOR, %d bytes sealed (%d bytes of envelope)"
        % (args.readings, len(plaintext), len(envelope), len(envelope) - len(plaintext))
    )
    print("  AESCCM encrypt (reference)             %10.1f us" % ref_seal)
    print("  cose.seal                              %10.1f us   %6.2f x" % (seal, seal / ref_seal))
    print("  cose.seal, key derivation not cached   %10.1f us   %6.2f x" % (cold, cold / ref_seal))
    print("  AESCCM decrypt (reference)             %10.1f us" % ref_open)
    print(
        "  cose.open_envelope                     %10.1f us   %6.2f x" % (opened, opened / ref_open)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
