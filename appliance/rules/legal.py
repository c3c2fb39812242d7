"""Legal instruments, counsel, releases to law enforcement, the export register
(C3, C4, C12, C13, C14, C16). Reference: docs/api/legal.md.

The policy: the Library Director "has the sole discretion to release it to law
enforcement pursuant to court order" (C3); "in the event of a search warrant, the
Library Director will comply with the search warrant and consult with legal counsel.
NOTE: Search warrants are confidential until filed with the court" (C13); "upon
receipt of a subpoena or other court order, the Library Director shall consult with
legal counsel" (C14).

So: a release needs a recorded instrument and stays inside its scope; it is blocked
until a counsel consultation is recorded for that instrument; recording an instrument
holds the footage it names (C12); a search warrant's details are the Director's
alone (not an acting director's) until she marks it filed; every release is
registered in the export register, labelled confidential (C4), where a breach case
can find the copies to retrieve (C16).

Building the export package itself (MP4 clips, signed manifest) is a separate piece
of work: a release record holds what that builder needs (see docs/api/legal.md).
"""
from __future__ import annotations

from datetime import date, datetime

from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.auditing import audit_action
from appliance.rules.registry import DIRECTOR, iso, op, parse_iso
from appliance.rules.warrants import SEALED_NOTE, audit_refs, hidden_from, instrument_view, is_sealed
from appliance.rules.retention import check_cameras, check_window, place_hold, segment_spans
from appliance.wording import when



INSTRUMENT_KINDS = ("subpoena", "court_order", "search_warrant")
KIND_NAMES = {"subpoena": "subpoena", "court_order": "court order", "search_warrant": "search warrant"}
RELEASE_LABEL = ("CONFIDENTIAL: library video record released to law enforcement under legal instrument {id}; "
                 "for the named recipient only; not a public record")
def _release_view(central, caller, doc: dict) -> dict:
    """A release or export record; one made under a sealed warrant shows only that it exists."""
    instrument = doc.get("instrument") and central.records.get("instruments", doc["instrument"])
    if instrument and hidden_from(caller, instrument):
        return {"id": doc["id"], "kind": doc.get("kind", "release"), "instrument": doc["instrument"],
                "sealed": True, "note": SEALED_NOTE}
    return doc


def _refuse_if_hidden(caller, instrument: dict) -> None:
    if hidden_from(caller, instrument):
        raise Refused(f"{instrument['id']} is a sealed search warrant: only the Director acts on it until it is "
                      "filed with the court", clause="C13")


# --------------------------------------------------------------------------- helpers


def _get_instrument(central, instrument_id: str) -> dict:
    instrument = central.records.get("instruments", instrument_id)
    if instrument is None:
        raise NotFound(f"no legal instrument {instrument_id}")
    return instrument


def _check_dates(central, issued_on, received_on) -> None:
    today = central.now().date()
    if received_on < issued_on:
        raise BadRequest(f"received_on {received_on} is before issued_on {issued_on}")
    if received_on > today:
        raise BadRequest(f"received_on {received_on} is in the future (today is {today})")


def _check_in_scope(instrument: dict, cameras: list[str], start, end) -> None:
    """A release never reaches beyond what the instrument names (C3)."""
    outside = [c for c in cameras if instrument["cameras"] and c not in instrument["cameras"]]
    if outside:
        raise Refused(f"camera(s) {', '.join(outside)} are outside {instrument['id']}'s scope "
                      f"({', '.join(instrument['cameras'])})", clause="C3")
    if start < parse_iso(instrument["start"]) or end > parse_iso(instrument["end"]):
        raise Refused(f"the window must lie inside {instrument['id']}'s scope ({when(instrument['start'])} to "
                      f"{when(instrument['end'])})", clause="C3")


def _segments_in(central, cameras: list[str], start, end) -> int:
    now = central.now()
    return sum(1 for camera in cameras for stored, covers_until in segment_spans(central, camera, now)
               if stored.start < end and start < covers_until)


# --------------------------------------------------------------------------- instruments


@op("instrument.record", DIRECTOR,
    labels={"kind": "Kind", "reference": "Reference", "court": "Court", "issued_on": "Issued on",
            "received_on": "Received on", "description": "What it demands", "cameras": "Cameras", "start": "From",
            "end": "To", "incident": "Incident"})
