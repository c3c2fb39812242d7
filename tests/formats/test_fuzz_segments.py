"""Fuzzing the segment reader and verifier (bytes from a node, or from anyone on the LAN).

Whatever bytes arrive, the streaming verifier (what ingest runs on an upload before it
knows who sent it), the file verifier and the crash sealer answer with a SegmentError
or a verified segment: never another exception, which at ingest would be a 500 and a
traceback for every such upload.
"""
from __future__ import annotations

import os

import nacl.public
import nacl.signing
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from appliance.errors import SegmentError
from appliance.formats import segment as seg
from appliance.formats.canonical import CanonicalError, canonical_json, parse_canonical
from hw.backend import Frame

NODE = nacl.signing.SigningKey(bytes(range(32)))
ARCHIVE = nacl.public.PrivateKey(bytes(range(1, 33)))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _segment(tmp_dir) -> bytes:
    path = tmp_dir / f"s-{os.urandom(4).hex()}.cseg"
    w = seg.SegmentWriter(path, params=seg.StreamParams("cam-a", 64, 48, 10), seq=0, prev_digest=None,
                          archive_key=ARCHIVE.public_key, signing_key=NODE, chunk_bytes=200)
    for i in range(4):
        w.write_frame(Frame(b"\x00\x00\x00\x01\x65" + bytes(range(i, i + 150)), i == 0, i * 100_000))
    w.close()
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> bytes:
    return _segment(tmp_path_factory.mktemp("fuzz-seg"))


def _verify(data: bytes, pieces: int = 1):
    """The streaming verifier as ingest runs it: the enrolled key, bytes in pieces."""
    verifier = seg.SegmentVerifier(seg.enrolled_key(NODE.verify_key, "cam-a"), max_bytes=1 << 20)
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        verifier.feed(data[i:i + step])
    return verifier.finish()


def _with_header(header_json: bytes, sign: bool = True) -> bytes:
    """A prefix and a header as a node would send them (signed by the enrolled key when `sign`)."""
    sig = NODE.sign(header_json).signature if sign else bytes(64)
    return seg.PREFIX + seg.U32.pack(len(header_json)) + header_json + sig


NESTED = [b"[" * n + b"]" * n for n in (1000, 5000, 30000)] + [b'{"a":' * 3000 + b"1" + b"}" * 3000]


@pytest.mark.parametrize("header_json", NESTED, ids=["list-1000", "list-5000", "list-30000", "object-3000"])
def test_a_deeply_nested_header_is_a_segment_error(header_json):
    with pytest.raises(SegmentError):
        _verify(_with_header(header_json, sign=False) + bytes(4))
    with pytest.raises(CanonicalError):
        parse_canonical(header_json)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)


@FUZZ
@given(value=JSON, extra=st.binary(max_size=64))
def test_any_signed_json_header_is_verified_or_refused(value, extra):
    try:
        header_json = canonical_json(value)
    except CanonicalError:
        return
    if not 2 <= len(header_json) <= seg.MAX_JSON_BYTES:
        return
    with pytest.raises(SegmentError):
        _verify(_with_header(header_json) + extra)


@FUZZ
@given(data=st.data())
@example(data=None)
def test_any_mutation_of_a_real_segment_is_verified_or_refused(valid, data, tmp_path):
    if data is None:
        mutated, pieces = valid[:9] + b"\xff\xff\xff\xff" + valid[13:], 3
    else:
        mutated = bytearray(valid)
        for _ in range(data.draw(st.integers(1, 6))):
            kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete", "length"]))
            at = data.draw(st.integers(0, max(0, len(mutated) - 1)))
            if kind == "flip" and mutated:
                mutated[at] ^= data.draw(st.integers(1, 255))
            elif kind == "cut":
                del mutated[at:]
            elif kind == "insert":
                mutated[at:at] = data.draw(st.binary(min_size=1, max_size=40))
            elif kind == "delete":
                del mutated[at:at + data.draw(st.integers(1, 40))]
            else:   # a plausible length field anywhere: the values a parser must bound
                mutated[at:at + 4] = seg.U32.pack(data.draw(st.sampled_from(
                    [0, 1, 2, 16, 17, 18, 65536, 65537, seg.MAX_CHUNK_CIPHERTEXT, 2**32 - 1])))
        mutated, pieces = bytes(mutated), data.draw(st.integers(1, 7))
    try:
        info = _verify(mutated, pieces)
    except SegmentError:
        pass
    else:
        assert mutated == valid and info.complete
    path = tmp_path / "m.cseg"
    path.write_bytes(mutated)
    try:
        seg.read_public(path)
    except SegmentError:
        pass
    # The crash sealer reads whatever a crash (or a bad disk) left in a .part.
    part = tmp_path / "m.cseg.part"
    part.write_bytes(mutated)
    path.unlink()
    try:
        sealed = seg.seal_truncated(part, NODE, "fuzz")
    except SegmentError:
        part.unlink()
    else:
        if sealed is not None:
            assert seg.verify_file(path, seg.enrolled_key(NODE.verify_key)).digest == sealed.digest
            path.unlink()
