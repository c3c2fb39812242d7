"""Canonical JSON: the one byte form of every JSON document Custodian signs or hashes.

Rules (also in docs/audit-format.md, so a third party can reproduce them):

- object keys sorted by Unicode code point, no duplicate keys, keys are strings;
- no whitespace: separators "," and ":";
- ASCII only: every non-ASCII character is written as a \\uXXXX escape
  (UTF-16 surrogate pairs above U+FFFF), exactly as Python's json module does;
- values: objects, arrays, strings, integers, true, false, null. No floats at all
  (1.0, 1e3, NaN and Infinity are refused): a float's text form is not stable across
  languages, so a signed document would stop verifying after a round trip. Write
  times as strings, money or fractions as integers of a smaller unit.

`canonical_json` refuses anything else; `parse_canonical` refuses bytes that are not
exactly the canonical form of what they decode to, so a verifier can insist on it.
"""
from __future__ import annotations

import json
from typing import Any

__all__ = ["CanonicalError", "canonical_json", "parse_canonical"]


class CanonicalError(ValueError):
    """The value cannot be written (or the bytes were not written) as canonical JSON."""


def _check(obj: Any, where: str) -> None:
    # bool is an int subclass and fine; float is refused in every form.
    if obj is None or isinstance(obj, (bool, int, str)):
        return
    if isinstance(obj, float):
        raise CanonicalError(f"{where}: floats are not allowed in canonical JSON (got {obj!r})")
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{where}: object keys must be strings (got {key!r})")
            _check(value, f"{where}.{key}")
        return
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check(value, f"{where}[{i}]")
        return
    raise CanonicalError(f"{where}: {type(obj).__name__} is not a JSON value")


def canonical_json(obj: Any) -> bytes:
    """The canonical bytes of `obj` (no trailing newline)."""
    _check(obj, "$")
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _no_float(text: str):
    raise CanonicalError(f"floats are not allowed in canonical JSON (got {text})")


def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise CanonicalError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def parse_canonical(data: bytes) -> Any:
    """Decode `data`, insisting that it is byte for byte canonical JSON."""
    try:
        obj = json.loads(
            data.decode("ascii"),
            parse_float=_no_float,
            parse_constant=_no_float,
            object_pairs_hook=_no_duplicates,
        )
        again = canonical_json(obj)
    except CanonicalError:
        raise
    except (UnicodeDecodeError, ValueError) as e:
        raise CanonicalError(f"not JSON: {e}") from None
    except RecursionError:
        # `[[[[...` from anyone on the LAN (a segment header is parsed before it is trusted).
        raise CanonicalError("not JSON this reader accepts: lists or objects nested too deeply") from None
    if again != data:
        raise CanonicalError("valid JSON but not in canonical form")
    return obj
