"""The decoders' known-answer suite, run under real MicroPython (the WebAssembly port).

``tests/core/vectors.py`` is copied to the device as ``/lib/vectors.py`` and run there against
the core mounted at ``/lib``, with the pure-Python ``cryptolib`` stand-in for the encrypted
frames (MicroPython has no ``cryptography``, so ``bankiot_core.ccm`` runs its own CCM over
``cryptolib``'s AES-ECB, as on a board). Every case must give what the vectors expect, the
same as on CPython.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hw.micropython_runner import MicroPythonRunner
from tests.core import vectors

pytestmark = pytest.mark.micropython

VECTORS_SOURCE = Path(vectors.__file__).read_text()


def run_on_device(micropython: MicroPythonRunner, code: str) -> str:
    run = micropython.run(code, fakes=("cryptolib",), files={"/lib/vectors.py": VECTORS_SOURCE})
    return run.check().stdout


@pytest.fixture(scope="module")
def device_results(micropython: MicroPythonRunner) -> dict:
    out = run_on_device(micropython, "import json, vectors\nprint(json.dumps(vectors.run_all()))")
    return json.loads(out)


def _close(got: object, expected: object) -> bool:
    if isinstance(expected, float) or isinstance(got, float):
        return isinstance(got, (int, float)) and got == pytest.approx(expected, rel=1e-12)
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(_close(g, e) for g, e in zip(got, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(_close(got[k], expected[k]) for k in expected)
        )
    return got == expected and type(got) is type(expected)


@pytest.mark.parametrize("case", vectors.CASES, ids=lambda c: c[0])
def test_known_answers_under_micropython(device_results: dict, case: tuple) -> None:
    expected = vectors.normalize(case[3])
    assert _close(device_results[case[0]], expected), (device_results[case[0]], expected)


def test_micropython_and_cpython_agree_case_by_case(device_results: dict) -> None:
    assert set(device_results) == {c[0] for c in vectors.CASES}
    for case in vectors.CASES:
        assert _close(device_results[case[0]], vectors.run_case(case)), case[0]


def test_random_input_raises_only_core_errors_under_micropython(
    micropython: MicroPythonRunner,
) -> None:
    rng = random.Random(20240611)
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(40))) for _ in range(300)]
    samples += [b"\x41" + s for s in samples[:100]] + [b"\x40" + s for s in samples[100:200]]
    code = (
        "from bankiot_core.errors import CoreError\n"
        "from bankiot_core.bthome import BindKey, decode_bthome\n"
        "from bankiot_core.dispatch import decode_payload\n"
        "from bankiot_core.gatt import decode_gatt\n"
        "from bankiot_core.beacons import decode_ibeacon, decode_eddystone\n"
        "from bankiot_core.xiaomi import decode_thermometer\n"
        "mac = bytes(6)\n"
        "keys = {mac: BindKey(bytes(16))}\n"
        "calls = [\n"
        "    lambda d: decode_bthome(d, mac, keys),\n"
        "    lambda d: decode_bthome(d, mac, None, True),\n"
        "    lambda d: decode_payload(d, mac, keys),\n"
        "    lambda d: decode_gatt(0x2A37, d),\n"
        "    lambda d: decode_gatt(0x2A19, d),\n"
        "    decode_ibeacon, decode_eddystone, decode_thermometer,\n"
        "]\n"
        "n = 0\n"
        "for h in %r:\n"
        "    d = bytes.fromhex(h)\n"
        "    for f in calls:\n"
        "        try:\n"
        "            f(d)\n"
        "        except CoreError:\n"
        "            pass\n"
        "        n += 1\n"
        "print(n)\n"
    ) % [s.hex() for s in samples]
    assert int(run_on_device(micropython, code)) == len(samples) * 8


def test_bind_key_state_per_device_is_small(micropython: MicroPythonRunner) -> None:
    """The heap a gateway holds per encrypted device: its BindKey in the keys map."""
    held = micropython.heap_delta(
        "from bankiot_core.bthome import BindKey\nkeys = {}",
        "for i in range(64):\n"
        "    keys[bytes((1, 2, 3, 4, 5, i))] = BindKey(bytes((i,)) * 16, 0x10000000 + i)",
    )
    per_device = held / 64
    assert per_device < 200, per_device
