"""The validated call a model chose."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.functions.errors import CallError


class Dispatcher(Protocol):
    """What runs a call (``FunctionRegistry`` is one)."""

    def dispatch(self, call: FunctionCall) -> Any: ...


@dataclass
class FunctionCall:
    """``name`` and validated ``params`` of a registered function.

    ``format`` is how the model wrote it ("json" or "yaml"), ``raw`` the model's whole answer,
    ``repairs`` the slips that were fixed to read it (empty when it was clean), ``attempts`` how
    many answers ``select_function`` needed.
    """

    name: str
    params: dict[str, Any]
    format: str = "json"
    raw: str = ""
    repairs: tuple[str, ...] = ()
    attempts: int = field(default=1, compare=False)
    registry: Dispatcher | None = field(default=None, repr=False, compare=False)

    def invoke(self) -> Any:
        """Run the registered handler (see ``FunctionRegistry.dispatch``)."""
        if self.registry is None:
            raise CallError(
                "handler_error",
                f"the call of {self.name!r} is not bound to a registry; use "
                "registry.dispatch(call) instead",
                function=self.name,
            )
        return self.registry.dispatch(self)

    def to_dict(self) -> dict[str, Any]:
        """The call in the model card's shape: ``{"function": ..., "params": {...}}``."""
        return {"function": self.name, "params": self.params}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_openai(self, call_id: str | None = None) -> dict[str, Any]:
        """An OpenAI ``tool_calls`` entry (arguments as a JSON string, as the API sends them)."""
        out: dict[str, Any] = {
            "type": "function",
            "function": {
                "name": self.name,
                "arguments": json.dumps(self.params, ensure_ascii=False),
            },
        }
        if call_id is not None:
            out = {"id": call_id, **out}
        return out
