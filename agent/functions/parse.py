"""``parse_function_call``: from a model's answer to a validated ``FunctionCall``.

Every candidate snippet (see ``extract``) is read as JSON — as written, then repaired — or as
YAML (every scalar kept as written, then typed by the schema), and checked against the registry.
The first candidate that is a valid call wins. Otherwise the error of the candidate that got
furthest is raised: ``invalid_params`` beats ``unknown_function`` beats ``invalid_syntax``; an
answer with nothing that looks like a call is ``no_call``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from agent.functions.call import FunctionCall
from agent.functions.coerce import coerce
from agent.functions.errors import CallError, invalid_params
from agent.functions.extract import Snippet, find_snippets
from agent.functions.repair import loads_json, quote_hash_values, repair_json, repair_yaml
from agent.functions.spec import FunctionLookup
from agent.functions.validate import param_errors
from agent.functions.yamlio import PlainStr, is_core_null, load_plain, plain_to_str

NAME_KEYS = ("function", "function_name")
PARAMS_KEYS = ("params", "parameters", "arguments", "args")
WRAPPER_KEYS = ("function_call", "tool_call", "tool_calls", "call")
_MENTIONS_CALL = re.compile(r"function", re.I)
_UNQUOTED_KEY = re.compile(r"[{,]\s*[A-Za-z_][\w-]*\s*:")

# how far a candidate got; the furthest failure is the one reported
NO_CALL, NOT_A_CALL, BAD_SYNTAX, UNKNOWN, BAD_PARAMS = range(5)


@dataclass
class _Decoded:
    """One reading of a snippet: YAML readings hold text scalars that the schema types later."""

    data: Any
    format: str
    repairs: list[str] = field(default_factory=list)
    lenient: bool = False  # a long shot: its failure is not worth reporting


class _Failure(Exception):
    def __init__(self, rank: int, error: CallError):
        super().__init__(str(error))
        self.rank = rank
        self.error = error


def parse_function_call(
    text: str, registry: FunctionLookup, *, format: str | None = None
) -> FunctionCall:
    """The call in ``text`` (plain, fenced or amid prose; JSON or YAML), validated against
    ``registry``, or ``FunctionCallError`` (``CallError``) with kind no_call, invalid_syntax,
    unknown_function or invalid_params. ``format`` ("json"/"yaml") only breaks ties between
    equally good candidates; both formats are always accepted."""
    if not isinstance(text, str):
        raise CallError(
            "no_call", f"expected the model's answer as text, got {type(text).__name__}"
        )
    if not text.strip():
        raise CallError(
            "no_call",
            "the answer is empty; expected a function call such as "
            '{"function": "<name>", "params": {...}}',
            raw=text,
        )
    snippets = find_snippets(text)
    if format:
        preferred = "json" if format.lower() == "json" else "yaml"
        snippets.sort(key=lambda s: s.kind != preferred)  # stable: keeps order within a kind
    best: _Failure | None = None
    for snippet in snippets:
        try:
            return _parse_snippet(snippet, text, registry)
        except _Failure as failure:
            if best is None or failure.rank > best.rank:
                best = failure
        except RecursionError:
            deep = _Failure(
                BAD_SYNTAX,
                CallError(
                    "invalid_syntax",
                    f"the call at line {_line(text, snippet.start)} is nested too deeply to read",
                    raw=text,
                ),
            )
            if best is None or deep.rank > best.rank:
                best = deep
    if best is None or best.rank == NO_CALL:
        raise CallError(
            "no_call",
            "the answer contains no function call; expected a JSON object such as "
            '{"function": "<name>", "params": {...}} (or the same in YAML). '
            f"The answer began: {_preview(text)}",
            raw=text,
        )
    raise best.error


def _parse_snippet(snippet: Snippet, text: str, registry: FunctionLookup) -> FunctionCall:
    """The call in one snippet; when it has several readings the first valid one wins."""
    best: _Failure | None = None
    readings = _decodings(snippet, text)
    while True:
        try:
            decoded = next(readings)
        except StopIteration:
            break
        except _Failure as failure:  # no (further) reading: the snippet's syntax problem
            best = _further(best, failure)
            break
        try:
            return _call_from(decoded, snippet, text, registry)
        except _Failure as failure:
            if not decoded.lenient:  # a long-shot reading failing says nothing new
                best = _further(best, failure)
    assert best is not None  # _decodings yields a strict reading or raises
    raise best


def _further(best: _Failure | None, failure: _Failure) -> _Failure:
    return failure if best is None or failure.rank > best.rank else best


def _call_from(
    decoded: _Decoded, snippet: Snippet, text: str, registry: FunctionLookup
) -> FunctionCall:
    name, params = _split(decoded.data, snippet, text)
    spec = registry.get(name)
    if spec is None:
        raise _Failure(UNKNOWN, registry.unknown(name, raw=text))
    params = plain_to_str(coerce(params, spec.parameters))
    if not isinstance(params, dict):
        raise _Failure(
            BAD_PARAMS,
            invalid_params(
                spec.name,
                [("$", f"params must be an object of parameter values, got {_kind(params)}")],
                raw=text,
            ),
        )
    errors = param_errors(params, spec.parameters)
    if errors:
        raise _Failure(BAD_PARAMS, invalid_params(spec.name, errors, raw=text))
    return FunctionCall(
        spec.name,
        params,
        format=decoded.format,
        raw=text,
        repairs=tuple(decoded.repairs),
        registry=registry,
    )


def _decodings(snippet: Snippet, text: str) -> Iterator[_Decoded]:
    """The readings of a snippet, strictest first; raises ``_Failure`` if there is none."""
    body = snippet.text.strip(" \t\r\n")  # not str.strip(): a value may be a lone NBSP
    if snippet.kind == "yaml":
        yield from _decode_yaml(body, snippet, text)
        return
    try:
        yield _Decoded(loads_json(body), "json")
        return
    except ValueError as exc:
        first_error = exc
    repaired, repairs = repair_json(body)
    try:
        yield _Decoded(
            loads_json(repaired, strict=False), "json", repairs or ["control characters in strings"]
        )
        return
    except ValueError:
        pass
    # YAML flow style: {function: f, params: {a: b}} is YAML as written; JSON with unquoted
    # keys or values (or leading zeros...) may read as YAML too. With unquoted keys that is the
    # intended reading; otherwise it is a long shot, used only if it gives a valid call.
    unquoted_keys = bool(_UNQUOTED_KEY.search(body))
    found = False
    for candidate, fmt, fixes in (
        (body, "yaml", []),
        (repaired, "json", repairs + ["unquoted keys or values"]),
    ):
        try:
            data = load_plain(candidate)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and _name_key(data) is not None:
            if not unquoted_keys and _has_empty_value(data):
                continue  # {"a": } is a missing value, not the empty string YAML reads
            found = True
            yield _Decoded(data, fmt, fixes, lenient=not unquoted_keys)
    if found and unquoted_keys:
        return
    rank = BAD_SYNTAX if _MENTIONS_CALL.search(body) else NO_CALL
    where = f"line {_line(text, snippet.start)}"
    if not snippet.closed:
        raise _Failure(
            rank,
            CallError(
                "invalid_syntax",
                f"the JSON object starting at {where} is never closed; the "
                "answer looks cut off (allow more tokens) or has unbalanced braces",
                raw=text,
            ),
        )
    raise _Failure(
        rank,
        CallError(
            "invalid_syntax",
            f"the JSON object starting at {where} is not valid JSON "
            f"({_json_problem(first_error)}), even after repairing quotes, trailing commas and "
            "Python literals",
            raw=text,
        ),
    )


def _decode_yaml(body: str, snippet: Snippet, text: str) -> Iterator[_Decoded]:
    """YAML readings: with `` #`` kept as text first (``issue #42``), then as a comment."""
    hashed = quote_hash_values(body)
    if hashed is not None:
        try:
            yield _Decoded(load_plain(hashed), "yaml", ["unquoted special characters"])
        except yaml.YAMLError:
            pass
    try:
        yield _Decoded(load_plain(body), "yaml")
        return
    except yaml.YAMLError as exc:
        first_yaml: yaml.YAMLError = exc
    repaired, repairs = repair_yaml(body)
    if repairs:
        try:
            yield _Decoded(load_plain(repaired), "yaml", repairs)
            return
        except yaml.YAMLError:
            pass
    raise _Failure(
        BAD_SYNTAX,
        CallError(
            "invalid_syntax",
            f"the YAML call starting at line {_line(text, snippet.start)} cannot be "
            f"read: {_yaml_problem(first_yaml)}",
            raw=text,
        ),
    )


