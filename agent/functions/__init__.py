"""Function calling: an app registers functions, the model picks one and fills its params in the
Airoboros m2.0 format (JSON or YAML), and the runtime parses, validates and dispatches the call.

    reg = FunctionRegistry()

    @reg.function
    def file_analytics(action: str, filters: Filters) -> int:
        '''This tool performs various operations on a text file. ...'''

    call = select_function(model, "How often is 'Python' in my file?", reg)
    result = call.invoke()
"""

from agent.errors import FunctionCallError
from agent.functions.call import FunctionCall
from agent.functions.errors import (
    CallError, ConstrainedDecodingUnavailable, FunctionDefinitionError,
)
from agent.functions.parse import parse_function_call
from agent.functions.registry import FunctionRegistry, FunctionSpec
from agent.functions.selection import select_function

__all__ = [
    "CallError",
    "ConstrainedDecodingUnavailable",
    "FunctionCall",
    "FunctionCallError",
    "FunctionDefinitionError",
    "FunctionRegistry",
    "FunctionSpec",
    "parse_function_call",
    "select_function",
]
