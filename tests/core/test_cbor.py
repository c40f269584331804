"""bankiot_core.cbor: RFC 8949 known answers, differential tests against cbor2, a fuzzed decoder.

Known answers are RFC 8949 Appendix A (``cbor_vectors.py``, both directions, also under real
MicroPython) and the deterministic-encoding example of section 4.2.1. cbor2 (a maintained
independent implementation) is the oracle for random values in both directions and for
preferred float serialization; CPython's ``struct`` half and single floats are the oracle
for the hand-written float packing; CPython's UTF-8 codec for the hand-written validator.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bankiot_core import cbor
from bankiot_core.cbor import Tag
from bankiot_core.errors import DecodeError, LocalError
from tests.core import cbor_vectors as vectors

VECTORS_SOURCE = Path(vectors.__file__).read_text()

# Tags cbor2 turns into Python objects (dates, decimals, sets, ...): kept out of random values.
CBOR2_SEMANTIC_TAGS = frozenset(
    [0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
     43000, 55799]
)  # fmt: skip


# ---- conversions between our values and cbor2's ---------------------------------------


def from_cbor2(value: Any, key: bool = False) -> Any:
    """cbor2's decoded value in our types (cbor2 6 freezes what sits inside tags)."""
    if isinstance(value, cbor2.CBORTag):
        return Tag(value.tag, from_cbor2(value.value, key))
    if isinstance(value, list | tuple):
        items = [from_cbor2(v, key) for v in value]
        return tuple(items) if key else items
    if isinstance(value, Mapping):
        return {from_cbor2(k, True): from_cbor2(v) for k, v in value.items()}
    return value


def to_cbor2(value: Any) -> Any:
    """Our value in cbor2's types (Tag -> CBORTag)."""
    if isinstance(value, Tag):
        return cbor2.CBORTag(value.tag, to_cbor2(value.value))
    if isinstance(value, list):
        return [to_cbor2(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_cbor2(v) for v in value)
    if isinstance(value, dict):
        return {to_cbor2(k): to_cbor2(v) for k, v in value.items()}
    return value


def assert_same(got: Any, expected: Any) -> None:
    assert vectors.same(got, expected), "%r != %r" % (got, expected)


# ---- strategies ------------------------------------------------------------------------

ints64 = st.integers(-(1 << 64), (1 << 64) - 1)
any_ints = st.one_of(ints64, st.integers(-(1 << 200), 1 << 200))
floats = st.floats(allow_nan=False)
tag_numbers = st.one_of(
    st.integers(6, 1 << 16).filter(lambda n: n not in CBOR2_SEMANTIC_TAGS),
    st.integers(1 << 16, (1 << 64) - 1),
)
scalars = st.one_of(
    st.none(), st.booleans(), any_ints, floats, st.text(max_size=30), st.binary(max_size=30)
)
hashable_keys = st.one_of(ints64, st.text(max_size=10), st.binary(max_size=10), floats)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(hashable_keys, children, max_size=6),
        st.builds(Tag, tag_numbers, children),
    )


values = st.recursive(scalars, containers, max_leaves=25)


# ---- RFC 8949 Appendix A -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "value", "mode"), vectors.APPENDIX_A, ids=lambda x: str(x)[:40])
def test_appendix_a(text: str, value: Any, mode: str) -> None:
    assert vectors.check_row(text, value, mode) == []
    if mode == "both" and not isinstance(value, dict):
        assert cbor.dumps(value) == bytes.fromhex(text)  # the default mode too


@pytest.mark.parametrize(
    ("text", "value"),
    [(t, v) for t, v, m in vectors.APPENDIX_A if m != "reject"],
    ids=lambda x: str(x)[:40],
)
def test_appendix_a_table_agrees_with_cbor2(text: str, value: Any) -> None:
    """The table itself has no typo: cbor2 reads each row as the value we expect."""
    decoded = cbor2.loads(bytes.fromhex(text))
    if isinstance(value, Tag) and value.tag in CBOR2_SEMANTIC_TAGS:
        return  # cbor2 gives a datetime; the bytes are the spec's
    assert_same(from_cbor2(decoded), value)


def test_rejected_appendix_a_rows_are_valid_cbor_refused_by_choice() -> None:
    rejected = [t for t, _, m in vectors.APPENDIX_A if m == "reject"]
    assert len(rejected) == 14  # undefined, two simple values, eleven indefinite lengths
    for text in rejected:
        cbor2.loads(bytes.fromhex(text))  # well-formed: cbor2 reads it
        with pytest.raises(DecodeError):
            cbor.loads(bytes.fromhex(text))