def _split(data: Any, snippet: Snippet, text: str) -> tuple[str, Any]:
    """(function name, params) from a decoded call object."""
    where = f"line {_line(text, snippet.start)}"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # a list of calls: the first is the one to make
    if not isinstance(data, dict):
        raise _Failure(
            NOT_A_CALL,
            CallError(
                "invalid_syntax",
                f'expected an object with "function" and "params" at {where}, found {_kind(data)}',
                raw=text,
            ),
        )
    wrapped = _wrapped_call(data)
    if wrapped is not None:
        data = wrapped
    params_key = _params_key(data)
    name_key = _name_key(data)
    if name_key is None:
        # with params but no function it is a call missing its name; else just some object
        rank = NOT_A_CALL if params_key is not None else NO_CALL
        raise _Failure(
            rank,
            CallError(
                "invalid_syntax",
                f'the object at {where} has no "function" key (keys: '
                f"{', '.join(map(str, list(data)[:8])) or 'none'}); a call names its function in "
                '"function" and its arguments in "params"',
                raw=text,
            ),
        )
    name = data[name_key]
    params = data.get(params_key) if params_key is not None else None
    if isinstance(name, Mapping) and isinstance(name.get("name"), str):
        # OpenAI shape nested in ours: {"function": {"name": ..., "arguments": ...}}
        inner_key = next((k for k in PARAMS_KEYS if k in name), None)
        if params is None and inner_key:
            params = name[inner_key]
        name = name["name"]
    if not isinstance(name, str) or not name.strip():
        raise _Failure(
            BAD_SYNTAX,
            CallError(
                "invalid_syntax",
                f'"function" at {where} must be a function\'s name, found {_kind(name)}',
                raw=text,
            ),
        )
    if params is None or (isinstance(params, PlainStr) and is_core_null(params)):
        params = {}  # "params:" with nothing after it
    elif isinstance(params, str) and params.strip().startswith("{"):
        try:  # arguments as a JSON string, the way the OpenAI API sends them
            params = loads_json(params)
        except ValueError:
            pass
    name = str(name).strip()
    if name.endswith("()"):
        name = name[:-2].rstrip()  # "file_analytics()": the name written as a call
    return name, params


