"""Schema-guided typing of parsed params.

YAML output arrives with every scalar as a string (see ``yamlio``); here the function's JSON Schema
decides what each unquoted scalar means. A value the schema declares a string stays exactly the
text the model wrote (``NO``, ``on``, ``1:20``, ``012``); a value declared integer/number/boolean/
null is read as one when its text is one; untyped values follow the YAML 1.2 core schema.
JSON output is already typed: only integral floats where the schema wants an integer become ints.
Whatever cannot be read as the schema wants is left alone, for validation to report with its path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator

from agent.functions.yamlio import (
    PlainStr,
    core_float,
    core_int,
    is_core_null,
    resolve_core,
)

_TRUE = {"true", "yes", "on", "y"}
_FALSE = {"false", "no", "off", "n"}
_MAX_DEPTH = 64  # schemas deeper than this are followed no further (recursive $refs)


def coerce(value: Any, schema: Any, root: Mapping[str, Any] | None = None) -> Any:
    """``value`` with unquoted scalars typed as ``schema`` (a JSON Schema, maybe with $refs into
    ``root``) declares them."""
    return _Coercer(root if root is not None else (schema if isinstance(schema, dict) else {})).run(
        value, schema, 0
    )


class _Coercer:
    def __init__(self, root: Mapping[str, Any]):
        self.root = root
        self._validator = Draft202012Validator(root if isinstance(root, dict) else {})

    def resolve(self, schema: Any, depth: int) -> Any:
        """Follow local ``$ref``s ("#/$defs/x"); unknown refs resolve to the empty schema."""
        while (
            isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and depth < _MAX_DEPTH
        ):
            ref = schema["$ref"]
            if not ref.startswith("#"):
                return {}
            target: Any = self.root
            for raw in [p for p in ref[1:].split("/") if p]:
                part = raw.replace("~1", "/").replace("~0", "~")
                if isinstance(target, dict) and part in target:
                    target = target[part]
                else:
                    return {}
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, dict) and rest else target
            depth += 1
        return schema

    def valid(self, value: Any, schema: Any) -> bool:
        try:
            return self._validator.evolve(schema=schema).is_valid(value)
        except Exception:  # noqa: BLE001 -- a broken sub-schema cannot be chosen, not a crash
            return False

    def run(self, value: Any, schema: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH or not isinstance(schema, dict):
            return value
        schema = self.resolve(schema, depth)
        if not isinstance(schema, dict):
            return value
        if isinstance(value, PlainStr):
            return self.scalar(value, schema, depth)
        for sub in schema.get("allOf", ()) or ():
            value = self.run(value, sub, depth + 1)
        branches = list(schema.get("anyOf", ()) or ()) + list(schema.get("oneOf", ()) or ())
        if branches and isinstance(value, (dict, list)):
            value = self.choose(value, branches, depth)
        if isinstance(value, dict):
            return self.mapping(value, schema, depth)
        if isinstance(value, list):
            return self.sequence(value, schema, depth)
        if isinstance(value, float) and value.is_integer():
            types = self.types(schema, depth)
            if "integer" in types and "number" not in types:
                return int(value)
        return value

    def choose(self, value: Any, branches: list, depth: int) -> Any:
        """Take the first branch under which the value validates, else leave it as it is."""
        for branch in branches:
            candidate = self.run(value, branch, depth + 1)
            if self.valid(candidate, branch):
                return candidate
        return value

    def mapping(self, value: dict, schema: dict, depth: int) -> dict:
        props: dict = schema["properties"] if isinstance(schema.get("properties"), dict) else {}
        patterns: dict = (
            schema["patternProperties"] if isinstance(schema.get("patternProperties"), dict) else {}
        )
        extra = schema.get("additionalProperties", {})
        out = {}
        for key, item in value.items():
            if key in props:
                out[key] = self.run(item, props[key], depth + 1)
                continue
            matched = [s for p, s in patterns.items() if _search(p, key)]
            if matched:
                typed = item
                for sub in matched:
                    typed = self.run(typed, sub, depth + 1)
                out[key] = typed
            else:
                out[key] = self.run(item, extra, depth + 1)
        return out

    def sequence(self, value: list, schema: dict, depth: int) -> list:
        prefix: list = schema["prefixItems"] if isinstance(schema.get("prefixItems"), list) else []
        items = schema.get("items", {})
        return [
            self.run(v, prefix[i] if i < len(prefix) else items, depth + 1)
            for i, v in enumerate(value)
        ]

    def types(self, schema: Any, depth: int) -> set[str]:
        """Every JSON type a schema (with its combinators) admits; empty means unconstrained."""
        schema = self.resolve(schema, depth)
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return set()
        found: set[str] = set()
        t = schema.get("type")
        if isinstance(t, str):
            found.add(t)
        elif isinstance(t, list):
            found.update(x for x in t if isinstance(x, str))
        for key in ("enum",):
            if isinstance(schema.get(key), list):
                found.update(_json_type(v) for v in schema[key])
        if "const" in schema:
            found.add(_json_type(schema["const"]))
        for key in ("anyOf", "oneOf"):
            for sub in schema.get(key, ()) or ():
                sub_types = self.types(sub, depth + 1)
                if not sub_types:
                    return set()  # one branch admits anything
                found |= sub_types
        for sub in schema.get("allOf", ()) or ():
            found |= self.types(sub, depth + 1)
        return found

    def scalar(self, text: PlainStr, schema: dict, depth: int) -> Any:
        types = self.types(schema, depth)
        if not types:
            return resolve_core(text)
        if "null" in types and is_core_null(text):
            return None  # a nullable value written as null, ~ or nothing
        if "string" in types:
            return text  # the schema wants text: keep exactly what the model wrote
        for candidate in _readings(text, types):
            return candidate
        for constant in _constants(schema):
            if not isinstance(constant, str) and _as_text(constant) == text:
                return constant
        return text


def _readings(text: str, types: set[str]) -> Iterable[Any]:
    """The values ``text`` can denote among ``types``, most specific first."""
    stripped = text.strip()
    if "null" in types and (is_core_null(stripped) or stripped == "None"):
        yield None
    if "boolean" in types:
        low = stripped.lower()
        if low in _TRUE:
            yield True
        elif low in _FALSE:
            yield False
    if "integer" in types or "number" in types:
        i = core_int(stripped)
        if i is not None:
            yield i
        f = core_float(stripped)
        if f is not None:
            if "number" in types:
                yield f
            elif f.is_integer():
                yield int(f)


def _constants(schema: dict) -> list:
    values = list(schema.get("enum", ()) or ()) if isinstance(schema.get("enum"), list) else []
    if "const" in schema:
        values.append(schema["const"])
    return values


def _as_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _search(pattern: str, key: str) -> bool:
    import re

    try:
        return re.search(pattern, key) is not None
    except re.error:
        return False
