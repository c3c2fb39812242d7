"""The registry of API operations: one place that says who may do what.

Every operation the central offers is a function registered here with `@op`, with the
roles that may call it. The local API (appliance/central/api.py), the CLI (`custodian
call`, through that API) and the tests all run an operation through `Central.call`,
which finds the caller, checks her against the registry (`authorize`) and runs the
operation under the decision lock, so a rule enforced here cannot be bypassed by a screen.

An operation is `f(central, caller, args) -> dict`: the `Central`, the `Caller` (None
for a public operation called without a login session) and the request's `Args`. It
raises `Refused` (the rules say no, with the reason) or `BadRequest` (the input is
wrong); either leaves nothing changed. Operations that touch footage, keys, accounts or
records write an audit entry through `appliance.rules.auditing.audit_action`.
"""
from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any, Callable

from appliance.errors import BadRequest, CustodianError, NotAuthenticated, NotFound, Refused
from appliance.wording import role_name, roles_phrase

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# The arguments that name what an operation acts on, in the order a refused call's audit entry looks for one.
TARGET_ARGS = ("camera", "incident", "grant", "request", "instrument", "release", "export", "breach", "hold",
               "view", "alert", "notice")


@dataclass
class Caller:
    """Who is calling: a logged-in person, or the system itself (no session)."""

    user_id: str
    name: str
    role: str                       # the account's own role
    session: str | None = None
    acting_director: bool = False   # a designated acting director inside the period
    pending_ack: bool = False       # has not yet acknowledged the current policy
    must_change: bool = False       # logged in with a temporary passphrase set by someone else

    @property
    def is_director(self) -> bool:
        return self.role == "director" or self.acting_director


# --------------------------------------------------------------------------- the rule table


@dataclass(frozen=True)
class Scope:
    """An ownership rule: which records of a table a caller other than the Director reaches.

    Declared once (next to the records it is about) and named in the rule of every
    operation it governs: the dispatcher applies it to the record an operation names
    before the operation runs, listings filter with `reaches`, and the docs say `what`.
    """

    table: str
    what: str                                       # "the incidents they filed or hold a grant for"
    mine: Callable[[Any, "Caller", dict], bool]     # (central, caller, record) -> it is the caller's
    refusal: str = "{what_one} {id} is not yours"   # {id}: the record asked for
    what_one: str = "record"                        # "incident", "breach case", ...
    clause: str | None = None
    hidden: bool = False                            # refuse as not found: do not reveal that it exists

    def reaches(self, central, caller: "Caller", record: dict) -> bool:
        return caller.is_director or self.mine(central, caller, record)


@dataclass(frozen=True)
class Rule:
    """Who may call an operation: one row of the rule table every `@op` declares.

    `roles` are the account roles admitted ("director" also admits an acting director
    inside her period, unless `acting` is False: "the Director herself"). `scope` limits
    a caller who is not the Director to her own records; `scope_arg` is the argument
    naming one. `note` states, in words, a rule the operation applies to its arguments
    (which accounts IT may manage, say). `GET /v1/operations`, the "who may call it"
    column of docs/api.md and the authorization matrix all read these rules.
    """

    roles: tuple[str, ...]
    acting: bool = True
    scope: Scope | None = None
    scope_arg: str | None = None
    refusal: tuple[str, str | None] | None = None     # this operation's own words (and clause) for a refusal
    note: str = ""
    herself_clause: str = "C2"                        # the clause an acting director is refused under

    def herself(self, clause: str = "C2") -> "Rule":
        """The Director herself, not an acting director: her custody alone (C2, or `clause`)."""
        return replace(self, acting=False, herself_clause=clause)

    def own(self, scope: Scope, arg: str | None = None, *, refusal: str | None = None,
            clause: str | None = None) -> "Rule":
        """Below the Director, only the caller's own records of `scope` (`arg` names one).

        `refusal` and `clause` word this operation's refusal where the scope's own would
        not say enough."""
        return replace(self, scope=scope, scope_arg=arg, refusal=(refusal, clause) if refusal else None)

    def noting(self, note: str) -> "Rule":
        return replace(self, note=note)

    def admits(self, caller: "Caller") -> bool:
        roles = {caller.role} | ({"director"} if caller.acting_director and self.acting else set())
        return bool(roles & set(self.roles))

    def describe(self) -> str:
        """The rule as the docs state it ("who may call it" in docs/api.md and docs/api/*.md)."""
        text = ", ".join(ROLE_WORDS[r] for r in ROLES if r in self.roles)
        if not self.acting:
            text += " (herself, not an acting director)"
        if self.scope is not None:
            text += f"; below the Director, only {self.scope.what}"
        if self.note:
            text += f"; {self.note}"
        return text

    def check_scope(self, central, caller: "Caller", raw_args: Any) -> None:
        """Before the operation runs: the record it names must be the caller's (or she is the Director)."""
        if self.scope is None or self.scope_arg is None or caller.is_director or not isinstance(raw_args, dict):
            return
        record_id = raw_args.get(self.scope_arg)
        if not isinstance(record_id, str) or not SAFE_ID.match(record_id):
            return                      # the operation's own argument check says what is wrong
        scope = self.scope
        record = central.records.get(scope.table, record_id)
        if record is None:
            raise NotFound(f"no {scope.what_one} {record_id}")
        if not scope.mine(central, caller, record):
            words, clause = self.refusal or (scope.refusal, scope.clause)
            message = words.format(id=record_id, what_one=scope.what_one)
            raise _by_rule_table(NotFound(message) if scope.hidden else Refused(message, clause=clause))


