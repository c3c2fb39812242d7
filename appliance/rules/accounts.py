"""People: accounts, roles, logins, lockout, policy acknowledgement, acting director,
and the archive's seal (C2, C8, C22).

Roles are `staff`, `director` and `it`; there is no Board role (C2: the Director,
not the Board, is custodian). One person, one account; there is exactly one
Director account, created at `central init`. The Director may designate a staff
member as acting director for a dated period. No operation turns one role into
another, and a login record never opens the archive: the archive key is wrapped
by the Director's own passphrase in a key slot, separate from her login hash.
"""
from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from pathlib import Path

from appliance.background import every
from appliance.custody import keys as keys_mod
from appliance.errors import ArchiveSealed, WeakPassphrase, WrongPassphrase, WrongRecoveryCode
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.auditing import audit_action, audit_login_attempt
from appliance.rules.registry import ANYONE, DIRECTOR, DIRECTOR_HERSELF, DIRECTOR_OR_IT, Caller, iso, op, parse_iso
from appliance.wording import role_name, when

LOCKOUT_FAILURES = 5
LOCKOUT_MINUTES = 15
MIN_PASSPHRASE = 10
SLOT_CHECK_SECONDS = 60             # how soon an ended acting period's key slot goes
POLICY_FILE = Path(__file__).with_name("library-policy.txt")   # the library's policy, as approved
USER_NAME = r"^[a-z][a-z0-9._-]{1,31}$"
ACCOUNT_ID = r"^usr-\d+$"           # a login name may not look like one: operations take either


def policy_text() -> str:
    return POLICY_FILE.read_text()


@functools.lru_cache(maxsize=1)
def policy_version() -> str:
    """A short hash of the installed policy text: a new text needs a new acknowledgement (C22)."""
    return hashlib.sha256(POLICY_FILE.read_bytes()).hexdigest()[:16]


def validate_passphrase(passphrase: str) -> None:
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE:
        raise WeakPassphrase(f"a passphrase needs at least {MIN_PASSPHRASE} characters")


def create_user_record(records, name: str, role: str, passphrase: str, *, now: datetime,
                       must_change: bool = False) -> dict:
    import re

    if not re.match(USER_NAME, name or ""):
        raise BadRequest("a user name is 2-32 lower-case letters, digits, '.', '_' or '-', starting with a letter")
    if re.match(ACCOUNT_ID, name):
        raise BadRequest(f"{name!r} looks like an account id: choose another user name")
    if role not in ("staff", "director", "it"):
        raise BadRequest("role must be staff, director or it")
    if records.search("users", name=name):
        raise Refused(f"there is already an account named {name!r} (one person, one account)")
    validate_passphrase(passphrase)
    doc = {"name": name, "role": role, "pass_hash": keys_mod.hash_passphrase(passphrase),
           "created_at": iso(now), "disabled": False, "failed_logins": 0, "locked_until": None,
           "policy_ack": None, "must_change_passphrase": must_change, "acting_periods": []}
    doc["id"] = records.insert("users", doc)
    return doc


def public_user(user: dict) -> dict:
    return {k: user.get(k) for k in ("id", "name", "role", "disabled", "locked_until", "created_at",
                                       "must_change_passphrase", "acting_periods")} | {
        "policy_acknowledged": bool(user.get("policy_ack"))}


def has_acting_period(central, user: dict) -> bool:
    """Whether the user is, or is yet to be, an acting director (an unrevoked period not over)."""
    now = central.now()
    return any(not p.get("revoked") and parse_iso(p["end"]) > now for p in user.get("acting_periods", []))


def acting_director_now(central, user: dict) -> bool:
    if user["role"] != "staff":
        return False
    now = central.now()
    return any(not p.get("revoked") and parse_iso(p["start"]) <= now < parse_iso(p["end"])
               for p in user.get("acting_periods", []))


def _who_unlocks(central, user: dict) -> str:
    """Who may clear this account's lockout before it ends (as `_may_manage` decides)."""
    if user["role"] == "director":
        return "nobody can unlock the Director's account sooner"
    if user["role"] == "staff" and not has_acting_period(central, user):
        return f"{role_name('it')} or {role_name('director')} can unlock it sooner"
    return f"{role_name('director')} can unlock it sooner"


