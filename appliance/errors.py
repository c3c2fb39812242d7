"""Every error the core raises, in one place; each carries a message a person can act on.

An error has a `code` (what a client tells apart) and the local API answers it with the
HTTP status `HTTP_STATUS` gives that code: the one table, which `docs/api.md`'s table of
error codes must match (tests/rules/test_messages.py). 4xx: the caller can do something
about it (log in, ask differently, wait for the Director); 5xx: the appliance is at
fault (a damaged records file, a segment that fails its checks, ffmpeg), and the
central's log says more.
"""

HTTP_STATUS = {
    # the request: what was asked, and by whom
    "bad_request": 400,
    "weak_passphrase": 400,
    "not_authenticated": 401,
    "wrong_passphrase": 401,
    "wrong_recovery_code": 401,
    "forbidden": 403,                    # this role may not call this operation
    "refused": 403,                      # the policy says no here (the clause says which)
    "policy_ack_required": 403,          # C22: acknowledge the policy first
    "passphrase_change_required": 403,   # C8: choose your own passphrase first
    "locked": 403,                       # too many failed logins
    "disabled": 403,
    "not_found": 404,
    "sealed": 409,                       # recorded footage needs the archive unsealed
    # the appliance's own faults
    "error": 500,
    "bad_segment": 500,
    "media": 500,
    "keys": 500,
    "audit": 500,
    "records_corrupt": 500,
    "records_too_new": 500,
    "records_locked": 500,
    "disk_full": 507,                    # the central's data disk has no room for the records and audit entry
    "bad_config": 500,
    "internal": 500,
}


class CustodianError(Exception):
    """Base class: a refusal or fault with a clear, human message."""

    code = "error"
    # A refusal by the rule table (the caller's role, or a record outside her scope): the
    # dispatcher writes it to the audit log as `access.refused` (C16).
    by_rule_table = False

    @property
    def status(self) -> int:
        """The HTTP status the local API answers with."""
        return HTTP_STATUS.get(self.code, 500)


# --- the rules say no, or the request is wrong (appliance/rules/) -------------------------


class Refused(CustodianError):
    """The policy says no. The message says which rule and what would make it yes."""

    code = "refused"

    def __init__(self, message: str, *, clause: str | None = None, code: str | None = None):
        super().__init__(message)
        self.clause = clause
        if code:
            self.code = code


class BadRequest(CustodianError):
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field     # the argument at fault (its API name), for a form to point at


class NotFound(CustodianError):
    code = "not_found"


class NotAuthenticated(CustodianError):
    code = "not_authenticated"


class NodeRefused(Exception):
    """The central's answer to a camera node's request it will not serve (the node channel,
    appliance/central/node_channel.py): an HTTP status and a message, with details for the node."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class SegmentError(CustodianError):
    """A segment file is malformed, forged, truncated or out of chain."""

    code = "bad_segment"

    def __init__(self, message: str, *, kind: str = "malformed"):
        super().__init__(message)
        # kind: malformed | signature | digest | truncated | chain | unknown_camera | too_large
        self.kind = kind


class ConfigError(CustodianError):
    code = "bad_config"


class EnrolmentRefused(CustodianError):
    """The central refused a node's pairing code for good (appliance/rules/enrolment.py): a new code is needed."""

    code = "enrolment_refused"


# --- records (appliance/custody/records.py) ---------------------------------------------


class RecordNotFound(CustodianError):
    code = "not_found"


class RecordsCorrupt(CustodianError):
    """The records database file cannot be read; it is never silently replaced."""

    code = "records_corrupt"


class RecordsTooNew(CustodianError):
    """The records database was written by a newer Custodian than this one."""

    code = "records_too_new"


class RecordsLocked(CustodianError):
    """Another process already has the records database open (one writer only)."""

    code = "records_locked"


class DiskFull(CustodianError):
    """The central's data disk cannot hold what an action writes (its records and audit entry)."""

    code = "disk_full"


# --- key custody (appliance/custody/keys.py) ----------------------------------------------


class KeyStoreError(CustodianError):
    """Key files missing, malformed, unsafe permissions, or already created."""

    code = "keys"


class WeakPassphrase(CustodianError):
    code = "weak_passphrase"


class WrongPassphrase(CustodianError):
    """No passphrase slot opens with this user name and passphrase."""

    code = "wrong_passphrase"


class WrongRecoveryCode(CustodianError):
    """The recovery code is mistyped or does not open the recovery slot."""

    code = "wrong_recovery_code"


class ArchiveSealed(CustodianError):
    """Recorded footage needs the archive unsealed by the Director."""

    code = "sealed"


# --- audit log (appliance/custody/audit.py) -----------------------------------------------


class AuditError(CustodianError):
    """The audit log cannot be appended to safely (locked, corrupt tail, truncated)."""

    code = "audit"


# --- media (appliance/media/decode.py) -----------------------------------------------------


class MediaError(CustodianError):
    """ffmpeg could not decode the footage (missing, failed, timed out, or nothing decodable)."""

    code = "media"
