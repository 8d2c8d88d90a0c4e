"""Function definitions from data: OpenAI ``tools`` lists and YAML / JSON files.

Accepted entries (in a list, under a ``functions:`` or ``tools:`` key, or as a name -> entry map):

- OpenAI tools: ``{"type": "function", "function": {"name", "description", "parameters"}}``
  (also the legacy ``functions`` entries without the wrapper);
- ``{name, description, parameters: <JSON Schema>}``;
- the model card's own shorthand, ``{name, description, params: {action: "text", filters:
  {keyword: "text"}}}``: every leaf is a required string parameter described by its text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from agent.functions.errors import FunctionDefinitionError
from agent.functions.yamlio import load_core


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
    if "parameters" in entry:
        return name, description, entry["parameters"]
    if "params" in entry:
        params = entry["params"]
        if isinstance(params, Mapping) and params.get("type") == "object":
            return name, description, params
        return name, description, shorthand_schema(params, f"{where} ({name}).params")
    return name, description, None


def shorthand_schema(params: Any, where: str) -> dict[str, Any]:
    """The JSON Schema of card-style params: text leaves are required string parameters."""
    if params is None:
        return {"type": "object", "properties": {}}
    if not isinstance(params, Mapping):
        raise FunctionDefinitionError(
            f"{where}: params must map each parameter name to its description"
        )
    properties: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            properties[str(key)] = shorthand_schema(value, f"{where}.{key}")
        elif isinstance(value, str) or value is None:
            properties[str(key)] = {"type": "string", "description": value or ""}
        else:
            raise FunctionDefinitionError(
                f"{where}.{key}: expected a description (text) or nested params, got "
                f"{type(value).__name__}; use 'parameters:' with a JSON Schema for other types"
            )
    return {"type": "object", "properties": properties, "required": list(properties)}
