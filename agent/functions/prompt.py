"""The Airoboros m2.0 function-calling prompt, byte for byte as the model card shows it.

    As an AI assistant, please select ... Provide your response in JSON format.
    <blank line>
    Input: <user input>
    <blank line>
    Available functions:
    file_analytics:
      description: This tool performs various operations on a text file.
      params:
        action: The operation we want to perform on the data, such as ...
        filters:
          keyword: The word or phrase we want to search for.

Object parameters with properties nest their children two spaces deeper, as ``filters`` does in
the card; every other parameter is one ``name: description`` line. The body is wrapped in the
chat template (``agent.llm.prompts.chat_prompt``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from agent.functions.docstrings import fold
from agent.llm.prompts import SYSTEM_PROMPT, Turn, chat_prompt

FORMATS = ("json", "yaml")
INSTRUCTION = (
    "As an AI assistant, please select the most suitable function and parameters from "
    "the list of available functions below, based on the user's input. Provide your "
    "response in {fmt} format."
)
MAX_NESTING = 8  # deeper objects are described on one line (a prompt, not a schema dump)


def check_format(fmt: str) -> str:
    """The normalised format name, or ValueError naming the choices."""
    low = (fmt or "").lower()
    if low == "yml":
        low = "yaml"
    if low not in FORMATS:
        raise ValueError(f"format must be 'json' or 'yaml', not {fmt!r}")
    return low


def describe_function(name: str, description: str, parameters: Mapping[str, Any]) -> str:
    """One function's entry of the "Available functions:" list."""
    lines = [f"{name}:", f"  description: {fold(description)}"]
    props = _properties(parameters, parameters)
    if props:
        lines.append("  params:")
        _describe_props(props, parameters, 4, lines, 0)
    return "\n".join(lines)


def function_prompt_body(
    user_input: str, functions: Iterable[tuple[str, str, Mapping[str, Any]]], fmt: str = "json"
) -> str:
    """The user message: instruction, input and the list of available functions."""
    listing = "\n".join(describe_function(n, d, p) for n, d, p in functions)
    instruction = INSTRUCTION.format(fmt=check_format(fmt).upper())
    return f"{instruction}\n\nInput: {user_input.strip()}\n\nAvailable functions:\n{listing}"


def function_prompt(
    user_input: str,
    functions: Iterable[tuple[str, str, Mapping[str, Any]]],
    fmt: str = "json",
    system: str = SYSTEM_PROMPT,
) -> str:
    """The whole prompt: the body inside the Airoboros chat template."""
    return chat_prompt(function_prompt_body(user_input, functions, fmt), system=system)


def correction_prompt(
    body: str, bad_output: str, problem: str, fmt: str = "json", system: str = SYSTEM_PROMPT
) -> str:
    """A follow-up turn telling the model what was wrong with its answer, to answer again."""
    fmt = check_format(fmt)
    shape = (
        '{"function": "<name>", "params": {...}}'
        if fmt == "json"
        else "function: <name>\nparams:\n  <param>: <value>"
    )
    message = (
        f"Your response could not be used: {problem}\n"
        f"Please respond again in {fmt.upper()} format with only the function call, "
        f"shaped like:\n{shape}\n"
        "using one of the available functions listed above and its params."
    )
    return chat_prompt(message, history=[Turn(body, _clip(bad_output))], system=system)


def _clip(text: str, limit: int = 2000) -> str:
    text = text.strip() or "(empty response)"
    return text if len(text) <= limit else text[:limit] + " ..."


def _resolve(schema: Any, root: Mapping[str, Any]) -> Any:
    for _ in range(MAX_NESTING):
        if not (isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str)):
            break
        target: Any = root
        for part in [p for p in schema["$ref"].lstrip("#").split("/") if p]:
            target = target.get(part) if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping):
            return {}
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _properties(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """The properties of an object schema, looking through ``$ref`` and ``X | None``."""
    schema = _resolve(schema, root)
    if not isinstance(schema, Mapping):
        return {}
    props = schema.get("properties")
    if isinstance(props, Mapping) and props:
        return props
    branches = [
        b
        for b in (schema.get("anyOf") or schema.get("oneOf") or [])
        if _resolve(b, root) != {"type": "null"}
    ]
    if len(branches) == 1:
        return _properties(branches[0], root)
    return {}


def _describe_props(
    props: Mapping[str, Any], root: Mapping[str, Any], indent: int, lines: list[str], depth: int
) -> None:
    pad = " " * indent
    for name, sub in props.items():
        children = _properties(sub, root) if depth < MAX_NESTING else {}
        if children:
            lines.append(f"{pad}{name}:")
            _describe_props(children, root, indent + 2, lines, depth + 1)
        else:
            lines.append(f"{pad}{name}: {param_description(sub, root)}")


def param_description(schema: Any, root: Mapping[str, Any] | None = None) -> str:
    """The one-line description of a parameter: its own, else one made from its type; allowed
    values are appended when the description does not already name them."""
    schema = _resolve(schema, root or {})
    if not isinstance(schema, Mapping):
        return "Any value."
    text = fold(str(schema.get("description") or ""))
    choices = schema.get("enum")
    if not isinstance(choices, list):
        choices = [schema["const"]] if "const" in schema else None
    listed = ", ".join(_literal(c) for c in choices or ())
    if not text:
        return f"One of: {listed}." if choices else _type_phrase(schema)
    if choices and not all(_literal(c).strip('"') in text for c in choices):
        text = f"{text} (one of: {listed})"
    return text


def _literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


_PHRASES = {
    "string": "A string.",
    "integer": "An integer.",
    "number": "A number.",
    "boolean": "true or false.",
    "array": "A list.",
    "object": "An object.",
    "null": "null.",
}


def _type_phrase(schema: Mapping[str, Any]) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        names = [x for x in t if isinstance(x, str) and x != "null"]
        t = names[0] if len(names) == 1 else None
    if t == "array" and isinstance(schema.get("items"), Mapping):
        inner = schema["items"].get("type")
        if isinstance(inner, str) and inner in _PHRASES:
            return f"A list of {inner} values."
    if isinstance(t, str) and t in _PHRASES:
        return _PHRASES[t]
    return "Any value."