ROLES = ("staff", "director", "it")
ROLE_WORDS = {"staff": "staff", "director": "the Director", "it": "IT staff"}   # as the docs say them
ANYONE = Rule(ROLES)
STAFF_OR_DIRECTOR = Rule(("staff", "director"))
DIRECTOR = Rule(("director",))
DIRECTOR_HERSELF = DIRECTOR.herself()
DIRECTOR_OR_IT = Rule(("director", "it"))


@dataclass
class Op:
    name: str
    func: Callable
    rule: Rule
    summary: str
    public: bool = False            # callable without a session (login)
    before_ack: bool = False        # callable before the policy is acknowledged
    concurrent: bool = False        # slow and read-mostly (decoding footage): runs outside the decision lock
    labels: dict[str, str] = field(default_factory=dict)    # argument -> what the form calls it
    secrets: tuple[tuple[str, ...], ...] = ()   # secret arguments: each a group of alternatives
    new_secrets: tuple[str, ...] = ()           # the secrets this sets (a client asks for them twice)
    waits: bool = False             # long poll: the API re-runs it when woken until it says "changed"

    @property
    def roles(self) -> tuple[str, ...]:
        return self.rule.roles

    def who(self) -> str:
        """Who may call it, in the words of docs/api.md."""
        return "anyone (no session)" if self.public else self.rule.describe()


OPS: dict[str, Op] = {}


