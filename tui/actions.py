"""One registry of what a person can do: id, key, label and help text.

The footer (through each screen's BINDINGS), the help screen (F1 or ?) and the
command palette (ctrl+p) all read this table, so a key is named in one place.
Keys are letters, digits, F-keys, enter, escape and arrows: the Linux console and
serial terminals send no ctrl+enter or similar (kitty keyboard protocol).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from textual.binding import Binding


@dataclass(frozen=True)
class Action:
    id: str
    key: str           # Textual key name(s), comma separated
    action: str        # Textual action string
    label: str         # in the footer
    help: str          # in the help screen and the command palette
    scope: str         # "app" (every screen after login) or a screen's name
    show: bool = True  # shown in the footer
    director: bool = False   # the Director's: bound and shown for her alone (the API decides all the same)

    @property
    def name(self) -> str:
        """The action's method name, without its arguments ("review_use(True)" -> "review_use")."""
        return self.action.removeprefix("app.").split("(")[0]


ACTIONS: tuple[Action, ...] = (
    # every screen after login: one key each, the same everywhere
    Action("help", "f1,question_mark", "app.help", "Help", "Every key on this screen and everywhere", "app"),
    Action("home", "f2", "app.go('home')", "Home", "What needs your attention first", "app"),
    Action("alerts", "f3", "app.go('alerts')", "Alerts", "Alerts meant for you; acknowledge them", "app",
           show=False),
    Action("incidents", "f4", "app.go('incidents')", "Incidents", "Incident reports: list, file, details", "app",
           show=False),
    Action("requests", "f5", "app.go('requests')", "Requests",
           "Requests: yours, or (the Director) the approvals queue", "app", show=False),
    Action("review", "f6", "app.go('grants')", "Review", "Footage you may review under a grant", "app",
           show=False),
    Action("live", "f7", "app.go('live')", "Live", "Live views: open one with its purpose, watch, close (C8)", "app", show=False),
    Action("seal", "f8", "app.go('seal')", "Seal", "The archive's seal: unseal or seal (the Director)", "app",
           show=False),
    Action("danger", "f9", "app.danger", "DANGER", "Imminent danger: recent and live footage at once (C19)", "app"),
    Action("releases", "f11", "app.go('releases')", "Releases",
           "Releases to law enforcement: build the evidence package (the Director)", "app", show=False),
    Action("breach-report", "f12", "app.report_breach", "Breach",
           "Report a possible privacy breach: the Director is told at once (C15)", "app", show=False),
    Action("logout", "f10", "app.logout", "Log out", "End your session", "app", show=False),
    Action("passphrase", "", "app.go('passphrase')", "Passphrase", "Change your passphrase", "app", show=False),
    Action("back", "escape", "back", "Back", "Back to the previous screen", "app", show=False),
    # lists
    Action("refresh", "r", "refresh", "Refresh", "Ask the central again", "list"),
    Action("open", "enter", "open", "Open", "Open the selected line", "list", show=False),
    Action("notices", "n", "app.go('notices')", "Notices",
           "Suspension notices: people suspended from Library property (C21)", "home"),
    Action("breaches", "b", "app.go('breaches')", "Breaches",
           "Breach cases: your reports; the Director works each case (C15, C16)", "home"),
    Action("new-incident", "n", "new", "New", "File a new incident report", "incidents"),
    Action("request-review", "q", "request", "Request", "Ask to review recordings or monitor live for this incident",
           "incident"),
    Action("outcome", "o", "outcome", "Outcome", "Record what the incident led to (the Director, C18)", "incident",
           director=True),
    Action("close-incident", "c", "close_incident", "Close",
           "Close the incident once it has an outcome (the Director, C18)", "incident", director=True),
    Action("file-owed", "n", "new", "New report", "File a new incident report for this imminent-danger use (C19)",
           "owed"),
    Action("link-owed", "enter", "open", "Link", "Link the selected incident, already filed, to this use (C19)",
           "owed"),
    Action("ack-alert", "a", "acknowledge", "Acknowledge", "Acknowledge the selected alert", "alerts"),
    Action("ack-all", "A", "acknowledge_all", "All seen", "Acknowledge every alert shown", "alerts", show=False),
    Action("approve", "a", "approve", "Approve", "Approve the request as asked", "approvals", director=True),
    Action("narrow", "n", "narrow", "Narrower", "Approve fewer cameras, a shorter window or an earlier expiry",
           "approvals", director=True),
    Action("deny", "d", "deny", "Deny", "Deny the request, with a reason", "approvals", director=True),
    Action("justified", "j", "review_use(True)", "Justified",
           "After-action review of an imminent-danger use: justified (C19)", "approvals",
           director=True),
    Action("not-justified", "u", "review_use(False)", "Unjustified",
           "After-action review of an imminent-danger use: not justified (C19)", "approvals",
           director=True),
    Action("build-package", "b", "build", "Build", "Build the selected release's evidence package", "releases",
           director=True),
    Action("instruments", "i", "instruments", "Instruments",
           "Legal instruments received: record one, the counsel consulted, a release under one (C3, C13, C14)",
           "releases", director=True),
    Action("new-instrument", "n", "new", "New", "Record a subpoena, court order or search warrant received (C3)",
           "instruments", director=True),
    Action("counsel", "c", "counsel", "Counsel", "Record that legal counsel was consulted about the selected one "
           "(C13, C14)", "instruments", director=True),
    Action("release", "l", "release", "Release", "Release footage under the selected instrument to its recipient "
           "(C3)", "instruments", director=True),
    # suspension notices (C21)
    Action("next-still", "s", "next_still", "Next still", "The selected notice's next still", "notices"),
    Action("new-notice", "n", "new", "New", "How to make a notice: from stills on the review screen (the Director)",
           "notices", director=True),
    Action("withdraw-notice", "w", "withdraw", "Withdraw",
           "Withdraw the selected notice, with the reason (the Director)", "notices", director=True),
    # a breach case (C16), the Director's
    Action("work-step", "enter", "work", "Work",
           "Work the selected step: its query, check or record; else mark it done", "breach", show=False),
    Action("step-done", "d", "done", "Done", "Record the selected step as done, with what was done", "breach"),
    Action("step-na", "n", "not_applicable", "N/A", "Mark the selected step not applicable, with why", "breach"),
    Action("access-query", "a", "access", "Access",
           "Check for unauthorised access: every audited access in the window", "breach", show=False),
    Action("copies", "c", "copies", "Copies", "Copies made in the window (the export register) to retrieve",
           "breach", show=False),
    Action("notify", "i", "notify", "Notified", "Record an individual notified: who, how, when", "breach",
           show=False),
    Action("complaint", "p", "complaint", "Complaint", "Record a complaint, resolved or not", "breach",
           show=False),
    Action("resolve", "v", "resolve", "Resolve", "Record the resolution of an earlier complaint", "breach",
           show=False),
    Action("close-breach", "x", "close_case", "Close", "Close the case, with a summary", "breach"),
    Action("mark-retrieved", "m", "retrieved", "Retrieved", "Record that the selected copy was retrieved",
           "copies"),
    # forms
    Action("submit", "f5", "submit", "Submit", "Check and send the form", "form"),
    # review
    Action("earlier", "left", "move(-1)", "Earlier", "Move the cursor one step earlier", "review", show=False),
    Action("later", "right", "move(1)", "Later", "Move the cursor one step later", "review", show=False),
    Action("page-earlier", "pageup", "move(-10)", "PgUp", "Ten steps earlier", "review", show=False),
    Action("page-later", "pagedown", "move(10)", "PgDn", "Ten steps later", "review", show=False),
    Action("camera-up", "up", "camera(-1)", "Camera", "The camera above", "review", show=False),
    Action("camera-down", "down", "camera(1)", "Camera", "The camera below", "review", show=False),
    Action("zoom-in", "plus,equals_sign", "zoom(1)", "Zoom +", "Zoom in (shorter steps)", "review"),
    Action("zoom-out", "minus", "zoom(-1)", "Zoom -", "Zoom out (longer steps)", "review", show=False),
    Action("still", "enter,v", "still", "Still", "Draw the still at the cursor", "review"),
    Action("flipbook", "p", "flipbook", "Play", "Play a flipbook from the cursor; again to pause", "review"),
    Action("step", "s", "step", "Step", "Next frame of the flipbook", "review", show=False),
    Action("live-here", "l", "live_here", "Live", "Live view of the camera at the cursor (a live grant)", "review"),
    Action("flipbook-length", "f", "flipbook_length", "Length", "The flipbook's length and frames a second",
           "review"),
    Action("notice-still", "n", "notice_still", "Notice",
           "Use the still at the cursor in a suspension notice (the Director, C21)", "review", show=False,
           director=True),
    # live
    Action("open-live", "o", "open_session", "Open", "Open a live view with its purpose", "live"),
    Action("close-live", "c", "close_session", "Close", "Close the selected live view", "live"),
    Action("close-view", "c", "close_session", "Close", "Close this live view", "live-view"),
    # cameras: the Director approves or rejects where a camera points, from its own view (C5, C6)
    Action("placement", "p", "placement", "Placement",
           "The selected camera's view: approve or reject where it points (the Director, C5, C6)", "cameras",
           director=True),
    Action("approve-placement", "a", "approve", "Approve",
           "Approve where the camera points, from this view, with a note: it starts recording (C5, C6)",
           "placement", director=True),
    Action("reject-placement", "d", "reject", "Reject",
           "Reject where the camera points, with a note: it records nothing until a new view is approved (C6)",
           "placement", director=True),
    Action("new-view", "r", "refresh", "New view", "Ask the central again for the camera's latest view",
           "placement"),
    Action("draw-view", "enter,v", "draw", "View", "Draw the camera's view (on a serial line, only when asked)",
           "placement", show=False),
    # seal
    Action("unseal", "u", "unseal", "Unseal", "Unseal with your passphrase", "seal", director=True),
    Action("unseal-recovery", "k", "unseal_recovery", "Recovery code", "Unseal with the recovery code", "seal",
           director=True),
    Action("seal-now", "s", "seal", "Seal", "Seal the archive now", "seal", director=True),
)


