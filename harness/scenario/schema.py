"""Field tables: the generic reader behind the scenario schema.

A section is a table of `Field` rows (key, checker, default, when it applies); one
reader walks a table, so each rule lives in one row and the first problem is reported
with its full dotted path, what was expected and what was given. A checker takes (raw
value, dotted path) and returns the parsed value or raises `Invalid`. bool is refused
wherever a number is expected (YAML `true` is not 1).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit


class Invalid(Exception):
    """Raised by checkers; parse_scenario adds the source and re-raises ScenarioError."""

    def __init__(self, field: str, message: str):
        super().__init__(field, message)
        self.field, self.message = field, message


def show(value: Any) -> str:
    """A value as the user wrote it in YAML terms ("8" is visibly a string)."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


Checker = Callable[[Any, str], Any]


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:       # an int too big for a float
        return False


def _range_text(lo: float, hi: float | None, lo_open: bool) -> str:
    if hi is not None:
        return f"in {lo:g}..{hi:g}"
    return f"> {lo:g}" if lo_open else f">= {lo:g}"


def integer(lo: int, hi: int | None = None) -> Checker:
    expected = f"an integer {_range_text(lo, hi, False)}"

    def check(v: Any, path: str) -> int:
        if not is_int(v) or v < lo or (hi is not None and v > hi):
            raise Invalid(path, f"expected {expected}, got {show(v)}")
        return v
    return check


def number(lo: float, hi: float | None = None, lo_open: bool = False) -> Checker:
    expected = f"a number {_range_text(lo, hi, lo_open)}"

    def check(v: Any, path: str) -> float:
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v)
              and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi))
        if not ok:
            raise Invalid(path, f"expected {expected}, got {show(v)}")
        return float(v)
    return check


def choice(*options: str) -> Checker:
    expected = "one of " + ", ".join(f'"{o}"' for o in options)

    def check(v: Any, path: str) -> str:
        if not isinstance(v, str) or v not in options:
            raise Invalid(path, f"expected {expected}, got {show(v)}")
        return v
    return check


def boolean(v: Any, path: str) -> bool:
    if not isinstance(v, bool):
        raise Invalid(path, f"expected true or false, got {show(v)}")
    return v


def string(pattern: str | None = None, expected: str = "a non-empty string") -> Checker:
    regex = re.compile(pattern or r".+", re.S)

    def check(v: Any, path: str) -> str:
        if not isinstance(v, str) or not regex.fullmatch(v):
            raise Invalid(path, f"expected {expected}, got {show(v)}")
        return v
    return check


def optional(inner: Checker) -> Checker:
    def check(v: Any, path: str) -> Any:
        return None if v is None else inner(v, path)
    return check


def url(v: Any, path: str) -> str:
    parts = urlsplit(v) if isinstance(v, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(path, f'expected an http(s) URL such as "https://api.example.com/v1", '
                             f"got {show(v)}")
    return v


def items(v: Any, path: str, expected: str) -> list[tuple[Any, str]]:
    """(item, path of item) for a YAML list; anything else is refused."""
    if not isinstance(v, (list, tuple)):
        raise Invalid(path, f"expected {expected}, got {show(v)}")
    return [(x, f"{path}[{i}]") for i, x in enumerate(v)]


def points(item: Checker, what: str) -> Checker:
    """A bare value or a non-empty list of distinct values; stored ascending."""
    def check(v: Any, path: str) -> tuple:
        pairs = items(v, path, "") if isinstance(v, (list, tuple)) else [(v, path)]
        if not pairs:
            raise Invalid(path, f"expected {what} or a non-empty list of them, got []")
        seen: dict[Any, str] = {}
        for raw, where in pairs:
            value = item(raw, where)
            if value in seen:
                raise Invalid(where, f"duplicate of {seen[value]} ({show(raw)})")
            seen[value] = where
        return tuple(sorted(seen))
    return check


# --------------------------------------------------------------------------- field tables

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    key: str
    check: Checker
    default: Any = REQUIRED        # raw value, run through `check` like a given one
    only: tuple[tuple[str, str], ...] = ()   # applies only when these siblings have these values


class Section:
    """A mapping read through a field table into a dataclass, then a cross-field check."""

    def __init__(self, cls: type, fields: tuple[Field, ...],
                 post: Callable[[dict, str], None] | None = None):
        self.cls, self.fields, self.post = cls, fields, post
        self.keys = [f.key for f in fields]

    def __call__(self, raw: Any, path: str) -> Any:
        return self.cls(**self.values(raw, path))

    def values(self, raw: Any, path: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            where = "" if path else " at the top level"
            raise Invalid(path, f"expected a mapping{where}, got {show(raw)}")
        _refuse_unknown(raw, path, self.keys)
        values: dict[str, Any] = {}
        for f in self.fields:
            values[f.key] = _read(f, raw, path, values)
        if self.post:
            self.post(values, path)
        return values


def _refuse_unknown(raw: dict, path: str, keys: list[str]) -> None:
    # Checked before any value: a misspelt key would otherwise surface as a puzzling
    # "required" error, or not at all when the intended key has a default.
    for key in raw:
        if key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f'did you mean "{close[0]}"?' if close else f"allowed: {', '.join(keys)}"
            raise Invalid(join(path, key), f"unknown key ({hint})")


def _read(f: Field, raw: dict, path: str, siblings: dict[str, Any]) -> Any:
    where = join(path, f.key)
    for key, wanted in f.only:
        given = siblings[key]
        # `wanted` is a value or a tuple of values (any of them enables the field); a
        # swept sibling (a tuple of values) enables it if it includes one.
        options = wanted if isinstance(wanted, tuple) else (wanted,)
        if given not in options and not (isinstance(given, tuple)
                                         and any(w in given for w in options)):
            if f.key in raw:
                shown = " or ".join(f'"{w}"' for w in options)
                raise Invalid(where, f"only allowed when {join(path, key)} is "
                                      f'{shown} (it is "{siblings[key]}")')
            return None
    if f.key in raw:
        return f.check(raw[f.key], where)
    if f.default is REQUIRED:
        when = " and ".join(f'{join(path, k)} is "{v}"' for k, v in f.only
                            if not isinstance(v, tuple))
        raise Invalid(where, f"required when {when}" if when else "required field missing")
    return f.check(f.default, where)


def sweep(item: Checker, scalar: bool = False) -> Checker:
    """One value or a non-empty list of distinct values (a sweep), order kept. The
    result is a tuple; with scalar=True a bare value stays bare (a single setting)."""
    def check(v: Any, path: str) -> Any:
        if not isinstance(v, list):
            value = item(v, path)
            return value if scalar else (value,)
        if not v:
            raise Invalid(path, "an empty list sweeps nothing; give a value or values")
        seen: dict[Any, str] = {}
        for raw, where in items(v, path, ""):
            value = item(raw, where)
            if value in seen:
                raise Invalid(where, f"duplicate of {seen[value]} ({show(raw)})")
            seen[value] = where
        return tuple(seen)
    return check
