"""The model card's reWOO planning prompt, and plan generation with it.

The card's text is kept as written, including its line break in the middle of the first sentence
("given an input string" / "that could be ..."). The card prints the prompt as paragraphs
separated by blank lines (intro, tool list, output format, question); the tool list is the
registry's ``Name[input]: description`` lines. The whole is the user message of the Airoboros chat
template, so the model writes its plan after ``ASSISTANT:``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent.llm.prompts import chat_prompt
from agent.llm.protocol import SAMPLING_DEFAULTS, TextGenerator, count_tokens
from agent.planner.grammar import plan_grammar
from agent.planner.parser import tool_names

PLAN_INTRO = (
    "Please construct a systematic plan to generate an optimal response to the user instruction, "
    "utilizing a set of provided tools. Each plan will correspond to an evidence value, which will "
    "be the output of one of the available functions given an input string\n"
    "that could be the user's question, one or more prior evidence values, or a combination of "
    "both."
)
TOOLS_HEADER = "Here are the tools available to be called:"
OUTPUT_FORMAT = (
    "The output should be in format:\n"
    "Plan: [first action to take based on input question]\n"
    ":evidence0: = [function to call with input parameter]\n"
    "Plan: [next action to take, based on result of :evidence0:]\n"
    ":evidence1: = [next function to call and input parameter, which may include reference to "
    'previous evidence, e.g. "Given context :evidence0"]\n'
    "...\n"
    "Answer: [:evidence[n]: containing the final answer.]"
)

# The card's descriptions of its four tools, used when only tool names are given.
CARD_TOOL_DESCRIPTIONS = {
    "DuckDuckGo": "Tool that enables the user to search for information using the DuckDuckGo "
    "search engine. This tool is helpful in locating a suitable list of sites that may contain "
    "the answer to the user's query. It does not directly answer the question but finds a list of "
    "sites that might have the answer.",
    "TextScraper": "Load one or more websites from the input string containing newline delimited "
    "links, where input is one or more links, and produces plain text output containing the "
    "content of the links.",
    "HyperlinkExtractor": "Extract links from plain text and produces a plain text, newline "
    "delimited response of links.",
    "KnowledgeModel": "Question answering language model, particularly useful in answering "
    "questions based on an input passage of text. The input must be a text question that "
    "references an :evidence[n]: variable, e.g. What color is the cat, given :evidence1:?",
}

# Where the model starts another example or turn instead of stopping after "Answer:".
PLAN_STOP = ("USER:", "\nQuestion:")


def describe_tools(tools: Any) -> str:
    """``Name[input]: description`` lines for a registry, or for names (card text when known)."""
    if hasattr(tools, "describe") and callable(tools.describe):
        return str(tools.describe())
    names = tool_names(tools) or []
    card = {k.lower(): v for k, v in CARD_TOOL_DESCRIPTIONS.items()}
    return "\n".join(f"{n}[input]: {card.get(str(n).lower(), f'{n} tool.')}" for n in names)


def plan_user_message(question: str, tools: Any) -> str:
    """The card's planning instruction for ``question`` (the user message, unwrapped)."""
    return (
        f"{PLAN_INTRO}\n\n{TOOLS_HEADER}\n{describe_tools(tools)}\n\n{OUTPUT_FORMAT}\n\n"
        f"Question: {question.strip()}"
    )


def build_plan_prompt(question: str, tools: Any) -> str:
    """The full prompt: the planning instruction inside the Airoboros chat template."""
    return chat_prompt(plan_user_message(question, tools))


def generate_plan_text(
    model: TextGenerator,
    question: str,
    tools: Any,
    *,
    temperature: float = 0.0,
    seed: int | None = None,
    constrained: bool = False,
    stream: bool = False,
    max_tokens: int = 768,
    top_k: int = SAMPLING_DEFAULTS.top_k,
    top_p: float = SAMPLING_DEFAULTS.top_p,
    repeat_penalty: float = 1.0,
) -> str | Iterator[str]:
    """Ask ``model`` for a plan answering ``question`` with ``tools`` (registry or names).

    Returns the plan text, or with ``stream=True`` an iterator of text pieces as they are written.
    ``constrained=True`` passes the plan grammar of ``agent.planner.grammar`` to the model. The
    grammar bounds the plan and decides where it ends, so a constrained plan is neither cut by stop
    strings nor by ``max_tokens`` (a cut plan would not parse): it may use the rest of the context,
    and the grammar knows that budget, closing the plan (``Answer:``) before the context is full.
    """
    prompt = build_plan_prompt(question, tools)
    grammar = None
    if constrained:
        n_ctx = getattr(model, "n_ctx", None)
        # The tokens really left after the prompt and its BOS; unknown for remote generators.
        budget = n_ctx - count_tokens(model, prompt) - 1 if isinstance(n_ctx, int) else None
        grammar = plan_grammar(tool_names(tools) or [], max_tokens=budget)
    kwargs: dict[str, Any] = dict(
        max_tokens=max_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repeat_penalty=repeat_penalty,
        seed=seed,
        stop=list(PLAN_STOP),
    )
    if grammar is not None:
        kwargs["grammar"] = grammar
        kwargs["stop"] = []
        budget = getattr(grammar, "max_tokens", None)
        if isinstance(budget, int):
            kwargs["max_tokens"] = budget
    pieces = model.generate(prompt, **kwargs)
    return pieces if stream else "".join(pieces)
