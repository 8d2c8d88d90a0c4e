"""Params validation with jsonschema (Draft 2020-12, formats checked)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from agent.functions.errors import FunctionDefinitionError


def check_parameters_schema(schema: Any, where: str) -> dict[str, Any]:
    """The params schema, made an object schema, or ``FunctionDefinitionError`` saying why not."""
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, Mapping):
        raise FunctionDefinitionError(
            f"{where}: parameters must be a JSON Schema object, got {type(schema).__name__}"
        )
    schema = dict(schema)
    kind = schema.get("type", "object" if "properties" in schema or not schema else None)
    if kind != "object":
        raise FunctionDefinitionError(
            f'{where}: parameters must be an object schema ("type": "object"), got type {kind!r}'
        )
    schema.setdefault("type", "object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise FunctionDefinitionError(
            f"{where}: the parameters schema is not valid JSON Schema at {path}: {exc.message}"
        ) from exc
    return schema


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(
        json.loads(schema_json), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def param_errors(params: Any, schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every violation as ``(json_path, message)``, paths into params (``$`` = params), sorted."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    found: list[tuple[str, str]] = []
    for error in validator.iter_errors(params):
        found.append((error.json_path, _message(error)))
    return sorted(set(found), key=lambda e: (_path_key(e[0]), e[1]))


def _message(error: ValidationError) -> str:
    """jsonschema's message, with the closest sub-error for anyOf/oneOf (its own says little)."""
    if error.context and error.validator in ("anyOf", "oneOf"):
        best = min(error.context, key=lambda e: (len(e.path), e.message))
        return f"{error.message} (closest: {best.message})"
    return error.message


def _path_key(path: str) -> tuple[int, str]:
    return (path.count(".") + path.count("["), path)