def has_slot(central, name: str) -> bool:
    return name in central.keys.passphrase_users()


def _user_by_name(central, name: str) -> dict | None:
    found = central.records.search("users", name=name)
    return found[0] if found else None


def find_user(central, ref: str) -> dict | None:
    """The account `ref` names: an account id (`usr-000002`) or a login name (`sam`)."""
    return central.records.get("users", ref) or _user_by_name(central, ref)


def person_arg(central, args, name: str = "user", *, required: bool = True) -> dict | None:
    """Read argument `name` as a person, by login name or account id: every operation that
    names a person reads it here, so a name works wherever an id does."""
    ref = args.id(name, required=required)    # both are safe ids: no path separators
    if ref is None:
        return None
    user = find_user(central, ref)
    if user is None:
        raise NotFound(f"no account {ref!r}: give a login name or an account id")
    return user


def _get_user(central, user_id: str) -> dict:
    user = central.records.get("users", user_id)
    if user is None:
        raise NotFound(f"no account {user_id}")
    return user


# --------------------------------------------------------------------------- sessions


@op("session.login", ANYONE, public=True,
    labels={"user": "User name", "passphrase": "Passphrase"}, secrets=("passphrase",))
def login(central, caller, args):
    """Log in with user name and passphrase; returns a session token."""
    name = args.str("user", max_len=64)
    passphrase = args.str("passphrase", max_len=1024)
    args.done()
    user = _user_by_name(central, name)
    now = central.now()
    if user is None:
        # "-", not the text typed: a passphrase typed into the name field must never reach the log.
        audit_login_attempt(central, "-", "session.login_failed", {"reason": "unknown user"})
        raise WrongPassphrase("unknown user or wrong passphrase")
    if user.get("locked_until") and parse_iso(user["locked_until"]) > now:
        audit_login_attempt(central, user["id"], "session.login_failed", {"reason": "locked"})
        raise Refused(f"too many failed logins: locked until {when(user['locked_until'])}; "
                      f"{_who_unlocks(central, user)}", code="locked")
    if not keys_mod.verify_passphrase(user["pass_hash"], passphrase):
        failures = user.get("failed_logins", 0) + 1
        fields = {"failed_logins": failures}
        if failures >= LOCKOUT_FAILURES:
            from datetime import timedelta

            fields.update(failed_logins=0, locked_until=iso(now + timedelta(minutes=LOCKOUT_MINUTES)))
            audit_login_attempt(central, user["id"], "user.locked", {"failures": failures})
            if user["role"] == "director":
                central.alert("lockout", f"the Director's account {user['name']} was locked after "
                                         f"{failures} failed logins")
        central.records.update("users", user["id"], fields)
        audit_login_attempt(central, user["id"], "session.login_failed", {"reason": "wrong passphrase"})
        raise WrongPassphrase("unknown user or wrong passphrase")   # a disabled account's too: no hint it exists
    if user.get("disabled"):
        # Only after the lockout and the passphrase: "disabled" must not answer guesses without end (C8).
        audit_login_attempt(central, user["id"], "session.login_failed", {"reason": "disabled"})
        raise Refused("this account is disabled: ask the Director", code="disabled")
    central.records.update("users", user["id"], {"failed_logins": 0, "locked_until": None,
                                                 "last_login": iso(now)})
    token = central.new_session(user)
    acting = acting_director_now(central, user)
    person = Caller(user_id=user["id"], name=user["name"], role=user["role"], session=token, acting_director=acting)
    if (acting and not user.get("must_change_passphrase") and not central.custody.is_sealed
            and not has_slot(central, user["name"])):
        # The acting director gets her own key slot while the archive is open (removed at period end).
        central.keys.add_passphrase_slot(central.custody.private_key(), user["name"], passphrase)
        audit_action(central, person, "keys.slot_added", with_role=False)
    audit_action(central, person, "session.login", details={"acting_director": acting})   # named even when false
    return {"token": token, "user": public_user(user) | {"acting_director": acting},
            "must_acknowledge_policy": (user.get("policy_ack") or {}).get("version") != policy_version(),
            "must_change_passphrase": bool(user.get("must_change_passphrase"))}


