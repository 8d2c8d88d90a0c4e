"""``select_function``: prompt the model, parse its answer, and re-ask with the error if needed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agent.errors import AgentError, FunctionCallError
from agent.functions.call import FunctionCall
from agent.functions.errors import CallError
from agent.functions.grammar import function_call_grammar
from agent.functions.parse import parse_function_call
from agent.functions.prompt import check_format, correction_prompt
from agent.functions.registry import FunctionRegistry
from agent.llm.prompts import SYSTEM_PROMPT
from agent.llm.protocol import SAMPLING_DEFAULTS, TextGenerator, count_tokens

DEFAULT_STOP = ("USER:",)  # the model starting the next chat turn is the end of its answer


def select_function(
    model: TextGenerator,
    user_input: str,
    registry: FunctionRegistry,
    format: str = "json",
    retries: int = 2,
    temperature: float = 0.2,
    seed: int | None = None,
    constrained: bool = False,
    *,
    max_tokens: int = 512,
    top_k: int = SAMPLING_DEFAULTS.top_k,
    top_p: float = SAMPLING_DEFAULTS.top_p,
    repeat_penalty: float = SAMPLING_DEFAULTS.repeat_penalty,
    stop: Sequence[str] = DEFAULT_STOP,
    system: str = SYSTEM_PROMPT,
    on_attempt: Callable[[int, str, FunctionCallError | None], None] | None = None,
) -> FunctionCall:
    """The call ``model`` chooses for ``user_input`` among ``registry``'s functions.

    Each failed answer is shown back to the model with what was wrong (a correction turn of the
    chat), up to ``retries`` times; then the last ``FunctionCallError`` is raised with every
    attempt in ``.attempts``. ``constrained=True`` passes ``agent.functions.grammar``'s grammar
    to ``model.generate``. ``on_attempt(n, answer, error_or_None)`` observes each attempt.
    """
    fmt = check_format(format)
    if retries < 0:
        raise ValueError("retries must be >= 0")
    grammar = function_call_grammar(registry, fmt) if constrained else None
    body = registry.prompt_body(user_input, fmt)
    first_prompt = registry.prompt(user_input, fmt, system=system)
    prompt = first_prompt
    attempts: list[tuple[str, FunctionCallError]] = []
    for attempt in range(retries + 1):
        budget = _token_budget(model, prompt, max_tokens)
        if budget is None:  # the correction turn does not fit: ask afresh instead
            prompt = first_prompt
            budget = _token_budget(model, prompt, max_tokens)
            if budget is None:
                raise AgentError(_too_long(model, prompt))
        kwargs: dict[str, Any] = dict(
            max_tokens=budget,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repeat_penalty=repeat_penalty,
            stop=list(stop),
            seed=None if seed is None else seed + attempt,
        )
        if grammar is not None:
            kwargs["grammar"] = grammar
        answer = "".join(model.generate(prompt, **kwargs))
        try:
            call = parse_function_call(answer, registry, format=fmt)
        except FunctionCallError as exc:
            attempts.append((answer, exc))
            if on_attempt:
                on_attempt(attempt + 1, answer, exc)
            prompt = correction_prompt(body, answer, exc.message, fmt, system=system)
            continue
        if on_attempt:
            on_attempt(attempt + 1, answer, None)
        call.attempts = attempt + 1
        return call
    raise _gave_up(attempts)


def _gave_up(attempts: list[tuple[str, FunctionCallError]]) -> CallError:
    last = attempts[-1][1]
    n = len(attempts)
    error = CallError(
        last.kind,
        f"no valid call after {n} attempt{'s' if n != 1 else ''}; the last answer failed "
        f"with: {last.message}",
        errors=getattr(last, "errors", ()),
        suggestions=getattr(last, "suggestions", ()),
        function=getattr(last, "function", None),
        raw=attempts[-1][0],
    )
    error.attempts = attempts
    return error


def _token_budget(model: TextGenerator, prompt: str, max_tokens: int) -> int | None:
    """Tokens left for the answer, or None if the prompt leaves no room in the context."""
    n_ctx = getattr(model, "n_ctx", None)
    if not isinstance(n_ctx, int) or n_ctx <= 0:
        return max_tokens
    room = n_ctx - count_tokens(model, prompt) - 1
    if room < 16:
        return None
    return min(max_tokens, room)


def _too_long(model: TextGenerator, prompt: str) -> str:
    return (
        f"the function prompt is {count_tokens(model, prompt)} tokens but the model's context "
        f"holds {getattr(model, 'n_ctx', None)}; register fewer functions, shorten their "
        "descriptions, or raise the context size (-c)"
    )
