"""The Airoboros function call as a decoding grammar, in JSON or in YAML.

JSON::                                  YAML::

    {                                       function: search
      "function": "search",                 params:
      "params": {"query": "cats"}             query: "cats"
    }                                         limit: 5

``function`` is one of the registry's names and ``params`` follows that function's JSON Schema
(``agent.llm.grammar.json_schema``, its ``$ref``s resolved against that schema; what cannot be
generated raises ``SchemaUnsupportedError``). The YAML
form uses block mappings for objects and flow style for arrays and scalars, with every string
double-quoted, so ``yaml.safe_load`` gives back exactly the values the schema allows.
"""

from __future__ import annotations

import json
from typing import Any

from agent.llm.grammar import (
    Grammar,
    JsonOptions,
    SchemaBuilder,
    alt,
    byte_set,
    finish_grammar,
    lit,
    opt,
    printable_utf8_char,
    rep,
    seq,
    text_char,
    yaml_key,
)

FORMATS = ("json", "yaml")


def _key(registry: Any, fmt: str, options: JsonOptions) -> str:
    return json.dumps(
        [fmt, repr(options), [(n, registry.schema(n)) for n in registry.names()]],
        sort_keys=True,
        default=str,
    )


_CACHE: dict[str, Grammar] = {}


def function_call_grammar(
    registry: Any,
    format: str = "json",
    *,
    options: JsonOptions | None = None,
    allow_text: bool = False,
) -> Grammar:
    """Only calls of ``registry``'s functions with params valid for their schemas (cached).

    ``allow_text`` (JSON only) also admits a plain-text answer instead of a call: any text that
    does not start with ``{`` (OpenAI's ``tool_choice: auto``).
    """
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise ValueError(f"format must be 'json' or 'yaml', got {format!r}")
    if allow_text and fmt != "json":
        raise ValueError("allow_text is only supported for JSON calls")
    names = list(registry.names())
    if not names:
        raise ValueError("the registry has no functions: register some before constraining calls")
    options = options or JsonOptions(max_string_length=200)
    key = _key(registry, fmt, options) + ("+text" if allow_text else "")
    grammar = _CACHE.get(key)
    if grammar is None:
        grammar = _build(registry, names, fmt, options, allow_text)
        if len(_CACHE) >= 16:  # each grammar keeps its automaton and mask cache
            _CACHE.clear()
        _CACHE[key] = grammar
    return grammar


def _params_schema(registry: Any, name: str) -> Any:
    schema = registry.schema(name)
    return schema if schema not in (None, {}) else {"type": "object", "properties": {}}


def _build(
    registry: Any, names: list[str], fmt: str, options: JsonOptions, allow_text: bool
) -> Grammar:
    if fmt == "json":
        b = SchemaBuilder({}, options, yaml=False)
        calls = []
        for n in names:
            schema = _params_schema(registry, n)
            b.set_root(schema)  # each tool's $defs/$ref resolve against its own schema
            calls.append(
                seq(
                    "{",
                    b.ws,
                    '"function"',
                    b.colon,
                    lit(json.dumps(n)),
                    b.sep,
                    '"params"',
                    b.colon,
                    b.value(schema, f"{n}/params"),
                    b.ws,
                    "}",
                )
            )
        root = alt(*calls)
        if allow_text:
            first = alt(
                byte_set("{ " + "".join(map(chr, range(32))) + "\x7f", negate=True),
                printable_utf8_char(),
            )
            root = alt(root, seq(first, rep(alt(text_char(), byte_set("\n\t")))))
        return finish_grammar(b, root, "function call (json)" + (" or text" if allow_text else ""))
    b = SchemaBuilder({}, options, yaml=True)
    calls = []
    for n in names:
        schema = _params_schema(registry, n)
        b.set_root(schema)  # local $refs resolve against the function's own schema
        calls.append(
            seq(
                "function: ", lit(yaml_key(n)), "\nparams:", b.block_value(schema, f"{n}/params", 2)
            )
        )
    # at column 0: nothing before "function:", or a line break (after the space the answer may
    # start with)
    return finish_grammar(
        b, seq(opt(seq(opt(" "), "\n")), alt(*calls)), "function call (yaml)", lead=False
    )
