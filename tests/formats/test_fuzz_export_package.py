"""Fuzzing the evidence-package checker (`custodian export verify`): a package is whatever a
recipient was handed, so it may be anything. Signed with a key of the sender's own making (the
checker trusts the key in the package unless one is pinned), every manifest, header and file
must end in a PackageFault that names the problem: never a traceback.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import zipfile
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from appliance.custody.keys import ed25519_public_pem
from appliance.formats import export_package as fmt
from appliance.formats.canonical import canonical_json

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
APPLIANCE = nacl.signing.SigningKey(bytes(range(32)))
NODE = nacl.signing.SigningKey(bytes(range(1, 33)))
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=10)
NODE_KEY = bytes(NODE.verify_key).hex()
BASE = "segments/cam-a/0000000000"


REAL = object()


def _documents(header_doc=REAL) -> tuple[dict, dict[str, bytes]]:
    """A manifest and its files, shaped as the builder writes them (the clip itself is junk)."""
    header = canonical_json(header_doc if header_doc is not REAL else
                            {"type": "cseg-header", "camera": "cam-a", "seq": 0, "node_key": NODE_KEY, "prev": None})
    trailer = canonical_json({"type": "cseg-trailer", "camera": "cam-a", "seq": 0})
    files = {"appliance-key.pem": ed25519_public_pem(bytes(APPLIANCE.verify_key)).encode(),
             "segments/cam-a/node-key.pem": ed25519_public_pem(bytes(NODE.verify_key)).encode(),
             f"{BASE}.header.json": header, f"{BASE}.header.sig": NODE.sign(header).signature,
             f"{BASE}.trailer.json": trailer, f"{BASE}.trailer.sig": NODE.sign(trailer).signature,
             "video/cam-a-1.mp4": b"not really an mp4"}
    segment = {"seq": 0, "digest": "0" * 64, "header": f"{BASE}.header.json", "trailer": f"{BASE}.trailer.json",
               "header_signature": base64.b64encode(files[f"{BASE}.header.sig"]).decode(),
               "trailer_signature": base64.b64encode(files[f"{BASE}.trailer.sig"]).decode(),
               "annexb": {"offset": 0, "bytes": 17, "sha256": "0" * 64}}
    clip = files["video/cam-a-1.mp4"]
    piece = {"file": "video/cam-a-1.mp4", "made": "stream_copy", "filters": [], "frames": 1, "segments": [segment],
             "sha256": hashlib.sha256(clip).hexdigest(), "bytes": len(clip),
             "annexb": {"sha256": "0" * 64, "bytes": 17}}
    manifest = {"type": "custodian-export", "v": 1, "package": "rel-000001-20260101T000000Z",
                "release": {"id": "rel-000001"}, "stills": [],
                "cameras": [{"camera": "cam-a", "node_key": NODE_KEY,
                             "node_key_pem": "segments/cam-a/node-key.pem", "pieces": [piece], "gaps": []}]}
    return manifest, files


def _write_package(root: Path, manifest, files: dict[str, bytes], manifest_bytes: bytes | None = None) -> Path:
    root.mkdir()
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    if isinstance(manifest, dict) and "sha256sums" not in manifest:
        manifest = dict(manifest, sha256sums=hashlib.sha256(sums.encode()).hexdigest(), files=len(files))
    if manifest_bytes is None:
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    for name, data in {**files, "SHA256SUMS": sums.encode(), "manifest.json": manifest_bytes,
                       "manifest.sig": APPLIANCE.sign(manifest_bytes).signature}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _paths(inner, prefix + (i,))


def _replace(value, path, new):
    if not path:
        return new
    value = copy.deepcopy(value)
    target = value
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return value


def _refused(path: Path, **kw) -> str:
    with pytest.raises(fmt.PackageFault) as fault:
        fmt.verify_package(path, **kw)
    return str(fault.value)


@FUZZ
@given(data=st.data())
def test_any_signed_manifest_is_checked_or_refused_with_a_fault(tmp_path_factory, data):
    manifest, files = _documents()
    paths = list(_paths(manifest))
    path = data.draw(st.sampled_from(paths))
    mutated = _replace(manifest, path, data.draw(JSON))
    root = tmp_path_factory.mktemp("pkg") / "rel-000001-20260101T000000Z"
    try:   # a manifest whose cameras hold no clip has nothing to refuse: it checks, and says so
        report = fmt.verify_package(_write_package(root, mutated, files))
    except fmt.PackageFault as e:
        assert str(e)
    else:
        assert report.clips == [] and report.key_sha256


@pytest.mark.parametrize("header", [[1], "cseg-header", 7, None, {"type": "cseg-header"}],
                         ids=["list", "string", "int", "null", "no-camera"])
def test_a_signed_header_that_is_not_an_object_is_a_fault(tmp_path, header):
    manifest, files = _documents(header_doc=header)
    assert "segment 0" in _refused(_write_package(tmp_path / "p", manifest, files))


@pytest.mark.parametrize("manifest_bytes", [b"[" * 100000 + b"]" * 100000, b'{"type": "custodian-export", "v": 1}',
                                            b"\xff\xfe", b"[]", b'"custodian-export"'],
                         ids=["nested", "fields-missing", "not-utf8", "list", "string"])
def test_a_signed_manifest_of_any_shape_is_a_fault(tmp_path, manifest_bytes):
    _manifest, files = _documents()
    assert _refused(_write_package(tmp_path / "p", None, files, manifest_bytes))


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return out.getvalue()


@FUZZ
@given(blob=st.binary(max_size=400) | st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12), st.binary(max_size=30), max_size=4).map(_zip),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4))
@example(blob=_zip({".": b"x"}), flips=[])
@example(blob=_zip({"/": b"x", "a/b": b"y"}), flips=[])
def test_any_zip_is_refused_with_a_fault(tmp_path_factory, blob, flips):
    data = bytearray(blob)
    for at, bit in flips:
        if data:
            data[at % len(data)] ^= bit
    path = tmp_path_factory.mktemp("zip") / "p.zip"
    path.write_bytes(bytes(data))
    assert _refused(path, passphrase="AAAAA-BBBBB")


def test_a_zip_whose_entries_fail_their_crc_is_a_fault(tmp_path):
    _manifest, files = _documents()
    root = _write_package(tmp_path / "p", _documents()[0], files)
    blob = bytearray(_zip({f"p/{p.relative_to(root).as_posix()}": p.read_bytes()
                           for p in sorted(root.rglob("*")) if p.is_file()}))
    at = blob.index(b"not really an mp4")
    blob[at] ^= 0x20                                      # stored, so the CRC no longer matches
    (tmp_path / "p.zip").write_bytes(bytes(blob))
    assert _refused(tmp_path / "p.zip", passphrase="AAAAA-BBBBB")