@pytest.mark.parametrize(
    ("text", "reason"), vectors.MALFORMED, ids=[r for _, r in vectors.MALFORMED]
)
def test_malformed_input_raises_decode_error(text: str, reason: str) -> None:
    with pytest.raises(DecodeError) as excinfo:
        cbor.loads(vectors.unhex(text))
    assert "\n" not in str(excinfo.value)


def test_deterministic_map_order_example_of_rfc_8949_4_2_1() -> None:
    value, expected = vectors.DETERMINISTIC_EXAMPLE
    assert next(iter(value)) is False  # inserted in another order than the spec's
    assert cbor.dumps(value, deterministic=True).hex() == expected
    # cbor2's canonical mode is RFC 7049's length-first order, which differs here.
    assert cbor2.dumps(value, canonical=True).hex() != expected
    assert cbor.loads(bytes.fromhex(expected)) == value


# ---- floats: hand-made half and single packing -------------------------------------------


def test_every_half_float_decodes_and_encodes_like_struct() -> None:
    for bits in range(1 << 16):
        raw = bits.to_bytes(2, "big")
        reference = struct.unpack(">e", raw)[0]
        got = cbor.loads(b"\xf9" + raw)
        assert type(got) is float
        if math.isnan(reference):
            assert math.isnan(got)
            assert cbor.dumps(got) == b"\xf9\x7e\x00"
            continue
        assert struct.pack(">d", got) == struct.pack(">d", reference)
        assert cbor.dumps(reference) == b"\xf9" + raw


@settings(max_examples=300, deadline=None)
@given(st.integers(0, (1 << 32) - 1))
def test_single_floats_decode_like_struct_and_encode_shortest(bits: int) -> None:
    raw = bits.to_bytes(4, "big")
    reference = struct.unpack(">f", raw)[0]
    got = cbor.loads(b"\xfa" + raw)
    assert isinstance(got, float)
    if math.isnan(reference):
        assert math.isnan(got)
        return
    assert struct.pack(">d", got) == struct.pack(">d", reference)
    assert cbor.dumps(reference) == cbor2.dumps(reference, canonical=True)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(), st.floats(width=32), st.floats(width=16)))
def test_floats_take_the_shortest_exact_form_like_cbor2(x: float) -> None:
    ours = cbor.dumps(x)
    assert ours == cbor2.dumps(x, canonical=True)
    if not math.isnan(x):
        assert struct.pack(">d", cbor.loads(ours)) == struct.pack(">d", x)
        size = {0xF9: 2, 0xFA: 4, 0xFB: 8}[ours[0]]
        fmt = {2: ">e", 4: ">f", 8: ">d"}[size]
        assert struct.unpack(fmt, ours[1:])[0] == x  # holds it exactly
        if size > 2:  # and the next smaller form does not
            smaller = {4: ">e", 8: ">f"}[size]
            with contextlib.suppress(OverflowError):  # too large for it: fine
                assert struct.unpack(smaller, struct.pack(smaller, x))[0] != x


# ---- differential, both directions ------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_our_encoding_reads_back_in_cbor2_and_in_ours(value: Any) -> None:
    for deterministic in (False, True):
        encoded = cbor.dumps(value, deterministic=deterministic)
        assert_same(from_cbor2(cbor2.loads(encoded)), value)
        assert_same(cbor.loads(encoded), value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.booleans())
def test_cbor2_encoding_reads_in_ours(value: Any, canonical: bool) -> None:
    encoded = cbor2.dumps(to_cbor2(value), canonical=canonical)
    assert_same(cbor.loads(encoded), value)


def _same_length_order(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values whose maps have keys of one kind, where length-first is bytewise order."""
    return st.recursive(
        st.one_of(st.none(), st.booleans(), ints64, floats, st.text(max_size=8)),
        lambda children: st.one_of(
            st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=6)
        ),
        max_leaves=20,
    )


@settings(max_examples=120, deadline=None)
@given(
    st.one_of(
        _same_length_order(st.text(max_size=30)),
        _same_length_order(st.integers(0, (1 << 64) - 1)),
        _same_length_order(st.binary(max_size=30)),
    )
)
def test_deterministic_bytes_equal_cbor2_canonical(value: Any) -> None:
    """For text, byte-string or unsigned keys both orders of RFC 8949 4.2 agree, so our
    deterministic bytes must equal cbor2's canonical bytes exactly."""
    shuffled = _reverse_maps(value)
    assert cbor.dumps(shuffled, deterministic=True) == cbor2.dumps(value, canonical=True)


def _reverse_maps(value: Any) -> Any:
    if isinstance(value, list):
        return [_reverse_maps(v) for v in value]
    if isinstance(value, dict):
        return {k: _reverse_maps(value[k]) for k in reversed(list(value))}
    return value


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(hashable_keys, st.integers(), min_size=2, max_size=8))
def test_deterministic_keys_ascend_bytewise(value: dict) -> None:
    encoded = cbor.dumps(value, deterministic=True)
    keys = []
    pos = 1  # a map head of fewer than 24 pairs is one byte
    for _ in range(len(value)):
        _, used = cbor.loads_prefix(encoded[pos:])
        keys.append(encoded[pos : pos + used])
        pos += used
        _, used = cbor.loads_prefix(encoded[pos:])
        pos += used
    assert pos == len(encoded)
    assert keys == sorted(keys)
    assert keys == sorted(cbor2.dumps(k, canonical=True) for k in value)