@op("session.logout", ANYONE, before_ack=True)
def logout(central, caller, args):
    """End this session."""
    args.done()
    central.sessions.pop(caller.session, None)
    audit_action(central, caller, "session.logout", with_role=False)
    return {}


@op("session.whoami", ANYONE, before_ack=True)
def whoami(central, caller, args):
    """Who this session belongs to, and what the archive's seal is."""
    args.done()
    user = _get_user(central, caller.user_id)
    return {"user": public_user(user) | {"acting_director": caller.acting_director},
            "sealed": central.custody.is_sealed, "pending_ack": caller.pending_ack,
            "must_change_passphrase": caller.must_change, "idle_left": central.idle_left(caller.session)}


@op("policy.text", ANYONE, before_ack=True)
def get_policy(central, caller, args):
    """The library's video surveillance policy, to read before acknowledging it."""
    args.done()
    return {"text": policy_text(), "version": policy_version()}


@op("policy.acknowledge", ANYONE, before_ack=True)
def acknowledge_policy(central, caller, args):
    """Acknowledge the policy (required at first login, C22)."""
    version = args.str("version", max_len=64)
    args.done()
    if version != policy_version():
        raise BadRequest("that is not the current policy version: read it again")
    central.records.update("users", caller.user_id, {"policy_ack": {"version": version, "at": iso(central.now())}})
    audit_action(central, caller, "policy.acknowledge", details={"version": version}, with_role=False)
    return {"acknowledged": True}


# --------------------------------------------------------------------------- accounts


@op("user.list", DIRECTOR_OR_IT)
def list_users(central, caller, args):
    """Every account (no passphrase hashes)."""
    args.done()
    return {"users": [public_user(u) for u in central.records.all("users")]}


@op("user.create", DIRECTOR_HERSELF,
    labels={"name": "User name", "passphrase": "Temporary passphrase"}, secrets=("passphrase",),
    new_secrets=("passphrase",))
def create_user(central, caller, args):
    """Create a staff or IT account with a temporary passphrase (changed at first login)."""
    name = args.str("name", max_len=32)
    role = args.str("role", choices=("staff", "it"))
    passphrase = args.str("passphrase", max_len=1024)
    args.done()
    user = create_user_record(central.records, name, role, passphrase, now=central.now(), must_change=True)
    audit_action(central, caller, "user.create", target=user["id"], details={"name": name, "role": role})
    return {"user": public_user(user)}


# Which accounts a manager may act on (the people rule of user.reset_passphrase, user.unlock and
# user.set_disabled, as their rules state it; _may_manage applies it to the account named).
MANAGES = ("never your own or the Director's account; IT staff and an acting director: staff accounts "
           "only (not a designated acting director's)")


def _may_manage(central, caller, target: dict) -> None:
    """Director: any other account. IT and an acting director: staff accounts only, never one designated
    acting director (whoever set its passphrase could act as Director in its period, C2)."""
    if target["id"] == caller.user_id:
        raise Refused("this is your own account: change your own passphrase instead (it asks for the current one)")
    if target["role"] == "director":
        raise Refused("nobody may reset or manage the Director's account through the system; "
                      "the Director uses her recovery code", clause="C2")
    if caller.role == "director":
        return
    if target["role"] != "staff":
        raise Refused("an acting director manages staff accounts only" if caller.acting_director
                      else f"{role_name('it')} may manage staff accounts only")
    if has_acting_period(central, target):
        raise Refused("this staff member is or will be acting director: only the Director may reset "
                      "her account", clause="C2")


@op("user.reset_passphrase", DIRECTOR_OR_IT.noting(MANAGES),
    labels={"user": "Account", "passphrase": "Temporary passphrase"}, secrets=("passphrase",),
    new_secrets=("passphrase",))
