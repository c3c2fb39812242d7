"""One way to write a person's action to the audit log (entries: docs/audit-format.md).

Every operation a person calls that touches footage, keys, accounts or records writes
its entry through `audit_action`: who (her account id), in what capacity (her role, and
`acting_director: true` in the details whenever she acts as the Director's stand-in,
C2), what, why, on what, and the records it belongs to. The system's own entries (a
sweep, a camera going offline, a live view running out) are written as
`central.audit.append("system", ...)`. A failed login is written by `audit_login_attempt`:
nobody is logged in yet, so it names only the account tried.
"""
from __future__ import annotations

from appliance.errors import CustodianError
from appliance.rules.registry import Caller, Op, refused_target


def audit_action(central, caller: Caller, action: str, *, target: str | None = None, refs: dict | None = None,
                 why: str | None = None, details: dict | None = None, with_role: bool = True) -> dict:
    """Write one entry for `caller`'s action and return it.

    `refs` without a value are left out. Four entries name the capacity even when it is
    false (`session.login`, `archive.unseal`, `live.open`, `notice.create`): they pass
    `acting_director` in `details` themselves. `with_role=False` is for the few entries that
    have always been written without the person's role (logout, the policy
    acknowledgement, a passphrase change, enabling or disabling an account, her own key
    slot added or re-wrapped): the log's readers know them that way.
    """
    details = dict(details or {})
    if caller.acting_director:
        details["acting_director"] = True
    return central.audit.append(caller.user_id, action, role=caller.role if with_role else None, target=target,
                                refs={k: v for k, v in (refs or {}).items() if v}, why=why, details=details)


def audit_login_attempt(central, account: str, action: str, details: dict) -> dict:
    """A login refused (`session.login_failed`) or an account locked by failed logins
    (`user.locked`): `account` is the account id tried, or `-` when no account has the name
    typed (the text itself is never written: it may be a passphrase typed in the wrong field). No role and no capacity: the person has not proved who she is."""
    return central.audit.append(account, action, details=details)


def audit_access_refused(central, caller: Caller, operation: Op, raw_args, refusal: CustodianError) -> dict:
    """An operation refused by the rule table (`access.refused`): her role may not call it, or
    the record it names is not hers, so a breach investigation (C16) sees the attempt. The
    target is the id she asked for, if any; nothing else she typed is written."""
    clause = getattr(refusal, "clause", None) or (operation.rule.scope.clause if operation.rule.scope else None)
    return audit_action(central, caller, "access.refused", target=refused_target(operation, raw_args),
                        why=str(refusal), details={"operation": operation.name, "code": refusal.code}
                        | ({"clause": clause} if clause else {}))
