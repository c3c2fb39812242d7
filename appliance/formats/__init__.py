"""What both sides of the wire and a third party's reader share: the formats.

The segment envelope (`segment.py`, docs/segment-format.md), canonical JSON
(`canonical.py`), the chain check over a camera's segments (`chain.py`), the evidence
package and its check (`export_package.py`, docs/export-format.md), and the pieces of the
node protocol both ends compute (`node_protocol.py`, `pairing.py`, docs/node-protocol.md).
The bottom layer of the core: it imports only the standard library, PyNaCl, `hw.backend`'s
`Frame`, and `appliance.errors` / `appliance.fsutil`; nothing here needs a key it is not
given, so a verifier runs anywhere.
"""
