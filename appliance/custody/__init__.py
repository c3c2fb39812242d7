"""What the central keeps, and how it keeps it safe: the custody stores.

Keys and their passphrase slots (`keys.py`, docs/keys-format.md), the hash-chained
audit log with signed checkpoints (`audit.py`, docs/audit-format.md), the records
database with its atomic storage (`records.py`, docs/records.md), and the archive
tree of stored segments (`archive.py`). Each is crash-safe on its own (write, fsync,
rename, fsync the directory). May import `formats/` and the shared leaves; never the
rules, the daemons or the UI: it stores, it does not decide.
"""
