"""JSON Schema from Python type hints, and back: turning validated JSON into the hinted types.

Supported: str, int, float, bool, None, Any, Literal, Enum, Optional / unions, list / tuple / set
(and their typing aliases), dict[str, X], nested dataclasses and TypedDicts, date / datetime / time
(as formatted strings), and Annotated[X, "description"]. Anything else is refused with the
parameter's name, so a function never gets a schema that silently admits the wrong thing.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import enum
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from agent.functions.docstrings import parse_docstring
from agent.functions.errors import FunctionDefinitionError

_NoneType = type(None)
_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_FORMATS = {dt.datetime: "date-time", dt.date: "date", dt.time: "time"}
_SEQUENCES = {
    list,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
    collections.abc.Collection,
}
_SETS = {set, frozenset, collections.abc.Set, collections.abc.MutableSet}
_MAPPINGS = {dict, collections.abc.Mapping, collections.abc.MutableMapping}


@dataclasses.dataclass
class Signature:
    """What ``function_schema`` learns from a callable."""

    description: str
    parameters: dict[str, Any]
    hints: dict[str, Any]


def function_schema(func: Callable[..., Any]) -> Signature:
    """The description and parameters schema of ``func`` from its signature and docstring."""
    name = getattr(func, "__name__", repr(func))
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise FunctionDefinitionError(f"cannot read the signature of {name}: {exc}") from exc
    hints = _hints(func, name)
    doc = parse_docstring(inspect.getdoc(func))
    properties: dict[str, Any] = {}
    required: list[str] = []
    kept: dict[str, Any] = {}
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind == param.POSITIONAL_ONLY:
            raise FunctionDefinitionError(
                f"{name}: parameter {pname!r} is positional-only; calls pass params by name, "
                "so make it a normal parameter"
            )
        hint = hints.get(pname, Any)
        where = f"{name}({pname})"
        prop = type_schema(hint, where)
        description = doc.params.get(pname) or prop.pop("description", None)
        if description:
            prop = {
                "description": description,
                **{k: v for k, v in prop.items() if k != "description"},
            }
        if param.default is param.empty:
            required.append(pname)
        else:
            default = _json_default(param.default)
            if default is not _MISSING:
                prop["default"] = default
        properties[pname] = prop
        kept[pname] = hint
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return Signature(doc.summary, schema, kept)


_MISSING = object()


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(
        v is None or isinstance(v, (str, bool, int, float)) for v in value
    ):
        return list(value)
    return _MISSING


def _hints(obj: Any, where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception as exc:  # NameError for unresolvable forward references, and friends
        raise FunctionDefinitionError(f"cannot resolve the type hints of {where}: {exc}") from exc


def type_schema(hint: Any, where: str, _stack: tuple = ()) -> dict[str, Any]:
    """The JSON Schema of one type hint; ``where`` names it in errors."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        inner = type_schema(args[0], where, _stack)
        notes = [a for a in args[1:] if isinstance(a, str)]
        return {"description": " ".join(notes), **inner} if notes else inner
    if hint is Any or hint is inspect.Parameter.empty or hint is object:
        return {}
    if hint is None or hint is _NoneType:
        return {"type": "null"}
    if hint in _PRIMITIVES:
        return {"type": _PRIMITIVES[hint]}
    if hint in _FORMATS:
        return {"type": "string", "format": _FORMATS[hint]}
    if origin is typing.Literal:
        values = [a.value if isinstance(a, enum.Enum) else a for a in args]
        return _enum_schema(values)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_schema([m.value for m in hint])
    if origin is typing.Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        return _union_schema(args, where, _stack)
    if hint in _SEQUENCES or origin in _SEQUENCES:
        out: dict[str, Any] = {"type": "array"}
        if args:
            out["items"] = type_schema(args[0], f"{where}[]", _stack)
        return out
    if hint in _SETS or origin in _SETS:
        out = {"type": "array", "uniqueItems": True}
        if args:
            out["items"] = type_schema(args[0], f"{where}[]", _stack)
        return out
    if hint is tuple or origin is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            out = {"type": "array"}
            if args:
                out["items"] = type_schema(args[0], f"{where}[]", _stack)
            return out
        items = [type_schema(a, f"{where}[{i}]", _stack) for i, a in enumerate(args)]
        return {
            "type": "array",
            "prefixItems": items,
            "items": False,
            "minItems": len(items),
            "maxItems": len(items),
        }
    if hint in _MAPPINGS or origin in _MAPPINGS:
        out = {"type": "object"}
        if args:
            if args[0] is not str:
                raise FunctionDefinitionError(
                    f"{where}: JSON object keys are strings; use dict[str, ...] not {hint!r}"
                )
            out["additionalProperties"] = type_schema(args[1], f"{where}{{}}", _stack)
        return out
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _record_schema(hint, where, _stack, _dataclass_fields(hint))
    if _is_typeddict(hint):
        req = getattr(hint, "__required_keys__", frozenset(_hints(hint, where)))
        return _record_schema(
            hint, where, _stack, [(k, k in req, _MISSING) for k in _hints(hint, where)]
        )
    raise FunctionDefinitionError(
        f"{where}: the type {hint!r} has no JSON Schema here; use str, int, float, bool, "
        "Literal, Enum, list, dict, a dataclass or a TypedDict"
    )


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"enum": list(values)}
    kinds = {type(v) for v in values}
    if len(kinds) == 1 and next(iter(kinds)) in _PRIMITIVES:
        out = {"type": _PRIMITIVES[next(iter(kinds))], **out}
    return out