def op(name: str, rule: Rule, *, public: bool = False, before_ack: bool = False,
       concurrent: bool = False, labels: dict[str, str] | None = None, secrets: tuple = (),
       new_secrets: tuple[str, ...] = (), waits: bool = False):
    """Register an API operation with its rule: who may call it (`Rule`, the rule table).

    `concurrent` operations (ffmpeg decodes) run outside the decision lock so one long
    clip does not stall every other terminal; they must only read records and append
    to the audit log (both are thread-safe on their own).

    `labels` name arguments as the form does, where that differs from the API name
    ("what" is "What happened"): error messages use them. `secrets` are arguments
    that hold a passphrase or code; a client asks for them without echo instead of
    taking them on a command line. An entry that is a tuple is a choice of one
    (`("passphrase", "recovery_code")`): the client asks for the first. `new_secrets`
    are the ones that set a passphrase, which a person types twice. A `waits` operation returns
    at once with `changed` and `wait` (seconds); the local API waits, without holding a
    thread, until the central wakes its watchers, and asks again (appliance/central/api.py).
    """
    if not isinstance(rule, Rule):
        raise TypeError(f"operation {name}: its rule must be a Rule (ANYONE, DIRECTOR, ...), not {rule!r}")
    secrets = tuple((s,) if isinstance(s, str) else tuple(s) for s in secrets)

    def register(func: Callable) -> Callable:
        if name in OPS:
            raise RuntimeError(f"operation {name} registered twice")
        summary = (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""
        OPS[name] = Op(name, func, rule, summary, public, before_ack, concurrent, dict(labels or {}),
                       secrets, tuple(new_secrets), waits)
        return func

    return register


def authorize(operation: Op, caller: Caller | None) -> None:
    if operation.public:
        return
    if caller is None:
        raise NotAuthenticated("log in first")
    if caller.must_change and not operation.before_ack:
        raise Refused("this passphrase was set by someone else: choose your own (user.change_passphrase) "
                      "before using the system", clause="C8", code="passphrase_change_required")
    if caller.pending_ack and not operation.before_ack:
        raise Refused("acknowledge the video surveillance policy before using the system", clause="C22",
                      code="policy_ack_required")
    rule = operation.rule
    if not rule.admits(caller):
        if caller.acting_director and "director" in rule.roles:
            raise _by_rule_table(Refused(f"an acting director may not use {operation.name}: it is the Director's "
                                         "own", clause=rule.herself_clause, code="forbidden"))
        raise _by_rule_table(Refused(f"only {roles_phrase(rule.roles)} may use {operation.name}; "
                                     f"you are {role_name(caller.role)}", clause=role_clause(rule), code="forbidden"))


def role_clause(rule: Rule) -> str:
    """The clause a refusal by role rests on: the Director's own custody (C2, or the clause her rule
    names), else who may access the system and what each role may do (C8: IT never sees pictures)."""
    return rule.herself_clause if rule.roles == ("director",) else "C8"


def _by_rule_table(refusal: CustodianError) -> CustodianError:
    """Mark a refusal by role or scope: the dispatcher audits it as `access.refused` (C16)."""
    refusal.by_rule_table = True
    return refusal


def refused_target(operation: Op, raw_args: Any) -> str | None:
    """What a refused call asked for, for its audit entry: the record its scope argument names,
    else the first record or camera id among its arguments. Only an id (`SAFE_ID`) is
    written: never free text, which may be anything typed."""
    if not isinstance(raw_args, dict):
        return None
    for name in (operation.rule.scope_arg, *TARGET_ARGS):
        value = raw_args.get(name) if name else None
        if isinstance(value, str) and SAFE_ID.match(value):
            return value
    return None


# --------------------------------------------------------------------------- argument checking


class Args:
    """Reads a request's arguments with clear errors; unknown names are refused.

    Errors name an argument as its form does (the operation's `labels`), and carry
    the API name as `field`.
    """

    def __init__(self, raw: Any, labels: dict[str, str] | None = None):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise BadRequest("arguments must be a JSON object")
        self.raw = raw
        self.labels = labels or {}
        self.used: set[str] = set()

    def label(self, name: str) -> str:
        """The argument as a person knows it: the form's label in quotes, else its API name."""
        return f'"{self.labels[name]}"' if name in self.labels else name

    def bad(self, name: str, problem: str) -> BadRequest:
        """A BadRequest about argument `name`: "<its label> <problem>"."""
        return BadRequest(f"{self.label(name)} {problem}", field=name)

    def _get(self, name: str, default: Any, required: bool) -> Any:
        self.used.add(name)
        if name not in self.raw or self.raw[name] is None:
            if required:
                raise self.bad(name, "is required")
            return default
        return self.raw[name]

    def str(self, name: str, *, required: bool = True, default: str | None = None, max_len: int = 4000,
            min_len: int = 0, choices: tuple[str, ...] | None = None) -> str | None:
        value = self._get(name, default, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.bad(name, "must be text")
        value = value.strip()
        if required and not value:
            raise self.bad(name, "is required")     # blank is missing, not a value
        if len(value) > max_len:
            raise self.bad(name, f"is longer than {max_len} characters")
        if len(value) < min_len:
            raise self.bad(name, f"must be at least {min_len} characters")
        if choices is not None and value not in choices:
            raise self.bad(name, f"must be one of: {', '.join(choices)}")
        return value

    def id(self, name: str, *, required: bool = True) -> str | None:
        value = self._get(name, None, required)
        if value is None:
            return None
        if not isinstance(value, str) or not SAFE_ID.match(value):
            raise self.bad(name, "is not a valid id (letters, digits, '-', '_', '.'; no path separators)")
        return value

    def ids(self, name: str, *, required: bool = True, max_items: int = 64) -> list[str]:
        value = self._get(name, [], required)
        if not isinstance(value, list) or len(value) > max_items:
            raise self.bad(name, f"must be a list of at most {max_items} ids")
        if required and not value:
            raise self.bad(name, "must name at least one")
        for item in value:
            if not isinstance(item, str) or not SAFE_ID.match(item):
                raise self.bad(name, f"holds an invalid id {_short(item)}")
        return list(dict.fromkeys(value))

    def int(self, name: str, *, required: bool = True, default: int | None = None,
            lo: int | None = None, hi: int | None = None) -> int | None:
        value = self._get(name, default, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.bad(name, "must be a whole number")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.bad(name, f"must be between {lo} and {hi}")
        return value

    def bool(self, name: str, *, required: bool = False, default: bool = False) -> bool:
        value = self._get(name, default, required)
        if not isinstance(value, bool):
            raise self.bad(name, "must be true or false")
        return value

    def time(self, name: str, *, required: bool = True) -> datetime | None:
        """An ISO 8601 instant; naive times are taken as UTC."""
        value = self._get(name, None, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.bad(name, "must be an ISO 8601 date-time")
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise self.bad(name, f"{_short(value)} is not a valid date-time (e.g. 2026-11-29T14:30:00Z)") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        if not 2000 <= t.year <= 2200:
            raise self.bad(name, f"year {t.year} is out of range")
        return t.astimezone(timezone.utc)

    def date(self, name: str, *, required: bool = True) -> date | None:
        value = self._get(name, None, required)
        if value is None:
            return None
        try:
            d = date.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            d = None
        if d is None or not 2000 <= d.year <= 2200:
            raise self.bad(name, f"{_short(value)} is not a valid date (YYYY-MM-DD)")
        return d

    def rects(self, name: str, *, required: bool = False, max_items: int = 16) -> list[list[int]]:
        value = self._get(name, [], required)
        if not isinstance(value, list) or len(value) > max_items:
            raise self.bad(name, f"must be a list of at most {max_items} rectangles [x, y, w, h]")
        for r in value:
            if (not isinstance(r, list) or len(r) != 4
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10000 for v in r)
                    or r[2] == 0 or r[3] == 0):
                raise self.bad(name, f"{_short(r)} is not a rectangle [x, y, w, h] in pixels")
        return value

    def done(self) -> None:
        unknown = set(self.raw) - self.used
        if unknown:
            names = sorted(unknown)
            raise BadRequest(f"unknown argument(s): {', '.join(names)}"[:200], field=names[0])


_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 40


def _short(value: Any) -> str:
    """A client's value quoted in a message, cut short (and shallow): a message is read on one line."""
    return _QUOTE.repr(value)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
