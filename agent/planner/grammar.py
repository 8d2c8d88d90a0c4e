"""The reWOO plan as a decoding grammar: only plans that parse, over the registry's tools, can be
written.

Shape (the model card's)::

    Plan: <text>
    :evidence0: = Tool[<input>]
    Plan: <text>
    :evidence1: = Tool[<input that may say :evidence0:>]
    Answer: :evidenceK:

Guarantees: ids are numbered 0, 1, 2... in order; tools come from ``tool_names`` only; an input or
plan text may refer only to evidence produced before it; the answer names an existing id. Text
fields hold no brackets, newlines or stray colons (a colon appears only in a reference or as
``:/`` in a URL), so neither the parser nor the ``USER:`` stop string can misread them. At most
``max_steps`` steps of at most ``max_input_chars`` / ``max_plan_chars`` characters (a reference
counts as one): every plan terminates.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from agent.errors import AgentError
from agent.llm.grammar import Grammar, Node, alt, choice, lit, opt, rep, seq, text_char

DEFAULT_MAX_STEPS = 10
DEFAULT_MAX_INPUT_CHARS = 300
DEFAULT_MAX_PLAN_CHARS = 300


def _refs(n: int) -> list[str]:
    return [f":evidence{j}:" for j in range(n)]


def _text(n_refs: int, max_chars: int) -> Node:
    item = alt(text_char("[]:"), lit(":/"), *([choice(_refs(n_refs))] if n_refs else []))
    return rep(item, 1, max_chars)


def plan_grammar(
    tool_names: Iterable[str],
    max_steps: int = DEFAULT_MAX_STEPS,
    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
    max_plan_chars: int = DEFAULT_MAX_PLAN_CHARS,
) -> Grammar:
    """The grammar of bounded plans over ``tool_names`` (cached per arguments)."""
    names = tuple(dict.fromkeys(str(n) for n in tool_names))
    if not names:
        raise AgentError("a plan grammar needs at least one tool name; register tools first")
    bad = [n for n in names if not n or any(c in n for c in "[]\n")]
    if bad:
        raise AgentError(
            f"tool names {bad!r} cannot appear in a plan (no brackets or newlines allowed)"
        )
    if max_steps < 1 or max_input_chars < 1 or max_plan_chars < 1:
        raise AgentError("max_steps, max_input_chars and max_plan_chars must be at least 1")
    return _plan_grammar(names, max_steps, max_input_chars, max_plan_chars)


@lru_cache(maxsize=16)
def _plan_grammar(
    names: tuple[str, ...], max_steps: int, max_input_chars: int, max_plan_chars: int
) -> Grammar:
    tool = choice(names)
    tail: Node | None = None
    for i in range(max_steps - 1, -1, -1):  # built from the last step backwards
        step = seq(
            "Plan: ",
            _text(i, max_plan_chars),
            "\n",
            f":evidence{i}: = ",
            tool,
            "[",
            _text(i, max_input_chars),
            "]\n",
        )
        answer = seq("Answer: ", choice(_refs(i + 1)))
        after = answer if tail is None else alt(answer, tail)
        tail = seq(step, after)
    assert tail is not None
    return Grammar(seq(opt(" "), tail), name=f"plan over {', '.join(names)}")