def record_instrument(central, caller, args):
    """Record a subpoena, court order or search warrant; its scope is held at once (C12, C13, C14)."""
    kind = args.str("kind", choices=INSTRUMENT_KINDS)
    reference = args.str("reference", min_len=1, max_len=200)
    court = args.str("court", min_len=2, max_len=200)
    issued_on = args.date("issued_on")
    received_on = args.date("received_on")
    description = args.str("description", min_len=3, max_len=4000)
    cameras = args.ids("cameras", required=False)
    start = args.time("start")
    end = args.time("end")
    incident = args.id("incident", required=False)
    args.done()
    _check_dates(central, issued_on, received_on)
    check_window(start, end, "the instrument's scope")
    check_cameras(central, cameras)
    if incident and central.records.get("incidents", incident) is None:
        raise NotFound(f"no incident {incident}")
    instrument = {"kind": kind, "reference": reference, "court": court, "issued_on": issued_on.isoformat(),
                  "received_on": received_on.isoformat(), "description": description, "cameras": cameras,
                  "start": iso(start), "end": iso(end), "incident": incident,
                  "recorded_by": caller.user_id, "recorded_at": iso(central.now()), "hold": None,
                  "filed_at": None, "filed_on": None, "filed_by": None, "filed_note": None}
    instrument["id"] = central.records.insert("instruments", instrument)
    refs = {"instrument": instrument["id"], "incident": incident}
    sealed = is_sealed(instrument)
    logged = audit_refs(instrument, incident=incident)
    # Audit entries are readable by an acting director: a sealed warrant's details stay out of them.
    named = "a sealed search warrant" if sealed else f"{KIND_NAMES[kind]} {reference}"
    hold = place_hold(central, kind="instrument", cameras=cameras, start=instrument["start"],
                      end=instrument["end"], refs=refs, why=f"scope of {named} ({instrument['id']})",
                      placed_by=caller.user_id)
    instrument = central.records.update("instruments", instrument["id"], {"hold": hold["id"]})
    scope = {"cameras": cameras, "start": instrument["start"], "end": instrument["end"]}
    audit_action(central, caller, "instrument.record", target=instrument["id"], refs=logged, why=f"received {named}",
           details={"kind": kind, "sealed": True} if sealed else
           {"kind": kind, "reference": reference, "court": court, "received_on": instrument["received_on"]} | scope)
    audit_action(central, caller, "hold.place", target=hold["id"], refs=logged, why=hold["why"],
           details={"kind": "instrument", "automatic": True} | ({} if sealed else scope))
    return {"instrument": instrument_view(caller, instrument), "hold": hold["id"]}


@op("instrument.mark_filed", DIRECTOR.herself(clause="C13"),
    labels={"filed_on": "Filed on"})
def mark_filed(central, caller, args):
    """Record that a search warrant was filed with the court: it is no longer sealed (C13)."""
    instrument = _get_instrument(central, args.id("instrument"))
    filed_on = args.date("filed_on")
    note = args.str("note", required=False, max_len=1000)
    args.done()
    if instrument["kind"] != "search_warrant":
        raise BadRequest(f"{instrument['id']} is a {KIND_NAMES[instrument['kind']]}: only search warrants are "
                         "sealed until filed")
    if instrument["filed_at"]:
        raise Refused(f"{instrument['id']} was already marked filed on {instrument['filed_on']}")
    if filed_on < date.fromisoformat(instrument["issued_on"]) or filed_on > central.now().date():
        raise args.bad("filed_on", f"({filed_on}) must lie between the warrant's issue ({instrument['issued_on']}) "
                       "and today")
    instrument = central.records.update("instruments", instrument["id"], {
        "filed_at": iso(central.now()), "filed_on": filed_on.isoformat(), "filed_by": caller.user_id,
        "filed_note": note})
    audit_action(central, caller, "instrument.mark_filed", target=instrument["id"],
           refs={"instrument": instrument["id"], "incident": instrument["incident"]}, why=note,
           details={"filed_on": instrument["filed_on"]})
    return {"instrument": instrument_view(caller, instrument)}


@op("instrument.list", DIRECTOR)
def list_instruments(central, caller, args):
    """Every legal instrument, newest first (a sealed warrant shows only that it exists, but to the Director)."""
    args.done()
    found = sorted(central.records.all("instruments"), key=lambda i: i["recorded_at"], reverse=True)
    return {"instruments": [instrument_view(caller, i) for i in found]}


