"""Agent runtime: reWOO plans and function calls on a native quantized Llama-2 engine."""

from agent.errors import AgentError, FunctionCallError, ModelFormatError, PlanError, ToolError

__version__ = "0.1.0"
__all__ = ["AgentError", "ModelFormatError", "PlanError", "ToolError", "FunctionCallError"]
