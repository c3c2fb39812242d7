"""Warrant confidentiality (C13): a search warrant is confidential until it is filed with the court.

Its details are the Director's own (not an acting director's, staff's or IT's) while it is
sealed; everything that shows an instrument, a hold, a release or an export under one asks
here what a caller may see.
"""
from __future__ import annotations


SEALED_NOTE = "sealed search warrant: its details are the Director's alone until it is filed with the court (C13)"


# --------------------------------------------------------------------------- warrant confidentiality (C13)


def is_sealed(instrument: dict) -> bool:
    """A search warrant is confidential until filed with the court."""
    return instrument["kind"] == "search_warrant" and not instrument.get("filed_at")


def hidden_from(caller, instrument: dict) -> bool:
    """Sealed details are for the Director herself: not an acting director, staff or IT."""
    return is_sealed(instrument) and caller.role != "director"


def instrument_hidden_from(central, caller, instrument_id: str) -> bool:
    instrument = central.records.get("instruments", instrument_id)
    return instrument is not None and hidden_from(caller, instrument)


def instrument_view(caller, instrument: dict) -> dict:
    if hidden_from(caller, instrument):
        return {k: instrument[k] for k in ("id", "kind", "recorded_at")} | {"sealed": True, "note": SEALED_NOTE}
    return instrument | {"sealed": is_sealed(instrument)}


def audit_refs(instrument: dict, **refs) -> dict:
    """The refs of an audit entry about an instrument. The audit log is readable by an acting
    director, to whom the API shows only that a sealed warrant exists: the incident it concerns stays
    out until it is filed."""
    if is_sealed(instrument):
        refs.pop("incident", None)
    return {"instrument": instrument["id"], **refs}