@op("instrument.get", DIRECTOR)
def get_instrument(central, caller, args):
    """One instrument with its counsel consultations, releases and hold (audited, as incident.get is)."""
    instrument = _get_instrument(central, args.id("instrument"))
    args.done()
    # The audit log is readable by an acting director: a sealed warrant's particulars stay out (C13).
    audit_action(central, caller, "instrument.view", target=instrument["id"],
                 refs=audit_refs(instrument, incident=instrument["incident"]),
                 details={"kind": instrument["kind"]} | ({"sealed": True} if is_sealed(instrument) else {}))
    if hidden_from(caller, instrument):
        return {"instrument": instrument_view(caller, instrument)}
    hold = instrument["hold"] and central.records.get("holds", instrument["hold"])
    return {"instrument": instrument_view(caller, instrument),
            "counsel": central.records.search("counsel", instrument=instrument["id"]),
            "releases": central.records.search("releases", instrument=instrument["id"]),
            "hold": hold or None}


# --------------------------------------------------------------------------- counsel (C13, C14)


@op("counsel.record", DIRECTOR,
    labels={"counsel": "Counsel consulted", "consulted_on": "Consulted on", "summary": "Their advice"})
def record_counsel(central, caller, args):
    """Record that legal counsel was consulted about an instrument (C13, C14)."""
    instrument = _get_instrument(central, args.id("instrument"))
    counsel = args.str("counsel", min_len=2, max_len=200)
    consulted_on = args.date("consulted_on")
    summary = args.str("summary", min_len=3, max_len=4000)
    args.done()
    _refuse_if_hidden(caller, instrument)
    if consulted_on < date.fromisoformat(instrument["received_on"]) or consulted_on > central.now().date():
        raise args.bad("consulted_on", f"({consulted_on}) must lie between the instrument's receipt "
                                       f"({instrument['received_on']}) and today")
    doc = {"instrument": instrument["id"], "counsel": counsel, "consulted_on": consulted_on.isoformat(),
           "summary": summary, "recorded_by": caller.user_id, "recorded_at": iso(central.now())}
    doc["id"] = central.records.insert("counsel", doc)
    # The summary is legal advice: it stays in the record, out of the audit log.
    # The audit log is readable by an acting director: a sealed warrant's particulars stay out (C13).
    audit_action(central, caller, "counsel.record", target=doc["id"],
           refs=audit_refs(instrument, incident=instrument["incident"]),
           details={"sealed": True} if is_sealed(instrument)
           else {"counsel": counsel, "consulted_on": doc["consulted_on"]})
    return {"counsel": doc}


# --------------------------------------------------------------------------- releases (C3, C4)


@op("release.create", DIRECTOR,
    labels={"instrument": "Instrument", "cameras": "Cameras", "start": "From", "end": "To", "recipient": "Recipient",
            "notes": "Notes"})
def create_release(central, caller, args):
    """Release footage to law enforcement under a recorded instrument, after counsel (C3, C13, C14)."""
    instrument_id = args.id("instrument", required=False)
    cameras = args.ids("cameras")
    start = args.time("start")
    end = args.time("end")
    recipient = args.str("recipient", min_len=3, max_len=300)
    notes = args.str("notes", required=False, default="", max_len=4000)
    args.done()
    if instrument_id is None:
        raise Refused("a release to law enforcement needs a recorded legal instrument (court order, subpoena or "
                      "search warrant): record it first and release under it", clause="C3")
    instrument = central.records.get("instruments", instrument_id)
    if instrument is None:
        raise Refused(f"no legal instrument {instrument_id} is recorded: a release needs one", clause="C3")
    _refuse_if_hidden(caller, instrument)
    check_window(start, end, "the release")
    check_cameras(central, cameras)
    _check_in_scope(instrument, cameras, start, end)
    counsel = central.records.search("counsel", instrument=instrument["id"])
    if not counsel:
        clause = "C13" if instrument["kind"] == "search_warrant" else "C14"
        raise Refused(f"consult legal counsel about this {KIND_NAMES[instrument['kind']]} and record that you did "
                      "before releasing footage under it", clause=clause)
    segments = _segments_in(central, cameras, start, end)
    if not segments:      # else it is accepted now and fails at release.build with nothing to package
        raise BadRequest(f"no footage is stored for {', '.join(cameras)} from {when(start)} to {when(end)}: "
                         "a release needs some footage to hand over; check the cameras and times")
    now = iso(central.now())
    export = {"kind": "release", "instrument": instrument["id"], "incident": instrument["incident"],
              "cameras": cameras, "start": iso(start), "end": iso(end), "recipient": recipient,
              "created_by": caller.user_id, "created_at": now,
              "label": RELEASE_LABEL.format(id=instrument["id"]), "retrieved_at": None, "retrieved_note": None}
    export["id"] = central.records.insert("exports", export)
    release = {"export": export["id"], "instrument": instrument["id"], "incident": instrument["incident"],
               "cameras": cameras, "start": export["start"], "end": export["end"], "recipient": recipient,
               "notes": notes, "counsel": [c["id"] for c in counsel], "label": export["label"],
               "created_by": caller.user_id, "created_role": caller.role,
               "acting_director": caller.acting_director, "created_at": now,
               "segments_at_approval": segments,
               "package": {"status": "not_built", "built_at": None, "built_by": None, "manifest_sha256": None}}
    release["id"] = central.records.insert("releases", release)
    sealed = is_sealed(instrument)
    audit_action(central, caller, "release.create", target=release["id"],
           refs=audit_refs(instrument, incident=instrument["incident"], export=export["id"]),
           why=f"release under a sealed warrant {instrument['id']}" if sealed
           else notes or f"release under {KIND_NAMES[instrument['kind']]} {instrument['id']}",
           details={"sealed": True} if sealed else {
               "cameras": cameras, "start": export["start"], "end": export["end"],
               "segments": release["segments_at_approval"], "recipient": recipient})
    return {"release": release, "export": export}


