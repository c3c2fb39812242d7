"""The whole policy, as API operations: importing this module registers every one.

Each concern lives in its own module, named after what it governs; the clause
map (C1-C22, docs/policy-clauses.md) says which module enforces which clause:

    accounts   C2 C8 C22   people, roles, logins, acting director, the archive's seal
    cameras    C1 C5 C6    enrolment, placement approval, privacy masks, signage, view checks
    enrolment  C6          invitations and pairing codes for flashed cameras (they then await placement)
    live       C4 C8       live views (frames sealed in transit)
    incidents  C7 C9 C17 C18 C19  incidents, requests, decisions, grants, imminent danger, outcomes
    footage    C9          segments under a grant, stills, clips (decrypted through pipes)
    legal      C3 C13 C14  instruments, counsel, releases, the export register
    export     C3 C4 C16   building a release into a verifiable evidence package
    retention  C11 C12 C20 holds, schedule, sweeper, disk-full behaviour
    breaches   C15 C16     breach cases
    notices    C21         suspension notices
    reports    C7          monitoring oversight, transparency summary, audit queries
    alerts     C1 C15 C19  who sees which alert, what needs attention, the screens' watch
    timeline   C9          what a grant's window holds per camera: recorded, gaps, held
"""
from __future__ import annotations

from appliance.rules import (accounts, alerts, breaches, cameras, enrolment, export, footage, incidents, legal, live,
                             notices, reports, retention, timeline)

POLICY_MODULES = (accounts, cameras, enrolment, live, incidents, footage, legal, export, retention, breaches, notices,
                  reports, alerts, timeline)


def periodic_tasks(central):
    """Coroutines each module wants run while the central serves (sweeps, offline checks)."""
    tasks = []
    for module in POLICY_MODULES:
        hook = getattr(module, "periodic", None)
        if hook is not None:
            tasks.extend(hook(central))
    notifier = getattr(central, "notifier", None)
    if notifier is not None and hasattr(notifier, "periodic"):
        tasks.extend(notifier.periodic())
    return tasks