def reset_passphrase(central, caller, args):
    """Give another account a temporary passphrase and unlock it."""
    target = person_arg(central, args)
    passphrase = args.str("passphrase", max_len=1024)
    args.done()
    _may_manage(central, caller, target)
    validate_passphrase(passphrase)
    central.records.update("users", target["id"], {
        "pass_hash": keys_mod.hash_passphrase(passphrase), "must_change_passphrase": True,
        "failed_logins": 0, "locked_until": None})
    _end_sessions(central, target["id"])
    audit_action(central, caller, "user.reset_passphrase", target=target["id"])
    return {"user": public_user(central.records.get("users", target["id"]))}


@op("user.unlock", DIRECTOR_OR_IT.noting(MANAGES),
    labels={"user": "Account"})
def unlock(central, caller, args):
    """Clear a lockout after failed logins."""
    target = person_arg(central, args)
    args.done()
    _may_manage(central, caller, target)
    central.records.update("users", target["id"], {"failed_logins": 0, "locked_until": None})
    audit_action(central, caller, "user.unlock", target=target["id"])
    return {}


@op("user.set_disabled", DIRECTOR.noting(MANAGES),
    labels={"user": "Account"})
def set_disabled(central, caller, args):
    """Disable or re-enable another account (e.g. when someone leaves)."""
    target = person_arg(central, args)
    disabled = args.bool("disabled", required=True)
    args.done()
    _may_manage(central, caller, target)
    central.records.update("users", target["id"], {"disabled": disabled})
    if disabled:
        _end_sessions(central, target["id"])
        from appliance.rules.live import close_views
        close_views(central, "account disabled", user=target["id"])
        if target["role"] == "staff" and has_slot(central, target["name"]):
            central.keys.remove_slot(target["name"])
            central.audit.append("system", "keys.slot_removed", target=target["id"],
                                 details={"reason": "account disabled"})
    audit_action(central, caller, "user.disable" if disabled else "user.enable", target=target["id"], with_role=False)
    return {}


@op("user.change_passphrase", ANYONE, before_ack=True,
    labels={"old": "Current passphrase", "new": "New passphrase"}, secrets=("old", "new"),
    new_secrets=("new",))
def change_passphrase(central, caller, args):
    """Change your own passphrase (the Director's also re-wraps her archive key slot)."""
    old = args.str("old", max_len=1024)
    new = args.str("new", max_len=1024)
    args.done()
    user = _get_user(central, caller.user_id)
    if not keys_mod.verify_passphrase(user["pass_hash"], old):
        audit_action(central, caller, "user.change_passphrase_failed", with_role=False)
        raise WrongPassphrase("the current passphrase is wrong")
    validate_passphrase(new)
    if new == old:
        raise BadRequest("the new passphrase must differ from the old one")
    if has_slot(central, user["name"]):
        try:
            central.keys.change_passphrase(user["name"], old, new)
            resumed = {}
        except WrongPassphrase:
            # A change cut short between her slot and her login record (the slot is written first):
            # the slot opens with the new passphrase already, so finish with the login record.
            central.keys.unseal_with_passphrase(user["name"], new)     # WrongPassphrase if it does not
            resumed = {"finishes_an_interrupted_change": True}
        audit_action(central, caller, "keys.slot_rewrapped", with_role=False, details=resumed)
    central.records.update("users", caller.user_id, {"pass_hash": keys_mod.hash_passphrase(new),
                                                     "must_change_passphrase": False})
    _end_sessions(central, caller.user_id, keep=caller.session)   # e.g. whoever knew the temporary one
    audit_action(central, caller, "user.change_passphrase", with_role=False)
    return {}


def _end_sessions(central, user_id: str, keep: str | None = None) -> None:
    for token, session in list(central.sessions.items()):
        if session["user_id"] == user_id and token != keep:
            del central.sessions[token]


# --------------------------------------------------------------------------- acting director (C2)


@op("director.designate_acting", DIRECTOR_HERSELF,
    labels={"user": "Staff member", "start": "From", "end": "Until"})