@op("release.list", DIRECTOR)
def list_releases(central, caller, args):
    """Every release to law enforcement, newest first."""
    args.done()
    found = sorted(central.records.all("releases"), key=lambda r: r["created_at"], reverse=True)
    return {"releases": [_release_view(central, caller, r) for r in found]}


# --------------------------------------------------------------------------- the export register (C4, C16)


def copy_times(export: dict) -> list[datetime]:
    """When copies of it were made onto a medium: each package built (a failed build left nothing)."""
    return [parse_iso(c["built_at"]) for c in export.get("copies") or [] if c.get("state") != "failed"]


def outstanding(export: dict) -> bool:
    """A copy is out: never marked retrieved, or a package was built after it was (C16)."""
    retrieved = export.get("retrieved_at")
    return not retrieved or any(t > parse_iso(retrieved) for t in copy_times(export))


@op("export.list", DIRECTOR,
    labels={"open_only": "Open only"})
def list_exports(central, caller, args):
    """The export register: every release and review export, newest first; `open_only` leaves out retrieved ones."""
    open_only = args.bool("open_only")
    args.done()
    found = [e for e in central.records.all("exports") if not open_only or outstanding(e)]
    found.sort(key=lambda e: e["created_at"], reverse=True)
    return {"exports": [_release_view(central, caller, e) for e in found]}


@op("export.mark_retrieved", DIRECTOR)
def mark_retrieved(central, caller, args):
    """Record that a copy was retrieved (e.g. during a breach response, C16)."""
    export_id = args.id("export")
    note = args.str("note", min_len=3, max_len=2000)
    args.done()
    export = central.records.get("exports", export_id)
    if export is None:
        raise NotFound(f"no export {export_id}")
    instrument = export.get("instrument") and central.records.get("instruments", export["instrument"])
    if instrument:
        _refuse_if_hidden(caller, instrument)
    if not outstanding(export):
        raise Refused(f"{export_id} was already marked retrieved at {when(export['retrieved_at'])} (no copy of it "
                      "was built since)")
    export = central.records.update("exports", export_id, {"retrieved_at": iso(central.now()),
                                                           "retrieved_note": note})
    # The open breach cases whose copy check listed this copy: the retrieval answers them (C16).
    cases = [b["id"] for b in central.records.all("breaches")
             if b["status"] == "open" and any(export_id in check["exports"] for check in b["copy_checks"])]
    refs = ({"export": export_id} | audit_refs(instrument, incident=export.get("incident")) if instrument
            else {"export": export_id, "incident": export.get("incident")})
    if cases:
        refs["breach"] = cases[0]
    sealed = bool(instrument) and is_sealed(instrument)   # the note says from whom: the hidden recipient (C13)
    audit_action(central, caller, "export.mark_retrieved", target=export_id, refs=refs,
                 why="copy under a sealed warrant retrieved" if sealed else note,
                 details={"kind": export["kind"]} | ({"breaches": cases} if len(cases) > 1 else {}))
    return {"export": export}
