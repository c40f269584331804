"""A release manifest's signature check on a board: pure-MicroPython Ed25519 vs SHA-256.

Issue 8: a board checks a release by its Ed25519 signature, "or a per-device MAC over the
manifest where the signature check is too slow; measure it". This measures, in the same
run of the real MicroPython VM (the WebAssembly port under Node), over one manifest the
size of a real bundle's (``bankiot firmware build``: 70 files, about 8 KB):

- the subject: ``app.ed25519.verify`` (its SHA-512 in plain Python, then the double
  scalar multiplication), with the SHA-512 part timed alone beside it;
- the reference: ``hashlib.sha256`` of the same manifest (C on every board);
- the MAC path: ``app.release_mac`` (HKDF then HMAC-SHA256, over ``hashlib``);

and prints each in milliseconds, with the ratios subject / reference. The VM runs on a PC
with a JIT under it; a board's CPU is slower (an ESP32 at 240 MHz runs MicroPython's big
integer arithmetic some 20 to 50 times slower than this port on a desktop), so read the
figure as a floor and the ratio as the point: docs/firmware.md says what boards use.

Run: ``.venv/bin/python bench/firmware_signature.py [--files 70] [--runs 5] [--json]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bankiot_core.manifest import encode_manifest
from hw.micropython_runner import MicroPythonRunner
from tests.firmware.board import FIRMWARE

SCRIPT = """
import binascii, hashlib, time
from app import ed25519, release_mac
from app.sha512 import sha512
u = binascii.unhexlify
pub, msg, sig = u(%(pub)r), u(%(msg)r), u(%(sig)r)
secret = bytes(range(32))

def per_call(fn, calls):
    # The port's microsecond ticks follow the browser clock (millisecond steps): time
    # many calls and divide.
    t = time.ticks_us()
    for _ in range(calls):
        fn()
    return time.ticks_diff(time.ticks_us(), t) / calls

assert ed25519.verify(pub, msg, sig)
print("verify_us", per_call(lambda: ed25519.verify(pub, msg, sig), %(runs)d))
print("sha512_us", per_call(lambda: sha512(sig[:32] + pub + msg), %(runs)d))
print("sha256_us", per_call(lambda: hashlib.sha256(msg).digest(), %(runs)d * 400))
print("mac_us", per_call(lambda: release_mac.manifest_mac(
    release_mac.mac_key(secret, "gw-1", 1), msg), %(runs)d * 100))
"""


def manifest(files: int) -> bytes:
    """A manifest like a real bundle's: ``files`` entries under /app and /lib."""
    rng = random.Random(files)
    entries = []
    for i in range(files):
        folder = "/app" if i % 3 == 0 else "/lib/bankiot_core"
        entries.append(("%s/module_%02d.mpy" % (folder, i), rng.randbytes(32).hex(), 2000 + i))
    return encode_manifest("esp32", "1.4.0", entries)


def main() -> int:
    parser = argparse.ArgumentParser(description="Ed25519 on the board vs SHA-256.")
    parser.add_argument("--files", type=int, default=70, help="files in the manifest")
    parser.add_argument("--runs", type=int, default=5, help="signature checks timed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    data = manifest(args.files)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    script = SCRIPT % {
        "pub": public.hex(),
        "msg": data.hex(),
        "sig": key.sign(data).hex(),
        "runs": args.runs,
    }
    run = MicroPythonRunner(mounts={"/": FIRMWARE}, timeout=300).run(script).check()
    figures: dict[str, float] = {"manifest_bytes": len(data)}
    for line in run.stdout.splitlines():
        name, value = line.split()
        figures[name.replace("_us", "_ms")] = float(value) / 1000
    figures["ratio_verify_to_sha256"] = round(figures["verify_ms"] / figures["sha256_ms"])
    figures["ratio_mac_to_sha256"] = round(figures["mac_ms"] / figures["sha256_ms"], 1)
    if args.json:
        print(json.dumps(figures))
        return 0
    print("manifest: %d bytes (%d files)" % (len(data), args.files))
    print("Ed25519 verify, pure MicroPython:   %9.1f ms" % figures["verify_ms"])
    print("  of which SHA-512 in Python:       %9.1f ms" % figures["sha512_ms"])
    print("SHA-256 of the manifest (hashlib):  %9.3f ms   (reference)" % figures["sha256_ms"])
    print("per-device MAC (HKDF + HMAC):       %9.3f ms" % figures["mac_ms"])
    print("ratio verify / SHA-256:             %9d x" % figures["ratio_verify_to_sha256"])
    print("ratio MAC / SHA-256:                %9.1f x" % figures["ratio_mac_to_sha256"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
