"""The function registry: definitions, prompt, parsing, validation and dispatch in one place."""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, overload

from agent.functions.call import FunctionCall
from agent.functions.definitions import iter_definitions, read_definitions_file
from agent.functions.errors import CallError, FunctionDefinitionError, invalid_params
from agent.functions.parse import parse_function_call
from agent.functions.prompt import describe_function, function_prompt, function_prompt_body
from agent.functions.schema import function_schema, to_python
from agent.functions.spec import FunctionSpec
from agent.functions.validate import check_parameters_schema, param_errors
from agent.llm.prompts import SYSTEM_PROMPT

__all__ = ["FunctionRegistry", "FunctionSpec", "invalid_params"]  # the last two live below

# OpenAI's rule for function names (a-z, A-Z, 0-9, _ and -, at most 64), plus dots.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class FunctionRegistry:
    """Functions by name, in registration order (which is the order the prompt lists them)."""

    def __init__(self, functions: Iterable[FunctionSpec] = ()):
        self._specs: dict[str, FunctionSpec] = {}
        for spec in functions:
            self.add(spec.name, spec.description, spec.parameters, spec.handler)

    # -- definitions -------------------------------------------------------------------------

    def add(
        self,
        name: str,
        description: str = "",
        parameters: Mapping[str, Any] | None = None,
        handler: Callable[..., Any] | None = None,
        *,
        hints: dict[str, Any] | None = None,
    ) -> FunctionSpec:
        """Register ``name`` with a JSON Schema object for its params; a same-named one is
        replaced. ``handler`` (called with the params as keyword arguments) is optional: without
        it the function can be chosen and validated but not dispatched."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise FunctionDefinitionError(
                f"function name {name!r} must be 1-64 letters, digits, '_', '-' or '.'"
            )
        if handler is not None and not callable(handler):
            raise FunctionDefinitionError(f"the handler of {name!r} is not callable")
        schema = check_parameters_schema(copy.deepcopy(parameters), f"function {name!r}")
        spec = FunctionSpec(name, " ".join(str(description or "").split()), schema, handler, hints)
        self._specs[name] = spec
        return spec

    @overload
    def function(self, func: Callable[..., Any]) -> Callable[..., Any]: ...

    @overload
    def function(
        self, func: None = None, *, name: str | None = None, description: str | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...

    def function(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Any:
        """Decorator registering a Python function; its schema comes from its type hints and
        its descriptions from its docstring. Use bare (``@reg.function``) or with overrides."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            sig = function_schema(f)
            self.add(
                name or f.__name__,
                description if description is not None else sig.description,
                sig.parameters,
                f,
                hints=sig.hints,
            )
            return f

        return register(func) if func is not None else register

    @classmethod
    def from_openai_tools(
        cls,
        tools: Iterable[Mapping[str, Any]],
        handlers: Mapping[str, Callable[..., Any]] | None = None,
    ) -> FunctionRegistry:
        """A registry from OpenAI ``tools`` (``[{type: function, function: {name, description,
        parameters}}]``) or legacy ``functions`` entries; ``handlers`` maps names to callables."""
        if isinstance(tools, (str, bytes)) or not isinstance(tools, Iterable):
            raise FunctionDefinitionError(
                "tools must be a list of {type: function, function: {...}}"
            )
        return cls.from_definitions(list(tools), handlers, where="tools")

    @classmethod
    def from_definitions(
        cls,
        data: Any,
        handlers: Mapping[str, Callable[..., Any]] | None = None,
        *,
        where: str = "definitions",
    ) -> FunctionRegistry:
        """A registry from parsed definitions data (see ``agent.functions.definitions``)."""
        reg = cls()
        handlers = dict(handlers or {})
        for name, description, parameters in iter_definitions(data, where):
            if name in reg._specs:
                raise FunctionDefinitionError(f"{where}: function {name!r} is defined twice")
            try:
                reg.add(name, description, parameters, handlers.pop(name, None))
            except FunctionDefinitionError as exc:  # say which file (or list) it came from
                raise FunctionDefinitionError(f"{where}: {exc}") from None
        if handlers:
            raise FunctionDefinitionError(
                f"handlers given for undefined functions: {', '.join(sorted(handlers))}"
            )
        return reg

    @classmethod
    def from_file(
        cls, path: str | Path, handlers: Mapping[str, Callable[..., Any]] | None = None
    ) -> FunctionRegistry:
        """A registry from a YAML or JSON definitions file. Handlers come from code, never from
        the file: only functions the app itself registered can run."""
        return cls.from_definitions(read_definitions_file(path), handlers, where=str(path))

    def subset(self, names: Iterable[str]) -> FunctionRegistry:
        """A registry of only ``names`` (e.g. an OpenAI ``tool_choice`` naming one function)."""
        reg = FunctionRegistry()
        for name in names:
            spec = self[name]
            reg._specs[spec.name] = spec
        return reg

    def to_openai_tools(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {
                    "name": s.name,
                    "description": s.description,
                    "parameters": copy.deepcopy(s.parameters),
                },
            }
            for s in self._specs.values()
        ]

    # -- lookup ------------------------------------------------------------------------------

    def get(self, name: str) -> FunctionSpec | None:
        """The function called ``name``; a case-insensitive match is accepted when unique."""
        if not isinstance(name, str):
            return None
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        folded = [s for s in self._specs.values() if s.name.casefold() == name.casefold()]
        return folded[0] if len(folded) == 1 else None

    def __getitem__(self, name: str) -> FunctionSpec:
        spec = self.get(name)
        if spec is None:
            raise self.unknown(name)
        return spec

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[FunctionSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)

    def schema(self, name: str) -> dict[str, Any]:
        """The JSON Schema of ``name``'s params (a copy)."""
        return copy.deepcopy(self[name].parameters)

    def response_schema(self) -> dict[str, Any]:
        """The schema of a whole answer: ``{"function": <one name>, "params": <its schema>}``."""
        return {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "function": {"const": s.name},
                        "params": copy.deepcopy(s.parameters),
                    },
                    "required": ["function", "params"],
                }
                for s in self._specs.values()
            ]
        }

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Registered names closest to ``name`` (for "did you mean")."""
        by_fold = {s.casefold(): s for s in self._specs}
        close = difflib.get_close_matches(str(name).casefold(), list(by_fold), n=n, cutoff=0.5)
        return [by_fold[c] for c in close]

    def unknown(self, name: Any, raw: str | None = None) -> CallError:
        """The ``unknown_function`` error for ``name``, with suggestions."""
        suggestions = self.suggest(str(name))
        hint = f"did you mean {' or '.join(map(repr, suggestions))}? " if suggestions else ""
        names = list(self._specs)
        known = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        return CallError(
            "unknown_function",
            f"{name!r} is not an available function; {hint}"
            f"choose one of: {known or '(none registered)'}",
            suggestions=suggestions,
            function=str(name),
            raw=raw,
        )

    # -- prompt ------------------------------------------------------------------------------

    def describe(self) -> str:
        """The "Available functions:" list of the prompt."""
        return "\n".join(
            describe_function(s.name, s.description, s.parameters) for s in self._specs.values()
        )

    def prompt_body(self, user_input: str, format: str = "json") -> str:
        return function_prompt_body(user_input, self._entries(), format)

    def prompt(self, user_input: str, format: str = "json", system: str = SYSTEM_PROMPT) -> str:
        """The model card's function-calling prompt in the Airoboros chat template."""
        return function_prompt(user_input, self._entries(), format, system)

    def _entries(self) -> list[tuple[str, str, dict[str, Any]]]:
        if not self._specs:
            raise FunctionDefinitionError("no functions registered: add some before prompting")
        return [(s.name, s.description, s.parameters) for s in self._specs.values()]

    # -- calls -------------------------------------------------------------------------------

    def parse(self, text: str, format: str | None = None) -> FunctionCall:
        """``parse_function_call(text, self)``."""
        return parse_function_call(text, self, format=format)

    def validate(self, name: str, params: Any) -> None:
        """Raise ``invalid_params`` listing every violation, each with its JSON path."""
        spec = self[name]
        errors = param_errors(params, spec.parameters)
        if errors:
            raise invalid_params(spec.name, errors)

    def dispatch(self, call: FunctionCall) -> Any:
        """Run the registered handler of ``call.name`` with its validated params.

        The handler is looked up here, never taken from the call; its exceptions come back as
        ``handler_error`` naming the function (the original is the ``__cause__``)."""
        spec = self[call.name]
        if spec.handler is None:
            raise CallError(
                "handler_error",
                f"{spec.name!r} has no handler: register it with handler=... "
                "(or @registry.function) to dispatch calls to it",
                function=spec.name,
            )
        self.validate(spec.name, call.params)
        if spec.hints is not None:
            kwargs = {k: to_python(v, spec.hints.get(k, Any)) for k, v in call.params.items()}
        else:
            kwargs = dict(call.params)
        try:
            return spec.handler(**kwargs)
        except Exception as exc:
            raise CallError(
                "handler_error",
                f"function {spec.name!r} failed: {type(exc).__name__}: {exc}",
                function=spec.name,
            ) from exc
