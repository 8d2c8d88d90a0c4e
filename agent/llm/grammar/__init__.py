"""Constrained decoding: grammars over bytes, token masks over the vocabulary, grammar builders.

``Grammar(root_node)`` is what ``model.generate(..., grammar=g)`` accepts; ``json_schema_grammar``
builds one from a JSON Schema. Plan and function-call grammars live with their packages
(``agent.planner.grammar``, ``agent.functions.grammar``).
"""

from agent.llm.grammar.budget import BudgetGrammar, within_budget
from agent.llm.grammar.errors import GrammarError, SchemaUnsupportedError
from agent.llm.grammar.grammar import Grammar
from agent.llm.grammar.matcher import GrammarMatcher
from agent.llm.grammar.nodes import (
    EMPTY,
    Alt,
    Bytes,
    Lit,
    Node,
    Ref,
    Rep,
    Seq,
    alt,
    byte_set,
    choice,
    lit,
    opt,
    printable_utf8_char,
    rep,
    seq,
    text_char,
    utf8_char,
)
from agent.llm.grammar.tokens import TokenTable, token_table

# The JSON Schema compiler's names, imported on first use; SchemaBuilder and finish_grammar let
# other grammars (function calls) reuse its value rules.
_JSON_SCHEMA_NAMES = (
    "json_schema_grammar",
    "json_value_grammar",
    "JsonOptions",
    "json_schema_node",
    "SchemaBuilder",
    "finish_grammar",
    "yaml_key",
)

__all__ = [
    "BudgetGrammar",
    "EMPTY",
    "Alt",
    "Bytes",
    "Grammar",
    "GrammarError",
    "GrammarMatcher",
    "Lit",
    "Node",
    "Ref",
    "Rep",
    "SchemaUnsupportedError",
    "Seq",
    "TokenTable",
    "alt",
    "byte_set",
    "choice",
    "lit",
    "opt",
    "printable_utf8_char",
    "rep",
    "seq",
    "text_char",
    "token_table",
    "utf8_char",
    "within_budget",
    *_JSON_SCHEMA_NAMES,
]


def __getattr__(name: str):  # the JSON Schema builder is imported on first use
    if name in _JSON_SCHEMA_NAMES:
        from agent.llm.grammar import json_schema

        return getattr(json_schema, name)
    raise AttributeError(name)
