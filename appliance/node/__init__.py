"""The camera node: camera -> segments (encrypted, signed, chained) -> spool -> central.

`identity.py` (its key and the central's public keys), `recorder.py` (segments written
crash-safely, the chain head), `spool.py` (the bounded queue of finished segments, and
what was lost), `uploader.py` (delivery, deleting only on the central's sealed receipt),
`control.py` (the control channel, the placement gate, snapshots and live frames),
`enrol.py` (first boot with a pairing code) and `service.py` (`custodian node run`).
The node holds the archive's *public* key only: nothing it stores can be decrypted on
it. May import `formats/`, `hw/` and the shared leaves; never `custody/`, `rules/` or
`central/`.
"""
