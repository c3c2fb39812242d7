"""Clauses that belong to the whole system rather than one module (C2, C10, C22)."""
from __future__ import annotations

import http.client
import json
import os
import stat
import urllib.parse

import pytest

from appliance.client import ApiClient
from appliance.errors import BadRequest
from conftest import DIRECTOR


def test_C10_api_is_a_local_unix_socket_only_for_its_group(serving, central):
    sock = central.paths.data / "api.sock"
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660, "only the appliance's own users (group custodian) may connect"
    # The API is not reachable on the network port: ingest knows nothing of /v1/call.
    u = urllib.parse.urlsplit(serving.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/v1/call", body=json.dumps({"op": "session.login", "args": {"user": DIRECTOR[0],
                                                                                      "passphrase": DIRECTOR[1]}}))
    assert conn.getresponse().status in (404, 405)
    assert ApiClient(str(sock)).login(*DIRECTOR)["token"]


def test_C22_every_access_is_attributable_to_one_person(central, people):
    people.login("sam")
    people.call("sam", "camera.list")
    people.call("sam", "breach.report", what="I saw a screen with footage left open at the desk",
                noticed_at=central.now().isoformat())
    people.call("director", "archive.unseal", passphrase=DIRECTOR[1])
    entries = central.audit.query()
    human = [e for e in entries if e["actor"] != "system"]
    user_ids = {u["id"] for u in central.records.all("users")}
    assert human and all(e["actor"] in user_ids or e["action"] == "session.login_failed" for e in human)
    assert any(e["action"] == "breach.report" and e["actor"] == people.ids["sam"] for e in human)
    assert any(e["action"] == "archive.unseal" and e["actor"] == people.ids["director"] for e in human)


def test_C2_one_director_account_and_no_way_to_make_another(central, people):
    for role in ("director", "board"):
        with pytest.raises(BadRequest, match="role must be one of: staff, it"):
            central.call("user.create", {"name": f"new{role}", "role": role, "passphrase": "a-long-passphrase"},
                         people.tokens["director"])
    directors = [u for u in central.records.all("users") if u["role"] == "director"]
    assert len(directors) == 1
