"""Errors the core raises; each carries a message a person can act on."""


class CustodianError(Exception):
    """Base class: a refusal or fault with a clear, human message."""

    code = "error"


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
