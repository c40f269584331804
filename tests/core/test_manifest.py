"""``bankiot_core.manifest``: release manifests, on CPython and under real MicroPython.

Known answers come from independent sources: the canonical bytes from CPython's ``json``
(``sort_keys``, compact separators, ``ensure_ascii``), file hashes from ``hashlib``, version
order from the SemVer 2.0 specification's own example (section 11). The same cases run on
both interpreters through ``manifest_scenario.py``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankiot_core import manifest
from bankiot_core.errors import AuthenticationError, DecodeError, LocalError
from hw.micropython_runner import MicroPythonRunner
from tests.core import manifest_scenario as scenario
from tests.core.scenario_runner import run_scenario

CONTENT = {
    "/boot.py": b"import gc\ngc.collect()\n",
    "/lib/bankiot_core/__init__.py": b'VERSION = "1.4.0"\n',
    "/lib/bankiot_core/cbor.mpy": bytes(range(256)) * 3,
    "/main.py": b"",
}

# SemVer 2.0.0, section 11: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta <
# 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0; and 1.0.0 < 2.0.0 < 2.1.0 < 2.1.1.
SEMVER_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "2.0.0",
    "2.1.0",
    "2.1.1",
    "10.0.0",
]
BAD_VERSIONS = ["1.4", "01.4.0", "1.4.0+build.5", "1.4.0-", "1.4.0-01", "1.4.0-a..b", "v1.4.0"]


def entry(path: str, content: bytes) -> dict[str, Any]:
    return {"path": path, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}


def canonical(obj: Any) -> str:
    """The canonical form, by CPython's json: the independent answer."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def release(**changes: Any) -> dict[str, Any]:
    files = [entry(path, data) for path, data in sorted(CONTENT.items())]
    obj = {
        "format": 1,
        "product": "bankiot-gateway",
        "board": "esp32",
        "version": "1.4.0",
        "files": files,
    }
    obj.update(changes)
    return obj


def file_change(**changes: Any) -> dict[str, Any]:
    files = release()["files"]
    files[1] = {**files[1], **changes}
    return release(files=files)


VALID = release()
FILES_OUT = [[f["path"], f["sha256"], f["size"]] for f in VALID["files"]]

