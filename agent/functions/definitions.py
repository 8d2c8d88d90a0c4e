"""Function definitions from data: OpenAI ``tools`` lists and YAML / JSON files.

Accepted entries (in a list, under a ``functions:`` or ``tools:`` key, or as a name -> entry map):

- OpenAI tools: ``{"type": "function", "function": {"name", "description", "parameters"}}``
  (also the legacy ``functions`` entries without the wrapper);
- ``{name, description, parameters: <JSON Schema>}``: kept strict, exactly as written;
- the shorthand of the model card and of airoboros' ``agent.txt`` training prompt: ``params:`` (or
  ``parameters:`` that is not a JSON Schema) mapping each parameter to its description, groups of
  parameters nested as mappings, ``{action: "text", filters: {keyword: "text"}}``. Mapping-valued
  keys written next to ``params`` (``agent.txt``'s ``date_range:``, one indent short) are
  parameter groups too.

Shorthand rule: a leaf is optional and takes whatever scalar the model writes (a string, number or
boolean; null; or a list of those), because a description says nothing about type or presence --
the training data's own answers leave out leaves that do not apply. A leaf given as a JSON Schema
(``count: {type: integer}``) keeps its type, and a group may list ``required: [leaf, ...]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from agent.functions.errors import FunctionDefinitionError
from agent.functions.yamlio import load_core

# Keys of a definition entry that are not parameters (OpenAI's ``strict``, documentation fields).
_ENTRY_KEYS = frozenset(
    {"name", "description", "parameters", "params", "type", "function", "strict"}
    | {"returns", "return", "response", "output", "examples", "example"}
)
_JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "null", "array", "object"})
# Keywords that only a JSON Schema (never a shorthand description map) has at its top level.
_SCHEMA_MARKERS = ("$schema", "$ref", "$defs", "anyOf", "oneOf", "allOf", "properties")
_SCALARS = ["string", "number", "boolean", "null"]


def read_definitions_file(path: str | Path) -> Any:
    """The parsed data of a ``.yaml``/``.yml``/``.json`` definitions file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FunctionDefinitionError(f"cannot read function definitions {path}: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise FunctionDefinitionError(f"{path} is not valid JSON: {exc}") from exc
    try:
        return load_core(text)
    except yaml.YAMLError as exc:
        raise FunctionDefinitionError(f"{path} is not valid YAML: {exc}") from exc


def iter_definitions(data: Any, where: str = "definitions") -> Iterator[tuple[str, str, Any]]:
    """``(name, description, parameters schema)`` for each entry in ``data``."""
    if isinstance(data, Mapping) and ("functions" in data or "tools" in data):
        data = data.get("functions", data.get("tools"))
    if isinstance(data, Mapping):
        entries = []
        for name, entry in data.items():
            if not isinstance(entry, Mapping):
                raise FunctionDefinitionError(
                    f"{where}: the entry of {name!r} must be a mapping with a description and "
                    "params or parameters"
                )
            entries.append({"name": name, **entry})
        data = entries
    if not isinstance(data, list):
        raise FunctionDefinitionError(
            f"{where}: expected a list of functions (or a 'functions:' key), got "
            f"{type(data).__name__}"
        )
    for i, entry in enumerate(data):
        yield _one(entry, f"{where}[{i}]")


def _one(entry: Any, where: str) -> tuple[str, str, Any]:
    if not isinstance(entry, Mapping):
        raise FunctionDefinitionError(
            f"{where}: each function must be a mapping, got {type(entry).__name__}"
        )
    if entry.get("type") == "function" or isinstance(entry.get("function"), Mapping):
        inner = entry.get("function")
        if not isinstance(inner, Mapping):
            raise FunctionDefinitionError(
                f"{where}: a tool of type 'function' needs a "
                "'function' object with name and parameters"
            )
        entry = inner
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise FunctionDefinitionError(f"{where}: missing function name ('name: ...')")
    description = entry.get("description") or ""
    if not isinstance(description, str):
        raise FunctionDefinitionError(f"{where} ({name}): description must be text")
    key = "parameters" if "parameters" in entry else "params" if "params" in entry else None
    params = entry[key] if key else None
    if key and (is_json_schema(params) or (key == "parameters" and not _shorthand_like(params))):
        return name, description, params  # a JSON Schema: validated strictly when registered
    groups = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS and isinstance(v, Mapping)}
    if key is None and not groups:
        return name, description, None
    here = f"{where} ({name}).{key or 'params'}"
    if params is not None and not isinstance(params, Mapping):
        raise FunctionDefinitionError(
            f"{here}: params must map each parameter name to its description"
        )
    merged = dict(params or {})
    for group, value in groups.items():
        if group in merged:
            raise FunctionDefinitionError(
                f"{where} ({name}): {group!r} is both a parameter and a key next to {key}; keep one"
            )
        merged[group] = value
    return name, description, shorthand_schema(merged, here)


