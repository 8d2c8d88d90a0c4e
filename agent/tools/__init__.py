"""Tools a plan can call: protocol, registry, and the four built-ins of the model card.

Heavy modules (bs4, trafilatura, ddgs) are imported by the tools when first used, so importing
this package stays cheap.
"""

from agent.tools.registry import FunctionTool, Tool, ToolRegistry, as_tool, load_tool_spec

__all__ = [
    "Tool",
    "FunctionTool",
    "ToolRegistry",
    "as_tool",
    "load_tool_spec",
    "default_tools",
    "Document",
    "format_documents",
    "parse_documents",
    "DuckDuckGo",
    "SearchResult",
    "SearchBackend",
    "DDGSBackend",
    "TextScraper",
    "HyperlinkExtractor",
    "KnowledgeModel",
]

_LAZY = {
    "default_tools": "agent.tools.defaults",
    "Document": "agent.tools.documents",
    "format_documents": "agent.tools.documents",
    "parse_documents": "agent.tools.documents",
    "DuckDuckGo": "agent.tools.search",
    "SearchResult": "agent.tools.search",
    "SearchBackend": "agent.tools.search",
    "DDGSBackend": "agent.tools.search",
    "TextScraper": "agent.tools.scraper",
    "HyperlinkExtractor": "agent.tools.links",
    "KnowledgeModel": "agent.tools.knowledge",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.tools' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
