"""Tool protocol and registry.

A tool has a ``name``, a one-line ``description`` (shown in the plan prompt as the model card lists
tools: ``Name[input]: description``) and is called with one string, returning a string or raising
``ToolError``. Lookup is case-insensitive; the registry keeps the spelling it was given.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agent.errors import ToolError


@runtime_checkable
class Tool(Protocol):
    name: str
    description: str

    def __call__(self, text: str) -> str: ...


@dataclass
class FunctionTool:
    """A plain ``(str) -> str`` callable dressed as a tool."""

    name: str
    description: str
    func: Callable[[str], str]

    def __call__(self, text: str) -> str:
        return self.func(text)


def _first_doc_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def as_tool(obj: Any, name: str | None = None, description: str | None = None) -> Tool:
    """Wrap a callable as a tool, keeping an object that already is one."""
    if not callable(obj):
        raise ToolError(f"a tool must be callable with one string; got {type(obj).__name__}")
    if name is None and description is None and isinstance(obj, Tool):
        return obj
    tool_name = name or getattr(obj, "name", None) or getattr(obj, "__name__", None)
    if not tool_name or not str(tool_name).isidentifier():
        raise ToolError(f"tool name {tool_name!r} must be an identifier such as 'WikiSearch'")
    desc = description or getattr(obj, "description", None) or _first_doc_line(obj)
    return FunctionTool(str(tool_name), str(desc or f"{tool_name} tool."), obj)


class ToolRegistry:
    """Tools by name, in registration order."""

    def __init__(self, tools: Iterable[Any] | Mapping[str, Any] = ()):
        self._tools: dict[str, Tool] = {}
        if isinstance(tools, Mapping):
            for name, obj in tools.items():
                self.add(obj, name=name)
        else:
            for obj in tools:
                self.add(obj)

    def add(self, obj: Any, *, name: str | None = None, description: str | None = None) -> Tool:
        """Register a tool (or a ``(str) -> str`` callable); a same-named tool is replaced."""
        tool = as_tool(obj, name, description)
        self._tools[tool.name.lower()] = tool
        return tool

    def tool(self, name: str | None = None, description: str | None = None) -> Callable:
        """Decorator form of ``add``: ``@registry.tool()`` over a function of one string."""

        def decorate(func: Callable[[str], str]) -> Callable[[str], str]:
            self.add(func, name=name, description=description)
            return func

        return decorate

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name.lower())

    def __getitem__(self, name: str) -> Tool:
        tool = self.get(name)
        if tool is None:
            raise KeyError(name)
        return tool

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return [t.name for t in self._tools.values()]

    def describe(self) -> str:
        """The tool list of the plan prompt, one ``Name[input]: description`` line per tool."""
        return "\n".join(f"{t.name}[input]: {t.description}" for t in self._tools.values())


def load_tool_spec(spec: str) -> Tool:
    """Import a user tool from ``module:callable`` (as ``agent ask --tool`` accepts).

    A class is instantiated without arguments, so ``module:ToolClass`` works too.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ToolError(f"tool spec {spec!r} must look like 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ToolError(f"cannot import module {module_name!r} for tool {spec!r}: {exc}") from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ToolError(
            f"module {module_name!r} has no attribute {attr!r} (tool {spec!r})"
        ) from None
    if isinstance(obj, type):  # a tool class such as agent.tools.links:HyperlinkExtractor
        try:
            obj = obj()
        except TypeError as exc:
            raise ToolError(
                f"tool class {spec!r} cannot be made without arguments ({exc}); "
                "point --tool at a configured instance instead"
            ) from exc
    return as_tool(obj)
