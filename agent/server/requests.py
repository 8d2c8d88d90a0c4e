"""OpenAI request bodies -> what to generate: prompt, sampling settings, grammar, tool mode.

Every malformed or unsupported field is a 400 naming the field; a prompt that does not fit the
context window is a 400 with code ``context_length_exceeded`` (checked before the request queues).
Chat messages are rendered in the Airoboros template; with tools, the last user turn becomes the
card's function-calling prompt and the answer is constrained by the function-call grammar.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import AgentError
from agent.llm.prompts import SYSTEM_PROMPT, Turn, chat_prompt
from agent.llm.protocol import count_tokens
from agent.server.errors import APIError, bad_request

DEFAULT_TEMPERATURE = 0.7  # llama.cpp's default; OpenAI's 1.0 is rough on small local models
TEXT_INSTEAD = "If none of the functions fits the input, answer in plain text instead."
_UNSUPPORTED_IF_SET = {
    "logprobs": False,
    "top_logprobs": None,
    "logit_bias": None,
    "echo": False,
    "suffix": None,
    "best_of": None,
}
_ZERO_ONLY = ("presence_penalty", "frequency_penalty")
MAX_N = 8  # choices per request (n): each is a sequence decoding in parallel
MAX_BODY_BYTES = 8 * 1024 * 1024  # a larger body is a 413 before it is parsed


@dataclass
class Prepared:
    prompt: str
    prompt_tokens: int
    max_tokens: int
    sampling: dict[str, Any]
    grammar: Any = None
    stream: bool = False
    include_usage: bool = False
    registry: Any = None  # set when the answer may be a tool call
    tool_mode: str = "none"
    extra: dict[str, Any] = field(default_factory=dict)
    n: int = 1  # choices: parallel sequences sharing the prompt's KV
    # set when the grammar leaves keywords unenforced: text -> None (valid) or what is wrong
    check: Callable[[str], str | None] | None = None


def parse_json_body(raw: bytes, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    if len(raw) > max_bytes:
        raise APIError(
            413,
            f"the request body is {len(raw)} bytes; this server accepts at most {max_bytes}",
            code="request_too_large",
        )
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise bad_request(
            "the request body nests arrays/objects too deeply to be read; flatten it"
        ) from None
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _number(
    body: dict, key: str, default: float | None, lo: float, hi: float, integer: bool = False
) -> Any:
    value = body.get(key)
    if value is None:
        return default
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise bad_request(f"'{key}' must be {kind} between {lo:g} and {hi:g}, got {value!r}", key)
    return value


def _sampling(body: dict) -> dict[str, Any]:
    for key, neutral in _UNSUPPORTED_IF_SET.items():
        if body.get(key) not in (neutral, None, {}, 1 if key == "best_of" else None):
            raise bad_request(f"'{key}' is not supported by this server", key)
    for key in _ZERO_ONLY:
        if body.get(key) not in (None, 0, 0.0):
            raise bad_request(
                f"'{key}' is not supported (only 0); use 'repeat_penalty' instead", key
            )
    _number(body, "n", 1, 1, MAX_N, integer=True)  # checked here, used by prepare_*
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    elif not (isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4):
        raise bad_request("'stop' must be a string or a list of at most 4 strings", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad_request(f"'seed' must be an integer, got {seed!r}", "seed")
    temperature = _number(body, "temperature", DEFAULT_TEMPERATURE, 0.0, 2.0)
    return dict(
        temperature=temperature,
        top_p=_number(body, "top_p", 1.0, 1e-9, 1.0),
        top_k=_number(body, "top_k", 40, 0, 1_000_000, integer=True),
        repeat_penalty=_number(body, "repeat_penalty", 1.1, 1e-9, 10.0),
        seed=seed,
        stop=stop,
    )


def _content(message: dict, i: int) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise bad_request(
                    f"messages[{i}].content: only text parts are supported",
                    f"messages[{i}].content",
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise bad_request(
        f"messages[{i}].content must be a string or a list of text parts", f"messages[{i}].content"
    )


def _tool_calls(message: dict, i: int) -> list[tuple[str, str, Any]]:
    """(id, name, params) of an assistant message's ``tool_calls``, checked."""
    calls = message.get("tool_calls") or []
    where = f"messages[{i}].tool_calls"
    if not isinstance(calls, list):
        raise bad_request(f"{where} must be a list", where)
    out = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad_request(
                f'{where}[{j}] must be {{"id", "type": "function", "function": '
                '{"name", "arguments"}}',
                f"{where}[{j}]",
            )
        args = fn.get("arguments")
        try:
            params = json.loads(args) if isinstance(args, str) else (args or {})
        except ValueError:
            params = args  # shown to the model as it was sent
        out.append((str(call.get("id")), fn["name"], params))
    return out


