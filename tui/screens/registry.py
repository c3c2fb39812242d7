"""Screen names to screens: what the F-keys, the home items and the command palette open."""
from __future__ import annotations

from tui.screens.base import is_director


def make(name: str, app):
    from tui.screens import (alerts, approvals, breaches, cameras, incidents, live, notices, releases, review, seal,
                             session)

    if name == "requests":
        screen = approvals.ApprovalsScreen() if is_director(app) else incidents.MyRequestsScreen()
    else:
        screens = {"alerts": alerts.AlertsScreen, "incidents": incidents.IncidentsScreen,
                   "grants": review.GrantsScreen, "live": live.LiveScreen, "seal": seal.SealScreen,
                   "cameras": cameras.CamerasScreen, "passphrase": session.PassphraseScreen,
                   "releases": releases.ReleasesScreen, "notices": notices.NoticesScreen,
                   "breaches": breaches.BreachesScreen}
        screen = screens[name]()
    return screen


# What each home item opens (the API names the items; the screen only routes them).
ITEM_SCREENS = {"alerts": "alerts", "pending_requests": "requests", "imminent_unreviewed": "requests",
                "open_breaches": "breaches", "sealed": "seal", "my_pending_requests": "requests",
                "my_grants": "grants", "my_live_views": "live", "incident_owed": "incident_owed",
                "cameras_offline": "cameras", "cameras_moved": "cameras", "cameras_pending": "cameras",
                "cameras": "cameras", "disk": "cameras", "notices": "notices"}