def actions_for(*scopes: str) -> list[Action]:
    return [a for a in ACTIONS if a.scope in scopes]


def bindings(*scopes: str) -> list[Binding]:
    """Textual bindings for the screen scopes given, each with its registry id.

    A later scope's key wins over the same key of an earlier one: a screen's own scope
    over "list" (Enter works a breach case's step) and over "app" (F5 sends a form)."""
    chosen = []
    for n, scope in enumerate(scopes):
        later = {k for a in actions_for(*scopes[n + 1:]) for k in a.key.split(",") if a.key}
        for a in actions_for(scope):
            keys = [k for k in a.key.split(",") if k and k not in later]
            if keys:
                chosen.append(Binding(",".join(keys), a.action, a.label, show=a.show, id=a.id,
                                      key_display=display(keys[0])))
    return chosen


def offered(screen) -> list[Action]:
    """What the help screen and the command palette list for a screen: what it binds and allows now."""
    return [a for a in bound(screen) if screen.check_action(a.name, ()) is not False]


def bound(screen) -> list[Action]:
    """The actions a screen binds (its BINDINGS, by registry id), in the registry's order, and
    the app's actions without a key where it binds the app's: what help and the palette list."""
    screen_class = screen if isinstance(screen, type) else type(screen)
    ids = {getattr(b, "id", None) for b in getattr(screen_class, "BINDINGS", ())}
    app = any(a.scope == "app" and a.id in ids for a in ACTIONS)
    return [a for a in ACTIONS if a.id in ids or (app and a.scope == "app" and not a.key)]


NAMES = {"enter": "Enter", "escape": "Esc", "question_mark": "?", "equals_sign": "=", "plus": "+", "minus": "-",
         "pageup": "PgUp", "pagedown": "PgDn", "left": "Left", "right": "Right", "up": "Up", "down": "Down"}


def display(key: str) -> str:
    """A key as printed on the keyboard, in ASCII (the footer's own symbols are glyphs the console lacks)."""
    if key.startswith("f") and key[1:].isdigit():
        return key.upper()
    return NAMES.get(key, key)


@cache
def directors_actions(screen_class) -> frozenset[str]:
    """The names of the Director's actions among those a screen class binds."""
    return frozenset(a.name for a in bound(screen_class) if a.director)


def key_label(action: Action) -> str:
    return ", ".join(display(k) for k in action.key.split(","))