def _render_calls(calls: list[tuple[str, str, Any]]) -> str:
    return "\n".join(
        json.dumps({"function": name, "params": params}, indent=2) for _, name, params in calls
    )


def render_messages(messages: Any) -> tuple[str, list[Turn], str]:
    """(system, finished turns, last user text) of an OpenAI ``messages`` list."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list", "messages")
    system_parts: list[str] = []
    turns: list[Turn] = []
    pending: list[str] = []
    names: dict[str, str] = {}
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise bad_request(f"messages[{i}] must be an object", f"messages[{i}]")
        role = m.get("role")
        text = _content(m, i)
        if role in ("system", "developer"):
            system_parts.append(text)
        elif role == "user":
            pending.append(text)
        elif role == "assistant":
            calls = _tool_calls(m, i)
            names.update((cid, name) for cid, name, _ in calls)
            reply = "\n".join(x for x in (text, _render_calls(calls)) if x)
            if not pending:
                raise bad_request(
                    f"messages[{i}]: an assistant message must follow a user message",
                    f"messages[{i}]",
                )
            turns.append(Turn("\n".join(pending), reply))
            pending = []
        elif role in ("tool", "function"):
            name = m.get("name") or names.get(str(m.get("tool_call_id")), "the function")
            pending.append(f"Result of {name}: {text}")
        else:
            raise bad_request(
                f"messages[{i}].role must be system, user, assistant or tool, got {role!r}",
                f"messages[{i}].role",
            )
    if not pending:
        raise bad_request("the last message must come from the user (or a tool)", "messages")
    system = "\n".join(p for p in system_parts if p) or SYSTEM_PROMPT
    return system, turns, "\n".join(pending)


def _tools(body: dict) -> tuple[Any, str, str | None]:
    """(registry or None, mode, named function) from tools/tool_choice (or legacy functions)."""
    from agent.functions.registry import FunctionRegistry

    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None and body.get("functions") is not None:  # the legacy spelling
        tools = (
            [{"type": "function", "function": f} for f in body["functions"]]
            if isinstance(body["functions"], list)
            else body["functions"]
        )
        fc = body.get("function_call")
        choice = {"type": "function", "function": fc} if isinstance(fc, dict) else fc
    if tools is not None and not isinstance(tools, list):
        raise bad_request(
            '\'tools\' must be a list of {"type": "function", "function": {...}}', "tools"
        )
    if tools is None or tools == []:
        if choice not in (None, "none"):
            raise bad_request("'tool_choice' needs 'tools'", "tool_choice")
        return None, "none", None
    try:
        registry = FunctionRegistry.from_openai_tools(tools)
    except AgentError as exc:
        raise bad_request(f"tools: {exc}", "tools") from None
    if not registry.names():  # e.g. "tools": {} (found by the fuzz test)
        raise bad_request("'tools' must be a list of at least one function", "tools")
    if choice is None:
        choice = "auto"
    if choice in ("none", "auto", "required"):
        return registry, choice, None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if name not in registry.names():
            raise bad_request(
                f"tool_choice names {name!r}, which is not among the tools "
                f"({', '.join(registry.names())})",
                "tool_choice",
            )
        return registry.subset([name]), "named", name
    raise bad_request(
        "'tool_choice' must be 'none', 'auto', 'required' or "
        '{"type": "function", "function": {"name": ...}}',
        "tool_choice",
    )


def _response_format(body: dict) -> Any:
    from agent.llm.grammar import GrammarError, json_schema_grammar, json_value_grammar

    rf = body.get("response_format")
    if rf is None:
        return None
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return _cached("json_object", json_value_grammar)
    if kind == "json_schema":
        spec = rf.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise bad_request(
                "response_format.json_schema must be an object with a 'schema'", "response_format"
            )
        try:
            key = json.dumps(spec["schema"], sort_keys=True, default=str)
            return _cached(key, lambda: json_schema_grammar(spec["schema"]))
        except GrammarError as exc:
            raise bad_request(f"response_format: {exc}", "response_format") from None
        except RecursionError:
            raise bad_request(
                "response_format: the schema nests too deeply to be read", "response_format"
            ) from None
    raise bad_request(
        "response_format.type must be 'text', 'json_object' or 'json_schema'", "response_format"
    )


_GRAMMARS: dict[
    str, Any
] = {}  # response_format grammars by schema text: warm masks across requests


def _cached(key: str, build: Any) -> Any:
    grammar = _GRAMMARS.get(key)
    if grammar is None:
        grammar = build()
        if len(_GRAMMARS) >= 16:
            _GRAMMARS.pop(next(iter(_GRAMMARS)))
        _GRAMMARS[key] = grammar
    return grammar


def _longest_piece(model: Any) -> int | None:
    """Bytes of the vocabulary's longest token (None for a model without a vocabulary)."""
    try:
        from agent.llm.grammar import token_table

        table = token_table(model)
    except (TypeError, AttributeError):
        return None
    return int(table.data.shape[1]) if len(table.order) else None


