"""The rules: every API operation, and the policy clause each one enforces.

`registry.py` is the one rule table (who may call what: roles, the Director herself,
ownership scopes) and how an operation reads its arguments; each other module governs
one concern (accounts, cameras, live view, incidents and grants, footage, legal
instruments and releases, retention, breaches, notices, reports, alerts) and
`catalog.py` registers them all with the clauses they enforce (docs/policy-clauses.md).
"Rules" is our code; "policy" is only the library's policy document
(`library-policy.txt`). May import `media/`, `custody/`, `formats/`, the shared leaves;
never `central/` or `node/`: what the rules need of the daemon comes through the
interfaces in `ports.py`, which the daemon provides.
"""