def designate_acting(central, caller, args):
    """Designate a staff member as acting director for a dated period (C2)."""
    target = person_arg(central, args)
    start = args.time("start")
    end = args.time("end")
    why = args.str("why", max_len=1000, min_len=3)
    args.done()
    if target["role"] != "staff":
        raise Refused("an acting director must be a staff member", clause="C2")
    if end <= start:
        raise BadRequest("the period must end after it starts")
    if (end - start).days > 366:
        raise BadRequest("an acting period may last at most a year")
    period = {"start": iso(start), "end": iso(end), "why": why, "designated_by": caller.user_id,
              "designated_at": iso(central.now()), "revoked": None}
    central.records.update("users", target["id"], lambda u: u["acting_periods"].append(period))
    audit_action(central, caller, "director.designate_acting", target=target["id"], why=why,
                 details={"start": period["start"], "end": period["end"]})
    return {"period": period}


@op("director.revoke_acting", DIRECTOR_HERSELF,
    labels={"user": "Staff member"})
def revoke_acting(central, caller, args):
    """End every acting-director period of a staff member now."""
    target = person_arg(central, args)
    args.done()
    stamp = iso(central.now())

    def revoke(u):
        for p in u["acting_periods"]:
            if not p.get("revoked") and parse_iso(p["end"]) > central.now():
                p["revoked"] = stamp
    central.records.update("users", target["id"], revoke)
    remove_expired_slots(central)
    if has_slot(central, target["name"]):
        central.keys.remove_slot(target["name"])
    _end_sessions(central, target["id"])
    audit_action(central, caller, "director.revoke_acting", target=target["id"])
    return {}


def periodic(central):
    """Remove acting directors' key slots soon after their period ends."""
    return [every(SLOT_CHECK_SECONDS, functools.partial(remove_expired_slots, central),
                  name="removing ended acting directors' key slots", lock=central.decision_lock, wait_first=True)]


def remove_expired_slots(central) -> None:
    """Remove key slots of acting directors whose period is over (periodic and on revoke)."""
    for user in central.records.all("users"):
        if user["role"] == "staff" and has_slot(central, user["name"]) and not acting_director_now(central, user):
            central.keys.remove_slot(user["name"])
            central.audit.append("system", "keys.slot_removed", target=user["id"],
                                 details={"reason": "acting period over"})


# --------------------------------------------------------------------------- the archive's seal


@op("archive.status", ANYONE)
def archive_status(central, caller, args):
    """Whether recorded footage can be reviewed now (unsealed) or not."""
    args.done()
    return {"sealed": central.custody.is_sealed}


@op("archive.unseal", DIRECTOR,
    labels={"passphrase": "Your passphrase", "recovery_code": "Recovery code"},
    secrets=(("passphrase", "recovery_code"),))
def unseal(central, caller, args):
    """Unseal the archive with your passphrase or the recovery code (Director only)."""
    passphrase = args.str("passphrase", required=False, max_len=1024)
    recovery = args.str("recovery_code", required=False, max_len=200)
    args.done()
    if bool(passphrase) == bool(recovery):
        raise BadRequest("give either passphrase or recovery_code")
    try:
        if passphrase:
            central.custody.unseal(caller.name, passphrase)
        else:
            central.custody.unseal_with_recovery(recovery)
    except (WrongPassphrase, WrongRecoveryCode) as e:
        audit_action(central, caller, "archive.unseal_failed",
                     details={"method": "passphrase" if passphrase else "recovery"})
        raise e
    audit_action(central, caller, "archive.unseal",     # the capacity named even when false
                 details={"method": "passphrase" if passphrase else "recovery",
                          "acting_director": caller.acting_director})
    central.wake_watchers()   # every open screen shows the seal at once
    return {"sealed": False}


@op("archive.seal", DIRECTOR)
def seal(central, caller, args):
    """Seal the archive: recording goes on, review and export stop until unsealed."""
    args.done()
    central.custody.seal()
    audit_action(central, caller, "archive.seal")
    central.wake_watchers()
    return {"sealed": True}


def require_unsealed(central):
    if central.custody.is_sealed:
        raise ArchiveSealed("the archive is sealed: the Director must unseal it to review or export footage")
    return central.custody.private_key()
