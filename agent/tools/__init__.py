"""Tools a plan can call: protocol, registry, and the four built-ins of the model card."""

from agent.tools.registry import FunctionTool, Tool, ToolRegistry, as_tool, load_tool_spec

__all__ = ["Tool", "FunctionTool", "ToolRegistry", "as_tool", "load_tool_spec"]
