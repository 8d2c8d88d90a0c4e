"""Function calling: an app registers functions, the model picks one and fills its params in the
Airoboros m2.0 format (JSON or YAML), and the runtime parses, validates and dispatches the call.

    reg = FunctionRegistry()

    @reg.function
    def file_analytics(action: str, filters: Filters) -> int:
        '''This tool performs various operations on a text file. ...'''

    call = select_function(model, "How often is 'Python' in my file?", reg)
    result = call.invoke()
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from agent.errors import FunctionCallError

# Loaded on first use, so `agent --help` (which imports agent.functions.cli) stays fast:
# jsonschema and PyYAML take a noticeable part of a second to import.
_LAZY = {
    "CallError": "agent.functions.errors",
    "ConstrainedDecodingUnavailable": "agent.functions.errors",
    "FunctionDefinitionError": "agent.functions.errors",
    "FunctionCall": "agent.functions.call",
    "parse_function_call": "agent.functions.parse",
    "FunctionRegistry": "agent.functions.registry",
    "FunctionSpec": "agent.functions.registry",
    "select_function": "agent.functions.selection",
}

__all__ = ["FunctionCallError", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.functions' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
