"""Alerts, what needs attention, and the screens' watch (C1, C5, C15, C19; C8 for who sees what).

Reference: docs/api/alerts.md. Alerts are written by `Central.alert` (breach reports,
imminent-danger use, cameras offline or moved, gaps, forged segments, a full disk,
the entrance sign gone); this module lets people see them:

- the Director (and an acting director inside her period) sees every alert: she is
  the custodian they are written for;
- IT sees the alerts about the system it runs (cameras, the disk, the archive's
  integrity, signage), never those about people's actions (a breach report, an
  imminent-danger use, a lockout);
- a staff member sees the alerts about her own actions (an incident report owed
  after her imminent-danger use).

Each person acknowledges an alert for herself; an alert the Director acknowledged is
marked `acknowledged` for everyone. `session.watch` is the terminal's long poll: it
answers at once when a new alert or a change of the archive's seal is there, and
never counts as a person's activity.
"""
from __future__ import annotations

from appliance.errors import NotFound
from appliance.rules.auditing import audit_action
from appliance.rules.registry import ANYONE, iso, op, parse_iso

# What IT is told: the health of what it runs. Nothing about people (C8: IT runs the system).
SYSTEM_KINDS = ("camera_offline", "camera_online", "camera_moved", "gap", "integrity", "disk_full",
                "retention", "signage", "enrolment")
WATCH_MAX_SECONDS = 25
LIST_MAX = 500