def _union_schema(args: tuple, where: str, stack: tuple) -> dict[str, Any]:
    nullable = any(a is _NoneType for a in args)
    rest = [a for a in args if a is not _NoneType]
    schemas = [type_schema(a, where, stack) for a in rest]
    if len(schemas) == 1:
        only = schemas[0]
        if not nullable:
            return only
        if set(only) <= {"type", "format", "description"} and isinstance(only.get("type"), str):
            return {**only, "type": [only["type"], "null"]}
        if set(only) <= {"type", "enum"} and "enum" in only:
            out = {**only, "enum": only["enum"] + [None]}
            if "type" in out:
                out["type"] = [out["type"], "null"]
            return out
        return {"anyOf": [only, {"type": "null"}]}
    if nullable:
        schemas.append({"type": "null"})
    return {"anyOf": schemas}


def _dataclass_fields(cls: type) -> list[tuple[str, bool, Any]]:
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        default = f.default if f.default is not dataclasses.MISSING else _MISSING
        out.append((f.name, not has_default, default))
    return out


def _is_typeddict(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__total__")


def _record_schema(
    cls: type, where: str, stack: tuple, fields: list[tuple[str, bool, Any]]
) -> dict[str, Any]:
    if cls in stack:
        raise FunctionDefinitionError(
            f"{where}: {cls.__name__} contains itself; recursive types are not supported"
        )
    hints = _hints(cls, cls.__name__)
    doc = parse_docstring(
        inspect.getdoc(cls)
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "(")
        else None
    )  # skip the dataclass-generated signature docstring
    metadata: dict[str, Mapping[str, Any]] = (
        {f.name: f.metadata for f in dataclasses.fields(cls)}
        if dataclasses.is_dataclass(cls)
        else {}
    )
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, is_required, default in fields:
        prop = type_schema(hints.get(name, Any), f"{where}.{name}", stack + (cls,))
        description = (
            metadata.get(name, {}).get("description")
            or doc.params.get(name)
            or prop.pop("description", None)
        )
        if description:
            prop = {
                "description": description,
                **{k: v for k, v in prop.items() if k != "description"},
            }
        if is_required:
            required.append(name)
        elif default is not _MISSING and _json_default(default) is not _MISSING:
            prop["default"] = _json_default(default)
        properties[name] = prop
    out: dict[str, Any] = {"type": "object"}
    if doc.summary:
        out["description"] = doc.summary
    out["properties"] = properties
    if required:
        out["required"] = required
    return out


def to_python(value: Any, hint: Any) -> Any:
    """Turn validated JSON ``value`` into ``hint``'s type (Enum members, dataclass instances,
    tuples, sets, dates); values already of a fitting shape pass through."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return to_python(value, args[0])
    if value is None:
        return None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if origin is typing.Literal:
        for a in args:
            if isinstance(a, enum.Enum) and a.value == value:
                return a
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in _FORMATS and isinstance(value, str):
        return _FROM_ISO[hint](value)
    if origin is typing.Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        return _union_to_python(value, [a for a in args if a is not _NoneType])
    if dataclasses.is_dataclass(hint) and isinstance(hint, type) and isinstance(value, Mapping):
        hints = typing.get_type_hints(hint)
        return hint(**{k: to_python(v, hints.get(k, Any)) for k, v in value.items()})
    if _is_typeddict(hint) and isinstance(value, Mapping):
        hints = typing.get_type_hints(hint)
        return {k: to_python(v, hints.get(k, Any)) for k, v in value.items()}
    if isinstance(value, list):
        if hint is tuple or origin is tuple:
            if args and not (len(args) == 2 and args[1] is Ellipsis):
                return tuple(to_python(v, a) for v, a in zip(value, args, strict=False))
            return tuple(to_python(v, args[0] if args else Any) for v in value)
        item = args[0] if args else Any
        converted = [to_python(v, item) for v in value]
        if hint in _SETS or origin in _SETS:
            return (
                frozenset(converted)
                if (hint is frozenset or origin is frozenset)
                else set(converted)
            )
        return converted
    if isinstance(value, dict) and (hint in _MAPPINGS or origin in _MAPPINGS) and len(args) == 2:
        return {k: to_python(v, args[1]) for k, v in value.items()}
    return value


def _from_iso_datetime(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


def _from_iso_time(text: str) -> dt.time:
    return dt.time.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


_FROM_ISO: dict[Any, Callable[[str], Any]] = {
    dt.datetime: _from_iso_datetime,
    dt.date: dt.date.fromisoformat,
    dt.time: _from_iso_time,
}


def _union_to_python(value: Any, options: list[Any]) -> Any:
    """The first option whose schema the value satisfies decides the conversion."""
    from jsonschema import Draft202012Validator

    for option in options:
        try:
            if Draft202012Validator(type_schema(option, "union")).is_valid(value):
                return to_python(value, option)
        except FunctionDefinitionError:
            continue
    return value