def _fit(model: Any, prompt: str, body: dict, default_max: int | None) -> tuple[int, int]:
    """(prompt tokens, max new tokens), or a 400 when they do not fit the context window."""
    batcher = getattr(model, "batcher", None)  # with parallel slots, a slot's context
    n_ctx = getattr(batcher, "n_ctx", None) or getattr(model, "n_ctx", None) or 4096
    longest = _longest_piece(model)
    if longest and len(prompt.encode("utf-8")) > n_ctx * longest:  # more tokens than n_ctx, surely
        raise APIError(
            400,
            f"This model's maximum context length is {n_ctx} tokens, and your prompt of "
            f"{len(prompt.encode('utf-8'))} bytes needs more than that (a token covers at most "
            f"{longest} bytes). Shorten the messages.",
            param="messages",
            code="context_length_exceeded",
        )
    n_prompt = count_tokens(model, prompt)
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, None, 1, 10**9, integer=True)
    room = n_ctx - n_prompt
    if room <= 0 or (max_tokens is not None and max_tokens > room):
        wanted = f" plus {max_tokens} tokens to generate" if max_tokens is not None else ""
        raise APIError(
            400,
            f"This model's maximum context length is {n_ctx} tokens. However, your "
            f"request has {n_prompt} prompt tokens{wanted}. Shorten the messages or lower "
            "max_tokens.",
            param="messages",
            code="context_length_exceeded",
        )
    if max_tokens is None:
        max_tokens = room if default_max is None else min(default_max, room)
    return n_prompt, max_tokens


def _stream_flags(body: dict) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false", "stream")
    opts = body.get("stream_options") or {}
    return stream, bool(isinstance(opts, dict) and opts.get("include_usage"))


def prepare_chat(body: dict, model: Any) -> Prepared:
    from agent.functions.grammar import function_call_grammar
    from agent.llm.grammar import GrammarError

    system, turns, user = render_messages(body.get("messages"))
    sampling = _sampling(body)
    registry, mode, _ = _tools(body)
    grammar = _response_format(body)
    if mode != "none":
        if grammar is not None:
            raise bad_request(
                "response_format cannot be combined with tools unless tool_choice is 'none'",
                "response_format",
            )
        try:
            grammar = function_call_grammar(registry, "json", allow_text=(mode == "auto"))
        except GrammarError as exc:
            raise bad_request(f"tools: {exc}", "tools") from None
        body_text = registry.prompt_body(user, "json")
        if mode == "auto":
            body_text += "\n\n" + TEXT_INSTEAD
        prompt = chat_prompt(body_text, turns, system)
    else:
        registry = None
        prompt = chat_prompt(user, turns, system)
    n_prompt, max_tokens = _fit(model, prompt, body, None)
    stream, usage = _stream_flags(body)
    prep = Prepared(prompt, n_prompt, max_tokens, sampling, grammar, stream, usage, registry, mode)
    prep.n = body.get("n") or 1
    prep.check = _output_check(body, grammar, registry)
    return prep


def prepare_completion(body: dict, model: Any) -> Prepared:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_request("'prompt' must be a string (one prompt per request)", "prompt")
    sampling = _sampling(body)
    grammar = _response_format(body)
    n_prompt, max_tokens = _fit(model, prompt, body, 16)  # OpenAI's default for completions
    stream, usage = _stream_flags(body)
    prep = Prepared(prompt, n_prompt, max_tokens, sampling, grammar, stream, usage)
    prep.n = body.get("n") or 1
    prep.check = _output_check(body, grammar, None)
    return prep


def _validator(schema: Any) -> Any:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _first_error(validator: Any, value: Any) -> str | None:
    err = next(iter(validator.iter_errors(value)), None)
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "#"
    return f"{where}: {err.message[:200]}"


def _output_check(body: dict, grammar: Any, registry: Any) -> Callable[[str], str | None] | None:
    """A validator of the finished output, when the grammar could not enforce every keyword."""
    if grammar is None or not getattr(grammar, "unenforced", ()):
        return None
    if registry is None:
        v = _validator(body["response_format"]["json_schema"]["schema"])

        def check_value(text: str) -> str | None:
            try:
                return _first_error(v, json.loads(text))
            except ValueError as exc:
                return f"the output is not JSON ({exc})"

        return check_value
    validators = {n: _validator(registry.schema(n) or {}) for n in registry.names()}

    def check_call(text: str) -> str | None:
        if not text.lstrip().startswith("{"):
            return None  # a plain-text answer (tool_choice auto)
        try:
            call = json.loads(text)
            return _first_error(validators[call["function"]], call.get("params"))
        except (ValueError, KeyError, TypeError) as exc:
            return f"the tool call is not a complete call ({exc})"

    return check_call