# ---- the decoder under attack -------------------------------------------------------------


def _decode_or_reject(data: bytes) -> Any:
    try:
        return cbor.loads(data)
    except DecodeError:
        return DecodeError


def _has_semantic_tag(value: Any) -> bool:
    """True if ``value`` (ours) holds a tag cbor2 would interpret rather than keep."""
    if isinstance(value, Tag):
        return value.tag in CBOR2_SEMANTIC_TAGS or _has_semantic_tag(value.value)
    if isinstance(value, list | tuple):
        return any(_has_semantic_tag(v) for v in value)
    if isinstance(value, dict):
        return any(_has_semantic_tag(k) or _has_semantic_tag(v) for k, v in value.items())
    return False


def assert_cbor2_agrees(data: bytes) -> None:
    """Whatever our decoder accepts, cbor2 reads as the same value."""
    got = _decode_or_reject(data)
    if got is DecodeError or _has_semantic_tag(got):
        return
    assert_same(from_cbor2(cbor2.loads(data)), got)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    assert_cbor2_agrees(data)


@settings(max_examples=150, deadline=None)
@given(values, st.data())
def test_mutated_encodings_only_raise_decode_error(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(cbor.dumps(value))
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        at = data.draw(st.integers(0, len(encoded) - 1), label="at")
        encoded[at] = data.draw(st.integers(0, 255), label="byte")
    assert_cbor2_agrees(bytes(encoded))


@settings(max_examples=100, deadline=None)
@given(values)
def test_every_truncation_raises_decode_error(value: Any) -> None:
    encoded = cbor.dumps(value)
    for end in range(len(encoded)):
        with pytest.raises(DecodeError):
            cbor.loads(encoded[:end])


def test_declared_lengths_beyond_the_input_allocate_nothing() -> None:
    for head in ("9b", "bb", "5b", "7b"):
        with pytest.raises(DecodeError, match=r"longer than the input|truncated"):
            cbor.loads(bytes.fromhex(head + "00000000ffffffff" + "00"))


def test_nesting_limit() -> None:
    deepest = b"\x81" * 16 + b"\x00"
    assert cbor.loads(deepest) == [[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]
    with pytest.raises(DecodeError, match="nesting deeper than 16"):
        cbor.loads(b"\x81" + deepest)
    assert cbor.loads(b"\x81\x00", max_depth=1) == [0]
    with pytest.raises(DecodeError, match="nesting deeper than 1"):
        cbor.loads(b"\x81\x81\x00", max_depth=1)
    with pytest.raises(DecodeError, match="nesting deeper than 1"):
        cbor.loads(b"\xa1\x01\xc1\x00", max_depth=1)  # a tag counts as a level
    assert cbor.loads(b"\xc1" * 3 + b"\x00", max_depth=3) == Tag(1, Tag(1, Tag(1, 0)))
    with pytest.raises(DecodeError, match="nesting deeper than 100"):
        cbor.loads(b"\x81" * 5000 + b"\x00", max_depth=100)  # no RecursionError


def test_encoder_refuses_what_it_could_not_read_back() -> None:
    deep: list[Any] = [0]
    for _ in range(16):
        deep = [deep]
    with pytest.raises(LocalError, match="nesting deeper"):
        cbor.dumps(deep)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(LocalError, match="nesting deeper"):
        cbor.dumps(loop)
    assert cbor.dumps(deep, max_depth=17)[:17] == b"\x81" * 17


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1, 2}, "cannot encode a set"),
        (object(), "cannot encode a object"),
        ("\ud800", "UTF-8"),
        (Tag(-1, 0), "out of range"),
        (Tag(1 << 64, 0), "out of range"),
        (Tag("1", 0), "must be an int"),
        (Tag(True, 0), "must be an int"),
        ([1, {2: {3}}], "cannot encode a set"),
    ],
)
def test_unencodable_values_raise_local_error(value: Any, message: str) -> None:
    with pytest.raises(LocalError, match=message):
        cbor.dumps(value)


