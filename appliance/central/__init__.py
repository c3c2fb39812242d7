"""The central daemon: the one process that owns the archive, the records, the keys
and the audit log, and serves them.

`daemon.py` wires it together (`Central`: sessions, the decision lock, dispatch through
the rule table, alerts); `api.py` is the local API on a Unix socket; `ingest.py` takes
segments from the LAN; `node_channel.py` answers the nodes' signed control requests and
keeps what they last sent (`NodeHub`, which the rules read as `central.nodes`);
`enrolment.py` serves pairing-code enrolment; `notify.py` sends alerts by mail. May
import every layer below it; never `node/`, and never the UI.
"""