def _has_empty_value(data: Any) -> bool:
    if isinstance(data, PlainStr):
        return data == ""
    if isinstance(data, dict):
        return any(_has_empty_value(v) for v in data.values())
    if isinstance(data, list):
        return any(_has_empty_value(v) for v in data)
    return False


def _keys(data: dict) -> dict[str, Any]:
    """Lower-cased keys to the keys as written ("Function", "PARAMS" are common drift)."""
    return {str(k).strip().lower(): k for k in reversed(list(data))}


def _params_key(data: dict) -> Any:
    keys = _keys(data)
    return next((keys[k] for k in PARAMS_KEYS if k in keys), None)


def _name_key(data: dict) -> Any:
    keys = _keys(data)
    found = next((keys[k] for k in NAME_KEYS if k in keys), None)
    if found is None and "name" in keys and _params_key(data) is not None:
        found = keys["name"]  # OpenAI's shape: {"name": ..., "arguments": ...}
    return found


def _wrapped_call(data: dict) -> dict | None:
    """The call inside OpenAI-style wrappers: {"function_call": {...}}, {"tool_calls": [...]}."""
    if _name_key(data) is not None:
        return None
    keys = _keys(data)
    for wrapper in WRAPPER_KEYS:
        inner = data.get(keys[wrapper]) if wrapper in keys else None
        if isinstance(inner, list) and inner and isinstance(inner[0], dict):
            inner = inner[0]
        if isinstance(inner, dict):
            nested: dict = inner["function"] if isinstance(inner.get("function"), dict) else inner
            if _name_key(nested) is not None:
                return nested
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {_preview(value, 40)}"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return f"a {type(value).__name__}"


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _preview(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at its line {exc.lineno} column {exc.colno}"
    return str(exc)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at its line {mark.line + 1} column {mark.column + 1}" if mark else problem