def test_trailing_bytes_and_loads_prefix() -> None:
    with pytest.raises(DecodeError, match="2 trailing bytes"):
        cbor.loads(bytes.fromhex("830102030405"))
    assert cbor.loads_prefix(bytes.fromhex("830102030405")) == ([1, 2, 3], 4)
    assert cbor.loads_prefix(bytes.fromhex("f6")) == (None, 1)
    with pytest.raises(DecodeError, match="truncated"):
        cbor.loads_prefix(b"")


def test_map_keys_arrays_become_tuples_tags_stay_tags() -> None:
    # {[1, [2, h'78']]: "a", 99("k"): "b"}
    encoded = bytes.fromhex("a2" + "820182024178" + "6161" + "d863616b" + "6162")
    expected = {(1, (2, b"x")): "a", Tag(99, "k"): "b"}
    assert from_cbor2(cbor2.loads(encoded)) == expected
    assert cbor.loads(encoded) == expected
    assert cbor.dumps({(1, 2): 3}) == bytes.fromhex("a1820102" + "03")


def test_bytes_like_in_and_out() -> None:
    data = bytes.fromhex("a2616142010261628103")
    for wrap in (bytes, bytearray, memoryview):
        assert cbor.loads(wrap(data)) == {"a": b"\x01\x02", "b": [3]}
    assert cbor.dumps([bytearray(b"ab"), memoryview(b"cd")]) == bytes.fromhex("8242616242" + "6364")
    with pytest.raises(DecodeError, match="must be bytes"):
        cbor.loads("a0")  # type: ignore[arg-type]
    assert type(cbor.loads(b"\x42ab")) is bytes


def test_tags_compare_and_hash_by_value() -> None:
    assert Tag(1, [1]) == Tag(1, [1])
    assert Tag(1, 2) != Tag(2, 2)
    assert Tag(1, 2) != (1, 2)
    assert hash(Tag(5, "x")) == hash(Tag(5, "x"))
    assert repr(Tag(16, b"")) == "Tag(16, b'')"


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=12),
        st.text(max_size=6).map(lambda s: s.encode("utf-8")),
        st.lists(
            st.sampled_from([0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0x9F]),
            max_size=6,
        ).map(bytes),
    )
)
def test_utf8_validator_agrees_with_cpython(raw: bytes) -> None:
    try:
        raw.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert cbor._utf8_valid(raw) is valid


# ---- under real MicroPython -----------------------------------------------------------------

_MP_VECTORS = """
import json, cbor_vectors
print(json.dumps(cbor_vectors.run_known_answers()))
print(json.dumps(cbor_vectors.run_malformed()))
"""


@pytest.mark.micropython
def test_known_answers_and_malformed_under_micropython(micropython) -> None:
    run = micropython.run(_MP_VECTORS, files={"/lib/cbor_vectors.py": VECTORS_SOURCE}).check()
    known, malformed = run.stdout.splitlines()
    assert json.loads(known) == [len(vectors.APPENDIX_A), []]
    assert json.loads(malformed) == vectors.run_malformed()  # same errors, same messages
    assert all(line.startswith("DecodeError: ") for line in json.loads(malformed))


_MP_FLOATS = """
import struct
from bankiot_core import cbor

bad = []
for bits in range(0, 1 << 16, 7):
    raw = bytes((bits >> 8, bits & 0xFF))
    got = cbor.loads(b"\\xf9" + raw)
    ref = struct.unpack(">e", raw)[0]  # this port's struct has half floats; boards may not
    if ref != ref:
        if got == got:
            bad.append(bits)
    elif struct.pack(">d", got) != struct.pack(">d", ref) or cbor.dumps(ref) != b"\\xf9" + raw:
        bad.append(bits)
print("half mismatches", bad)
for hexbits in DOUBLES:
    x = struct.unpack(">d", bytes(int(hexbits[i:i + 2], 16) for i in range(0, 16, 2)))[0]
    print("".join("%02x" % b for b in cbor.dumps(x)))
"""


@pytest.mark.micropython
def test_float_packing_under_micropython(micropython) -> None:
    samples = [
        1.0, 1.1, 65504.0, 65520.0, 1e-8, 5.960464477539063e-8, 1e-40, 2.0**-149, 2.0**-150,
        3.4028234663852886e38, 3.4028235677973366e38, 1e300, -0.0, 100000.0, 0.1, -2.5e-7,
        float("inf"), float("-inf"), float("nan"), 6.103515625e-05, 6.097555160522461e-05,
    ]  # fmt: skip
    doubles = [struct.pack(">d", x).hex() for x in samples]
    code = "DOUBLES = %r\n" % doubles + _MP_FLOATS
    lines = micropython.run(code).check().stdout.splitlines()
    assert lines[0] == "half mismatches []"
    assert lines[1:] == [cbor2.dumps(x, canonical=True).hex() for x in samples]