# Each is refused with DecodeError.
REFUSED = [
    json.dumps(VALID, sort_keys=True, indent=1),  # whitespace
    json.dumps(VALID),  # keys in insertion order, spaces
    canonical(VALID) + "\n",
    canonical(VALID).replace("/boot.py", "\\/boot.py"),  # an escape JSON allows
    canonical(VALID).replace('"board":"esp32"', '"board":"esp32","board":"picow"'),
    canonical(VALID).replace('"format":1', '"format":1.0'),
    canonical(release(format=2)),
    canonical(release(format=True)),
    canonical(release(product="other")),
    canonical(release(board="esp8266")),
    canonical({**VALID, "extra": 1}),
    canonical({k: v for k, v in VALID.items() if k != "version"}),
    *(canonical(release(version=v)) for v in BAD_VERSIONS),
    canonical(release(version=7)),
    canonical(release(files=[])),
    canonical(release(files={})),
    canonical(release(files=list(reversed(VALID["files"])))),  # unsorted
    canonical(release(files=[VALID["files"][0], VALID["files"][0]])),  # duplicate path
    canonical(release(files=[entry("/lib", b"x"), entry("/lib/a.py", b"y")])),  # file and folder
    canonical(file_change(path="lib/x.py")),
    canonical(file_change(path="/lib/../boot.py")),
    canonical(file_change(path="/lib//x.py")),
    canonical(file_change(path="/lib/x.py/")),
    canonical(file_change(path="/lib/x y.py")),
    canonical(file_change(path="/" + "a" * 96)),
    canonical(file_change(sha256=VALID["files"][1]["sha256"].upper())),
    canonical(file_change(sha256=VALID["files"][1]["sha256"][:63])),
    canonical(file_change(size=-1)),
    canonical(file_change(size=True)),
    canonical(file_change(size=manifest.MAX_FILE_SIZE + 1)),
    canonical(file_change(extra=1)),
    json.dumps(
        file_change(path="/lib/caf\u00e9.py"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ),
    "[]",
    "not json",
    "",
    " " * (manifest.MAX_MANIFEST_BYTES + 1),
]


def known_answer_cases() -> tuple[dict[str, Any], dict[str, Any]]:
    many = [entry("/f/%03d" % n, b"") for n in range(manifest.MAX_FILES + 1)]
    big = [
        {"path": "/f%d" % n, "sha256": "0" * 64, "size": manifest.MAX_FILE_SIZE}
        for n in range(manifest.MAX_TOTAL_SIZE // manifest.MAX_FILE_SIZE + 1)
    ]
    parse = [canonical(VALID), canonical(release(board="rpi", version="2.0.0-rc.1"))]
    parse += [*REFUSED, canonical(release(files=many)), canonical(release(files=big))]
    boot = CONTENT["/boot.py"]
    boot_entry = list(entry("/boot.py", boot).values())
    cases = {
        "encode": [
            ["picow", "1.4.0", list(reversed(FILES_OUT))],
            ["esp8266", "1.4.0", FILES_OUT],
            ["esp32", "1.4", FILES_OUT],
            ["esp32", "1.4.0", [FILES_OUT[0], FILES_OUT[0]]],
            ["esp32", "1.4.0", []],
        ],
        "parse": parse,
        "check": [
            [boot_entry, [boot[:5].hex(), boot[5:].hex()]],
            [boot_entry, [boot.hex(), ""]],
            [list(entry("/main.py", b"").values()), []],
            [boot_entry, [boot[:-1].hex()]],  # short
            [boot_entry, [boot.hex(), "00"]],  # long
            [boot_entry, [boot.replace(b"gc", b"GC").hex()]],  # same size, other bytes
        ],
        "order": list(reversed(SEMVER_ORDER)) + BAD_VERSIONS,
    }
    expected = {
        "encode": [
            canonical(release(board="picow")),
            "LocalError",
            "LocalError",
            "LocalError",
            "LocalError",
        ],
        "parse": [
            ["esp32", "1.4.0", FILES_OUT],
            ["rpi", "2.0.0-rc.1", FILES_OUT],
            *["DecodeError"] * (len(REFUSED) + 2),
        ],
        "check": [True, True, True, *["AuthenticationError"] * 3],
        "order": ["DecodeError"] * len(BAD_VERSIONS) + SEMVER_ORDER,
    }
    return cases, expected


def test_known_answers() -> None:
    cases, expected = known_answer_cases()
    assert scenario.run(cases) == expected


@pytest.mark.micropython
def test_known_answers_under_micropython(micropython: MicroPythonRunner) -> None:
    cases, expected = known_answer_cases()
    assert run_scenario(micropython, scenario, "run", cases) == expected


def test_errors_say_what_is_wrong() -> None:
    with pytest.raises(DecodeError, match="not in canonical form"):
        manifest.parse_manifest((canonical(VALID) + "\n").encode())
    with pytest.raises(DecodeError, match="both a file and a folder"):
        manifest.parse_manifest(canonical(REFUSED_FOLDER).encode())
    with pytest.raises(LocalError, match="board must be one of esp32, picow, rpi"):
        manifest.encode_manifest("esp8266", "1.0.0", FILES_OUT)


REFUSED_FOLDER = release(files=[entry("/lib", b"x"), entry("/lib/a.py", b"y")])


def test_file_check_stops_early_and_finishes_once() -> None:
    check = manifest.FileCheck(manifest.ManifestFile("/a", hashlib.sha256(b"ab").hexdigest(), 2))
    check.feed(b"a")
    with pytest.raises(AuthenticationError, match="longer than the manifest's 2 bytes"):
        check.feed(b"bc")
    done = manifest.FileCheck(manifest.ManifestFile("/a", hashlib.sha256(b"ab").hexdigest(), 2))
    done.feed(memoryview(b"ab"))
    assert done.ok() and done.ok()
    with pytest.raises(LocalError):
        done.feed(b"")


_segment = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)


@given(
    files=st.dictionaries(
        st.lists(_segment, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts)),
        st.binary(max_size=64),
        min_size=1,
        max_size=12,
    ),
    board=st.sampled_from(manifest.BOARDS),
    version=st.tuples(*[st.integers(0, 65535)] * 3).map(lambda v: "%d.%d.%d" % v),
)
def test_encode_is_json_canonical_and_parses_back(
    files: dict[str, bytes], board: str, version: str
) -> None:
    paths = set(files)
    folders = {p[:i] for p in paths for i in range(1, len(p)) if p[i] == "/"}
    entries = [entry(path, data) for path, data in files.items()]
    obj = release(board=board, version=version, files=sorted(entries, key=lambda e: e["path"]))
    try:
        data = manifest.encode_manifest(board, version, [tuple(e.values()) for e in entries])
    except LocalError:
        assert paths & folders  # the only thing these inputs can get wrong
        return
    assert data == canonical(obj).encode()
    parsed = manifest.parse_manifest(data)
    assert (parsed.board, parsed.version) == (board, version)
    assert [list(f) for f in parsed.files] == [list(e.values()) for e in obj["files"]]