def is_json_schema(value: Any) -> bool:
    """True when ``value`` is a JSON Schema rather than a shorthand map of descriptions: it has
    a JSON ``type`` (``type: The file type`` is a description) or a schema-only keyword."""
    if not isinstance(value, Mapping):
        return False
    t = value.get("type")
    if isinstance(t, str) and t in _JSON_TYPES:
        return True
    if isinstance(t, list) and t and all(isinstance(x, str) and x in _JSON_TYPES for x in t):
        return True
    return any(_marker(k, value[k]) for k in _SCHEMA_MARKERS if k in value)


def _marker(key: str, value: Any) -> bool:
    """A schema keyword with a value of its kind (``properties: Which ones`` is a parameter)."""
    if key in ("$schema", "$ref"):
        return isinstance(value, str)
    if key in ("anyOf", "oneOf", "allOf"):
        return isinstance(value, list)
    if key == "properties":
        return isinstance(value, Mapping) and all(
            isinstance(v, (Mapping, bool)) for v in value.values()
        )
    return isinstance(value, Mapping)


def _shorthand_like(value: Any) -> bool:
    """A non-empty mapping of descriptions (text, null or nested mappings)."""
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(v is None or isinstance(v, (str, Mapping, list)) for v in value.values())
    )


def shorthand_leaf(description: str | None) -> dict[str, Any]:
    """The schema of one shorthand leaf: any scalar, or a list of scalars, described."""
    return {
        "type": [*_SCALARS, "array"],
        "items": {"type": list(_SCALARS)},
        "description": description or "",
    }


def shorthand_schema(params: Any, where: str) -> dict[str, Any]:
    """The JSON Schema of shorthand params: optional leaves of any scalar, nested groups."""
    if params is None:
        return {"type": "object", "properties": {}}
    if not isinstance(params, Mapping):
        raise FunctionDefinitionError(
            f"{where}: params must map each parameter name to its description"
        )
    properties: dict[str, Any] = {}
    required = params.get("required") if isinstance(params.get("required"), list) else None
    for key, value in params.items():
        if key == "required" and required is not None:
            continue
        if is_json_schema(value):
            properties[str(key)] = dict(value)  # the definition says what it takes
        elif isinstance(value, Mapping):
            properties[str(key)] = shorthand_schema(value, f"{where}.{key}")
        elif isinstance(value, str) or value is None:
            properties[str(key)] = shorthand_leaf(value)
        else:
            raise FunctionDefinitionError(
                f"{where}.{key}: expected a description (text) or nested params, got "
                f"{type(value).__name__} {value!r}; give the leaf a schema ({key}: {{type: "
                "integer}) or use 'parameters:' with a JSON Schema for typed parameters"
            )
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required is not None:
        missing = [r for r in required if r not in properties]
        if missing:
            raise FunctionDefinitionError(
                f"{where}.required names {missing!r}, which are not parameters here; "
                f"parameters: {', '.join(map(str, properties)) or '(none)'}"
            )
        schema["required"] = [str(r) for r in required]
    return schema
