"""Bodies the API cannot read get a 400 with a clear message, never a 500: a real central
on its real Unix socket, sent raw bytes the way a buggy or hostile client would."""
from __future__ import annotations

import http.client
import json
import logging
import socket

import pytest

from conftest import DIRECTOR, serving_central_at


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def post(sock: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    conn = _Unix(sock)
    try:
        conn.request("POST", "/v1/call", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with serving_central_at(tmp_path_factory.mktemp("api") / "central") as serving:
        yield str(serving.central.paths.data / "api.sock")


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


UNREADABLE = {
    "nested_1000_deep_as_args": ('{"op": "session.whoami", "args": {"x": ' + nested(1000) + "}}").encode(),
    "nested_990_deep_body": nested(990).encode(),
    "nested_100000_deep_body": nested(100_000).encode(),
    "nested_deeper_than_any_operation_takes": ('{"op": "camera.set_masks", "args": {"masks": '
                                               + nested(40) + "}}").encode(),
    "not_utf8": b'{"op": "session.login", "args": {"user": "\xff\xfe"}}',
    "utf16": '{"op": "session.whoami"}'.encode("utf-16"),
    "bom_first": b"\xef\xbb\xbf" + b'{"op": "session.whoami"}',
    "empty": b"",
    "truncated": b'{"op": "session.login", "args": {"user": "sam"',
    "array": b"[]",
    "string": b'"session.login"',
    "number": b"42",
    "null": b"null",
    "op_not_text": b'{"op": 7}',
    "op_missing": b'{"args": {}}',
    "args_a_list": b'{"op": "session.login", "args": ["sam", "pass"]}',
    "nan": b'{"op": "audit.query", "args": {"limit": NaN}}',
    "infinity": b'{"op": "audit.query", "args": {"limit": -Infinity}}',
    "integer_of_5000_digits": b'{"op": "audit.query", "args": {"limit": ' + b"9" * 5000 + b"}}",
}


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_an_unreadable_body_is_a_400_with_a_clear_message(api, name, caplog):
    with caplog.at_level(logging.ERROR):
        status, answer = post(api, UNREADABLE[name])
    assert status == 400, (name, answer)
    assert answer["ok"] is False and answer["error"]["code"] == "bad_request"
    message = answer["error"]["message"]
    assert 10 <= len(message) <= 200 and "Traceback" not in message and "internal" not in message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "the central logged a fault"


def test_deep_nesting_is_named_as_the_reason(api):
    for body in (UNREADABLE["nested_1000_deep_as_args"], UNREADABLE["nested_100000_deep_body"]):
        assert "levels deep" in post(api, body)[1]["error"]["message"]
    assert "UTF-8" in post(api, UNREADABLE["not_utf8"])[1]["error"]["message"]


def test_the_declared_charset_is_not_trusted_the_body_is_read_as_utf8(api):
    # An unknown charset used to reach a codec lookup: the body is JSON, so UTF-8, whatever the header says.
    status, answer = post(api, b'{"op": "session.whoami"}', "application/json; charset=x-no-such-codec")
    assert status == 401 and answer["error"]["code"] == "not_authenticated"


def test_a_token_that_is_not_text_is_no_session(api):
    status, answer = post(api, b'{"op": "session.whoami", "token": {"a": [1]}}')
    assert status == 401 and answer["error"]["code"] == "not_authenticated"


def test_a_blank_user_name_at_login_is_a_400(api):
    # It reached the audit log as an entry without an actor, which refuses it: a 500.
    for user in ("", "   "):
        status, answer = post(api, json.dumps({"op": "session.login",
                                               "args": {"user": user, "passphrase": "x" * 12}}).encode())
        assert status == 400 and answer["error"]["field"] == "user", answer
        assert answer["error"]["message"] == '"User name" is required'


def test_the_central_answers_normally_after_the_bad_requests(api):
    for body in UNREADABLE.values():
        post(api, body)
    body = json.dumps({"op": "session.login", "args": {"user": DIRECTOR[0], "passphrase": DIRECTOR[1]}})
    status, answer = post(api, body.encode())
    assert status == 200 and answer["ok"] and answer["result"]["token"]


def test_each_error_comes_with_the_http_status_the_docs_table_gives(api):
    """Over the real socket: the status sent for each code is the one docs/api.md gives it
    (which tests/rules/test_messages.py holds to appliance/errors.py's HTTP_STATUS)."""
    from test_messages import documented

    def call(op: str, args: dict | None = None, token: str | None = None) -> tuple[int, dict]:
        return post(api, json.dumps({"op": op, "args": args or {}, "token": token}).encode())

    seen = {}

    def expect(code: str, status: int, answer: dict) -> None:
        assert answer.get("error", {}).get("code") == code, answer
        seen[code] = status

    expect("not_authenticated", *call("session.whoami"))
    expect("not_found", *call("no.such_operation"))
    expect("bad_request", *call("session.login", {"user": DIRECTOR[0]}))
    expect("wrong_passphrase", *call("session.login", {"user": DIRECTOR[0], "passphrase": "not the passphrase"}))
    director = call("session.login", {"user": DIRECTOR[0], "passphrase": DIRECTOR[1]})[1]["result"]["token"]
    call("policy.acknowledge", {"version": call("policy.text", None, director)[1]["result"]["version"]}, director)
    expect("bad_request", *call("user.create", {"name": "iona", "role": "it"}, director))
    created = call("user.create", {"name": "iona", "role": "it", "passphrase": "temporary-iona-1"}, director)
    assert created[0] == 200, created
    iona = call("session.login", {"user": "iona", "passphrase": "temporary-iona-1"})[1]["result"]["token"]
    expect("passphrase_change_required", *call("user.list", None, iona))
    call("user.change_passphrase", {"old": "temporary-iona-1", "new": "iona's own passphrase"}, iona)
    expect("policy_ack_required", *call("user.list", None, iona))
    version = call("policy.text", None, iona)[1]["result"]["version"]
    call("policy.acknowledge", {"version": version}, iona)
    expect("forbidden", *call("archive.unseal", {"passphrase": "x" * 12}, iona))
    for _ in range(5):
        call("session.login", {"user": "iona", "passphrase": "a wrong passphrase"})
    expect("locked", *call("session.login", {"user": "iona", "passphrase": "iona's own passphrase"}))
    docs = documented()
    assert {code: str(status) for code, status in seen.items()} == {code: docs[code] for code in seen}
