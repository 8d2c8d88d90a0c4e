"""The reWOO plan as a decoding grammar: only plans that parse, over the registry's tools, fit.

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

Bounded is not enough when the context is short: ten rambling steps of 300 characters do not fit
in the tokens a 1024- or 2048-token context leaves after the prompt, and a plan cut there does not
parse. So the grammar carries a token budget (``agent.llm.grammar.budget``): the context the model
has left after the prompt, and at most ``max_tokens=`` when given. While the budget is loose nothing
changes; when it runs low only the shortest way out remains -- close the input, then ``Answer:`` --
so the plan always ends, and parses, at any temperature and on any model.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from agent.errors import AgentError, ContextLengthError
from agent.llm.grammar import (
    BudgetGrammar,
    Grammar,
    Node,
    alt,
    choice,
    lit,
    opt,
    rep,
    seq,
    text_char,
    within_budget,
)

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
    *,
    max_tokens: int | None = None,
) -> BudgetGrammar:
    """The grammar of bounded plans over ``tool_names`` (cached per arguments), complete within
    the context the model has left and, when given, within ``max_tokens`` generated tokens; a
    ``max_tokens`` too small for even the shortest plan is a ``ContextLengthError``.
    """
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
    if max_tokens is None:
        return _plan_grammar(names, max_steps, max_input_chars, max_plan_chars)
    grammar = _plan_grammar(names, max_steps, max_input_chars, max_plan_chars).grammar
    budgeted = within_budget(grammar, max(0, max_tokens))
    if not budgeted.fits():
        raise ContextLengthError(
            f"the shortest plan over these tools takes up to {budgeted.min_tokens()} tokens, "
            f"but only {max_tokens} are left after the prompt; load the model with a larger "
            "context (n_ctx, -c) or shorten the question and tool descriptions"
        )
    return budgeted


@lru_cache(maxsize=16)
def _plan_grammar(
    names: tuple[str, ...], max_steps: int, max_input_chars: int, max_plan_chars: int
) -> BudgetGrammar:
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
    return within_budget(Grammar(seq(opt(" "), tail), name=f"plan over {', '.join(names)}"))
