"""JSON Schema algebra for the grammar builder: keyword classes, ``$ref`` resolution, intersection.

A schema with ``allOf`` (or with ``$ref`` next to other keywords) means the *intersection* of its
parts. ``flatten`` turns such a schema into one plain keyword dict that the builder can read
directly: bounds are tightened, types intersected, ``required`` united, properties merged (each
property's schema becomes the ``allOf`` of what every part says about that name, including what a
part's ``additionalProperties`` / ``patternProperties`` say about names it does not list). Extra
combinators that cannot be folded (a second ``anyOf``, ...) stay in ``allOf`` and are distributed
by the builder. Keywords a grammar cannot express are kept, and named by ``unenforced``: the caller
validates the output against the original schema for those (never reports an unchecked answer).
"""

from __future__ import annotations

import json
import re
from typing import Any

# Keywords of one instance type: they imply it when "type" is absent (number: integer will do).
BY_TYPE = {
    "string": {"minLength", "maxLength", "pattern", "format"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "object": {
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
    },
    "array": {"items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems"},
}
# Assertion keywords the grammar enforces (with the applicators it walks through).
ENFORCED = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"}.union(*BY_TYPE.values())
# Assertions the grammar does not express: the output is validated against the schema afterwards.
CHECKED_AFTER = {
    "multipleOf",
    "not",
    "if",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "contains",
    "unevaluatedProperties",
    "unevaluatedItems",
}
# Everything else (title, description, x-*, draft-4 id, example, the benchmark's _format, ...) is an
# annotation or an unknown keyword: validators ignore it, and so does the grammar.
TYPES = ("string", "integer", "number", "boolean", "null", "array", "object")
_LOWER = {"minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum"}
_UPPER = {"maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum"}


class Unsatisfiable(Exception):
    """The intersection allows no value (types, enums or bounds that exclude each other)."""


def canonical(value: Any) -> str:
    """A key telling JSON values apart as JSON Schema does (1 and true differ, 1 and 1.0 not)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(float(value)) if float(value) == value else repr(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{canonical(value[k])}" for k in sorted(value)) + "}"
    return json.dumps(value)


class _Mark(str):
    """Punctuation pushed on ``small_key``'s work list (never confused with a JSON string)."""


def small_key(value: Any, limit: int = 2048) -> str | None:
    """``canonical(value)``-like text when it is at most ``limit`` characters long, else None;
    stops as soon as the limit is passed, so the cost is bounded whatever the value's size."""
    out: list[str] = []
    size = 0
    todo: list[Any] = [value]
    while todo:
        x = todo.pop()
        if isinstance(x, _Mark):
            piece = str(x)
        elif isinstance(x, dict):
            todo.append(_Mark("}"))
            for k in sorted(x, reverse=True):
                todo.extend((x[k], _Mark(json.dumps(k) + ":")))
            piece = "{"
        elif isinstance(x, list):
            todo.append(_Mark("]"))
            todo.extend(reversed(x))
            piece = "["
        else:
            piece = canonical(x) + ","
        out.append(piece)
        size += len(piece)
        if size > limit:
            return None
    return "".join(out)


def as_dict(schema: Any) -> dict | None:
    """``True`` -> ``{}``; ``False`` -> None (nothing allowed); dicts as they are."""
    if schema is True:
        return {}
    if schema is False:
        return None
    return schema if isinstance(schema, dict) else {}


def both(a: Any, b: Any) -> Any:
    """The schema ``allOf [a, b]``, without the wrapper when one side allows everything."""
    if a is b:
        return a
    if a is True or a == {}:
        return b
    if b is True or b == {}:
        return a
    if a is False or b is False:
        return False
    return {"allOf": [a, b]}


def pattern_matches(pattern: Any, name: str) -> bool | None:
    """``re.search``, as jsonschema itself matches patterns; None when Python cannot read it."""
    try:
        return re.search(str(pattern), name) is not None
    except (re.error, RecursionError, OverflowError):
        return None


def member_schema(schema: dict, name: str) -> Any:
    """What ``schema`` requires of the value of property ``name`` (None when it is not readable)."""
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    pats = schema.get("patternProperties")
    pats = pats if isinstance(pats, dict) else {}
    parts = [props[name]] if name in props else []
    for pat, sub in pats.items():
        hit = pattern_matches(pat, name)
        if hit is None:
            return None
        if hit:
            parts.append(sub)
    if not parts:
        return schema.get("additionalProperties", True)
    out: Any = parts[0]
    for p in parts[1:]:
        out = both(out, p)
    return out


def normalize_bounds(s: dict) -> dict:
    """Draft-4 boolean ``exclusiveMinimum``/``exclusiveMaximum`` in the numeric form (draft 6+)."""
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(s.get(flag), bool):
            s = dict(s)
            if s.pop(flag) and bound in s:
                s[flag] = s.pop(bound)
    return s


def _types(s: dict) -> set[str] | None:
    t = s.get("type")
    if t is None:
        return None
    return set(t) if isinstance(t, list) else {t}


def _with_integer(types: set[str]) -> set[str]:
    return types | {"integer"} if "number" in types else types


def _tighter(key: str, x: Any, y: Any) -> Any:
    try:
        return max(x, y) if key in _LOWER else min(x, y)
    except TypeError:
        return x


def _names(value: Any) -> list[str] | None:
    """A well-formed ``required`` (a list of property names), else None."""
    if isinstance(value, list) and all(isinstance(r, str) for r in value):
        return value
    return None


def required_names(s: dict) -> list[str]:
    """The names a schema's ``required`` lists; none for a malformed one (the builder reports it
    where it builds the object)."""
    return _names(s.get("required")) or []


def intersect(a: dict, b: dict) -> dict:
    """One flat schema meaning ``allOf [a, b]`` (both free of top-level ``$ref``/``allOf``)."""
    out = dict(a)
    rest: list[Any] = list(a.get("allOf", []))
    for key, vb in b.items():
        if key not in a:
            out[key] = vb
            continue
        va = a[key]
        if va is vb:
            continue
        if key == "type":
            ta, tb = _with_integer(_types(a) or set()), _with_integer(_types(b) or set())
            common = ta & tb
            if not common:
                raise Unsatisfiable(f"types {sorted(ta)} and {sorted(tb)} have nothing in common")
            out["type"] = sorted(common)
        elif key == "required":
            na, nb = _names(va), _names(vb)
            if na is not None and nb is not None:
                out[key] = list(dict.fromkeys(na + nb))
            else:  # a malformed one is kept, for the builder to report where it reads it
                out[key] = va if na is None else vb
        elif key in _LOWER or key in _UPPER:
            out[key] = _tighter(key, va, vb)
        elif key in ("enum", "const"):
            continue  # values are filtered against the whole original schema by the builder
        elif key in ("items", "additionalItems", "propertyNames") and not isinstance(va, list):
            out[key] = both(va, vb)
        elif key == "uniqueItems":
            out[key] = bool(va) or bool(vb)
        elif key in ("properties", "patternProperties", "additionalProperties"):
            continue  # merged below, together
        elif key in ("anyOf", "oneOf"):
            if va != vb:
                rest.append({key: vb})
        elif (key in ENFORCED or key in CHECKED_AFTER) and canonical(va) != canonical(vb):
            out.setdefault("_unenforced", []).append(
                key
            )  # a second pattern/format/...: checked after
    if any(k in b for k in ("properties", "patternProperties", "additionalProperties")) and any(
        k in a for k in ("properties", "patternProperties", "additionalProperties")
    ):
        names = list(dict.fromkeys([*(a.get("properties") or {}), *(b.get("properties") or {})]))
        props = {}
        for n in names:
            ma, mb = member_schema(a, n), member_schema(b, n)
            if ma is None or mb is None:
                out.setdefault("_unenforced", []).append("patternProperties")
                ma, mb = ma if ma is not None else True, mb if mb is not None else True
            props[n] = both(ma, mb)
        out["properties"] = props
        pa, pb = a.get("patternProperties") or {}, b.get("patternProperties") or {}
        if pa or pb:
            out["patternProperties"] = {
                p: both(pa.get(p, True), pb.get(p, True)) for p in {**pa, **pb}
            }
        if "additionalProperties" in a or "additionalProperties" in b:
            out["additionalProperties"] = both(
                a.get("additionalProperties", True), b.get("additionalProperties", True)
            )
    if "_unenforced" in b:
        out["_unenforced"] = list(out.get("_unenforced", [])) + list(b["_unenforced"])
    if rest:
        out["allOf"] = rest
    else:
        out.pop("allOf", None)
    return out
