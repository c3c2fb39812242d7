"""Fuzzing what the central takes from outside, short of segments (tests/formats/test_fuzz_segments.py):
the enrolment request (anyone on the LAN may seal one to the public live key), the node
channel's signed headers and sealed images, and the local API's body.

Each must answer any input with its own refusal (`_Refusal`, `NodeRefused`, `BadRequest`),
which the routes turn into a 4xx with a message, and store nothing it refused.
"""
from __future__ import annotations

import json

import nacl.public
import nacl.signing
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from appliance.central.api import parse_call
from appliance.central.node_channel import authenticate, open_image
from appliance.errors import BadRequest, NodeRefused
from appliance.formats.node_protocol import HEADER_CAMERA, HEADER_SIGNATURE, HEADER_TIME, signed_headers
from appliance.rules.enrolment import _Refusal, enrol_request
from conftest import enrol_camera_record

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
                    max_leaves=25)
NODE = nacl.signing.SigningKey(bytes(range(32)))


def _enrolment_like(central) -> st.SearchStrategy:
    """Requests shaped like the real one, with any field replaced by anything."""
    real = {"camera": "entrance", "node_key": bytes(NODE.verify_key).hex(), "code": "7K3Q-9XWP-2DMF",
            "archive_key": bytes(central.keys.archive_public_key()).hex(),
            "live_key": bytes(central.keys.live_public_key()).hex(), "time": 1}
    return st.fixed_dictionaries({}, optional={k: st.just(v) | JSON for k, v in real.items()}) | JSON


@FUZZ
@given(data=st.data())
@example(data=None)
def test_any_enrolment_body_is_refused_and_enrols_nothing(central, data):
    live = nacl.public.SealedBox(central.keys.live_public_key())
    if data is None:
        body = bytes(live.encrypt(NODE.sign(b"[" * 3000 + b"]" * 3000)))
    else:
        kind = data.draw(st.sampled_from(["raw", "sealed", "signed"]))
        if kind == "raw":
            body = data.draw(st.binary(max_size=200))
        else:
            doc = data.draw(_enrolment_like(central))
            text = json.dumps(doc).encode() if data.draw(st.booleans()) else data.draw(st.binary(max_size=200))
            body = bytes(live.encrypt(NODE.sign(text) if kind == "signed" else text))
    with pytest.raises(_Refusal) as refusal:
        enrol_request(central, "entrance", body, "192.0.2.1")
    assert 400 <= refusal.value.status < 500 and refusal.value.message
    assert central.records.all("cameras") == []


@FUZZ
@given(camera=st.text(max_size=50), time_text=st.text(max_size=25), signature=st.text(max_size=140),
       body=st.binary(max_size=64), path=st.text(max_size=40))
def test_any_node_request_headers_are_refused(central, camera, time_text, signature, body, path):
    enrol_camera_record(central, "cam-a", bytes(NODE.verify_key).hex()) if not central.records.all("cameras") else None
    headers = {HEADER_CAMERA: camera, HEADER_TIME: time_text, HEADER_SIGNATURE: signature}
    for target in (camera, "cam-a"):
        with pytest.raises(NodeRefused) as refusal:
            authenticate(central, target, "GET", path, headers, body)
        assert refusal.value.status == 403


@FUZZ
@given(doc=JSON | st.fixed_dictionaries({}, optional={
    "width": st.integers() | JSON, "height": st.integers() | JSON, "format": JSON, "pixels": st.text() | JSON,
    "frame": JSON, "masks": JSON, "at": st.text() | JSON}), raw=st.booleans(), junk=st.binary(max_size=80))
@example(doc=None, raw=False, junk=b"[" * 5000 + b"]" * 5000)
def test_any_sealed_image_is_opened_or_refused(central, doc, raw, junk):
    box = nacl.public.SealedBox(central.keys.live_public_key())
    if raw:
        body = junk
    else:
        text = junk if doc is None else json.dumps(doc).encode()
        body = bytes(box.encrypt(text))
    try:
        image = open_image(central, body)
    except NodeRefused as e:
        assert e.status == 400
    else:
        assert 2 <= image["width"] <= 320 and 2 <= image["height"] <= 320


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
@example(raw=b'{"op":"x","args":' + b"[" * 100000 + b"]" * 100000 + b"}")
@example(raw=b"\xff\xfe")
@example(raw=b'{"op":"x","n":' + b"9" * 5000 + b"}")
def test_any_api_body_is_parsed_or_a_bad_request(raw):
    try:
        body = parse_call(raw)
    except BadRequest as e:
        assert str(e)
    else:
        assert isinstance(body, dict) and isinstance(body["op"], str)


def test_a_signed_request_still_passes(central):
    """The fuzzed refusals are not a check that refuses everything: the real request is accepted."""
    enrol_camera_record(central, "cam-a", bytes(NODE.verify_key).hex())
    headers = signed_headers(NODE, "cam-a", "GET", "/v1/nodes/cam-a/control", 10**15, b"")
    assert authenticate(central, "cam-a", "GET", "/v1/nodes/cam-a/control", headers, b"")["id"] == "cam-a"
