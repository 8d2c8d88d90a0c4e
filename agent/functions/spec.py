"""A registered function's record, and what parsing needs of a registry.

Both sit below ``parse`` and ``registry``, so the registry can parse and the parser can look
functions up without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.functions.call import Dispatcher
from agent.functions.errors import CallError


@dataclass
class FunctionSpec:
    """One registered function. ``hints`` (from ``@function``) convert validated JSON params to
    the handler's Python types (Enum members, dataclasses, ...)."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: Callable[..., Any] | None = None
    hints: dict[str, Any] | None = None


class FunctionLookup(Dispatcher, Protocol):
    """The registry as the parser sees it (``FunctionRegistry`` is one)."""

    def get(self, name: str) -> FunctionSpec | None:
        """The function called ``name``, or None."""
        ...

    def unknown(self, name: Any, raw: str | None = None) -> CallError:
        """The ``unknown_function`` error for ``name``."""
        ...
