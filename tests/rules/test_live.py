"""Live views at the API layer (C8, with C6 and C19 where they meet it)."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from appliance.rules import live as live_mod
from appliance.node.control import ControlClient, gray_image
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.registry import iso, parse_iso
from conftest import enrol_camera_record
from test_node_control import (  # noqa: F401  (server is a fixture)
    approved_camera,
    audit_actions,
    enrol,
    new_node,
    pattern,
    server,
)


def send_frame(client: ControlClient, view_id: str, shift: int = 0) -> int:
    image = gray_image(96, 54, pattern(96, 54, shift), (1280, 720), datetime.now(timezone.utc), [])
    return client.put_image(f"/v1/nodes/{client.camera}/live/{view_id}", image)


def test_C8_live_view_logged_and_time_boxed(tmp_path, central, people, server):
    client = approved_camera(tmp_path, central, people, server)
    with pytest.raises(BadRequest):
        people.call("sam", "live.open", camera="cam-a", purpose="lobby", minutes=16)
    with pytest.raises(BadRequest):
        people.call("sam", "live.open", camera="cam-a", purpose="")
    assert central.records.all("live_views") == []

    view = people.call("sam", "live.open", camera="cam-a", purpose="watching the lobby at closing")["view"]
    assert parse_iso(view["until"]) - parse_iso(view["opened_at"]) == timedelta(minutes=15)
    assert view["user"] == people.ids["sam"] and view["closed_at"] is None and view["grant"] is None
    opened = audit_actions(central, "live.open")
    assert len(opened) == 1 and opened[0]["actor"] == people.ids["sam"]
    assert opened[0]["why"] == "watching the lobby at closing" and opened[0]["refs"]["live_session"] == view["id"]
    with pytest.raises(Refused, match="already have"):
        people.call("sam", "live.open", camera="cam-a", purpose="again")

    # The node is told, sends a frame; only the view's owner sees it.
    assert client.control()["live"] == {"view": view["id"], "until": view["until"], "width": live_mod.LIVE_WIDTH,
                                        "session": view["id"]}     # the same id, for nodes before the rename
    with pytest.raises(NotFound):
        people.call("sam", "live.frame", view=view["id"])
    assert send_frame(client, view["id"]) == 200
    frame = people.call("sam", "live.frame", view=view["id"])
    assert base64.b64decode(frame["pixels"]) == pattern(96, 54) and frame["format"] == "gray8"
    assert frame["view"] == view["id"]
    with pytest.raises(BadRequest, match="view is required"):
        people.call("sam", "live.frame", session=view["id"])      # "session" is a login, not a live view
    with pytest.raises(Refused) as refused:
        people.call("sue", "live.frame", view=view["id"])
    assert refused.value.clause == "C8"
    with pytest.raises(Refused):
        people.call("director", "live.frame", view=view["id"])
    # Both refused attempts to watch sam's view are written down for a breach investigation (C16).
    refused_entries = audit_actions(central, "live.refused")
    assert [(e["actor"], e["target"], e["refs"]) for e in refused_entries] == [
        (people.ids[who], "cam-a", {"live_session": view["id"]}) for who in ("sue", "director")]
    assert "only to the person who opened it" in refused_entries[0]["why"]
    assert [s["id"] for s in people.call("director", "live.list")["views"]] == [view["id"]]
    assert people.call("sue", "live.list")["views"] == []

    # Fifteen minutes later the live view is over, everywhere.
    central.clock.offset += timedelta(minutes=15, seconds=1)
    with pytest.raises(Refused) as refused:
        people.call("sam", "live.frame", view=view["id"])
    assert refused.value.clause == "C8"
    assert client.control()["live"] is None
    assert send_frame(client, view["id"]) == 409
    assert live_mod.expire_views(central) == 1
    stored = central.records.get("live_views", view["id"])
    assert stored["closed_at"] == view["until"]
    expired = audit_actions(central, "live.expired")
    assert len(expired) == 1 and expired[0]["actor"] == "system"
    assert expired[0]["details"]["frames_received"] == 1 and expired[0]["details"]["user"] == people.ids["sam"]
    assert live_mod.expire_views(central) == 0


def test_C8_it_cannot_open_live_view(tmp_path, central, people, server):
    approved_camera(tmp_path, central, people, server)
    with pytest.raises(Refused) as refused:
        people.call("ivy", "live.open", camera="cam-a", purpose="checking the camera works")
    assert refused.value.code == "forbidden"
    view = people.call("sam", "live.open", camera="cam-a", purpose="lobby")["view"]
    for op, args in (("live.frame", {"view": view["id"]}), ("live.close", {"view": view["id"]}),
                     ("live.list", {})):
        with pytest.raises(Refused):
            people.call("ivy", op, **args)
    assert [s["user"] for s in central.records.all("live_views")] == [people.ids["sam"]]
    assert [e["actor"] for e in audit_actions(central, "live.open")] == [people.ids["sam"]]


def test_C8_live_view_needs_an_approved_camera(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    with pytest.raises(Refused) as refused:
        people.call("sam", "live.open", camera="cam-a", purpose="lobby")
    assert refused.value.clause == "C6"
    with pytest.raises(NotFound):
        people.call("sam", "live.open", camera="cam-zz", purpose="lobby")
    with pytest.raises(BadRequest):
        people.call("sam", "live.open", camera="../cam-a", purpose="lobby")
    assert central.records.all("live_views") == []


def test_C8_closing_a_live_view_is_logged_and_stops_the_frames(tmp_path, central, people, server):
    client = approved_camera(tmp_path, central, people, server)
    view = people.call("sue", "live.open", camera="cam-a", purpose="queue at the desk", minutes=5)["view"]
    assert parse_iso(view["until"]) - parse_iso(view["opened_at"]) == timedelta(minutes=5)
    assert send_frame(client, view["id"]) == 200
    with pytest.raises(Refused):
        people.call("sam", "live.close", view=view["id"])            # not hers to close
    people.call("sue", "live.close", view=view["id"], reason="queue cleared")
    assert client.control()["live"] is None and send_frame(client, view["id"]) == 409
    with pytest.raises(Refused):
        people.call("sue", "live.frame", view=view["id"])
    closed = audit_actions(central, "live.close")[-1]
    assert closed["actor"] == people.ids["sue"] and closed["why"] == "queue cleared"
    # The Director may end anyone's live view (oversight).
    other = people.call("sam", "live.open", camera="cam-a", purpose="lobby")["view"]
    people.call("director", "live.close", view=other["id"], reason="not needed now")
    assert central.records.get("live_views", other["id"])["closed_at"] is not None


def test_C17_a_monitoring_grant_opens_live_view_inside_its_window_only_and_ends_with_it(central, people):
    """The Director approved monitoring from 10:00 to 10:10: a live view under it opens neither before
    10:00 nor after 10:10, and one opened at 10:06 ends at 10:10, not 15 minutes later."""
    enrol_camera_record(central, "cam-a", "77" * 32)
    now = central.now()
    incident = people.call("sam", "incident.create", grounds="conduct_violation", occurred_at=iso(now),
                           location="desk", description="a patron keeps coming back to shout at staff",
                           attestation=True)["incident"]
    start, end = now + timedelta(hours=1), now + timedelta(hours=1, minutes=10)
    request = people.call("sam", "request.create", incident=incident["id"], kind="monitor", cameras=["cam-a"],
                          start=iso(start), end=iso(end), reason="watch for the patron at opening")["request"]
    grant = people.call("director", "request.decide", request=request["id"], decision="approve",
                        reason="specific and short")["grant"]
    with pytest.raises(Refused) as early:
        people.call("sam", "live.open", camera="cam-a", purpose="the patron", grant=grant["id"])
    assert early.value.clause == "C17"
    [refused] = central.audit.query(action_prefix="live.refused")     # a refused attempt is logged (C16)
    assert (refused["actor"], refused["target"], refused["refs"]) == (people.ids["sam"], "cam-a",
                                                                      {"grant": grant["id"]})
    central.clock.offset += timedelta(hours=1, minutes=6)
    view = people.call("sam", "live.open", camera="cam-a", purpose="the patron", grant=grant["id"])["view"]
    assert parse_iso(view["until"]) == end
    people.call("sam", "live.close", view=view["id"])
    central.clock.offset += timedelta(minutes=5)
    with pytest.raises(Refused) as late:
        people.call("sam", "live.open", camera="cam-a", purpose="the patron", grant=grant["id"])
    assert late.value.clause == "C17"


def test_C19_imminent_danger_grant_opens_live_view_bounded_by_the_grant(tmp_path, central, people, server):
    approved_camera(tmp_path, central, people, server)
    grant = people.call("sam", "imminent.invoke", reason="a man is threatening staff at the desk",
                        cameras=["cam-a"])["grant"]
    with pytest.raises(Refused):
        people.call("sue", "live.open", camera="cam-a", purpose="help", grant=grant["id"])   # not her grant
    view = people.call("sam", "live.open", camera="cam-a", purpose="watch the desk", grant=grant["id"])["view"]
    assert view["grant"] == grant["id"]
    assert parse_iso(view["until"]) <= parse_iso(grant["end"])
    assert audit_actions(central, "live.open")[-1]["refs"]["grant"] == grant["id"]
    assert central.custody.is_sealed                                        # live view works sealed
    assert central.nodes.live == {}


def test_C8_a_live_view_ends_with_its_account_or_its_grant(tmp_path, central, people, server):
    """A live view is watched under its owner's account and, when opened under one, a grant. Disabling
    the account, or the Director revoking the grant, ends the view there and then: the node stops
    sending frames and the view is closed in the log with the reason, not left open to run out."""
    client = approved_camera(tmp_path, central, people, server)
    view = people.call("sue", "live.open", camera="cam-a", purpose="queue at the desk")["view"]
    assert send_frame(client, view["id"]) == 200
    people.call("director", "user.set_disabled", user="sue", disabled=True)
    assert central.records.get("live_views", view["id"])["close_reason"] == "account disabled"
    assert client.control()["live"] is None and send_frame(client, view["id"]) == 409

    grant = people.call("sam", "imminent.invoke", reason="a man is threatening staff at the desk",
                        cameras=["cam-a"])["grant"]
    view = people.call("sam", "live.open", camera="cam-a", purpose="watch the desk", grant=grant["id"])["view"]
    people.call("director", "grant.revoke", grant=grant["id"], reason="it was a misunderstanding")
    assert central.records.get("live_views", view["id"])["close_reason"] == f"grant {grant['id']} revoked"
    assert client.control()["live"] is None and send_frame(client, view["id"]) == 409
    with pytest.raises(Refused):
        people.call("sam", "live.frame", view=view["id"])
    ended = [(e["why"], e["details"]["user"]) for e in audit_actions(central, "live.expired")]
    assert ended == [("account disabled", people.ids["sue"]), (f"grant {grant['id']} revoked", people.ids["sam"])]