def _number(alert_id: str | None) -> int:
    """Alert ids are `alr-000123`: their number orders them."""
    try:
        return int((alert_id or "").rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def may_see(caller, alert: dict) -> bool:
    if caller.is_director:
        return True
    if caller.role == "it":
        return alert["kind"] in SYSTEM_KINDS
    return alert.get("user") == caller.user_id


def _acknowledged_by(alert: dict, user_id: str) -> bool:
    return any(a["user"] == user_id for a in alert.get("acknowledgements", []))


def _view(caller, alert: dict) -> dict:
    return alert | {"acknowledged_by_me": _acknowledged_by(alert, caller.user_id)}


def visible_alerts(central, caller) -> list[dict]:
    """The alerts this caller may see, oldest first."""
    return sorted((a for a in central.records.all("alerts") if may_see(caller, a)), key=lambda a: _number(a["id"]))


def unacknowledged(central, caller) -> list[dict]:
    return [a for a in visible_alerts(central, caller) if not _acknowledged_by(a, caller.user_id)]


@op("alert.list", ANYONE)
def list_alerts(central, caller, args):
    """The alerts you may see, newest first; `unacknowledged` leaves out those you acknowledged."""
    only_new = args.bool("unacknowledged")
    after = args.id("after", required=False)
    limit = args.int("limit", required=False, default=100, lo=1, hi=LIST_MAX)
    args.done()
    alerts = visible_alerts(central, caller)
    if after:
        alerts = [a for a in alerts if _number(a["id"]) > _number(after)]
    if only_new:
        alerts = [a for a in alerts if not _acknowledged_by(a, caller.user_id)]
    newest_first = [_view(caller, a) for a in reversed(alerts)]
    return {"alerts": newest_first[:limit], "total": len(newest_first),
            "unacknowledged": len(unacknowledged(central, caller))}


@op("alert.acknowledge", ANYONE)
def acknowledge_alert(central, caller, args):
    """Acknowledge an alert you may see (for yourself; the Director's marks it acknowledged for all)."""
    alert_id = args.id("alert")
    args.done()
    alert = central.records.get("alerts", alert_id)
    if alert is None or not may_see(caller, alert):
        raise NotFound(f"no alert {alert_id}")
    if _acknowledged_by(alert, caller.user_id):
        return {"alert": _view(caller, alert)}   # acknowledging twice changes nothing
    stamp = iso(central.now())

    def add(doc):
        doc.setdefault("acknowledgements", []).append({"user": caller.user_id, "at": stamp})
        if caller.is_director:
            doc["acknowledged"] = True
    updated = central.records.update("alerts", alert_id, add)
    audit_action(central, caller, "alert.acknowledge", target=alert_id, details={"kind": alert["kind"]})
    return {"alert": _view(caller, updated)}


@op("session.watch", ANYONE, waits=True)
def watch(central, caller, args):
    """Wait (up to 25 s) for a new alert or a change of the archive's seal; never counts as activity."""
    after = args.id("after", required=False)
    sealed_shown = args.bool("sealed") if args.raw.get("sealed") is not None else None
    wait = args.int("wait", required=False, default=0, lo=0, hi=WATCH_MAX_SECONDS)
    args.done()
    alerts = visible_alerts(central, caller)
    new = [_view(caller, a) for a in alerts if _number(a["id"]) > _number(after)] if after is not None else []
    sealed = central.custody.is_sealed
    changed = bool(new) or (sealed_shown is not None and sealed_shown != sealed)
    return {"changed": changed, "wait": wait, "alerts": new, "latest": alerts[-1]["id"] if alerts else None,
            "unacknowledged": sum(1 for a in alerts if not _acknowledged_by(a, caller.user_id)),
            "sealed": sealed, "idle_left": central.idle_left(caller.session)}


# --------------------------------------------------------------------------- what needs attention


def _item(item: str, count: int, text: str, severity: str, **more) -> dict:
    return {"item": item, "count": count, "text": text, "severity": severity, **more}


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _camera_items(central) -> list[dict]:
    cams = [c for c in central.records.all("cameras") if c.get("status") != "retired"]
    approved = [c for c in cams if c["status"] == "approved"]
    offline = [c["id"] for c in approved if c.get("offline_since")]
    moved = [c["id"] for c in approved if c.get("view_changed")]
    pending = [c["id"] for c in cams if c["status"] == "pending_placement"]
    items = []
    if offline:
        items.append(_item("cameras_offline", len(offline), f"{_plural(len(offline), 'camera')} not recording: "
                           + ", ".join(offline), "warning", ids=offline))
    if moved:
        items.append(_item("cameras_moved", len(moved), f"{_plural(len(moved), 'camera')} with a changed view: "
                           + ", ".join(moved), "warning", ids=moved))
    if pending:
        items.append(_item("cameras_pending", len(pending), f"{_plural(len(pending), 'camera')} waiting for "
                           "placement approval", "info", ids=pending))
    recording = len(approved) - len(offline)
    items.append(_item("cameras", recording, f"{recording} of {len(cams)} cameras recording",
                       "ok" if recording == len(cams) else "info"))
    return items


def _disk_item(central) -> dict:
    from appliance.rules.retention import free_bytes

    free = free_bytes(central.paths.archive)
    reserve = central.cfg.central.disk_reserve_bytes
    refused = central.ingest_refusal()
    gib = free / 2**30
    if refused:
        return _item("disk", free, f"archive disk full: recording does not reach the archive ({refused})",
                     "warning", free_bytes=free, reserve_bytes=reserve)
    severity = "warning" if free < 2 * reserve else "ok"
    return _item("disk", free, f"archive disk: {gib:.1f} GiB free", severity, free_bytes=free, reserve_bytes=reserve)


def _director_items(central, caller) -> list[dict]:
    def not_own(r):   # an acting director decides other people's matters only (C17, C19)
        return caller.role == "director" or r["requested_by"] != caller.user_id
    requests = central.records.all("requests")
    pending = [r["id"] for r in requests if r["status"] == "pending" and not_own(r)]
    unreviewed = [r["id"] for r in requests if r["kind"] == "imminent_danger" and not r.get("review")
                  and not_own(r)]
    breaches = [b["id"] for b in central.records.all("breaches") if b["status"] == "open"]
    items = []
    if pending:
        items.append(_item("pending_requests", len(pending), f"{_plural(len(pending), 'request')} waiting for "
                           "your decision", "action", ids=pending))
    if unreviewed:
        items.append(_item("imminent_unreviewed", len(unreviewed), f"{_plural(len(unreviewed), 'imminent-danger use')}"
                           " to review", "action", ids=unreviewed))
    if breaches:
        items.append(_item("open_breaches", len(breaches), f"{_plural(len(breaches), 'breach report')} open",
                           "action", ids=breaches))
    return items


def _staff_items(central, caller) -> list[dict]:
    from appliance.rules.incidents import grant_is_active
    from appliance.rules.live import view_is_open

    mine = [r for r in central.records.all("requests") if r["requested_by"] == caller.user_id]
    pending = [r["id"] for r in mine if r["status"] == "pending"]
    owed = [r["id"] for r in mine if r["kind"] == "imminent_danger" and not r["incident"]]
    grants = [g["id"] for g in central.records.all("grants")
              if caller.user_id in g["holders"] and grant_is_active(central, g)]
    live = [v["id"] for v in central.records.search("live_views", user=caller.user_id, closed_at=None)
            if view_is_open(central, v)]
    now = central.now()
    notices = [n["id"] for n in central.records.all("notices")
               if n["status"] == "active" and parse_iso(n["expires_at"]) > now]
    items = []
    if owed:
        uses = _plural(len(owed), "imminent-danger use")
        items.append(_item("incident_owed", len(owed), f"file the incident report owed for {uses} (C19)", "action",
                           ids=owed))
    if pending:
        items.append(_item("my_pending_requests", len(pending), f"{_plural(len(pending), 'request')} of yours "
                           "waiting for the Director", "info", ids=pending))
    if grants:
        items.append(_item("my_grants", len(grants), f"{_plural(len(grants), 'active grant')}: footage you may "
                           "review", "info", ids=grants))
    if live:
        items.append(_item("my_live_views", len(live), f"{_plural(len(live), 'live view')} open", "info",
                           ids=live))
    if notices:
        items.append(_item("notices", len(notices), f"{_plural(len(notices), 'suspension notice')} in force",
                           "info", ids=notices))
    return items


@op("attention.summary", ANYONE)
def attention_summary(central, caller, args):
    """What needs your attention first, for your role: decisions, reviews, reports, cameras, the disk."""
    args.done()
    items = []
    new_alerts = len(unacknowledged(central, caller))
    if new_alerts:
        items.append(_item("alerts", new_alerts, f"{_plural(new_alerts, 'alert')} not yet acknowledged",
                           "warning"))
    if caller.is_director:
        items += _director_items(central, caller)
        if central.custody.is_sealed:
            items.append(_item("sealed", 1, "the archive is sealed: unseal it to review footage", "info"))
    if caller.role == "staff":
        items += _staff_items(central, caller)
    if caller.is_director or caller.role == "it":
        items.append(_disk_item(central))
    items += _camera_items(central)
    return {"items": items, "sealed": central.custody.is_sealed, "role": caller.role,
            "acting_director": caller.acting_director}
